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
from sync.settings import Settings, setting_choices, setting_help, setting_type
from sync.store.engine import make_engine, normalize_database_url

F = TypeVar("F", bound=Callable[..., Any])


def setting_option(name: str, *, default: Any = None) -> Callable[[F], F]:
    """The option ``--<name with dashes>`` for the setting ``name``, built from its declaration.

    Its type is the setting's (a ``Literal`` is a choice, a ``bool`` a flag), its help the
    field's description with the environment variable and the default. Not given, it is None and
    the setting comes from the environment; ``default`` gives the option a value of its own
    (``serve``'s lock timeout). Settings validates the value, once.
    """
    kind = setting_type(name)
    choices = setting_choices(name)
    options: dict[str, Any] = {"default": default, "help": setting_help(name, default=default)}
    if kind is bool:
        options["is_flag"] = True
    elif choices is not None:
        options["type"] = click.Choice(choices)
    elif kind in (int, float):
        options["type"] = kind
    else:  # text: a URL, a version, a directory (named by the setting's last word)
        options["metavar"] = name.rsplit("_", 1)[-1].upper()
    return click.option("--" + name.replace("_", "-"), **options)


def setting_options(names: tuple[str, ...], **defaults: Any) -> Callable[[F], F]:
    """:func:`setting_option` for each of ``names``, in that order (``defaults`` by name)."""

    def decorate(f: F) -> F:
        for name in reversed(names):
            f = setting_option(name, default=defaults.get(name))(f)
        return f

    return decorate


database_option = setting_option("database_url")


def retries_option(default: int) -> Callable[[F], F]:
    """``--retries``: the flow's ``fetch_retries``, a Prefect task's retries (not a setting)."""
    return click.option(
        "--retries",
        type=click.IntRange(0, 10),
        default=default,
        show_default=True,
        help="Restart a run's fetch this many times after a retriable failure.",
    )


def day_option(name: str, *, help: str) -> Callable[[F], F]:
    """A UTC day option (``--since``, ``--until``): a date, checked by :func:`utc_day`."""
    return click.option(name, metavar="DAY", callback=utc_day, help=help)


def file_option(*names: str, default: Path, help: str) -> Callable[[F], F]:
    """A file path option (not a directory) with a default file, shown in ``--help``."""
    return click.option(
        *names,
        type=click.Path(dir_okay=False, path_type=Path),
        default=default,
        show_default=True,
        help=help,
    )


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(f)


#: What :func:`open_database` asks of the schema: at head (``current``, the query commands), one
#: a run can start on (``runnable``: empty, at head, or older with ``migrate``), or nothing.
SchemaCheck = Literal["current", "runnable", "none"]


@contextlib.contextmanager
def open_database(
    settings: Settings,
    *,
    schema: SchemaCheck = "current",
    on_open: Callable[[Engine], None] | None = None,
) -> Iterator[Engine]:
    """An engine on the configured database, whose schema passed the ``schema`` check.

    ``on_open`` gets the engine before the check (which imports Alembic): ``sync`` sends its first
    requests from there.
    """
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
        if on_open is not None:
            on_open(engine)
        from sync.store import migrate  # Alembic: after on_open

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
