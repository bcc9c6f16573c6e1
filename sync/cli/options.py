"""What several commands share: their common options and the database they open."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any, Literal, TypeVar

import click
from sqlalchemy import Engine

from sync.errors import StoreError
from sync.settings import Settings
from sync.store import migrate
from sync.store.engine import make_engine, normalize_database_url

F = TypeVar("F", bound=Callable[..., Any])


def database_option(f: F) -> F:
    return click.option(
        "--database-url",
        metavar="URL",
        help="sqlite:///path/file.db or postgresql://user@host:5432/db "
        "[env PHALA_SYNC_DATABASE_URL; default sqlite:///phala-sync.db]",
    )(f)


def migrate_option(f: F) -> F:
    return click.option(
        "--migrate",
        is_flag=True,
        default=None,
        help="Upgrade a database at an older schema revision when a run starts [env "
        "PHALA_SYNC_MIGRATE]. An empty database is always created.",
    )(f)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(f)


#: What :func:`open_database` asks of the schema: at head (``current``, the query commands), one
#: a run can start on (``runnable``: empty, at head, or older with ``migrate``), or nothing.
SchemaCheck = Literal["current", "runnable", "none"]


@contextlib.contextmanager
def open_database(settings: Settings, *, schema: SchemaCheck = "current") -> Iterator[Engine]:
    """An engine on the configured database, whose schema passed the ``schema`` check."""
    url = normalize_database_url(settings.database_url)
    path = url.database if url.get_backend_name() == "sqlite" else None
    missing = bool(path) and path != ":memory:" and not Path(str(path)).exists()
    if path and path != ":memory:":
        if schema == "current" and missing:
            raise StoreError(
                f"no database at {path}: create it with `phala-sync db upgrade` or a first "
                "`phala-sync sync` (or point --database-url / PHALA_SYNC_DATABASE_URL at an "
                "existing one)"
            )
        if not Path(path).absolute().parent.is_dir():
            raise StoreError(
                f"cannot create the database {path}: the directory "
                f"{Path(path).absolute().parent} does not exist"
            )
    engine = make_engine(url)
    try:
        if schema == "current":
            migrate.require_current(engine)
        elif schema == "runnable" and not missing:  # a missing file: the first run creates it
            migrate.check_schema(engine, migrate=settings.migrate)
        yield engine
    finally:
        engine.dispose()


def utc_day(ctx: click.Context, param: click.Parameter, value: str | None) -> date | None:
    """Click callback: a ``--since``/``--until`` value as a date (a UTC day)."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a day such as 2026-04-15") from None
