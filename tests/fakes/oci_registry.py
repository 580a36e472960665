"""A real OCI registry on loopback for tests: Debian's ``docker-registry`` (CNCF distribution 2.8).

``oci_registry(tmp_path)`` starts one (anonymous, or with htpasswd Basic auth) and yields
``"127.0.0.1:PORT"``; ``oci_registry_with_token_auth`` puts it behind the distribution spec's
Bearer token flow with a token server started here (ES256 JWTs signed by a throwaway certificate
the registry trusts), as Docker Hub, Artifact Registry and ACR do. ``write_oci_layout`` writes a
small image (real gzip tar layers, a config, a manifest) computed independently of
``infra.images`` so tests check that code against it.

The registry binds port 0 and the port is read from its log, so no port is ever guessed.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import ctypes.util
import gzip
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

REGISTRY_BINARY = os.environ.get("MODELYARD_TEST_DOCKER_REGISTRY", "/usr/bin/docker-registry")
START_TIMEOUT_S = 20.0
LISTENING = re.compile(r"listening on (\S+?):(\d+)")
TOKEN_SERVICE = "modelyard-test-registry"
TOKEN_ISSUER = "modelyard-test-token-server"


def registry_binary() -> str:
    """The docker-registry binary, or a skip saying how to get it."""
    found = REGISTRY_BINARY if os.access(REGISTRY_BINARY, os.X_OK) else None
    found = found or shutil.which("docker-registry")
    if found is None:
        pytest.skip(
            f"docker-registry is not installed ({REGISTRY_BINARY} missing): "
            "`apt-get install docker-registry` (scripts/system-deps.sh does it for `make test`)"
        )
    return found


# --- htpasswd needs bcrypt


def bcrypt_hash(password: str) -> str | None:
    """A bcrypt hash (what distribution's htpasswd accepts): the ``bcrypt`` package when
    installed, else the system's libcrypt (libxcrypt does bcrypt), else None."""
    try:
        import bcrypt

        return str(bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode())
    except ImportError:
        pass
    name = ctypes.util.find_library("crypt")
    if name is None:
        return None
    try:
        libcrypt = ctypes.CDLL(name)
        libcrypt.crypt_gensalt.restype = ctypes.c_char_p
        libcrypt.crypt_gensalt.argtypes = [
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        libcrypt.crypt.restype = ctypes.c_char_p
        libcrypt.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        salt = libcrypt.crypt_gensalt(b"$2y$", 5, None, 0)
        hashed = libcrypt.crypt(password.encode(), salt) if salt else None
    except (OSError, AttributeError):
        return None
    return hashed.decode() if hashed and hashed.startswith(b"$2") else None


# --- the registry process


@contextlib.contextmanager
def oci_registry(tmp_path: Path, *, htpasswd: tuple[str, str] | None = None) -> Iterator[str]:
    """A docker-registry on 127.0.0.1 storing in ``tmp_path``; yields ``"127.0.0.1:PORT"``.

    With ``htpasswd`` (user, password) it demands Basic auth; skips when no bcrypt is to be had.
    """
    auth: dict[str, Any] = {}
    if htpasswd is not None:
        user, password = htpasswd
        hashed = bcrypt_hash(password)
        if hashed is None:
            pytest.skip("no bcrypt (neither the bcrypt package nor libcrypt) to write htpasswd")
        path = tmp_path / "htpasswd"
        path.write_text(f"{user}:{hashed}\n")
        auth = {"htpasswd": {"realm": "modelyard-test", "path": str(path)}}
    with _registry_process(tmp_path, auth) as host:
        yield host


@contextlib.contextmanager
def _registry_process(tmp_path: Path, auth: dict[str, Any]) -> Iterator[str]:
    binary = registry_binary()
    config = {
        "version": "0.1",
        "log": {"level": "info", "formatter": "text"},
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "registry-data")}},
        "http": {"addr": "127.0.0.1:0", "secret": secrets.token_hex(16)},
        "health": {"storagedriver": {"enabled": False}},
    }
    if auth:
        config["auth"] = auth
    config_path = tmp_path / "registry-config.yml"
    config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    log_path = tmp_path / "registry.log"
    # REGISTRY_* variables override the file; none of the caller's may leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [binary, "serve", str(config_path)], stdout=log, stderr=subprocess.STDOUT, env=env
        )
    try:
        host = _wait_until_serving(process, log_path)
        yield host
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _wait_until_serving(process: subprocess.Popen[bytes], log_path: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    host = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        log = log_path.read_text(errors="replace")
        if host is None and (found := LISTENING.search(log)):
            host = f"{found.group(1)}:{found.group(2)}"
        if host is not None:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://{host}/v2/", timeout=2).status_code in (200, 401):
                    return host
        time.sleep(0.05)
    process.kill()
    process.wait(timeout=5)
    pytest.fail(
        f"docker-registry did not start (exit code {process.returncode}); its log:\n"
        + log_path.read_text(errors="replace")[-4000:]
    )


# --- Bearer token auth: a token server the registry trusts


@dataclass
class TokenServer:
    """Issues registry tokens to ``credentials``; records each request's scopes and user."""

    credentials: tuple[str, str]
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    private_key: Any = None
    certificate_der: bytes = b""

    def issue(self, scopes: list[str], subject: str) -> str:
        """An ES256 JWT granting the actions named in ``scopes`` (``repository:NAME:ACTIONS``)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        access = []
        for scope in scopes:
            kind, name, actions = scope.split(":", 2) if scope.count(":") >= 2 else ("", "", "")
            if kind == "repository":
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [base64.b64encode(self.certificate_der).decode()],
        }
        claims = {
            "iss": TOKEN_ISSUER,
            "sub": subject,
            "aud": TOKEN_SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        der = self.private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _make_certificate(server: TokenServer, path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, TOKEN_ISSUER)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    server.private_key = key
    server.certificate_der = certificate.public_bytes(serialization.Encoding.DER)
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def _token_handler(server: TokenServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlparse(self.path).query)
            user = _basic_user(self.headers.get("Authorization", ""), server.credentials)
            server.requests.append(
                {
                    "user": user,
                    "scopes": query.get("scope", []),
                    **{"service": (query.get("service") or [""])[0]},
                }
            )
            if user is None:
                self._answer(401, {"details": "incorrect username or password"})
                return
            token = server.issue(query.get("scope", []), user)
            self._answer(200, {"token": token, "access_token": token, "expires_in": 300})

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

    return Handler


def _basic_user(header: str, credentials: tuple[str, str]) -> str | None:
    if not header.startswith("Basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except ValueError:
        return None
    return user if (user, password) == credentials else None


@contextlib.contextmanager
def oci_registry_with_token_auth(
    tmp_path: Path, credentials: tuple[str, str]
) -> Iterator[tuple[str, TokenServer]]:
    """A docker-registry that demands Bearer tokens from a token server accepting
    ``credentials``; yields ``("127.0.0.1:PORT", token_server)``. Skips without ``cryptography``."""
    pytest.importorskip("cryptography", reason="signing registry tokens needs cryptography")
    server = TokenServer(credentials)
    bundle = tmp_path / "token-root.pem"
    _make_certificate(server, bundle)
    http = ThreadingHTTPServer(("127.0.0.1", 0), _token_handler(server))
    server.url = f"http://127.0.0.1:{http.server_address[1]}/token"
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    auth = {
        "token": {
            "realm": server.url,
            "service": TOKEN_SERVICE,
            "issuer": TOKEN_ISSUER,
            "rootcertbundle": str(bundle),
        }
    }
    try:
        with _registry_process(tmp_path, auth) as host:
            yield host, server
    finally:
        http.shutdown()
        http.server_close()
        thread.join(timeout=5)


# --- a small image, written without infra.images


@dataclass(frozen=True)
class SampleImage:
    root: Path
    manifest: bytes
    manifest_digest: str
    config: bytes
    blobs: dict[str, bytes]  # digest -> bytes, config and layers

    @property
    def layer_digests(self) -> list[str]:
        return [d["digest"] for d in json.loads(self.manifest)["layers"]]


def write_oci_layout(
    root: Path,
    files: dict[str, bytes] | None = None,
    *,
    tag: str = "v1",
    extra_layer: bytes | None = None,
) -> SampleImage:
    """An OCI layout at ``root``: one gzip tar layer holding ``files`` (plus one holding
    ``extra_layer`` as ``/blob.bin``), an OCI config whose diff_ids match, and a manifest."""
    layers_content = [files or {"app/model.txt": b"a model\n"}]
    if extra_layer is not None:
        layers_content.append({"blob.bin": extra_layer})
    blobs: dict[str, bytes] = {}
    layer_descriptors, diff_ids = [], []
    for content in layers_content:
        tar_bytes = _tar(content)
        compressed = gzip.compress(tar_bytes, mtime=0)
        diff_ids.append(_digest(tar_bytes))
        layer_descriptors.append(
            _descriptor("application/vnd.oci.image.layer.v1.tar+gzip", compressed)
        )
        blobs[_digest(compressed)] = compressed
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/true"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()
    blobs[_digest(config)] = config
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": _descriptor("application/vnd.oci.image.config.v1+json", config),
            "layers": layer_descriptors,
        }
    ).encode()
    (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    for data in [*blobs.values(), manifest]:
        (root / "blobs" / "sha256" / _digest(data).split(":")[1]).write_bytes(data)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                **_descriptor("application/vnd.oci.image.manifest.v1+json", manifest),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (root / "index.json").write_text(json.dumps(index))
    return SampleImage(root, manifest, _digest(manifest), config, blobs)


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": _digest(data), "size": len(data)}


def write_docker_archive(
    path: Path, layers: list[dict[str, bytes]], *, gzip_layers: tuple[int, ...] = ()
) -> dict[str, Any]:
    """A ``docker save`` archive (classic format) at ``path``: ``<n>/layer.tar`` per layer
    (gzip-compressed for the indexes in ``gzip_layers``, as containerd's store exports them), a
    config with healthcheck and matching diff_ids, and ``manifest.json``; returns the config."""
    tars = [_tar(files) for files in layers]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": "bentoml",
            "ExposedPorts": {"3000/tcp": {}},
            "Healthcheck": {"Test": ["CMD", "curl", "-f", "http://localhost:3000/readyz"]},
        },
        "rootfs": {"type": "layers", "diff_ids": [_digest(t) for t in tars]},
    }
    config_bytes = json.dumps(config).encode()
    config_name = _digest(config_bytes).split(":")[1] + ".json"
    members: dict[str, bytes] = {config_name: config_bytes}
    layer_names = []
    for number, data in enumerate(tars):
        name = f"{number}/layer.tar"
        members[name] = gzip.compress(data, mtime=0) if number in gzip_layers else data
        layer_names.append(name)
    entry = {"Config": config_name, "RepoTags": ["penguins:abc123"], "Layers": layer_names}
    members["manifest.json"] = json.dumps([entry]).encode()
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return config
