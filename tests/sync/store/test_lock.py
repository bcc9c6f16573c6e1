"""One run at a time per database: the second one waits or exits with a clear message."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import Engine, select

from models import SyncRun, table_of
from sync.errors import RunLockedError
from sync.store.lock import run_lock
from tests.sync.store.builders import bundle, cvm, run_with


def test_second_run_exits_with_a_clear_message(engine: Engine) -> None:
    with (
        run_lock(engine, target="default"),
        pytest.raises(RunLockedError, match="holds the run lock of target 'default'"),
    ):
        run_with(engine, [bundle(cvm(1))])
    # Nothing was written by the refused run.
    with engine.connect() as conn:
        assert conn.execute(select(table_of(SyncRun))).all() == []


def test_lock_is_released_after_the_holder_finishes(engine: Engine) -> None:
    with run_lock(engine):
        pass
    assert run_with(engine, [bundle(cvm(1))]).status == "succeeded"


def test_waiting_run_goes_after_the_holder(engine: Engine) -> None:
    order: list[str] = []
    holding = threading.Event()

    def holder() -> None:
        with run_lock(engine):
            holding.set()
            time.sleep(0.6)
            order.append("holder done")

    t = threading.Thread(target=holder)
    t.start()
    holding.wait(5)
    with run_lock(engine, timeout=10):
        order.append("waiter in")
    t.join()
    assert order == ["holder done", "waiter in"]


def test_concurrent_runs_do_not_interleave(engine: Engine) -> None:
    """Two runs started together: one waits, and its whole run comes after the other's."""
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def one(n: int) -> None:
        try:
            start.wait(5)
            run_with(engine, [bundle(cvm(i)) for i in range(n, n + 200)], lock_timeout=60)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(n,)) for n in (0, 100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    runs = table_of(SyncRun).c
    with engine.connect() as conn:
        rows = conn.execute(
            select(runs.status, runs.started_at, runs.finished_at, runs.created).order_by(runs.id)
        ).all()
    assert [r.status for r in rows] == ["succeeded", "succeeded"]
    assert rows[0].finished_at <= rows[1].started_at
    # Whichever ran second saw the first one's CVMs: 100 overlap, 100 are new.
    assert rows[1].created == 100
