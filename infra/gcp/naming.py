"""Cloud Run names for models and versions, the labels and annotations we keep on a service, and
the checks of the ``gcp`` settings (pure).

A model is one service, ``projects/P/locations/R/services/<service>``; each of its versions is a
revision ``<service>-v<N>-<suffix>`` reached through the traffic tag ``v<N>`` (its own URL,
``https://v<N>---<service>-<hash>.a.run.app``). The random suffix makes every deployment a fresh
revision name: Cloud Run keeps revision names unique and immutable, and a version removed and
deployed again (a rollback) must not collide with the revision it had before.

Rules (Cloud Run's): a service name is lowercase letters, digits and ``-``, starts with a letter,
does not end with ``-`` and has at most 49 characters; a revision name at most 63 and starts with
``<service>-``; label keys and values lowercase letters, digits, ``_`` and ``-``, at most 63.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

from infra.errors import TargetConfigError

if TYPE_CHECKING:
    from modelyard.settings import GcpSettings

TARGET = "gcp"
MAX_SERVICE = 49
MAX_REVISION = 63
SUFFIX_CHARS = 3
# What is left of a revision name for the version's digits: <service>-v<digits>-<suffix>.
MAX_VERSION_DIGITS = MAX_REVISION - MAX_SERVICE - len("-v") - 1 - SUFFIX_CHARS
DIGEST_CHARS = 6

# Service labels (visible and filterable in the console and `gcloud run services list`).
LABEL_MODEL = "modelyard-model"  # the service name: every revision of a model carries it too
LABEL_VERSION = "modelyard-version"  # on revisions only
LABEL_MANAGED = "managed-by"
MANAGED_BY = "modelyard"
STAGE_LABEL_PREFIX = "modelyard-stage-v"  # modelyard-stage-v3=canary, one per deployed version
# Service annotations: values any label cannot hold (exact model name, image, Bento tag).
ANNOTATION_MODEL = "modelyard.dev/model"
ANNOTATION_BENTO = "modelyard.dev/bento-tag"  # on revisions (their template)
IMAGE_ANNOTATION_PREFIX = "modelyard.dev/image-v"
BENTO_ANNOTATION_PREFIX = "modelyard.dev/bento-tag-v"

_NOT_NAME = re.compile(r"[^a-z0-9]+")
_SERVICE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_SUFFIX = re.compile(r"^[a-z0-9]+$")
_TAG = re.compile(r"^v(\d+)$")
_PROJECT = re.compile(r"^([a-z][-a-z0-9.]*:)?[a-z][-a-z0-9]{4,28}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]+(-[a-z]+)+[0-9]+$")


def service_id(model: str) -> str:
    """``model`` as its Cloud Run service's name (see the module's rules).

    A name that already follows the rules is kept (``penguins``); any other is lowercased, other
    characters become ``-`` and a short digest of the exact name is appended
    (``Penguins_V2.final`` -> ``penguins-v2-final-1a2b3c``), so two registry names that differ
    only in case or punctuation never share a service.
    """
    base = _NOT_NAME.sub("-", model.lower()).strip("-")
    if not base[:1].isalpha():
        base = f"m-{base}".rstrip("-")
    if base == model and len(base) <= MAX_SERVICE:
        return base
    digest = hashlib.blake2b(model.encode(), digest_size=DIGEST_CHARS // 2).hexdigest()
    return f"{base[: MAX_SERVICE - DIGEST_CHARS - 1].rstrip('-')}-{digest}"


def is_service_id(name: str) -> bool:
    """Whether ``name`` is a valid Cloud Run service name."""
    return len(name) <= MAX_SERVICE and bool(_SERVICE.match(name))


def location_path(project: str, region: str) -> str:
    return f"projects/{project}/locations/{region}"


def service_path(project: str, region: str, service: str) -> str:
    return f"{location_path(project, region)}/services/{service}"


def revision_path(service_name: str, revision: str) -> str:
    """The full resource name of ``revision`` under the service ``service_name`` (a full name)."""
    return f"{service_name}/revisions/{revision}"


def short_name(resource_name: str) -> str:
    """The last segment of a resource name (``.../revisions/penguins-v3-abc`` -> its id)."""
    return resource_name.rsplit("/", 1)[-1]


def revision_id(service: str, version: int, suffix: str) -> str:
    """``<service>-v<version>-<suffix>``: the name of one deployment of a version.

    Raises ``ValueError`` for a negative version, one of more than ``MAX_VERSION_DIGITS`` digits,
    or a suffix that is not 1 to ``SUFFIX_CHARS`` lowercase letters and digits.
    """
    if version < 0 or len(str(version)) > MAX_VERSION_DIGITS:
        raise ValueError(f"version {version} cannot be named on Cloud Run")
    if not 0 < len(suffix) <= SUFFIX_CHARS or not _SUFFIX.match(suffix):
        raise ValueError(f"revision suffix {suffix!r} is not 1-{SUFFIX_CHARS} of [a-z0-9]")
    return f"{service}-v{version}-{suffix}"


def version_tag(version: int) -> str:
    """The traffic tag that gives a version its own URL: ``v3``."""
    return f"v{version}"


def version_of_tag(tag: str) -> int | None:
    """The version a traffic tag stands for, or None for a tag that is not ours."""
    match = _TAG.match(tag)
    return int(match.group(1)) if match else None


def stage_label(version: int) -> str:
    return f"{STAGE_LABEL_PREFIX}{version}"


def image_annotation(version: int) -> str:
    return f"{IMAGE_ANNOTATION_PREFIX}{version}"


def bento_annotation(version: int) -> str:
    return f"{BENTO_ANNOTATION_PREFIX}{version}"


def is_own_key(key: str) -> bool:
    """Whether a service label or annotation is one this target writes (and may rewrite)."""
    prefixes = (STAGE_LABEL_PREFIX, IMAGE_ANNOTATION_PREFIX, BENTO_ANNOTATION_PREFIX)
    return key in (LABEL_MODEL, LABEL_MANAGED, ANNOTATION_MODEL) or key.startswith(prefixes)


def check_project(project: str | None) -> str:
    """Return ``project`` when it is a Google Cloud project id.

    Raises ``TargetConfigError`` naming ``MODELYARD_GCP__PROJECT`` when it is missing or malformed.
    """
    if project and _PROJECT.match(project):
        return project
    problem = (
        "no project is set and the credentials name none"
        if not project
        else f"project {project!r} is not a Google Cloud project id"
    )
    raise TargetConfigError(
        TARGET,
        problem,
        hint="set MODELYARD_GCP__PROJECT to the project id (e.g. my-project-123), "
        "or GOOGLE_CLOUD_PROJECT",
    )


def check_region(region: str) -> str:
    """Return ``region`` when it looks like a Cloud Run region (``europe-west1``).

    Raises ``TargetConfigError`` naming ``MODELYARD_GCP__REGION`` otherwise.
    """
    if _REGION.match(region):
        return region
    raise TargetConfigError(
        TARGET,
        f"region {region!r} is not a Cloud Run region",
        hint="set MODELYARD_GCP__REGION to e.g. europe-west1 or us-central1",
    )


def check_scaling(gcp: GcpSettings) -> None:
    """Refuse instance bounds Cloud Run would refuse. Raises ``TargetConfigError``."""
    if gcp.min_instances < 0 or gcp.max_instances < 1 or gcp.min_instances > gcp.max_instances:
        raise TargetConfigError(
            TARGET,
            f"instances min {gcp.min_instances} / max {gcp.max_instances} are not 0 <= min <= max"
            ", max >= 1",
            hint="set MODELYARD_GCP__MIN_INSTANCES and MODELYARD_GCP__MAX_INSTANCES",
        )
