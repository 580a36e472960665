"""The cluster side of the Kubernetes target: finding credentials, and the few API calls it makes
through the official ``kubernetes`` client (imported here only, when a target connects).

Objects travel as plain dicts: the client checks request bodies against its models before
sending, and responses are read as the server's JSON, so the pure code reads the same shapes
from the cluster as from the manifest files.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from infra.errors import CloudCallFailed, CredentialsNotFound
from infra.kubernetes.manifests import Manifest

logger = logging.getLogger(__name__)

TARGET = "kubernetes"
IN_CLUSTER = (
    "an in-cluster service-account token (KUBERNETES_SERVICE_HOST and "
    "/var/run/secrets/kubernetes.io/serviceaccount/token)"
)


def kubeconfig_path() -> str:
    """``KUBECONFIG`` (one path or several, ``:``-separated), else ``~/.kube/config``."""
    return os.environ.get("KUBECONFIG") or "~/.kube/config"


def looked_for(context: str | None) -> str:
    """What :func:`connect` tries, in order, for the error that says none worked."""
    where = f"KUBECONFIG / ~/.kube/config (here: {kubeconfig_path()})"
    if context is not None:  # an explicit context means the kubeconfig, never the pod's account
        return f"context {context!r} (MODELYARD_KUBERNETES__CONTEXT) in {where}"
    return f"{IN_CLUSTER}, then the current context in {where}"


def connect(context: str | None) -> Any:
    """An ``ApiClient`` from the standard chain: the pod's service account, else the kubeconfig.

    Raises ``CredentialsNotFound`` naming both places when neither gives a usable config.
    """
    from kubernetes import client, config

    configuration = client.Configuration()
    if context is None:
        try:
            config.load_incluster_config(client_configuration=configuration)
            return client.ApiClient(configuration)
        except config.ConfigException as exc:
            logger.debug("not in a pod (%s): trying the kubeconfig", exc)
    try:
        config.load_kube_config(
            config_file=kubeconfig_path(),
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
    except (config.ConfigException, OSError, ValueError, TypeError, yaml.YAMLError) as exc:
        # A missing or unreadable file, no such context, or YAML that is not a kubeconfig.
        raise CredentialsNotFound(TARGET, looked_for(context), str(exc)) from exc
    return client.ApiClient(configuration)


@dataclass(frozen=True)
class _Calls:
    """The create, patch and delete calls of one kind, as ``(namespace, name, body)``."""

    create: Callable[[str, Manifest], Any]
    patch: Callable[[str, str, Manifest], Any]
    delete: Callable[[str, str], Any]


class ClusterApi:
    """The calls the target makes; every client error comes out as one of ours."""

    def __init__(self, api_client: Any, *, context: str | None = None) -> None:
        from kubernetes import client

        self.context = context
        # Typed as Any: bodies go as plain dicts, which every client version accepts (recent
        # ones validate them into their models) but whose typed signatures ask for models.
        self.apps: Any = client.AppsV1Api(api_client)
        self.core: Any = client.CoreV1Api(api_client)
        self.autoscaling: Any = client.AutoscalingV2Api(api_client)
        self.rbac: Any = client.RbacAuthorizationV1Api(api_client)
        self._calls = self._by_kind()

    def list_deployments(self, namespace: str, selector: str) -> list[Manifest]:
        """The Deployments in ``namespace`` matching the label ``selector``, as JSON dicts."""
        response = self._call(
            f"list Deployments in {namespace}",
            lambda: self.apps.list_namespaced_deployment(
                namespace, label_selector=selector, _preload_content=False
            ),
        )
        items: list[Manifest] = json.loads(response.data).get("items") or []
        return items

    def read_deployment(self, namespace: str, name: str) -> Manifest | None:
        """One Deployment as JSON, None when there is none."""
        response = self._call(
            f"read Deployment {namespace}/{name}",
            lambda: self.apps.read_namespaced_deployment(name, namespace, _preload_content=False),
            tolerate=404,
        )
        return json.loads(response.data) if response is not None else None

    def apply(self, manifest: Manifest) -> None:
        """Create ``manifest``'s object, or patch the existing one to match it."""
        kind = manifest["kind"]
        name, namespace = manifest["metadata"]["name"], manifest["metadata"].get("namespace", "")
        calls = self._calls[kind]
        where = f"{kind} {namespace}/{name}".replace(" /", " ")
        created = self._call(f"create {where}", lambda: calls.create(namespace, manifest), 409)
        if created is None:  # it exists: a strategic merge patch makes it match
            self._call(f"update {where}", lambda: calls.patch(namespace, name, manifest))

    def patch_deployment(self, namespace: str, name: str, patch: Manifest) -> None:
        self._call(
            f"patch Deployment {namespace}/{name}",
            lambda: self.apps.patch_namespaced_deployment(name, namespace, patch),
        )

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete an object; one already gone is fine."""
        calls = self._calls[kind]
        self._call(f"delete {kind} {namespace}/{name}", lambda: calls.delete(namespace, name), 404)

    def _call(self, action: str, call: Callable[[], Any], tolerate: int | None = None) -> Any:
        """``call()``'s result, None when the API answered the ``tolerate`` status instead.

        Raises ``CredentialsNotFound`` on 401, ``CloudCallFailed`` with the server's message on
        any other error status or when the server cannot be reached.
        """
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return call()
        except ApiException as exc:
            if exc.status == tolerate:
                return None
            detail = _status_message(exc)
            if exc.status == 401:
                raise CredentialsNotFound(TARGET, looked_for(self.context), detail) from exc
            raise CloudCallFailed(TARGET, action, detail) from exc
        except HTTPError as exc:
            raise CloudCallFailed(TARGET, action, f"cannot reach the API server: {exc}") from exc

    def _by_kind(self) -> dict[str, _Calls]:
        apps, core, autoscaling, rbac = self.apps, self.core, self.autoscaling, self.rbac
        background = {"propagation_policy": "Background"}
        return {
            "Namespace": _Calls(
                lambda _, body: core.create_namespace(body),
                lambda _, name, body: core.patch_namespace(name, body),
                lambda _, name: core.delete_namespace(name),
            ),
            "Deployment": _Calls(
                lambda ns, body: apps.create_namespaced_deployment(ns, body),
                lambda ns, name, body: apps.patch_namespaced_deployment(name, ns, body),
                lambda ns, name: apps.delete_namespaced_deployment(name, ns, **background),
            ),
            "Service": _Calls(
                lambda ns, body: core.create_namespaced_service(ns, body),
                lambda ns, name, body: core.patch_namespaced_service(name, ns, body),
                lambda ns, name: core.delete_namespaced_service(name, ns),
            ),
            "ServiceAccount": _Calls(
                lambda ns, body: core.create_namespaced_service_account(ns, body),
                lambda ns, name, body: core.patch_namespaced_service_account(name, ns, body),
                lambda ns, name: core.delete_namespaced_service_account(name, ns),
            ),
            "HorizontalPodAutoscaler": _Calls(
                lambda ns, body: autoscaling.create_namespaced_horizontal_pod_autoscaler(ns, body),
                lambda ns, name, body: autoscaling.patch_namespaced_horizontal_pod_autoscaler(
                    name, ns, body
                ),
                lambda ns, name: autoscaling.delete_namespaced_horizontal_pod_autoscaler(name, ns),
            ),
            "Role": _Calls(
                lambda ns, body: rbac.create_namespaced_role(ns, body),
                lambda ns, name, body: rbac.patch_namespaced_role(name, ns, body),
                lambda ns, name: rbac.delete_namespaced_role(name, ns),
            ),
            "RoleBinding": _Calls(
                lambda ns, body: rbac.create_namespaced_role_binding(ns, body),
                lambda ns, name, body: rbac.patch_namespaced_role_binding(name, ns, body),
                lambda ns, name: rbac.delete_namespaced_role_binding(name, ns),
            ),
        }


def _status_message(exc: Any) -> str:
    """The API server's own message from its Status body, with the HTTP status."""
    message = ""
    try:
        status = json.loads(exc.body or "{}")
        message = str(status.get("message") or "")
    except (TypeError, ValueError):
        message = str(exc.body or "")[:500]
    return f"{exc.status} {exc.reason}: {message}".rstrip(": ")
