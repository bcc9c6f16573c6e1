"""A database with history at schema 0001 upgrades in place and keeps every row.

The database is filled by real runs (history, change events, ledger rows, a quarantined item),
taken down to 0001 (the first release's schema, which this release's migrations must accept as
it is), and upgraded again; every table's rows must be the same, and the next sync of an
unchanged fleet must record nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, inspect, select

from models import Base
from sync.store.migrate import current_revision, downgrade, head_revision, upgrade
from tests.reliability.conftest import new_harness

pytestmark = pytest.mark.slow

FIRST_RELEASE = "0001"


def every_row(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, of the columns the schema has at its revision."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    found = inspect(engine)
    with engine.connect() as conn:
        for name in sorted(set(found.get_table_names()) & set(Base.metadata.tables)):
            table = Base.metadata.tables[name]
            columns = [table.c[c["name"]] for c in found.get_columns(name)]
            order = list(table.primary_key.columns) or columns
            rows[name] = [tuple(r) for r in conn.execute(select(*columns).order_by(*order))]
    return rows


def test_a_first_release_database_upgrades_in_place(engine: Engine) -> None:
    h = new_harness(engine, size=60)
    first = h.run()
    h.fleet.evolve({"create": 3, "delete": 2, "resize": 2, "rename": 2}, seed=5)
    second = h.run()
    assert first.status == second.status == "succeeded"
    before = every_row(engine)
    assert before["cvm_history"]
    assert before["change_events"]
    assert len(before["sync_runs"]) == 2

    memberships = before.pop("target_memberships")
    downgrade(engine, FIRST_RELEASE)
    assert current_revision(engine) == FIRST_RELEASE
    down = every_row(engine)
    # sync_runs.kind (the last column) is younger than 0001.
    assert down.pop("sync_runs") == [r[:-1] for r in before["sync_runs"]]
    assert down == {k: v for k, v in before.items() if k != "sync_runs"}
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    up = every_row(engine)
    # One target: the memberships seeded from ownership are the ones its runs had made.
    assert {r[:3] for r in up.pop("target_memberships")} == {r[:3] for r in memberships}
    assert up == before

    third = h.run()
    assert third.status == "succeeded"
    after = every_row(engine)
    for table in ("cvm_history", "app_history", "change_events", "cvms", "apps"):
        assert after[table] == before[table], f"{table} changed on an unchanged resync"
    assert len(after["sync_runs"]) == 3


RELEASE_2 = "0002"


def test_a_release_2_database_upgrades_with_memberships_from_ownership(engine: Engine) -> None:
    """Two targets over one fleet, at release 2's schema: the upgrade seeds each target's
    memberships from the ``target`` column, keeps every other row, and the next runs of both
    targets record nothing."""
    h = new_harness(engine, size=60)
    assert h.run(target="alpha").status == "succeeded"
    h.fleet.evolve({"create": 3, "delete": 2, "resize": 2}, seed=5)
    assert h.run(target="beta").status == "succeeded"  # owns the 3 it created
    assert h.run(target="alpha").status == "succeeded"  # deletes the 2 only it saw
    before = every_row(engine)
    downgrade(engine, RELEASE_2)
    assert current_revision(engine) == RELEASE_2
    assert "target_memberships" not in inspect(engine).get_table_names()
    upgrade(engine)
    after = every_row(engine)
    after.pop("target_memberships")
    del before["target_memberships"]
    assert after == before, "the upgrade changed a row of the inventory, history or ledger"

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
    final = every_row(engine)
    assert len(final["change_events"]) == events, "a run after the upgrade recorded changes"
    for name in ("cvm_history", "app_history", "cvms", "apps"):
        assert final[name] == before[name], name
