"""Names of the AWS resources behind one model, derived from the model and version alone.

SageMaker names (endpoint, endpoint config, model, variant) match
``[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}`` and are unique per account and region regardless of case, so
a model name is lowercased, every other run of characters becomes ``-``, and a name that had to
change gets a short hash of the original: ``Penguins`` and ``penguins`` never share an endpoint.

The URL a version answers on is SageMaker's runtime ``InvokeEndpoint`` URL with the variant in its
fragment (see :func:`invoke_url`), since the variant travels in a header, not in the path.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

NAME_MAX = 63
HASH_LEN = 6
SAGEMAKER_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
VARIANT = re.compile(r"v([1-9][0-9]*)")

# Tags on the endpoint and on each SageMaker Model: what `status` rebuilds the versions from.
TAG_MANAGED = "modelyard:managed-by"
TAG_MODEL = "modelyard:model"
TAG_VERSION = "modelyard:version"
TAG_STAGE = "modelyard:stage"
TAG_BENTO = "modelyard:bento"
TAG_VALUE_MAX = 256
MANAGED_BY = "modelyard"

# The header InvokeEndpoint takes to pick a variant; `invoke_url` carries it in the fragment.
TARGET_VARIANT_HEADER = "X-Amzn-SageMaker-Target-Variant"


def endpoint_name(model: str, prefix: str = "") -> str:
    """The endpoint serving ``model``: ``{prefix}{model}`` made a SageMaker name.

    A name that had to change (case, characters, length) ends in ``-`` and 6 hex digits of the
    original, so two models never map to one endpoint.
    """
    wanted = f"{prefix}{model}"
    clean = _sanitise(wanted)
    if clean == wanted and len(clean) <= NAME_MAX:
        return clean
    suffix = "-" + _digest(wanted, HASH_LEN)
    head = clean[: NAME_MAX - len(suffix)].rstrip("-") or "model"
    return head + suffix


def endpoint_filter(prefix: str) -> str:
    """What every endpoint name made with ``prefix`` contains ("" for no prefix): a listing
    filter only, the endpoints' tags decide which are Modelyard's."""
    return _sanitise(prefix)


def variant_name(version: int) -> str:
    """``v3``: the variant a version runs as (also its autoscaling and alarm key)."""
    return f"v{version}"


def version_of_variant(variant: str) -> int | None:
    """3 for ``v3``; None for a variant Modelyard did not name."""
    match = VARIANT.fullmatch(variant)
    return int(match.group(1)) if match else None


def model_name(endpoint: str, version: int, image: str) -> str:
    """The SageMaker Model of one version running ``image``: ``{endpoint}-v3-{hash}``.

    Models are immutable, so another image for the same version is another Model; the hash of
    endpoint and image keeps names unique even when a long endpoint name is cut.
    """
    suffix = f"-v{version}-{_digest(endpoint + chr(10) + image, 8)}"
    return endpoint[: NAME_MAX - len(suffix)].rstrip("-") + suffix


def config_name(endpoint: str, token: str) -> str:
    """A new endpoint config's name: ``{endpoint}-{token}`` (configs are never reused)."""
    suffix = f"-{token}"
    return endpoint[: NAME_MAX - len(suffix)].rstrip("-") + suffix


def alarm_name(endpoint: str, version: int) -> str:
    """The CloudWatch alarm on one variant's 5XX error rate (the rollback trigger)."""
    return f"modelyard-{endpoint}-{variant_name(version)}-5xx-rate"


def scaling_policy_name(endpoint: str, version: int) -> str:
    return f"modelyard-{endpoint}-{variant_name(version)}-invocations"


def scaling_resource_id(endpoint: str, version: int) -> str:
    """Application Auto Scaling's id of a variant: ``endpoint/{endpoint}/variant/v3``."""
    return f"endpoint/{endpoint}/variant/{variant_name(version)}"


def runtime_host(region: str) -> str:
    """SageMaker runtime's host in ``region`` (China regions live under ``amazonaws.com.cn``)."""
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"runtime.sagemaker.{region}.{domain}"


def invoke_url(region: str, endpoint: str, version: int, *, shadow_slot: bool = False) -> str:
    """Where one version answers: ``https://runtime.sagemaker.{region}.amazonaws.com/endpoints/
    {endpoint}/invocations#TargetVariant=v3``.

    POST to the URL without its fragment, signed with SigV4 for service ``sagemaker``, with
    header ``X-Amzn-SageMaker-Target-Variant: v3`` to reach that version alone (a fragment never
    leaves the client, so posting the URL as it is reaches the endpoint's weighted split).
    A shadow in SageMaker's own shadow slot is ``#ShadowVariant=v2``: SageMaker already mirrors
    the production traffic to it and it cannot be invoked directly.
    """
    key = "ShadowVariant" if shadow_slot else "TargetVariant"
    return (
        f"https://{runtime_host(region)}/endpoints/{endpoint}/invocations"
        f"#{key}={variant_name(version)}"
    )


@dataclass(frozen=True)
class InvokeTarget:
    """What :func:`invoke_url` encodes: the URL to POST, and how the variant is reached."""

    url: str
    target_variant: str | None  # send it as the X-Amzn-SageMaker-Target-Variant header
    shadow_variant: str | None  # mirrored by SageMaker itself; do not invoke


def parse_invoke_url(url: str) -> InvokeTarget:
    """Split an :func:`invoke_url` into the URL to POST and its variant (for a gateway)."""
    parts = urlsplit(url)
    fragment = parse_qs(parts.fragment)
    base = parts._replace(fragment="").geturl()
    target = fragment.get("TargetVariant", [None])[0]
    shadow = fragment.get("ShadowVariant", [None])[0]
    return InvokeTarget(base, target, shadow)


def tag_value(text: str) -> str:
    """``text`` as a SageMaker tag value: letters, digits, spaces and ``_.:/=+-@`` only (others
    become ``_``), at most 256 characters."""
    kept = "".join(c if c.isalnum() or c.isspace() or c in "_.:/=+-@" else "_" for c in text)
    return kept[:TAG_VALUE_MAX]


def tags_to_dict(tags: list[dict[str, str]]) -> dict[str, str]:
    """AWS ``[{"Key": k, "Value": v}]`` as a dict; a key given twice keeps its last value."""
    return {tag["Key"]: tag.get("Value", "") for tag in tags}


def dict_to_tags(values: dict[str, str]) -> list[dict[str, str]]:
    """A dict as AWS ``[{"Key": k, "Value": v}]``, values made valid with :func:`tag_value`."""
    return [{"Key": key, "Value": tag_value(value)} for key, value in values.items()]


def _sanitise(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _digest(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]
