"""PhalaClient's retries: which statuses and failures are retried, Retry-After, and the attempt and
time budgets. Waits go through a fake clock, so nothing here actually waits for a backoff.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from email.utils import format_datetime

import httpx
import orjson
import pytest

from sync.api.retry import RetryPolicy
from sync.errors import (
    ApiError,
    ApiTransportError,
    AuthError,
    FatalApiError,
    InvalidEnvelopeError,
    NotFoundError,
    RateLimitedError,
    RetriableApiError,
)
from tests.sync.api.fake_api import (
    BASE,
    NOW,
    VERSION,
    FakeApi,
    FakeTime,
    list_cvms,
    raises,
    status,
)

# --- retries -----------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [429, 500, 502, 503, 504])
def test_retriable_statuses_are_retried_with_backoff(
    code: int, caplog: pytest.LogCaptureFixture
) -> None:
    api = FakeApi(total=10, faults={1: [status(code), status(code, {"detail": "busy"})]})
    fake_time = FakeTime()

    with caplog.at_level(logging.WARNING, logger="sync.api.client"):
        pages = list_cvms(api, fake_time)
    assert len(pages[0].items) == 10
    assert len(api.requests) == 3
    assert fake_time.sleeps == [0.25, 0.5]  # full jitter at 0.5 of 0.5 s, then of 1 s
    retries = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(retries) == 2
    assert f"HTTP {code} (attempt 1 of 6); retrying in 0.25s" in retries[0]
    assert f"{BASE}/cvms/paginated?page=1&page_size=100" in retries[0]


@pytest.mark.parametrize(
    "exc_type",
    [
        httpx.ConnectError,
        httpx.ConnectTimeout,
        httpx.ReadTimeout,
        httpx.PoolTimeout,
        httpx.ReadError,
        httpx.RemoteProtocolError,
    ],
)
def test_transport_failures_are_retried(exc_type: type[httpx.RequestError]) -> None:
    api = FakeApi(total=150, faults={2: [raises(exc_type), raises(exc_type)]})
    fake_time = FakeTime()

    pages = list_cvms(api, fake_time)
    assert sorted(p.number for p in pages) == [1, 2]
    assert api.pages_requested().count(2) == 3
    assert fake_time.sleeps == [0.25, 0.5]


def test_transport_failure_gives_up_as_api_transport_error() -> None:
    api = FakeApi(total=1, faults={1: [raises(httpx.ConnectError, "refused")] * 6})

    with pytest.raises(ApiTransportError) as caught:
        list_cvms(api)
    err = caught.value
    assert isinstance(err.__cause__, httpx.ConnectError)
    assert err.version == VERSION
    assert err.url == f"{BASE}/cvms/paginated?page=1&page_size=100"
    assert "ConnectError: refused" in str(err)
    assert err.__notes__ == ["gave up after 6 attempt(s) in 7.8s"]
    assert len(api.requests) == 6


def test_truncated_body_is_retried_then_succeeds() -> None:
    api = FakeApi(total=10)
    full = orjson.dumps(api.body(1, 100))
    api.faults[1] = [lambda request: httpx.Response(200, content=full[: len(full) // 2])]
    fake_time = FakeTime()

    assert len(list_cvms(api, fake_time)[0].items) == 10
    assert len(api.requests) == 2
    assert fake_time.sleeps == [0.25]


def test_body_that_stays_invalid_raises_invalid_envelope_after_bounded_retries() -> None:
    def truncated(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b'{"items": [{"id": "cvm_1", "na')

    api = FakeApi(total=10, faults={1: [truncated] * 10})

    with pytest.raises(InvalidEnvelopeError):
        list_cvms(api, retry=RetryPolicy(body_retries=2))
    assert len(api.requests) == 3  # the first attempt plus body_retries


def test_retry_after_seconds_is_honoured() -> None:
    api = FakeApi(
        total=1,
        faults={
            1: [
                status(429, {"detail": "slow down"}, {"Retry-After": "7"}),
                status(503, None, {"Retry-After": "20"}),
            ]
        },
    )
    fake_time = FakeTime()

    list_cvms(api, fake_time)
    assert fake_time.sleeps == [7.0, 20.0]  # beyond max_delay (15 s) but within the budget


def test_retry_after_http_date_is_honoured() -> None:
    fake_time = FakeTime()
    when = format_datetime(NOW + timedelta(seconds=42), usegmt=True)
    api = FakeApi(total=1, faults={1: [status(429, None, {"Retry-After": when})]})

    list_cvms(api, fake_time)
    assert fake_time.sleeps == [42.0]


def test_retry_after_beyond_the_budget_gives_up_at_once() -> None:
    api = FakeApi(total=1, faults={1: [status(429, None, {"Retry-After": "120"})]})
    fake_time = FakeTime()

    with pytest.raises(RateLimitedError) as caught:
        list_cvms(api, fake_time)
    assert caught.value.retry_after == 120.0
    assert fake_time.sleeps == []
    assert len(api.requests) == 1
    assert "beyond the budget" in caught.value.__notes__[0]


def test_gives_up_after_max_attempts() -> None:
    api = FakeApi(total=1, faults={1: [status(502)] * 10})
    fake_time = FakeTime()

    with pytest.raises(RetriableApiError) as caught:
        list_cvms(api, fake_time)
    assert caught.value.status == 502
    assert len(api.requests) == 6
    assert fake_time.sleeps == [0.25, 0.5, 1.0, 2.0, 4.0]
    assert caught.value.__notes__[0].startswith("gave up after 6 attempt(s)")


def test_gives_up_when_the_time_budget_is_spent() -> None:
    fake_time = FakeTime()

    def slow_503(request: httpx.Request) -> httpx.Response:
        fake_time.t += 3.0  # each attempt takes 3 s
        return httpx.Response(503)

    api = FakeApi(total=1, faults={1: [slow_503] * 100})
    policy = RetryPolicy(max_attempts=100, budget_seconds=20, base=1, max_delay=4)

    with pytest.raises(RetriableApiError):
        list_cvms(api, fake_time, retry=policy)
    # attempts end at 3, 6.5, 10.5, 15.5 and 20.5 s; the waits were 0.5, 1, 2, 2
    assert fake_time.sleeps == [0.5, 1.0, 2.0, 2.0]
    assert len(api.requests) == 5
    assert fake_time.t <= policy.budget_seconds + 3.0  # the last attempt may finish past it


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (400, FatalApiError),
        (401, AuthError),
        (403, AuthError),
        (404, NotFoundError),
        (422, FatalApiError),
    ],
)
def test_client_errors_are_not_retried(code: int, cls: type[ApiError]) -> None:
    api = FakeApi(total=1, faults={1: [status(code, {"detail": "no"})]})
    fake_time = FakeTime()

    with pytest.raises(cls) as caught:
        list_cvms(api, fake_time)
    assert type(caught.value) is cls
    assert caught.value.status == code
    assert len(api.requests) == 1
    assert fake_time.sleeps == []


def test_retry_statuses_are_configurable() -> None:
    api = FakeApi(total=1, faults={1: [status(500)]})
    policy = RetryPolicy(retry_statuses=frozenset({429, 503}))

    with pytest.raises(RetriableApiError):
        list_cvms(api, retry=policy)
    assert len(api.requests) == 1
