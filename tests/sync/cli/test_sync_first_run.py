"""``phala-sync sync`` and the schema: a first run creates it, an older one is refused or migrated.

The sync runs in this process (CliRunner) under the session's Prefect test server, against the
simulator served over loopback; each database test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, inspect

from simulator import SimulatorServer
from sync.cli import cli
from sync.store import queries
from sync.store.engine import make_engine
from sync.store.migrate import current_revision, head_revision
from tests.conftest import NEXT_REVISION
from tests.flow_fixtures import FLEET
from tests.sync.cli.test_commands import assert_one_line_error

#: Every test runs under the session's Prefect test server, with the simulator's key set.
pytestmark = [
    pytest.mark.prefect,
    pytest.mark.xdist_group("prefect"),
    pytest.mark.usefixtures("prefect_api_url", "api_key_env"),
]


@pytest.fixture(autouse=True)
def _no_migrate_left_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """``sync --migrate`` passes the setting to its in-process flow through the environment."""
    monkeypatch.delenv("PHALA_SYNC_MIGRATE", raising=False)


def _sync(database_url: str, simulator: SimulatorServer, *extra: str) -> Result:
    args = ["sync", "--database-url", database_url, "--base-url", simulator.base_url]
    return CliRunner().invoke(cli, [*args, "--target", "first", "--json", *extra])


class _Said(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def said() -> Iterator[list[str]]:
    """What runs log about the schema. (Prefect replaces the root handlers, caplog's too.)"""
    handler = _Said()
    logger = logging.getLogger("sync.store.migrate")
    logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)


def _inventory_ids(database_url: str) -> set[str]:
    eng = make_engine(database_url)
    try:
        return {row["vm_uuid"] for row in queries.inventory(eng, target="first")}
    finally:
        eng.dispose()


def _fleet_ids(simulator: SimulatorServer) -> set[str]:
    return set(simulator.fleet.snapshot()["cvms"])  # keyed by normalized VM UUID


def test_a_first_sync_creates_the_schema_and_fills_the_inventory(
    simulator: SimulatorServer, database_url: str, said: list[str]
) -> None:
    result = _sync(database_url, simulator)
    assert result.exit_code == 0, result.output
    assert said == [f"created the schema at revision {head_revision()} in the empty database"]
    eng = make_engine(database_url)
    assert current_revision(eng) == head_revision()
    eng.dispose()
    ids = _inventory_ids(database_url)
    assert len(ids) == FLEET
    assert ids == _fleet_ids(simulator)

    said.clear()
    again = _sync(database_url, simulator)
    assert again.exit_code == 0, again.output
    assert said == []


def test_an_older_database_is_refused_then_migrated_with_the_flag(
    simulator: SimulatorServer,
    database_url: str,
    engine: Engine,
    next_release: str,
    said: list[str],
) -> None:
    refused = _sync(database_url, simulator)
    assert_one_line_error(
        refused,
        f"the database is at revision {next_release}, this release needs {NEXT_REVISION}",
        "`phala-sync db upgrade`",
        "--migrate",
    )
    assert current_revision(engine) == next_release
    assert queries.runs(engine) == []

    migrated = _sync(database_url, simulator, "--migrate")
    assert migrated.exit_code == 0, migrated.output
    assert said == [
        f"upgraded the schema from revision {next_release} to {NEXT_REVISION} (migrate on start)"
    ]
    assert current_revision(engine) == NEXT_REVISION
    assert "zz_probe" in inspect(engine).get_table_names()
    assert _inventory_ids(database_url) == _fleet_ids(simulator)


def test_the_setting_migrates_too(
    simulator: SimulatorServer,
    database_url: str,
    engine: Engine,
    next_release: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PHALA_SYNC_MIGRATE", "true")
    result = _sync(database_url, simulator)
    assert result.exit_code == 0, result.output
    assert current_revision(engine) == NEXT_REVISION


def test_a_missing_sqlite_directory_is_still_refused(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'no-such-dir' / 'x.db'}"
    assert_one_line_error(_sync(url, simulator), "no-such-dir", "does not exist")
