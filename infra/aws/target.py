"""The ``aws`` deploy target: one SageMaker real-time endpoint per model, one variant per version.

A version is a SageMaker Model (its image, the execution role, and tags holding the model,
version, stage and Bento) and a variant ``v<N>`` of the model's endpoint. Traffic shares are the
variants' weights, changed in place with ``update_endpoint_weights_and_capacities``; adding,
removing or re-imaging a version is a new endpoint config rolled out by ``update_endpoint``
(blue/green, guarded by the variants' CloudWatch alarms when the variant names stay the same).
Everything ``status`` reports is read back from SageMaker.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from infra.aws import guards
from infra.aws.clients import TARGET, AwsClients, aws_errors
from infra.aws.endpoint import (
    await_config,
    delete_if_present,
    describe,
    managed_endpoints,
    read_endpoint,
    resource_tags,
    wait_deleted,
    wait_in_service,
)
from infra.aws.naming import (
    MANAGED_BY,
    TAG_MANAGED,
    TAG_MODEL,
    TAG_STAGE,
    alarm_name,
    config_name,
    dict_to_tags,
    endpoint_filter,
    endpoint_name,
    invoke_url,
    model_name,
)
from infra.aws.plan import (
    DEFAULT_BAKE_SECONDS,
    create_model_request,
    endpoint_config_request,
    plan_layout,
    update_endpoint_request,
    weights_request,
)
from infra.aws.view import EndpointView, Layout, RunningVariant, deploy_state
from infra.errors import (
    DeployError,
    ImageRequired,
    TargetConfigError,
    VersionNotDeployed,
)
from infra.targets import (
    DeployedVersion,
    Deployment,
    DeployTarget,
    rebalance_traffic,
    register_target,
    sort_key,
    validate_traffic,
)
from registry.types import Stage

if TYPE_CHECKING:
    import boto3

    from modelyard.settings import Settings

logger = logging.getLogger(__name__)
IN_TRANSITION = {"Creating", "Updating", "SystemUpdating", "RollingBack"}
ROLE_HINT = (
    "set MODELYARD_AWS__ROLE_ARN to an IAM role SageMaker can assume to pull the image from ECR "
    "and write logs, e.g. arn:aws:iam::123456789012:role/modelyard-sagemaker"
)


@register_target("aws")
class AwsTarget(DeployTarget):
    """Versions served by SageMaker real-time endpoints, traffic split by variant weights."""

    needs_image = True

    def __init__(
        self,
        settings: Settings,
        *,
        session: boto3.Session | None = None,
        wait_delay: int = 30,
        wait_attempts: int = 120,
        bake_seconds: int = DEFAULT_BAKE_SECONDS,
    ) -> None:
        """``session`` replaces boto3's default one (tests); the waits poll SageMaker every
        ``wait_delay`` seconds, ``wait_attempts`` times. Raises ``TargetConfigError`` without a
        region."""
        super().__init__(settings)
        self.aws = settings.aws
        self.clients = AwsClients(settings, session)
        self.waiter_config = {"Delay": wait_delay, "MaxAttempts": wait_attempts}
        self.bake_seconds = bake_seconds

    def endpoint_of(self, model: str) -> str:
        """The name of the endpoint serving ``model``."""
        return endpoint_name(model, self.aws.endpoint_prefix)

    # --- the port ---------------------------------------------------------------------------

    def deploy(self, spec: Deployment) -> DeployedVersion:
        """Run ``spec``'s image as a variant of its model's endpoint; see ``deploy_all``."""
        return self.deploy_all([spec])[0]

    def deploy_all(self, specs: Iterable[Deployment]) -> list[DeployedVersion]:
        """Deploy the versions, with one endpoint update per model, and wait until in service.

        Raises ``ImageRequired``, ``TargetConfigError`` (no execution role), ``DeployError`` (a
        working_dir, a version given twice), ``CloudCallFailed`` (SageMaker refused, the update
        failed or was rolled back), ``CredentialsNotFound``.
        """
        wanted = list(specs)
        _check_specs(self.name, wanted)
        if wanted and not self.aws.role_arn:
            raise TargetConfigError(TARGET, "no SageMaker execution role is set", hint=ROLE_HINT)
        models = list(dict.fromkeys(spec.model for spec in wanted))
        for model in models:
            self._deploy_model(model, [s for s in wanted if s.model == model])
        found = {(d.model, d.version): d for m in models for d in self.status(m)}
        missing = [s for s in wanted if (s.model, s.version) not in found]
        if missing:
            raise DeployError(f"{missing[0].model} v{missing[0].version} is not on its endpoint")
        return [found[(s.model, s.version)] for s in wanted]

    def set_traffic(self, model: str, shares: Mapping[int, int]) -> None:
        """Set the variants' weights to ``shares``. Raises ``InvalidTraffic``,
        ``VersionNotDeployed``, ``CloudCallFailed``."""
        view = self._settled(self.endpoint_of(model))
        stages = view.stages() if view else {}
        full = validate_traffic(model, shares, stages)
        if view is not None:
            self._set_weights(view, full)

    def status(self, model: str | None = None) -> list[DeployedVersion]:
        """What SageMaker runs, for one model or every endpoint Modelyard made.

        Raises ``CloudCallFailed`` or ``CredentialsNotFound``.
        """
        if model is not None:
            endpoints = [(model, self.endpoint_of(model))]
        else:
            prefix = endpoint_filter(self.aws.endpoint_prefix)
            endpoints = list(managed_endpoints(self.clients, prefix))
        found: list[DeployedVersion] = []
        for name, endpoint in endpoints:
            view = read_endpoint(self.clients, endpoint)
            if view is not None:
                found += self._deployed(name, view)
        return sorted(found, key=sort_key)

    def remove(self, model: str, version: int | None = None) -> list[DeployedVersion]:
        """Take one version (or all) off the endpoint: traffic first goes to the champion,
        then the variant goes; the last one takes the endpoint with it.

        Raises ``VersionNotDeployed``, ``CloudCallFailed``.
        """
        view = self._settled(self.endpoint_of(model))
        if view is not None:
            self._check_ours(model, view)
        running = view.by_version() if view else {}
        if version is not None and version not in running:
            raise VersionNotDeployed(model, version, running)
        if view is None:
            return []
        chosen = {version} if version is not None else set(running)
        removed = [d for d in self._deployed(model, view) if d.version in chosen]
        remaining = {v: r for v, r in running.items() if v not in chosen}
        if not remaining:
            self._delete_endpoint(view)
            return removed
        _check_readable(view)
        stages = {v: r.stage for v, r in remaining.items()}
        shares = rebalance_traffic(view.shares(), stages)
        if any(d.traffic for d in removed):
            self._set_weights(view, {**shares, **dict.fromkeys(chosen, 0)})
        models = {v: r.model_name for v, r in remaining.items()}
        self._change_layout(model, view, plan_layout(models, stages, shares))
        return removed

    # --- deploying --------------------------------------------------------------------------

    def _deploy_model(self, model: str, specs: list[Deployment]) -> None:
        endpoint = self.endpoint_of(model)
        view = self._settled(endpoint)
        if view is not None:
            self._check_ours(model, view)
        if view is not None and view.status in {"Failed", "UpdateRollbackFailed"}:
            logger.warning(
                "endpoint %s is %s (%s): recreating it", endpoint, view.status, view.failure_reason
            )
            self._delete_endpoint(view)
            view = None
        running = view.by_version() if view else {}
        if view is not None:
            _check_readable(view)
        models = {v: r.model_name for v, r in running.items()}
        stages = {v: r.stage for v, r in running.items()}
        for spec in specs:
            models[spec.version] = self._ensure_model(endpoint, spec, running.get(spec.version))
            stages[spec.version] = spec.stage
        # Versions already there keep their shares; a new one gets 0 unless nothing else answers.
        current = view.shares() if view else {}
        shares = rebalance_traffic({v: current.get(v, 0) for v in models}, stages)
        layout = plan_layout(models, stages, shares)
        if view is None:
            self._create_endpoint(model, endpoint, layout)
        elif not layout.same_models(view.layout()):
            self._change_layout(model, view, layout)
        else:  # same variants; a version that became a shadow must stop answering
            self._send_weights(view, layout.weights)

    def _ensure_model(self, endpoint: str, spec: Deployment, running: RunningVariant | None) -> str:
        """The SageMaker Model running ``spec``'s image, created when new, its stage tag set."""
        assert spec.image is not None  # checked by _check_specs
        name = model_name(endpoint, spec.version, spec.image)
        if running is not None and running.model_name == name:
            if running.stage is not spec.stage:
                self._tag_stage(endpoint, name, spec.stage)
            return name
        request = create_model_request(
            name,
            spec.image,
            str(self.aws.role_arn),
            spec.model,
            spec.version,
            spec.stage,
            spec.bento_tag,
        )
        with aws_errors(f"create model {name}"):
            self.clients.sagemaker.create_model(**request)
        logger.info("created SageMaker model %s for %s v%s", name, spec.model, spec.version)
        return name

    def _tag_stage(self, endpoint: str, model: str, stage: Stage) -> None:
        described = describe(self.clients, "describe_model", ModelName=model)
        if described is None:
            raise DeployError(f"SageMaker model {model} of endpoint {endpoint} is gone")
        with aws_errors(f"tag model {model}"):
            self.clients.sagemaker.add_tags(
                ResourceArn=described["ModelArn"], Tags=dict_to_tags({TAG_STAGE: stage.value})
            )

    def _create_endpoint(self, model: str, endpoint: str, layout: Layout) -> None:
        guards.put_alarms(self.clients, endpoint, layout.production, self.aws.alarm_error_rate)
        config = self._create_config(model, endpoint, layout)
        tags = dict_to_tags({TAG_MANAGED: MANAGED_BY, TAG_MODEL: model})
        with aws_errors(f"create endpoint {endpoint}"):
            self.clients.sagemaker.create_endpoint(
                EndpointName=endpoint, EndpointConfigName=config, Tags=tags
            )
        await_config(self.clients, endpoint, config, self.waiter_config)
        guards.ensure_scaling(self.clients, endpoint, layout.production, self.aws)

    def _change_layout(self, model: str, view: EndpointView, layout: Layout) -> None:
        """Roll ``view``'s endpoint out to ``layout`` with a new endpoint config, then clean up
        what the old one used (autoscaling, alarms, config, Models)."""
        current = view.layout()
        leaving = set(current.production) - set(layout.production)
        guarded = layout.same_variants(current)
        guards.put_alarms(self.clients, view.name, layout.production, self.aws.alarm_error_rate)
        guards.drop_scaling(self.clients, view.name, leaving)
        config = self._create_config(model, view.name, layout)
        alarms = [alarm_name(view.name, v) for v in layout.production] if guarded else []
        request = update_endpoint_request(
            view.name, config, guarded=guarded, alarms=alarms, bake_seconds=self.bake_seconds
        )
        with aws_errors(f"update endpoint {view.name}"):
            self.clients.sagemaker.update_endpoint(**request)
        await_config(self.clients, view.name, config, self.waiter_config)
        guards.ensure_scaling(self.clients, view.name, layout.production, self.aws)
        guards.drop_alarms(self.clients, view.name, leaving)
        self._delete_config(view.config_name)
        self._delete_models(set(current.models().values()) - set(layout.models().values()))

    def _create_config(self, model: str, endpoint: str, layout: Layout) -> str:
        name = config_name(endpoint, uuid.uuid4().hex[:12])
        with aws_errors(f"create endpoint config {name}"):
            self.clients.sagemaker.create_endpoint_config(
                **endpoint_config_request(name, layout, self.aws, model)
            )
        return name

    def _set_weights(self, view: EndpointView, shares: Mapping[int, int]) -> None:
        """Give the production variants the weights ``shares`` make (shadows 0)."""
        weights = {
            v.version: 0.0 if v.stage is Stage.SHADOW else float(shares.get(v.version, 0))
            for v in view.variants
            if not v.shadow_slot
        }
        self._send_weights(view, weights)

    def _send_weights(self, view: EndpointView, weights: Mapping[int, float]) -> None:
        """Send ``weights`` unless SageMaker already holds them (or none is positive)."""
        if not any(weights.values()) or dict(weights) == view.layout().weights:
            return
        with aws_errors(f"set traffic of {view.name}"):
            self.clients.sagemaker.update_endpoint_weights_and_capacities(
                **weights_request(view.name, weights)
            )
        wait_in_service(self.clients, view.name, self.waiter_config)

    # --- removing ---------------------------------------------------------------------------

    def _delete_endpoint(self, view: EndpointView) -> None:
        layout = view.layout()
        guards.drop_scaling(self.clients, view.name, layout.production)
        with aws_errors(f"delete endpoint {view.name}"):
            self.clients.sagemaker.delete_endpoint(EndpointName=view.name)
        wait_deleted(self.clients, view.name, self.waiter_config)
        self._delete_config(view.config_name)
        self._delete_models(set(layout.models().values()))
        guards.drop_alarms(self.clients, view.name, layout.production)
        logger.info("deleted endpoint %s", view.name)

    def _delete_config(self, name: str) -> None:
        if name:
            delete_if_present(self.clients, "delete_endpoint_config", EndpointConfigName=name)

    def _delete_models(self, names: Iterable[str]) -> None:
        for name in sorted(n for n in names if n):
            delete_if_present(self.clients, "delete_model", ModelName=name)

    # --- reading and waiting ----------------------------------------------------------------

    def _settled(self, endpoint: str) -> EndpointView | None:
        """The endpoint once no create or update is in progress on it (None when absent)."""
        view = read_endpoint(self.clients, endpoint)
        if view is not None and view.status in IN_TRANSITION:
            wait_in_service(self.clients, endpoint, self.waiter_config)
            view = read_endpoint(self.clients, endpoint)
        return view

    def _check_ours(self, model: str, view: EndpointView) -> None:
        """Refuse to change an endpoint Modelyard did not make (it has no managed-by tag)."""
        tags = resource_tags(self.clients, view.arn)
        if tags.get(TAG_MANAGED) != MANAGED_BY:
            raise DeployError(
                f"aws target: endpoint {view.name} for {model!r} exists but was not made by "
                f"Modelyard (no {TAG_MANAGED} tag); it is left alone",
                hint="set MODELYARD_AWS__ENDPOINT_PREFIX (e.g. modelyard-) to keep Modelyard's "
                "endpoints apart from others",
            )

    def _deployed(self, model: str, view: EndpointView) -> list[DeployedVersion]:
        shares = view.shares()
        return [
            DeployedVersion(
                model=model,
                version=v.version,
                stage=v.stage,
                url=invoke_url(
                    self.clients.region, view.name, v.version, shadow_slot=v.shadow_slot
                ),
                pid=None,
                state=deploy_state(view.status, v.statuses),
                traffic=shares.get(v.version, 0),
                bento_tag=v.bento_tag,
            )
            for v in view.variants
        ]


def _check_readable(view: EndpointView) -> None:
    """Refuse to change an endpoint whose variants' Models cannot be told (its config is gone)."""
    if any(not v.model_name for v in view.variants):
        raise DeployError(
            f"aws target: endpoint {view.name} names config {view.config_name}, which is gone "
            "or names no model for one of its variants: its versions cannot be carried over",
            hint="remove the model from the aws target (its endpoint goes), then deploy again",
        )


def _check_specs(target: str, specs: list[Deployment]) -> None:
    """Refuse what a remote target cannot run before anything changes."""
    seen: set[tuple[str, int]] = set()
    for spec in specs:
        if spec.image is None:
            raise ImageRequired(target, spec.model, spec.version)
        if spec.working_dir is not None:
            raise DeployError(
                f"the {target} target runs images, not a working_dir: "
                f"{spec.model} v{spec.version} names {spec.working_dir}"
            )
        key = (spec.model, spec.version)
        if key in seen:
            raise DeployError(f"{spec.model} v{spec.version} is listed twice in one deploy")
        seen.add(key)
