"""One run at a time per database: a PostgreSQL advisory lock, or a lock file beside SQLite.

On PostgreSQL the lock is per database and schema (an inventory lives in one schema).

Both are released by the operating system or the server when the holding process dies, so a killed
run never leaves the database locked. A second run waits up to ``timeout`` seconds, then raises
:class:`~sync.errors.RunLockedError` naming the run that holds the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, select, text

from models import SyncRun, table_of
from sync.errors import RunLockedError
from sync.store.engine import redact

#: Advisory lock class: the bytes "phsy" as a signed 32-bit integer. The second key is a hash of
#: the current schema, so inventories in separate schemas of one database do not block each other.
ADVISORY_CLASS = int.from_bytes(b"phsy", "big", signed=True)
_TRY_LOCK = text("SELECT pg_try_advisory_lock(:k, hashtext(current_schema()))")
_UNLOCK = text("SELECT pg_advisory_unlock(:k, hashtext(current_schema()))")
_POLL_SECONDS = 0.2


def _holder(engine: Engine) -> str:
    runs = table_of(SyncRun).c
    try:
        with engine.connect() as conn:
            row = conn.execute(
                select(runs.id, runs.target, runs.started_at)
                .where(runs.status == "running")
                .order_by(runs.id.desc())
                .limit(1)
            ).first()
    except Exception:
        row = None
    if row is None:
        return "another sync run"
    return f"run {row.id} (target {row.target!r}, started {row.started_at:%Y-%m-%d %H:%M:%S} UTC)"


def _locked(engine: Engine, timeout: float) -> RunLockedError:
    return RunLockedError(
        f"{_holder(engine)} holds the run lock on {redact(engine.url)}; "
        f"waited {timeout:g} s. Wait for it to finish, or raise PHALA_SYNC_LOCK_TIMEOUT "
        "(--lock-timeout) to wait longer"
    )


@contextlib.contextmanager
def _postgres_lock(engine: Engine, timeout: float) -> Iterator[None]:
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        deadline = time.monotonic() + timeout
        while not conn.execute(_TRY_LOCK, {"k": ADVISORY_CLASS}).scalar_one():
            if time.monotonic() >= deadline:
                raise _locked(engine, timeout)
            time.sleep(_POLL_SECONDS)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                conn.execute(_UNLOCK, {"k": ADVISORY_CLASS})
    finally:
        conn.close()


@contextlib.contextmanager
def _file_lock(engine: Engine, path: Path, timeout: float) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise _locked(engine, timeout) from None
                time.sleep(_POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def run_lock(engine: Engine, *, timeout: float = 0.0) -> Iterator[None]:
    """Hold the database's run lock for the duration of the ``with`` block."""
    if engine.dialect.name == "postgresql":
        with _postgres_lock(engine, timeout):
            yield
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield  # a private in-memory database: nobody else can reach it
        return
    with _file_lock(engine, Path(database + ".lock"), timeout):
        yield
