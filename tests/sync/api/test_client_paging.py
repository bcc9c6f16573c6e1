"""PhalaClient's paging against httpx.MockTransport: pages to the end, concurrency, pages as they
arrive, a fleet changing under the listing, quarantined and invalid items.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing
from typing import Any

import httpx
import orjson
import pytest

from sync.api.pages import Page
from sync.endpoints import APPS, CVMS
from sync.errors import (
    InvalidItemError,
)
from tests.sync.api.fake_api import (
    VERSION,
    FakeApi,
    FakeTime,
    list_cvms,
    make_client,
    run,
)
from tests.sync.api.listings import PagesSeen

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
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_app_pages_use_the_apps_envelope() -> None:
    api = FakeApi(total=45, endpoint="apps")

    async def main() -> list[Page[Any]]:
        async with make_client(api, page_size=20) as client:
            return [page async for page in client.pages(APPS)]

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
            async for _ in client.pages(CVMS):
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
            async for page in client.pages(CVMS):
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
    # The run's listing is the one judge of it, and says why; the client only pages.
    assert seen.listed is not None
    assert seen.listed.incompleteness() == "the API total changed while paging (240..301)"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_unfinished_listing_is_not_complete(caplog: pytest.LogCaptureFixture) -> None:
    api = FakeApi(total=250)

    async def main() -> list[Page[Any]]:
        got = []
        async with (
            make_client(api, concurrency=1) as client,
            aclosing(client.pages(CVMS)) as pages,
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
