"""The change tracker, property-based: random fleets, random evolve steps, random version switches.

For every sequence, after every run:

- the run's change events are exactly the oracle's (:class:`~tests.reliability.oracle.Model`,
  which knows what each version carries: a field 2025-10-28 does not carry keeps its last known
  value), and every table equals the oracle's state;
- replaying all change events from the first state yields the stored state exactly (with every
  ``old`` value checked against the replayed one): ``assert_consistent``;
- where the previous run used a version that carries every field, the CVM events equal the
  simulator's ground truth (``Fleet.changes()``) exactly, fields with old and new values; the
  workspace events too while every run so far used such a version.

Hypothesis runs derandomized (reproducible: the same examples every time), 12 examples per
database, fleets of 20 to 60 CVMs.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from models import Base
from simulator.evolve import KINDS
from tests.reliability.conftest import Harness, new_harness
from tests.reliability.oracle import (
    ALL_VERSIONS,
    CURRENT_VERSIONS,
    LEGACY,
    REFERENCES,
    TABLES,
    assert_fleet_stored,
    canon_changes,
    recorded_events,
    table,
)

Truth = tuple[str, str, str, dict[str, Any] | None]


def reset(engine: Engine) -> None:
    """Empty every table (examples share the test's migrated database)."""
    with engine.begin() as conn:
        for t in reversed(Base.metadata.sorted_tables):
            conn.execute(t.delete())


def _order(t: Truth) -> tuple[str, str, str, bytes]:
    return (t[0], t[1], t[2], orjson.dumps(t[3], option=orjson.OPT_SORT_KEYS))


def truth_of(step: list[dict[str, Any]], entity_types: tuple[str, ...]) -> list[Truth]:
    """A ground-truth step as (type, id, change type, fields of an update) tuples."""
    out: list[Truth] = [
        (
            ch["entity_type"],
            ch["entity_id"],
            ch["change_type"],
            canon_changes(ch["entity_type"], ch["fields"]) if "fields" in ch else None,
        )
        for ch in step
        if ch["entity_type"] in entity_types
    ]
    return sorted(out, key=_order)


def recorded_truth(h: Harness, run_id: int, entity_types: tuple[str, ...]) -> list[Truth]:
    """The run's events in the ground truth's terms (fields only for updates)."""
    out: list[Truth] = [
        (t, eid, change, changes if change == "updated" else None)
        for t, eid, change, changes in recorded_events(h.engine, [run_id])
        if t in entity_types
    ]
    return sorted(out, key=_order)


Step = tuple[str, dict[str, int], int]
steps_strategy = st.lists(
    st.tuples(
        st.sampled_from(ALL_VERSIONS),
        st.dictionaries(st.sampled_from(list(KINDS)), st.integers(0, 4), max_size=6),
        st.integers(0, 2**16),
    ),
    min_size=1,
    max_size=4,
)


def run_sequence(h: Harness, first: str, steps: list[Step]) -> int:
    """Sync, then evolve and sync for each step, checking each run; returns the truth checks."""
    h.baseline(api_version=first)
    checked = 0
    previous, all_current = first, first in CURRENT_VERSIONS
    for version, counts, seed in steps:
        h.fleet.evolve(counts, seed=seed)
        summary = h.run(api_version=version)
        h.expect(summary, version=version)
        all_current = all_current and version in CURRENT_VERSIONS
        if version in CURRENT_VERSIONS and previous in CURRENT_VERSIONS:
            types = ("cvm", "workspace") if all_current else ("cvm",)
            truth = truth_of(h.fleet.changes(h.fleet.step_count - 1)[0], types)
            assert recorded_truth(h, summary.run_id, types) == truth
            checked += 1
        previous = version
    assert_fleet_stored(h.engine, h.fleet, previous)
    return checked


@pytest.mark.slow
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    size=st.integers(20, 60),
    seed=st.integers(0, 10_000),
    first=st.sampled_from(ALL_VERSIONS),
    page_size=st.sampled_from([7, 13, 25]),
    steps=steps_strategy,
)
def test_replaying_the_events_gives_the_stored_state(
    engine: Engine, size: int, seed: int, first: str, page_size: int, steps: list[Step]
) -> None:
    reset(engine)
    h = new_harness(engine, size=size, seed=seed, page_size=page_size)
    checked = run_sequence(h, first, steps)
    versions = [first, *(v for v, _, _ in steps)]
    event(f"runs: {len(versions)}, ground-truth checks: {checked}")
    event("a switch to or from 2025-10-28" if LEGACY in versions else "no legacy run")


#: A longer deterministic sequence: default mixes (restores included), the three versions that
#: carry every field in turn, small pages, and faults the retries ride out on the way.
GROUND_TRUTH_STEPS: list[Step] = [
    ("2026-05-22", {"create": 6, "delete": 6, "resize": 3, "move": 3}, 1),
    ("2026-06-23", {"restore": 3, "rename_workspace": 2, "restart": 4, "rename": 3}, 2),
    ("2026-01-21", {"delete": 8, "move": 5, "create": 2, "restore": 1}, 3),
    ("2026-05-22", {"restore": 4, "resize": 4, "rename_workspace": 1, "restart": 2}, 4),
    ("2026-06-23", {"create": 3, "delete": 3, "move": 2, "rename": 2, "restore": 2}, 5),
]


@pytest.mark.slow
@pytest.mark.parametrize("fault_seed", [1, 2])
def test_events_equal_the_ground_truth_under_faults(engine: Engine, fault_seed: int) -> None:
    h = new_harness(engine, size=150, seed=fault_seed, page_size=13, max_attempts=8)
    h.faults.set(
        ["429:rate=0.15,retry_after=0", "drop:rate=0.05", "truncated:rate=0.05"], seed=fault_seed
    )
    assert run_sequence(h, "2026-01-21", GROUND_TRUTH_STEPS) == len(GROUND_TRUTH_STEPS)
    assert sum(r["fired"] for r in h.faults.describe()["faults"]) >= 10
    # The whole history, step by step, against Fleet.changes() read back in one go.
    everything = [ch for step in h.fleet.changes() for ch in step]
    types = ("cvm", "workspace")
    kinds = {c[2] for c in truth_of(everything, types)}
    assert kinds == {"created", "updated", "deleted", "restored"}


def dangling_references(engine: Engine) -> list[tuple[str, str, str]]:
    """(reference type, id, CVM) of each live CVM referring to a deleted node, workspace or
    creator."""
    cvms = table("cvms")
    out = []
    with engine.connect() as conn:
        for ref, column in REFERENCES.items():
            name, _, key = TABLES[ref]
            t = table(name)
            rows = conn.execute(
                select(t.c[key], cvms.c.vm_uuid)
                .join(cvms, cvms.c[column] == t.c[key])
                .where(cvms.c.deleted_at.is_(None), t.c.deleted_at.is_not(None))
            )
            out += [(ref, str(k), vm) for k, vm in rows]
    return out


def test_a_reference_a_live_cvm_refers_to_again_is_restored(engine: Engine) -> None:
    h = new_harness(engine, size=20, seed=161)
    h.baseline()
    orphaned = h.fleet.evolve({"delete": 10}, seed=1)
    h.expect(h.run())
    gone = {c["entity_id"] for c in orphaned if c["entity_type"] == "workspace"}
    assert len(gone) == 1
    assert dangling_references(engine) == []
    back = h.fleet.evolve({"restore": 10}, seed=2)
    assert {c["entity_id"] for c in back if c["change_type"] == "restored"} >= gone
    h.run(api_version=LEGACY)
    assert dangling_references(engine) == []
