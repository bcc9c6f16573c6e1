"""Page drift: CVMs created or deleted while a run pages through (offset paging shifts items).

The simulator's ``page_drift`` fault inserts items at the top of the listing and deletes items
from the pages already served, right after serving a page: later pages then show an item twice or
skip one. A run must never store an item twice, never delete a CVM that exists, and either read the
listing again until it is consistent or record it as incomplete (``listing_complete`` false, no
deletions inferred). Whatever it missed, the next clean run records.
"""

from __future__ import annotations

import pytest

from sync.listing import MAX_PASSES
from tests.reliability.conftest import Harness
from tests.reliability.oracle import (
    assert_consistent,
    assert_fleet_stored,
    observe,
    recorded_events,
    runs,
    stored_entities,
)


def live_cvms(h: Harness) -> set[str]:
    return {k for k, e in stored_entities(h.engine)["cvm"].items() if not e.deleted}


def truth_since(h: Harness, step: int) -> dict[str, set[str]]:
    """The CVM ids the simulator created and deleted from evolve step ``step`` on."""
    out: dict[str, set[str]] = {"created": set(), "deleted": set(), "restored": set()}
    for changes in h.fleet.changes(step):
        for ch in changes:
            if ch["entity_type"] == "cvm" and ch["change_type"] in out:
                out[ch["change_type"]].add(ch["entity_id"])
    return out


@pytest.mark.parametrize("endpoint", ["cvms", "apps"])
def test_items_inserted_while_paging_are_read_again_until_consistent(
    harness: Harness, endpoint: str
) -> None:
    h = harness
    h.baseline_and_step()
    h.faults.set([f"page_drift:endpoint={endpoint},page=3,insert=4"])
    before = observe(h.fleet)
    summary = h.run()
    (rule,) = h.faults.describe()["faults"]
    assert rule["fired"] == 1
    # The second pass saw a stable listing: the run is exactly the fleet after the drift. (New
    # apps come with a new CVM each, created after the CVM listing: the next run sees those.)
    after = observe(h.fleet)
    seen = after if endpoint == "cvms" else {**before, "app": after["app"]}
    assert len(seen["app"]) > len(before["app"]) or len(seen["cvm"]) > len(before["cvm"])
    h.expect(summary, obs=seen)
    assert summary.listing_complete
    assert summary.apps_listing_complete
    ledger = runs(h.engine)[-1]
    assert ledger["api_total"] == ledger["seen"] == len(seen["cvm"])
    assert ledger["entity_counts"]["app"]["seen"] == len(seen["app"]) == h.fleet.app_count
    h.clean_run()
    assert_fleet_stored(h.engine, h.fleet)


def test_cvms_deleted_while_paging_are_never_falsely_deleted(harness: Harness) -> None:
    h = harness
    h.baseline_and_step()
    step = h.fleet.step_count
    before_run = live_cvms(h)
    before = observe(h.fleet)
    h.faults.set(["page_drift:endpoint=cvms,page=4,delete=3,insert=1"])
    summary = h.run()
    gone = truth_since(h, step)["deleted"]
    assert len(gone) == 3
    stored = stored_entities(h.engine)["cvm"]
    live = live_cvms(h)
    fleet = set(h.fleet.vm_uuids())
    assert summary.listing_complete
    assert [k for k in fleet if k in stored and stored[k].deleted] == []  # none falsely deleted
    assert fleet <= live  # the re-read saw the CVM inserted during the listing
    assert live - fleet <= gone  # a CVM still stored as live was really deleted during the run
    # The run recorded exactly the step's changes, as seen by its passes (a CVM deleted during
    # the run may count as seen when no pass was consistent).
    after = observe(h.fleet)
    seen = {**after, "cvm": {**after["cvm"], **{k: before["cvm"][k] for k in live - fleet}}}
    h.expect(summary, obs=seen)
    # Nothing observed is lost: the next clean run records exactly what is left to record.
    h.clean_run()
    assert_fleet_stored(h.engine, h.fleet)
    all_deleted = {e[1] for e in recorded_events(h.engine) if e[0] == "cvm" and e[2] == "deleted"}
    assert gone <= all_deleted
    assert before_run - fleet <= all_deleted


def test_a_consistent_reread_is_the_truth_of_its_run(harness: Harness) -> None:
    h = harness
    h.baseline()
    h.faults.set(["page_drift:endpoint=cvms,page=4,delete=3"])
    summary = h.run()
    assert summary.listing_complete
    ledger = runs(h.engine)[-1]
    assert ledger["seen"] == ledger["api_total"] == h.fleet.cvm_count
    assert_fleet_stored(h.engine, h.fleet)


def test_a_listing_that_never_settles_is_incomplete_and_deletes_nothing(
    harness: Harness,
) -> None:
    h = harness
    h.baseline()
    before_run = live_cvms(h)
    step = h.fleet.step_count
    # Every pass drifts: the MAX_PASSES reads of the listing never agree.
    h.faults.set(["page_drift:endpoint=cvms,page=2,insert=2,delete=3,times=10"])
    summary = h.run()
    fired = h.faults.describe()["faults"][0]["fired"]
    assert fired == MAX_PASSES
    truth = truth_since(h, step)
    assert len(truth["deleted"] & before_run) >= 6
    assert summary.listing_complete is False
    assert runs(h.engine)[-1]["listing_complete"] is False
    assert summary.counts["cvm"]["deleted"] == 0
    assert before_run <= live_cvms(h)  # no deletion inferred from an incomplete listing
    events = recorded_events(h.engine, [summary.run_id])
    cvm_events = [e for e in events if e[0] == "cvm"]
    assert {e[2] for e in cvm_events} <= {"created"}
    assert {e[1] for e in cvm_events} <= truth["created"]  # only CVMs that were really created
    assert_consistent(h.engine)
    h.faults.set([])
    h.run()
    assert_fleet_stored(h.engine, h.fleet)
    assert_consistent(h.engine)
    recorded = recorded_events(h.engine)
    deleted = {e[1] for e in recorded if e[0] == "cvm" and e[2] == "deleted"}
    created = {e[1] for e in recorded if e[0] == "cvm" and e[2] == "created"}
    assert deleted == before_run - set(h.fleet.vm_uuids()) | (created - set(h.fleet.vm_uuids()))
    assert set(h.fleet.vm_uuids()) - before_run <= created
