"""Where Bentos and BentoML models live: ``<home>/bentoml`` unless ``BENTOML_HOME`` says else.

Kept apart from ``build`` so that finding or containerizing a Bento does not import MLflow.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard.settings import Settings
from serving.bento.dockerfile import Finding
from serving.errors import BentoNotFound

LABEL_PREFIX = "modelyard."


@dataclass(frozen=True)
class BentoInfo:
    """A built Bento: its tag, the registry version inside it, and where it lies."""

    tag: str
    model: str
    version: int
    path: Path
    dockerfile_path: Path
    bento_model: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()


def bentoml_home(settings: Settings) -> Path:
    """``BENTOML_HOME`` when set, else ``<home>/bentoml``: outside any build context."""
    explicit = os.environ.get("BENTOML_HOME")
    return Path(explicit).expanduser().resolve() if explicit else settings.home / "bentoml"


def bentoml_env(settings: Settings) -> dict[str, str]:
    """The environment for a ``bentoml`` subprocess working on our stores."""
    return {
        **os.environ,
        "BENTOML_HOME": str(bentoml_home(settings)),
        "BENTOML_DO_NOT_TRACK": "true",
    }


@contextmanager
def bentoml_stores(home: Path) -> Iterator[None]:
    """Point BentoML's model and Bento stores at ``home`` for the duration.

    BentoML reads ``BENTOML_HOME`` once per process and caches its stores, so a process that
    works on two state folders (tests, notebooks) must override its container's providers.
    """
    from bentoml._internal.bento import BentoStore
    from bentoml._internal.configuration.containers import BentoMLContainer as container
    from bentoml._internal.models import ModelStore

    folders = {sub: home / sub for sub in ("bentos", "models", "envs", "tmp")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    values: list[tuple[Any, Any]] = [
        (container.bentoml_home, str(home)),
        (container.bento_store_dir, str(folders["bentos"])),
        (container.model_store_dir, str(folders["models"])),
        (container.env_store_dir, str(folders["envs"])),
        (container.tmp_bento_store_dir, str(folders["tmp"])),
        (container.bento_store, BentoStore(str(folders["bentos"]))),
        (container.tmp_bento_store, BentoStore(str(folders["tmp"]))),
        (container.model_store, ModelStore(str(folders["models"]))),
    ]
    with ExitStack() as stack:
        for provider, value in values:
            stack.enter_context(provider.patch(value))
        yield


def bento_info(bento: Any, findings: tuple[Finding, ...] = ()) -> BentoInfo:
    """Our view of a BentoML ``Bento``, from the labels ``modelyard build`` gave it."""
    labels = dict(bento.info.labels)
    path = Path(bento.path)
    return BentoInfo(
        tag=str(bento.tag),
        model=labels.get(LABEL_PREFIX + "model", str(bento.tag.name)),
        version=int(labels.get(LABEL_PREFIX + "version", "0")),
        path=path,
        dockerfile_path=path / "env" / "docker" / "Dockerfile",
        bento_model=labels.get(LABEL_PREFIX + "bento_model", ""),
        labels=labels,
        findings=findings,
    )


def find_bento(tag: str, settings: Settings) -> BentoInfo:
    """A Bento already in the store. Raises ``BentoNotFound``."""
    import bentoml
    from bentoml.exceptions import BentoMLException

    with bentoml_stores(bentoml_home(settings)):
        try:
            bento = bentoml.bentos.get(tag)
        except (BentoMLException, ValueError) as exc:
            raise BentoNotFound(tag) from exc
        return bento_info(bento)
