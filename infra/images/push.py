"""Pushing an OCI image layout to a registry through the OCI distribution API (httpx).

For each blob: ``HEAD /v2/<name>/blobs/<digest>`` (present: skipped), else ``POST .../uploads/``
then one ``PUT <location>?digest=`` (monolithic), or ``PATCH`` chunks of ``chunk_size`` bytes
streamed from disk then an empty ``PUT`` for bigger blobs. Then the manifest's exact bytes are
``PUT`` under the tag with their media type, and the ``Docker-Content-Digest`` the registry answers
must be the digest of those bytes. Logging in is challenge-driven (see ``infra.images.auth``).

Transient failures (dropped connections, timeouts, 429/5xx: ``infra.images.retry``) are tried
again with a growing wait: a lookup or a manifest PUT as it was, a blob upload from a fresh upload
session (after a HEAD, since a PUT whose answer was lost may have landed).

Plain HTTP is used only for a loopback host or when asked (``MODELYARD_IMAGES__INSECURE``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import httpx

from infra.errors import ImagePushFailed
from infra.images.auth import (
    CREDENTIALS_HINT,
    Auth,
    basic_authorization,
    parse_challenges,
    repository_scope,
    request_token,
)
from infra.images.errors import InvalidImageReference, RegistryUnavailable, describe_error_body
from infra.images.layout import (
    MANIFEST_TYPES,
    Descriptor,
    Manifest,
    OciLayout,
    bytes_digest,
    iter_file,
    read_layout,
)
from infra.images.reference import DIGEST, ImageReference, is_loopback, parse_reference
from infra.images.retry import DEFAULT_RETRY, TRANSIENT_STATUSES, RetryPolicy, parse_retry_after

logger = logging.getLogger(__name__)

CHUNK_SIZE = 32 * 1024 * 1024  # blobs above this go up in PATCH chunks of this size
TIMEOUT = httpx.Timeout(30.0, read=300.0, write=300.0)
OCTET_STREAM = "application/octet-stream"
PUSH = ("pull", "push")
PULL = ("pull",)
Body = Callable[[], bytes | Iterable[bytes]]
T = TypeVar("T")
CONNECT_HINT = (
    "check MODELYARD_IMAGES__REGISTRY; a plain-HTTP registry that is not on loopback needs "
    "MODELYARD_IMAGES__INSECURE=true"
)
# Failures of the network that may pass; the rest of httpx's errors (a bad URL, an unsupported
# scheme, a proxy refusing us) would fail the same way again.
TRANSIENT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


class RegistrySession:
    """One repository on one registry: HTTP calls that log in when challenged.

    ``client`` is injectable (tests count requests with its event hooks); one made here is closed
    with the session. ``retry`` says how often a transient failure is tried again, ``sleep``
    waits between tries (injectable so tests need not wait).
    """

    def __init__(
        self,
        reference: ImageReference,
        *,
        auth: Auth | None = None,
        insecure: bool = False,
        actions: Sequence[str] = PUSH,
        client: httpx.Client | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        scheme = "http" if insecure or is_loopback(reference.hostname) else "https"
        self.base = f"{scheme}://{reference.api_host}"
        self._netloc = httpx.URL(self.base).netloc
        self.registry = reference.host
        self.repository = reference.repository
        self.auth: Auth | None = (auth[0], auth[1]) if auth else None
        self.scope = repository_scope(reference.repository, actions)
        self.http = client or httpx.Client(timeout=TIMEOUT)
        self._owns_client = client is None
        self._authorization: str | None = None
        self.retry = retry
        self._sleep = sleep

    def __enter__(self) -> RegistrySession:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_client:
            self.http.close()

    def url(self, path: str) -> str:
        return f"{self.base}/v2/{self.repository}/{path}"

    # --- the API

    def check_api(self) -> None:
        """``GET /v2/``: the registry speaks the API and accepts us (logs in when challenged)."""
        url = f"{self.base}/v2/"
        self.retrying(lambda: self.send("GET", url, action="checking the registry API"))

    def blob_exists(self, digest: str) -> bool:
        return self.retrying(lambda: self._blob_exists(digest))

    def _blob_exists(self, digest: str) -> bool:
        response = self.send(
            "HEAD", self.url(f"blobs/{digest}"), ok=(200, 404), action=f"checking blob {digest}"
        )
        return response.status_code == 200

    def upload_blob(self, path: Path, blob: Descriptor, *, chunk_size: int = CHUNK_SIZE) -> None:
        """Upload the file at ``path`` as ``blob``: one PUT, or PATCH chunks when it is bigger
        than ``chunk_size``; the registry checks the digest we name.

        A transient failure starts the upload over in a fresh upload session (a half-sent session
        cannot be trusted), unless a HEAD shows the blob landed anyway.
        """
        tries = 0

        def attempt() -> None:
            nonlocal tries
            tries += 1
            if tries > 1 and self._blob_exists(blob.digest):
                logger.info("blob %s landed although its answer was lost", blob.digest)
                return
            self._upload_blob(path, blob, chunk_size)

        self.retrying(attempt)

    def _upload_blob(self, path: Path, blob: Descriptor, chunk_size: int) -> None:
        action = f"uploading blob {blob.digest} ({blob.size} bytes)"
        started = self.send(
            "POST",
            self.url("blobs/uploads/"),
            headers={"Content-Length": "0"},
            ok=(202,),
            action=action,
        )
        location = _location(started, action, self.registry)
        if blob.size > chunk_size:
            location = self._upload_chunks(path, blob, location, chunk_size, action)
            headers = {"Content-Length": "0"}
            body: Body = _no_body
        else:
            headers = {"Content-Type": OCTET_STREAM, "Content-Length": str(blob.size)}
            body = partial(iter_file, path)  # a fresh stream for each attempt
        done = self.send(
            "PUT",
            _with_digest(location, blob.digest),
            headers=headers,
            body=body,
            ok=(201,),
            action=action,
        )
        _check_digest(done, blob.digest, f"blob {blob.digest}", self.registry)

    def _upload_chunks(
        self, path: Path, blob: Descriptor, location: str, chunk_size: int, action: str
    ) -> str:
        offset = 0
        while offset < blob.size:
            length = min(chunk_size, blob.size - offset)
            headers = {
                "Content-Type": OCTET_STREAM,
                "Content-Length": str(length),
                "Content-Range": f"{offset}-{offset + length - 1}",
            }
            patched = self.send(
                "PATCH",
                location,
                headers=headers,
                body=partial(iter_file, path, offset, length),
                ok=(202,),
                action=f"{action}, bytes {offset}-{offset + length - 1}",
            )
            location = _location(patched, action, self.registry)
            offset += length
        return location

    def put_manifest(self, manifest: Manifest, ref: str) -> str:
        """PUT the manifest's exact bytes under ``ref`` (a tag or its digest); returns its
        digest, checked against the registry's ``Docker-Content-Digest``."""
        return self.retrying(lambda: self._put_manifest(manifest, ref))

    def _put_manifest(self, manifest: Manifest, ref: str) -> str:
        response = self.send(
            "PUT",
            self.url(f"manifests/{ref}"),
            headers={"Content-Type": manifest.media_type},
            body=lambda: manifest.raw,
            ok=(200, 201),
            action=f"pushing manifest {manifest.digest} as {ref!r}",
        )
        _check_digest(response, manifest.digest, f"manifest {ref!r}", self.registry)
        return manifest.digest

    def manifest_digest(self, ref: str) -> str | None:
        """The digest of the manifest under ``ref``, or None when the registry has none."""
        return self.retrying(lambda: self._manifest_digest(ref))

    def _manifest_digest(self, ref: str) -> str | None:
        url = self.url(f"manifests/{ref}")
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        action = f"looking up manifest {ref!r}"
        found = self.send("HEAD", url, headers=headers, ok=(200, 404), action=action)
        if found.status_code == 404:
            return None
        digest = found.headers.get("Docker-Content-Digest", "")
        if DIGEST.fullmatch(digest):
            return digest
        # The header is optional on HEAD for some registries: the digest of the bytes is the truth.
        return bytes_digest(self.send("GET", url, headers=headers, action=action).content)

    # --- HTTP with retries and challenge-driven login

    def retrying(self, call: Callable[[], T]) -> T:
        """``call()``, tried again after a ``RegistryUnavailable`` as ``self.retry`` allows."""
        attempts = self.retry.attempts
        for attempt in range(1, attempts + 1):
            try:
                return call()
            except RegistryUnavailable as exc:
                if attempt == attempts:
                    raise exc.gave_up(attempts) from exc
                wait = self.retry.delay(attempt, exc.retry_after_s)
                logger.warning(
                    "%s; trying again in %.1f s (attempt %d of %d)",
                    exc.message,
                    wait,
                    attempt + 1,
                    attempts,
                )
                self._sleep(wait)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def send(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        body: Body | None = None,
        ok: Sequence[int] = (200,),
        action: str,
    ) -> httpx.Response:
        """One call; on a 401 log in as challenged and try once more (with a fresh body).

        Raises ``RegistryUnavailable`` for a failure that may pass (the caller decides whether to
        try again), else ``ImagePushFailed``, with the registry's error words, the method and
        the URL.
        """
        for attempt in (1, 2):
            sent = dict(headers or {})
            if self._authorization and httpx.URL(url).netloc == self._netloc:
                # Never to another host (an upload Location may point at storage elsewhere).
                sent["Authorization"] = self._authorization
            try:
                response = self.http.request(
                    method,
                    url,
                    headers=sent,
                    content=body() if body is not None else None,
                    follow_redirects=method in ("GET", "HEAD"),
                )
            except TRANSIENT_ERRORS as exc:
                raise RegistryUnavailable(
                    f"registry {self.registry}: {action} failed: {method} {url}: "
                    f"{type(exc).__name__}: {exc}",
                    hint=CONNECT_HINT if isinstance(exc, httpx.ConnectError) else None,
                ) from exc
            except httpx.HTTPError as exc:
                raise ImagePushFailed(
                    f"registry {self.registry}: {action} failed: {method} {url}: {exc}",
                    hint=CONNECT_HINT,
                ) from exc
            if response.status_code == 401 and attempt == 1 and self._log_in(response):
                continue
            break
        if response.status_code in ok:
            return response
        raise self._failure(action, method, url, response)

    def _log_in(self, response: httpx.Response) -> bool:
        """Set the Authorization the 401's challenge asks for; False when there is nothing new
        to try (then the 401 stands)."""
        challenges = parse_challenges(response.headers.get_list("WWW-Authenticate"))
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        if bearer is not None:
            scopes = [self.scope, bearer.params.get("scope", "")]
            token = request_token(self.http, bearer, scopes, self.auth, registry=self.registry)
            self._authorization = f"Bearer {token}"
            return True
        if any(c.scheme == "basic" for c in challenges) and self.auth:
            basic = basic_authorization(self.auth)
            if self._authorization == basic:
                return False
            self._authorization = basic
            return True
        return False

    def _failure(
        self, action: str, method: str, url: str, response: httpx.Response
    ) -> ImagePushFailed:
        status = response.status_code
        words = describe_error_body(response.content) or response.reason_phrase
        message = (
            f"registry {self.registry}: {action} failed: {method} {url} answered HTTP {status}"
        )
        if status in TRANSIENT_STATUSES:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return RegistryUnavailable(f"{message}: {words}", retry_after_s=retry_after)
        hint = None
        if status == 401:
            who = f"user {self.auth[0]!r} was refused" if self.auth else "it needs credentials"
            message += f" ({who})"
            hint = CREDENTIALS_HINT
        elif status == 403:
            hint = "the credentials lack push rights on this repository"
        elif status == 404 and "NAME_UNKNOWN" in words:
            hint = "create the repository first (ECR does not create repositories on push)"
        return ImagePushFailed(f"{message}: {words}", hint=hint)


# --- what callers use


def push_layout(
    layout_dir: Path,
    reference: str,
    *,
    auth: Auth | None = None,
    insecure: bool = False,
    client: httpx.Client | None = None,
    chunk_size: int = CHUNK_SIZE,
    verify: bool = True,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> str:
    """Push the image in the OCI layout at ``layout_dir`` to ``reference``; returns the manifest
    digest the registry holds under its tag.

    Blobs the registry already has are not uploaded again; transient failures are tried again
    as ``retry`` allows. Raises ``InvalidImageReference``,
    ``ImageLayoutError`` (a missing or corrupt blob, checked before anything is sent) and
    ``ImagePushFailed`` with the registry's error code and message and the URL
    (``RegistryUnavailable`` once the tries are spent).
    """
    ref = parse_reference(reference)
    if ref.manifest_ref is None:
        raise InvalidImageReference(reference, "it has no tag (or digest) to push the image under")
    layout = read_layout(Path(layout_dir), verify=verify)
    manifest = layout.select(ref.tag)
    if ref.digest and ref.digest != manifest.digest:
        raise ImagePushFailed(
            f"{reference} pins {ref.digest} but the layout's image is {manifest.digest}"
        )
    session = RegistrySession(ref, auth=auth, insecure=insecure, client=client, retry=retry)
    with session:
        session.check_api()
        uploaded = push_blobs(session, layout, manifest, chunk_size=chunk_size)
        push_manifest_tree(session, manifest, ref.manifest_ref)
    logger.info("pushed %s (%s): %d blob(s) uploaded", reference, manifest.digest, uploaded)
    return manifest.digest


def push_blobs(
    session: RegistrySession, layout: OciLayout, manifest: Manifest, *, chunk_size: int
) -> int:
    """Upload the blobs of ``manifest`` the registry lacks; returns how many were uploaded."""
    uploaded = 0
    for blob in manifest.blobs():
        if session.blob_exists(blob.digest):
            logger.debug("blob %s already in %s", blob.digest, session.registry)
            continue
        session.upload_blob(layout.blob_path(blob.digest), blob, chunk_size=chunk_size)
        uploaded += 1
    return uploaded


def push_manifest_tree(session: RegistrySession, manifest: Manifest, ref: str) -> None:
    """An index's child manifests go up by digest before the index itself (a registry refuses
    an index naming manifests it lacks)."""
    for child in manifest.children:
        push_manifest_tree(session, child, child.digest)
    session.put_manifest(manifest, ref)


def manifest_digest(
    reference: str,
    auth: Auth | None = None,
    *,
    insecure: bool = False,
    client: httpx.Client | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> str | None:
    """The digest the registry holds for ``reference`` (its tag or digest), None when absent:
    a deploy skips building an image that is already pushed.

    Raises ``InvalidImageReference``, and ``ImagePushFailed`` when the registry cannot be asked.
    """
    ref = parse_reference(reference)
    if ref.manifest_ref is None:
        raise InvalidImageReference(reference, "it has no tag or digest to look up")
    session = RegistrySession(
        ref, auth=auth, insecure=insecure, actions=PULL, client=client, retry=retry
    )
    with session:
        return session.manifest_digest(ref.manifest_ref)


def _no_body() -> bytes:
    return b""


def _location(response: httpx.Response, action: str, registry: str) -> str:
    location = response.headers.get("Location")
    if not location:
        raise ImagePushFailed(
            f"registry {registry}: {action}: HTTP {response.status_code} without a Location"
        )
    return str(response.url.join(location))  # registries may answer a relative path


def _with_digest(location: str, digest: str) -> str:
    return str(httpx.URL(location).copy_merge_params({"digest": digest}))


def _check_digest(response: httpx.Response, expected: str, what: str, registry: str) -> None:
    stored = response.headers.get("Docker-Content-Digest")
    if stored and stored != expected:
        raise ImagePushFailed(
            f"registry {registry} stored {what} as {stored}, but {expected} was sent"
        )
