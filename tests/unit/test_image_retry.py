"""The retry policy of registry calls: how long to wait, and what a Retry-After header means."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from infra.images.retry import TRANSIENT_STATUSES, RetryPolicy, parse_retry_after


def test_waits_double_from_the_first_delay_up_to_the_cap() -> None:
    policy = RetryPolicy(attempts=7, first_delay_s=0.5, max_delay_s=5.0)
    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_retry_after_lengthens_a_wait_but_never_past_the_cap() -> None:
    policy = RetryPolicy(first_delay_s=1.0, max_delay_s=10.0)
    assert policy.delay(1, retry_after_s=3.0) == 3.0
    assert policy.delay(3, retry_after_s=0.0) == 4.0  # a shorter ask does not shorten the back-off
    assert policy.delay(1, retry_after_s=3600.0) == 10.0


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"attempts": 0}, "at least 1, got 0"),
        ({"first_delay_s": -1.0}, "must not be negative"),
        ({"max_delay_s": -0.5}, "must not be negative"),
    ],
)
def test_a_policy_that_cannot_work_is_refused(kwargs: dict[str, float], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    now = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(" 120 ", now) == 120.0
    assert parse_retry_after("Mon, 07 Dec 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Mon, 07 Dec 2026 11:59:00 GMT", now) == 0.0  # already past


@pytest.mark.parametrize("value", [None, "", "soon", "-3", "1.5e3"])
def test_an_unreadable_retry_after_leaves_the_back_off_alone(value: str | None) -> None:
    assert parse_retry_after(value) is None


def test_only_statuses_that_may_pass_are_transient() -> None:
    assert {429, 502, 503, 504} <= TRANSIENT_STATUSES
    assert TRANSIENT_STATUSES.isdisjoint({400, 401, 403, 404, 409, 413, 416})
