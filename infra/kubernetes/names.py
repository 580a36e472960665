"""Kubernetes names for models and versions (pure): what a registry name becomes on the cluster.

A version's Deployment, Service and HorizontalPodAutoscaler share one name, ``<model>-v<N>``.
Service names are RFC 1035 labels (lowercase letters, digits and ``-``, starting with a letter,
at most 63 characters), the strictest of the three, so that is the rule for all.
"""

from __future__ import annotations

import hashlib
import re

from infra.errors import TargetConfigError

MAX_NAME = 63  # an RFC 1035 / 1123 label, and a label value
MAX_VERSION_DIGITS = 10  # any int32 version fits
# The model part never depends on the version, so every version of a model carries the same
# ``modelyard.dev/model`` label and their names sort together.
MAX_SLUG = MAX_NAME - len("-v") - MAX_VERSION_DIGITS
DIGEST_CHARS = 6
_NOT_LABEL = re.compile(r"[^a-z0-9]+")
_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def model_slug(model: str) -> str:
    """``model`` as the name part of its resources: an RFC 1035 label of at most ``MAX_SLUG``.

    A name that is already such a label is kept as it is (``penguins``). Any other one is
    lowercased, its other characters become ``-``, and a short digest of the exact name is
    appended (``Penguins_V2.final`` -> ``penguins-v2-final-1a2b3c``): two registry names that
    differ only in case or punctuation would otherwise share, and overwrite, each other's
    Deployments.
    """
    base = _NOT_LABEL.sub("-", model.lower()).strip("-")
    if not base[:1].isalpha():
        base = f"m-{base}".rstrip("-")
    if base == model and len(base) <= MAX_SLUG:
        return base
    digest = hashlib.blake2b(model.encode(), digest_size=DIGEST_CHARS // 2).hexdigest()
    return f"{base[: MAX_SLUG - DIGEST_CHARS - 1].rstrip('-')}-{digest}"


def version_name(model: str, version: int) -> str:
    """The name of one version's Deployment, Service and autoscaler: ``<slug>-v<version>``.

    Raises ``ValueError`` for a negative version or one of more than ``MAX_VERSION_DIGITS``.
    """
    if version < 0 or len(str(version)) > MAX_VERSION_DIGITS:
        raise ValueError(f"version {version} of {model!r} cannot be named on Kubernetes")
    return f"{model_slug(model)}-v{version}"


def is_label_name(name: str) -> bool:
    """Whether ``name`` is a valid RFC 1035 label (what Services need)."""
    return len(name) <= MAX_NAME and bool(_LABEL.match(name))


def check_namespace(namespace: str) -> str:
    """Return ``namespace`` when it is a valid RFC 1123 label.

    Raises ``TargetConfigError`` naming ``MODELYARD_KUBERNETES__NAMESPACE`` otherwise.
    """
    if len(namespace) <= MAX_NAME and _NAMESPACE.match(namespace):
        return namespace
    raise TargetConfigError(
        "kubernetes",
        f"namespace {namespace!r} is not a valid Kubernetes name "
        "(lowercase letters, digits and '-', at most 63 characters)",
        hint="set MODELYARD_KUBERNETES__NAMESPACE to e.g. modelyard",
    )
