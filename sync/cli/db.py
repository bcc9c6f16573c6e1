"""``phala-sync db``: create, migrate and inspect the database schema (Alembic)."""

from __future__ import annotations

from collections.abc import Callable

import click
from sqlalchemy import Engine

from sync.cli.options import database_option, open_database
from sync.settings import build_settings
from sync.store import migrate, views
from sync.store.engine import normalize_database_url, safe_database_url


@click.group()
def db() -> None:
    """Create and migrate the database schema (Alembic)."""


def _migrate(
    database_url: str | None, step: Callable[[Engine], None]
) -> tuple[str, str | None, str | None]:
    """Run one Alembic ``step``; returns where (password hidden) and the revisions around it."""
    settings = build_settings({"database_url": database_url})
    with open_database(settings, schema="none") as engine:
        before = migrate.current_revision(engine)
        step(engine)
        after = migrate.current_revision(engine)
    return safe_database_url(settings.database_url), before, after


@db.command()
@click.argument("revision", default="head")
@database_option
def upgrade(revision: str, database_url: str | None) -> None:
    """Migrate the database up to REVISION (default: the latest, head)."""
    where, before, after = _migrate(database_url, lambda e: migrate.upgrade(e, revision))
    if before == after:
        click.echo(f"{where} is already at {after}")
    else:
        click.echo(f"upgraded {where} from {before or 'an empty database'} to {after}")


@db.command()
@click.argument("revision")
@database_option
def downgrade(revision: str, database_url: str | None) -> None:
    """Migrate the database down to REVISION ('base' removes every table)."""
    where, before, after = _migrate(database_url, lambda e: migrate.downgrade(e, revision))
    click.echo(f"downgraded {where} from {before} to {after or 'base (empty)'}")


@db.command()
@database_option
def current(database_url: str | None) -> None:
    """Show the database's schema revision and this release's head."""
    settings = build_settings({"database_url": database_url})
    with open_database(settings, schema="none") as engine:
        revision = migrate.current_revision(engine)
    head = migrate.head_revision()
    if revision is None:
        click.echo(f"empty database (head is {head}): run `phala-sync db upgrade`")
    elif revision == head:
        click.echo(f"{revision} (head)")
    else:
        click.echo(f"{revision} (head is {head}: run `phala-sync db upgrade`)")


@db.command("grant-reader")
@click.argument("role")
@database_option
def grant_reader(role: str, database_url: str | None) -> None:
    """Give the PostgreSQL ROLE read-only access: SELECT on every table and view (a BI tool's).

    The role must exist. Tables and views that later migrations create are readable too (the
    schema's default privileges), when the migrations run as the user who ran this command.
    """
    settings = build_settings({"database_url": database_url})
    views.require_postgresql(normalize_database_url(settings.database_url).get_backend_name())
    with open_database(settings, schema="none") as engine:
        schema = views.grant_reader(engine, role)
    where = safe_database_url(settings.database_url)
    click.echo(
        f"granted {role} SELECT on every table and view of schema {schema} in {where} "
        "(and on those later migrations create)"
    )
