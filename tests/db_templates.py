"""Databases migrated to head without running the Alembic chain per test.

The chain costs about 0.25 s on SQLite and 0.7-1.3 s on PostgreSQL (more on a loaded machine), and
some 250 tests ask for a migrated database. So each test process (each xdist worker) runs the real
chain once per backend, into a template, and every test gets a copy:

- SQLite: the template is one migrated file; a test's database is a copy of it.
- PostgreSQL: every statement the chain sends while migrating an empty schema is recorded (the
  catalog reads included, in order, with their parameters); a test's private schema gets the same
  statements, sent over one connection in one transaction, without Alembic's Python work. A
  database created from a template database would be exact too, but CREATE DATABASE writes and
  syncs the whole database (1-3 s here under load): slower than the chain.

Checks that a copy is exactly the head schema: the template must reach this release's head; the
recorded statements must not name the template's schema; a first replay, into a schema made after
the template's was dropped, must give the same catalog (tables and their persistence, columns,
types, defaults, constraints, indexes, sequences) as the chain gave; each copy's revision is
checked against the template's by the ``engine`` fixture.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from sync.store.engine import make_engine, normalize_database_url
from sync.store.migrate import current_revision, head_revision, upgrade


def _migrate_to_head(engine: Engine) -> str:
    """The real chain; returns the revision reached, which must be the scripts' head."""
    upgrade(engine)
    reached, head = current_revision(engine), head_revision()
    assert reached == head, f"the template reached revision {reached}, the head is {head}"
    return head


@dataclass(frozen=True)
class SqliteTemplate:
    """A SQLite file migrated to head by the real chain."""

    path: Path
    revision: str

    @classmethod
    def create(cls, directory: Path) -> SqliteTemplate:
        path = directory / "head.db"
        engine = make_engine(f"sqlite:///{path}")
        try:
            revision = _migrate_to_head(engine)
        finally:
            engine.dispose()
        # WAL mode: the last connection's close checkpoints the log into the file and removes
        # it, so the one file is the whole database.
        leftovers = sorted(p.name for p in directory.iterdir() if p != path)
        assert not leftovers, f"the SQLite template left {leftovers} beside {path}"
        return cls(path, revision)

    def copy_to(self, database: Path) -> None:
        assert not database.exists(), f"{database} exists: not copying the template over it"
        shutil.copyfile(self.path, database)


#: One statement as the chain sent it to the DB-API cursor: (statement, parameters, executemany).
Statement = tuple[str, Any, bool]

#: What the catalog says of the current schema: everything a migration can change.
_CATALOG_QUERIES = {
    "tables": """
        SELECT c.relname, c.relkind, c.relpersistence FROM pg_class c
        WHERE c.relnamespace = current_schema()::regnamespace ORDER BY 1""",
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated, a.attcompression
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = current_schema()::regnamespace AND a.attnum > 0
          AND NOT a.attisdropped
        ORDER BY 1, 2""",
    "constraints": """
        SELECT c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid) FROM pg_constraint k
        JOIN pg_class c ON c.oid = k.conrelid
        WHERE k.connamespace = current_schema()::regnamespace ORDER BY 1, 2""",
    "indexes": """
        SELECT i.indexname, replace(i.indexdef, current_schema() || '.', '') FROM pg_indexes i
        WHERE i.schemaname = current_schema() ORDER BY 1""",
    "versions": "SELECT version_num FROM alembic_version ORDER BY 1",
}


def catalog(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """The catalog of the schema ``engine``'s connections use (see :data:`_CATALOG_QUERIES`)."""
    with engine.connect() as conn:
        return {
            name: [tuple(row) for row in conn.execute(text(query))]
            for name, query in _CATALOG_QUERIES.items()
        }


@contextmanager
def _recording(engine: Engine) -> Iterator[list[Statement]]:
    sent: list[Statement] = []

    def record(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, many: bool
    ) -> None:
        sent.append((statement, parameters, many))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def schema_url(base: str, schema: str) -> str:
    """``base`` with its connections' search_path set to ``schema``."""
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@dataclass(frozen=True)
class PostgresTemplate:
    """The statements by which the real chain migrated an empty schema to head."""

    statements: Sequence[Statement]
    revision: str

    @classmethod
    def create(cls, base_url: str) -> PostgresTemplate:
        """Record the chain in a scratch schema, then prove a replay gives the same catalog."""
        admin = create_engine(normalize_database_url(base_url), isolation_level="AUTOCOMMIT")
        schema = f"tpl_{uuid.uuid4().hex[:12]}"
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            chained = make_engine(schema_url(base_url, schema))
            try:
                with _recording(chained) as sent:
                    revision = _migrate_to_head(chained)
                expected = catalog(chained)
            finally:
                chained.dispose()
                with admin.connect() as conn:
                    conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            named = [s for s, _, _ in sent if schema in s]
            assert not named, f"the chain named its schema {schema}: {named[:1]}"
            template = cls(tuple(sent), revision)

            check = f"tpl_{uuid.uuid4().hex[:12]}"
            with admin.connect() as conn:
                conn.execute(text(f'CREATE SCHEMA "{check}"'))
            replayed = make_engine(schema_url(base_url, check))
            try:
                template.replay(replayed)
                got = catalog(replayed)
            finally:
                replayed.dispose()
                with admin.connect() as conn:
                    conn.execute(text(f'DROP SCHEMA "{check}" CASCADE'))
            for part, rows in expected.items():
                assert got[part] == rows, f"a replay of the chain differs from it in {part}"
            return template
        finally:
            admin.dispose()

    def replay(self, engine: Engine) -> None:
        """Send the chain's statements, as it sent them, into the empty schema of ``engine``."""
        with engine.begin() as conn:
            # Not a statement of the chain: the commit need not wait for the disk (a test's
            # schema does not outlive the server).
            conn.exec_driver_sql("SET LOCAL synchronous_commit TO off")
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            for statement, parameters, many in self.statements:
                send: Callable[..., Any] = cursor.executemany if many else cursor.execute
                send(statement, parameters)
            cursor.close()
