"""The listing sent ahead (sync.api.prefetch) against the simulator over loopback.

A client sending through :meth:`Prefetch.transport` must get exactly the pages it gets without
one; a request sent ahead is answered from the prefetch once and never sent again; what the
prefetch did not send, or got wrong, goes to the network, retried as usual.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from simulator import SimulatorServer
from simulator.admin import AdminClient
from sync.api.client import PhalaClient
from sync.api.prefetch import AHEAD, Answer, Prefetch
from sync.api.retry import RetryPolicy
from sync.endpoints import APPS, CVMS
from sync.errors import ApiTransportError
from tests.flow_fixtures import ADMIN_TOKEN, API_KEY, FLEET

PAGE_SIZE = 10
PAGES = {CVMS.name: -(-FLEET // PAGE_SIZE)}  # the CVM pages; the apps' come from the answers
#: ``slow_answer`` for a prefetch that goes on after the claim (as against a distant API), and
#: for one that stops there (a near API), whatever the loopback's answers take on a loaded machine.
DISTANT, NEAR = 0.0, 60.0
#: The requests a prefetch sends before any answer: page 1 of each endpoint, at once.
FIRSTS = 2


class Counted(httpx.AsyncBaseTransport):
    """The network, counting the requests that reach it."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.urls: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(str(request.url))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _prefetch(base_url: str, **kw: Any) -> Prefetch:
    options: dict[str, Any] = {
        "base_url": base_url,
        "api_key": API_KEY,
        "version": "2026-01-21",
        "page_size": PAGE_SIZE,
        "concurrency": 4,
        "timeout": 10.0,
        "endpoints": [CVMS, APPS],
        **kw,
    }
    return Prefetch(**options)


def _client(base_url: str, transport: httpx.AsyncBaseTransport | None, **kw: Any) -> PhalaClient:
    return PhalaClient(
        base_url=base_url,
        api_key=API_KEY,
        version="2026-01-21",
        page_size=PAGE_SIZE,
        transport=transport,
        sleep=lambda _s: asyncio.sleep(0),
        **kw,
    )


def _listing(base_url: str, transport: httpx.AsyncBaseTransport | None, **kw: Any) -> list[str]:
    """Every item id of both endpoints, in page order, as a client sees them."""

    async def read() -> list[str]:
        ids: list[tuple[str, int, str]] = []
        async with _client(base_url, transport, **kw) as client:
            for spec in (CVMS, APPS):
                async for page in client.pages(spec):
                    ids += [(spec.name, page.number, repr(item)) for item in page.items]
        return [f"{name}:{number}:{item}" for name, number, item in sorted(ids)]

    return asyncio.run(read())


def _until(done: Callable[[], object], timeout: float = 30.0) -> None:
    """Wait until ``done()`` holds: the prefetch's thread moves on its own."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def _finished(prefetch: Prefetch) -> None:
    """Wait until the prefetch has sent all it will (its thread ends then)."""
    prefetch._thread.join(timeout=60)
    assert not prefetch.running


@pytest.fixture
def admin(simulator: SimulatorServer) -> Iterator[AdminClient]:
    with AdminClient(simulator.base_url, ADMIN_TOKEN) as client:
        yield client
        client.clear_faults()


def test_pages_sent_ahead_are_the_listing_and_nothing_is_sent_twice(
    simulator: SimulatorServer,
) -> None:
    expected = _listing(simulator.base_url, None)
    ahead = _prefetch(simulator.base_url)
    _finished(ahead)
    network = Counted()
    assert _listing(simulator.base_url, ahead.transport(network)) == expected
    assert network.urls == []  # every page came from the prefetch
    assert ahead.taken == ahead.sent > PAGES[CVMS.name]
    assert not ahead.running


def test_after_the_claim_it_goes_on_and_the_run_waits_for_what_it_has_yet_to_send(
    simulator: SimulatorServer, admin: AdminClient
) -> None:
    expected = _listing(simulator.base_url, None)
    admin.set_faults(["latency:ms=150"])
    ahead = _prefetch(simulator.base_url, slow_answer=DISTANT)
    _until(lambda: ahead.sent > 0)
    network = Counted()
    transport = ahead.transport(network)  # claimed while page 1 of the CVMs is in flight
    assert _listing(simulator.base_url, transport) == expected
    assert network.urls == []  # the run waited for each page instead of sending it
    assert ahead.taken == ahead.sent > PAGES[CVMS.name]


def test_page_1_of_every_endpoint_goes_out_at_once(
    simulator: SimulatorServer, admin: AdminClient
) -> None:
    """The apps' page 1 does not wait for the CVMs' pages: a distant API's round trip saved."""
    expected = _listing(simulator.base_url, None)
    admin.set_faults(["latency:ms=3000,endpoint=cvms,page=1"])
    ahead = _prefetch(simulator.base_url, slow_answer=DISTANT)
    apps_1 = f"{simulator.base_url}{APPS.path}?page=1&page_size={PAGE_SIZE}"
    _until(lambda: ahead.received)  # the apps' page 1, while the CVMs' waits its 3 s
    assert ahead.sent == FIRSTS
    answer = ahead._answers[apps_1].result(timeout=0)  # answered already
    assert isinstance(answer, Answer)
    assert ahead.received == len(answer.data)
    network = Counted()
    assert _listing(simulator.base_url, ahead.transport(network)) == expected
    assert network.urls == []


def test_a_page_it_will_not_send_goes_to_the_network_and_it_never_sends_it(
    simulator: SimulatorServer, admin: AdminClient
) -> None:
    admin.set_faults(["latency:ms=300,endpoint=cvms,page=1"])
    ahead = _prefetch(simulator.base_url)
    beyond = f"{simulator.base_url}{CVMS.path}?page={PAGES[CVMS.name] + 1}&page_size={PAGE_SIZE}"
    assert ahead.take(beyond) is None  # not a page the listing announced
    last = f"{simulator.base_url}{CVMS.path}?page={PAGES[CVMS.name]}&page_size={PAGE_SIZE}"
    assert ahead.take(last) is None  # not planned yet: page 1 has not answered
    _finished(ahead)
    assert ahead.take(last) is None  # left to the run's client, so never sent here
    assert ahead.sent == ahead.taken + len(ahead._answers)


def test_a_failed_answer_sent_ahead_is_retried_over_the_network(
    simulator: SimulatorServer, admin: AdminClient
) -> None:
    expected = _listing(simulator.base_url, None)
    admin.set_faults(["503:endpoint=cvms,page=1,times=1"])
    ahead = _prefetch(simulator.base_url)
    _finished(ahead)
    assert ahead.sent == FIRSTS  # a failed answer stops it
    network = Counted()
    assert _listing(simulator.base_url, ahead.transport(network)) == expected
    cvm_page_1 = [url for url in network.urls if "/cvms/" in url and "page=1&" in url]
    assert len(cvm_page_1) == 1  # the retry
    assert ahead.taken == FIRSTS  # the apps' page 1 was answered before the failure stopped it


def test_a_refused_connection_reaches_the_client_as_its_own() -> None:
    with SimulatorServer(api_key=API_KEY, cvms=1) as gone:
        url = gone.base_url
    ahead = _prefetch(url)
    _finished(ahead)
    with pytest.raises(ApiTransportError, match="ConnectError"):
        _listing(url, ahead.transport(Counted()), retry=RetryPolicy(max_attempts=1))
    assert ahead.taken == 1


def test_it_waits_while_it_holds_max_bytes_and_goes_on_as_the_run_takes(
    simulator: SimulatorServer,
) -> None:
    expected = _listing(simulator.base_url, None)
    ahead = _prefetch(simulator.base_url, max_bytes=1, slow_answer=DISTANT)
    _until(lambda: ahead.received)
    time.sleep(0.5)  # room to send more, if it wrongly would
    assert (ahead.sent, ahead.running) == (FIRSTS, True)
    network = Counted()
    assert _listing(simulator.base_url, ahead.transport(network)) == expected
    assert network.urls == []
    assert ahead.taken == ahead.sent > PAGES[CVMS.name]


def test_after_the_claim_it_keeps_only_a_few_pages_ahead_of_the_run(
    simulator: SimulatorServer,
) -> None:
    expected = _listing(simulator.base_url, None)
    ahead = _prefetch(simulator.base_url, max_bytes=1, slow_answer=DISTANT)  # pages 1 only first
    _until(lambda: ahead.sent > 0)
    network = Counted()
    transport = ahead.transport(network)
    page_1 = f"{simulator.base_url}{CVMS.path}?page=1&page_size={PAGE_SIZE}"
    first = ahead.take(page_1)  # as the run's client would
    assert first is not None
    first.result(timeout=30)
    window = AHEAD * ahead.concurrency
    assert PAGES[CVMS.name] > 1 + window  # the fleet is larger than the window
    _until(lambda: ahead.sent >= FIRSTS + window)
    time.sleep(0.5)  # room to send more, if it wrongly would
    assert ahead.sent == FIRSTS + window
    assert _listing(simulator.base_url, transport) == expected
    assert network.urls == [page_1]  # taken once, above: the client's own request goes out
    assert ahead.taken == ahead.sent


def test_against_a_near_api_it_stops_at_the_claim_and_the_run_sends_the_rest(
    simulator: SimulatorServer,
) -> None:
    expected = _listing(simulator.base_url, None)
    ahead = _prefetch(simulator.base_url, max_bytes=1, slow_answer=NEAR)  # pages 1 only first
    _until(lambda: ahead.received)
    network = Counted()
    assert _listing(simulator.base_url, ahead.transport(network)) == expected
    assert (ahead.sent, ahead.taken) == (FIRSTS, FIRSTS)
    assert len(network.urls) == len(set(network.urls)) > PAGES[CVMS.name]


def test_it_holds_each_answer_compressed_and_gives_it_back_byte_for_byte(
    simulator: SimulatorServer,
) -> None:
    ahead = _prefetch(simulator.base_url)
    _finished(ahead)
    urls = [
        f"{simulator.base_url}{CVMS.path}?page={page}&page_size={PAGE_SIZE}"
        for page in range(1, PAGES[CVMS.name] + 1)
    ]
    headers = {"X-API-Key": API_KEY, "X-Phala-Version": "2026-01-21"}
    direct = [httpx.get(url, headers=headers, timeout=10).content for url in urls]
    held = [ahead.take(url) for url in urls]
    answers = [future.result(timeout=10) for future in held if future is not None]
    assert len(answers) == len(urls)
    assert [a.body() for a in answers if isinstance(a, Answer)] == direct
    assert all(a.compressed for a in answers if isinstance(a, Answer))  # nobody had taken them
    packed = sum(len(a.data) for a in answers if isinstance(a, Answer))
    assert packed < sum(map(len, direct)) / 3  # what the cap counts
    ahead.close()


def test_close_cuts_short_what_is_in_flight_and_ends_the_thread(
    simulator: SimulatorServer, admin: AdminClient
) -> None:
    admin.set_faults(["latency:ms=30000"])
    ahead = _prefetch(simulator.base_url)
    ahead.close()
    assert not ahead.running
    assert "phala-sync prefetch" not in {t.name for t in threading.enumerate()}
    assert ahead.take(f"{simulator.base_url}{CVMS.path}?page=1&page_size={PAGE_SIZE}") is None


def test_the_key_is_in_no_log_record(
    simulator: SimulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        ahead = _prefetch(simulator.base_url)
        _finished(ahead)
        _listing(simulator.base_url, ahead.transport(Counted()))
    assert caplog.records
    assert API_KEY not in caplog.text
    assert repr(API_KEY) not in repr(ahead)
