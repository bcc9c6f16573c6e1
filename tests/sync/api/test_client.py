"""PhalaClient against httpx.MockTransport: headers, paging, concurrency, retries, errors, secrecy.

Retry waits go through an injected fake clock, so nothing here actually waits for a backoff.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, TypeVar

import httpx
import orjson
import pytest
from pydantic import SecretStr

from sync.api.client import PhalaClient, user_agent
from sync.api.pages import Page
from sync.api.retry import RetryPolicy
from sync.errors import (
    ApiError,
    ApiTransportError,
    AuthError,
    ConfigError,
    FatalApiError,
    InvalidEnvelopeError,
    InvalidItemError,
    NotFoundError,
    RateLimitedError,
    RetriableApiError,
    UnknownVersionError,
)
from sync.settings import Settings
from sync.versions import KNOWN_VERSIONS
from tests.sync.api.listings import PagesSeen, fleet_change_warnings

KEY = "phak_client_test_0123456789SECRET"
BASE = "https://cloud-api.test/api/v1"
VERSION = "2026-01-21"
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)

T = TypeVar("T")
Fault = Callable[[httpx.Request], httpx.Response]


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(main())


def cvm_item(i: int) -> dict[str, Any]:
    """A minimal valid 2026-01-21 CVMInfo."""
    return {
        "id": f"cvm_{i:08x}",
        "name": f"cvm-{i}",
        "vm_uuid": str(uuid.UUID(int=i + 1)),
        "app_id": f"{i:040x}",
        "resource": {},
        "status": "running",
        "gateway": {},
    }


def app_item(i: int) -> dict[str, Any]:
    """A minimal 2026-01-21 app: only ``app_id`` is set."""
    return {"id": None, "app_id": f"{i:040x}", "name": None, "cvms": None, "current_cvm": None}


def status(code: int, body: Any = None, headers: dict[str, str] | None = None) -> Fault:
    def fault(request: httpx.Request) -> httpx.Response:
        content = b"" if body is None else orjson.dumps(body)
        return httpx.Response(code, content=content, headers=headers)

    return fault


def raises(exc_type: type[httpx.RequestError], message: str = "boom") -> Fault:
    def fault(request: httpx.Request) -> httpx.Response:
        raise exc_type(message, request=request)

    return fault


@dataclass
class FakeApi:
    """An async MockTransport handler serving a fleet of ``total`` items on one endpoint."""

    total: int
    endpoint: str = "cvms"
    #: page -> responses (or raisers) served, in order, before the page is served normally
    faults: dict[int, list[Fault]] = field(default_factory=dict)
    #: page -> envelope fields that page reports instead of the true ones
    overrides: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: page -> an awaitable the handler waits for before answering
    gates: dict[int, Callable[[], Awaitable[object]]] = field(default_factory=dict)
    delay: float = 0.0
    requests: list[httpx.Request] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    cancelled: list[int] = field(default_factory=list)
    on_request: Callable[[], None] | None = None

    def body(self, page: int, size: int) -> dict[str, Any]:
        start = (page - 1) * size
        ids = range(start, min(start + size, self.total))
        pages = math.ceil(self.total / size)
        if self.endpoint == "cvms":
            body: dict[str, Any] = {
                "items": [cvm_item(i) for i in ids],
                "total": self.total,
                "page": page,
                "page_size": size,
                "pages": pages,
            }
        else:
            body = {
                "dstack_apps": [app_item(i) for i in ids],
                "total": self.total,
                "page": page,
                "page_size": size,
                "total_pages": pages,
            }
        body.update(self.overrides.get(page, {}))
        return body

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.on_request is not None:
            self.on_request()
        page = int(request.url.params["page"])
        size = int(request.url.params["page_size"])
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if page in self.gates:
                await self.gates[page]()
            queue = self.faults.get(page)
            if queue:
                return queue.pop(0)(request)
            return httpx.Response(200, content=orjson.dumps(self.body(page, size)))
        except asyncio.CancelledError:
            self.cancelled.append(page)
            raise
        finally:
            self.in_flight -= 1

    def pages_requested(self) -> list[int]:
        return [int(r.url.params["page"]) for r in self.requests]


class FakeTime:
    """Monotonic clock, wall clock and sleep that only pretend time passes."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return NOW + timedelta(seconds=self.t)

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.t += delay
        await asyncio.sleep(0)


def make_client(
    api: Callable[[httpx.Request], Coroutine[None, None, httpx.Response]],
    fake_time: FakeTime | None = None,
    **kwargs: Any,
) -> PhalaClient:
    fake_time = fake_time or FakeTime()
    options: dict[str, Any] = {
        "base_url": BASE,
        "api_key": SecretStr(KEY),
        "version": VERSION,
        "transport": httpx.MockTransport(api),
        "sleep": fake_time.sleep,
        "clock": fake_time.monotonic,
        "now": fake_time.now,
        "jitter": lambda: 0.5,
    }
    options.update(kwargs)
    return PhalaClient(**options)


async def collect_cvms(client: PhalaClient) -> list[Page[Any]]:
    return [page async for page in client.cvm_pages()]


def list_cvms(api: FakeApi, fake_time: FakeTime | None = None, **kwargs: Any) -> list[Page[Any]]:
    """One whole CVM listing from ``api`` by a client of :func:`make_client`: its pages."""

    async def main() -> list[Page[Any]]:
        async with make_client(api, fake_time, **kwargs) as client:
            return await collect_cvms(client)

    return run(main)


def other_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


# --- configuration -----------------------------------------------------------------------------


def test_every_request_carries_key_version_accept_and_user_agent() -> None:
    api = FakeApi(total=250)

    list_cvms(api)
    assert sorted(api.pages_requested()) == [1, 2, 3]
    for request in api.requests:
        assert request.headers["X-API-Key"] == KEY
        assert request.headers["X-Phala-Version"] == VERSION
        assert request.headers["Accept"] == "application/json"
        assert request.headers["User-Agent"] == user_agent()
        assert request.url.path == "/api/v1/cvms/paginated"
        assert request.url.params["page_size"] == "100"
    assert user_agent().startswith("phala-sync/")


def test_unknown_version_is_refused_before_any_request() -> None:
    api = FakeApi(total=3)
    with pytest.raises(UnknownVersionError) as caught:
        make_client(api, version="2099-01-01")
    assert api.requests == []
    for known in KNOWN_VERSIONS:
        assert known in str(caught.value)


@pytest.mark.parametrize("key", [None, "", "   ", SecretStr("")])
def test_missing_key_is_refused_before_any_request(key: SecretStr | str | None) -> None:
    api = FakeApi(total=3)
    with pytest.raises(ConfigError, match="PHALA_CLOUD_API_KEY"):
        make_client(api, api_key=key)
    assert api.requests == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"base_url": "cloud-api.phala.com/api/v1"}, "PHALA_CLOUD_API_PREFIX"),
        ({"base_url": "ftp://cloud-api.phala.com/api/v1"}, "PHALA_CLOUD_API_PREFIX"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": 101}, "page_size"),
        ({"concurrency": 0}, "concurrency"),
        ({"timeout": 0}, "timeout"),
        ({"validation_policy": "lenient"}, "validation_policy"),
    ],
)
def test_bad_settings_are_config_errors(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make_client(FakeApi(total=0), **kwargs)


def test_plain_string_key_and_trailing_slash(monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeApi(total=1)

    async def main() -> None:
        async with make_client(api, api_key=KEY, base_url=BASE + "/") as client:
            assert client.base_url == BASE
            assert KEY not in repr(client)
            await collect_cvms(client)

    run(main)
    assert str(api.requests[0].url) == f"{BASE}/cvms/paginated?page=1&page_size=100"
    assert api.requests[0].headers["X-API-Key"] == KEY


def test_from_settings_reads_the_sdk_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHALA_CLOUD_API_KEY", KEY)
    monkeypatch.setenv("PHALA_CLOUD_API_PREFIX", "https://env.test/api/v1/")
    monkeypatch.setenv("PHALA_SYNC_PAGE_SIZE", "40")
    monkeypatch.setenv("PHALA_SYNC_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("PHALA_SYNC_RETRY_BUDGET", "20")
    settings = Settings(_env_file=None)
    api = FakeApi(total=50)

    async def main() -> None:
        client = PhalaClient.from_settings(settings, transport=httpx.MockTransport(api))
        async with client:
            assert client.retry == RetryPolicy(max_attempts=3, budget_seconds=20)
            assert (client.page_size, client.concurrency, client.version) == (40, 4, VERSION)
            await collect_cvms(client)

    run(main)
    assert [str(r.url) for r in api.requests] == [
        "https://env.test/api/v1/cvms/paginated?page=1&page_size=40",
        "https://env.test/api/v1/cvms/paginated?page=2&page_size=40",
    ]
    assert all(r.headers["X-API-Key"] == KEY for r in api.requests)


def test_from_settings_without_a_key_is_a_config_error() -> None:
    settings = Settings(_env_file=None)
    with pytest.raises(ConfigError, match="PHALA_CLOUD_API_KEY"):
        PhalaClient.from_settings(settings)


# --- paging ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "page_size", "pages"),
    [(0, 100, 1), (1, 100, 1), (100, 100, 1), (101, 100, 2), (250, 100, 3), (95, 10, 10)],
)
def test_pages_to_the_end(
    total: int, page_size: int, pages: int, caplog: pytest.LogCaptureFixture
) -> None:
    api = FakeApi(total=total)
    with caplog.at_level(logging.DEBUG, logger="sync.api.client"):
        got = list_cvms(api, page_size=page_size)
    assert sorted(api.pages_requested()) == list(range(1, pages + 1))
    assert sorted(p.number for p in got) == list(range(1, pages + 1))
    names = [item.cvm.name for page in got for item in page.items]
    assert sorted(names) == sorted(f"cvm-{i}" for i in range(total))
    assert {(p.endpoint, p.version, p.page_size) for p in got} == {("cvms", VERSION, page_size)}
    seen = PagesSeen.of(got)
    assert (seen.planned_pages, seen.first_total, seen.totals) == (pages, total, {total})
    assert (seen.items, seen.quarantined, seen.fleet_changed) == (total, 0, False)
    assert seen.all_planned_pages
    assert seen.complete
    assert fleet_change_warnings(caplog.records) == []
    finished = f"cvms listing finished: {pages} pages, {total} items, 0 quarantined"
    assert f"{finished}, total {total}..{total}" in caplog.messages


def test_app_pages_use_the_apps_envelope() -> None:
    api = FakeApi(total=45, endpoint="apps")

    async def main() -> list[Page[Any]]:
        async with make_client(api, page_size=20) as client:
            return [page async for page in client.app_pages()]

    got = run(main)
    assert {r.url.path for r in api.requests} == {"/api/v1/apps"}
    assert sorted(api.pages_requested()) == [1, 2, 3]
    assert sum(len(p.items) for p in got) == 45
    assert {p.endpoint for p in got} == {"apps"}
    seen = PagesSeen.of(got)
    assert seen.complete
    assert (seen.planned_pages, seen.items) == (3, 45)


def test_at_most_concurrency_requests_in_flight_and_pages_waiting() -> None:
    api = FakeApi(total=100, delay=0.002)
    started = 0

    def count() -> None:
        nonlocal started
        started += 1

    api.on_request = count
    outstanding: list[int] = []

    async def main() -> None:
        async with make_client(api, page_size=5, concurrency=3) as client:
            yielded = 0
            async for _ in client.cvm_pages():
                yielded += 1
                # requests started but not yet handed over: in flight plus buffered pages
                outstanding.append(started - yielded)
                await asyncio.sleep(0.005)  # a slow consumer lets fetched pages pile up

    run(main)
    assert len(api.requests) == 20
    assert api.max_in_flight == 3  # bounded, and the bound is used
    assert max(outstanding) <= 3


def test_pages_are_yielded_as_they_arrive() -> None:
    async def main() -> list[int]:
        released = asyncio.Event()

        async def wait_for_release() -> None:
            await asyncio.wait_for(released.wait(), timeout=5)

        api = FakeApi(total=300, gates={2: wait_for_release})
        order: list[int] = []
        async with make_client(api, concurrency=2) as client:
            async for page in client.cvm_pages():
                order.append(page.number)
                if page.number == 3:
                    released.set()  # page 2 answers only after page 3 was handed over
        return order

    assert run(main) == [1, 3, 2]


def test_fleet_change_keeps_the_planned_pages_and_is_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = FakeApi(
        total=250,
        overrides={2: {"total": 301, "pages": 4}, 3: {"total": 240}},
    )
    with caplog.at_level(logging.DEBUG, logger="sync.api.client"):
        got = list_cvms(api)
    assert sorted(api.pages_requested()) == [1, 2, 3]
    seen = PagesSeen.of(got)
    assert (seen.planned_pages, sorted(seen.numbers), seen.first_total) == (3, [1, 2, 3], 250)
    assert (min(seen.totals), max(seen.totals)) == (240, 301)
    assert seen.fleet_changed
    assert seen.all_planned_pages
    assert not seen.complete
    assert len(fleet_change_warnings(caplog.records)) == 1
    assert (
        "cvms listing finished: 3 pages, 250 items, 0 quarantined, total 240..301 "
        "(the fleet changed during the listing)"
    ) in caplog.messages


def test_unfinished_listing_is_not_complete(caplog: pytest.LogCaptureFixture) -> None:
    api = FakeApi(total=250)

    async def main() -> list[Page[Any]]:
        got = []
        async with (
            make_client(api, concurrency=1) as client,
            aclosing(client.cvm_pages()) as pages,
        ):
            async for page in pages:
                got.append(page)
                if page.number == 2:
                    break
        return got

    with caplog.at_level(logging.DEBUG, logger="sync.api.client"):
        seen = PagesSeen.of(run(main))
    assert (seen.numbers, seen.planned_pages) == ([1, 2], 3)
    assert (seen.all_planned_pages, seen.complete) == (False, False)
    assert not [m for m in caplog.messages if "listing finished" in m]


def test_quarantined_items_are_counted() -> None:
    api = FakeApi(total=150)
    bad = api.body(2, 100)
    bad["items"][0]["resource"] = "not an object"
    api.faults[2] = [lambda request: httpx.Response(200, content=orjson.dumps(bad))]
    seen = PagesSeen.of(list_cvms(api))
    assert (seen.items, seen.quarantined, seen.complete) == (149, 1, True)


def test_invalid_item_under_strict_policy_is_not_retried() -> None:
    api = FakeApi(total=5)
    bad = api.body(1, 100)
    bad["items"][3]["resource"] = "not an object"
    api.faults[1] = [lambda request: httpx.Response(200, content=orjson.dumps(bad))]
    fake_time = FakeTime()

    with pytest.raises(InvalidItemError):
        list_cvms(api, fake_time, validation_policy="strict")
    assert len(api.requests) == 1
    assert fake_time.sleeps == []


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


# --- failures, cancellation and secrecy --------------------------------------------------------


def test_a_failing_later_page_cancels_the_others_cleanly(caplog: pytest.LogCaptureFixture) -> None:
    async def forever() -> None:
        await asyncio.sleep(3600)

    api = FakeApi(
        total=1000,
        faults={4: [status(404, {"detail": "gone"})]},
        gates={2: forever, 3: forever, 5: forever},
    )

    async def main() -> set[asyncio.Task[Any]]:
        async with make_client(api, concurrency=4) as client:
            with pytest.raises(NotFoundError):
                await asyncio.wait_for(collect_cvms(client), timeout=5)
            return other_tasks()  # before the client's close could clean anything up

    with caplog.at_level(logging.DEBUG):
        leftover = run(main)
    assert leftover == set()
    assert sorted(api.cancelled) == [2, 3, 5]
    assert sorted(api.pages_requested()) == [1, 2, 3, 4, 5]
    assert not [r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.WARNING]


def test_closing_the_client_stops_an_abandoned_listing() -> None:
    async def forever() -> None:
        await asyncio.sleep(3600)

    api = FakeApi(total=1000, gates={3: forever, 4: forever})

    async def main() -> set[asyncio.Task[Any]]:
        async with asyncio.timeout(10), make_client(api, concurrency=3) as client:
            pages = client.cvm_pages()
            assert (await anext(pages)).number == 1
            assert (await anext(pages)).number == 2
            # leave the iterator suspended, with pages 3 and 4 in flight
        return other_tasks()

    assert run(main) == set()
    assert sorted(api.cancelled) == [3, 4]


def test_the_key_never_reaches_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    echo = {
        "error_code": "ERR-01-001",
        "message": f"invalid key {KEY}",
        "details": [{"field": "X-API-Key", "value": KEY, "message": "revoked"}],
    }
    api = FakeApi(
        total=300,
        faults={
            2: [
                status(503, {"detail": f"upstream rejected {KEY}"}),
                raises(httpx.ReadError, f"connection reset while sending {KEY}"),
                status(200, None),  # empty body: invalid envelope, retried
            ],
            3: [status(401, echo, {"X-Request-ID": f"req-{KEY}"})],
        },
    )

    async def main() -> None:
        async with make_client(api, concurrency=1) as client:
            logging.getLogger("httpx").info("echo %s", KEY)  # as if httpx itself logged it
            await collect_cvms(client)

    with caplog.at_level(logging.DEBUG), pytest.raises(AuthError) as caught:
        run(main)
    err = caught.value
    for text in (str(err), repr(err), err.url, err.request_id or ""):
        assert KEY not in text
    assert "[redacted]" in str(err)
    assert len(caplog.records) > 3
    for record in caplog.records:
        assert KEY not in record.getMessage()
    assert KEY not in caplog.text
    messages = [r.getMessage() for r in caplog.records]
    assert any("HTTP 503" in m for m in messages)
    assert any("ReadError: connection reset while sending [redacted]" in m for m in messages)
    assert "echo [redacted]" in messages
    # after the client is closed, its filter no longer touches httpx's logger
    assert not logging.getLogger("httpx").filters


# --- over a real socket ------------------------------------------------------------------------

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class LoopbackApi:
    """A raw ASGI app serving CVM pages, with a dropped body and a key-echoing 503 on the way."""

    api: FakeApi
    served: dict[int, int] = field(default_factory=dict)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        headers = dict(scope["headers"])
        params = httpx.QueryParams(scope["query_string"].decode())
        page, size = int(params["page"]), int(params["page_size"])
        self.served[page] = self.served.get(page, 0) + 1
        if headers.get(b"x-api-key") != KEY.encode():
            await self._answer(send, 401, b'{"detail": "Invalid API key"}')
        elif page == 2 and self.served[page] == 1:
            # announce a long body, send part of it and drop the connection
            start = {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"5000")],
            }
            await send(start)
            await send({"type": "http.response.body", "body": b'{"items": [', "more_body": True})
            raise ConnectionAbortedError("dropping the connection mid-body")
        elif page == 3 and self.served[page] == 1:
            echo = f'{{"detail": "bad key {KEY}"}}'.encode()
            await self._answer(send, 503, echo, [(b"x-echo", KEY.encode())])
        else:
            await self._answer(send, 200, orjson.dumps(self.api.body(page, size)))

    @staticmethod
    async def _answer(
        send: Send, code: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        headers = [(b"content-type", b"application/json"), *(extra or [])]
        await send({"type": "http.response.start", "status": code, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def test_over_a_loopback_socket(caplog: pytest.LogCaptureFixture) -> None:
    uvicorn = pytest.importorskip("uvicorn")
    import socket

    app = LoopbackApi(FakeApi(total=250))
    fake_time = FakeTime()

    async def main() -> list[Page[Any]]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            app, lifespan="off", log_config=None, access_log=False, ws="none", http="h11"
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            while not server.started:
                await asyncio.sleep(0.01)
            client = PhalaClient(
                base_url=f"http://127.0.0.1:{port}/api/v1",
                api_key=KEY,
                version=VERSION,
                concurrency=2,
                timeout=10,
                sleep=fake_time.sleep,
                clock=fake_time.monotonic,
                now=fake_time.now,
                jitter=lambda: 0.5,
            )
            async with client:
                pages = await collect_cvms(client)
            bad_key_client = PhalaClient(
                base_url=f"http://127.0.0.1:{port}/api/v1", api_key="phak_wrong", version=VERSION
            )
            async with bad_key_client:
                with pytest.raises(AuthError, match="Invalid API key"):
                    await collect_cvms(bad_key_client)
            return pages
        finally:
            server.should_exit = True
            await serving
            sock.close()

    with caplog.at_level(logging.DEBUG):
        pages = run(main)
    assert sorted(p.number for p in pages) == [1, 2, 3]
    assert sum(len(p.items) for p in pages) == 250
    assert PagesSeen.of(pages).complete
    assert app.served == {1: 2, 2: 2, 3: 2}  # page 1 twice: once per client
    assert len(fake_time.sleeps) == 2  # one retry for the dropped body, one for the 503
    messages = [r.getMessage() for r in caplog.records]
    assert any("RemoteProtocolError" in m for m in messages)
    assert any("HTTP 503" in m for m in messages)
    # httpcore logged the 503's headers at DEBUG, with the echoed key redacted
    assert any(
        r.name.startswith("httpcore") and "[redacted]" in r.getMessage() for r in caplog.records
    )
    assert KEY not in caplog.text
