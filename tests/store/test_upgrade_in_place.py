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
from sync.store.migrate import current_revision, downgrade, head_revision, upgrade
from tests.reliability.conftest import new_harness

pytestmark = pytest.mark.slow

FIRST_RELEASE = "0001"
#: The head before the BI views (0003), whose columns it adds.
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
