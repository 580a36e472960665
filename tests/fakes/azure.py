"""A stateful fake of the Azure ML management API (ARM) for one workspace, served to the real
``azure-ai-ml`` client through ``responses``.

It answers what ``MLClient`` sends for online endpoints and deployments: the workspace GET the SDK
does for its location, anonymous environment versions (a custom container image), endpoints and
deployments (GET, list, PUT, DELETE), and the long-running operations those start (``201`` +
``Azure-AsyncOperation`` for a PUT, ``202`` + ``Location`` for a DELETE, then an operation status
body). Bodies have the fields Azure returns (``id``, ``type``, ``location``, ``identity``,
``systemData``, ``properties.provisioningState``, ``scoringUri``...), and it refuses what Azure
refuses: traffic that does not sum to 0 or 100 or names a missing deployment, a mirror above 50%,
on two deployments or on one with live traffic, deleting a deployment that still gets traffic, a
deployment on a missing endpoint, a request without a bearer token.

Use :func:`fake_azure`; ``target.fake`` is the :class:`FakeAzureML` behind it::

    with fake_azure(settings) as target:
        target.deploy(spec)
        target.fake.endpoints["penguins"]["properties"]["traffic"]   # the state Azure holds
        target.fake.sent("PUT", "/onlineEndpoints/penguins")         # the JSON bodies sent
        target.fake.fail_next("PUT", "/deployments/version-2", 409, "Conflict", "quota exceeded")
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import responses

# No SDK import: infra.azure imports azure-ai-ml only when a target is built.
from infra.azure.target import AzureTarget

if TYPE_CHECKING:
    from modelyard.settings import Settings

ARM = "https://management.azure.com"
PROVIDER = "Microsoft.MachineLearningServices"
ANY_ARM_URL = re.compile(r"https://management\.azure\.com/.*")
Reply = tuple[int, dict[str, str], str]


class FakeTokenCredential:
    """A ``TokenCredential`` that hands out a fixed bearer token (no Azure AD involved)."""

    token = "fake-aad-token"

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken(self.token, int(time.time()) + 3600)


@dataclass(frozen=True)
class SentRequest:
    """One request the SDK sent: its method, path (no query), api-version and JSON body."""

    method: str
    path: str
    api_version: str | None
    body: Any


@dataclass
class Operation:
    """A long-running operation: ``polls`` more status reads say InProgress, then it ends."""

    finish: Any  # callable() -> error dict or None, run when the operation ends
    polls: int
    status: str = "InProgress"
    error: dict[str, str] | None = None


class FakeAzureML:
    """One Azure ML workspace's online endpoints, as the ARM API serves them."""

    def __init__(
        self,
        subscription_id: str,
        resource_group: str,
        workspace: str,
        *,
        location: str = "westeurope",
        polls_per_operation: int = 0,
    ) -> None:
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.workspace = workspace
        self.location = location
        # Status reads that answer InProgress before an operation ends (each costs the SDK's
        # poll interval, 5 s for deployments: keep 0 in fast tests).
        self.polls_per_operation = polls_per_operation
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.deployments: dict[str, dict[str, dict[str, Any]]] = {}
        self.environments: dict[tuple[str, str], dict[str, Any]] = {}
        self.operations: dict[str, Operation] = {}
        self.requests: list[SentRequest] = []
        self._failures: list[tuple[str, str, int, str, str]] = []
        self._failed_deployments: dict[str, str] = {}
        self._lock = threading.RLock()
        self._workspace_path = (
            f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
            f"/providers/{PROVIDER}/workspaces/{workspace}"
        )

    # --- for tests --------------------------------------------------------------------------

    def install(self, mock: responses.RequestsMock) -> None:
        """Answer every request to management.azure.com made while ``mock`` is active."""
        for method in ("GET", "PUT", "PATCH", "POST", "DELETE"):
            mock.add_callback(method, ANY_ARM_URL, callback=self.handle)

    def sent(self, method: str, path_suffix: str) -> list[Any]:
        """Bodies of the requests of ``method`` whose path ends with ``path_suffix``."""
        return [
            r.body
            for r in self.requests
            if r.method == method and r.path.lower().endswith(path_suffix.lower())
        ]

    def fail_next(
        self, method: str, path_suffix: str, status: int, code: str, message: str
    ) -> None:
        """Make the next ``method`` request on a path ending with ``path_suffix`` fail as ARM
        does (an ``{"error": {"code", "message"}}`` body)."""
        self._failures.append((method, path_suffix.lower(), status, code, message))

    def fail_deployment(self, deployment: str, message: str) -> None:
        """Make the next creation of ``deployment`` end Failed (like an image Azure cannot
        pull): the PUT is accepted, its operation fails with ``message``."""
        self._failed_deployments[deployment] = message

    def traffic(self, endpoint: str) -> dict[str, int]:
        return dict(self.endpoints[endpoint]["properties"].get("traffic") or {})

    def mirror_traffic(self, endpoint: str) -> dict[str, int]:
        return dict(self.endpoints[endpoint]["properties"].get("mirrorTraffic") or {})

    # --- the HTTP side ----------------------------------------------------------------------

    def handle(self, request: Any) -> Reply:
        """The ``responses`` callback: route one request, record it, answer it."""
        url = urlsplit(request.url)
        query = parse_qs(url.query)
        body = _json_body(request.body)
        with self._lock:
            self.requests.append(
                SentRequest(request.method, url.path, query.get("api-version", [None])[0], body)
            )
            if not str(request.headers.get("Authorization", "")).startswith("Bearer "):
                return _error(401, "AuthenticationFailed", "Authentication failed: no bearer token")
            injected = self._injected_failure(request.method, url.path)
            if injected is not None:
                return injected
            return self._route(request.method, url.path, body)

    def _injected_failure(self, method: str, path: str) -> Reply | None:
        for failure in self._failures:
            if failure[0] == method and path.lower().endswith(failure[1]):
                self._failures.remove(failure)
                return _error(failure[2], failure[3], failure[4])
        return None

    def _route(self, method: str, path: str, body: Any) -> Reply:
        ops = re.fullmatch(
            rf"/subscriptions/[^/]+/providers/{PROVIDER}/locations/[^/]+"
            r"/(mfeOperationsStatus|mfeOperationResults)/([^/]+)",
            path,
            re.IGNORECASE,
        )
        if ops and method == "GET":
            return self._operation_reply(ops.group(1).lower(), ops.group(2))
        if not path.lower().startswith(self._workspace_path.lower()):
            return _error(404, "ResourceGroupNotFound", f"no workspace at {path}")
        rest = [p for p in path[len(self._workspace_path) :].split("/") if p]
        kinds = tuple(p.lower() for p in rest[::2])
        handler = self._handlers().get((method, kinds, len(rest) % 2 == 0))
        if handler is None:
            return _error(400, "NotImplementedInFake", f"the fake has no {method} {path}")
        return handler(*rest[1::2], body=body)

    def _handlers(self) -> dict[tuple[str, tuple[str, ...], bool], Any]:
        """(method, resource kinds in the path, names a single resource) -> handler."""
        endpoints, deployments = ("onlineendpoints",), ("onlineendpoints", "deployments")
        versions = ("environments", "versions")
        return {
            ("GET", (), True): self._get_workspace,
            ("PUT", versions, True): self._put_environment,
            ("GET", versions, True): self._get_environment,
            ("GET", endpoints, False): self._list_endpoints,
            ("GET", endpoints, True): self._get_endpoint,
            ("PUT", endpoints, True): self._put_endpoint,
            ("DELETE", endpoints, True): self._delete_endpoint,
            ("GET", deployments, False): self._list_deployments,
            ("GET", deployments, True): self._get_deployment,
            ("PUT", deployments, True): self._put_deployment,
            ("DELETE", deployments, True): self._delete_deployment,
        }

    # --- workspace and environments ---------------------------------------------------------

    def _get_workspace(self, *, body: Any) -> Reply:
        path = self._workspace_path
        region = f"{self.location}.api.azureml.ms"
        return _ok(
            {
                "id": path,
                "name": self.workspace,
                "type": f"{PROVIDER}/workspaces",
                "location": self.location,
                "kind": "Default",
                "tags": {},
                "identity": _identity(),
                "sku": {"name": "Basic", "tier": "Basic"},
                "properties": {
                    "friendlyName": self.workspace,
                    "workspaceId": str(uuid.uuid5(uuid.NAMESPACE_URL, path)),
                    "provisioningState": "Succeeded",
                    "storageAccount": f"/subscriptions/{self.subscription_id}/resourceGroups/"
                    f"{self.resource_group}/providers/Microsoft.Storage/storageAccounts/wsstore",
                    "keyVault": f"/subscriptions/{self.subscription_id}/resourceGroups/"
                    f"{self.resource_group}/providers/Microsoft.KeyVault/vaults/wsvault",
                    "discoveryUrl": f"https://{region}/discovery",
                    "mlFlowTrackingUri": f"azureml://{region}/mlflow/v1.0{path}",
                    "hbiWorkspace": False,
                    "publicNetworkAccess": "Enabled",
                    "v1LegacyMode": False,
                },
                "systemData": _system_data(),
            }
        )

    def _put_environment(self, name: str, version: str, *, body: Any) -> Reply:
        props = dict((body or {}).get("properties") or {})
        if not props.get("image") and not props.get("build"):
            return _error(400, "UserError", "An environment needs an image or a build context")
        stored = {
            "id": f"{self._workspace_path}/environments/{name}/versions/{version}",
            "name": version,
            "type": f"{PROVIDER}/workspaces/environments/versions",
            "properties": {
                **props,
                "environmentType": "UserCreated",
                "osType": props.get("osType", "Linux"),
                "provisioningState": "Succeeded",
            },
            "systemData": _system_data(),
        }
        created = (name, version) not in self.environments
        self.environments[(name, version)] = stored
        return _ok(stored, status=201 if created else 200)

    def _get_environment(self, name: str, version: str, *, body: Any) -> Reply:
        found = self.environments.get((name, version))
        if found is None:
            return _not_found(f"environments/{name}/versions/{version}")
        return _ok(found)

    # --- endpoints --------------------------------------------------------------------------

    def _list_endpoints(self, *, body: Any) -> Reply:
        return _ok({"value": list(self.endpoints.values())})

    def _get_endpoint(self, name: str, *, body: Any) -> Reply:
        found = self._endpoint(name)
        return _ok(found) if found is not None else _not_found(f"onlineEndpoints/{name}")

    def _endpoint(self, name: str) -> dict[str, Any] | None:
        return next((e for n, e in self.endpoints.items() if n.lower() == name.lower()), None)

    def _put_endpoint(self, name: str, *, body: Any) -> Reply:
        if not _valid_name(name):
            return _error(400, "BadArgument", f"Endpoint name {name!r} is invalid")
        props = dict((body or {}).get("properties") or {})
        problem = self._routing_problem(name, props)
        if problem:
            return _error(400, "BadArgument", problem)
        current = self._endpoint(name)
        path = f"{self._workspace_path}/onlineEndpoints/{name}"
        stored: dict[str, Any] = {
            "id": path,
            "name": name,
            "type": f"{PROVIDER}/workspaces/onlineEndpoints",
            "location": (body or {}).get("location") or self.location,
            "kind": "Managed",
            "tags": dict((body or {}).get("tags") or {}),
            "identity": (current or {}).get("identity") or _identity(),
            "properties": {
                "authMode": props.get("authMode") or "Key",
                "description": props.get("description"),
                "properties": dict(props.get("properties") or {}),
                "traffic": dict(props.get("traffic") or {}),  # a PUT replaces: left out = none
                "mirrorTraffic": dict(props.get("mirrorTraffic") or {}),
                "publicNetworkAccess": props.get("publicNetworkAccess") or "Enabled",
                "scoringUri": f"https://{name.lower()}.{self.location}.inference.ml.azure.com/score",
                "swaggerUri": f"https://{name.lower()}.{self.location}"
                ".inference.ml.azure.com/swagger.json",
                "provisioningState": "Updating" if current else "Creating",
            },
            "systemData": (current or {}).get("systemData") or _system_data(),
        }
        self.endpoints[name] = stored
        self.deployments.setdefault(name, {})

        def finish() -> None:
            stored["properties"]["provisioningState"] = "Succeeded"

        return self._accepted_put(stored, finish)

    def _routing_problem(self, endpoint: str, props: dict[str, Any]) -> str | None:
        """What Azure would refuse in an endpoint's traffic and mirror, else None."""
        existing = {d.lower() for d in self.deployments.get(endpoint, {})}
        traffic = {k.lower(): int(v) for k, v in (props.get("traffic") or {}).items()}
        mirror = {k.lower(): int(v) for k, v in (props.get("mirrorTraffic") or {}).items()}
        missing = sorted((set(traffic) | set(mirror)) - existing)
        if missing:
            return f"Traffic cannot be set to deployments that do not exist: {', '.join(missing)}"
        if sum(traffic.values()) not in (0, 100):
            return f"Traffic values must add up to 0 or 100, not {sum(traffic.values())}"
        if len(mirror) > 1:
            return "Mirror traffic can only be set to one deployment"
        for deployment, percent in mirror.items():
            if not 0 <= percent <= 50:
                return f"Mirror traffic for {deployment} must be 0..50, not {percent}"
            if traffic.get(deployment):
                return f"Deployment {deployment} cannot get both live and mirror traffic"
        return None

    def _delete_endpoint(self, name: str, *, body: Any) -> Reply:
        found = self._endpoint(name)
        if found is None:
            return 204, {}, ""
        found["properties"]["provisioningState"] = "Deleting"

        def finish() -> None:
            self.endpoints.pop(found["name"], None)
            self.deployments.pop(found["name"], None)

        return self._accepted_delete(finish)

    # --- deployments ------------------------------------------------------------------------

    def _list_deployments(self, endpoint: str, *, body: Any) -> Reply:
        if self._endpoint(endpoint) is None:
            return _not_found(f"onlineEndpoints/{endpoint}")
        return _ok({"value": list(self.deployments.get(endpoint, {}).values())})

    def _get_deployment(self, endpoint: str, name: str, *, body: Any) -> Reply:
        found = self.deployments.get(endpoint, {}).get(name)
        if found is None:
            return _not_found(f"onlineEndpoints/{endpoint}/deployments/{name}")
        return _ok(found)

    def _put_deployment(self, endpoint: str, name: str, *, body: Any) -> Reply:
        if self._endpoint(endpoint) is None:
            return _not_found(f"onlineEndpoints/{endpoint}")
        if not _valid_name(name):
            return _error(400, "BadArgument", f"Deployment name {name!r} is invalid")
        props = dict((body or {}).get("properties") or {})
        env_id = str(props.get("environmentId") or "")
        if env_id and not self._environment_exists(env_id):
            return _error(400, "BadArgument", f"Environment {env_id} does not exist")
        current = self.deployments[endpoint].get(name)
        stored: dict[str, Any] = {
            "id": f"{self._workspace_path}/onlineEndpoints/{endpoint}/deployments/{name}",
            "name": name,
            "type": f"{PROVIDER}/workspaces/onlineEndpoints/deployments",
            "location": (body or {}).get("location") or self.location,
            "kind": "Managed",
            "tags": dict((body or {}).get("tags") or {}),
            "sku": {"name": "Default", "tier": "Standard", **((body or {}).get("sku") or {})},
            "properties": {
                "appInsightsEnabled": False,
                "egressPublicNetworkAccess": "Enabled",
                "scaleSettings": {"scaleType": "Default"},
                **props,
                "endpointComputeType": "Managed",
                "provisioningState": "Updating" if current else "Creating",
            },
            "systemData": (current or {}).get("systemData") or _system_data(),
        }
        self.deployments[endpoint][name] = stored
        failure = self._failed_deployments.pop(name, None)

        def finish() -> dict[str, str] | None:
            if failure is not None:
                stored["properties"]["provisioningState"] = "Failed"
                return {"code": "DeploymentFailed", "message": failure}
            stored["properties"]["provisioningState"] = "Succeeded"
            return None

        return self._accepted_put(stored, finish)

    def _delete_deployment(self, endpoint: str, name: str, *, body: Any) -> Reply:
        found = self.deployments.get(endpoint, {}).get(name)
        if found is None:
            return 204, {}, ""
        owner = self._endpoint(endpoint) or {}
        routed = {
            **(owner.get("properties", {}).get("traffic") or {}),
            **(owner.get("properties", {}).get("mirrorTraffic") or {}),
        }
        if int(routed.get(name, 0)):
            return _error(
                400,
                "BadArgument",
                f"Deployment {name} has traffic; set its traffic and mirror traffic to 0 first",
            )
        found["properties"]["provisioningState"] = "Deleting"

        def finish() -> None:
            self.deployments.get(endpoint, {}).pop(name, None)

        return self._accepted_delete(finish)

    def _environment_exists(self, env_id: str) -> bool:
        found = re.search(r"/environments/([^/]+)/versions/([^/]+)$", env_id, re.IGNORECASE)
        return found is not None and (found.group(1), found.group(2)) in self.environments

    # --- long-running operations ------------------------------------------------------------

    def _accepted_put(self, resource: dict[str, Any], finish: Any) -> Reply:
        op = self._start(finish)
        headers = {
            "Azure-AsyncOperation": self._operation_url("mfeOperationsStatus", op),
            "x-ms-async-operation-timeout": "PT1H",
        }
        return 201, headers, json.dumps(resource)

    def _accepted_delete(self, finish: Any) -> Reply:
        op = self._start(finish)
        headers = {
            "Azure-AsyncOperation": self._operation_url("mfeOperationsStatus", op),
            "Location": self._operation_url("mfeOperationResults", op),
            "x-ms-async-operation-timeout": "PT1H",
        }
        return 202, headers, ""

    def _start(self, finish: Any) -> str:
        op = str(uuid.uuid4())
        self.operations[op] = Operation(finish, self.polls_per_operation)
        return op

    def _operation_url(self, kind: str, op: str) -> str:
        return (
            f"{ARM}/subscriptions/{self.subscription_id}/providers/{PROVIDER}/locations/"
            f"{self.location}/{kind}/{op}?api-version=2022-02-01-preview&type=async"
        )

    def _operation_reply(self, kind: str, op_id: str) -> Reply:
        op = self.operations.get(op_id)
        if op is None:
            return _not_found(f"operation {op_id}")
        if op.status == "InProgress":
            if op.polls > 0:
                op.polls -= 1
            else:
                op.error = op.finish()
                op.status = "Failed" if op.error else "Succeeded"
        # Retry-After: 1 s, the shortest the SDK's pollers wait (0 means their 5-30 s default).
        wait = {"Retry-After": "1"} if op.status == "InProgress" else {}
        if kind == "mfeoperationresults":
            return (202, wait, "") if op.status == "InProgress" else (200, {}, "")
        status: dict[str, Any] = {"id": op_id, "name": op_id, "status": op.status}
        status["startTime"] = _now()
        if op.status != "InProgress":
            status["endTime"] = _now()
        if op.error:
            status["error"] = op.error
        code, headers, text = _ok(status)
        return code, {**headers, **wait}, text


def _valid_name(name: str) -> bool:
    return 3 <= len(name) <= 32 and bool(re.fullmatch(r"[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?", name))


def _json_body(raw: Any) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _ok(body: Any, status: int = 200) -> Reply:
    return status, {"Content-Type": "application/json"}, json.dumps(body)


def _error(status: int, code: str, message: str) -> Reply:
    body = {"error": {"code": code, "message": message}}
    return (
        status,
        {"Content-Type": "application/json", "x-ms-failure-cause": "service"},
        (json.dumps(body)),
    )


def _not_found(what: str) -> Reply:
    return _error(404, "ResourceNotFound", f"The resource {what} was not found.")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _system_data() -> dict[str, str]:
    now = _now()
    return {
        "createdAt": now,
        "createdBy": "deployer@modelyard.test",
        "createdByType": "User",
        "lastModifiedAt": now,
        "lastModifiedBy": "deployer@modelyard.test",
        "lastModifiedByType": "User",
    }


def _identity() -> dict[str, str]:
    return {
        "type": "SystemAssigned",
        "principalId": str(uuid.uuid4()),
        "tenantId": "00000000-0000-0000-0000-0000000000aa",
    }


def fake_settings(settings: Settings) -> Settings:
    """``settings`` with a subscription, resource group and workspace when they have none."""
    azure = settings.azure.model_copy(
        update={
            "subscription_id": settings.azure.subscription_id
            or "00000000-0000-0000-0000-000000000001",
            "resource_group": settings.azure.resource_group or "modelyard-rg",
            "workspace": settings.azure.workspace or "modelyard-ws",
        }
    )
    return settings.model_copy(update={"azure": azure})


class FakedAzureTarget(AzureTarget):
    """An ``AzureTarget`` that also holds the :class:`FakeAzureML` it talks to, as ``.fake``."""

    def __init__(self, settings: Settings, fake: FakeAzureML, **options: Any) -> None:
        super().__init__(settings, **options)
        self.fake = fake


@contextlib.contextmanager
def fake_azure(
    settings: Settings, *, real_credentials: bool = False, **options: Any
) -> Iterator[FakedAzureTarget]:
    """An ``AzureTarget`` whose ``MLClient`` talks to a :class:`FakeAzureML` (``target.fake``).

    ``settings`` get a subscription, resource group and workspace if they have none. ``options``
    go to ``FakeAzureML`` (``location``, ``polls_per_operation``). The target gets a fake
    bearer-token credential, or with ``real_credentials`` the SDK's own ``DefaultAzureCredential``
    chain; either way the real SDK code path runs and no request leaves the process
    (``responses`` refuses any URL but management.azure.com's).
    """
    configured = fake_settings(settings)
    fake = FakeAzureML(
        str(configured.azure.subscription_id),
        str(configured.azure.resource_group),
        str(configured.azure.workspace),
        **options,
    )
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake.install(mock)
        credential = None if real_credentials else FakeTokenCredential()
        yield FakedAzureTarget(configured, fake, credential=credential, lro_timeout=30.0)
