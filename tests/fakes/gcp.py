"""A stateful fake of the Cloud Run Admin API v2 for one project and region, served to the real
``google-cloud-run`` client (REST transport) through ``responses``.

It answers what ``run_v2.ServicesClient`` and ``RevisionsClient`` send: services (create, get,
list with pages, patch with ``updateMask``/``allowMissing``/etag, delete), revisions (get,
delete) and the long-running operations every mutation returns (first answer ``done: false``
with the service as metadata, then a GET of the operation answers ``done: true`` with the
``response`` or an ``error``). Bodies are protobuf JSON as Cloud Run sends them (camelCase,
int64 as strings, enums as numbers since the client asks for ``enum-encoding=int``), with the
output fields the API fills: ``uid``, ``generation``, ``etag``, ``terminalCondition``,
``conditions``, ``latestReadyRevision``/``latestCreatedRevision`` (full names),
``trafficStatuses`` with each tag's ``uri``, ``uri``/``urls``, ``reconciling``, and defaults in
the template (``timeout``, ``maxInstanceRequestConcurrency``, ``cpuIdle``).

It refuses what Cloud Run refuses: a request without a bearer token (401), a service that
exists (409), a revision name not prefixed by the service's or naming an existing revision with
another configuration (409 ALREADY_EXISTS), traffic that does not sum to 100 or names a missing
revision or repeats a tag, a stale etag (409 ABORTED), an unknown ``updateMask`` path, deleting
a revision that is in the traffic or is the template's (400 FAILED_PRECONDITION), reserved
label/annotation prefixes. A revision whose image was marked with :meth:`fail_image` does not
become ready: its operation ends with Cloud Run's error and the service keeps serving as before.

Use :func:`fake_gcp`; ``target.fake`` is the :class:`FakeCloudRun` behind it::

    with fake_gcp(settings) as target:
        target.deploy(spec)
        target.fake.traffic("penguins")                   # {revision: percent} as routed
        target.fake.sent("PATCH", "/services/penguins")   # the JSON bodies sent
        target.fake.fail_next("PATCH", "/services/penguins", 403, "PERMISSION_DENIED", "denied")
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import responses

if TYPE_CHECKING:
    from infra.gcp.target import GcpTarget
    from modelyard.settings import Settings

HOST = "https://run.googleapis.com"
ANY_RUN_URL = re.compile(r"https://run\.googleapis\.com/.*")
TOKEN = "fake-google-access-token"
Reply = tuple[int, dict[str, str], str]
Json = dict[str, Any]

# Enum numbers of the API (as sent with enum-encoding=int).
REVISION, LATEST = 2, 1
CONDITION_FAILED, CONDITION_SUCCEEDED = 3, 4
INGRESS_ALL, LAUNCH_GA = 1, 4
REVISION_FAILED, HEALTH_CHECK_CONTAINER_ERROR = 2, 6  # Condition.CommonReason, .RevisionReason
SERVICE_TYPE = "type.googleapis.com/google.cloud.run.v2.Service"
REVISION_TYPE = "type.googleapis.com/google.cloud.run.v2.Revision"
MUTABLE = (
    "description", "labels", "annotations", "client", "clientVersion", "ingress", "launchStage",
    "binaryAuthorization", "template", "traffic", "scaling", "invokerIamDisabled",
    "defaultUriDisabled", "customAudiences",
)  # fmt: skip
RESERVED_PREFIXES = ("run.googleapis.com", "cloud.googleapis.com", "serving.knative.dev",
                     "autoscaling.knative.dev")  # fmt: skip
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL = re.compile(r"^[a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class SentRequest:
    """One request the client sent: method, path, query (single values) and JSON body."""

    method: str
    path: str
    query: dict[str, str]
    body: Any


class ApiError(Exception):
    def __init__(self, http: int, status: str, message: str) -> None:
        super().__init__(message)
        self.http, self.status, self.message = http, status, message


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeCloudRun:
    """One project and region of Cloud Run services, as the Admin API v2 serves them."""

    def __init__(self, project: str, region: str, *, page_size: int = 2) -> None:
        self.project = project
        self.region = region
        self.page_size = page_size  # small, so listing exercises the client's pager
        self.parent = f"projects/{project}/locations/{region}"
        self.services: dict[str, Json] = {}  # full name -> stored service (spec + state)
        self.revisions: dict[str, Json] = {}  # full name -> revision body
        self.sent_templates: dict[str, Json] = {}  # revision full name -> template as sent
        self.operations: dict[str, Json] = {}
        self.requests: list[SentRequest] = []
        self._failures: list[tuple[str, str, int, str, str]] = []
        self._failing_images: dict[str, str] = {}
        self._lock = threading.RLock()
        digest = hashlib.blake2b(project.encode(), digest_size=5).hexdigest()
        self._host_hash = digest
        self._region_code = "".join(part[0] for part in region.split("-")[:2])

    # --- for tests --------------------------------------------------------------------------

    def install(self, mock: responses.RequestsMock) -> None:
        """Answer every request to run.googleapis.com made while ``mock`` is active."""
        for method in ("GET", "POST", "PATCH", "DELETE"):
            mock.add_callback(method, ANY_RUN_URL, callback=self.handle)

    @staticmethod
    def credentials() -> Any:
        """Credentials that send the bearer token this fake accepts (never refreshed)."""
        from google.oauth2.credentials import Credentials

        return Credentials(token=TOKEN)

    def sent(self, method: str, path_suffix: str = "") -> list[Any]:
        """Bodies of the ``method`` requests whose path ends with ``path_suffix``."""
        return [
            r.body for r in self.requests if r.method == method and r.path.endswith(path_suffix)
        ]

    def calls(self, method: str, path_suffix: str = "") -> list[SentRequest]:
        return [r for r in self.requests if r.method == method and r.path.endswith(path_suffix)]

    def fail_next(
        self, method: str, path_suffix: str, http: int, status: str, message: str
    ) -> None:
        """Make the next ``method`` request on a path ending with ``path_suffix`` fail as Google
        APIs do (``{"error": {"code", "message", "status"}}``)."""
        self._failures.append((method, path_suffix, http, status, message))

    def fail_image(self, image: str, message: str) -> None:
        """Revisions running ``image`` will not become ready (their operation fails)."""
        self._failing_images[image] = message

    def service(self, service_id: str) -> Json:
        """The service as a GET returns it."""
        return self._render(self.services[self._service_name(service_id)])

    def traffic(self, service_id: str) -> dict[str, int]:
        """Revision id -> percent, as Cloud Run routes it (``trafficStatuses``)."""
        statuses = self.service(service_id).get("trafficStatuses", [])
        return {s["revision"]: s.get("percent", 0) for s in statuses if s.get("percent")}

    def revision_ids(self, service_id: str) -> list[str]:
        prefix = self._service_name(service_id) + "/revisions/"
        return sorted(name[len(prefix) :] for name in self.revisions if name.startswith(prefix))

    # --- the HTTP side ----------------------------------------------------------------------

    def handle(self, request: Any) -> Reply:
        """The ``responses`` callback: record the request, route it, answer it."""
        url = urlsplit(request.url)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        body = json.loads(request.body) if request.body else None
        with self._lock:
            self.requests.append(SentRequest(request.method, url.path, query, body))
            try:
                if request.headers.get("Authorization") != f"Bearer {TOKEN}":
                    raise ApiError(
                        401,
                        "UNAUTHENTICATED",
                        "Request is missing required authentication credential. Expected OAuth 2 "
                        "access token, login cookie or other valid authentication credential.",
                    )
                self._raise_injected(request.method, url.path)
                return _reply(200, self._route(request.method, url.path, query, body))
            except ApiError as exc:
                error = {"code": exc.http, "message": exc.message, "status": exc.status}
                return _reply(exc.http, {"error": error})

    def _raise_injected(self, method: str, path: str) -> None:
        for failure in self._failures:
            if failure[0] == method and path.endswith(failure[1]):
                self._failures.remove(failure)
                raise ApiError(failure[2], failure[3], failure[4])

    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> Json:
        base = f"/v2/{self.parent}"
        if not path.startswith(base):
            raise ApiError(404, "NOT_FOUND", f"Location {path} was not found in this fake.")
        parts = path[len(base) :].strip("/").split("/")
        routes: dict[tuple[str, int, str], Callable[..., Json]] = {
            ("GET", 1, "services"): self._list_services,
            ("POST", 1, "services"): self._create_service,
            ("GET", 2, "services"): self._get_service,
            ("PATCH", 2, "services"): self._update_service,
            ("DELETE", 2, "services"): self._delete_service,
            ("GET", 4, "services"): self._get_revision,
            ("DELETE", 4, "services"): self._delete_revision,
            ("GET", 2, "operations"): self._get_operation,
        }
        handler = routes.get((method, len(parts), parts[0]))
        if handler is None or (len(parts) == 4 and parts[2] != "revisions"):
            raise ApiError(501, "UNIMPLEMENTED", f"the fake has no {method} {path}")
        return handler(*parts[1::2], query=query, body=body)

    # --- services ---------------------------------------------------------------------------

    def _list_services(self, *, query: dict[str, str], body: Any) -> Json:
        names = sorted(self.services)
        size = int(query.get("pageSize") or self.page_size)
        start = int(query.get("pageToken") or 0)
        page = {"services": [self._render(self.services[n]) for n in names[start : start + size]]}
        if start + size < len(names):
            page["nextPageToken"] = str(start + size)
        return page

    def _get_service(self, service_id: str, *, query: dict[str, str], body: Any) -> Json:
        return self._render(self._existing(service_id))

    def _create_service(self, *, query: dict[str, str], body: Any) -> Json:
        service_id = query.get("serviceId", "")
        if not _NAME.match(service_id) or len(service_id) > 49:
            raise ApiError(400, "INVALID_ARGUMENT", f"service_id {service_id!r} is invalid.")
        name = self._service_name(service_id)
        if name in self.services:
            raise ApiError(409, "ALREADY_EXISTS", f"Resource '{service_id}' already exists.")
        return self._create(name, body or {})

    def _create(self, name: str, body: Json) -> Json:
        stored: Json = {
            "name": name,
            "uid": str(uuid.uuid4()),
            "generation": 0,
            "createTime": now(),
            "creator": "modelyard-ci@example.iam.gserviceaccount.com",
            "spec": {"ingress": INGRESS_ALL, "launchStage": LAUNCH_GA},
            "statuses": [],
            "latestCreated": "",
            "latestReady": "",
            "failure": "",
        }
        return self._mutate(stored, body, mask=None, new=True)

    def _update_service(self, service_id: str, *, query: dict[str, str], body: Any) -> Json:
        name = self._service_name(service_id)
        if name not in self.services:
            if query.get("allowMissing") == "true":
                return self._create(name, body or {})
            raise ApiError(404, "NOT_FOUND", f"Resource '{service_id}' was not found")
        stored = self.services[name]
        etag = (body or {}).get("etag")
        if etag and etag != stored["etag"]:
            raise ApiError(
                409, "ABORTED", "The service has been modified since it was read (etag mismatch)."
            )
        mask = [p for p in query.get("updateMask", "").split(",") if p] or None
        for path in mask or ():
            if path not in MUTABLE:
                raise ApiError(400, "INVALID_ARGUMENT", f"Invalid field mask path: {path}")
        return self._mutate(stored, body or {}, mask=mask, new=False)

    def _mutate(self, stored: Json, body: Json, *, mask: list[str] | None, new: bool) -> Json:
        """Validate and apply a create/update, create the template's revision if it is new,
        reconcile the traffic, and return the operation that reports it."""
        spec = copy.deepcopy(stored["spec"])
        for key in mask or MUTABLE:
            if key in body:
                spec[key] = copy.deepcopy(body[key])
            elif mask is not None or key not in ("ingress", "launchStage"):
                spec.pop(key, None)
        _check_metadata(spec.get("labels", {}), spec.get("annotations", {}))
        template = spec.get("template") or {}
        if not template.get("containers") or not template["containers"][0].get("image"):
            raise ApiError(400, "INVALID_ARGUMENT", "template.containers[0].image is required")
        service_id = stored["name"].rsplit("/", 1)[-1]
        revision = self._revision_for(stored, service_id, template)
        spec["template"] = {**template, "revision": revision}
        self._check_traffic(stored, spec.setdefault("traffic", _latest_100()), revision)
        stored["spec"] = spec
        stored["generation"] += 1
        stored["updateTime"] = now()
        stored["etag"] = f'"{uuid.uuid4().hex[:16]}"'
        if new:
            self.services[stored["name"]] = stored
        self._reconcile(stored, revision)
        return self._operation(stored)

    def _revision_for(self, stored: Json, service_id: str, template: Json) -> str:
        """The template's revision id: an existing one with the same configuration, or a new
        revision (named by the template, else generated) created now."""
        wanted = template.get("revision") or ""
        current = stored["spec"].get("template") or {}
        config = {k: v for k, v in template.items() if k != "revision"}
        if (
            not wanted
            and current
            and config
            == self.sent_templates.get(f"{stored['name']}/revisions/{current.get('revision')}")
        ):
            return str(current["revision"])  # nothing changed: no new revision
        if not wanted:
            wanted = f"{service_id}-{stored['generation'] + 1:05d}-{uuid.uuid4().hex[:3]}"
        if not wanted.startswith(f"{service_id}-") or len(wanted) > 63 or not _NAME.match(wanted):
            raise ApiError(
                400,
                "INVALID_ARGUMENT",
                f"Revision name {wanted!r} must start with '{service_id}-', use lowercase "
                "letters, digits and '-', and have at most 63 characters.",
            )
        full = f"{stored['name']}/revisions/{wanted}"
        if full in self.sent_templates:
            if self.sent_templates[full] != config:
                raise ApiError(
                    409,
                    "ALREADY_EXISTS",
                    f"Revision named '{wanted}' with different configuration already exists.",
                )
            return wanted
        self.sent_templates[full] = copy.deepcopy(config)
        self.revisions[full] = self._new_revision(stored, full, config)
        return wanted

    def _new_revision(self, stored: Json, full: str, config: Json) -> Json:
        containers = [_with_container_defaults(c) for c in config.get("containers", [])]
        failure = self._failing_images.get(containers[0].get("image", ""), "")
        ready = {
            "type": "Ready",
            "state": CONDITION_FAILED if failure else CONDITION_SUCCEEDED,
            "lastTransitionTime": now(),
        }
        if failure:
            ready |= {"message": failure, "revisionReason": HEALTH_CHECK_CONTAINER_ERROR}
        return {
            **{k: v for k, v in config.items() if k != "containers"},
            "name": full,
            "uid": str(uuid.uuid4()),
            "generation": "1",
            "createTime": now(),
            "updateTime": now(),
            "launchStage": LAUNCH_GA,
            "service": stored["name"],
            "containers": containers,
            "maxInstanceRequestConcurrency": config.get("maxInstanceRequestConcurrency", 80),
            "timeout": config.get("timeout", "300s"),
            "conditions": [ready],
            "observedGeneration": "1",
            "logUri": f"https://console.cloud.google.com/logs/viewer?project={self.project}",
            "etag": f'"{uuid.uuid4().hex[:16]}"',
        }

    def _check_traffic(self, stored: Json, traffic: list[Json], template_revision: str) -> None:
        total, tags = 0, set()
        for entry in traffic:
            percent = entry.get("percent", 0)
            if not 0 <= percent <= 100:
                raise ApiError(400, "INVALID_ARGUMENT", f"Traffic percent {percent} not 0..100.")
            total += percent
            if entry.get("type") == REVISION:
                revision = entry.get("revision", "")
                known = f"{stored['name']}/revisions/{revision}" in self.revisions
                if revision != template_revision and not known:
                    raise ApiError(
                        400, "INVALID_ARGUMENT", f"Revision '{revision}' does not exist."
                    )
            elif entry.get("type") != LATEST:
                raise ApiError(400, "INVALID_ARGUMENT", "Traffic target type is required.")
            tag = entry.get("tag")
            if tag and (tag in tags or not _NAME.match(tag)):
                raise ApiError(
                    400, "INVALID_ARGUMENT", f"Traffic tag {tag!r} is invalid or repeated."
                )
            tags.add(tag)
        if total != 100:
            raise ApiError(
                400, "INVALID_ARGUMENT", f"Traffic percentages must add up to 100, got {total}."
            )

    def _reconcile(self, stored: Json, revision: str) -> None:
        """Route the traffic when every revision it names is ready; else keep the last good
        routing and record the failure (what Cloud Run does)."""
        stored["latestCreated"] = f"{stored['name']}/revisions/{revision}"
        failure = self._revision_failure(stored["latestCreated"])
        if not failure:
            stored["latestReady"] = stored["latestCreated"]
            routed = [
                {**entry, "revision": revision} if entry.get("type") == LATEST else entry
                for entry in stored["spec"]["traffic"]
            ]
            stored["statuses"] = [self._traffic_status(stored, e) for e in routed]
        stored["failure"] = (
            f"Revision '{revision}' is not ready and cannot serve traffic. {failure}"
            if failure
            else ""
        )

    def _revision_failure(self, full: str) -> str:
        ready = self.revisions[full]["conditions"][0]
        return str(ready.get("message", "")) if ready["state"] == CONDITION_FAILED else ""

    def _traffic_status(self, stored: Json, entry: Json) -> Json:
        status = {k: entry[k] for k in ("type", "revision", "percent", "tag") if k in entry}
        if entry.get("tag"):
            service_id = stored["name"].rsplit("/", 1)[-1]
            host = f"{service_id}-{self._host_hash}-{self._region_code}.a.run.app"
            status["uri"] = f"https://{entry['tag']}---{host}"
        return status

    def _delete_service(self, service_id: str, *, query: dict[str, str], body: Any) -> Json:
        stored = self._existing(service_id)
        rendered = self._render(stored)
        del self.services[stored["name"]]
        for full in [n for n in self.revisions if n.startswith(stored["name"] + "/revisions/")]:
            del self.revisions[full]
            self.sent_templates.pop(full, None)
        return self._finished_operation(SERVICE_TYPE, rendered)

    # --- revisions and operations -----------------------------------------------------------

    def _get_revision(self, service_id: str, revision: str, **_: Any) -> Json:
        full = f"{self._service_name(service_id)}/revisions/{revision}"
        if full not in self.revisions:
            raise ApiError(404, "NOT_FOUND", f"Resource '{revision}' of kind 'REVISION' not found")
        return self.revisions[full]

    def _delete_revision(self, service_id: str, revision: str, **_: Any) -> Json:
        found = self._get_revision(service_id, revision)
        stored = self._existing(service_id)
        if any(e.get("revision") == revision for e in stored["spec"]["traffic"]):
            raise ApiError(
                400,
                "FAILED_PRECONDITION",
                f"Revision {revision} is referenced by a traffic target and cannot be deleted.",
            )
        if stored["spec"]["template"].get("revision") == revision:
            raise ApiError(
                400,
                "FAILED_PRECONDITION",
                f"Revision {revision} is the service's latest created revision (its template) "
                "and cannot be deleted.",
            )
        del self.revisions[found["name"]]
        return self._finished_operation(REVISION_TYPE, found)

    def _get_operation(self, operation_id: str, **_: Any) -> Json:
        name = f"{self.parent}/operations/{operation_id}"
        if name not in self.operations:
            raise ApiError(404, "NOT_FOUND", f"Operation {operation_id} was not found.")
        return self.operations[name]

    def _operation(self, stored: Json) -> Json:
        """The first answer to a mutation (not done), and its result for the GET that follows."""
        name = f"{self.parent}/operations/{uuid.uuid4()}"
        rendered = self._render(stored)
        metadata = {"@type": SERVICE_TYPE, **rendered, "reconciling": True}
        done: Json = {"name": name, "metadata": metadata, "done": True}
        if stored["failure"]:
            done["error"] = {"code": 9, "message": stored["failure"]}
        else:
            done["response"] = {"@type": SERVICE_TYPE, **rendered}
        self.operations[name] = done
        return {"name": name, "metadata": metadata, "done": False}

    def _finished_operation(self, type_url: str, resource: Json) -> Json:
        name = f"{self.parent}/operations/{uuid.uuid4()}"
        self.operations[name] = {
            "name": name,
            "metadata": {"@type": type_url, **resource},
            "done": True,
            "response": {"@type": type_url, **resource},
        }
        return {"name": name, "metadata": {"@type": type_url, **resource}, "done": False}

    # --- rendering --------------------------------------------------------------------------

    def _render(self, stored: Json) -> Json:
        """The service as the API returns it: its spec plus the output fields."""
        spec = copy.deepcopy(stored["spec"])
        template = spec.get("template", {})
        template.setdefault("timeout", "300s")
        template.setdefault("maxInstanceRequestConcurrency", 80)
        template["containers"] = [_with_container_defaults(c) for c in template["containers"]]
        service_id = stored["name"].rsplit("/", 1)[-1]
        host = f"{service_id}-{self._host_hash}-{self._region_code}.a.run.app"
        failed = bool(stored["failure"])
        terminal = {
            "type": "Ready",
            "state": CONDITION_FAILED if failed else CONDITION_SUCCEEDED,
            "lastTransitionTime": stored["updateTime"],
        }
        if failed:
            terminal |= {"message": stored["failure"], "reason": REVISION_FAILED}
        return {
            "name": stored["name"],
            "uid": stored["uid"],
            "generation": str(stored["generation"]),
            "createTime": stored["createTime"],
            "updateTime": stored["updateTime"],
            "creator": stored["creator"],
            "lastModifier": stored["creator"],
            **spec,
            "observedGeneration": str(stored["generation"]),
            "terminalCondition": terminal,
            "conditions": [
                {"type": "RoutesReady", "state": terminal["state"]},
                {"type": "ConfigurationsReady", "state": terminal["state"]},
            ],
            "latestReadyRevision": stored["latestReady"],
            "latestCreatedRevision": stored["latestCreated"],
            "trafficStatuses": copy.deepcopy(stored["statuses"]),
            "uri": f"https://{host}",
            "urls": [f"https://{service_id}-{self._host_hash}.{self.region}.run.app"],
            "reconciling": False,
            "etag": stored["etag"],
        }

    def _service_name(self, service_id: str) -> str:
        return f"{self.parent}/services/{service_id}"

    def _existing(self, service_id: str) -> Json:
        name = self._service_name(service_id)
        if name not in self.services:
            raise ApiError(404, "NOT_FOUND", f"Resource '{service_id}' of kind 'SERVICE' not found")
        return self.services[name]


def _latest_100() -> list[Json]:
    return [{"type": LATEST, "percent": 100}]


def _with_container_defaults(container: Json) -> Json:
    result = copy.deepcopy(container)
    resources = result.setdefault("resources", {})
    resources.setdefault("limits", {"cpu": "1000m", "memory": "512Mi"})
    resources.setdefault("cpuIdle", True)
    resources.setdefault("startupCpuBoost", False)
    return result


def _check_metadata(labels: dict[str, str], annotations: dict[str, str]) -> None:
    for key in [*labels, *annotations]:
        if key.split("/", 1)[0] in RESERVED_PREFIXES:
            raise ApiError(400, "INVALID_ARGUMENT", f"Reserved label or annotation key: {key}")
    for key, value in labels.items():
        if not key or not _LABEL.match(key) or not _LABEL.match(value):
            raise ApiError(400, "INVALID_ARGUMENT", f"Invalid label {key}={value!r}")


def _reply(status: int, body: Json) -> Reply:
    return status, {"Content-Type": "application/json; charset=UTF-8"}, json.dumps(body)


@contextlib.contextmanager
def fake_gcp(settings: Settings, *, project: str | None = None) -> Iterator[GcpTarget]:
    """A ``GcpTarget`` whose Cloud Run is a :class:`FakeCloudRun` (``target.fake``).

    The project is ``project``, else ``settings.gcp.project``, else ``modelyard-test`` (the
    target gets a copy of ``settings`` with it set). Requests to anything but run.googleapis.com
    and loopback are refused while the fake is active.
    """
    from infra.gcp.target import GcpTarget

    project = project or settings.gcp.project or "modelyard-test"
    gcp = settings.gcp.model_copy(update={"project": project})
    settings = settings.model_copy(update={"gcp": gcp})
    fake = FakeCloudRun(project, gcp.region)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru(re.compile(r"https?://(127\.0\.0\.1|localhost)(:\d+)?/"))
        fake.install(mock)
        target = GcpTarget(settings, credentials=fake.credentials())
        target.fake = fake  # type: ignore[attr-defined]
        yield target
