"""Database trouble: the PostgreSQL connection of a run is terminated in the middle of its work.

A hook inside the run calls ``pg_terminate_backend`` from another connection, at a chosen point:
while staging pages, after the CVM writes of the apply transaction, after its deletions, or just
before its ledger update. The run must fail with the database's error, nothing half-applied may be
visible, the ledger must say ``failed`` (or, if even that cannot be written, the next run closes
the row), and the next run must record exactly what the failed one did not.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

import sync.run as run_module
import sync.store.apply as apply_module
import sync.store.staging as staging_module
from sync.errors import RunLockedError
from sync.store.engine import make_engine, normalize_database_url
from sync.store.lock import run_lock
from sync.store.migrate import upgrade
from tests.reliability.conftest import Before, Harness, new_harness

pytestmark = pytest.mark.postgres


@dataclass
class Pg:
    """A harness whose connections carry a private ``application_name``, and an admin engine."""

    harness: Harness
    admin: Engine
    application_name: str

    def terminate(self, conn: Connection) -> None:
        """Terminate the server process behind ``conn`` (its next statement fails)."""
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with self.admin.connect() as admin:
            assert admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()

    def terminate_lock_holder(self) -> None:
        """Terminate the connection holding the run's advisory lock; wait until it is gone."""
        query = text(
            "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND a.application_name = :name"
        )
        with self.admin.connect() as admin:
            (pid,) = admin.execute(query, {"name": self.application_name}).scalars().all()
            assert admin.execute(text("SELECT pg_terminate_backend(:p, 5000)"), {"p": pid}).scalar()

    def terminate_all(self) -> int:
        """Terminate every connection of the harness's engine (the run lock's included)."""
        with self.admin.connect() as admin:
            return len(
                admin.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": self.application_name},
                ).all()
            )


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Pg]:
    name = f"phala-sync-reliability-{uuid.uuid4().hex[:10]}"
    url = make_url(postgres_url).update_query_dict({"application_name": name})
    engine = make_engine(url)
    upgrade(engine)
    admin = create_engine(normalize_database_url(postgres_url))
    try:
        yield Pg(new_harness(engine), admin, name)
    finally:
        engine.dispose()
        admin.dispose()


def once(
    fn: Callable[..., Any],
    when: Callable[..., bool],
    action: Callable[..., None],
    *,
    before: bool,
) -> Callable[..., Any]:
    """``fn`` wrapped to run ``action(*args)`` once, before or after the first call that
    ``when(*args)`` accepts."""
    fired = False

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        nonlocal fired
        hit = not fired and when(*args, **kwargs)
        if hit and before:
            fired = True
            action(*args, **kwargs)
        result = fn(*args, **kwargs)
        if hit and not before:
            fired = True
            action(*args, **kwargs)
        return result

    return wrapped


def is_cvm(applier: Any, *_: Any, **__: Any) -> bool:
    return bool(applier.spec.entity_type == "cvm")


def always(*_: Any, **__: Any) -> bool:
    return True


def third_call() -> Callable[..., bool]:
    calls = iter(range(1, 1000))
    return lambda *_, **__: next(calls) == 3


def hook(pg: Pg, monkeypatch: pytest.MonkeyPatch, point: str) -> None:
    """Terminate the run's connection at ``point``."""
    applier = apply_module._EntityApplier

    def kill_applier_conn(self: Any, *_: Any) -> None:
        pg.terminate(self.conn)

    def kill_conn(conn: Connection, *_: Any, **__: Any) -> None:
        pg.terminate(conn)

    def kill_all(*_: Any) -> None:
        assert pg.terminate_all() >= 2  # the applying connection and the lock's

    # Where to patch, which calls to watch, what to do at the first one, and whether before it.
    hooks: dict[str, tuple[Any, str, Callable[..., bool], Callable[..., None], bool]] = {
        # Only changed items are staged: the evolve step's CVMs, in the stager's bulk write.
        "while staging": (staging_module, "insert_tuples", always, kill_conn, True),
        "after the CVM writes": (applier, "_flush", is_cvm, kill_applier_conn, False),
        "after the CVM deletions": (applier, "infer_deletions", is_cvm, kill_applier_conn, False),
        # The run's apply calls finish_run by the name sync.run imported.
        "before the ledger update": (run_module, "finish_run", always, kill_conn, True),
        "every connection, mid-apply": (applier, "_flush", is_cvm, kill_all, False),
    }
    owner, name, when, action, before = hooks[point]
    monkeypatch.setattr(owner, name, once(getattr(owner, name), when, action, before=before))


POINTS = [
    "while staging",
    "after the CVM writes",
    "after the CVM deletions",
    "before the ledger update",
    "every connection, mid-apply",
]


def lost(message: str) -> bool:
    """The server's "terminating connection", or the driver's own word when it noticed first."""
    return "terminat" in message or "connection is lost" in message


@pytest.mark.parametrize("point", POINTS)
def test_connection_lost_fails_cleanly(pg: Pg, monkeypatch: pytest.MonkeyPatch, point: str) -> None:
    h = pg.harness
    h.baseline_and_step()
    before = Before.of(h.engine)
    hook(pg, monkeypatch, point)
    with pytest.raises(DBAPIError) as info:
        h.run()
    assert lost(str(info.value.orig))
    failed = before.assert_only_a_failed_run_added(h.engine)
    assert lost(failed["error"]), failed["error"]
    monkeypatch.undo()
    # The lock went with the run (even when its own connection was terminated).
    with run_lock(h.engine, timeout=60):
        pass
    assert len(h.expect(h.run())) >= 20


def test_a_run_that_loses_its_lock_does_not_go_on_unprotected(
    pg: Pg, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = pg.harness
    h.baseline_and_step()
    second: list[str] = []

    def second_run() -> None:
        try:
            second.append(h.run(lock_timeout=0).status)
        except RunLockedError:
            second.append("refused")

    def intrude(*_: Any) -> None:
        pg.terminate_lock_holder()
        # Another process would start it; a thread has its own event loop, as a process would.
        other = threading.Thread(target=second_run)
        other.start()
        other.join()

    # The third page staged is a CVM page (the CVM listing comes first and has more pages).
    stage_page = staging_module.Stager.stage
    wrapped = once(stage_page, third_call(), intrude, before=True)
    monkeypatch.setattr(staging_module.Stager, "stage", wrapped)
    try:
        first = h.run().status
    except Exception as exc:  # failing because the lock was lost is a correct outcome
        first = type(exc).__name__
    # Either the second run was refused, or the first one noticed the lost lock and failed.
    assert second == ["refused"] or first != "succeeded", (first, second)
