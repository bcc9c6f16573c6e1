"""(f) The project's own client pages through a 10k-CVM fleet under each fault.

Under every fault it either succeeds with exactly the fleet's CVMs, or fails with the clear,
typed error the fault demands. Served over loopback, so timeouts and dropped connections are real.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

client_module = pytest.importorskip("sync.api.client")

from simulator import Fleet, SimulatorServer  # noqa: E402
from sync.api.retry import RetryPolicy  # noqa: E402
from sync.endpoints import CVMS  # noqa: E402
from sync.errors import (  # noqa: E402
    ApiError,
    AuthError,
    InvalidEnvelopeError,
    InvalidItemError,
    PhalaSyncError,
    RetriableApiError,
    SchemaDriftError,
)
from sync.records import normalize_vm_uuid  # noqa: E402
from tests.sync.api.listings import PagesSeen  # noqa: E402

from .conftest import API_KEY  # noqa: E402

PhalaClient = client_module.PhalaClient
FLEET_SIZE = 10_000
#: Fast retries, so that the failing cases give up quickly.
RETRY = RetryPolicy(max_attempts=5, budget_seconds=20.0, base=0.01, max_delay=0.05)
CLIENT_TIMEOUT = 1.0


@dataclass
class Listing:
    keys: list[str] = field(default_factory=list)
    rejections: list[Any] = field(default_factory=list)
    raws: list[bytes] = field(default_factory=list)
    seen: PagesSeen = field(default_factory=PagesSeen)


async def _list(base_url: str, version: str, policy: str, api_key: str) -> Listing:
    out = Listing()
    async with PhalaClient(
        base_url=base_url,
        api_key=api_key,
        version=version,
        page_size=100,
        concurrency=4,
        timeout=CLIENT_TIMEOUT,
        retry=RETRY,
        validation_policy=policy,
    ) as client:
        async for page in client.pages(CVMS):
            out.keys += [normalize_vm_uuid(b.cvm.vm_uuid) for b in page.items]
            out.raws += [b.raw for b in page.items]
            out.rejections += page.rejections
            out.seen.add(page)
    return out


def list_cvms(
    server: SimulatorServer,
    version: str = "2026-01-21",
    policy: str = "quarantine",
    api_key: str = API_KEY,
) -> Listing:
    return asyncio.run(_list(server.base_url, version, policy, api_key))


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    with SimulatorServer(api_key=API_KEY, fleet=Fleet(FLEET_SIZE, seed=1)) as running:
        yield running


@pytest.fixture
def sim(server: SimulatorServer) -> Iterator[SimulatorServer]:
    server.simulator.faults.set([], seed=0)
    yield server
    server.simulator.faults.set([])


def assert_exactly_the_fleet(listing: Listing, server: SimulatorServer) -> None:
    assert len(listing.keys) == len(set(listing.keys)) == FLEET_SIZE
    assert set(listing.keys) == set(server.fleet.vm_uuids())
    assert listing.rejections == []


#: Faults a client must ride out. Each listing combines several, on different pages, to keep the
#: run short; every rule must have fired for the test to pass.
SUCCEEDS = {
    "error answers": [
        "429:page=2,times=2,retry_after=0",
        "429:page=3,times=1,retry_after=date:1",
        "429:page=4,times=2,retry_after=none",
        "500:page=5,times=1",
        "502:page=6,times=1",
        "503:page=7,times=2",
        "504:page=8,times=1",
        "503:page=9-100,rate=0.05",
    ],
    "transport and body faults": [
        "timeout:page=2,ms=2500,times=1",
        "drop:page=3,times=1",
        "drop:page=4,bytes=10,times=1",
        "truncated:page=5,times=1",
        "malformed:page=6,times=1",
        "latency:ms=30,page=7-100,rate=0.1",
    ],
    "unknown fields": ["drift:what=unknown,share=0.1"],
}


@pytest.mark.parametrize("version", ["2025-10-28", "2026-01-21"])
@pytest.mark.parametrize("faults", SUCCEEDS.values(), ids=SUCCEEDS.keys())
def test_the_client_gets_exactly_the_fleet(
    sim: SimulatorServer, faults: list[str], version: str
) -> None:
    sim.simulator.faults.set(faults, seed=3)
    listing = list_cvms(sim, version=version, policy="strict")
    assert_exactly_the_fleet(listing, sim)
    assert listing.seen.complete
    for rule in sim.simulator.faults.describe()["faults"]:
        assert rule["fired"] > 0, rule  # every fault really happened
    if "unknown" in faults[0]:
        assert any(b"x_simulator_new_field" in raw for raw in listing.raws)  # kept, not lost


@pytest.mark.parametrize("what", ["missing", "wrong_type"])
def test_drifted_items_are_quarantined(sim: SimulatorServer, what: str) -> None:
    sim.simulator.faults.set([f"drift:what={what},share=0.02"], seed=5)
    listing = list_cvms(sim, policy="quarantine")
    assert 100 <= len(listing.rejections) <= 300
    quarantined = {q.entity_id for q in listing.rejections}
    assert None not in quarantined
    assert not quarantined & set(listing.keys)
    assert set(listing.keys) | quarantined == set(sim.fleet.vm_uuids())
    assert len(listing.keys) + len(listing.rejections) == FLEET_SIZE


@pytest.mark.parametrize("what", ["missing", "wrong_type"])
def test_drift_under_the_strict_policy_fails_clearly(sim: SimulatorServer, what: str) -> None:
    sim.simulator.faults.set([f"drift:what={what},share=0.02"], seed=5)
    with pytest.raises(InvalidItemError) as caught:
        list_cvms(sim, policy="strict")
    assert "cvms" in str(caught.value)


def test_a_new_enum_value_is_quarantined_or_kept(sim: SimulatorServer) -> None:
    """``kms_type: "solana"``: a client may reject it (schema drift) or keep it; never lose it."""
    sim.simulator.faults.set(["drift:what=enum,share=0.02"], seed=5)
    listing = list_cvms(sim, policy="quarantine")
    quarantined = {q.entity_id for q in listing.rejections}
    assert set(listing.keys) | quarantined == set(sim.fleet.vm_uuids())
    assert len(listing.keys) + len(quarantined) == FLEET_SIZE


FAILS: dict[str, tuple[list[str], type[PhalaSyncError], str]] = {
    "503 on every try of page 2": (["503:page=2"], RetriableApiError, "503"),
    "429 on every try": (["429:page=3,retry_after=0"], RetriableApiError, "429"),
    "a malformed page 2, always": (["malformed:page=2"], InvalidEnvelopeError, "page"),
    "a truncated page 2, always": (["truncated:page=2"], InvalidEnvelopeError, "page"),
}


@pytest.mark.parametrize(("faults", "error", "text"), FAILS.values(), ids=FAILS.keys())
def test_the_client_fails_clearly(
    sim: SimulatorServer, faults: list[str], error: type[PhalaSyncError], text: str
) -> None:
    sim.simulator.faults.set(faults)
    with pytest.raises(error) as caught:
        list_cvms(sim)
    message = str(caught.value)
    assert text in message
    assert API_KEY not in message
    if isinstance(caught.value, ApiError):
        assert "/cvms/paginated" in caught.value.url


def test_a_wrong_key_is_an_auth_error(sim: SimulatorServer) -> None:
    with pytest.raises(AuthError) as caught:
        list_cvms(sim, api_key="phak_wrong_key")
    assert "phak_wrong_key" not in str(caught.value)


@pytest.mark.parametrize(("insert", "delete"), [(7, 0), (5, 9)])
def test_page_drift_is_reported(insert: int, delete: int, caplog: pytest.LogCaptureFixture) -> None:
    """Items move across pages while the client pages: the listing must not look complete."""
    fleet = Fleet(FLEET_SIZE, seed=2)
    before = set(fleet.vm_uuids())
    rule = f"page_drift:endpoint=cvms,page=3,insert={insert},delete={delete}"
    with SimulatorServer(api_key=API_KEY, fleet=fleet, faults=[rule]) as server:
        try:
            with caplog.at_level(logging.WARNING, logger="sync.api.client"):
                listing = list_cvms(server, policy="strict")
        except SchemaDriftError:
            return  # failing clearly is fine too
    after = set(fleet.vm_uuids())
    seen = set(listing.keys)
    assert fleet.step_count == 1  # the drift happened, and is in the ground truth
    assert seen <= before | after
    # Offset paging cannot return the new fleet exactly: the pages must show the listing is not
    # complete, and why.
    assert seen != after
    assert listing.seen.fleet_changed
    assert not listing.seen.complete
    assert listing.seen.listed is not None
    assert listing.seen.listed.incompleteness() is not None
