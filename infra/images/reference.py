"""Image references, ``host[:port]/path/repo[:tag][@sha256:...]``: parse, check, format, derive.

The grammar is Docker's (``distribution/reference``): repository path components are lowercase
letters and digits joined by ``.``, ``_``, ``__`` or dashes; a tag is up to 128 word characters,
dots and dashes; the whole name is at most 255 characters. Unlike ``docker``, a reference here must
name its registry host: a model image pushed to Docker Hub by accident is worse than an error.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from infra.errors import TargetConfigError
from infra.images.errors import InvalidImageReference

if TYPE_CHECKING:
    from modelyard.settings import Settings

NAME_MAX = 255
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"  # where docker.io's distribution API answers
PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
HOST = re.compile(
    rf"(?:{DOMAIN_COMPONENT}(?:\.{DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]{{1,5}})?"
)
TAG = re.compile(r"[\w][\w.-]{0,127}")
DIGEST = re.compile(r"(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})")
HASH_SUFFIX_LEN = 6


@dataclass(frozen=True)
class ImageReference:
    """A parsed reference: ``host`` as written, ``repository`` (the path after it), and a tag,
    a digest or both."""

    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``host/repository``, without tag or digest."""
        return f"{self.host}/{self.repository}"

    @property
    def api_host(self) -> str:
        """Where the distribution API answers (``docker.io`` is served elsewhere)."""
        return DOCKER_HUB_API if self.host == DOCKER_HUB else self.host

    @property
    def hostname(self) -> str:
        """The host without its port (and without IPv6 brackets)."""
        if self.host.startswith("["):
            return self.host[1 : self.host.index("]")]
        return self.host.rsplit(":", 1)[0]

    @property
    def manifest_ref(self) -> str | None:
        """What the manifest endpoint is addressed by: the digest when pinned, else the tag."""
        return self.digest or self.tag

    def pinned(self, digest: str) -> ImageReference:
        """The same repository at exactly ``digest`` (no tag: see ``build.ensure_image``)."""
        return replace(self, tag=None, digest=check_digest(digest, str(self)))

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{self.name}{tag}{digest}"


def parse_reference(text: str) -> ImageReference:
    """Parse ``host[:port]/path/repo[:tag][@digest]``.

    Raises ``InvalidImageReference`` naming the part that is wrong: a scheme, no registry host,
    an invalid host, path component, tag or digest, or a name over 255 characters.
    """
    if not text or text != text.strip() or any(c.isspace() for c in text):
        raise InvalidImageReference(text, "it is empty or contains whitespace")
    if "://" in text:
        raise InvalidImageReference(
            text,
            "it starts with a URL scheme; drop it (a plain-HTTP registry is chosen with "
            "MODELYARD_IMAGES__INSECURE=true, and is used for loopback hosts anyway)",
        )
    rest, at, digest = text.partition("@")
    name, tag = split_tag(rest)
    host, slash, repository = name.partition("/")
    if not slash or not looks_like_host(host):
        raise InvalidImageReference(
            text,
            "it names no registry host; prefix the registry, e.g. "
            f"127.0.0.1:5000/{name} or 123456789012.dkr.ecr.eu-west-1.amazonaws.com/{name}",
        )
    check_host(host, text)
    check_repository(repository, text)
    if len(name) > NAME_MAX:
        raise InvalidImageReference(text, f"the name is {len(name)} characters (at most 255)")
    if tag is not None and not TAG.fullmatch(tag):
        raise InvalidImageReference(
            text,
            f"tag {tag!r} must be 1-128 letters, digits, '_', '.' or '-', not starting "
            "with '.' or '-'",
        )
    return ImageReference(
        host, repository, tag=tag, digest=check_digest(digest, text) if at else None
    )


def split_tag(name: str) -> tuple[str, str | None]:
    """``host:5000/repo:v3`` -> (``host:5000/repo``, ``v3``): a tag is the last ``:`` after the
    last ``/`` (an earlier colon is the port)."""
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > last_slash:
        return name[:colon], name[colon + 1 :]
    return name, None


def looks_like_host(first: str) -> bool:
    """Docker's rule: the first component is a host when it has a dot or a port, or is
    ``localhost``, or has capitals (a repository never does)."""
    return "." in first or ":" in first or first == "localhost" or first != first.lower()


def check_host(host: str, text: str) -> None:
    if not HOST.fullmatch(host):
        raise InvalidImageReference(text, f"registry host {host!r} is not a host name[:port]")
    port = host.rsplit(":", 1)[1] if ":" in host and not host.endswith("]") else None
    if port is not None and not 0 < int(port) < 65536:
        raise InvalidImageReference(text, f"registry port {port} is out of range")


def check_repository(repository: str, text: str) -> None:
    if not repository:
        raise InvalidImageReference(text, "the repository name after the host is empty")
    for component in repository.split("/"):
        if not PATH_COMPONENT.fullmatch(component):
            raise InvalidImageReference(
                text,
                f"repository path component {component!r} must be lowercase letters and digits "
                "joined by '.', '_', '__' or '-'",
            )


def check_digest(digest: str, text: str) -> str:
    """The digest itself, when it is ``sha256:<64 hex>`` or ``sha512:<128 hex>`` (lowercase)."""
    if not DIGEST.fullmatch(digest):
        raise InvalidImageReference(
            text, f"digest {digest!r} is not sha256:<64 lowercase hex digits>"
        )
    return digest


def is_loopback(hostname: str) -> bool:
    """``localhost`` or a loopback address: the only hosts spoken to over plain HTTP unasked."""
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname.strip("[]")).is_loopback
    except ValueError:
        return False


# --- the image of one model version


def image_reference(settings: Settings, model: str, version: int) -> str:
    """``{registry}/{prefix}-{model}:v{version}`` for ``settings.images``.

    Raises ``TargetConfigError`` naming ``MODELYARD_IMAGES__REGISTRY`` when it is unset or not a
    registry host (and optional path), ``ValueError`` for a version below 1.
    """
    registry = (settings.images.registry or "").strip().rstrip("/")
    if not registry:
        raise TargetConfigError(
            "images",
            "no image registry is set, so there is nowhere to push model images",
            hint="set MODELYARD_IMAGES__REGISTRY, e.g. 123456789012.dkr.ecr.eu-west-1."
            "amazonaws.com, europe-docker.pkg.dev/PROJECT/REPO, NAME.azurecr.io or "
            "127.0.0.1:5000; or pass --image REF",
        )
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version must be a whole number from 1, not {version!r}")
    tag = f"v{version}"
    room = NAME_MAX - len(registry) - 1
    repository = repository_name(settings.images.repository_prefix, model, max_length=room)
    text = f"{registry}/{repository}:{tag}"
    try:
        return str(parse_reference(text))
    except InvalidImageReference as exc:
        raise TargetConfigError(
            "images",
            f"MODELYARD_IMAGES__REGISTRY={registry!r} does not make a valid image reference "
            f"({exc.problem})",
            hint="give the registry host and optional path, e.g. "
            "europe-docker.pkg.dev/PROJECT/REPO or 127.0.0.1:5000; lowercase paths only",
        ) from exc


def repository_name(prefix: str, model: str, *, max_length: int = NAME_MAX) -> str:
    """``{prefix}-{model}`` with the model name made a valid path component.

    A name that had to change (``Penguins``, ``fraud detector``) gets a short hash of the original
    so two models never share a repository: ``penguins-1b2c3d``.
    """
    prefix = prefix.strip().strip("/")
    component = sanitise_component(model)
    lead = f"{prefix}-" if prefix else ""
    room = max_length - len(lead)
    if component != model or len(component) > room:
        suffix = "-" + hashlib.sha256(model.encode()).hexdigest()[:HASH_SUFFIX_LEN]
        keep = max(room - len(suffix), 1)
        component = component[:keep].rstrip("._-") + suffix
    return lead + component


def sanitise_component(name: str) -> str:
    """Lowercase, every other character run -> ``-``, separators collapsed to ones the grammar
    allows, none at either end; ``model`` when nothing is left."""
    lowered = re.sub(r"[^a-z0-9._-]+", "-", name.lower())
    collapsed = re.sub(r"[._-]{2,}", _one_separator, lowered)
    return collapsed.strip("._-") or "model"


def _one_separator(run: re.Match[str]) -> str:
    text = run.group(0)
    return text if text == "__" or set(text) == {"-"} else "-"
