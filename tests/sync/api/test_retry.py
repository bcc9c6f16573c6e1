"""RetryPolicy arithmetic and Retry-After parsing (pure functions, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync.api.retry import RETRY_STATUSES, RetryPolicy, parse_retry_after

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def test_defaults_give_up_within_about_a_minute() -> None:
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.budget_seconds, policy.base, policy.max_delay) == (
        6,
        60.0,
        0.5,
        15.0,
    )
    assert policy.body_retries == 2
    assert frozenset({429, 500, 502, 503, 504}) == RETRY_STATUSES == policy.retry_statuses


def test_backoff_cap_doubles_up_to_max_delay() -> None:
    policy = RetryPolicy()
    assert [policy.backoff_cap(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 15, 15]
    assert policy.backoff_cap(10_000) == 15


def test_full_jitter_scales_the_cap() -> None:
    policy = RetryPolicy()
    assert policy.next_delay(3, elapsed=0, retry_after=None, jitter=0.0) == 0.0
    assert policy.next_delay(3, elapsed=0, retry_after=None, jitter=0.5) == 1.0
    assert policy.next_delay(3, elapsed=0, retry_after=None, jitter=0.999) == pytest.approx(1.998)


def test_gives_up_after_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert policy.next_delay(2, elapsed=0, retry_after=None, jitter=0.5) is not None
    assert policy.next_delay(3, elapsed=0, retry_after=None, jitter=0.5) is None
    assert RetryPolicy(max_attempts=1).next_delay(1, elapsed=0, retry_after=None, jitter=0) is None


def test_backoff_is_shortened_to_the_remaining_budget() -> None:
    policy = RetryPolicy(budget_seconds=10)
    assert policy.next_delay(5, elapsed=9.5, retry_after=None, jitter=0.99) == pytest.approx(0.5)
    assert policy.next_delay(2, elapsed=10, retry_after=None, jitter=0.5) is None
    assert policy.next_delay(2, elapsed=11, retry_after=None, jitter=0.5) is None


def test_retry_after_is_honoured_beyond_max_delay_but_not_beyond_the_budget() -> None:
    policy = RetryPolicy(budget_seconds=60, max_delay=15)
    assert policy.next_delay(1, elapsed=10, retry_after=30, jitter=0.0) == 30
    assert policy.next_delay(1, elapsed=10, retry_after=50, jitter=0.0) == 50
    assert policy.next_delay(1, elapsed=10, retry_after=50.5, jitter=0.0) is None
    assert policy.next_delay(1, elapsed=0, retry_after=0.0, jitter=0.9) == 0.0


@given(
    failed=st.integers(min_value=1, max_value=100),
    elapsed=st.floats(min_value=0, max_value=200),
    jitter=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_backoff_delay_stays_within_cap_and_budget(
    failed: int, elapsed: float, jitter: float
) -> None:
    policy = RetryPolicy()
    delay = policy.next_delay(failed, elapsed=elapsed, retry_after=None, jitter=jitter)
    if failed >= policy.max_attempts or elapsed >= policy.budget_seconds:
        assert delay is None
    else:
        assert delay is not None
        assert 0 <= delay <= min(policy.backoff_cap(failed), policy.budget_seconds - elapsed)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"body_retries": -1},
        {"budget_seconds": 0},
        {"base": -1.0},
        {"max_delay": float("nan")},
        {"budget_seconds": float("inf")},
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("-3", 0.0),
        ("Sun, 01 Mar 2026 12:00:30 GMT", 30.0),
        ("Sunday, 01-Mar-26 12:01:00 GMT", 60.0),  # RFC 850
        ("Sun Mar  1 12:00:10 2026", 10.0),  # asctime, read as GMT
        ("Sun, 01 Mar 2026 11:59:00 GMT", 0.0),  # already past
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == expected


def test_parse_retry_after_date_is_relative_to_now() -> None:
    later = NOW + timedelta(seconds=20)
    assert parse_retry_after("Sun, 01 Mar 2026 12:00:30 GMT", now=later) == 10.0
