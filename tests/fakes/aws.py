"""AWS emulated in-process by moto (``mock_aws``), plus the two SageMaker features moto lacks.

moto 5.2.5 raises ``NotImplementedError`` for ``UpdateEndpoint`` and silently drops
``ShadowProductionVariants`` from ``CreateEndpointConfig``. The emulator fills both gaps with
botocore event handlers on the session the target uses, so the target's own boto3 calls run
unchanged:

* ``before-call`` fires after botocore has serialised the request, i.e. after its
  ``ParamValidator`` checked it against the service model (required members, types, lengths,
  ranges); there :meth:`AwsEmulator.on_call` records every request and checks what botocore does
  not (enums, patterns, maximum lengths), failing the test at the call when SageMaker would
  refuse it. For ``UpdateEndpoint`` it then does what SageMaker does once an update completes:
  moto's endpoint takes the new config's variants (instance counts kept when
  ``RetainAllVariantProperties``), and the call gets the real response shape.
* ``CreateEndpointConfig``/``CreateEndpoint`` keep the shadow variants on moto's objects so the
  describe calls return them as SageMaker does; SageMaker's rule (one production and one shadow
  variant when a shadow is given) is enforced.

The emulated update completes at once: no Updating phase, no baking, no alarm-driven rollback.
A guarded update's wiring is asserted instead (same variant names, the alarms exist).
"""

from __future__ import annotations

import copy
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

import boto3
from botocore.awsrequest import AWSResponse
from botocore.model import Shape
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID

from infra.aws.target import AwsTarget
from modelyard.settings import Settings

ACCOUNT = DEFAULT_ACCOUNT_ID
REGION = "eu-west-1"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/modelyard-sagemaker"
FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}
# Anything that could point boto3 at a real account or a real credential source.
REAL_ENV = (
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL",
)
PARAMS_KEY = "modelyard_api_params"


@dataclass(frozen=True)
class AwsCall:
    """One request the target sent: the API parameters as given to boto3."""

    service: str
    operation: str
    params: dict[str, Any]


class AwsEmulator:
    """moto's AWS behind one boto3 session, with UpdateEndpoint and shadow variants added."""

    def __init__(self, session: boto3.Session, region: str) -> None:
        self.session = session
        self.region = region
        self.calls: list[AwsCall] = []
        self._errors: dict[str, tuple[str, str]] = {}
        self._rollback_reason: str | None = None
        self._own_session = boto3.Session(region_name=region)
        self._clients: dict[str, Any] = {}
        events = session.events
        events.register("before-parameter-build", self._keep_params)
        events.register("before-call", self.on_call)
        events.register("after-call.sagemaker.CreateEndpointConfig", self._keep_config_shadows)
        events.register("after-call.sagemaker.CreateEndpoint", self._keep_endpoint_shadows)

    # --- for tests ----------------------------------------------------------------------------

    def requests(self, operation: str) -> list[dict[str, Any]]:
        """The parameters of every ``operation`` call so far, oldest first."""
        return [call.params for call in self.calls if call.operation == operation]

    def operations(self) -> list[str]:
        return [call.operation for call in self.calls]

    def fail_next(self, operation: str, code: str, message: str) -> None:
        """Make the next ``operation`` call fail as AWS would, with ``code`` and ``message``."""
        self._errors[operation] = (code, message)

    def roll_back_next_update(self, reason: str) -> None:
        """End the next UpdateEndpoint the way SageMaker ends an update whose alarm fired: in
        service on the previous config, with ``reason`` as its FailureReason."""
        self._rollback_reason = reason

    def client(self, service: str) -> Any:
        """A client of moto's AWS for the test's own checks (not recorded, not checked)."""
        if service not in self._clients:
            self._clients[service] = self._own_session.client(service)
        return self._clients[service]

    @property
    def sagemaker_backend(self) -> Any:
        from moto.sagemaker.models import sagemaker_backends

        return sagemaker_backends[ACCOUNT][self.region]

    # --- event handlers -----------------------------------------------------------------------

    def _keep_params(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context[PARAMS_KEY] = copy.deepcopy(params)

    def on_call(self, model: Any, context: dict[str, Any], **_: Any) -> Any:
        """Record and check the request; answer the calls moto cannot."""
        params = context.get(PARAMS_KEY, {})
        service = model.service_model.service_name
        self.calls.append(AwsCall(service, model.name, params))
        problems = problems_with(model.input_shape, params)
        assert not problems, f"{service}.{model.name} would be refused: {problems}"
        if model.name in self._errors:
            return _error(*self._errors.pop(model.name))
        if service == "sagemaker" and model.name == "UpdateEndpoint":
            return self._update_endpoint(params)
        if service == "sagemaker" and model.name == "CreateEndpointConfig":
            return self._check_shadows(params)
        return None

    def _check_shadows(self, params: dict[str, Any]) -> Any:
        shadows = params.get("ShadowProductionVariants") or []
        if shadows and (len(shadows) != 1 or len(params["ProductionVariants"]) != 1):
            return _error(
                "ValidationException",
                "(emulated) with ShadowProductionVariants, exactly one production variant and "
                "one shadow variant are allowed",
            )
        for spec in shadows:
            if spec["ModelName"] not in self.sagemaker_backend._models:
                return _error("ValidationException", f"Could not find model '{spec['ModelName']}'.")
        return None

    def _keep_config_shadows(self, http_response: Any, context: dict[str, Any], **_: Any) -> None:
        params = context.get(PARAMS_KEY, {})
        if http_response.status_code < 300 and params.get("ShadowProductionVariants"):
            config = self.sagemaker_backend.endpoint_configs[params["EndpointConfigName"]]
            config.shadow_production_variants = copy.deepcopy(params["ShadowProductionVariants"])

    def _keep_endpoint_shadows(self, http_response: Any, context: dict[str, Any], **_: Any) -> None:
        params = context.get(PARAMS_KEY, {})
        if http_response.status_code < 300:
            endpoint = self.sagemaker_backend.endpoints[params["EndpointName"]]
            config = self.sagemaker_backend.endpoint_configs[params["EndpointConfigName"]]
            _set_shadows(endpoint, config)

    def _update_endpoint(self, params: dict[str, Any]) -> tuple[AWSResponse, dict[str, Any]]:
        """SageMaker's UpdateEndpoint, completed at once: see the module docstring."""
        backend = self.sagemaker_backend
        endpoint = backend.endpoints.get(params["EndpointName"])
        config = backend.endpoint_configs.get(params["EndpointConfigName"])
        arn = f"arn:aws:sagemaker:{self.region}:{ACCOUNT}"
        if endpoint is None:
            return _error(
                "ValidationException",
                f'Could not find endpoint "{arn}:endpoint/{params["EndpointName"]}".',
            )
        if config is None:
            return _error(
                "ValidationException",
                f'Could not find endpoint configuration "{arn}:'
                f'endpoint-config/{params["EndpointConfigName"]}".',
            )
        if endpoint.endpoint_status != "InService":
            return _error(
                "ValidationException",
                f'Cannot update in-progress endpoint "{arn}:endpoint/{params["EndpointName"]}".',
            )
        if "DeploymentConfig" in params:
            self._assert_guardable(endpoint, config, params["DeploymentConfig"])
        if self._rollback_reason is not None:
            endpoint.failure_reason, self._rollback_reason = self._rollback_reason, None
            return _ok({"EndpointArn": endpoint.arn})
        new = endpoint._process_production_variants(config.production_variants)
        if params.get("RetainAllVariantProperties"):
            excluded = {
                p["VariantPropertyType"] for p in params.get("ExcludeRetainedVariantProperties", [])
            }
            _retain(endpoint.production_variants, new, excluded)
        endpoint.production_variants = new
        endpoint.endpoint_config_name = config.endpoint_config_name
        _set_shadows(endpoint, config)
        return _ok({"EndpointArn": endpoint.arn})

    def _assert_guardable(self, endpoint: Any, config: Any, deployment: dict[str, Any]) -> None:
        """A guarded (blue/green with auto-rollback) update keeps the variant names, and every
        alarm it watches exists (SageMaker's deployment guardrails documentation)."""
        from moto.cloudwatch.models import cloudwatch_backends

        old = {v["VariantName"] for v in endpoint.production_variants}
        new = {v["VariantName"] for v in config.production_variants}
        assert old == new, f"guarded update changes the variants {sorted(old)} -> {sorted(new)}"
        alarms = cloudwatch_backends[ACCOUNT][self.region].alarms
        wanted = deployment.get("AutoRollbackConfiguration", {}).get("Alarms", [])
        missing = [a["AlarmName"] for a in wanted if a["AlarmName"] not in alarms]
        assert not missing, f"auto-rollback watches alarms that do not exist: {missing}"


def _set_shadows(endpoint: Any, config: Any) -> None:
    shadows = getattr(config, "shadow_production_variants", [])
    endpoint.shadow_production_variants = endpoint._process_production_variants(shadows)


def _retain(old: list[dict[str, Any]], new: list[dict[str, Any]], excluded: set[str]) -> None:
    """SageMaker's RetainAllVariantProperties: same-named variants keep their live values."""
    kept = {
        "DesiredInstanceCount": ("CurrentInstanceCount", "DesiredInstanceCount"),
        "DesiredWeight": ("CurrentWeight", "DesiredWeight"),
    }
    previous = {v["VariantName"]: v for v in old}
    for variant in new:
        before = previous.get(variant["VariantName"])
        if before is None:
            continue
        for prop, keys in kept.items():
            if prop not in excluded:
                for key in keys:
                    if key in before:
                        variant[key] = before[key]


def _metadata(status: int) -> dict[str, Any]:
    return {
        "RequestId": uuid.uuid4().hex,
        "HTTPStatusCode": status,
        "HTTPHeaders": {},
        "RetryAttempts": 0,
    }


def _ok(body: dict[str, Any]) -> tuple[AWSResponse, dict[str, Any]]:
    return AWSResponse("https://emulated", 200, {}, None), {
        **body,
        "ResponseMetadata": _metadata(200),
    }


def _error(code: str, message: str) -> tuple[AWSResponse, dict[str, Any]]:
    parsed = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": _metadata(400)}
    return AWSResponse("https://emulated", 400, {}, None), parsed


def emulated_settings(settings: Settings) -> Settings:
    """``settings`` with a region and an execution role when they have none."""
    aws = settings.aws.model_copy(
        update={
            "region": settings.aws.region or REGION,
            "role_arn": settings.aws.role_arn or ROLE_ARN,
        }
    )
    return settings.model_copy(update={"aws": aws})


@contextmanager
def aws_environment() -> Iterator[None]:
    """Dummy credentials and region in the environment, anything real taken out; restored after."""
    with mock.patch.dict(os.environ, FAKE_ENV):
        for name in REAL_ENV:
            os.environ.pop(name, None)
        yield


@contextmanager
def emulated_aws(settings: Settings) -> Iterator[tuple[AwsEmulator, AwsTarget]]:
    """An emulator and a target bound to it (fast waits), inside ``mock_aws``."""
    with aws_environment(), mock_aws():
        ready = emulated_settings(settings)
        session = boto3.Session(region_name=ready.aws.region)
        emulator = AwsEmulator(session, str(ready.aws.region))
        target = AwsTarget(ready, session=session, wait_delay=0, wait_attempts=3, bake_seconds=60)
        yield emulator, target


@contextmanager
def fake_aws(settings: Settings) -> Iterator[AwsTarget]:
    """A ready :class:`AwsTarget` on emulated AWS; its state lives until the block ends."""
    with emulated_aws(settings) as (_, target):
        yield target


# --- the service model's constraints botocore does not check --------------------------------


def problems_with(shape: Shape, value: Any, path: str = "") -> list[str]:
    """Where ``value`` breaks ``shape``'s constraints: required members, enums, patterns,
    lengths and ranges (botocore itself checks only types, required members and minimums)."""
    where = path or shape.name
    kind = shape.type_name
    if kind == "structure":
        found = [
            f"{where}.{name} is required" for name in shape.required_members if name not in value
        ]
        for name, member in value.items():
            if name in shape.members:
                found += problems_with(shape.members[name], member, f"{where}.{name}")
            else:
                found.append(f"{where}.{name} is not in the service model")
        return found
    if kind == "list":
        found = _size_problems(shape, len(value), where)
        for index, item in enumerate(value):
            found += problems_with(shape.member, item, f"{where}[{index}]")
        return found
    if kind == "map":
        return [
            p
            for key, item in value.items()
            for p in problems_with(shape.value, item, f"{where}[{key}]")
        ]
    if kind == "string":
        return _string_problems(shape, value, where)
    if kind in {"integer", "long", "float", "double"}:
        return _range_problems(shape, value, where)
    return []


def _string_problems(shape: Shape, value: str, where: str) -> list[str]:
    found = _size_problems(shape, len(value), where)
    enum = shape.metadata.get("enum")
    if enum and value not in enum:
        found.append(f"{where}={value!r} is not one of {enum}")
    pattern = shape.metadata.get("pattern")
    if pattern and not _full_match(pattern, value):
        found.append(f"{where}={value!r} does not match {pattern}")
    return found


def _size_problems(shape: Shape, size: int, where: str) -> list[str]:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and size < low:
        return [f"{where} has length {size}, under {low}"]
    if high is not None and size > high:
        return [f"{where} has length {size}, over {high}"]
    return []


def _range_problems(shape: Shape, value: float, where: str) -> list[str]:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and value < low:
        return [f"{where}={value} is under {low}"]
    if high is not None and value > high:
        return [f"{where}={value} is over {high}"]
    return []


def _full_match(pattern: str, value: str) -> bool:
    """AWS patterns are Java regexes (``\\p{L}``...): the ``regex`` module (installed with moto's
    server extras) reads them; without it, or for a pattern it cannot read, nothing is checked."""
    try:
        import regex
    except ImportError:  # pragma: no cover - regex comes with moto[server] and evidently
        return True
    try:
        return regex.fullmatch(pattern, value) is not None
    except regex.error:
        return True
