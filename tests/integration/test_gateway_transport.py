"""The gateway's lean HTTP/1.1 transport against real sockets on loopback: keep-alive reuse,
chunked and split answers, servers that close or refuse, and use under ``httpx.AsyncClient``.

The upstream here is a raw asyncio server whose replies each test writes byte by byte, so the
edge cases (a close between requests, a malformed status line) are exactly what the test says.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from serving.gateway.transport import PooledTransport

pytestmark = pytest.mark.anyio

Reply = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]  # returns: keep the connection


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def ok(body: bytes = b'{"predictions": [1]}', extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n%s\r\n%s" % (len(body), extra, body)
    )


class Upstream:
    """Reads each request whole (head and content-length body), lets ``reply`` answer it."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.connections = 0
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                if not await self.reply(request, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serving(reply: Reply) -> AsyncIterator[tuple[Upstream, str]]:
    upstream = Upstream(reply)
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield upstream, f"http://127.0.0.1:{port}/predict"
        server.close()


async def answer_ok(request: bytes, writer: asyncio.StreamWriter) -> bool:
    writer.write(ok())
    await writer.drain()
    return True


async def test_keeps_connections_alive_and_sends_what_it_was_given() -> None:
    pool = PooledTransport()
    async with serving(answer_ok) as (upstream, url):
        for i in range(5):
            raw = await pool.post(url, b'{"a": %d}' % i, {"x-request-id": f"r{i}"})
            assert raw.status == 200 and raw.body == b'{"predictions": [1]}'
            assert raw.header(b"content-type") == "application/json"
        assert upstream.connections == 1
        first = upstream.requests[0]
        assert first.startswith(b"POST /predict HTTP/1.1\r\n")
        assert b"\r\nx-request-id: r0\r\n" in first and b"\r\ncontent-length: 8\r\n" in first
        assert first.endswith(b'\r\n\r\n{"a": 0}')
    await pool.aclose()


async def test_reads_chunked_and_split_answers() -> None:
    async def chunked(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        await writer.drain()
        for piece in (b"5\r\nhello\r\n", b"6\r\n world\r\n", b"0\r\n\r\n"):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.01)
        return True

    pool = PooledTransport()
    async with serving(chunked) as (upstream, url):
        for _ in range(2):
            raw = await pool.post(url, b"{}", {})
            assert raw.body == b"hello world"
        assert upstream.connections == 1
    await pool.aclose()


async def test_a_large_answer_arrives_whole() -> None:
    big = b"[" + b"1," * 500_000 + b"1]"

    async def large(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(ok(big))
        await writer.drain()
        return True

    pool = PooledTransport()
    async with serving(large) as (_, url):
        assert (await pool.post(url, b"{}", {})).body == big
    await pool.aclose()


async def test_an_idle_connection_the_server_closed_is_replaced_transparently() -> None:
    async def one_per_connection(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(ok())
        await writer.drain()
        return False  # close after answering, without saying so in the headers

    pool = PooledTransport()
    async with serving(one_per_connection) as (upstream, url):
        for _ in range(3):
            assert (await pool.post(url, b"{}", {})).status == 200
            await asyncio.sleep(0.05)  # let the close arrive: the pool must not reuse it
        assert upstream.connections == 3
        # Back to back, the close may still be in flight when the next request is written: the
        # pool sends it again on a fresh connection instead of failing the caller.
        for _ in range(20):
            assert (await pool.post(url, b"{}", {})).status == 200
    await pool.aclose()


async def test_connection_close_answers_are_not_reused() -> None:
    async def close_header(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(ok(extra=b"connection: close\r\n"))
        await writer.drain()
        return False

    pool = PooledTransport()
    async with serving(close_header) as (upstream, url):
        for _ in range(2):
            assert (await pool.post(url, b"{}", {})).status == 200
        assert upstream.connections == 2
    await pool.aclose()


async def test_refused_and_malformed_are_httpx_errors() -> None:
    pool = PooledTransport()
    async with serving(answer_ok) as (_, url):
        dead = url  # the server stops at the end of the block
    with pytest.raises(httpx.ConnectError, match=r"cannot connect to 127\.0\.0\.1"):
        await pool.post(dead, b"{}", {})

    async def garbage(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        return True

    async with serving(garbage) as (_, url):
        with pytest.raises(httpx.RemoteProtocolError, match="malformed response"):
            await pool.post(url, b"{}", {})
    with pytest.raises(ValueError, match="plain http only"):
        await pool.post("https://example.org/predict", b"{}", {})
    await pool.aclose()


async def test_a_server_that_dies_mid_answer_is_a_protocol_error() -> None:
    async def die(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{partial")
        await writer.drain()
        return False

    pool = PooledTransport()
    async with serving(die) as (_, url):
        with pytest.raises(httpx.RemoteProtocolError, match="disconnected"):
            await pool.post(url, b"{}", {})
    await pool.aclose()


async def test_a_cancelled_exchange_spoils_its_connection() -> None:
    async def slow(request: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.5)
        writer.write(ok())
        await writer.drain()
        return True

    pool = PooledTransport()
    async with serving(slow) as (upstream, url):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await pool.post(url, b"{}", {})
        assert (await pool.post(url, b"{}", {})).status == 200
        assert upstream.connections == 2, "the late answer must not be read as the next one"
    await pool.aclose()


async def test_concurrent_requests_open_connections_and_keep_them() -> None:
    async def paced(request: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.02)
        writer.write(ok())
        await writer.drain()
        return True

    pool = PooledTransport(max_connections=8)
    async with serving(paced) as (upstream, url):
        for _ in range(3):
            replies = await asyncio.gather(*(pool.post(url, b"{}", {}) for _ in range(16)))
            assert {r.status for r in replies} == {200}
        assert upstream.connections <= 8
    await pool.aclose()


async def test_works_under_httpx_async_client() -> None:
    pool = PooledTransport()
    async with (
        serving(answer_ok) as (upstream, url),
        httpx.AsyncClient(transport=pool) as client,
    ):
        response = await client.post(url, json={"a": 1}, headers={"x-request-id": "r"})
        assert response.status_code == 200 and response.json() == {"predictions": [1]}
        assert response.headers["content-type"] == "application/json"
        assert b"x-request-id: r" in upstream.requests[0]
