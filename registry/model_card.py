"""Model cards: a Markdown page per version, rendered from values (no I/O here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from modelyard.contract import DataContract
from registry.types import TAG_PREFIX, ModelVersion

LINEAGE_LABELS = {
    "data_source": "data source",
    "data_fingerprint": "data fingerprint",
    "rows": "rows",
    "git_commit": "git commit",
    "config_hash": "config hash",
    "flow_run_id": "Prefect flow run",
}


@dataclass(frozen=True)
class CardHistoryLine:
    """One past change of the version's stage, as the card shows it."""

    at: str
    change: str
    actor: str
    reason: str


def render_model_card(
    version: ModelVersion,
    contract: DataContract | None,
    history: Sequence[CardHistoryLine] = (),
    *,
    intended_use: str = "",
    limitations: str = "",
) -> str:
    """The card of one version: data, features, metrics against the champion, lineage, history."""
    sections = [
        f"# {version.name} version {version.version}",
        f"Stage: **{version.stage.value}**"
        + (f" (aliases: {', '.join(version.aliases)})" if version.aliases else ""),
        "## Intended use\n\n" + (intended_use or version.description or "_not stated_"),
        "## Limitations\n\n" + (limitations or "_not stated_"),
        _data_section(version, contract),
        _metrics_section(version),
        _lineage_section(version),
        _history_section(history),
    ]
    return "\n\n".join(sections) + "\n"


def _data_section(version: ModelVersion, contract: DataContract | None) -> str:
    tags = version.tags
    lines = [
        "## Data",
        "",
        f"- task: {tags.get(TAG_PREFIX + 'task', 'unknown')}, "
        f"target: `{tags.get(TAG_PREFIX + 'target', 'unknown')}`",
        f"- source: {tags.get(TAG_PREFIX + 'data_source', 'unknown')}, "
        f"fingerprint `{tags.get(TAG_PREFIX + 'data_fingerprint', 'unknown')}`, "
        f"{tags.get(TAG_PREFIX + 'rows', '?')} rows",
    ]
    if contract is None:
        return "\n".join([*lines, "", "_No data contract recorded._"])
    if contract.classes:
        lines.append(f"- classes: {', '.join(contract.classes)}")
    lines += ["", "| feature | kind | values seen | gaps |", "|---|---|---|---|"]
    for spec in contract.columns:
        if spec.kind == "numeric":
            seen = f"{_num(spec.minimum)} .. {_num(spec.maximum)}"
        elif spec.categories is None:
            seen = "free text (too many values to list)"
        else:
            seen = ", ".join(spec.categories[:12]) + (" ..." if len(spec.categories) > 12 else "")
        lines.append(
            f"| `{spec.name}` | {spec.kind} | {seen} | {'yes' if spec.nullable else 'no'} |"
        )
    return "\n".join(lines)


def _metrics_section(version: ModelVersion) -> str:
    champion = version.tags.get(TAG_PREFIX + "champion_version")
    header = f"champion v{champion} on the same rows" if champion else "champion"
    lines = ["## Held-out metrics", "", f"| metric | this version | {header} |", "|---|---|---|"]
    for name, value in sorted(version.metrics.items()):
        other = version.champion_metrics.get(name)
        lines.append(f"| {name} | {_num(value)} | {_num(other) if other is not None else '-'} |")
    if not version.metrics:
        lines.append("| - | - | - |")
    return "\n".join(lines)


def _lineage_section(version: ModelVersion) -> str:
    lines = ["## Lineage", ""]
    for key, label in LINEAGE_LABELS.items():
        value = version.tags.get(TAG_PREFIX + key)
        if value:
            lines.append(f"- {label}: `{value}`")
    if version.run_id:
        lines.append(f"- MLflow run: `{version.run_id}`")
    source = version.tags.get(TAG_PREFIX + "source_registry")
    if source:
        lines.append(
            f"- copied from {source} version {version.tags.get(TAG_PREFIX + 'source_version')}"
        )
    return "\n".join(lines)


def _history_section(history: Sequence[CardHistoryLine]) -> str:
    if not history:
        return "## Promotion history\n\n_No changes yet._"
    lines = ["## Promotion history", "", "| when | change | by | why |", "|---|---|---|---|"]
    lines += [f"| {h.at} | {h.change} | {h.actor} | {h.reason or '-'} |" for h in history]
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
