"""The ``gcp`` deploy target: each model is a Cloud Run service, each version one of its revisions,
and the service's own traffic split (by revision) carries the rollout.

- ``deploy``: the model's service is created on its first deploy; every later version is a
  service update whose template names a new revision (``<service>-v<N>-<suffix>``) running
  ``spec.image``, and whose traffic keeps every share and gives the new revision 0 (the first
  answering version 100). Each version's traffic entry has the tag ``v<N>``: its own URL, which
  is where the gateway mirrors requests for a shadow (Cloud Run has no mirroring). A deployed
  version with the same image only has its stage label updated.
- ``set_traffic``: one service update of the traffic list.
- ``remove``: the removed versions leave the traffic (their shares go to the champion) in one
  update, then their revisions are deleted; when the template names a removed revision it is
  pointed back at the champion's, since Cloud Run keeps the template's revision. Removing a
  model deletes its service, and with it every revision.
- ``status`` reads the service: shares and URLs from its observed traffic
  (``traffic_statuses``), stages from its labels (see :mod:`infra.gcp.plan`).

Every update waits for Cloud Run's long-running operation (``operation_timeout`` seconds), which
ends once the new revision is ready and the traffic moved. Cloud Run pulls images from Artifact
Registry (``MODELYARD_IMAGES__REGISTRY=europe-docker.pkg.dev/PROJECT/REPO``); the revisions run
as ``MODELYARD_GCP__SERVICE_ACCOUNT`` (else the project's default compute account). Services
keep Cloud Run's default IAM: callers (the gateway) need ``roles/run.invoker`` and an ID token.
"""

from __future__ import annotations

import logging
import secrets
import string
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from infra.errors import DeployError, ImageRequired, VersionNotDeployed
from infra.gcp.api import CloudRunApi, NameTaken, build_clients, default_credentials
from infra.gcp.naming import (
    SUFFIX_CHARS,
    TARGET,
    check_project,
    check_region,
    check_scaling,
    location_path,
    revision_path,
    service_id,
    service_path,
)
from infra.gcp.plan import (
    ServiceChange,
    VersionRecord,
    deployed_versions,
    model_of,
    new_service_fields,
    plan_deploy,
    plan_remove,
    plan_traffic,
    read_records,
    stages_of,
    template_revision,
    update_fields,
)
from infra.targets import (
    DeployedVersion,
    Deployment,
    DeployTarget,
    register_target,
    sort_key,
    validate_traffic,
)

if TYPE_CHECKING:
    from modelyard.settings import Settings

logger = logging.getLogger(__name__)
SUFFIX_ALPHABET = string.ascii_lowercase + string.digits


@register_target(TARGET)
class GcpTarget(DeployTarget):
    """Versions as revisions of one Cloud Run service per model (``google-cloud-run``, REST).

    With no clients given, credentials come from google-auth's default chain and the project
    from ``MODELYARD_GCP__PROJECT``, else the chain's. Tests pass ``credentials`` (e.g.
    ``AnonymousCredentials``) or ready clients.
    """

    needs_image = True

    def __init__(
        self,
        settings: Settings,
        *,
        credentials: Any = None,
        services_client: Any = None,
        revisions_client: Any = None,
        operation_timeout: float = 900.0,
    ) -> None:
        """Raises ``TargetConfigError`` (project, region, instances; or no SDK),
        ``CredentialsNotFound`` when the default chain finds nothing."""
        super().__init__(settings)
        gcp = settings.gcp
        self.region = check_region(gcp.region)
        check_scaling(gcp)
        project = gcp.project
        if services_client is None or revisions_client is None:
            if credentials is None:
                credentials, found = default_credentials()
                project = project or found
            services, revisions = build_clients(credentials)
            services_client = services_client or services
            revisions_client = revisions_client or revisions
        self.project = check_project(project)
        self.parent = location_path(self.project, self.region)
        self.api = CloudRunApi(
            services_client, revisions_client, operation_timeout=operation_timeout
        )

    # --- the port ---------------------------------------------------------------------------

    def deploy(self, spec: Deployment) -> DeployedVersion:
        """Run ``spec.image`` as a revision of the model's service; see
        :meth:`DeployTarget.deploy`. Returns once Cloud Run has it ready.

        Raises ``ImageRequired``, ``DeployError`` (a ``working_dir``; a service of that name that
        is not the model's; no answering version), ``CredentialsNotFound``, ``CloudCallFailed``
        (Cloud Run's message, e.g. a revision that did not start).
        """
        _check_spec(spec)
        service = self._read(spec.model)
        records = read_records(service) if service is not None else {}
        change = plan_deploy(
            records,
            spec,
            service=service_id(spec.model),
            suffix=_new_suffix(records),
            gcp=self.settings.gcp,
        )
        if service is None:
            service = self._create(spec.model, change)
        else:
            service = self._apply(spec.model, service, change)
        return self._deployed(spec.model, service, spec.version)

    def set_traffic(self, model: str, shares: Mapping[int, int]) -> None:
        """One service update of the traffic split. Raises ``InvalidTraffic``,
        ``VersionNotDeployed``, ``CredentialsNotFound``, ``CloudCallFailed``."""
        service = self._read(model)
        records = read_records(service) if service is not None else {}
        validated = validate_traffic(model, shares, stages_of(records))
        if service is not None:
            self._apply(model, service, plan_traffic(records, validated))

    def status(self, model: str | None = None) -> list[DeployedVersion]:
        """What the model's service (or every service of ours in the region) runs.

        Raises ``DeployError`` for a service of the model's name that is not the model's,
        ``CredentialsNotFound``, ``CloudCallFailed``.
        """
        if model is not None:
            service = self._read(model)
            found = deployed_versions(model, service) if service is not None else []
        else:
            found = [
                deployed
                for service in self.api.list_services(self.parent)
                if (owner := model_of(service)) is not None
                for deployed in deployed_versions(owner, service)
            ]
        return sorted(found, key=sort_key)

    def remove(self, model: str, version: int | None = None) -> list[DeployedVersion]:
        """Take versions out of the traffic (to the champion), then delete their revisions;
        the whole service when none would remain. Returns them as they were.

        Raises ``VersionNotDeployed``, ``DeployError`` (only a shadow would remain),
        ``CredentialsNotFound``, ``CloudCallFailed``.
        """
        service = self._read(model)
        records = read_records(service) if service is not None else {}
        if version is not None and version not in records:
            raise VersionNotDeployed(model, version, records)
        if service is None:
            return []
        chosen = [version] if version is not None else sorted(records)
        removed = [d for d in deployed_versions(model, service) if d.version in chosen]
        change = plan_remove(
            records,
            chosen,
            model=model,
            service=service_id(model),
            template_revision=template_revision(service),
            gcp=self.settings.gcp,
        )
        if change is None:
            self.api.delete_service(service.name)
        elif change.template is not None:
            self._apply_restoring_template(model, service, change)
        else:
            self._apply(model, service, change)
        return sorted(removed, key=sort_key)

    # --- the service ------------------------------------------------------------------------

    def _read(self, model: str) -> Any | None:
        """The model's service, None when there is none.

        Raises ``DeployError`` when a service of that name exists but serves something else.
        """
        name = service_path(self.project, self.region, service_id(model))
        service = self.api.get_service(name)
        if service is not None and model_of(service) != model:
            owner = model_of(service)
            whose = f"model {owner!r}'s" if owner else "not made by Modelyard"
            raise DeployError(
                f"Cloud Run service {name} exists but is {whose}, not {model!r}'s",
                hint="delete or rename that service, or deploy to another project or region",
            )
        return service

    def _create(self, model: str, change: ServiceChange) -> Any:
        sid = service_id(model)
        logger.info("creating Cloud Run service %s in %s", sid, self.parent)
        return self.api.create_service(self.parent, sid, new_service_fields(sid, model, change))

    def _apply(self, model: str, service: Any, change: ServiceChange) -> Any:
        """Update the service as ``change`` says (if it differs), then delete its old revisions."""
        fields = update_fields(service, model, change)
        if fields:
            logger.info("updating %s: %s", service.name, ", ".join(fields))
            service = self.api.update_service(service, fields, list(fields))
        for revision in change.delete_revisions:
            self.api.delete_revision(revision_path(service.name, revision))
        return service

    def _apply_restoring_template(self, model: str, service: Any, change: ServiceChange) -> Any:
        """:meth:`_apply` with the template pointed back at a running revision; when Cloud Run
        refuses that (the revision's configuration differs from the rebuilt template, e.g. the
        ``gcp`` settings changed since), the template's revision stays, out of the traffic."""
        name, kept = service.name, template_revision(service)
        try:
            return self._apply(model, service, change)
        except NameTaken as exc:
            logger.warning(
                "left revision %s in place, without traffic: Cloud Run refused to point the "
                "template back at %s: %s",
                kept,
                change.template and change.template["revision"],
                exc,
            )
        fresh = self.api.get_service(name)  # the failed update changed ``service`` locally
        if fresh is None:
            return None
        kept = template_revision(fresh)
        without = tuple(r for r in change.delete_revisions if r != kept)
        return self._apply(model, fresh, replace(change, template=None, delete_revisions=without))

    def _deployed(self, model: str, service: Any, version: int) -> DeployedVersion:
        for deployed in deployed_versions(model, service):
            if deployed.version == version:
                return deployed
        raise VersionNotDeployed(model, version, read_records(service))


def _check_spec(spec: Deployment) -> None:
    if spec.image is None:
        raise ImageRequired(TARGET, spec.model, spec.version)
    if spec.working_dir is not None:
        raise DeployError(
            f"the {TARGET} target runs images, not folders: {spec.model} v{spec.version} "
            f"has working_dir={spec.working_dir}",
            hint="deploy a Bento built into an image (--image, or MODELYARD_IMAGES__REGISTRY)",
        )


def _new_suffix(records: Mapping[int, VersionRecord]) -> str:
    """A random revision suffix no deployed revision of the service ends with."""
    taken = {record.revision.rsplit("-", 1)[-1] for record in records.values()}
    while True:
        suffix = "".join(secrets.choice(SUFFIX_ALPHABET) for _ in range(SUFFIX_CHARS))
        if suffix not in taken:
            return suffix
