"""The Redis token bucket on the machine's real Redis: exact across processes, fails closed."""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import socket
import time
import uuid
from collections.abc import Iterator
from multiprocessing.synchronize import Barrier
from typing import Any

import pytest
import redis

from modelyard.errors import ConfigurationError
from modelyard.settings import Settings
from serving.gateway.errors import LimiterUnavailable
from serving.gateway.ratelimit import InProcessLimiter, RedisLimiter, limiter_from_settings
from tests.conftest import REDIS_URL

pytestmark = [pytest.mark.redis, pytest.mark.anyio]

PROCESSES = 3
TASKS_PER_LIMITER = 4
RATE, BURST, WINDOW_S = 100.0, 10.0, 2.0
SLACK_S = 0.05
WAIT_S = 120.0  # spawned children import from source: allow slow starts


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix no other test uses; every key under it is deleted afterwards."""
    value = f"modelyard-test:{uuid.uuid4().hex[:10]}:"
    yield value
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{value}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_time_us(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1_000_000 + int(micros)


async def hammer(limiter: RedisLimiter, bucket: str, until: float) -> tuple[int, int]:
    """Acquire back to back until the monotonic deadline; (allowed, requests)."""
    allowed = requests = 0
    while time.monotonic() < until:
        decision = await limiter.acquire(bucket, RATE, BURST)
        allowed += decision.allowed
        requests += 1
    return allowed, requests


async def run_limiter(url: str, prefix: str, bucket: str, barrier: Barrier) -> dict[str, int]:
    """One gateway replica: its own limiter and pool, several concurrent tasks on one bucket."""
    from redis.asyncio import Redis

    limiter, clock = RedisLimiter(url, key_prefix=prefix), Redis.from_url(url)
    try:
        await limiter.acquire("warm-up", RATE, BURST)  # connect before the window opens
        await asyncio.to_thread(barrier.wait, WAIT_S)
        start_s, start_us = await clock.time()
        until = time.monotonic() + WINDOW_S
        counts = await asyncio.gather(
            *(hammer(limiter, bucket, until) for _ in range(TASKS_PER_LIMITER))
        )
        end_s, end_us = await clock.time()
    finally:
        await limiter.close()
        await clock.aclose()
    return {
        "allowed": sum(a for a, _ in counts),
        "requests": sum(r for _, r in counts),
        "start_us": int(start_s) * 1_000_000 + int(start_us),
        "end_us": int(end_s) * 1_000_000 + int(end_us),
    }


def _replica_process(url: str, prefix: str, bucket: str, barrier: Barrier, results: Any) -> None:
    try:
        results.put(asyncio.run(run_limiter(url, prefix, bucket, barrier)))
    except BaseException as exc:
        results.put({"error": repr(exc)})
        raise


def assert_exact(outcomes: list[dict[str, int]]) -> None:
    """Allowed == floor(burst + rate * elapsed) within 1, elapsed by Redis's own clock.

    The window by the server clock runs from the earliest replica's TIME before its first
    request to the latest one's after its last; requests are back to back, so every token made
    in the window is taken and the bucket ends with less than one.

    Never more than the limit, exactly. The lower bound allows ``SLACK_S`` of tokens: the window
    closes with a TIME call made after the last request, and on a loaded machine the event loop
    can take tens of milliseconds to get there, while tokens keep accruing unrequested.
    """
    elapsed_s = (max(o["end_us"] for o in outcomes) - min(o["start_us"] for o in outcomes)) / 1e6
    allowed = sum(o["allowed"] for o in outcomes)
    expected = math.floor(BURST + RATE * elapsed_s)
    slack = 1 + math.ceil(RATE * SLACK_S)
    assert expected - slack <= allowed <= expected, (allowed, expected, elapsed_s, outcomes)
    requests = sum(o["requests"] for o in outcomes)
    assert requests > 5 * allowed, outcomes  # far over the limit, or the test proves nothing
    assert all(o["requests"] > 0 and o["allowed"] > 0 for o in outcomes), outcomes


def test_three_gateway_processes_on_one_redis_allow_exactly_the_limit(prefix: str) -> None:
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(PROCESSES), context.Queue()
    processes = [
        context.Process(
            target=_replica_process, args=(REDIS_URL, prefix, "shared", barrier, results)
        )
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    try:
        outcomes = [results.get(timeout=WAIT_S) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=WAIT_S)
            if process.is_alive():
                process.kill()
    assert [p.exitcode for p in processes] == [0] * PROCESSES, outcomes

    assert_exact(outcomes)


async def test_three_limiters_with_their_own_pools_allow_exactly_the_limit(prefix: str) -> None:
    barrier = multiprocessing.get_context("spawn").Barrier(PROCESSES)

    outcomes = await asyncio.gather(
        *(run_limiter(REDIS_URL, prefix, "shared", barrier) for _ in range(PROCESSES))
    )

    assert_exact(list(outcomes))


async def test_a_bucket_allows_its_burst_then_says_when_to_retry(prefix: str) -> None:
    limiter = RedisLimiter(REDIS_URL, key_prefix=prefix)
    try:
        decisions = [await limiter.acquire("k", 1.0, 3.0) for _ in range(4)]
    finally:
        await limiter.close()

    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [round(d.remaining) for d in decisions[:3]] == [2, 1, 0]
    assert 0.9 < decisions[3].retry_after_s <= 1.0


async def test_buckets_expire_once_they_would_be_full_again(prefix: str) -> None:
    limiter = RedisLimiter(REDIS_URL, key_prefix=prefix)
    try:
        await limiter.acquire("k", 2.0, 10.0)
    finally:
        await limiter.close()
    client = redis.Redis.from_url(REDIS_URL)
    try:
        ttl_ms = client.pttl(f"{prefix}k")
    finally:
        client.close()
    assert 5_000 < ttl_ms <= 6_000  # burst / rate = 5 s to refill, plus a second


async def test_a_dead_redis_fails_closed_fast_without_showing_the_password() -> None:
    port = free_port()
    limiter = RedisLimiter(f"redis://:hunter2@127.0.0.1:{port}/0")
    started = time.monotonic()
    try:
        with pytest.raises(LimiterUnavailable) as raised:
            await limiter.acquire("k", 1.0, 1.0)
    finally:
        await limiter.close()

    assert time.monotonic() - started < 2.0
    message = str(raised.value)
    assert f"cannot reach Redis at redis://:***@127.0.0.1:{port}/0" in message
    assert "rate-limited keys are refused" in message and "MODELYARD_REDIS_URL" in message
    assert "hunter2" not in message and raised.value.status == 503


async def test_a_redis_that_never_answers_times_out_into_fail_closed() -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        limiter = RedisLimiter(f"redis://127.0.0.1:{port}/0", timeout_s=0.2)
        started = time.monotonic()
        try:
            with pytest.raises(LimiterUnavailable, match=f"127.0.0.1:{port}"):
                await limiter.acquire("k", 1.0, 1.0)
        finally:
            await limiter.close()
    assert time.monotonic() - started < 2.0


def test_a_malformed_redis_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="as the rate limiter's Redis"):
        RedisLimiter("http://127.0.0.1:6379")


def test_settings_choose_redis_when_configured_else_in_process(tmp_path: Any) -> None:
    assert isinstance(limiter_from_settings(Settings(home=tmp_path)), InProcessLimiter)
    chosen = limiter_from_settings(Settings(home=tmp_path, redis_url=REDIS_URL))
    assert isinstance(chosen, RedisLimiter)
