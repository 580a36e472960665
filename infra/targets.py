"""The deploy-target port: what every place that can serve a version (local processes, Kubernetes,
a cloud endpoint) must offer, the values it speaks in, and the table that finds a target by name.

A target deploys a concrete registry version (never an alias), reports what it runs with a URL per
version, and holds the traffic share of each version; the gateway reads those shares from
:meth:`DeployTarget.status`. Shares are whole percents summing to 100 over the versions that answer
(champion, canary); a shadow always has 0: the gateway mirrors requests to it and drops its answers.

The traffic rules are pure functions here so every target applies the same ones.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from infra.errors import (
    InvalidTraffic,
    NothingToServe,
    TargetConfigError,
    UnknownTarget,
    VersionNotDeployed,
)
from registry.types import SERVING_STAGES, Stage

if TYPE_CHECKING:
    from modelyard.settings import Settings

STAGE_ORDER = {stage: rank for rank, stage in enumerate(SERVING_STAGES)}


class DeployState(StrEnum):
    """What a deployed version is doing, as its target last saw it."""

    STARTING = "starting"
    RUNNING = "running"
    CRASHED = "crashed"  # not answering; a supervisor may still restart it
    FAILED = "failed"  # given up on (too many restarts, or the target refused it)


@dataclass(frozen=True)
class Deployment:
    """What to deploy: one registry version, the stage it serves as, and the Bento that holds it.

    ``working_dir`` is for local development and tests only: ``bento_tag`` may then be a
    ``module:Service`` import path served from that folder. Remote targets refuse it.
    ``image`` is the OCI image reference built from the Bento (``registry/repo:tag``): remote
    targets (Kubernetes, clouds) run it and raise ``ImageRequired`` without one.
    """

    model: str
    version: int
    stage: Stage
    bento_tag: str
    working_dir: Path | None = None
    image: str | None = None


@dataclass(frozen=True)
class DeployedVersion:
    """One version as a target runs it: where it answers, and the share of traffic it gets."""

    model: str
    version: int
    stage: Stage
    url: str
    pid: int | None
    state: DeployState
    traffic: int
    bento_tag: str = ""
    restarts: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (what ``modelyard serve status --json`` prints)."""
        data = asdict(self)
        data["stage"] = self.stage.value
        data["state"] = self.state.value
        return data


class DeployTarget(ABC):
    """The port every deploy target implements. Build one with :func:`get_target`."""

    name: ClassVar[str] = ""
    # Remote targets run OCI images: sync builds and pushes one per version before deploying.
    needs_image: ClassVar[bool] = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @abstractmethod
    def deploy(self, spec: Deployment) -> DeployedVersion:
        """Run ``spec``'s version and return once it answers; idempotent for a running version.

        A newly deployed version gets no traffic, except the first answering version of a model,
        which gets 100%: call :meth:`set_traffic` to shift traffic to it.

        Raises ``DeployError`` (``ServerStartFailed`` when it does not become ready).
        """

    def deploy_all(self, specs: Iterable[Deployment]) -> list[DeployedVersion]:
        """Deploy several versions; targets that can start them in parallel override this.

        Raises ``DeployError``; versions deployed before the failure may keep running.
        """
        return [self.deploy(spec) for spec in specs]

    @abstractmethod
    def set_traffic(self, model: str, shares: Mapping[int, int]) -> None:
        """Set each version's percent of ``model``'s traffic (see :func:`validate_traffic`).

        Raises ``InvalidTraffic`` or ``VersionNotDeployed``.
        """

    @abstractmethod
    def status(self, model: str | None = None) -> list[DeployedVersion]:
        """What runs, for one model or all, ordered by model then stage. Raises ``DeployError``."""

    @abstractmethod
    def remove(self, model: str, version: int | None = None) -> list[DeployedVersion]:
        """Stop one version, or all of ``model``'s when ``version`` is None; return what stopped.

        The removed versions' traffic goes to the champion (see :func:`rebalance_traffic`).
        Raises ``VersionNotDeployed`` for a named version that is not running.
        """

    def traffic(self, model: str) -> dict[int, int]:
        """The current shares of ``model`` (version -> percent), as the gateway reads them."""
        return {d.version: d.traffic for d in self.status(model)}


# --- traffic rules (pure) --------------------------------------------------------------------


def validate_traffic(
    model: str, shares: Mapping[int, int], stages: Mapping[int, Stage]
) -> dict[int, int]:
    """Check ``shares`` against the deployed versions' ``stages``; return a share for each.

    Versions left out get 0, shadows always 0. Raises ``VersionNotDeployed`` for a version not in
    ``stages``, ``InvalidTraffic`` for a share outside 0..100, a share for a shadow, or answering
    versions whose shares do not sum to 100.
    """
    for version in shares:
        if version not in stages:
            raise VersionNotDeployed(model, version, stages)
    given = dict(shares)
    for version, percent in given.items():
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            raise InvalidTraffic(model, f"v{version} has {percent!r}, not 0..100", given)
        if stages[version] is Stage.SHADOW and percent:
            raise InvalidTraffic(model, f"v{version} is a shadow: it is mirrored, give it 0", given)
    total = sum(p for v, p in given.items() if stages[v] is not Stage.SHADOW)
    if total != 100:
        raise InvalidTraffic(model, f"answering versions sum to {total}, not 100", given)
    return {version: given.get(version, 0) for version in stages}


def default_traffic(model: str, stages: Mapping[int, Stage], canary_percent: int) -> dict[int, int]:
    """The shares a fresh rollout starts with: canary ``canary_percent``, champion the rest.

    Raises ``InvalidTraffic`` when ``canary_percent`` is outside 0..100.
    """
    if not 0 <= canary_percent <= 100:
        raise InvalidTraffic(model, f"canary share {canary_percent} is not 0..100", {})
    shares = {v: 0 for v in stages}
    canaries = [v for v, s in stages.items() if s is Stage.CANARY]
    champions = [v for v, s in stages.items() if s is Stage.CHAMPION]
    if canaries and champions:
        shares[min(canaries)] = canary_percent
        shares[min(champions)] = 100 - canary_percent
    return rebalance_traffic(shares, stages)


def rebalance_traffic(shares: Mapping[int, int], stages: Mapping[int, Stage]) -> dict[int, int]:
    """Make ``shares`` valid for the versions in ``stages`` after one came, left or changed stage.

    Versions gone are dropped, shadows get 0, and whatever is missing from 100 goes to the champion
    (else to the answering version with the largest share), so traffic never points at nothing.
    """
    result = {
        v: 0 if stage is Stage.SHADOW else max(0, int(shares.get(v, 0)))
        for v, stage in stages.items()
    }
    answering = sorted(v for v, stage in stages.items() if stage is not Stage.SHADOW)
    if not answering:
        return result
    missing = 100 - sum(result[v] for v in answering)
    if missing == 0:
        return result
    receiver = _traffic_receiver(answering, result, stages)
    if missing > 0:
        result[receiver] += missing
        return result
    # Over 100 only from a hand-edited file: start again from the receiver alone.
    return {v: 100 if v == receiver else 0 for v in stages}


def _traffic_receiver(
    answering: list[int], shares: Mapping[int, int], stages: Mapping[int, Stage]
) -> int:
    champions = [v for v in answering if stages[v] is Stage.CHAMPION]
    if champions:
        return max(champions)
    return max(answering, key=lambda v: (shares[v], -v))


def serving_plan(model: str, holders: Mapping[Stage, int]) -> dict[int, Stage]:
    """Which versions to run, from the version holding each serving stage (alias).

    A version holding two aliases runs once, as the higher stage. Raises ``NothingToServe`` when
    no version is champion: nothing would answer.
    """
    if Stage.CHAMPION not in holders:
        raise NothingToServe(model)
    plan: dict[int, Stage] = {}
    for stage in SERVING_STAGES:  # champion first, so it wins a version held twice
        version = holders.get(stage)
        if version is not None:
            plan.setdefault(version, stage)
    return plan


def roll_out(
    target: DeployTarget, model: str, specs: list[Deployment], *, canary_percent: int
) -> list[DeployedVersion]:
    """Make ``target`` run exactly ``specs`` for ``model``: deploy, shift traffic, then remove
    the versions no longer wanted, in that order so requests always have somewhere to go.

    Raises ``DeployError`` (``InvalidTraffic`` for a bad ``canary_percent``, before any change).
    """
    shares = default_traffic(model, {s.version: s.stage for s in specs}, canary_percent)
    before = target.status(model)
    target.deploy_all(specs)
    target.set_traffic(model, shares)
    for stale in before:
        if stale.version not in shares:
            target.remove(model, stale.version)
    return target.status(model)


def sort_key(deployed: DeployedVersion) -> tuple[str, int, int]:
    """Order for listings: by model, then champion, canary, shadow, then version."""
    return (deployed.model, STAGE_ORDER.get(deployed.stage, len(STAGE_ORDER)), deployed.version)


# --- the table of targets --------------------------------------------------------------------

T = TypeVar("T", bound=DeployTarget)

# Built-in targets by name -> the module that registers them. Importing lazily keeps each target's
# SDK (kubernetes, boto3, google-cloud, azure) out of processes that never use it.
BUILTIN_TARGETS: dict[str, str] = {
    "local": "infra.local.target",
    "kubernetes": "infra.kubernetes.target",
    "aws": "infra.aws.target",
    "gcp": "infra.gcp.target",
    "azure": "infra.azure.target",
}
_registered: dict[str, type[DeployTarget]] = {}
# The top-level modules of the targets' SDKs (the ``cloud`` extra), for a clear error without it.
SDK_PACKAGES = frozenset({"kubernetes", "boto3", "botocore", "google", "azure"})


def register_target(name: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: make a ``DeployTarget`` subclass available to :func:`get_target`."""

    def decorator(cls: type[T]) -> type[T]:
        existing = _registered.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"deploy target {name!r} is already registered by {existing!r}")
        cls.name = name
        _registered[name] = cls
        return cls

    return decorator


def known_targets() -> list[str]:
    """Every name :func:`get_target` accepts."""
    return sorted(set(BUILTIN_TARGETS) | set(_registered))


def get_target(name: str, settings: Settings) -> DeployTarget:
    """The deploy target registered as ``name``, built from ``settings``.

    Raises ``UnknownTarget`` (listing the known names) when no target has that name.
    """
    try:
        if name not in _registered and name in BUILTIN_TARGETS:
            importlib.import_module(BUILTIN_TARGETS[name])
        cls = _registered.get(name)
        if cls is None:
            raise UnknownTarget(name, known_targets())
        return cls(settings)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in SDK_PACKAGES:
            raise
        raise TargetConfigError(
            name,
            f"its SDK is not installed (no module {exc.name!r})",
            hint="pip install 'modelyard[cloud]'",
        ) from exc
