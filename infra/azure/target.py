"""The ``azure`` deploy target: each model is an Azure ML managed online endpoint, each version a
deployment on it running the version's image; the endpoint's own traffic split carries the rollout.

- ``deploy``: the endpoint (key auth) is created on the model's first deploy; a version's
  deployment runs ``spec.image`` as a custom container (an anonymous Environment with BentoML's
  port and routes, see :mod:`infra.azure.plan`) on ``settings.azure.instance_type`` x
  ``instance_count``. Then one endpoint update records its stage and routes: the first answering
  version gets 100%, a later one 0, a shadow ``settings.azure.shadow_mirror_percent`` of the
  requests as ``mirror_traffic`` (Azure drops the shadow's answers).
- ``set_traffic``: one endpoint update of ``traffic``.
- ``remove``: traffic and mirror leave the version first (an endpoint update; Azure refuses to
  delete a deployment that still gets traffic), then the deployment is deleted; removing a
  model deletes its endpoint, and with it every deployment.
- ``status`` reads the endpoint and its deployments. Every version's URL is the endpoint's
  ``scoring_uri``: Azure routes by the traffic split, and the header
  ``azureml-model-deployment: version-N`` reaches one version. Calls need the endpoint's key
  (``MLClient.online_endpoints.get_keys``).

Every call waits for Azure's long-running operation, up to ``lro_timeout`` seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from infra.azure.client import azure_errors, build_ml_client, call, run_operation
from infra.azure.plan import (
    BENTO_TAG,
    IMAGE_TAG,
    MODEL_TAG,
    EndpointState,
    check_mirror_percent,
    deploy_state,
    deployment_name,
    deployment_tags,
    endpoint_name,
    endpoint_tags,
    inference_config,
    read_endpoint_state,
    stage_from_tags,
    traffic_by_deployment,
    version_of,
    with_traffic,
    with_version,
    without_versions,
)
from infra.errors import DeployError, ImageRequired, TargetConfigError, VersionNotDeployed
from infra.targets import (
    DeployedVersion,
    Deployment,
    DeployState,
    DeployTarget,
    register_target,
    sort_key,
    validate_traffic,
)
from registry.types import Stage

if TYPE_CHECKING:
    from azure.ai.ml import MLClient
    from azure.ai.ml.entities import OnlineDeployment, OnlineEndpoint
    from azure.core.credentials import TokenCredential

    from modelyard.settings import Settings

logger = logging.getLogger(__name__)
DEFAULT_LRO_TIMEOUT = 1800.0  # a new deployment pulls the image and starts: often 5-15 minutes


@register_target("azure")
class AzureTarget(DeployTarget):
    """Versions served by Azure ML managed online deployments, one endpoint per model."""

    needs_image = True

    def __init__(
        self,
        settings: Settings,
        *,
        credential: TokenCredential | None = None,
        ml_client: MLClient | None = None,
        lro_timeout: float = DEFAULT_LRO_TIMEOUT,
    ) -> None:
        """Raises ``TargetConfigError`` when no workspace is configured (unless ``ml_client``
        is given); credentials are looked for on the first call."""
        super().__init__(settings)
        self.ml_client = ml_client or build_ml_client(settings, credential)
        self.lro_timeout = lro_timeout

    # --- the port ---------------------------------------------------------------------------

    def deploy(self, spec: Deployment) -> DeployedVersion:
        """Run ``spec``'s image as a deployment, then record its stage and routes.

        Idempotent: a deployment already running the same image is kept (only its stage and
        routes change). Raises ``ImageRequired``, ``DeployError`` for a ``working_dir``,
        ``TargetConfigError`` when the endpoint's name is another's or a shadow's mirror percent
        is more than Azure mirrors, ``CredentialsNotFound``,
        ``CloudCallFailed`` (with Azure's message, e.g. a deployment that failed to start).
        """
        _check_spec(spec)
        percent = self.settings.azure.shadow_mirror_percent
        if spec.stage is Stage.SHADOW:
            check_mirror_percent(percent)  # before anything is created
        endpoint = self._get_endpoint(spec.model)
        if endpoint is None:
            self._create_endpoint(spec.model)
        elif not _owned_by(endpoint, spec.model):
            raise _taken(endpoint, spec.model)
        existing = self._get_deployment(spec.model, spec.version)
        if not _runs(existing, spec):
            self._create_deployment(spec)
        self._route(spec.model, lambda s: with_version(s, spec.version, spec.stage, percent))
        return self._deployed(spec.model, spec.version)

    def set_traffic(self, model: str, shares: Mapping[int, int]) -> None:
        """Set the endpoint's ``traffic``. Raises ``InvalidTraffic``, ``VersionNotDeployed``,
        ``CloudCallFailed``."""
        self._route(model, lambda s: with_traffic(s, validate_traffic(model, shares, s.stages)))

    def status(self, model: str | None = None) -> list[DeployedVersion]:
        """What Azure runs for ``model`` (or every Modelyard endpoint of the workspace).

        Raises ``CredentialsNotFound``, ``CloudCallFailed``.
        """
        if model is not None:
            endpoint = self._get_endpoint(model)
            endpoints = [endpoint] if endpoint is not None and _owned_by(endpoint, model) else []
        else:
            listed = call("list endpoints", lambda: list(self.ml_client.online_endpoints.list()))
            endpoints = [e for e in listed if (e.tags or {}).get(MODEL_TAG)]
        found = [d for endpoint in endpoints for d in self._versions_of(endpoint)]
        return sorted(found, key=sort_key)

    def remove(self, model: str, version: int | None = None) -> list[DeployedVersion]:
        """Delete one version (its traffic goes to the champion first), or the model's endpoint.

        Raises ``VersionNotDeployed``, ``CloudCallFailed``.
        """
        endpoint = self._get_endpoint(model)
        if endpoint is None or not _owned_by(endpoint, model):
            if version is None:
                return []
            raise VersionNotDeployed(model, version, [])
        running = self._versions_of(endpoint)
        if version is None:
            self._delete_endpoint(model)
            return running
        removed = [d for d in running if d.version == version]
        if not removed:
            raise VersionNotDeployed(model, version, [d.version for d in running])
        percent = self.settings.azure.shadow_mirror_percent
        self._route(model, lambda s: without_versions(s, [version], percent))
        run_operation(
            f"delete {model} v{version}",
            lambda: self.ml_client.online_deployments.begin_delete(
                name=deployment_name(version), endpoint_name=endpoint_name(model)
            ),
            self.lro_timeout,
        )
        return removed

    # --- the endpoint's routes --------------------------------------------------------------

    def _route(self, model: str, change: Callable[[EndpointState], EndpointState]) -> None:
        """Apply ``change`` to the endpoint's stages and routes; one update when it changes."""
        endpoint = self._get_endpoint(model)
        if endpoint is None or not _owned_by(endpoint, model):
            change(EndpointState())  # raises VersionNotDeployed / InvalidTraffic as it should
            return
        state, _ = self._read(endpoint, model)
        wanted = change(state)
        traffic = traffic_by_deployment(wanted.traffic)
        mirror = traffic_by_deployment(wanted.mirror)
        tags = endpoint_tags(model, wanted, endpoint.tags)
        if (traffic, mirror, tags) == (
            _nonzero(endpoint.traffic),
            _nonzero(endpoint.mirror_traffic),
            dict(endpoint.tags or {}),
        ):
            return
        endpoint.traffic, endpoint.mirror_traffic, endpoint.tags = traffic, mirror, tags
        logger.info("azure: %s traffic %s mirror %s", endpoint.name, traffic, mirror)
        run_operation(
            f"update the routes of {model}",
            lambda: self.ml_client.online_endpoints.begin_create_or_update(endpoint),
            self.lro_timeout,
        )

    # --- Azure resources --------------------------------------------------------------------

    def _get_endpoint(self, model: str) -> OnlineEndpoint | None:
        """The model's endpoint, None when there is none (it may be another's: see
        :func:`_owned_by`)."""
        from azure.core.exceptions import ResourceNotFoundError

        name = endpoint_name(model)
        with azure_errors(f"read endpoint {name}"):
            try:
                return self.ml_client.online_endpoints.get(name)
            except ResourceNotFoundError:
                return None

    def _create_endpoint(self, model: str) -> None:
        from azure.ai.ml.entities import ManagedOnlineEndpoint

        endpoint = ManagedOnlineEndpoint(
            name=endpoint_name(model),
            auth_mode="key",
            description=f"Modelyard: model {model}",
            tags={MODEL_TAG: model},
        )
        run_operation(
            f"create endpoint {endpoint.name}",
            lambda: self.ml_client.online_endpoints.begin_create_or_update(endpoint),
            self.lro_timeout,
        )

    def _delete_endpoint(self, model: str) -> None:
        name = endpoint_name(model)
        run_operation(
            f"delete endpoint {name}",
            lambda: self.ml_client.online_endpoints.begin_delete(name=name),
            self.lro_timeout,
        )

    def _deployments(self, model: str) -> list[OnlineDeployment]:
        name = endpoint_name(model)
        return call(
            f"list deployments of {name}",
            lambda: list(self.ml_client.online_deployments.list(endpoint_name=name)),
        )

    def _get_deployment(self, model: str, version: int) -> OnlineDeployment | None:
        wanted = deployment_name(version)
        return next((d for d in self._deployments(model) if d.name == wanted), None)

    def _create_deployment(self, spec: Deployment) -> None:
        from azure.ai.ml.entities import Environment, ManagedOnlineDeployment

        deployment = ManagedOnlineDeployment(
            name=deployment_name(spec.version),
            endpoint_name=endpoint_name(spec.model),
            # Anonymous: Azure names it by a hash of image and routes, so it is never edited.
            environment=Environment(image=spec.image, inference_config=inference_config()),
            instance_type=self.settings.azure.instance_type,
            instance_count=self.settings.azure.instance_count,
            tags=deployment_tags(spec),
        )
        run_operation(
            f"deploy {spec.model} v{spec.version}",
            lambda: self.ml_client.online_deployments.begin_create_or_update(deployment),
            self.lro_timeout,
        )

    # --- reading back -----------------------------------------------------------------------

    def _read(
        self, endpoint: OnlineEndpoint, model: str
    ) -> tuple[EndpointState, dict[int, OnlineDeployment]]:
        """The endpoint's routing state and its Modelyard deployments by version."""
        deployments = {
            v: d for d in self._deployments(model) if (v := version_of(d.name or "")) is not None
        }
        state = read_endpoint_state(
            endpoint.tags,
            endpoint.traffic,
            endpoint.mirror_traffic,
            {v: stage_from_tags(d.tags) for v, d in deployments.items()},
        )
        return state, deployments

    def _versions_of(self, endpoint: OnlineEndpoint) -> list[DeployedVersion]:
        model = str((endpoint.tags or {})[MODEL_TAG])
        state, deployments = self._read(endpoint, model)
        return [
            DeployedVersion(
                model=model,
                version=version,
                stage=state.stages[version],
                url=str(endpoint.scoring_uri or ""),
                pid=None,
                state=deploy_state(deployment.provisioning_state),
                traffic=state.traffic.get(version, 0),
                bento_tag=str((deployment.tags or {}).get(BENTO_TAG, "")),
            )
            for version, deployment in sorted(deployments.items())
        ]

    def _deployed(self, model: str, version: int) -> DeployedVersion:
        for deployed in self.status(model):
            if deployed.version == version:
                return deployed
        raise VersionNotDeployed(model, version, [d.version for d in self.status(model)])


def _check_spec(spec: Deployment) -> None:
    if spec.image is None:
        raise ImageRequired("azure", spec.model, spec.version)
    if spec.working_dir is not None:
        raise DeployError(
            f"the azure target runs images, not folders: {spec.model} v{spec.version} "
            f"has working_dir {spec.working_dir}"
        )


def _runs(existing: OnlineDeployment | None, spec: Deployment) -> bool:
    """The deployment exists, runs ``spec``'s image, and has not failed."""
    if existing is None:
        return False
    same_image = (existing.tags or {}).get(IMAGE_TAG) == spec.image
    return same_image and deploy_state(existing.provisioning_state) is not DeployState.FAILED


def _owned_by(endpoint: OnlineEndpoint, model: str) -> bool:
    return (endpoint.tags or {}).get(MODEL_TAG) == model


def _taken(endpoint: OnlineEndpoint, model: str) -> TargetConfigError:
    owner = (endpoint.tags or {}).get(MODEL_TAG)
    held_by = f"Modelyard model {owner!r}" if owner else "something outside Modelyard"
    return TargetConfigError(
        "azure",
        f"endpoint {endpoint.name!r} (for model {model!r}) already exists and serves {held_by}",
        hint="delete that endpoint, or register the model under another name",
    )


def _nonzero(shares: Mapping[str, Any] | None) -> dict[str, int]:
    return {k: int(v) for k, v in (shares or {}).items() if v and int(v)}
