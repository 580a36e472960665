"""What one model's endpoint runs, as SageMaker describes it: versions, stages, weights, state.

Pure: built from ``describe_endpoint``, ``describe_endpoint_config`` and the Models' tags, which
``endpoint.py`` fetches.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from infra.aws.naming import TAG_BENTO, TAG_STAGE, version_of_variant
from infra.targets import DeployState
from registry.types import Stage

ENDPOINT_STATES = {
    "InService": DeployState.RUNNING,
    "SystemUpdating": DeployState.RUNNING,  # AWS patching: the endpoint still answers
    "Creating": DeployState.STARTING,
    "Updating": DeployState.STARTING,
    "RollingBack": DeployState.STARTING,
    "Failed": DeployState.FAILED,
    "UpdateRollbackFailed": DeployState.FAILED,
    "OutOfService": DeployState.CRASHED,
    "Deleting": DeployState.CRASHED,
}
VARIANT_STARTING = {"Creating", "Updating", "ActivatingTraffic"}


@dataclass(frozen=True)
class RunningVariant:
    """One version as the endpoint runs it."""

    version: int
    stage: Stage
    model_name: str
    bento_tag: str
    weight: float  # SageMaker's weight; a shadow slot mirrors and has none of its own
    shadow_slot: bool = False
    statuses: tuple[str, ...] = ()


@dataclass(frozen=True)
class EndpointView:
    """One model's endpoint as SageMaker describes it."""

    name: str
    arn: str
    status: str
    config_name: str
    variants: tuple[RunningVariant, ...]
    failure_reason: str = ""

    def by_version(self) -> dict[int, RunningVariant]:
        return {v.version: v for v in self.variants}

    def stages(self) -> dict[int, Stage]:
        return {v.version: v.stage for v in self.variants}

    def shares(self) -> dict[int, int]:
        """Each version's percent of the traffic: answering variants' weights as whole percents
        summing to 100, shadows 0."""
        answering = {
            v.version: v.weight
            for v in self.variants
            if v.stage is not Stage.SHADOW and not v.shadow_slot
        }
        percents = percents_from_weights(answering)
        return {v.version: percents.get(v.version, 0) for v in self.variants}

    def layout(self) -> Layout:
        """The variant set this endpoint runs."""
        production = {v.version: v.model_name for v in self.variants if not v.shadow_slot}
        weights = {v.version: v.weight for v in self.variants if not v.shadow_slot}
        shadows = {v.version: v.model_name for v in self.variants if v.shadow_slot}
        return Layout(production, shadows, weights)


def build_view(
    endpoint: Mapping[str, Any],
    config: Mapping[str, Any],
    model_tags: Mapping[str, Mapping[str, str]],
) -> EndpointView:
    """An :class:`EndpointView` from ``describe_endpoint``, ``describe_endpoint_config`` of the
    endpoint's config, and the tags of each SageMaker Model it names (by model name).

    Variants not named ``v<N>`` are not Modelyard's and are left out. While an endpoint is being
    created SageMaker may describe no variants yet: the config's are taken instead.
    """
    configured = {
        spec["VariantName"]: spec
        for key in ("ProductionVariants", "ShadowProductionVariants")
        for spec in config.get(key, [])
    }
    variants: list[RunningVariant] = []
    for key, shadow_slot in (("ProductionVariants", False), ("ShadowProductionVariants", True)):
        for summary in endpoint.get(key) or config.get(key, []):
            name = summary["VariantName"]
            version = version_of_variant(name)
            if version is None:
                continue
            spec = configured.get(name, {})
            model = spec.get("ModelName", "")
            tags = model_tags.get(model, {})
            variants.append(
                RunningVariant(
                    version=version,
                    stage=_stage(tags.get(TAG_STAGE), shadow_slot),
                    model_name=model,
                    bento_tag=tags.get(TAG_BENTO, ""),
                    weight=_weight(summary, spec),
                    shadow_slot=shadow_slot,
                    statuses=tuple(s.get("Status", "") for s in summary.get("VariantStatus", [])),
                )
            )
    return EndpointView(
        name=endpoint["EndpointName"],
        arn=endpoint.get("EndpointArn", ""),
        status=endpoint.get("EndpointStatus", ""),
        config_name=endpoint.get("EndpointConfigName", ""),
        variants=tuple(sorted(variants, key=lambda v: v.version)),
        failure_reason=endpoint.get("FailureReason", ""),
    )


def _stage(recorded: str | None, shadow_slot: bool) -> Stage:
    if recorded in {s.value for s in Stage}:
        return Stage(recorded)
    return Stage.SHADOW if shadow_slot else Stage.CANDIDATE


def _weight(summary: Mapping[str, Any], spec: Mapping[str, Any]) -> float:
    """The weight SageMaker applies now, else the one it moves to, else the configured one."""
    for source, key in ((summary, "CurrentWeight"), (summary, "DesiredWeight")):
        if source.get(key) is not None:
            return float(source[key])
    return float(spec.get("InitialVariantWeight", 0.0))


def percents_from_weights(weights: Mapping[int, float]) -> dict[int, int]:
    """SageMaker's relative weights as whole percents summing to 100 (largest remainder, ties to
    the lower version); all zeros when no weight is positive."""
    total = sum(max(w, 0.0) for w in weights.values())
    if total <= 0:
        return {version: 0 for version in weights}
    exact = {v: max(w, 0.0) * 100 / total for v, w in weights.items()}
    percents = {v: int(x) for v, x in exact.items()}
    missing = 100 - sum(percents.values())
    by_remainder = sorted(exact, key=lambda v: (-(exact[v] - percents[v]), v))
    for version in by_remainder[:missing]:
        percents[version] += 1
    return percents


def deploy_state(endpoint_status: str, variant_statuses: Iterable[str]) -> DeployState:
    """A variant's state from its endpoint's status, refined by the variant's own statuses."""
    state = ENDPOINT_STATES.get(endpoint_status, DeployState.STARTING)
    statuses = set(variant_statuses)
    if state is DeployState.RUNNING and statuses & VARIANT_STARTING:
        return DeployState.STARTING
    if state is DeployState.RUNNING and "Deleting" in statuses:
        return DeployState.CRASHED
    return state


def sibling_arn(endpoint_arn: str, resource: str, name: str) -> str:
    """The ARN of another SageMaker resource in the endpoint's account and region:
    ``arn:aws:sagemaker:eu-west-1:123:endpoint/e`` -> ``...:model/{name}``."""
    head = endpoint_arn.rsplit(":", 1)[0]
    return f"{head}:{resource}/{name}"


@dataclass(frozen=True)
class Layout:
    """The variant set of one endpoint config: version -> SageMaker Model, and weights."""

    production: dict[int, str]
    shadow_slot: dict[int, str] = field(default_factory=dict)
    weights: dict[int, float] = field(default_factory=dict)

    def models(self) -> dict[int, str]:
        return {**self.production, **self.shadow_slot}

    def same_variants(self, other: Layout) -> bool:
        """Same variant names in the same slots (what a guarded update requires)."""
        return set(self.production) == set(other.production) and set(self.shadow_slot) == set(
            other.shadow_slot
        )

    def same_models(self, other: Layout) -> bool:
        """Same variants running the same Models: no new endpoint config is needed."""
        return self.production == other.production and self.shadow_slot == other.shadow_slot
