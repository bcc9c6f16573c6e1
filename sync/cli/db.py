"""``phala-sync db``: create, migrate and inspect the database schema (Alembic)."""

from __future__ import annotations

import click

from sync.cli.options import database_option, open_database
from sync.settings import build_settings
from sync.store import migrate
from sync.store.engine import safe_database_url


@click.group()
def db() -> None:
    """Create and migrate the database schema (Alembic)."""


@db.command()
@click.argument("revision", default="head")
@database_option
def upgrade(revision: str, database_url: str | None) -> None:
    """Migrate the database up to REVISION (default: the latest, head)."""
    settings = build_settings({"database_url": database_url})
    with open_database(settings, schema="none") as engine:
        before = migrate.current_revision(engine)
        migrate.upgrade(engine, revision)
        after = migrate.current_revision(engine)
    where = safe_database_url(settings.database_url)
    if before == after:
        click.echo(f"{where} is already at {after}")
    else:
        click.echo(f"upgraded {where} from {before or 'an empty database'} to {after}")


@db.command()
@click.argument("revision")
@database_option
def downgrade(revision: str, database_url: str | None) -> None:
    """Migrate the database down to REVISION ('base' removes every table)."""
    settings = build_settings({"database_url": database_url})
    with open_database(settings, schema="none") as engine:
        before = migrate.current_revision(engine)
        migrate.downgrade(engine, revision)
        after = migrate.current_revision(engine)
    where = safe_database_url(settings.database_url)
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
