"""A mark of a target's ledger: which runs a later success must be newer than.

The listing sent ahead of a run (:mod:`sync.prefetching`) takes one before its first request, and
before the process imports the ORM: so this module reads ``sync_runs`` through a lightweight
table of its own three columns (``tests/sync/store/test_ledger_mark.py`` holds it to the model),
and the first request goes out about 0.1 s sooner.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, Integer, String, column, func, inspect, select, table

#: ``sync_runs`` (models.SyncRun), as far as a mark reads it.
RUNS = table("sync_runs", column("id", Integer), column("target", String), column("status", String))

__all__ = ["RUNS", "LedgerMark", "ledger_mark", "succeeded_since"]


@dataclass(frozen=True, slots=True)
class LedgerMark:
    """Where a target's ledger stood at one moment: its newest run and the runs then running.

    A run that succeeds later than that moment has an id above ``last_id`` or one of ``running``:
    :func:`succeeded_since` finds it without comparing clocks (the run's clock may be set).
    """

    last_id: int = 0
    running: frozenset[int] = frozenset()


def ledger_mark(engine: Engine, target: str) -> LedgerMark:
    """The target's :class:`LedgerMark` now; an empty one where there is no ledger yet.

    A SQLite file that does not exist yet is not created by asking.
    """
    url = engine.url
    file = url.database if url.get_backend_name() == "sqlite" else None
    if file and file != ":memory:" and not Path(file).exists():
        return LedgerMark()
    with engine.connect() as conn:
        if not inspect(conn).has_table(RUNS.name):
            return LedgerMark()
        last = conn.execute(select(func.max(RUNS.c.id))).scalar_one()
        running = conn.execute(
            select(RUNS.c.id).where((RUNS.c.target == target) & (RUNS.c.status == "running"))
        ).scalars()
        return LedgerMark(int(last or 0), frozenset(int(i) for i in running))


def succeeded_since(engine: Engine, target: str, mark: LedgerMark, *, besides: int) -> list[int]:
    """Ids of the target's runs (not ``besides``) that succeeded after ``mark`` was taken."""
    later = (RUNS.c.id > mark.last_id) | RUNS.c.id.in_(sorted(mark.running))
    with engine.connect() as conn:
        return [
            int(i)
            for i in conn.execute(
                select(RUNS.c.id)
                .where(RUNS.c.target == target)
                .where(RUNS.c.status == "succeeded")
                .where(RUNS.c.id != besides)
                .where(later)
                .order_by(RUNS.c.id)
            ).scalars()
        ]
