"""The ``kubernetes`` deploy target: each version a Deployment, Service and autoscaler; the
gateway in front routes by the registry's weights, so a canary needs no service mesh.

Two modes, one behaviour. Bound to a cluster (the default), it calls the API server through the
official client with the standard credential chain (the pod's service account, else the
kubeconfig). Given ``output_dir``, it writes the same objects as YAML files instead (see
:mod:`infra.kubernetes.files`) and reads them back, for ``kubectl apply`` or a GitOps repository.

Each version's traffic share and stage are annotations on its Deployment, so ``status`` reads
the platform and any process (the gateway, another shell) sees the same rollout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra.errors import CloudCallFailed, DeployError, ImageRequired, VersionNotDeployed
from infra.kubernetes.cluster import ClusterApi, connect
from infra.kubernetes.files import ManifestFolder
from infra.kubernetes.manifests import (
    MODEL_KEY,
    MODEL_SELECTOR,
    Manifest,
    gateway_manifests,
    traffic_patch,
    version_manifests,
)
from infra.kubernetes.names import check_namespace, model_slug, version_name
from infra.kubernetes.status import deployed_version, rollout_progress
from infra.targets import (
    DeployedVersion,
    Deployment,
    DeployState,
    DeployTarget,
    rebalance_traffic,
    register_target,
    sort_key,
    validate_traffic,
)

if TYPE_CHECKING:
    from modelyard.settings import Settings

logger = logging.getLogger(__name__)

TARGET = "kubernetes"
VERSION_KINDS = ("HorizontalPodAutoscaler", "Service", "Deployment")  # deletion order


@register_target(TARGET)
class KubernetesTarget(DeployTarget):
    """Versions run as Deployments in ``settings.kubernetes.namespace``, or written as files.

    ``api_client`` (a ``kubernetes.client.ApiClient``) replaces the credential chain, for tests.
    ``deploy`` waits up to ``ready_timeout`` seconds for each rollout (not in file mode).
    """

    needs_image = True

    def __init__(
        self,
        settings: Settings,
        *,
        output_dir: Path | None = None,
        api_client: Any = None,
        ready_timeout: float = 600.0,
        poll_interval: float = 2.0,
    ) -> None:
        super().__init__(settings)
        self.namespace = check_namespace(settings.kubernetes.namespace)
        self.folder = ManifestFolder(output_dir) if output_dir is not None else None
        self.ready_timeout = ready_timeout
        self.poll_interval = poll_interval
        self._api_client = api_client
        self._cluster: ClusterApi | None = None

    @property
    def cluster(self) -> ClusterApi:
        """The API, connected on first use. Raises ``CredentialsNotFound``."""
        if self._cluster is None:
            context = self.settings.kubernetes.context
            client = self._api_client if self._api_client is not None else connect(context)
            self._cluster = ClusterApi(client, context=context)
        return self._cluster

    # --- the port ---------------------------------------------------------------------------

    def deploy(self, spec: Deployment) -> DeployedVersion:
        """Create or update ``spec``'s objects and wait for its rollout; see
        :meth:`DeployTarget.deploy`.

        Raises ``ImageRequired``, ``DeployError`` (a ``working_dir`` spec), ``CloudCallFailed``
        (refused by the API, rollout failed or not ready in time), ``CredentialsNotFound``.
        """
        return self.deploy_all([spec])[0]

    def deploy_all(self, specs: Iterable[Deployment]) -> list[DeployedVersion]:
        """Apply every spec, then wait for each rollout: the cluster starts them in parallel.

        Raises as :meth:`deploy`, and ``DeployError`` for a version given twice.
        """
        wanted = list(specs)
        check_specs(wanted)
        for spec in wanted:
            self._apply(spec)
        for spec in wanted:
            self._await(spec)
        return [self._deployed(spec.model, spec.version) for spec in wanted]

    def set_traffic(self, model: str, shares: Mapping[int, int]) -> None:
        """Write each version's share on its Deployment. Raises ``InvalidTraffic``,
        ``VersionNotDeployed``, ``CloudCallFailed``."""
        current = self._current(model)
        wanted = validate_traffic(model, shares, {v: d.stage for v, d in current.items()})
        self._shift(model, current, wanted)

    def status(self, model: str | None = None) -> list[DeployedVersion]:
        """Every version the cluster (or the folder) holds. Raises ``CloudCallFailed``."""
        if self.folder is not None:
            documents = self.folder.deployments(model)
        else:
            selector = MODEL_SELECTOR
            if model is not None:
                selector += f",{MODEL_KEY}={model_slug(model)}"
            documents = self.cluster.list_deployments(self.namespace, selector)
        found = [deployed_version(document) for document in documents]
        return sorted(
            (d for d in found if d is not None and model in (None, d.model)), key=sort_key
        )

    def remove(self, model: str, version: int | None = None) -> list[DeployedVersion]:
        """Move the versions' traffic to the champion, then delete their objects (or files).

        Raises ``VersionNotDeployed``, ``CloudCallFailed``.
        """
        current = self._current(model)
        if version is not None and version not in current:
            raise VersionNotDeployed(model, version, current)
        chosen = [version] if version is not None else sorted(current)
        remaining = {v: d for v, d in current.items() if v not in chosen}
        stages = {v: d.stage for v, d in remaining.items()}
        self._shift(model, remaining, rebalance_traffic(_shares(remaining), stages))
        for gone in chosen:
            self._delete(model, gone)
        return [current[v] for v in chosen]

    # --- beyond the port --------------------------------------------------------------------

    def apply_gateway(self) -> None:
        """Create or update the Namespace, the gateway and its RBAC (or write their file).

        Needs rights to create Namespaces and Roles, which ``deploy`` does not. Raises
        ``CloudCallFailed``, ``CredentialsNotFound``.
        """
        manifests = gateway_manifests(self.settings)
        if self.folder is not None:
            self.folder.write_gateway(manifests)
            return
        for manifest in manifests:  # the Namespace first
            self.cluster.apply(manifest)

    # --- steps ------------------------------------------------------------------------------

    def _apply(self, spec: Deployment) -> None:
        """Write ``spec``'s objects with its share; rebalance the model's other versions."""
        current = self._current(spec.model)
        stages = {v: d.stage for v, d in current.items()} | {spec.version: spec.stage}
        shares = rebalance_traffic(_shares(current), stages)
        manifests = version_manifests(self.settings.kubernetes, spec, shares[spec.version])
        if self.folder is not None:
            self.folder.write_gateway(gateway_manifests(self.settings))  # a complete folder
            self.folder.write_version(spec.model, spec.version, manifests)
        else:
            for manifest in manifests:
                self.cluster.apply(manifest)
        others = {v: d for v, d in current.items() if v != spec.version}
        self._shift(spec.model, others, {v: shares[v] for v in others})
        logger.info("applied %s v%s as %s", spec.model, spec.version, spec.stage.value)

    def _await(self, spec: Deployment) -> None:
        """Wait until the version's rollout is done. Raises ``CloudCallFailed``."""
        if self.folder is not None:
            return  # nothing runs until the files are applied
        name = version_name(spec.model, spec.version)
        action = f"roll out {spec.model} v{spec.version} ({self.namespace}/{name})"
        deadline = time.monotonic() + self.ready_timeout
        while True:
            deployment = self.cluster.read_deployment(self.namespace, name)
            if deployment is None:
                raise DeployError(f"{spec.model} v{spec.version} was removed while it rolled out")
            state, detail = rollout_progress(deployment)
            if state is DeployState.RUNNING:
                return
            if state is DeployState.FAILED:
                raise CloudCallFailed(TARGET, action, detail)
            if time.monotonic() >= deadline:
                raise CloudCallFailed(
                    TARGET,
                    action,
                    f"not ready after {self.ready_timeout:.0f} s ({detail}); "
                    f"`kubectl -n {self.namespace} describe deployment {name}` says why",
                )
            time.sleep(self.poll_interval)

    def _shift(
        self, model: str, current: Mapping[int, DeployedVersion], wanted: Mapping[int, int]
    ) -> None:
        """Write the shares that change, lowered ones first: no moment sums above 100."""
        for version, share in traffic_changes(_shares(current), wanted):
            if self.folder is not None:
                self.folder.set_traffic(model, version, share)
            else:
                name = version_name(model, version)
                self.cluster.patch_deployment(self.namespace, name, traffic_patch(share))

    def _delete(self, model: str, version: int) -> None:
        if self.folder is not None:
            self.folder.delete_version(model, version)
            return
        name = version_name(model, version)
        for kind in VERSION_KINDS:
            self.cluster.delete(kind, self.namespace, name)

    def _current(self, model: str) -> dict[int, DeployedVersion]:
        return {d.version: d for d in self.status(model)}

    def _deployed(self, model: str, version: int) -> DeployedVersion:
        current = self._current(model)
        if version not in current:
            raise VersionNotDeployed(model, version, current)
        return current[version]


# --- pure helpers, and the files the CLI writes ------------------------------------------------


def traffic_changes(current: Mapping[int, int], wanted: Mapping[int, int]) -> list[tuple[int, int]]:
    """The ``(version, share)`` writes that take ``current`` to ``wanted``: only changed shares,
    decreases before increases, so a reader between two writes never sees more than 100."""
    changed = [(v, share) for v, share in sorted(wanted.items()) if current.get(v) != share]
    return sorted(changed, key=lambda change: change[1] > current.get(change[0], 0))


def check_specs(specs: list[Deployment]) -> None:
    """Refuse what this target cannot run: no image, a local folder, a version given twice.

    Raises ``ImageRequired`` or ``DeployError``.
    """
    seen: set[tuple[str, int]] = set()
    for spec in specs:
        if spec.image is None:
            raise ImageRequired(TARGET, spec.model, spec.version)
        if spec.working_dir is not None:
            raise DeployError(
                f"the {TARGET} target runs images, not folders: {spec.model} v{spec.version} "
                f"has working_dir={spec.working_dir}",
                hint="deploy a Bento built into an image (--image, or MODELYARD_IMAGES__REGISTRY)",
            )
        if (spec.model, spec.version) in seen:
            raise DeployError(f"{spec.model} v{spec.version} is listed twice in one deploy")
        seen.add((spec.model, spec.version))


def render_manifests(
    settings: Settings, specs: list[Deployment], shares: Mapping[int, int]
) -> list[Manifest]:
    """Everything one model needs on a cluster: the Namespace and gateway objects, then each
    version's Deployment (with its share of ``shares``), Service and autoscaler.

    Raises ``ImageRequired``, ``DeployError`` (a ``working_dir`` spec, a version twice, specs of
    several models), ``InvalidTraffic``, ``VersionNotDeployed`` (a share for a version not in
    ``specs``), ``TargetConfigError`` (invalid namespace).
    """
    checked = _checked_shares(specs, shares)
    versions = [version_manifests(settings.kubernetes, s, checked[s.version]) for s in specs]
    return gateway_manifests(settings) + [m for manifests in versions for m in manifests]


def write_manifests(
    settings: Settings, specs: list[Deployment], shares: Mapping[int, int], out_dir: Path
) -> list[Path]:
    """Write :func:`render_manifests`'s objects under ``out_dir`` (layout in
    :mod:`infra.kubernetes.files`); return the files written.

    The model's folder then holds exactly ``specs``: files of its other versions are deleted.
    Everything is checked before the first file is written. Raises as :func:`render_manifests`.
    """
    checked = _checked_shares(specs, shares)
    rendered = {
        s.version: version_manifests(settings.kubernetes, s, checked[s.version]) for s in specs
    }
    gateway = gateway_manifests(settings)
    folder = ManifestFolder(out_dir)
    written = [folder.write_gateway(gateway)]
    written += [folder.write_version(s.model, s.version, rendered[s.version]) for s in specs]
    for model in {s.model for s in specs}:
        for document in folder.deployments(model):
            stale = deployed_version(document)
            if stale is not None and stale.model == model and stale.version not in rendered:
                folder.delete_version(model, stale.version)
    return written


def _checked_shares(specs: list[Deployment], shares: Mapping[int, int]) -> dict[int, int]:
    check_specs(specs)
    models = sorted({s.model for s in specs})
    if len(models) > 1:
        raise DeployError(f"manifests are rendered for one model at a time, not {models}")
    if not specs:
        return {}
    return validate_traffic(models[0], shares, {s.version: s.stage for s in specs})


def _shares(versions: Mapping[int, DeployedVersion]) -> dict[int, int]:
    return {v: d.traffic for v, d in versions.items()}
