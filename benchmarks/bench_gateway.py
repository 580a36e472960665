"""Added latency and throughput of the model gateway: direct to a model server vs through it.

Single-row predict at concurrency 1, 8 and 32 against two upstreams:

- ``echo``: ``bentoml serve`` of ``tests/fixtures/echo_service`` (a BentoML service that does no
  work: the upstream is as fast as a BentoML server gets, so the gateway's share is at its
  largest; a real model adds its own milliseconds to both sides);
- ``null``: a bare ASGI app under uvicorn, to isolate the gateway's own cost.

The gateway runs as ``modelyard gateway`` would (its own process, uvicorn with uvloop and
httptools, one worker, no access log) with the real SQL key store and SQL inference log on a
SQLite file. Load comes from ``wrk`` when installed (Debian: ``apt-get install wrk``), else from
an asyncio httpx loop (which costs more CPU itself, on the same cores). Targets: added p50
<= 1 ms, p99 <= 5 ms, through-gateway throughput >= 80% of direct.

    .venv/bin/python benchmarks/bench_gateway.py [--seconds 10] [--upstreams echo,null]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ECHO_DIR = ROOT / "tests" / "fixtures" / "echo_service"
ROW = {"bill_length_mm": 39.1, "bill_depth_mm": 18.7, "island": "Torgersen", "sex": "male"}
CONCURRENCY = (1, 8, 32)
MODEL = "bench"


@dataclass(frozen=True)
class Load:
    """One load run's figures."""

    p50_ms: float
    p99_ms: float
    rps: float
    errors: int
    requests: int


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1, trust_env=False).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {timeout} s")


@contextmanager
def python_process(argv: list[str], ready_url: str, log: Path) -> Iterator[int]:
    """Run ``python argv...`` in its own process group until the block ends."""
    with log.open("wb") as out:
        child = subprocess.Popen(
            [sys.executable, *argv], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_ready(ready_url, child)
        yield child.pid
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(child.pid, sig)
                child.wait(timeout=10)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue


@contextmanager
def echo_server(home: Path) -> Iterator[str]:
    """``bentoml serve`` of the echo service; yields its predict URL. Stopped with its workers
    (which BentoML starts in sessions of their own) by ``infra.local.process``."""
    from infra.local.process import ServerSpec, start_server, stop_server
    from infra.local.process import wait_ready as wait_server

    spec = ServerSpec(
        model=MODEL,
        version=1,
        target="service:Echo",
        port=free_port(),
        instance=f"bench-echo-{uuid.uuid4().hex[:8]}",
        log_path=home / "echo.log",
        bentoml_home=home / "bentoml",
        working_dir=ECHO_DIR,
    )
    server, child = start_server(spec)
    try:
        wait_server(server, timeout=120, child=child)
        yield f"{server.url}/echo"
    finally:
        stop_server(server.pid, server.start_time, spec.instance, child=child)


@contextmanager
def null_server(home: Path) -> Iterator[str]:
    """A bare ASGI app under uvicorn that answers like the model service, doing nothing."""
    port = free_port()
    argv = [__file__, "--serve-null", "--port", str(port)]
    with python_process(argv, f"http://127.0.0.1:{port}/", home / "null.log"):
        yield f"http://127.0.0.1:{port}/predict"


@contextmanager
def gateway_server(home: Path, upstream_url: str) -> Iterator[tuple[str, str, int]]:
    """The gateway in its own process, routing ``bench`` to ``upstream_url``; yields its
    predict URL, an API key and its pid."""
    from serving.gateway.keys import SqlKeyStore

    database = f"sqlite:///{home / 'gateway.db'}"
    with SqlKeyStore(database) as store:
        store.migrate()
        _, key = store.create("bench", [MODEL])
    port = free_port()
    argv = [__file__, "--serve-gateway", "--port", str(port), "--upstream", upstream_url]
    argv += ["--database", database]
    with python_process(argv, f"http://127.0.0.1:{port}/healthz", home / "gateway.log") as pid:
        yield f"http://127.0.0.1:{port}/v1/models/{MODEL}/predict", key, pid


# --- the servers' own entry points (run in subprocesses) ---------------------------------------


def serve_null(port: int) -> None:
    import uvicorn

    answer = json.dumps({"predictions": ["Adelie"], "model": MODEL, "version": 1}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                access_log=False, lifespan="off", log_level="warning")  # fmt: skip


def serve_gateway(port: int, upstream_url: str, database: str) -> None:
    """The gateway as ``modelyard gateway`` builds it, with a fixed routing table."""
    from modelyard.settings import Settings
    from serving.gateway.routing import RouteTable, Upstream
    from serving.gateway.server import GatewaySettings, build_app, serve
    from serving.gateway.table_source import StaticTableSource

    settings = Settings(
        database_url=database, home=Path(database.removeprefix("sqlite:///")).parent
    )
    tables = StaticTableSource([RouteTable(MODEL, champion=Upstream(MODEL, 1, upstream_url))])
    app = build_app(settings, list_running=list, gateway=GatewaySettings(), tables=tables)
    serve(app, "127.0.0.1", port)


# --- load -------------------------------------------------------------------------------------

WRK_SCRIPT = """wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
{auth}
"""
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def run_load(url: str, body: bytes, key: str | None, concurrency: int, seconds: float) -> Load:
    """``wrk`` when installed, else the asyncio loop."""
    if shutil.which("wrk"):
        return wrk_load(url, body, key, concurrency, seconds)
    return asyncio.run(httpx_load(url, body, key, concurrency, seconds))


def wrk_load(url: str, body: bytes, key: str | None, concurrency: int, seconds: float) -> Load:
    auth = f'wrk.headers["Authorization"] = "Bearer {key}"' if key else ""
    script = WRK_SCRIPT.format(body=json.dumps(body.decode()), auth=auth)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        argv = [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            handle.name,
        ]
        text = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(handle.name)
    return parse_wrk(text)


def parse_wrk(text: str) -> Load:
    """p50, p99 and requests/s from ``wrk --latency`` output. Raises ``ValueError``."""

    def percentile(name: str) -> float:
        found = re.search(rf"^\s+{name}%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
        if found is None:
            raise ValueError(f"no {name}% latency in wrk output:\n{text}")
        return float(found.group(1)) * _UNITS[found.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if rps is None:
        raise ValueError(f"no Requests/sec in wrk output:\n{text}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    errors = int(non_2xx.group(1)) if non_2xx else 0
    errors += sum(int(n) for n in sockets.groups()) if sockets else 0
    done = re.search(r"(\d+) requests in", text)
    requests = int(done.group(1)) if done else 0
    return Load(percentile("50"), percentile("99"), float(rps.group(1)), errors, requests)


async def httpx_load(
    url: str, body: bytes, key: str | None, concurrency: int, seconds: float
) -> Load:
    import httpx

    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, trust_env=False, timeout=30) as client:
        stop_at = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                response = await client.post(url, content=body, headers=headers)
                latencies.append((time.perf_counter() - started) * 1000)
                errors += response.status_code != 200

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return Load(
        latencies[len(latencies) // 2],
        latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        len(latencies) / elapsed,
        errors,
        len(latencies),
    )


# --- the gateway's own view -------------------------------------------------------------------


def overhead_buckets(metrics_url: str) -> dict[float, float]:
    """Cumulative counts of the gateway's overhead histogram, by upper bound in seconds."""
    import httpx

    text = httpx.get(metrics_url, trust_env=False, timeout=5).text
    found: dict[float, float] = {}
    for bound, count in re.findall(
        r'^modelyard_gateway_overhead_seconds_bucket\{le="([^"]+)"\} ([\d.e+]+)$', text, re.M
    ):
        found[float(bound)] = float(count)
    return found


def quantile_bound(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The histogram bucket (upper bound, ms) holding quantile ``q`` of the run between scrapes."""
    delta = {bound: after[bound] - before.get(bound, 0.0) for bound in sorted(after)}
    total = delta.get(float("inf"), 0.0)
    for bound, count in delta.items():
        if total and count >= q * total:
            return bound * 1000
    return float("nan")


# --- the benchmark ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    upstream: str
    concurrency: int
    direct: Load
    gateway: Load
    overhead_p50_ms: float
    overhead_p99_ms: float
    gateway_cpu_us: float  # the gateway process's CPU time per request


def measure(kind: str, home: Path, seconds: float) -> list[Row]:
    home.mkdir(parents=True, exist_ok=True)
    upstream = echo_server(home) if kind == "echo" else null_server(home)
    document: dict[str, Any] = {"dataframe_records": [ROW]}
    body = json.dumps({"payload": document} if kind == "echo" else document).encode()
    rows = []
    with upstream as direct_url, gateway_server(home, direct_url) as (gateway_url, key, pid):
        metrics_url = gateway_url.split("/v1/")[0] + "/metrics"
        run_load(direct_url, body, None, 8, 2)  # warm both paths (connections, caches)
        run_load(gateway_url, body, key, 8, 2)
        for concurrency in CONCURRENCY:
            direct = run_load(direct_url, body, None, concurrency, seconds)
            before, cpu_before = overhead_buckets(metrics_url), cpu_seconds(pid)
            through = run_load(gateway_url, body, key, concurrency, seconds)
            cpu = (cpu_seconds(pid) - cpu_before) / max(1, through.requests) * 1e6
            after = overhead_buckets(metrics_url)
            rows.append(
                Row(kind, concurrency, direct, through,
                    quantile_bound(before, after, 0.5), quantile_bound(before, after, 0.99), cpu)
            )  # fmt: skip
    return rows


def markdown(rows: list[Row]) -> str:
    lines = [
        "| upstream | conc. | direct p50 | gateway p50 | added p50 | direct p99 | gateway p99 "
        "| added p99 | direct rps | gateway rps | gateway/direct | overhead histogram p50 / p99 "
        "| gateway CPU µs/req | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        d, g = r.direct, r.gateway
        lines.append(
            f"| {r.upstream} | {r.concurrency} | {d.p50_ms:.2f} | {g.p50_ms:.2f} "
            f"| {g.p50_ms - d.p50_ms:+.2f} | {d.p99_ms:.2f} | {g.p99_ms:.2f} "
            f"| {g.p99_ms - d.p99_ms:+.2f} | {d.rps:.0f} | {g.rps:.0f} | {g.rps / d.rps:.0%} "
            f"| <= {r.overhead_p50_ms:g} / <= {r.overhead_p99_ms:g} | {r.gateway_cpu_us:.0f} "
            f"| {d.errors + g.errors} |"
        )
    return "\n".join(lines)


def main(seconds: float = 10.0, upstreams: tuple[str, ...] = ("echo", "null")) -> None:
    tool = "wrk" if shutil.which("wrk") else "asyncio httpx (wrk not installed)"
    print(f"\n## Gateway overhead ({tool}, {seconds:g} s a run, single-row predict, ms)\n")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as folder:
        for kind in upstreams:
            rows += measure(kind, Path(folder) / kind, seconds)
    print(markdown(rows))
    print(
        "\nTargets: added p50 <= 1 ms, added p99 <= 5 ms, gateway/direct >= 80%. "
        "The overhead histogram is the gateway's own measure (latency minus upstream wait; "
        "bucket upper bounds). Gateway CPU per request includes its SQL inference log. "
        f"Load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores."
    )


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--upstreams", default="echo,null")
    parser.add_argument("--serve-null", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-gateway", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    args = _arguments()
    if args.serve_null:
        serve_null(args.port)
    elif args.serve_gateway:
        serve_gateway(args.port, args.upstream, args.database)
    else:
        main(args.seconds, tuple(u.strip() for u in args.upstreams.split(",") if u.strip()))
