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

pytestmark = [pytest.mark.slow, pytest.mark.migration_chain]

FIRST_RELEASE = "0001"


def every_row(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    rows: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for name in sorted(set(inspect(engine).get_table_names()) & set(Base.metadata.tables)):
            table = Base.metadata.tables[name]
            order = list(table.primary_key.columns) or list(table.columns)
            rows[name] = [tuple(r) for r in conn.execute(select(table).order_by(*order))]
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

    downgrade(engine, FIRST_RELEASE)
    assert current_revision(engine) == FIRST_RELEASE
    assert every_row(engine) == before
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert every_row(engine) == before

    third = h.run()
    assert third.status == "succeeded"
    after = every_row(engine)
    for table in ("cvm_history", "app_history", "change_events", "cvms", "apps"):
        assert after[table] == before[table], f"{table} changed on an unchanged resync"
    assert len(after["sync_runs"]) == 3
