"""Serving throughput and latency: our Bento service against ``mlflow models serve`` and a floor.

One run, one freshly trained registry version (built-in ``penguins``: string categories, gaps) in
a temporary ``MODELYARD_HOME`` with an embedded SQLite store, the same request bodies to every
server, all on loopback, every server with one worker:

- ``bento``: ``bentoml serve`` of the Bento ``build_bento`` makes from that version, with its
  default batching (``queue``: requests that queued while the model was busy go in one call);
- ``bento, batching off``: the same Bento built with ``BuildOptions(batching="off")``;
- ``mlflow``: ``mlflow models serve -m models:/NAME/VERSION --env-manager local`` (pyfunc with
  schema enforcement, route ``/invocations``);
- ``bare ASGI``: the limit on this box, the same fitted pipeline (``mlflow.sklearn.load_model``)
  predicted in-process by a raw ASGI callable under uvicorn: JSON in, ``dataframe_records`` to a
  DataFrame with pandas, ``predict`` on the event loop, JSON out. No checks, no batching.

Requests: ``{"dataframe_records": [...]}`` with one real penguin row, and with 100 real rows
spread over the data set (all three species, rows with gaps among them). Load is closed-loop on
keep-alive connections from ``wrk`` (one thread; a Lua script reads the body and reports exact
percentiles) or, without ``wrk``, from an asyncio httpx client in a process of its own. All
servers run at once; each cell (server x payload x concurrency) gets a 1 s warm-up, then its
``--seconds`` are cut into ``--slices`` slices taken in turn with the other servers' (order
rotating), and the medians over slices are reported: on a shared 2-core box other work comes in
bursts of seconds, and interleaving makes it fall on all servers alike. Before any load, every
server must return the same predictions as the pipeline in-process for both bodies.

Every server starts on a port the OS hands out, in a session (process group) of its own, with a
marker in its environment; a ``finally`` stops each one (SIGTERM to the group, then SIGKILL to
the group and to anything carrying the marker) and the run checks that none of them is left.

    .venv/bin/python benchmarks/bench_serving.py [--seconds 5] [--slices 5] [--concurrency 1,8,32]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODEL = "penguins"
HOST = "127.0.0.1"
CONCURRENCY = (1, 8, 32)
WARMUP_SECONDS = 1.0
READY_TIMEOUT_S = 180.0
BATCH_ROWS = 100
REQUEST_TIMEOUT_S = 10
BENTO_DEFAULT = "bento"
BENTO_OFF = "bento, batching off"
MLFLOW = "mlflow models serve"
BARE = "bare ASGI (limit)"
SERVERS = (BENTO_DEFAULT, BENTO_OFF, MLFLOW, BARE)


@dataclass(frozen=True)
class Load:
    """One load run's figures (one slice of a cell)."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int


@dataclass(frozen=True)
class Cell:
    """One server x payload x concurrency: the median of its slices, and their totals."""

    rps: float  # median over slices
    p50_ms: float  # median over slices
    p99_ms: float  # median over slices
    worst_p99_ms: float  # the worst slice's p99
    errors: int  # all slices
    requests: int  # all slices
    server_cpu_ms: float  # the server's CPU time (all its processes) per request, all slices

    @classmethod
    def of(cls, slices: list[Load], cpu_total: float) -> Cell:
        requests = sum(s.requests for s in slices)
        return cls(
            rps=statistics.median(s.rps for s in slices),
            p50_ms=statistics.median(s.p50_ms for s in slices),
            p99_ms=statistics.median(s.p99_ms for s in slices),
            worst_p99_ms=max(s.p99_ms for s in slices),
            errors=sum(s.errors for s in slices),
            requests=requests,
            server_cpu_ms=cpu_total / max(1, requests) * 1000,
        )


@dataclass
class Server:
    """A running server: where to send requests and how to find and stop all of its processes."""

    label: str
    predict_url: str
    ready_url: str
    pid: int
    start_time: int | None
    instance: str
    log: Path
    child: subprocess.Popen[bytes]
    started_at: float
    ready_after_s: float = float("nan")
    killed: bool | None = None  # None: not stopped yet; True: SIGTERM was not enough

    def stop(self) -> None:
        from infra.local.process import stop_server

        self.killed = stop_server(self.pid, self.start_time, self.instance, child=self.child)

    def processes(self) -> list[int]:
        from infra.local.process import server_processes

        return server_processes(self.pid, self.start_time, self.instance)


@dataclass
class Prepared:
    """The trained version and what every server is built from."""

    version: int
    tracking_uri: str
    model_location: str  # the version's MLflow model folder, as a file URI
    bentos: dict[str, str]  # server label -> Bento tag
    bentoml_home: Path
    bodies: dict[str, bytes]
    expected: dict[str, list[Any]]  # payload -> in-process predictions
    seconds: dict[str, float] = field(default_factory=dict)


# --- the trained version, its Bentos and the request bodies ------------------------------------


def prepare(home: Path) -> Prepared:
    """Train ``penguins`` into a fresh store under ``home``, build both Bentos, make the bodies."""
    os.environ["MODELYARD_HOME"] = str(home)
    for name in ("MODELYARD_TRACKING_URI", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        os.environ.pop(name, None)
    os.environ.pop("BENTOML_HOME", None)  # Bentos go under the temporary home
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from modelyard.settings import get_settings
    from pipelines.config import parse_train_config
    from pipelines.datasets import get_builtin
    from pipelines.flows.train import run_training
    from registry.mlflow_registry import MlflowRegistry
    from serving.bento.build import BuildOptions, build_bento
    from serving.bento.store import bentoml_home

    get_settings.cache_clear()
    settings = get_settings()
    spec = get_builtin(MODEL)
    config = parse_train_config(
        {"model_name": MODEL, "data": {"builtin": MODEL}, "target": spec.target, "task": spec.task}
    )
    seconds: dict[str, float] = {}
    began = time.perf_counter()
    trained = run_training(config, settings)
    seconds["train and register"] = time.perf_counter() - began
    bentos = {}
    for label, options in (
        (BENTO_DEFAULT, BuildOptions()),
        (BENTO_OFF, BuildOptions(batching="off")),
    ):
        began = time.perf_counter()
        bentos[label] = build_bento(MODEL, trained.version, settings, options=options).tag
        seconds[f"build_bento ({label})"] = time.perf_counter() - began
    registry = MlflowRegistry.from_settings(settings)
    location = registry.client.get_model_version_download_uri(MODEL, str(trained.version))
    features = spec.loader().drop(columns=[spec.target])
    bodies, expected = request_bodies(features, location)
    return Prepared(
        version=trained.version,
        tracking_uri=settings.mlflow_tracking_uri,
        model_location=location,
        bentos=bentos,
        bentoml_home=bentoml_home(settings),
        bodies=bodies,
        expected=expected,
        seconds=seconds,
    )


def request_bodies(features: Any, location: str) -> tuple[dict[str, bytes], dict[str, list[Any]]]:
    """One real row, and 100 real rows spread over the data set (gaps included), as the same
    ``dataframe_records`` bytes for every server; and what the pipeline predicts for them."""
    import mlflow.sklearn
    import numpy as np
    import pandas as pd

    single = features.iloc[[0]]
    spread = features.iloc[np.linspace(0, len(features) - 1, BATCH_ROWS).astype(int)]
    if not spread.isna().to_numpy().any():
        raise RuntimeError("the 100-row payload was meant to hold rows with gaps")
    model = mlflow.sklearn.load_model(location)
    bodies, expected = {}, {}
    for name, frame in (("1 row", single), (f"{BATCH_ROWS} rows", spread)):
        records = json.loads(frame.to_json(orient="records"))  # missing values as null
        bodies[name] = json.dumps({"dataframe_records": records}).encode()
        expected[name] = model.predict(pd.DataFrame.from_records(records)).tolist()
    return bodies, expected


# --- servers -----------------------------------------------------------------------------------


def start_bento(label: str, tag: str, prepared: Prepared, folder: Path, stack: ExitStack) -> Server:
    """``bentoml serve TAG`` as our local target starts it (``infra.local.process``)."""
    from infra.local.process import ServerSpec, free_port, start_server

    spec = ServerSpec(
        model=MODEL,
        version=prepared.version,
        target=tag,
        port=free_port(),
        instance=f"bench-serving-{uuid.uuid4().hex[:8]}",
        log_path=folder / f"{_slug(label)}.log",
        bentoml_home=prepared.bentoml_home,
    )
    began = time.perf_counter()
    started, child = start_server(spec)
    server = Server(label, f"{started.url}/invocations", f"{started.url}/readyz", started.pid,
                    started.start_time, spec.instance, spec.log_path, child, began)  # fmt: skip
    stack.callback(server.stop)
    return server


def start_process(
    label: str, argv: list[str], env: dict[str, str], port: int, predict: str, ready: str,
    folder: Path, stack: ExitStack,
) -> Server:  # fmt: skip
    """Any other server: its own session, a marker in its environment, stopped with the stack."""
    from infra.local.process import MARKER_ENV, process_start_time

    instance = f"bench-serving-{uuid.uuid4().hex[:8]}"
    log = folder / f"{_slug(label)}.log"
    began = time.perf_counter()
    with log.open("wb") as out:
        child = subprocess.Popen(
            argv,
            env={**env, MARKER_ENV: instance, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://{HOST}:{port}"
    server = Server(label, base + predict, base + ready, child.pid,
                    process_start_time(child.pid), instance, log, child, began)  # fmt: skip
    stack.callback(server.stop)
    return server


def start_mlflow(prepared: Prepared, folder: Path, stack: ExitStack) -> Server:
    from infra.local.process import free_port

    port = free_port()
    bin_dir = str(Path(sys.executable).parent)  # it runs `uvicorn` from PATH
    env = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "MLFLOW_TRACKING_URI": prepared.tracking_uri,
        "MLFLOW_REGISTRY_URI": prepared.tracking_uri,
    }
    argv = [
        str(Path(bin_dir) / "mlflow"), "models", "serve",
        "-m", f"models:/{MODEL}/{prepared.version}", "--env-manager", "local",
        "--host", HOST, "--port", str(port),
    ]  # fmt: skip
    return start_process(MLFLOW, argv, env, port, "/invocations", "/ping", folder, stack)


def start_bare(prepared: Prepared, folder: Path, stack: ExitStack) -> Server:
    from infra.local.process import free_port

    port = free_port()
    argv = [sys.executable, __file__, "--serve-bare", prepared.model_location, "--port", str(port)]
    env = dict(os.environ)
    return start_process(BARE, argv, env, port, "/invocations", "/ping", folder, stack)


def wait_ready(server: Server) -> None:
    import httpx

    deadline = time.monotonic() + READY_TIMEOUT_S
    with httpx.Client(trust_env=False, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if server.child.poll() is not None:
                raise RuntimeError(
                    f"{server.label} exited ({server.child.returncode}):\n{_tail(server.log)}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if client.get(server.ready_url).status_code == 200:
                    server.ready_after_s = time.perf_counter() - server.started_at
                    return
            time.sleep(0.1)
    raise RuntimeError(f"{server.label} not ready in {READY_TIMEOUT_S:.0f} s:\n{_tail(server.log)}")


def check_predictions(servers: list[Server], prepared: Prepared) -> None:
    """Every server must answer both bodies with the in-process predictions."""
    import httpx

    headers = {"content-type": "application/json"}
    with httpx.Client(trust_env=False, timeout=30.0) as client:
        for server in servers:
            for name, body in prepared.bodies.items():
                response = client.post(server.predict_url, content=body, headers=headers)
                if response.status_code != 200:
                    raise RuntimeError(
                        f"{server.label} answered {response.status_code} to the {name} body: "
                        f"{response.text[:500]}"
                    )
                got = response.json()["predictions"]
                if got != prepared.expected[name]:
                    raise RuntimeError(f"{server.label} predicted {got[:5]}... for {name}")


def bento_batching(server: Server) -> str:
    import httpx

    url = server.predict_url.rsplit("/", 1)[0] + "/info"
    return str(httpx.post(url, json={}, trust_env=False, timeout=5).json().get("batching"))


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of live processes so far (Linux ``/proc``)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


# --- the bare ASGI server (runs in its own process) --------------------------------------------


def serve_bare(model_uri: str, port: int) -> None:
    """The same pipeline behind a raw ASGI callable: nothing between the socket and ``predict``
    but JSON and a DataFrame. Under uvicorn with its defaults (uvloop, httptools), one worker."""
    import mlflow.sklearn
    import pandas as pd
    import uvicorn

    model = mlflow.sklearn.load_model(model_uri)
    json_headers = [(b"content-type", b"application/json")]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        status, answer = 200, b"{}"
        if scope["method"] == "POST":
            try:
                records = json.loads(b"".join(chunks))["dataframe_records"]
                predictions = model.predict(pd.DataFrame.from_records(records))
                answer = json.dumps({"predictions": predictions.tolist()}).encode()
            except Exception as exc:
                status, answer = 400, json.dumps({"error": repr(exc)}).encode()
        headers = [*json_headers, (b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    uvicorn.run(app, host=HOST, port=port, workers=1, access_log=False, lifespan="off",
                log_level="warning")  # fmt: skip


# --- load --------------------------------------------------------------------------------------

WRK_SCRIPT = """local file = assert(io.open({body_path}, "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %.3f %.3f\\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def load_tool(choice: str) -> str:
    if choice == "auto":
        return "wrk" if shutil.which("wrk") else "httpx"
    if choice == "wrk" and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian: apt-get install -y wrk)")
    return choice


def run_load(tool: str, url: str, body_path: Path, concurrency: int, seconds: float) -> Load:
    """Closed-loop load on keep-alive connections from a process of its own."""
    if tool == "wrk":
        script = body_path.with_suffix(".lua")
        script.write_text(WRK_SCRIPT.format(body_path=json.dumps(str(body_path))))
        argv = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s",
                f"--timeout={REQUEST_TIMEOUT_S}s", "-s", str(script), url]  # fmt: skip
    else:
        argv = [sys.executable, __file__, "--load-httpx", url, "--body", str(body_path),
                "--concurrency", str(concurrency), "--seconds", str(seconds)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    requests, duration_us, errors, p50_us, p99_us = line.split()[1:]
    return Load(
        rps=int(requests) / (int(duration_us) / 1e6),
        p50_ms=float(p50_us) / 1000,
        p99_ms=float(p99_us) / 1000,
        errors=int(errors),
        requests=int(requests),
    )


def httpx_load(url: str, body_path: Path, concurrency: int, seconds: float) -> None:
    """The fallback load generator (its own process): prints a line as the wrk script does."""
    import httpx

    body = body_path.read_bytes()
    headers = {"content-type": "application/json"}
    latencies: list[float] = []
    errors = 0

    async def run() -> float:
        nonlocal errors
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(
            limits=limits, trust_env=False, timeout=REQUEST_TIMEOUT_S
        ) as client:
            stop_at = time.perf_counter() + seconds

            async def worker() -> None:
                nonlocal errors
                while time.perf_counter() < stop_at:
                    began = time.perf_counter()
                    try:
                        response = await client.post(url, content=body, headers=headers)
                        errors += response.status_code != 200
                    except httpx.HTTPError:
                        errors += 1
                    latencies.append((time.perf_counter() - began) * 1e6)

            began = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return time.perf_counter() - began

    elapsed = asyncio.run(run())
    latencies.sort()
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"RESULT {len(latencies)} {int(elapsed * 1e6)} {errors} {p50:.3f} {p99:.3f}")


# --- the benchmark -----------------------------------------------------------------------------


def measure(
    servers: list[Server], prepared: Prepared, folder: Path, tool: str, seconds: float,
    slices: int, concurrencies: tuple[int, ...],
) -> dict[tuple[str, str, int], Cell]:  # fmt: skip
    """Every cell, interleaved: for each payload and concurrency, a warm-up of each server, then
    ``slices`` rounds in which each server gets ``seconds / slices`` of load in turn (the order
    rotating every round), so other work on the machine falls on all servers alike."""
    results: dict[tuple[str, str, int], Cell] = {}
    piece = seconds / slices
    for payload, body in prepared.bodies.items():
        body_path = folder / f"body-{_slug(payload)}.json"
        body_path.write_bytes(body)
        for concurrency in concurrencies:
            runs: dict[str, list[Load]] = {s.label: [] for s in servers}
            cpu = dict.fromkeys(runs, 0.0)
            pids = {s.label: s.processes() for s in servers}
            for server in servers:
                run_load(tool, server.predict_url, body_path, concurrency, WARMUP_SECONDS)
            for round_ in range(slices):
                shift = round_ % len(servers)
                for server in servers[shift:] + servers[:shift]:
                    before = cpu_seconds(pids[server.label])
                    load = run_load(tool, server.predict_url, body_path, concurrency, piece)
                    cpu[server.label] += cpu_seconds(pids[server.label]) - before
                    runs[server.label].append(load)
            for label, loads in runs.items():
                results[(label, payload, concurrency)] = Cell.of(loads, cpu[label])
    return results


def markdown(results: dict[tuple[str, str, int], Cell], prepared: Prepared) -> str:
    lines = [
        "| server | payload | concurrency | requests/s | p50 ms | p99 ms | worst p99 ms "
        "| errors | server CPU ms/request |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for payload in prepared.bodies:
        for label in SERVERS:
            for (server, body, concurrency), r in results.items():
                if server == label and body == payload:
                    lines.append(
                        f"| {label} | {payload} | {concurrency} | {r.rps:.0f} | {r.p50_ms:.2f} "
                        f"| {r.p99_ms:.2f} | {r.worst_p99_ms:.2f} | {r.errors} "
                        f"| {r.server_cpu_ms:.2f} |"
                    )
    return "\n".join(lines)


def ratios(results: dict[tuple[str, str, int], Cell], prepared: Prepared) -> str:
    """Throughput ratios per payload and concurrency; targets at the highest concurrency."""
    lines = [
        "| payload | concurrency | bento / bare | bento off / bare | bento / mlflow "
        "| bento off / mlflow |",
        "|---|---|---|---|---|---|",
    ]
    concurrencies = sorted({c for (_, _, c) in results})
    for payload in prepared.bodies:
        for c in concurrencies:

            def rps(label: str, c: int = c, payload: str = payload) -> float:
                return results[(label, payload, c)].rps

            lines.append(
                f"| {payload} | {c} | {rps(BENTO_DEFAULT) / rps(BARE):.0%} "
                f"| {rps(BENTO_OFF) / rps(BARE):.0%} | {rps(BENTO_DEFAULT) / rps(MLFLOW):.2f}x "
                f"| {rps(BENTO_OFF) / rps(MLFLOW):.2f}x |"
            )
    return "\n".join(lines)


def leftovers(servers: list[Server]) -> list[int]:
    from infra.local.process import marked_processes

    return sorted({pid for s in servers for pid in marked_processes(s.instance)})


def main(seconds: float = 5.0, concurrencies: tuple[int, ...] = CONCURRENCY,
         load_generator: str = "auto", slices: int = 5) -> None:  # fmt: skip
    tool = load_tool(load_generator)
    if slices < 1 or (tool == "wrk" and (seconds / slices < 1 or seconds % slices)):
        raise SystemExit("--seconds must be a whole number of seconds per slice (wrk), >= 1")
    run_began = time.perf_counter()
    load_before = os.getloadavg()
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as scratch:
        folder = Path(scratch)
        prepared = prepare(folder / "home")
        try:
            with ExitStack() as stack:  # stops every server, in reverse order, whatever happens
                servers.append(start_bento(BENTO_DEFAULT, prepared.bentos[BENTO_DEFAULT],
                                           prepared, folder, stack))  # fmt: skip
                servers.append(start_bento(BENTO_OFF, prepared.bentos[BENTO_OFF],
                                           prepared, folder, stack))  # fmt: skip
                servers.append(start_mlflow(prepared, folder, stack))
                servers.append(start_bare(prepared, folder, stack))
                for server in servers:
                    wait_ready(server)
                modes = {s.label: bento_batching(s) for s in servers[:2]}
                check_predictions(servers, prepared)
                results = measure(servers, prepared, folder, tool, seconds, slices, concurrencies)
                load_during = os.getloadavg()
        finally:
            left = leftovers(servers)
    elapsed = time.perf_counter() - run_began

    generator = (
        "wrk 4.1 (1 thread, keep-alive, Lua script)"
        if tool == "wrk"
        else "asyncio httpx client in its own process (keep-alive)"
    )
    print(f"\n## Serving: {MODEL} version {prepared.version}, one worker per server, loopback\n")
    print(
        f"Load: {generator}; per cell a {WARMUP_SECONDS:g} s warm-up, then {seconds:g} s of "
        f"load in {slices} slices interleaved across the servers (order rotating); requests/s, "
        "p50 and p99 are medians over the slices, errors and CPU over all of them. "
        "Batching reported by the Bentos: "
        + ", ".join(f"{k}: `{v}`" for k, v in modes.items())
        + ". Every server returned the in-process predictions for both bodies "
        f"({len(prepared.bodies['1 row'])} and {len(prepared.bodies[f'{BATCH_ROWS} rows'])} "
        "bytes).\n"
    )
    print(markdown(results, prepared))
    print("\nThroughput ratios (targets at concurrency "
          f"{max(concurrencies)}: bento / bare >= 50%, bento / mlflow > 1):\n")  # fmt: skip
    print(ratios(results, prepared))
    print("\n| setup step | seconds |\n|---|---|")
    for step, value in prepared.seconds.items():
        print(f"| {step} | {value:.1f} |")
    for server in servers:
        print(f"| {server.label} ready (all four started together) | {server.ready_after_s:.1f} |")
    print(
        f"\nLoad average (1/5/15 min) before: {_loadavg(load_before)}; at the end of the load: "
        f"{_loadavg(load_during)}; {os.cpu_count()} cores, load generator on the same cores. "
        f"Processes left after stopping the servers: {left or 'none'}; "
        f"needed SIGKILL: {[s.label for s in servers if s.killed] or 'none'}. "
        f"Whole run: {elapsed:.0f} s."
    )
    if left:
        raise SystemExit(f"server processes outlived the benchmark: {left}")


def _loadavg(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-")


def _tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def _arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="load per cell (default 5)")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated (default 1,8,32)")
    parser.add_argument(
        "--slices", type=int, default=5, help="interleaved slices a cell's time is cut into"
    )
    parser.add_argument("--load-generator", choices=("auto", "wrk", "httpx"), default="auto")
    parser.add_argument("--serve-bare", metavar="MODEL_URI", help=argparse.SUPPRESS)
    parser.add_argument("--load-httpx", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--body", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = _arguments()
    if args.serve_bare:
        serve_bare(args.serve_bare, args.port)
    elif args.load_httpx:
        httpx_load(args.load_httpx, args.body, int(args.concurrency), args.seconds)
    else:
        levels = tuple(int(c) for c in args.concurrency.split(",") if c.strip())
        main(args.seconds, levels, args.load_generator, args.slices)
