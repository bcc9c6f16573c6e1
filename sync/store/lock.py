"""Run locks: a PostgreSQL advisory lock, or a lock file beside SQLite.

Two kinds, both per database (and, on PostgreSQL, per schema: an inventory lives in one schema):

- the *database* lock (``run_lock(engine)``): held while a run opens its ledger row and while it
  applies, the short steps that write what targets share (nodes, workspaces, creators);
- a *target* lock (``run_lock(engine, target=T)``): held for a whole run of target ``T``, so one
  target never has two runs at once while different targets fetch and stage side by side.

Both are released by the operating system or the server when the holding process dies, so a killed
run never leaves the database locked. A second run waits up to ``timeout`` seconds, then raises
:class:`~sync.errors.RunLockedError` naming the run that holds the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, select, text

from models import SyncRun, table_of
from sync.errors import RunLockedError
from sync.store.engine import safe_database_url

#: Advisory lock class: the bytes "phsy" as a signed 32-bit integer. The second key is a hash of
#: the current schema, so inventories in separate schemas of one database do not block each other.
ADVISORY_CLASS = int.from_bytes(b"phsy", "big", signed=True)
#: A target lock's first key: a hash of the schema and the target's name (the second key is the
#: schema's, as for the database lock).
TARGET_CLASS = int.from_bytes(b"phst", "big", signed=True)
_TRY_LOCK = text("SELECT pg_try_advisory_lock(:k, hashtext(current_schema()))")
_UNLOCK = text("SELECT pg_advisory_unlock(:k, hashtext(current_schema()))")
_TRY_TARGET_LOCK = text(
    "SELECT pg_try_advisory_lock(hashtext(:t) # :k, hashtext(current_schema()))"
)
_UNLOCK_TARGET = text("SELECT pg_advisory_unlock(hashtext(:t) # :k, hashtext(current_schema()))")
_POLL_SECONDS = 0.2


def _holder(engine: Engine, target: str | None) -> str:
    runs = table_of(SyncRun).c
    query = (
        select(runs.id, runs.target, runs.started_at)
        .where(runs.status == "running")
        .order_by(runs.id.desc())
        .limit(1)
    )
    if target is not None:
        query = query.where(runs.target == target)
    try:
        with engine.connect() as conn:
            row = conn.execute(query).first()
    except Exception:
        row = None
    if row is None:
        return "another sync run"
    return f"run {row.id} (target {row.target!r}, started {row.started_at:%Y-%m-%d %H:%M:%S} UTC)"


def _locked(engine: Engine, timeout: float, target: str | None = None) -> RunLockedError:
    which = "the run lock" if target is None else f"the run lock of target {target!r}"
    return RunLockedError(
        f"{_holder(engine, target)} holds {which} on {safe_database_url(engine.url)}; "
        f"waited {timeout:g} s. Wait for it to finish, or raise PHALA_SYNC_LOCK_TIMEOUT "
        "(--lock-timeout) to wait longer"
    )


@contextlib.contextmanager
def _postgres_lock(engine: Engine, timeout: float, target: str | None) -> Iterator[None]:
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    if target is None:
        lock, unlock = _TRY_LOCK, _UNLOCK
        params: dict[str, object] = {"k": ADVISORY_CLASS}
    else:
        lock, unlock = _TRY_TARGET_LOCK, _UNLOCK_TARGET
        params = {"k": TARGET_CLASS, "t": target}
    try:
        deadline = time.monotonic() + timeout
        while not conn.execute(lock, params).scalar_one():
            if time.monotonic() >= deadline:
                raise _locked(engine, timeout, target)
            time.sleep(_POLL_SECONDS)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                conn.execute(unlock, params)
    finally:
        conn.close()


@contextlib.contextmanager
def _file_lock(engine: Engine, path: Path, timeout: float, target: str | None) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise _locked(engine, timeout, target) from None
                time.sleep(_POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _target_suffix(target: str) -> str:
    return hashlib.blake2b(target.encode(), digest_size=6).hexdigest()


@contextlib.contextmanager
def run_lock(engine: Engine, *, timeout: float = 0.0, target: str | None = None) -> Iterator[None]:
    """Hold the database's run lock, or with ``target`` that target's, for the ``with`` block."""
    if engine.dialect.name == "postgresql":
        with _postgres_lock(engine, timeout, target):
            yield
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield  # a private in-memory database: nobody else can reach it
        return
    suffix = ".lock" if target is None else f".target-{_target_suffix(target)}.lock"
    with _file_lock(engine, Path(database + suffix), timeout, target):
        yield
