"""Alembic environment: the metadata of ``models``, the URL from Settings or a handed-in connection.

Tests and ``sync.store.migrate`` pass an open connection as ``config.attributes["connection"]``;
the ``alembic`` command line falls back to ``PHALA_SYNC_DATABASE_URL`` (see ``sync.settings``).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    from sync.settings import Settings
    from sync.store.engine import make_engine

    engine = make_engine(Settings().database_url)
    with engine.connect() as conn:
        _configure(conn)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
