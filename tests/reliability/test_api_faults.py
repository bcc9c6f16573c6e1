"""API faults: a run either completes with exactly the fleet, or fails and changes nothing.

Each scenario starts from a synced fleet, changes the fleet by one evolve step (so that a run that
applied anything would show), then runs under the fault:

- faults the retries ride out (429 storms with and without ``Retry-After``, 5xx bursts, a dropped
  connection, truncated and malformed JSON, a timeout): the run succeeds, records exactly the
  step's changes and stores exactly the fleet; every fault rule is checked to have fired;
- faults that outlast the retry budget: the run fails with the typed error naming the request, every
  inventory, history and event table is exactly as before, the ledger gains one failed row with
  the reason, and the next clean run records exactly the changes the failed one could not.
"""

from __future__ import annotations

import re
import time
from typing import NamedTuple

import pytest

from simulator import SimulatorServer
from sync.errors import (
    ApiTransportError,
    InvalidEnvelopeError,
    PhalaSyncError,
    RateLimitedError,
    RetriableApiError,
)
from sync.run import run_sync
from tests.reliability.conftest import EVOLVE, Before, Harness
from tests.reliability.oracle import assert_fleet_stored

#: Fault rules a run must ride out, and how often each must fire (None: at least once).
RIDDEN_OUT: dict[str, list[tuple[str, int | None]]] = {
    "429 storm with Retry-After": [
        ("429:endpoint=cvms,page=1,times=1", 1),  # the default Retry-After: 1 s, honoured
        ("429:endpoint=cvms,page=2,times=3,retry_after=0", 3),
        ("429:endpoint=apps,page=1,times=2,retry_after=date:0", 2),
        ("429:endpoint=cvms,page=3-10,rate=0.4,retry_after=0", None),
    ],
    "429 storm without Retry-After": [
        ("429:endpoint=cvms,page=1,times=3,retry_after=none", 3),
        ("429:page=2-10,rate=0.35,retry_after=none", None),
    ],
    "5xx bursts": [
        ("500:endpoint=cvms,page=2,times=3", 3),
        ("502:endpoint=cvms,page=5,times=2", 2),
        ("503:endpoint=apps,page=1,times=3,retry_after=0", 3),
        ("504:endpoint=cvms,page=7,times=1", 1),
        ("503:page=3-10,rate=0.3", None),
    ],
    "dropped connections, truncated and malformed JSON": [
        ("drop:endpoint=cvms,page=2,times=3", 3),
        ("drop:endpoint=apps,page=2,bytes=10,times=1", 1),
        ("truncated:endpoint=cvms,page=4,times=2", 2),
        ("malformed:endpoint=apps,page=3,times=2", 2),
        ("truncated:endpoint=cvms,page=6,bytes=0,times=1", 1),
    ],
}


@pytest.mark.parametrize("rules", RIDDEN_OUT.values(), ids=RIDDEN_OUT.keys())
def test_faults_the_retries_ride_out(harness: Harness, rules: list[tuple[str, int | None]]) -> None:
    harness.baseline_and_step()
    harness.faults.set([spec for spec, _ in rules], seed=5)
    started = time.monotonic()
    summary = harness.run(max_attempts=8)
    took = time.monotonic() - started
    if any(spec == "429:endpoint=cvms,page=1,times=1" for spec, _ in rules):
        assert took >= 0.95  # page 1 waited out the 1 s Retry-After before anything else
    events = harness.expect(summary)
    assert len(events) >= 20  # the step's changes are there to be lost
    assert summary.listing_complete
    assert summary.apps_listing_complete
    assert_fleet_stored(harness.engine, harness.fleet)
    fired = [r["fired"] for r in harness.faults.describe()["faults"]]
    for (spec, times), n in zip(rules, fired, strict=True):
        assert n == times if times is not None else n >= 3, f"{spec} fired {n} times"


class Outlasting(NamedTuple):
    """A fault that outlasts the retries, the error it must end in, the text of the reason, and
    how many attempts the retry policy makes (4 at most; 3 for a bad body; 1 when the server asks
    to wait beyond the budget)."""

    rule: str
    error: type[PhalaSyncError]
    reason: str
    attempts: int


OUTLASTING = {
    "429 storm, Retry-After 0": Outlasting(
        "429:endpoint=cvms,page=4,retry_after=0", RateLimitedError, r"HTTP 429 .*page=4", 4
    ),
    "429 storm, no Retry-After": Outlasting(
        "429:endpoint=apps,page=2,retry_after=none", RateLimitedError, r"HTTP 429 .*/apps", 4
    ),
    "429, Retry-After beyond the budget": Outlasting(
        "429:endpoint=cvms,page=3,retry_after=3600", RateLimitedError, r"HTTP 429 .*page=3", 1
    ),
    "500 burst": Outlasting("500:endpoint=cvms,page=6", RetriableApiError, r"HTTP 500 .*page=6", 4),
    "502 burst on apps": Outlasting(
        "502:endpoint=apps,page=1", RetriableApiError, r"HTTP 502 .*/apps", 4
    ),
    "503 burst, Retry-After 0": Outlasting(
        "503:endpoint=cvms,page=9,retry_after=0", RetriableApiError, r"HTTP 503 .*page=9", 4
    ),
    "504 burst": Outlasting("504:endpoint=apps,page=4", RetriableApiError, r"HTTP 504 .*/apps", 4),
    "connection dropped mid-body": Outlasting(
        "drop:endpoint=cvms,page=5", ApiTransportError, r"page=5.*RemoteProtocolError", 4
    ),
    "truncated JSON": Outlasting(
        "truncated:endpoint=apps,page=2", InvalidEnvelopeError, r"/apps page 2.*not JSON", 3
    ),
    "malformed JSON": Outlasting(
        "malformed:endpoint=cvms,page=10", InvalidEnvelopeError, r"page 10.*not JSON", 3
    ),
}


@pytest.mark.parametrize("case", OUTLASTING.values(), ids=OUTLASTING.keys())
def test_faults_that_outlast_the_retries_change_nothing(harness: Harness, case: Outlasting) -> None:
    harness.baseline_and_step()
    before = Before.of(harness.engine)
    harness.faults.set([case.rule])
    exc = harness.fail(case.error)
    assert re.search(case.reason, str(exc)), str(exc)
    failed = before.assert_only_a_failed_run_added(harness.engine)
    assert failed["error"].startswith(f"{type(exc).__name__}: ")
    assert re.search(case.reason, failed["error"]), failed["error"]
    (rule,) = harness.faults.describe()["faults"]
    assert rule["fired"] == case.attempts
    # Nothing observed is lost: the next clean run records the whole step.
    assert len(harness.clean_run()) >= 20
    assert_fleet_stored(harness.engine, harness.fleet)


@pytest.mark.slow
@pytest.mark.parametrize("times", [1, None], ids=["once", "always"])
def test_timeouts(served: tuple[Harness, SimulatorServer], times: int | None) -> None:
    h, server = served
    loopback = {"base_url": server.base_url, "timeout": 0.75, "max_attempts": 3}

    def run(**overrides: object) -> object:
        settings = h.settings(**loopback, **overrides)
        return run_sync(h.engine, settings)

    baseline = run()
    h.expect(baseline)  # type: ignore[arg-type]
    h.fleet.evolve(EVOLVE, seed=3)
    limit = "" if times is None else f",times={times}"
    h.faults.set([f"timeout:endpoint=cvms,page=3,ms=2500{limit}"])
    if times is None:
        before = Before.of(h.engine)
        with pytest.raises(ApiTransportError, match=r"page=3.*Timeout") as info:
            run()
        failed = before.assert_only_a_failed_run_added(h.engine)
        assert "Timeout" in failed["error"]
        assert "page=3" in str(info.value)
        h.faults.set([])
    summary = run()
    assert len(h.expect(summary)) >= 20  # type: ignore[arg-type]
    assert_fleet_stored(h.engine, h.fleet)
