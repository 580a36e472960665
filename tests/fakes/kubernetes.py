"""A Kubernetes API server for the official client to talk to over real HTTP: kmock's stateful
in-memory emulator on a free loopback port, served from a background thread.

kmock stores what it is sent. On top: Namespaces (kmock 0.8 reads ``/api/v1/namespaces`` as a
namespace prefix, so they are served here), and creating an object in a missing namespace
fails as on a real server; a tiny deployment controller fills in each Deployment's ``status``
after it is created or changed (ready at once, or timed out for an image in
``failing_images``), so rollouts finish as they would on a cluster; ``refuse`` makes the next
matching calls fail with a Kubernetes ``Status`` error, as RBAC or an admission webhook would;
every request is logged (``requests()``) with its parsed JSON body.

``fake_kubernetes(settings)`` yields a :class:`KubernetesTarget` bound to a fresh server whose
cluster has the settings' namespace; ``fake_api_server(namespaces)`` and ``cluster_target``
give the server too, for asserting on requests and objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp.web
import attrs
import kmock

from infra.kubernetes.target import KubernetesTarget

if TYPE_CHECKING:
    from modelyard.settings import Settings

DEPLOYMENTS = "deployments"
NAMESPACE_PATH = re.compile(r"^/api/v1/namespaces(?:/([^/]+))?/?$")
# What the target calls, declared so lists of a resource with no object yet answer empty (as a
# real API server does) rather than 404.
RESOURCES = {
    "v1/services": ("Service", True),
    "v1/serviceaccounts": ("ServiceAccount", True),
    "apps/v1/deployments": ("Deployment", True),
    "autoscaling/v2/horizontalpodautoscalers": ("HorizontalPodAutoscaler", True),
    "rbac.authorization.k8s.io/v1/roles": ("Role", True),
    "rbac.authorization.k8s.io/v1/rolebindings": ("RoleBinding", True),
}


@dataclass(frozen=True)
class Recorded:
    """One request the fake API server received."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    content_type: str
    authorization: str


@dataclass
class _Refusal:
    method: str
    plural: str
    status: int
    reason: str
    message: str
    times: int


@attrs.define(kw_only=True)
class _Cluster(kmock.KubernetesEmulator):
    """kmock's emulator plus Namespaces, a deployment controller, refusals and a request log."""

    failing_images: set[str] = attrs.field(factory=set)
    refusals: list[_Refusal] = attrs.field(factory=list)
    namespaces: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    log: list[Recorded] = attrs.field(factory=list)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for resource, (kind, namespaced) in RESOURCES.items():
            self.resources[resource] = kmock.ResourceInfo(kind=kind, namespaced=namespaced)

    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        body = await raw.read()
        self.log.append(
            Recorded(
                method=raw.method,
                path=raw.path,
                query=dict(raw.query),
                body=json.loads(body) if body else None,
                content_type=raw.headers.get("Content-Type", ""),
                authorization=raw.headers.get("Authorization", ""),
            )
        )
        match = NAMESPACE_PATH.match(raw.path)
        if match:  # kmock parses /api/v1/namespaces as a namespace prefix, not a resource
            return self._namespace_call(raw.method, match.group(1), self.log[-1].body)
        return await super().__call__(raw)

    async def _handle(self, request: kmock.Request) -> Any:
        self._refuse(request.method.value, request.resource.plural if request.resource else None)
        if request.action == kmock.action.CREATE and request.namespace not in self.namespaces:
            raise _status(404, "NotFound", f'namespaces "{request.namespace}" not found')
        response = await super()._handle(request)
        changed = request.action in (kmock.action.CREATE, kmock.action.UPDATE)
        if changed and request.resource is not None and request.resource.plural == DEPLOYMENTS:
            async with self._lock:
                self._reconcile(request)
        return response

    def _namespace_call(
        self, method: str, name: str | None, body: Any
    ) -> aiohttp.web.StreamResponse:
        """Namespaces, the one cluster-scoped kind the target writes: create, read, patch."""
        try:
            self._refuse(method, "namespaces")
            if method == "POST":
                name = body["metadata"]["name"]
                if name in self.namespaces:
                    raise _status(409, "AlreadyExists", f'namespaces "{name}" already exists')
                self.namespaces[name] = _merged(_namespace(name), body)
                return aiohttp.web.json_response(self.namespaces[name], status=201)
            if name not in self.namespaces:
                raise _status(404, "NotFound", f'namespaces "{name}" not found')
            if method == "PATCH":
                self.namespaces[name] = _merged(self.namespaces[name], body)
            elif method == "DELETE":
                return aiohttp.web.json_response(self.namespaces.pop(name))
            return aiohttp.web.json_response(self.namespaces[name])
        except kmock.KubernetesError as exc:
            return aiohttp.web.json_response(
                {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": exc.status,
                 "reason": exc.reason, "message": exc.message},
                status=exc.status,
            )  # fmt: skip

    def _refuse(self, method: str, plural: str | None) -> None:
        for refusal in self.refusals:
            if refusal.times and refusal.method == method and refusal.plural == plural:
                refusal.times -= 1
                raise _status(refusal.status, refusal.reason, refusal.message)

    def _reconcile(self, request: kmock.Request) -> None:
        """What the deployment controller would write once the pods are (not) up."""
        assert request.resource is not None
        data = request.data or {}
        name = request.name or data.get("metadata", {}).get("name")
        namespace = request.namespace or data.get("metadata", {}).get("namespace")
        deployment = self._objects[request.resource, namespace, name]
        generation = int(deployment.get("metadata", {}).get("generation") or 0)
        if request.action == kmock.action.CREATE or "spec" in data:
            generation += 1
        replicas = deployment.get("spec", {}).get("replicas", 1)
        containers = deployment["spec"]["template"]["spec"]["containers"]
        failing = any(c.get("image") in self.failing_images for c in containers)
        status = _failed_status if failing else _ready_status
        deployment.patch(
            {"metadata": {"generation": generation}, "status": status(name, generation, replicas)}
        )


def _namespace(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name},
        "status": {"phase": "Active"},
    }


def _status(code: int, reason: str, message: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=code, reason=reason, message=message)


def _merged(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def _ready_status(name: str, generation: int, replicas: int) -> dict[str, Any]:
    return {
        "observedGeneration": generation,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
        ],
    }


def _failed_status(name: str, generation: int, replicas: int) -> dict[str, Any]:
    return {
        "observedGeneration": generation,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "unavailableReplicas": replicas,
        "readyReplicas": None,  # a merge patch: None removes the key
        "availableReplicas": None,
        "conditions": [
            {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"},
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": f'ReplicaSet "{name}-7d9f8b6c5" has timed out progressing.',
            },
        ],
    }


class FakeApiServer:
    """The emulator on ``127.0.0.1:<free port>``, run by its own event loop in a thread."""

    def __init__(self, namespaces: Iterable[str] = ()) -> None:
        self.cluster = _Cluster()
        for name in namespaces:  # as if an administrator had created them
            self.cluster.namespaces[name] = _namespace(name)
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="fake-kube-api", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(timeout=10) or self._failure is not None:
            raise RuntimeError(f"the fake Kubernetes API did not start: {self._failure!r}")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def api_client(self) -> Any:
        """An official-client ``ApiClient`` pointed at this server (no credentials needed)."""
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.url
        configuration.retries = 0  # a refused call fails at once
        return client.ApiClient(configuration)

    # --- for assertions ---------------------------------------------------------------------

    def requests(self) -> list[Recorded]:
        """Every request received so far, in order."""
        return list(self.cluster.log)

    def objects(self, plural: str, namespace: str | None = None) -> dict[str, dict[str, Any]]:
        """The live objects of a resource (``deployments``, ``services``...), by name."""
        return self._run(self._snapshot(plural, namespace))

    def refuse(
        self, method: str, plural: str, status: int, message: str, *, times: int = 1
    ) -> None:
        """Make the next ``times`` calls of ``method`` on ``plural`` fail with ``status``."""
        reason = {401: "Unauthorized", 403: "Forbidden", 422: "Invalid"}.get(status, "Failure")
        self.cluster.refusals.append(
            _Refusal(method.upper(), plural, status, reason, message, times)
        )

    # --- the thread -------------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by start()
            self._failure = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self.cluster, kmock.Server(self.cluster) as server:
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    async def _snapshot(self, plural: str, namespace: str | None) -> dict[str, dict[str, Any]]:
        async with self.cluster._lock:
            return {
                name: copy.deepcopy(obj.raw)
                for (resource, ns, name), obj in self.cluster.objects.items()
                if resource.plural == plural and namespace in (None, ns) and not obj.deleted
            }

    def _run(self, coroutine: Any) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)


@contextlib.contextmanager
def fake_api_server(namespaces: Iterable[str] = ()) -> Iterator[FakeApiServer]:
    """A running fake API server holding ``namespaces``, stopped on exit."""
    server = FakeApiServer(namespaces)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def cluster_target(server: FakeApiServer, settings: Settings) -> KubernetesTarget:
    """A cluster-mode target bound to ``server``, polling rollouts quickly."""
    return KubernetesTarget(
        settings, api_client=server.api_client(), ready_timeout=5.0, poll_interval=0.01
    )


@contextlib.contextmanager
def fake_kubernetes(settings: Settings) -> Iterator[KubernetesTarget]:
    """A :class:`KubernetesTarget` in cluster mode, bound to a fresh fake API server whose
    cluster already has the settings' namespace (``apply_gateway`` would create it)."""
    with fake_api_server([settings.kubernetes.namespace]) as server:
        yield cluster_target(server, settings)
