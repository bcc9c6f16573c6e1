"""The migration chain: one head, upgrade, models match migrations, down and up again; and what a
run does with the schema it finds (create, refuse, migrate on start)."""

from __future__ import annotations

import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from models import Base
from sync.errors import IncompatibleSchemaError
from sync.store.engine import make_engine
from sync.store.lock import run_lock
from sync.store.migrate import (
    alembic_config,
    check_schema,
    current_revision,
    downgrade,
    ensure_schema,
    head_revision,
    require_current,
    upgrade,
)
from tests.conftest import NEXT_REVISION

#: These tests are about the chain itself: ``engine`` runs it, no template copy.
pytestmark = pytest.mark.migration_chain


def test_single_head() -> None:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1


def test_upgrade_creates_every_table(engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert current_revision(engine) == head_revision()
    require_current(engine)


def test_models_match_migrations(engine: Engine) -> None:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_downgrade_and_upgrade_again(engine: Engine) -> None:
    downgrade(engine, "base")
    assert current_revision(engine) is None
    assert not set(Base.metadata.tables) & set(inspect(engine).get_table_names())
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, Base.metadata) == []


def test_unmigrated_database_is_refused_by_the_query_commands(sqlite_url: str) -> None:
    eng = make_engine(sqlite_url)
    with pytest.raises(IncompatibleSchemaError, match=r"empty .*phala-sync db upgrade"):
        require_current(eng)
    eng.dispose()


def test_a_first_run_creates_the_schema(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    eng = make_engine(database_url)
    try:
        done = ensure_schema(eng, migrate=False)
        head = head_revision()
        assert done == f"created the schema at revision {head} in the empty database"
        assert [r.getMessage() for r in caplog.records if r.name == "sync.store.migrate"] == [done]
        assert current_revision(eng) == head
        assert set(Base.metadata.tables) <= set(inspect(eng).get_table_names())
        assert ensure_schema(eng, migrate=False) is None  # at head: nothing to do
        require_current(eng)
    finally:
        eng.dispose()


def test_concurrent_first_runs_under_the_run_lock_create_the_schema_once(
    database_url: str,
) -> None:
    """What open_run does, from two threads at once: one creates, the other finds it done."""
    results: list[str | None] = []
    errors: list[BaseException] = []

    def first_run() -> None:
        eng = make_engine(database_url)
        try:
            with run_lock(eng, timeout=60):
                results.append(ensure_schema(eng, migrate=False))
        except BaseException as exc:
            errors.append(exc)
        finally:
            eng.dispose()

    threads = [threading.Thread(target=first_run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    created = f"created the schema at revision {head_revision()} in the empty database"
    assert sorted(results, key=lambda r: r is None) == [created, None]


def test_an_older_database_is_refused_unless_migrate(
    engine: Engine, next_release: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert current_revision(engine) == next_release
    expected = (
        f"the database is at revision {next_release}, this release needs {NEXT_REVISION}: "
        "run `phala-sync db upgrade`"
    )
    for refuse in (
        lambda: ensure_schema(engine, migrate=False),
        lambda: check_schema(engine, migrate=False),
        lambda: require_current(engine),
    ):
        with pytest.raises(IncompatibleSchemaError) as refused:
            refuse()
        assert str(refused.value).startswith(expected)
        assert "--migrate" in str(refused.value)
    assert current_revision(engine) == next_release  # refused: nothing changed

    check_schema(engine, migrate=True)  # allowed, and still nothing changed
    assert current_revision(engine) == next_release
    done = ensure_schema(engine, migrate=True)
    assert done == f"upgraded the schema from revision {next_release} to {NEXT_REVISION} " + (
        "(migrate on start)"
    )
    assert current_revision(engine) == NEXT_REVISION
    assert "zz_probe" in inspect(engine).get_table_names()
    assert ensure_schema(engine, migrate=False) is None


def test_a_database_newer_than_the_code_is_refused(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff_from_the_future'"))
    for allow in (False, True):
        with pytest.raises(IncompatibleSchemaError, match="ffff_from_the_future, which this "):
            ensure_schema(engine, migrate=allow)
    with pytest.raises(IncompatibleSchemaError, match="upgrade phala-sync"):
        require_current(engine)
    assert current_revision(engine) == "ffff_from_the_future"
