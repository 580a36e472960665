"""The few ASGI primitives the gateway needs: read headers and a bounded body, send a response.

Hand-written instead of a web framework's request and response objects: on the hot path each
request costs a few dict lookups here, where a framework builds routing, middleware and
request objects per call.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from serving.gateway.errors import BadRequest, GatewayError, PayloadTooLarge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON_TYPE = b"application/json"
REQUEST_ID_HEADER = b"x-request-id"


class ClientDisconnected(Exception):
    """The caller went away before its request body arrived: nobody to answer."""


@dataclass(slots=True)
class RequestHeaders:
    """The headers the gateway reads, taken from the scope in one pass.

    ``api_key`` is the secret the caller presented: it is never logged, nor put in any message.
    """

    api_key: str | None = None
    # Authorization present but not "Bearer KEY": its value may be a key, so it is not kept.
    authorization_malformed: bool = False
    content_length: int | None = None
    routing_key: str | None = None

    @classmethod
    def from_scope(cls, scope: Scope) -> RequestHeaders:
        found = cls()
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").strip().partition(" ")
                if scheme.lower() == "bearer" and token.strip():
                    found.api_key = token.strip()
                else:
                    found.authorization_malformed = True
            elif name == b"x-api-key" and found.api_key is None:
                found.api_key = value.decode("latin-1").strip() or None
            elif name == b"content-length":
                found.content_length = int(value) if value.isdigit() else None
            elif name == b"x-routing-key":
                found.routing_key = value.decode("latin-1")[:256] or None
        return found


def new_request_id() -> str:
    """Always ours, never the caller's: it is the inference log's key, so it must be unique."""
    return uuid.uuid4().hex


async def read_body(receive: Receive, limit: int, declared: int | None) -> bytes:
    """The whole request body. Raises ``PayloadTooLarge`` past ``limit`` bytes (before reading
    when the declared length says so), ``ClientDisconnected``."""
    if declared is not None and declared > limit:
        raise _too_large(declared, limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The JSON object in ``body``. Raises ``BadRequest`` for empty, non-UTF-8 or malformed JSON
    and for JSON that is not an object; the rows themselves are the model service's to check."""
    if not body.strip():
        raise BadRequest(
            "the request body is empty; send a JSON object such as "
            '{"dataframe_records": [{"column": value}]}'
        )
    try:
        document = json.loads(body)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the request body is not UTF-8 text: {exc.reason}") from exc
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    if not isinstance(document, dict):
        raise BadRequest(
            f"the request body must be a JSON object (dataframe_records, dataframe_split or "
            f"inputs), not a JSON {type(document).__name__}"
        )
    return document


async def send_response(
    send: Send, status: int, body: bytes, headers: Sequence[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


def error_body(error: GatewayError, request_id: str) -> bytes:
    """``{"error": {"type", "message", "hint"?, "request_id"}}``."""
    detail: dict[str, Any] = {"type": type(error).__name__, "message": error.message}
    if error.hint:
        detail["hint"] = error.hint
    detail["request_id"] = request_id
    return json.dumps({"error": detail}).encode()


def _too_large(size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the request body has {size} bytes; the gateway accepts at most {limit}",
        hint="split the rows over several requests",
    )
