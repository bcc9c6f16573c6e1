"""Alembic, driven from code: upgrade, downgrade, current and head for a given engine."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

import migrations
from sync.errors import IncompatibleSchemaError


def alembic_config() -> Config:
    """An Alembic config pointing at the packaged ``migrations`` directory."""
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str) -> None:
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def require_current(engine: Engine) -> None:
    """Raise :class:`IncompatibleSchemaError` unless the database is at this release's head."""
    current = current_revision(engine)
    head = head_revision()
    if current != head:
        found = "empty (no migration applied)" if current is None else f"at revision {current}"
        raise IncompatibleSchemaError(
            f"the database is {found}, this release needs {head}: run `phala-sync db upgrade`"
        )
