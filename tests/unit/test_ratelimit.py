"""Token-bucket arithmetic with an injected clock, and rate parsing: no Redis, no network."""

from __future__ import annotations

import asyncio
import math
import threading

import pytest

from modelyard.errors import ConfigurationError
from serving.gateway.ratelimit import (
    InProcessLimiter,
    bucket_name,
    default_burst,
    parse_rate,
    redact_url,
    take_token,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(clock: FakeClock) -> InProcessLimiter:
    return InProcessLimiter(clock=clock)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10/s", 10.0),
        ("600/m", 10.0),
        ("3600/h", 1.0),
        ("5", 5.0),
        (" 2.5 / s ", 2.5),
        ("30/min", 0.5),
        ("1e2/second", 100.0),
        ("7/HOUR", 7 / 3600),
        (".5/s", 0.5),
    ],
)
def test_parse_rate_reads_per_second_minute_and_hour(text: str, expected: float) -> None:
    assert parse_rate(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "abc", "10/d", "10/", "/s", "ten/s", "10 per s", "-1/s"])
def test_parse_rate_refuses_what_it_cannot_read_naming_the_text(text: str) -> None:
    with pytest.raises(ConfigurationError, match="cannot read") as raised:
        parse_rate(text)
    assert repr(text) in str(raised.value)
    assert "N/s, N/m or N/h" in str(raised.value)


@pytest.mark.parametrize("text", ["0/s", "0", "0.0/m", "1e400/s"])
def test_parse_rate_refuses_zero_and_infinite_rates(text: str) -> None:
    with pytest.raises(ConfigurationError, match=r"more than zero, got"):
        parse_rate(text)


def test_take_token_refills_caps_at_burst_and_says_when_to_retry() -> None:
    decision, left = take_token(tokens=0.0, elapsed_s=0.1, rate_per_second=5.0, burst=3.0)
    assert not decision.allowed
    assert decision.retry_after_s == pytest.approx(0.1)  # 0.5 tokens, 0.5 more at 5/s
    assert left == pytest.approx(0.5)

    decision, left = take_token(tokens=0.0, elapsed_s=100.0, rate_per_second=5.0, burst=3.0)
    assert decision.allowed and decision.retry_after_s == 0.0
    assert left == pytest.approx(2.0)  # capped at burst 3, minus the one taken
    assert decision.remaining == pytest.approx(2.0)


def test_take_token_gives_a_token_that_float_sums_leave_a_hair_short() -> None:
    tokens = sum([0.1] * 10) - 1e-12  # 0.9999999999999988
    decision, _ = take_token(tokens, 0.0, 1.0, 1.0)
    assert decision.allowed


def test_time_running_backwards_refills_nothing() -> None:
    decision, left = take_token(tokens=0.5, elapsed_s=-10.0, rate_per_second=1.0, burst=5.0)
    assert not decision.allowed and left == 0.5


async def test_a_new_bucket_allows_its_burst_then_refuses(
    limiter: InProcessLimiter, clock: FakeClock
) -> None:
    decisions = [await limiter.acquire("k", rate_per_second=5, burst=3) for _ in range(4)]

    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions[:3]] == [2, 1, 0]
    assert decisions[3].retry_after_s == pytest.approx(0.2)


async def test_refill_allows_exactly_one_more_after_retry_after(
    limiter: InProcessLimiter, clock: FakeClock
) -> None:
    for _ in range(3):
        await limiter.acquire("k", 5, 3)
    refused = await limiter.acquire("k", 5, 3)
    clock.advance(refused.retry_after_s - 0.001)
    assert not (await limiter.acquire("k", 5, 3)).allowed
    clock.advance(0.001)
    assert (await limiter.acquire("k", 5, 3)).allowed
    assert not (await limiter.acquire("k", 5, 3)).allowed


async def test_an_idle_bucket_refills_only_up_to_its_burst(
    limiter: InProcessLimiter, clock: FakeClock
) -> None:
    for _ in range(3):
        await limiter.acquire("k", 5, 3)
    clock.advance(3600)
    allowed = [(await limiter.acquire("k", 5, 3)).allowed for _ in range(5)]
    assert allowed == [True, True, True, False, False]


async def test_allowed_over_a_window_is_burst_plus_rate_times_elapsed(
    limiter: InProcessLimiter, clock: FakeClock
) -> None:
    rate, burst, step, steps = 7.0, 4.0, 0.001, 10_000  # a request every ms for 10 s
    allowed = 0
    for _ in range(steps + 1):
        allowed += (await limiter.acquire("k", rate, burst)).allowed
        clock.advance(step)
    assert allowed == math.floor(burst + rate * step * steps)


async def test_buckets_are_independent(limiter: InProcessLimiter) -> None:
    assert (await limiter.acquire("a", 1, 1)).allowed
    assert not (await limiter.acquire("a", 1, 1)).allowed
    assert (await limiter.acquire("b", 1, 1)).allowed


async def test_concurrent_tasks_take_exactly_the_burst(limiter: InProcessLimiter) -> None:
    decisions = await asyncio.gather(*(limiter.acquire("k", 1, 25) for _ in range(200)))
    assert sum(d.allowed for d in decisions) == 25


def test_concurrent_threads_take_exactly_the_burst(limiter: InProcessLimiter) -> None:
    allowed: list[int] = []

    def hammer() -> None:
        allowed.append(sum(limiter.acquire_nowait("k", 1, 100).allowed for _ in range(1000)))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(allowed) == 100


@pytest.mark.parametrize(
    ("rate", "burst", "message"),
    [
        (0, 1, "rate_per_second must be a positive number, got 0"),
        (-1, 1, "rate_per_second must be a positive number"),
        (math.inf, 1, "rate_per_second must be a positive number, got inf"),
        (1, 0.5, r"burst must be at least 1 \(one request\), got 0.5"),
        (1, math.nan, "burst must be at least 1"),
    ],
)
async def test_bad_limits_are_refused(
    limiter: InProcessLimiter, rate: float, burst: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await limiter.acquire("k", rate, burst)


async def test_past_max_buckets_the_least_recently_used_is_forgotten(clock: FakeClock) -> None:
    limiter = InProcessLimiter(clock=clock, max_buckets=2)
    await limiter.acquire("a", 1, 1)
    await limiter.acquire("b", 1, 1)
    await limiter.acquire("a", 1, 1)  # "a" used last: "b" is the oldest
    await limiter.acquire("c", 1, 1)
    assert len(limiter) == 2
    assert (await limiter.acquire("b", 1, 1)).allowed  # forgotten, so full again
    assert not (await limiter.acquire("c", 1, 1)).allowed


def test_default_burst_is_one_second_of_requests_and_at_least_one() -> None:
    assert default_burst(20) == 20
    assert default_burst(0.1) == 1


def test_bucket_names_per_key_and_per_model() -> None:
    assert bucket_name("abc") == "key:abc"
    assert bucket_name("abc", "iris") == "key:abc:model:iris"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("rediss://user:s3cret@host/1", "rediss://user:***@host/1"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("redis://:pw@[::1]:6379", "redis://:***@[::1]:6379"),
    ],
)
def test_redact_url_hides_only_the_password(url: str, expected: str) -> None:
    assert redact_url(url) == expected
