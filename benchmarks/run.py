"""``make bench``: every benchmark in this folder, one process each, each printing Markdown.

Copy the tables into benchmarks/README.md with the date and the machine's load.
``make bench BENCH=drift`` runs one of them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# name -> extra arguments; drift at 1M rows runs Evidently for ~100 s, serving starts servers.
BENCHMARKS: dict[str, list[str]] = {
    "train": [],
    "registry": [],
    "drift": ["--sizes", "10000,100000,1000000", "--repeats", "1"],
    "serving": [],
    "gateway": [],
    "images": [],
}


def main(selected: list[str]) -> int:
    unknown = [name for name in selected if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    failed = 0
    for name in selected or list(BENCHMARKS):
        script = HERE / f"bench_{name}.py"
        print(f"\n# {name} ({script.name})", flush=True)
        failed += (
            subprocess.run([sys.executable, str(script), *BENCHMARKS[name]], env=env).returncode
            != 0
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main([name for name in os.environ.get("BENCH", "").split(",") if name]))
