"""When a run uses the listing sent ahead of it (sync.prefetching), against the simulator.

The rule that matters: a prefetch older than a run of the same target that succeeded since it
began must not be applied, or the run would record the fleet going back (and the next run, forth).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from simulator import SimulatorServer
from simulator.admin import AdminClient
from sync import prefetching
from sync.api.prefetch import Prefetch
from sync.run import RunSummary, run_sync
from sync.settings import Settings
from tests.flow_fixtures import ADMIN_TOKEN, API_KEY


def _settings(engine: Engine, simulator: SimulatorServer, **kw: Any) -> Settings:
    given: dict[str, Any] = {
        "api_key": API_KEY,
        "base_url": simulator.base_url,
        "database_url": str(engine.url),
        "page_size": 10,
        "target": "acme",
        **kw,
    }
    return Settings(**given)


def _begin(engine: Engine, settings: Settings) -> Prefetch:
    ahead = prefetching.begin(engine, settings)
    assert ahead is not None
    ahead._thread.join(timeout=60)  # all it will send is in
    assert not ahead.running
    return ahead


def _network_run(engine: Engine, settings: Settings) -> RunSummary:
    """A run that does not claim the prefetch (its transport is given)."""
    return run_sync(engine, settings, transport=httpx.AsyncHTTPTransport())


def _changed(summary: RunSummary) -> int:
    counts = summary.counts["cvm"]
    return sum(counts.get(kind, 0) for kind in ("created", "updated", "deleted", "restored"))


@pytest.fixture(autouse=True)
def _nothing_waits() -> Iterator[None]:
    yield
    prefetching.discard()


def test_a_run_reads_its_pages_from_the_listing_sent_ahead(
    engine: Engine, simulator: SimulatorServer
) -> None:
    settings = _settings(engine, simulator)
    ahead = _begin(engine, settings)
    first = run_sync(engine, settings)
    assert ahead.taken == ahead.sent > 1
    assert not ahead.running
    assert _changed(first) == first.counts["cvm"]["created"] == len(simulator.fleet.cvms())
    again = _network_run(engine, settings)
    assert _changed(again) == 0  # the prefetched run stored exactly the fleet


def test_a_run_of_the_target_that_succeeded_since_makes_the_run_read_afresh(
    engine: Engine, simulator: SimulatorServer
) -> None:
    settings = _settings(engine, simulator)
    _network_run(engine, settings)
    stale = _begin(engine, settings)  # the fleet before the step below
    with AdminClient(simulator.base_url, ADMIN_TOKEN) as admin:
        admin.evolve(seed=5, total=8)
    newer = _network_run(engine, settings)  # stores the step
    assert _changed(newer) > 0
    after = run_sync(engine, settings)  # would undo the step with the stale pages
    assert _changed(after) == 0
    assert stale.taken == 0
    assert not stale.running


def test_a_run_of_another_target_does_not_spoil_it(
    engine: Engine, simulator: SimulatorServer
) -> None:
    settings = _settings(engine, simulator)
    ahead = _begin(engine, settings)
    _network_run(engine, _settings(engine, simulator, target="other"))
    run_sync(engine, settings)
    assert ahead.taken == ahead.sent


@pytest.mark.parametrize(
    "other",
    [{"page_size": 20}, {"api_version": "2025-10-28"}, {"api_key": API_KEY + "-rotated"}],
    ids=["page size", "version", "key"],
)
def test_a_run_asking_for_other_pages_reads_afresh(
    engine: Engine, simulator: SimulatorServer, other: dict[str, Any]
) -> None:
    ahead = _begin(engine, _settings(engine, simulator))
    settings = _settings(engine, simulator, **other)
    assert prefetching.claim(engine, settings, run_id=1) is None
    assert ahead.taken == 0
    assert not ahead.running


def test_it_is_claimed_once_and_discard_closes_one_never_claimed(
    engine: Engine, simulator: SimulatorServer
) -> None:
    settings = _settings(engine, simulator)
    _begin(engine, settings)
    assert prefetching.claim(engine, settings, run_id=1) is not None
    assert prefetching.claim(engine, settings, run_id=1) is None  # a retried fetch: afresh
    unclaimed = _begin(engine, settings)
    prefetching.discard()
    assert not unclaimed.running
    assert prefetching.claim(engine, settings, run_id=1) is None
