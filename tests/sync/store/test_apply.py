"""Applying runs: created/updated/deleted/restored, unknown fields, scopes, atomicity."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from models import ChangeEvent, Cvm, CvmHistory, StagedRecord, SyncRun, table_of
from sync.api.pages import Rejection
from sync.store import apply as apply_module
from tests.sync.store.builders import app, bundle, cvm, run_with


def events(engine: Engine, run_id: int) -> list[tuple[str, str, str, dict[str, Any]]]:
    t = table_of(ChangeEvent).c
    with engine.connect() as conn:
        rows = conn.execute(
            select(t.entity_type, t.entity_id, t.change_type, t.changes)
            .where(t.run_id == run_id)
            .order_by(t.entity_type, t.entity_id)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def count(engine: Engine, model: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table_of(model))).scalar_one())


def cvm_row(engine: Engine, n: int) -> Any:
    t = table_of(Cvm).c
    with engine.connect() as conn:
        return conn.execute(select(table_of(Cvm)).where(t.vm_uuid == f"{n:032x}")).one()


def test_first_run_creates_everything(engine: Engine) -> None:
    summary = run_with(engine, [bundle(cvm(i)) for i in range(5)], apps=[app("a" * 40, ())])
    assert summary.status == "succeeded"
    assert summary.counts["cvm"] == {
        "seen": 5, "created": 5, "updated": 0, "deleted": 0, "restored": 0, "unchanged": 0,
    }  # fmt: skip
    assert summary.counts["node"]["created"] == 3
    assert summary.counts["workspace"]["created"] == 2
    assert summary.counts["creator"]["created"] == 4
    assert summary.counts["app"]["created"] == 1
    evs = events(engine, summary.run_id)
    created_cvms = [e for e in evs if e[0] == "cvm"]
    assert len(created_cvms) == 5
    assert all(e[2] == "created" for e in created_cvms)
    assert created_cvms[0][3]["memory_mb"] == {"old": None, "new": 4096}
    assert count(engine, CvmHistory) == 5
    assert count(engine, StagedRecord) == 0
    row = cvm_row(engine, 1)
    assert row.node_id == 2
    assert row.deleted_at is None
    assert row.raw_json is not None


def test_unchanged_resync_writes_no_history_or_events(engine: Engine) -> None:
    fleet = [bundle(cvm(i)) for i in range(5)]
    run_with(engine, fleet)
    before = (count(engine, CvmHistory), count(engine, ChangeEvent))
    second = run_with(engine, fleet)
    assert second.counts["cvm"]["unchanged"] == 5
    assert second.counts["cvm"]["created"] == second.counts["cvm"]["updated"] == 0
    assert (count(engine, CvmHistory), count(engine, ChangeEvent)) == before
    # An unchanged row is not rewritten: last_seen_* name the last run that wrote it, and the
    # ledger says which later runs saw it (a succeeded run with a complete listing).
    assert cvm_row(engine, 0).last_seen_run_id == 1
    assert second.listing_complete


def test_update_lists_every_changed_field_once(engine: Engine) -> None:
    run_with(engine, [bundle(cvm(i)) for i in range(3)])
    changed = [bundle(cvm(0)), bundle(cvm(1, vcpu=8, memory_mb=16384, name="big")), bundle(cvm(2))]
    summary = run_with(engine, changed)
    assert summary.counts["cvm"]["updated"] == 1
    evs = [e for e in events(engine, summary.run_id) if e[0] == "cvm"]
    assert evs == [
        (
            "cvm",
            f"{1:032x}",
            "updated",
            {
                "vcpu": {"old": 2, "new": 8},
                "memory_mb": {"old": 4096, "new": 16384},
                "name": {"old": "cvm-1", "new": "big"},
            },
        )
    ]
    h = table_of(CvmHistory).c
    with engine.connect() as conn:
        rows = conn.execute(
            select(h.vcpu, h.valid_from, h.valid_to, h.run_id)
            .where(h.vm_uuid == f"{1:032x}")
            .order_by(h.history_id)
        ).all()
    assert [r.vcpu for r in rows] == [2, 8]
    assert rows[0].valid_to == rows[1].valid_from
    assert rows[1].valid_to is None


def test_deletion_only_from_complete_listing_then_restore(engine: Engine) -> None:
    run_with(engine, [bundle(cvm(i)) for i in range(4)])
    incomplete = run_with(engine, [bundle(cvm(i)) for i in range(3)], complete=False)
    assert incomplete.counts["cvm"]["deleted"] == 0
    assert cvm_row(engine, 3).deleted_at is None
    complete = run_with(engine, [bundle(cvm(i)) for i in range(3)])
    assert complete.counts["cvm"]["deleted"] == 1
    assert [e[:3] for e in events(engine, complete.run_id)] == [
        ("creator", "usr_3", "deleted"),  # no live CVM refers to it any more
        ("cvm", f"{3:032x}", "deleted"),
    ]
    assert cvm_row(engine, 3).deleted_at is not None
    h = table_of(CvmHistory).c
    with engine.connect() as conn:
        open_rows = conn.execute(
            select(func.count()).where(h.vm_uuid == f"{3:032x}", h.valid_to.is_(None))
        ).scalar_one()
    assert open_rows == 0
    back = run_with(engine, [bundle(cvm(i)) for i in range(3)] + [bundle(cvm(3, status="stopped"))])
    assert back.counts["cvm"]["restored"] == 1
    assert events(engine, back.run_id) == [
        ("creator", "usr_3", "restored", {}),
        ("cvm", f"{3:032x}", "restored", {"status": {"old": "running", "new": "stopped"}}),
    ]
    assert cvm_row(engine, 3).deleted_at is None
    assert cvm_row(engine, 3).first_seen_run_id < back.run_id


def test_version_switch_to_legacy_is_not_a_change(engine: Engine) -> None:
    fleet = [cvm(i) for i in range(4)]
    run_with(engine, [bundle(c) for c in fleet])
    legacy = run_with(engine, [bundle(c, legacy=True) for c in fleet])
    assert legacy.counts["cvm"]["unchanged"] == 4
    assert events(engine, legacy.run_id) == []
    row = cvm_row(engine, 1)
    assert row.workspace_id == "wks_1"
    assert row.instance_type == "tdx.small"
    # A real change under the legacy version is still seen, unknown fields still kept.
    moved = run_with(engine, [bundle(replace(c, node_id=3) if c.vm_uuid == fleet[1].vm_uuid else c,
                                     legacy=True) for c in fleet])  # fmt: skip
    assert [e for e in events(engine, moved.run_id) if e[0] == "cvm"] == [
        ("cvm", fleet[1].vm_uuid, "updated", {"node_id": {"old": 2, "new": 3}})
    ]
    assert cvm_row(engine, 1).workspace_id == "wks_1"
    back = run_with(engine, [bundle(replace(c, node_id=3) if c.vm_uuid == fleet[1].vm_uuid else c)
                             for c in fleet])  # fmt: skip
    assert [e for e in events(engine, back.run_id) if e[0] == "cvm"] == []


def test_deletions_stay_within_the_target(engine: Engine) -> None:
    run_with(engine, [bundle(cvm(i)) for i in range(3)], target="team-a")
    other = run_with(engine, [bundle(cvm(i)) for i in range(10, 12)], target="team-b")
    assert other.counts["cvm"]["deleted"] == 0
    assert cvm_row(engine, 0).deleted_at is None
    again = run_with(engine, [bundle(cvm(i)) for i in range(1, 3)], target="team-a")
    assert again.counts["cvm"]["deleted"] == 1
    assert cvm_row(engine, 10).deleted_at is None


def test_quarantined_item_with_an_id_is_not_deleted(engine: Engine) -> None:
    run_with(engine, [bundle(cvm(i)) for i in range(3)])
    held = Rejection(
        endpoint="cvms", page=1, index=2, entity_id=f"{2:032x}", raw=b"{}", error="bad"
    )
    summary = run_with(engine, [bundle(cvm(i)) for i in range(2)], rejections=[held])
    assert summary.counts["cvm"]["deleted"] == 0
    assert cvm_row(engine, 2).deleted_at is None


def test_app_membership_follows_the_listing(engine: Engine) -> None:
    a = "a" * 40
    run_with(engine, [bundle(cvm(i)) for i in range(3)], apps=[app(a, (f"{0:032x}", f"{1:032x}"))])
    summary = run_with(
        engine, [bundle(cvm(i)) for i in range(3)], apps=[app(a, (f"{0:032x}", f"{2:032x}"))]
    )
    evs = [e for e in events(engine, summary.run_id) if e[0] == "app"]
    assert evs[0][2] == "updated"
    assert evs[0][3]["member_vm_uuids"] == {
        "old": [f"{0:032x}", f"{1:032x}"],
        "new": [f"{0:032x}", f"{2:032x}"],
    }
    # A minimal app (members unknown) keeps the last known membership.
    minimal = run_with(engine, [bundle(cvm(i)) for i in range(3)], apps=[app(a, None)])
    assert not [e for e in events(engine, minimal.run_id) if e[3].get("member_vm_uuids")]


def test_failure_during_apply_changes_nothing(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_with(engine, [bundle(cvm(i)) for i in range(3)])
    with engine.connect() as conn:
        before = conn.execute(select(table_of(Cvm)).order_by("vm_uuid")).all()
    history_before = count(engine, CvmHistory)

    def boom(self: Any, endpoint: str) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(apply_module._EntityApplier, "infer_deletions", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        run_with(engine, [bundle(cvm(0, name="renamed")), bundle(cvm(1))])
    with engine.connect() as conn:
        after = conn.execute(select(table_of(Cvm)).order_by("vm_uuid")).all()
    assert after == before
    assert count(engine, CvmHistory) == history_before
    runs = table_of(SyncRun).c
    with engine.connect() as conn:
        statuses = conn.execute(select(runs.status).order_by(runs.id)).scalars().all()
    # run_with bypasses run_sync's failure recording: the row stays running, and the next run
    # closes it as abandoned.
    assert statuses == ["succeeded", "running"]
    monkeypatch.undo()
    nxt = run_with(engine, [bundle(cvm(i)) for i in range(3)])
    with engine.connect() as conn:
        rows = conn.execute(select(runs.id, runs.status, runs.error).order_by(runs.id)).all()
    assert rows[1].status == "failed"
    assert "abandoned" in rows[1].error
    assert nxt.counts["cvm"]["unchanged"] == 3
