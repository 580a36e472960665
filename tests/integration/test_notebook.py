"""The quickstart notebook still runs against the package (its cells, in order)."""

from __future__ import annotations

import json
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "quickstart.ipynb"


def test_quickstart_cells_run_and_promote_to_shadow(isolated_home: Path) -> None:
    namespace: dict = {}
    last = None
    for cell in json.loads(NOTEBOOK.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        lines = "".join(cell["source"]).rstrip().splitlines()
        exec("\n".join(lines[:-1]), namespace)
        last = eval(lines[-1], namespace)
    state, history = last
    assert state == "champion v1, canary -, shadow v2"
    assert history[-1] == "promote v2 candidate → shadow"
