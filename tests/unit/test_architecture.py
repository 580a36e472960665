"""The floors of the house: every import of ours points down (see shared ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLOOR = {
    "modelyard": 1,
    "registry": 2,
    "monitoring": 2,
    "serving": 3,
    "infra": 4,
    "pipelines": 5,
    "cli": 6,
}
# Same-floor packages that must not import each other either.
SIBLINGS_APART = {("registry", "monitoring"), ("monitoring", "registry")}
# One home per third-party library (a module path prefix, or a package).
LIBRARY_HOMES = {
    "evidently": ("monitoring/evidently_adapter.py",),
    "bentoml": ("serving/bento/",),
    "prefect": ("pipelines/", "cli/", "infra/prefect/"),
    "mlflow": ("registry/mlflow_registry.py", "pipelines/steps/tracking.py", "serving/bento/"),
    # Cloud SDKs: each only in its own deploy target's package.
    "kubernetes": ("infra/kubernetes/",),
    "boto3": ("infra/aws/",),
    "botocore": ("infra/aws/",),
    "google": ("infra/gcp/",),
    "azure": ("infra/azure/",),
}


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def sources() -> list[Path]:
    return sorted(p for package in FLOOR for p in (ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path: Path) -> None:
    own = path.relative_to(ROOT).parts[0]
    upward = []
    for name in imports_of(path):
        top = name.split(".")[0]
        above = top in FLOOR and FLOOR[top] > FLOOR[own]
        if top != own and (above or (own, top) in SIBLINGS_APART):
            upward.append(name)
    assert not upward, f"{path.relative_to(ROOT)} imports upward: {upward}"


@pytest.mark.parametrize("library", sorted(LIBRARY_HOMES))
def test_each_library_has_one_home(library: str) -> None:
    homes = LIBRARY_HOMES[library]
    strays = []
    for path in sources():
        relative = str(path.relative_to(ROOT))
        if relative.startswith(homes):
            continue
        if any(name.split(".")[0] == library for name in imports_of(path)):
            strays.append(relative)
    assert not strays, f"{library} imported outside {homes}: {strays}"
