"""``grant_reader``: a PostgreSQL role that can read every view and table and change nothing,
also after a later migration; a clear refusal on SQLite."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy.exc
from click.testing import CliRunner
from sqlalchemy import Connection, Engine, text

from sync.cli import cli
from sync.errors import ConfigError
from sync.store.engine import make_engine
from sync.store.migrate import upgrade
from sync.store.views import VIEW_NAMES, grant_reader
from tests.conftest import NEXT_REVISION
from tests.sync.store.builders import bundle, cvm, run_with

WRITES = (
    "INSERT INTO sync_runs (target, api_version, status, started_at) "
    "VALUES ('x', 'v', 'running', CURRENT_TIMESTAMP)",
    "UPDATE cvms SET name = 'changed'",
    "DELETE FROM cvm_history",
    "CREATE TABLE reader_was_here (id integer)",
    "DROP VIEW fleet_daily",
    "ALTER TABLE cvms ADD COLUMN reader_was_here integer",
    "CREATE VIEW reader_view AS SELECT 1 AS one",
)


@pytest.fixture
def role(postgres_url: str) -> Iterator[str]:
    """A fresh role (unique name), dropped with everything granted to it afterwards."""
    name = f"reader_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE ROLE "{name}" NOLOGIN'))
    try:
        yield name
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP OWNED BY "{name}"'))
            conn.execute(text(f'DROP ROLE "{name}"'))
        admin.dispose()


def as_role(conn: Connection, role: str) -> None:
    conn.execute(text(f'SET ROLE "{role}"'))


def assert_read_only(engine: Engine, role: str, readable: tuple[str, ...]) -> None:
    for name in readable:
        with engine.connect() as conn:
            as_role(conn, role)
            conn.execute(text(f"SELECT * FROM {name}")).all()
    for statement in WRITES:
        with engine.connect() as conn:
            as_role(conn, role)
            with pytest.raises(
                sqlalchemy.exc.ProgrammingError, match=r"permission denied|must be owner"
            ):
                conn.execute(text(statement))


@pytest.mark.postgres
def test_the_reader_selects_everything_and_changes_nothing(
    postgres_url: str, role: str, request: pytest.FixtureRequest
) -> None:
    engine = make_engine(postgres_url)
    try:
        upgrade(engine)
        run_with(engine, [bundle(cvm(i)) for i in range(3)])
        result = CliRunner().invoke(
            cli, ["db", "grant-reader", role, "--database-url", postgres_url]
        )
        assert result.exit_code == 0, result.output
        assert f"granted {role} SELECT" in result.output
        tables = ("cvms", "cvm_history", "sync_runs", "nodes", "change_events")
        assert_read_only(engine, role, (*VIEW_NAMES, *tables))
        with engine.connect() as conn:
            as_role(conn, role)
            assert conn.execute(text("SELECT COUNT(*) FROM current_cvms")).scalar_one() == 3

        request.getfixturevalue("next_release")  # the code is now one revision ahead
        upgrade(engine)  # the later migration creates a table (zz_probe): readable, not writable
        assert_read_only(engine, role, (*VIEW_NAMES, *tables, "zz_probe"))
        with engine.connect() as conn:
            as_role(conn, role)
            with pytest.raises(sqlalchemy.exc.ProgrammingError, match="permission denied"):
                conn.execute(text("INSERT INTO zz_probe (id) VALUES (1)"))
        with engine.connect() as conn:
            as_role(conn, role)
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
            assert version == NEXT_REVISION
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_an_unknown_role_is_named(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("roles are PostgreSQL's")
    with pytest.raises(ConfigError, match=r"role 'nobody_[0-9a-f]+' does not exist: create it"):
        grant_reader(engine, f"nobody_{uuid.uuid4().hex[:8]}")


def test_sqlite_is_refused_clearly(sqlite_url: str) -> None:
    result = CliRunner().invoke(cli, ["db", "grant-reader", "bi", "--database-url", sqlite_url])
    assert result.exit_code == 1
    assert "grant-reader needs PostgreSQL: sqlite has no roles" in result.output
