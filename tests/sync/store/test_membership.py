"""Targets whose keys see the same CVMs (issue 23): visibility per target, no phantom CVMs, an
owner that never flips, retiring a target. Every scenario runs on SQLite and PostgreSQL.

The fleet is the simulator's; "targets" are runs of ``run_sync`` with another target name
against the same fleet (two keys of one workspace) or against another fleet (disjoint keys).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from sync import clock
from sync.errors import ConfigError, RunLockedError
from sync.run import RunSummary
from sync.store.lock import run_lock
from sync.targets import retire_target, target_statuses
from tests.reliability.conftest import new_harness
from tests.reliability.oracle import (
    INVENTORY_TABLES,
    assert_consistent,
    assert_matches_model,
    dump,
    observe,
    recorded_events,
    table,
)

#: Fleet state B from state A: what the issue's table was measured with.
STEP_B = {"create": 15, "resize": 27, "delete": 30}


def live_cvms(engine: Engine) -> dict[str, str]:
    """Live CVMs and their owning target."""
    cvms = table("cvms")
    with engine.connect() as conn:
        rows = conn.execute(
            select(cvms.c.vm_uuid, cvms.c.target).where(cvms.c.deleted_at.is_(None))
        )
        return {str(k): str(t) for k, t in rows}


def tally(engine: Engine, run_id: int, entity_type: str = "cvm") -> Counter[str]:
    events = table("change_events")
    with engine.connect() as conn:
        rows = conn.execute(
            select(events.c.change_type).where(
                events.c.run_id == run_id, events.c.entity_type == entity_type
            )
        )
        return Counter(str(c) for c in rows.scalars())


def seeing(engine: Engine, target: str) -> set[str]:
    """The CVMs a target sees (its live memberships)."""
    m = table("target_memberships")
    with engine.connect() as conn:
        return set(
            conn.execute(
                select(m.c.entity_id).where(
                    m.c.target == target, m.c.entity_type == "cvm", m.c.ended_at.is_(None)
                )
            ).scalars()
        )


def ok(summary: RunSummary) -> int:
    assert summary.status == "succeeded"
    return summary.run_id


def test_a_revoked_key_leaves_no_phantom_once_retired(engine: Engine) -> None:
    """The issue's table: alpha and beta see one fleet; alpha's key is revoked after state A."""
    h = new_harness(engine, size=300)
    first = ok(h.run(target="alpha"))
    assert tally(engine, first) == {"created": 300}
    assert set(live_cvms(engine).values()) == {"alpha"}

    before = dump(engine, INVENTORY_TABLES)
    second = h.run(target="beta")
    assert second.counts["cvm"]["unchanged"] == 300
    assert dump(engine, INVENTORY_TABLES) == before, "beta seeing state A wrote something"
    assert seeing(engine, "beta") == seeing(engine, "alpha") == set(live_cvms(engine))

    truth: Counter[str] = Counter()
    changed: set[str] = set()
    gone: set[str] = set()
    for change in h.fleet.evolve(STEP_B, seed=11):
        if change["entity_type"] == "cvm":
            truth[change["change_type"]] += 1
            {"updated": changed, "deleted": gone}.get(change["change_type"], set()).add(
                change["entity_id"]
            )
    assert truth["created"] > 0
    assert len(changed) > 0
    assert len(gone) > 0
    third = ok(h.run(target="beta"))
    assert tally(engine, third) == {"created": truth["created"], "updated": len(changed)}
    owners = live_cvms(engine)
    assert {owners[k] for k in changed} == {"alpha"}, "an update moved ownership"
    # The deleted ones are still seen by alpha, whose key is revoked: they stay for now.
    assert len(owners) == 300 + truth["created"]
    assert seeing(engine, "beta") == {c.key for c in h.fleet.cvms()}

    # An unchanged resync writes no row at all, memberships included (the hot path).
    tables = (*INVENTORY_TABLES, "target_memberships")
    before = dump(engine, tables)
    assert tally(engine, ok(h.run(target="beta"))) == {}
    assert dump(engine, tables) == before

    statuses = {s["target"]: s for s in target_statuses(engine, now=clock.now())}
    assert statuses["alpha"]["cvms"] == 300
    assert statuses["beta"]["cvms"] == len(h.fleet.cvms())
    retired = retire_target(engine, h.settings(), "alpha")
    assert tally(engine, retired.run_id) == {"deleted": len(gone)}
    assert retired.counts["cvm"]["deleted"] == len(gone)
    owners = live_cvms(engine)
    assert set(owners) == {c.key for c in h.fleet.cvms()}, "the inventory is not the API's"
    assert set(owners.values()) == {"beta"}, "the survivors did not move to the target seeing them"
    statuses = {s["target"]: s for s in target_statuses(engine, now=clock.now())}
    assert statuses["alpha"]["retired"]
    assert statuses["alpha"]["cvms"] == 0
    assert not statuses["beta"]["retired"]
    assert not statuses["beta"]["stale"]
    assert_consistent(engine)
    # The survivors' history says who owned them when; every other history row is untouched.
    hist = table("cvm_history")
    with engine.connect() as conn:
        open_owners = dict(
            conn.execute(
                select(hist.c.vm_uuid, hist.c.target).where(hist.c.valid_to.is_(None))
            ).all()
        )
    assert open_owners == owners
    # Nothing is left to retire, and a new run of beta writes nothing.
    before = dump(engine, INVENTORY_TABLES)
    assert tally(engine, ok(h.run(target="beta"))) == {}
    assert dump(engine, INVENTORY_TABLES) == before


def test_alternating_targets_record_every_change_once(engine: Engine) -> None:
    """Two targets over one fleet, alternating, with changes between: each change once."""
    h = new_harness(engine, size=120)
    events = h.model.sync(observe(h.fleet), "2026-01-21")
    assert recorded_events(engine, [ok(h.run(target="alpha"))]) == events
    order = ["beta", "alpha"]
    for step in range(4):
        h.fleet.evolve({"create": 3, "delete": 4, "resize": 3, "rename": 2, "move": 2}, seed=step)
        first, second = order[step % 2], order[(step + 1) % 2]
        runs = [ok(h.run(target=first)), ok(h.run(target=second))]
        # The first run records the changes, the second the deletions its view still held up.
        expected = h.model.sync(observe(h.fleet), "2026-01-21")
        assert recorded_events(engine, runs) == expected
        assert len({(e[0], e[1]) for e in expected}) == len(expected)  # one event per entity
        deleted = sum(1 for e in expected if e[0] == "cvm" and e[2] == "deleted")
        assert tally(engine, runs[1]) == Counter({"deleted": deleted})
        assert_matches_model(engine, h.model)
        assert_consistent(engine)
        before = dump(engine, INVENTORY_TABLES)
        for target in order:
            assert recorded_events(engine, [ok(h.run(target=target))]) == []
        assert dump(engine, INVENTORY_TABLES) == before, "a run that saw nothing new wrote"
    # Nobody stopped seeing anything: every CVM is owned by the target that first listed it.
    events, runs_ = table("change_events"), table("sync_runs")
    with engine.connect() as conn:
        creators = dict(
            conn.execute(
                select(events.c.entity_id, runs_.c.target)
                .join(runs_, runs_.c.id == events.c.run_id)
                .where(events.c.entity_type == "cvm", events.c.change_type == "created")
            ).all()
        )
    owners = live_cvms(engine)
    assert owners == {k: creators[k] for k in owners}
    assert set(owners.values()) == {"alpha", "beta"}


def test_disjoint_targets_behave_as_before(engine: Engine) -> None:
    """Two keys of two fleets: each run records its own fleet's changes, deletions included,
    and the two run side by side."""
    harnesses = {
        "alpha": new_harness(engine, size=80, seed=1),
        "beta": new_harness(engine, size=60, seed=2),
    }
    results: dict[str, Any] = {}

    def run(name: str) -> None:
        results[name] = harnesses[name].run(target=name, lock_timeout=60)

    for step in range(2):
        if step:
            for i, h in enumerate(harnesses.values()):
                h.fleet.evolve({"create": 2, "delete": 3, "resize": 2}, seed=i)
        threads = [threading.Thread(target=run, args=(name,)) for name in harnesses]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for name, h in harnesses.items():
            expected = [
                e for e in h.model.sync(observe(h.fleet), "2026-01-21") if e[0] in ("cvm", "app")
            ]
            got = [
                e for e in recorded_events(engine, [ok(results[name])]) if e[0] in ("cvm", "app")
            ]
            assert got == expected, name
            assert seeing(engine, name) == {c.key for c in h.fleet.cvms()}
    owners = live_cvms(engine)
    for name, h in harnesses.items():
        assert {k for k, t in owners.items() if t == name} == {c.key for c in h.fleet.cvms()}
    assert_consistent(engine)


def test_targets_on_different_api_versions_record_nothing(engine: Engine) -> None:
    """Two keys over one fleet, pinned to different versions: their runs record no events.

    The legacy version's first run only adds what only it carries (an app's team), once.
    """
    h = new_harness(engine, size=60)
    ok(h.run(target="new", api_version="2026-01-21"))
    first_legacy = recorded_events(engine, [ok(h.run(target="legacy", api_version="2025-10-28"))])
    for entity_type, _, change_type, changes in first_legacy:
        assert (entity_type, change_type) == ("app", "updated")
        assert set(changes) <= {"team_name", "team_slug"}
    before = dump(engine, INVENTORY_TABLES)
    for _ in range(2):
        for target, version in (("new", "2026-01-21"), ("legacy", "2025-10-28")):
            assert recorded_events(engine, [ok(h.run(target=target, api_version=version))]) == []
    assert set(live_cvms(engine).values()) == {"new"}
    after = dump(engine, INVENTORY_TABLES)
    for name in ("cvm_history", "app_history", "change_events"):
        assert after[name] == before[name], name


def test_retire_refuses_while_the_target_runs_and_names_unknown_targets(engine: Engine) -> None:
    h = new_harness(engine, size=20)
    ok(h.run(target="alpha"))
    settings = h.settings(lock_timeout=0)
    with (
        run_lock(engine, target="alpha"),
        pytest.raises(RunLockedError, match="run of target 'alpha' is in progress"),
    ):
        retire_target(engine, settings, "alpha")
    runs = table("sync_runs")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(runs)).scalar_one() == 1
    with pytest.raises(ConfigError, match="no target named 'nobody'"):
        retire_target(engine, settings, "nobody")
    assert len(seeing(engine, "alpha")) == 20
