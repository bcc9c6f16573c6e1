"""A database with history at an older schema upgrades in place and keeps every row.

The database is filled by real runs (history, change events, ledger rows, a quarantined item),
taken down to 0001 (the first release's schema, which this release's migrations must accept as
it is) or to the previous head, and upgraded again; every table's rows must be the same in the
older schema's columns, columns added since hold what can be known again (the hourly rates of
``cvms``, from their raw JSON), and the next sync of an unchanged fleet must record nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, inspect, select

from models import Base
from sync import changes
from sync.records import UNKNOWN
from sync.store.migrate import current_revision, downgrade, head_revision, upgrade
from sync.versions import v2026_01_21
from tests.reliability.conftest import new_harness

pytestmark = [pytest.mark.slow, pytest.mark.migration_chain]

FIRST_RELEASE = "0001"
#: Release 2's head, before the BI views (0003) and the target memberships (0004).
PREVIOUS_HEAD = "0002"


Rows = dict[str, list[dict[str, Any]]]


def every_row(engine: Engine, columns: dict[str, set[str]] | None = None) -> Rows:
    """Every row of every table, in the columns the database has (or those of ``columns``)."""
    rows: Rows = {}
    present = columns if columns is not None else schema_columns(engine)
    with engine.connect() as conn:
        for name in sorted(set(present) & set(Base.metadata.tables)):
            table = Base.metadata.tables[name]
            cols = [c for c in table.columns if c.name in present[name]]
            order = list(table.primary_key.columns) or cols
            rows[name] = [dict(r._mapping) for r in conn.execute(select(*cols).order_by(*order))]
    return rows


def schema_columns(engine: Engine) -> dict[str, set[str]]:
    """The columns of each table the database has now."""
    inspector = inspect(engine)
    return {
        name: {c["name"] for c in inspector.get_columns(name)}
        for name in inspector.get_table_names()
    }


def project(rows: Rows, columns: dict[str, set[str]]) -> Rows:
    """``rows`` in the tables and columns of ``columns`` only."""
    return {
        name: [{k: v for k, v in row.items() if k in columns[name]} for row in table_rows]
        for name, table_rows in rows.items()
        if name in columns
    }


@pytest.mark.parametrize("older", [FIRST_RELEASE, PREVIOUS_HEAD])
def test_an_older_database_upgrades_in_place(engine: Engine, older: str) -> None:
    h = new_harness(engine, size=60)
    first = h.run()
    h.fleet.evolve({"create": 3, "delete": 2, "resize": 2, "rename": 2}, seed=5)
    second = h.run()
    assert first.status == second.status == "succeeded"
    full = every_row(engine)
    assert len(full["sync_runs"]) == 2
    assert any(row["hourly_rate_total"] is not None for row in full["cvms"])

    downgrade(engine, older)
    assert current_revision(engine) == older
    old_columns = schema_columns(engine)
    before = every_row(engine, old_columns)
    assert before == project(full, old_columns)
    assert before["cvm_history"]
    assert before["change_events"]
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert every_row(engine, old_columns) == before
    # Columns added since are filled where their values are known again (cvms from raw_json).
    assert every_row(engine)["cvms"] == full["cvms"]

    third = h.run()
    assert third.status == "succeeded"
    after = every_row(engine)
    for table in ("cvm_history", "app_history", "change_events", "cvms", "apps"):
        assert every_row(engine, old_columns)[table] == before[table], (
            f"{table} changed on an unchanged resync"
        )
    assert len(after["sync_runs"]) == 3


def test_a_previous_release_database_resyncs_without_spurious_events(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows written by the release before ``hourly_rate`` was mapped (normalization revision 1,
    rates unknown) gain their rates from the upgrade, so the first run of this release, which
    normalizes every item again, records no change."""
    h = new_harness(engine, size=60)
    with monkeypatch.context() as old_release:
        old_release.setattr(changes, "NORMALIZATION_REVISION", 1)
        old_release.setattr(v2026_01_21, "hourly_rate_fields", _rates_unknown)
        changes._source_salt.cache_clear()
        h.run()
        h.fleet.evolve({"create": 3, "delete": 2, "resize": 2}, seed=5)
        h.run()
    changes._source_salt.cache_clear()
    assert all(row["hourly_rate_total"] is None for row in every_row(engine)["cvms"])
    downgrade(engine, PREVIOUS_HEAD)
    upgrade(engine)
    filled = every_row(engine)
    assert any(row["hourly_rate_total"] is not None for row in filled["cvms"])

    third = h.run()
    assert third.status == "succeeded"
    assert third.counts["cvm"]["updated"] == 0
    after = every_row(engine)
    for table in ("cvm_history", "change_events"):
        assert after[table] == filled[table], f"{table} changed on the first run of the release"
    # Every live CVM's open state carries the rates its items send.
    open_rows = {r["vm_uuid"]: r for r in after["cvm_history"] if r["valid_to"] is None}
    for row in after["cvms"]:
        if row["deleted_at"] is None:
            assert open_rows[row["vm_uuid"]]["hourly_rate_total"] == row["hourly_rate_total"]


def _rates_unknown(item: object) -> dict[str, object]:
    return dict.fromkeys(("hourly_rate_total", "hourly_rate_compute", "hourly_rate_disk"), UNKNOWN)


def test_a_release_2_database_upgrades_with_memberships_from_ownership(engine: Engine) -> None:
    """Two targets over one fleet, at release 2's schema: the upgrade seeds each target's
    memberships from the ``target`` column, keeps every other row, and the next runs of both
    targets record nothing."""
    h = new_harness(engine, size=60)
    assert h.run(target="alpha").status == "succeeded"
    h.fleet.evolve({"create": 3, "delete": 2, "resize": 2}, seed=5)
    assert h.run(target="beta").status == "succeeded"  # owns the 3 it created
    assert h.run(target="alpha").status == "succeeded"  # deletes the 2 only it saw
    downgrade(engine, PREVIOUS_HEAD)
    assert current_revision(engine) == PREVIOUS_HEAD
    assert "target_memberships" not in inspect(engine).get_table_names()
    release_2 = schema_columns(engine)
    before = every_row(engine, release_2)
    upgrade(engine)
    assert every_row(engine, release_2) == before, (
        "the upgrade changed a row of the inventory, history or ledger"
    )

    m = Base.metadata.tables["target_memberships"]
    with engine.connect() as conn:
        live = set(
            conn.execute(
                select(m.c.target, m.c.entity_type, m.c.entity_id).where(m.c.ended_at.is_(None))
            ).all()
        )
        ended = conn.execute(
            select(m.c.entity_id, m.c.ended_run_id).where(m.c.ended_at.is_not(None))
        ).all()
    expected: set[tuple[Any, ...]] = set()
    for entity_type, name, key in (("cvm", "cvms", "vm_uuid"), ("app", "apps", "app_id")):
        table = Base.metadata.tables[name]
        with engine.connect() as conn:
            rows = conn.execute(
                select(table.c.target, table.c[key]).where(table.c.deleted_at.is_(None))
            )
            expected |= {(target, entity_type, key_value) for target, key_value in rows}
    assert live == expected
    assert {target for target, _, _ in live} == {"alpha", "beta"}
    assert len(ended) == 2
    assert all(run_id is not None for _, run_id in ended)

    events = len(before["change_events"])
    assert h.run(target="beta").status == "succeeded"
    assert h.run(target="alpha").status == "succeeded"
    final = every_row(engine, release_2)
    assert len(final["change_events"]) == events, "a run after the upgrade recorded changes"
    for name in ("cvm_history", "app_history", "cvms", "apps"):
        assert final[name] == before[name], name
