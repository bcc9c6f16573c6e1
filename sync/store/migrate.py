"""Alembic, driven from code: upgrade, downgrade, current and head for a given engine.

What a run does with the schema it finds (:func:`ensure_schema`, called with the run lock held so
that concurrent first runs cannot race):

- an empty database (no migration applied): create the schema at head, and say so;
- a database at head: nothing;
- a database at an older revision of this release's chain: refuse, naming both revisions and
  `phala-sync db upgrade`, unless ``migrate`` (``--migrate``, ``PHALA_SYNC_MIGRATE``) allows
  upgrading it on start;
- a revision this release does not know (a newer release migrated it): refuse, always.
"""

from __future__ import annotations

import logging
from enum import Enum
from pathlib import Path
from types import ModuleType

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

import migrations
from sync.errors import IncompatibleSchemaError

log = logging.getLogger(__name__)

#: The Alembic script directory (the packaged ``migrations``); tests point it at a copy.
SCRIPT_LOCATION = Path(migrations.__file__).parent


class SchemaState(Enum):
    """How a database's schema revision compares with this release's head."""

    EMPTY = "empty"
    CURRENT = "current"
    OLDER = "older"
    UNKNOWN = "unknown"


def alembic_config() -> Config:
    """An Alembic config pointing at the packaged ``migrations`` directory."""
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def revision_module(revision: str) -> ModuleType:
    """The module of one revision (its file name is not an importable name), as Alembic loads
    it: for tools and tests that reuse a revision's SQL (e.g. 0005's backfill)."""
    script = ScriptDirectory.from_config(alembic_config()).get_revision(revision)
    assert script is not None, revision
    return script.module


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


def schema_state(current: str | None) -> SchemaState:
    """Where revision ``current`` (None: nothing applied) stands against this release's chain."""
    if current is None:
        return SchemaState.EMPTY
    script = ScriptDirectory.from_config(alembic_config())
    if current == script.get_current_head():
        return SchemaState.CURRENT
    known = {rev.revision for rev in script.walk_revisions()}
    return SchemaState.OLDER if current in known else SchemaState.UNKNOWN


def _older_error(current: str, head: str) -> IncompatibleSchemaError:
    return IncompatibleSchemaError(
        f"the database is at revision {current}, this release needs {head}: run "
        "`phala-sync db upgrade` (or start with --migrate / PHALA_SYNC_MIGRATE=true to upgrade "
        "it on start)"
    )


def _unknown_error(current: str, head: str) -> IncompatibleSchemaError:
    return IncompatibleSchemaError(
        f"the database is at revision {current}, which this release does not know (its head is "
        f"{head}): a newer phala-sync migrated it; upgrade phala-sync, or `phala-sync db "
        "downgrade` with the newer release first"
    )


def check_schema(engine: Engine, *, migrate: bool) -> SchemaState:
    """Raise what :func:`ensure_schema` would refuse, without changing anything.

    For a command's start, before any run: an empty database passes (the first run creates it).
    """
    current = current_revision(engine)
    state = schema_state(current)
    if current is not None and state is SchemaState.UNKNOWN:
        raise _unknown_error(current, head_revision())
    if current is not None and state is SchemaState.OLDER and not migrate:
        raise _older_error(current, head_revision())
    return state


def ensure_schema(engine: Engine, *, migrate: bool) -> str | None:
    """Bring an empty database (or, with ``migrate``, an older one) to head; None if at head.

    Returns what was done, as the one line it also logs. Call it with the run lock held: two
    first runs on one empty database would otherwise both create the tables.
    Raises :class:`IncompatibleSchemaError` for an older database without ``migrate`` and for a
    revision this release does not know.
    """
    current = current_revision(engine)
    state = check_schema(engine, migrate=migrate)
    if state is SchemaState.CURRENT:
        return None
    upgrade(engine)
    head = head_revision()
    if state is SchemaState.EMPTY:
        done = f"created the schema at revision {head} in the empty database"
    else:
        done = f"upgraded the schema from revision {current} to {head} (migrate on start)"
    log.warning("%s", done)
    return done


def require_current(engine: Engine) -> None:
    """Raise :class:`IncompatibleSchemaError` unless the database is at this release's head.

    For the commands that only read (``runs``, ``inventory``...): they never create or migrate.
    """
    current = current_revision(engine)
    head = head_revision()
    state = schema_state(current)
    if current is None:
        raise IncompatibleSchemaError(
            f"the database is empty (no migration applied), this release needs {head}: run "
            "`phala-sync db upgrade`, or a first `phala-sync sync`"
        )
    if state is SchemaState.UNKNOWN:
        raise _unknown_error(current, head)
    if state is SchemaState.OLDER:
        raise _older_error(current, head)
