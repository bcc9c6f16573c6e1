"""Databases for the benchmark.

The measured runs get a fresh PostgreSQL database per fleet on the local server
(:func:`recreate_database`, ``phala_sync_bench_<size>``, dropped afterwards), migrated by the CLI.
``--profile`` uses a private schema (the tests' ``options=-csearch_path=<schema>`` trick) in a
database of its own, ``phala_sync_bench``, created when missing (:func:`fresh_database`). Databases
of their own because the run lock is a PostgreSQL advisory lock, which is per database: a
benchmark run in the tests' database would hold the lock that concurrent test runs of other
engineers need (and wait for theirs).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from sync.store.engine import normalize_database_url

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/phala_sync_bench"
#: The server the measured runs use: each fleet gets a database of its own on it.
DEFAULT_POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def ensure_postgres_database(url: str) -> None:
    """Create the URL's database if it does not exist (connecting to ``postgres`` to do so)."""
    parsed = normalize_database_url(url)
    name = parsed.database
    if not name:
        raise SystemExit(f"the PostgreSQL URL names no database: {url}")
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).first()
            if exists is None:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()


@contextlib.contextmanager
def fresh_database(
    kind: str, postgres_url: str, *, statement_timeout_s: float = 0
) -> Iterator[str]:
    """The URL of an empty database of ``kind`` (``sqlite``/``postgres``), dropped afterwards.

    ``statement_timeout_s`` (PostgreSQL, 0: none) bounds every statement of the URL's sessions,
    so that a pathological plan fails its run instead of stalling the benchmark for hours.
    """
    if kind == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="phala-sync-bench-"))
        try:
            yield f"sqlite:///{folder / 'bench.db'}"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    if kind != "postgres":
        raise ValueError(f"unknown database kind {kind!r}")
    base = normalize_database_url(postgres_url)
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        options = f"-csearch_path={schema}"
        if statement_timeout_s:
            options += f" -cstatement_timeout={int(statement_timeout_s * 1000)}"
        url = make_url(base).update_query_dict({"options": options})
        try:
            yield url.render_as_string(hide_password=False)
        finally:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


def database_url(server_url: str, name: str) -> str:
    """``server_url`` with its database replaced by ``name`` (as text, password kept out)."""
    url = make_url(server_url).set(database=name)
    if url.password is not None:
        raise SystemExit("the PostgreSQL URL must carry no password (use trust auth or .pgpass)")
    return url.render_as_string(hide_password=True)


def _server_admin(server_url: str) -> Engine:
    return create_engine(
        normalize_database_url(server_url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )


def recreate_database(server_url: str, name: str) -> str:
    """``DROP DATABASE IF EXISTS name`` then ``CREATE DATABASE name``; returns its URL."""
    url = database_url(server_url, name)
    admin = _server_admin(server_url)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return url


def drop_database(server_url: str, name: str) -> None:
    admin = _server_admin(server_url)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def analyze_database(url: str) -> None:
    """``ANALYZE`` the whole database (PostgreSQL), as autovacuum would between runs."""
    engine = create_engine(normalize_database_url(url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
    finally:
        engine.dispose()


def server_settings(postgres_url: str) -> dict[str, str]:
    """The PostgreSQL settings that shape the figures (autovacuum is off on this machine kind)."""
    engine = create_engine(normalize_database_url(postgres_url))
    names = (
        "server_version",
        "autovacuum",
        "shared_buffers",
        "synchronous_commit",
        "fsync",
        "work_mem",
        "max_parallel_workers_per_gather",
    )
    try:
        with engine.connect() as conn:
            return {n: str(conn.execute(text(f"SHOW {n}")).scalar_one()) for n in names}
    finally:
        engine.dispose()
