"""The stager writes staged rows in few statements, and only a flush makes them visible."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select

from models import StagedRecord
from sync.run import open_run
from sync.settings import Settings
from sync.store import bulk
from sync.store.lock import run_lock
from sync.store.staging import Stager
from tests.sync.store.builders import bundle, cvm, cvm_page


@pytest.fixture
def writes(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The number of rows of each statement that writes staged rows (a COPY on PostgreSQL, an
    INSERT on SQLite), in order."""
    seen: list[int] = []
    copy_rows = bulk.copy_rows

    def counted_copy(conn: Any, table: Any, columns: Any, rows: Any) -> None:
        seen.append(len(rows))
        copy_rows(conn, table, columns, rows)

    def on_execute(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, many: bool
    ) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO SYNC_STAGING"):
            seen.append(len(parameters) if many else 1)

    monkeypatch.setattr(bulk, "copy_rows", counted_copy)
    event.listen(engine, "before_cursor_execute", on_execute)
    yield seen
    event.remove(engine, "before_cursor_execute", on_execute)


def _stager(engine: Engine, **options: Any) -> Stager:
    settings = Settings(target="default", database_url=str(engine.url))
    with run_lock(engine, timeout=0.0, target="default"):
        run_id, _ = open_run(engine, settings)
    return Stager(engine, run_id, **options)


def _staged(engine: Engine, run_id: int) -> int:
    with engine.connect() as conn:
        query = select(func.count()).where(StagedRecord.run_id == run_id)
        return int(conn.execute(query).scalar_one())


def test_pages_of_one_changed_item_are_written_at_each_commit(
    engine: Engine, writes: list[int]
) -> None:
    """A 1% resync's pages hold one or two changed items each: 45 of them, 20 pages per commit,
    make 3 writes (at pages 20 and 40, and at the close), not 45."""
    stager = _stager(engine)
    for n in range(1, 46):
        stager.stage(cvm_page([bundle(cvm(n))], number=n), 1)
    stager.close()
    assert len(writes) == 3
    assert sum(writes) == _staged(engine, stager.run_id)
    assert _staged(engine, stager.run_id) >= 45  # each CVM's row, and the records it refers to


def test_rows_past_the_cap_are_written_before_the_commit(engine: Engine, writes: list[int]) -> None:
    stager = _stager(engine, rows_per_write=5)
    for n in range(1, 4):
        page = [bundle(cvm(100 * n + i)) for i in range(3)]
        stager.stage(cvm_page(page, number=n), 1)
    assert writes, "the cap was passed: rows were written before any commit"
    assert all(w >= 5 for w in writes)
    stager.close()
    assert sum(writes) == _staged(engine, stager.run_id)


def test_staged_rows_are_visible_to_other_connections_only_after_a_flush(engine: Engine) -> None:
    stager = _stager(engine)
    stager.stage(cvm_page([bundle(cvm(1)), bundle(cvm(2))]), 1)
    assert _staged(engine, stager.run_id) == 0
    stager.flush()
    assert _staged(engine, stager.run_id) >= 2
    stager.close()
