"""Database engines: URL parsing, the driver mapping, and per-dialect connection settings."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from sync.errors import DatabaseUrlError

SUPPORTED = "sqlite:///path/to/file.db or postgresql://user@host:5432/dbname"


def normalize_database_url(url: str) -> URL:
    """Parse ``url`` and map the usual forms to the drivers phala-sync installs.

    ``postgresql://`` and ``postgres://`` use psycopg 3; ``sqlite:///file`` the stdlib sqlite3.
    """
    text = url.strip()
    if text.startswith("postgres://"):
        text = "postgresql://" + text.removeprefix("postgres://")
    try:
        parsed = make_url(text)
    except ArgumentError as exc:
        raise DatabaseUrlError(f"cannot parse database URL: {exc}; expected {SUPPORTED}") from None
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        if parsed.drivername in ("postgresql", "postgresql+psycopg2", "postgresql+psycopg"):
            return parsed.set(drivername="postgresql+psycopg")
        raise DatabaseUrlError(
            f"unsupported PostgreSQL driver {parsed.drivername!r}: use postgresql://..."
        )
    if backend == "sqlite":
        if parsed.drivername not in ("sqlite", "sqlite+pysqlite"):
            raise DatabaseUrlError(
                f"unsupported SQLite driver {parsed.drivername!r}: use sqlite:///"
            )
        return parsed
    raise DatabaseUrlError(f"unsupported database {backend!r}: expected {SUPPORTED}")


def safe_database_url(url: str | URL) -> str:
    """The URL with any password hidden, for messages and logs."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except ArgumentError:
        return "<unparseable database URL>"
    return parsed.render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _json_serializer(value: Any) -> str:
    return orjson.dumps(value).decode()


def make_engine(url: str | URL) -> Engine:
    """An engine for ``url`` (see :func:`normalize_database_url`); no connection is made yet."""
    parsed = normalize_database_url(
        url.render_as_string(hide_password=False) if isinstance(url, URL) else url
    )
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, json_serializer=_json_serializer)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_pre_ping=True, json_serializer=_json_serializer)
