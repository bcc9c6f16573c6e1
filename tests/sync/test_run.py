"""A whole run against the simulator: events equal the simulator's ground truth, version
switches record nothing, a failed listing changes nothing, the inventory equals the fleet."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

import sync.run as run_module
from models import ChangeEvent, Cvm, CvmHistory, SyncRun, Workspace, table_of
from simulator import Fleet, SimulatorTransport, create_app
from sync import clock
from sync.errors import RetriableApiError
from sync.run import RunSummary, run_sync
from sync.settings import Settings
from sync.store import ahead
from tests.sync.store.builders import LEGACY_UNKNOWN

KEY = "phak_run_test_key"


def sync(engine: Engine, fleet: Fleet, *, version: str = "2026-01-21", **kw: Any) -> RunSummary:
    faults = kw.pop("faults", ())
    app = create_app(fleet, api_key=KEY, faults=faults)
    settings = Settings(
        api_key=KEY,
        base_url="http://simulator/api/v1",
        api_version=version,
        database_url=str(engine.url),
        page_size=40,
        max_attempts=2,
        retry_budget=2,
        backoff_base=0.01,
        **kw,
    )
    return run_sync(engine, settings, transport=SimulatorTransport(app))


def recorded(engine: Engine, run_id: int, entity_types: tuple[str, ...]) -> list[dict[str, Any]]:
    e = table_of(ChangeEvent).c
    with engine.connect() as conn:
        rows = conn.execute(
            select(e.entity_type, e.entity_id, e.change_type, e.changes)
            .where(e.run_id == run_id, e.entity_type.in_(entity_types))
            .order_by(e.entity_type, e.entity_id)
        ).all()
    out = []
    for r in rows:
        change: dict[str, Any] = {
            "entity_type": r.entity_type,
            "entity_id": r.entity_id,
            "change_type": r.change_type,
        }
        if r.change_type == "updated":
            change["fields"] = r.changes
        out.append(change)
    return out


def truth(step: list[dict[str, Any]], entity_types: tuple[str, ...]) -> list[dict[str, Any]]:
    kept = [
        {k: v for k, v in ch.items() if k in ("entity_type", "entity_id", "change_type", "fields")}
        for ch in step
        if ch["entity_type"] in entity_types
    ]
    return sorted(kept, key=lambda ch: (ch["entity_type"], ch["entity_id"]))


def live_cvms(engine: Engine) -> dict[str, dict[str, Any]]:
    t = table_of(Cvm)
    with engine.connect() as conn:
        rows = conn.execute(select(t).where(t.c.deleted_at.is_(None))).all()
    return {r.vm_uuid: dict(r._mapping) for r in rows}


def test_events_equal_ground_truth_over_evolution(engine: Engine) -> None:
    fleet = Fleet(240, seed=11)
    first = sync(engine, fleet)
    assert first.counts["cvm"]["created"] == 240
    assert first.listing_complete
    types = ("cvm", "node", "workspace", "creator")
    steps = [
        {"create": 5, "delete": 4, "resize": 3, "move": 3, "rename": 2, "restart": 3},
        {"rename_workspace": 2, "restore": 2, "delete": 3, "create": 1},
        {"move": 6, "resize": 2, "restore": 1, "rename": 1},
    ]
    for n, counts in enumerate(steps):
        step = fleet.evolve(counts, seed=100 + n)
        summary = sync(engine, fleet)
        assert summary.listing_complete
        assert recorded(engine, summary.run_id, types) == truth(step, types), f"step {n}"
    snapshot = fleet.snapshot()["cvms"]
    stored = live_cvms(engine)
    assert set(stored) == set(snapshot)
    for key, record in snapshot.items():
        row = stored[key]
        assert {f: row[f] for f in record if f != "created_at"} == {
            f: v for f, v in record.items() if f != "created_at"
        }


def test_version_switches_record_nothing(engine: Engine) -> None:
    fleet = Fleet(120, seed=5)
    sync(engine, fleet, version="2026-01-21")
    before = live_cvms(engine)
    for version in ("2025-10-28", "2026-05-22", "2025-10-28", "2026-06-23", "2026-01-21"):
        summary = sync(engine, fleet, version=version)
        assert summary.counts["cvm"]["created"] == summary.counts["cvm"]["updated"] == 0
        assert summary.counts["cvm"]["deleted"] == 0
        assert recorded(engine, summary.run_id, ("cvm", "node", "workspace", "creator")) == []
    after = live_cvms(engine)
    strip = ("last_seen_at", "last_seen_run_id", "observed_hash", "raw_json")
    assert {k: {c: v for c, v in r.items() if c not in strip} for k, r in after.items()} == {
        k: {c: v for c, v in r.items() if c not in strip} for k, r in before.items()
    }
    # A real change under the legacy version is recorded; the workspace it cannot see is kept.
    step = fleet.evolve({"move": 2, "resize": 1}, seed=9)
    legacy = sync(engine, fleet, version="2025-10-28")
    visible = [
        {**ch, "fields": {f: v for f, v in ch["fields"].items() if f not in LEGACY_UNKNOWN}}
        for ch in truth(step, ("cvm",))
    ]
    assert recorded(engine, legacy.run_id, ("cvm",)) == [ch for ch in visible if ch["fields"]]
    ws = table_of(Workspace)
    with engine.connect() as conn:
        assert conn.execute(select(ws).where(ws.c.deleted_at.is_not(None))).all() == []


def test_failed_listing_changes_nothing_and_deletes_nothing(engine: Engine) -> None:
    fleet = Fleet(200, seed=2)
    sync(engine, fleet)
    fleet.evolve({"delete": 5, "resize": 5}, seed=1)
    tables = [table_of(Cvm), table_of(ChangeEvent)]
    with engine.connect() as conn:
        before = [conn.execute(select(t)).all() for t in tables]
    with pytest.raises(RetriableApiError):
        sync(engine, fleet, faults=["503:endpoint=cvms,page=3"])
    with engine.connect() as conn:
        assert [conn.execute(select(t)).all() for t in tables] == before
        runs = conn.execute(select(table_of(SyncRun)).order_by(table_of(SyncRun).c.id)).all()
    assert [r.status for r in runs] == ["succeeded", "failed"]
    assert "503" in runs[-1].error
    recovered = sync(engine, fleet)
    assert recovered.counts["cvm"]["deleted"] == 5
    assert recovered.counts["cvm"]["updated"] == 5


def test_fetch_stage_can_be_retried_within_one_run(engine: Engine) -> None:
    """A retried fetch task (same run id) starts from an empty staging area."""
    import asyncio

    from sync.run import apply_run, fetch_and_stage, open_run
    from sync.store.lock import run_lock

    fleet = Fleet(90, seed=4)
    app = create_app(fleet, api_key=KEY, faults=["drift:what=missing,share=0.05"])
    settings = Settings(
        api_key=KEY, base_url="http://simulator/api/v1", database_url=str(engine.url),
        page_size=25, max_invalid_share=0.5,
    )  # fmt: skip
    with run_lock(engine, target=settings.target):
        run_id, started = open_run(engine, settings)
        for _ in range(2):
            fetch = asyncio.run(
                fetch_and_stage(engine, settings, run_id, transport=SimulatorTransport(app))
            )
        summary = apply_run(engine, settings, run_id, started, fetch)
    assert fetch.listings["cvms"].quarantined > 0
    assert summary.counts["cvm"]["seen"] + fetch.listings["cvms"].quarantined == 90
    assert summary.counts["cvm"]["created"] == summary.counts["cvm"]["seen"]
    with engine.connect() as conn:
        from models import QuarantinedItem

        quarantined = conn.execute(select(table_of(QuarantinedItem))).all()
    assert len(quarantined) == summary.quarantined == fetch.quarantined


def test_the_apply_takes_its_clock_with_the_database_lock_held(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An apply that waited for another target's apply must not stamp its rows with a time from
    before it got the lock: that run's rows would then come after its own in the history."""
    fleet = Fleet(20, seed=3)
    locked: list[datetime] = []
    real = run_module.database_lock

    @contextlib.contextmanager
    def waited_lock(engine: Engine, settings: Any) -> Iterator[None]:
        time.sleep(0.05)  # another apply holds it
        with real(engine, settings):
            locked.append(clock.now())
            yield

    monkeypatch.setattr(run_module, "database_lock", waited_lock)
    monkeypatch.setattr(ahead, "ENABLED", False)  # its clock is taken as it takes the lock
    summary = sync(engine, fleet)
    h = table_of(CvmHistory)
    with engine.connect() as conn:
        stamped = conn.execute(
            select(func.min(h.c.valid_from)).where(h.c.run_id == summary.run_id)
        ).scalar_one()
    assert locked, "the apply did not take the database's lock"
    assert stamped >= locked[-1]
