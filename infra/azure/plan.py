"""What a model looks like on Azure ML (pure): names, tags, and the endpoint's routing state.

One managed online endpoint per model, one deployment per version. The endpoint holds what
changes during a rollout, so each change is one endpoint update: ``traffic`` (each answering
version's share), ``mirror_traffic`` (the percent of requests copied to the shadow, whose answers
are dropped) and a tag per version with its current stage. A deployment's own tags say what it
runs (model, version, Bento, image, the stage it was first deployed as); changing them would
mean updating the deployment, which Azure rolls out instance by instance.

Azure routes a request to ``scoring_uri`` by the endpoint's traffic; the header
``azureml-model-deployment: version-3`` sends it to one deployment instead.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from infra.errors import TargetConfigError
from infra.targets import Deployment, DeployState, rebalance_traffic
from registry.types import Stage

MIN_NAME = 3  # endpoint and deployment names: 3 to 32 letters, digits and '-', from a letter
MAX_NAME = 32
DIGEST_CHARS = 6
MAX_MIRROR_PERCENT = 50  # Azure ML mirrors at most half of an endpoint's requests
DEPLOYMENT_PREFIX = "version-"  # "v3" would be too short a name: Azure wants at least 3 chars
DEPLOYMENT_HEADER = "azureml-model-deployment"

# Tags: keys of letters, digits and '-' (Azure forbids <>%&\?/ in tag names).
MODEL_TAG = "modelyard-model"
VERSION_TAG = "modelyard-version"
STAGE_TAG = "modelyard-stage"
BENTO_TAG = "modelyard-bento"
IMAGE_TAG = "modelyard-image"
ENDPOINT_STAGE_TAG = "modelyard-stage-v"  # + version, on the endpoint: the current stage

# The Bento container: BentoML's HTTP server on its default port, with its health routes.
CONTAINER_PORT = 3000
LIVENESS_PATH = "/livez"
READINESS_PATH = "/readyz"
SCORING_PATH = "/predict"  # serving/bento/service.py's predict API

_NOT_NAME = re.compile(r"[^a-z0-9]+")
_NAME = re.compile(r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")
_DEPLOYMENT = re.compile(rf"^{DEPLOYMENT_PREFIX}(\d+)$")

_PROVISIONING_STATES = {
    "succeeded": DeployState.RUNNING,
    "creating": DeployState.STARTING,
    "updating": DeployState.STARTING,
    "scaling": DeployState.STARTING,
    "deleting": DeployState.STARTING,
    "failed": DeployState.FAILED,
    "canceled": DeployState.FAILED,
}


# --- names ------------------------------------------------------------------------------------


def endpoint_name(model: str) -> str:
    """The endpoint of ``model``: a valid Azure ML endpoint name (3-32 characters).

    A name that is already valid, lowercase and short enough is kept (``penguins``). Any other one
    is lowercased, its other characters become ``-``, and a short digest of the exact name is
    appended (``Penguins_V2.final`` -> ``penguins-v2-final-1a2b3c``): endpoint names are
    case-insensitive (they are DNS labels of the scoring URI), so two registry names that differ
    only in case or punctuation would otherwise share one endpoint.
    """
    base = _NOT_NAME.sub("-", model.lower()).strip("-")
    if not base[:1].isalpha():
        base = f"m-{base}".rstrip("-")
    if base == model and MIN_NAME <= len(base) <= MAX_NAME:
        return base
    digest = hashlib.blake2b(model.encode(), digest_size=DIGEST_CHARS // 2).hexdigest()
    return f"{base[: MAX_NAME - DIGEST_CHARS - 1].rstrip('-')}-{digest}"


def deployment_name(version: int) -> str:
    """The deployment of one version: ``version-3``. Raises ``ValueError`` when it cannot fit."""
    name = f"{DEPLOYMENT_PREFIX}{version}"
    if version < 0 or len(name) > MAX_NAME:
        raise ValueError(f"version {version} cannot be named as an Azure ML deployment")
    return name


def version_of(deployment: str) -> int | None:
    """The version a deployment named by :func:`deployment_name` runs, else None."""
    found = _DEPLOYMENT.match(deployment.lower())
    return int(found.group(1)) if found else None


def is_valid_name(name: str) -> bool:
    """Whether Azure ML accepts ``name`` for an endpoint or a deployment."""
    return MIN_NAME <= len(name) <= MAX_NAME and bool(_NAME.match(name))


# --- what a deployment runs -------------------------------------------------------------------


def inference_config() -> dict[str, dict[str, object]]:
    """The custom-container routes of a Bento image (the Environment's ``inference_config``)."""
    return {
        "liveness_route": {"port": CONTAINER_PORT, "path": LIVENESS_PATH},
        "readiness_route": {"port": CONTAINER_PORT, "path": READINESS_PATH},
        "scoring_route": {"port": CONTAINER_PORT, "path": SCORING_PATH},
    }


def deployment_tags(spec: Deployment) -> dict[str, str]:
    """What a deployment runs, as its tags (the image is compared to keep deploys idempotent)."""
    return {
        MODEL_TAG: spec.model,
        VERSION_TAG: str(spec.version),
        STAGE_TAG: spec.stage.value,
        BENTO_TAG: spec.bento_tag,
        IMAGE_TAG: spec.image or "",
    }


def deploy_state(provisioning_state: str | None) -> DeployState:
    """A deployment's ``provisioning_state`` as a ``DeployState`` (unknown ones are starting)."""
    return _PROVISIONING_STATES.get((provisioning_state or "").lower(), DeployState.STARTING)


def check_mirror_percent(percent: int) -> int:
    """``percent`` when Azure can mirror it (1..50), else ``TargetConfigError``."""
    if isinstance(percent, bool) or not 1 <= percent <= MAX_MIRROR_PERCENT:
        raise TargetConfigError(
            "azure",
            f"shadow mirror percent {percent!r} is not 1..{MAX_MIRROR_PERCENT}"
            " (Azure ML mirrors at most half of the requests)",
            hint=f"set MODELYARD_AZURE__SHADOW_MIRROR_PERCENT to 1..{MAX_MIRROR_PERCENT}",
        )
    return percent


# --- the endpoint's routing state -------------------------------------------------------------


@dataclass(frozen=True)
class EndpointState:
    """What Modelyard keeps on one endpoint: each version's stage, shares and mirror percent."""

    stages: Mapping[int, Stage] = field(default_factory=dict)
    traffic: Mapping[int, int] = field(default_factory=dict)
    mirror: Mapping[int, int] = field(default_factory=dict)


def read_endpoint_state(
    endpoint_tags: Mapping[str, str] | None,
    traffic: Mapping[str, int] | None,
    mirror: Mapping[str, int] | None,
    deployed: Mapping[int, Stage],
) -> EndpointState:
    """The state of an endpoint whose ``deployed`` versions carry these stages (their own tag).

    A stage tagged on the endpoint wins over the one the deployment was created with; routing to
    deployments that are not ``deployed`` (not ours, or gone) is left out.
    """
    tagged = _stages_from_tags(endpoint_tags or {})
    stages = {v: tagged.get(v, stage) for v, stage in deployed.items()}
    return EndpointState(
        stages=stages,
        traffic={v: p for v, p in _by_version(traffic).items() if v in stages},
        mirror={v: p for v, p in _by_version(mirror).items() if v in stages},
    )


def with_version(
    state: EndpointState, version: int, stage: Stage, mirror_percent: int
) -> EndpointState:
    """``state`` once ``version`` runs as ``stage``: the first answering version takes all the
    traffic, a new one gets none, and a shadow gets the mirrored requests."""
    stages = {**state.stages, version: stage}
    return _settled(stages, state.traffic, mirror_percent)


def with_traffic(state: EndpointState, shares: Mapping[int, int]) -> EndpointState:
    """``state`` with validated ``shares`` (see ``validate_traffic``)."""
    return EndpointState(state.stages, dict(shares), state.mirror)


def without_versions(
    state: EndpointState, versions: Iterable[int], mirror_percent: int
) -> EndpointState:
    """``state`` once ``versions`` are gone: their traffic goes to the champion, their mirror
    stops (see ``rebalance_traffic``)."""
    gone = set(versions)
    stages = {v: s for v, s in state.stages.items() if v not in gone}
    return _settled(stages, state.traffic, mirror_percent)


def mirror_for(stages: Mapping[int, Stage], mirror_percent: int) -> dict[int, int]:
    """The mirror of an endpoint running ``stages``: ``mirror_percent`` of the requests copied
    to the newest shadow (Azure mirrors to one deployment only). Raises ``TargetConfigError``
    when Azure cannot mirror that much."""
    shadows = [v for v, s in stages.items() if s is Stage.SHADOW]
    if not shadows:
        return {}
    return {max(shadows): check_mirror_percent(mirror_percent)}


def _settled(
    stages: Mapping[int, Stage], traffic: Mapping[int, int], mirror_percent: int
) -> EndpointState:
    return EndpointState(
        stages=dict(stages),
        traffic=rebalance_traffic(traffic, stages),
        mirror=mirror_for(stages, mirror_percent),
    )


# --- to and from the endpoint's fields --------------------------------------------------------


def traffic_by_deployment(shares: Mapping[int, int]) -> dict[str, int]:
    """``{1: 90, 2: 10, 3: 0}`` -> ``{"version-1": 90, "version-2": 10}`` (zeros are left out,
    as Azure stores them)."""
    return {deployment_name(v): p for v, p in sorted(shares.items()) if p}


def endpoint_tags(
    model: str, state: EndpointState, existing: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The endpoint's tags for ``state``: others' tags kept, a stage tag per version."""
    kept = {k: v for k, v in (existing or {}).items() if not k.startswith(ENDPOINT_STAGE_TAG)}
    stages = {f"{ENDPOINT_STAGE_TAG}{v}": s.value for v, s in sorted(state.stages.items())}
    return {**kept, MODEL_TAG: model, **stages}


def _stages_from_tags(tags: Mapping[str, str]) -> dict[int, Stage]:
    stages: dict[int, Stage] = {}
    for key, value in tags.items():
        version = key.removeprefix(ENDPOINT_STAGE_TAG)
        if key.startswith(ENDPOINT_STAGE_TAG) and version.isdigit() and _is_stage(value):
            stages[int(version)] = Stage(value)
    return stages


def stage_from_tags(tags: Mapping[str, str] | None) -> Stage:
    """The stage a deployment was created with (its tag), candidate when it has none."""
    value = (tags or {}).get(STAGE_TAG, "")
    return Stage(value) if _is_stage(value) else Stage.CANDIDATE


def _by_version(shares: Mapping[str, int] | None) -> dict[int, int]:
    found: dict[int, int] = {}
    for name, percent in (shares or {}).items():
        version = version_of(name)
        if version is not None:
            found[version] = int(percent)
    return found


def _is_stage(value: str) -> bool:
    return value in {s.value for s in Stage}
