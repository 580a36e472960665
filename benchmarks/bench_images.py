"""Image push through our OCI distribution client, against a bare upload of the same bytes.

A real registry (Debian's ``docker-registry``) on loopback. The baseline is the least any
client can do: one POST for an upload session and one PUT carrying the whole layer. Ours reads
the layout, checks each blob's digest, HEADs each blob, uploads in chunks above 32 MiB and puts
the manifest. Also: a second push of the same image (every blob already there), and the Python
heap the push allocates at its peak (the layer must stream from disk, not sit in memory).
Targets: first push <= 1.3x the bare upload; re-push <= 25% of a first push (no byte is sent,
but the layout's digests are still checked on disk); peak heap <= 1/4 of the layer.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

import httpx

from infra.images.push import push_layout
from tests.fakes.oci_registry import oci_registry, write_oci_layout


def bare_upload(host: str, data: bytes) -> float:
    """POST an upload session, PUT every byte with the digest: the floor for pushing ``data``."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    repository = f"bench-bare-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    with httpx.Client(base_url=f"http://{host}", timeout=120) as client:
        session = client.post(f"/v2/{repository}/blobs/uploads/")
        session.raise_for_status()
        location = session.headers["location"]
        joiner = "&" if "?" in location else "?"
        done = client.put(
            f"{location}{joiner}digest={digest}",
            content=data,
            headers={"content-type": "application/octet-stream"},
        )
        done.raise_for_status()
    return time.perf_counter() - started


def our_push(host: str, layout: Path, repository: str) -> float:
    started = time.perf_counter()
    push_layout(layout, f"{host}/{repository}:v1")
    return time.perf_counter() - started


def peak_heap(host: str, layout: Path) -> int:
    tracemalloc.start()
    push_layout(layout, f"{host}/bench-heap-{uuid.uuid4().hex[:8]}:v1")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=96, help="Layer size in MiB.")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    layer = os.urandom(args.mib * 1024 * 1024)  # incompressible: gzip cannot shrink it
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "registry").mkdir()
        image = write_oci_layout(root / "layout", extra_layer=layer)
        pushed = max(len(b) for b in image.blobs.values())
        with oci_registry(root / "registry") as host:
            bare, first, again = [], [], []
            for _ in range(args.repeats):
                bare.append(bare_upload(host, layer))
                repository = f"bench-ours-{uuid.uuid4().hex[:8]}"
                first.append(our_push(host, root / "layout", repository))
                again.append(our_push(host, root / "layout", repository))
            heap = peak_heap(host, root / "layout")
    b, f, a = (statistics.median(x) for x in (bare, first, again))
    mib = pushed / 2**20
    print(f"layer {mib:.0f} MiB (gzip of random bytes), median of {args.repeats}\n")
    print("| push | seconds | MiB/s | ratio to bare upload |")
    print("|---|---|---|---|")
    print(f"| bare upload (POST + one PUT), baseline | {b:.3f} | {mib / b:.0f} | 1.00x |")
    print(f"| `push_layout`, first push | {f:.3f} | {mib / f:.0f} | {f / b:.2f}x |")
    again_row = f"{a:.3f} | - | {a / b:.3f}x ({a / f:.2f}x first push)"
    print(f"| `push_layout`, again (blobs present) | {again_row} |")
    share = heap / pushed
    print(f"\npeak Python heap during a push: {heap / 2**20:.1f} MiB ({share:.1%} of the layer)")


if __name__ == "__main__":
    main()
