"""The run ledger (``sync_runs``): start, succeed (inside the apply transaction), fail, abandon.

Its mark, for the listing sent ahead, is :mod:`sync.store.ledger_mark`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from models import SyncRun, table_of
from sync.errors import RunLockedError
from sync.store.staging import clear_staging

_RUNS = table_of(SyncRun)
MAX_ERROR_CHARS = 4000


def start_run(engine: Engine, *, target: str, api_version: str, now: datetime) -> int:
    """Open a ``running`` ledger row and return its id (committed at once, so it is visible)."""
    with engine.begin() as conn:
        return int(
            conn.execute(
                insert(_RUNS)
                .values(target=target, api_version=api_version, status="running", started_at=now)
                .returning(_RUNS.c.id)
            ).scalar_one()
        )


def close_abandoned(
    engine: Engine, *, now: datetime, by_run: int | None = None, target: str | None = None
) -> list[int]:
    """Mark ``running`` rows left by a process that died as failed; drop their staged rows.

    Called with the lock of ``target`` held (or, without a target, the database's lock), so no
    other run of it can be in progress; runs of other targets may be, and are left alone.
    """
    with engine.begin() as conn:
        where = _RUNS.c.status == "running"
        if by_run is not None:
            where = where & (_RUNS.c.id != by_run)
        if target is not None:
            where = where & (_RUNS.c.target == target)
        ids = [int(i) for i in conn.execute(select(_RUNS.c.id).where(where)).scalars()]
        if ids:
            note = "abandoned: the process ended before the run finished"
            if by_run is not None:
                note += f" (closed by run {by_run})"
            conn.execute(
                update(_RUNS)
                .where(_RUNS.c.id.in_(ids))
                .values(status="failed", finished_at=now, error=note)
            )
    clear_staging(engine, ids)
    return ids


def finish_run(conn: Connection, run_id: int, *, now: datetime, values: Mapping[str, Any]) -> None:
    """Mark the run succeeded with its counts, on the apply transaction's connection."""
    conn.execute(
        update(_RUNS)
        .where(_RUNS.c.id == run_id)
        .values(status="succeeded", finished_at=now, error=None, **values)
    )


def require_running(conn: Connection, run_id: int) -> None:
    """Inside the apply transaction: the run's ledger row must still say ``running``.

    Another run closes a run it finds ``running`` as abandoned, which it can only do when it holds
    the run lock; so a run whose row was closed lost its lock (a dropped lock connection, say)
    and must not write. The row is locked until commit, so the check cannot go stale.
    """
    status = conn.execute(
        select(_RUNS.c.status).where(_RUNS.c.id == run_id).with_for_update()
    ).scalar_one_or_none()
    if status != "running":
        raise RunLockedError(
            f"run {run_id} was closed as {status or 'missing'} by another run while it fetched "
            "(its run lock was lost, e.g. the database connection holding it dropped); nothing "
            "was applied. Run the sync again"
        )


def fail_run(
    engine: Engine, run_id: int, *, now: datetime, error: str, values: Mapping[str, Any]
) -> None:
    """Mark the run failed with its reason (its own transaction) and drop its staged rows.

    Only a row still ``running`` is touched: a run that failed after its commit (an interrupt
    on the way out) stays ``succeeded``, as its data is.
    """
    with engine.begin() as conn:
        conn.execute(
            update(_RUNS)
            .where(_RUNS.c.id == run_id, _RUNS.c.status == "running")
            .values(status="failed", finished_at=now, error=error[:MAX_ERROR_CHARS], **values)
        )
    clear_staging(engine, [run_id])
