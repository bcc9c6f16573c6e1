"""The CLI's Prefect-free commands (db, runs, inventory, history, changes), help and bad input.

The database is filled by ``sync.run.run_sync`` over the in-process simulator transport, so these
tests need neither sockets nor Prefect; the commands that run the flow (``sync``, ``serve``) are in
test_sync_command.py and test_sync_first_run.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
import orjson
import pytest
from click.testing import CliRunner, Result
from pydantic import SecretStr
from sqlalchemy import Engine, text

from simulator import Fleet, SimulatorTransport, create_app
from sync.cli import cli, error_line
from sync.errors import UnknownVersionError
from sync.run import RunSummary, run_sync
from sync.settings import Settings
from sync.store import queries
from sync.store.engine import make_engine
from sync.store.migrate import upgrade

KEY = "phak_clitest_secret"
FLEET = 40


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command runs in an empty directory: no developer's .env takes part."""
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=True)


def assert_one_line_error(result: Result, *needles: str) -> str:
    """The command failed with exactly one line on stderr, no traceback, naming ``needles``."""
    assert result.exit_code == 1, (result.exit_code, result.output)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("phala-sync: error: ")
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def _sync(engine: Engine, database_url: str, fleet: Fleet) -> RunSummary:
    settings = Settings(
        api_key=SecretStr(KEY),
        base_url="http://simulator.test/api/v1",
        database_url=database_url,
        target="cli",
        page_size=20,
    )
    transport = SimulatorTransport(create_app(fleet, api_key=KEY))
    return run_sync(engine, settings, transport=transport)


@pytest.fixture
def synced(engine: Engine, database_url: str) -> dict[str, Any]:
    """Two succeeded runs with an evolve step (creates, deletes, resizes) between them."""
    fleet = Fleet(FLEET, seed=5)
    first = _sync(engine, database_url, fleet)
    step = fleet.evolve({"create": 2, "delete": 1, "resize": 2, "rename": 1}, seed=2)
    second = _sync(engine, database_url, fleet)
    return {"url": database_url, "first": first, "second": second, "step": step}


def cli_commands() -> list[tuple[tuple[str, ...], click.Command]]:
    """Every command of the CLI with its path (lazy ones loaded), the root group first at ()."""
    found: list[tuple[tuple[str, ...], click.Command]] = []

    def walk(path: tuple[str, ...], command: click.Command, ctx: click.Context) -> None:
        found.append((path, command))
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None, name
                walk((*path, name), sub, ctx)

    with click.Context(cli) as ctx:
        walk((), cli, ctx)
    return found


def test_every_command_has_help() -> None:
    paths = [path for path, _ in cli_commands()]
    names = {p[-1] for p in paths if p}
    assert {"sync", "serve", "deploy", "simulate", "demo", "runs", "inventory", "history",
            "changes"} <= names  # fmt: skip
    assert {("db", "upgrade"), ("db", "current"), ("db", "downgrade")} <= set(paths)
    for path in paths:
        result = invoke(*path, "--help")
        assert result.exit_code == 0, (path, result.output)
        assert "Usage: " in result.output


def test_sync_has_the_documented_flags_and_no_key_flag() -> None:
    text = invoke("sync", "--help").output
    for flag in ("--database-url", "--api-version", "--base-url", "--page-size", "--target",
                 "--validation-policy", "--concurrency", "--lock-timeout", "--migrate",
                 "--json"):  # fmt: skip
        assert flag in text
    assert "--api-key" not in text


@pytest.mark.subprocess
def test_database_and_query_commands_never_import_prefect(sqlite_url: str) -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from sync.cli import cli\n"
        f"url = {sqlite_url!r}\n"
        "for args in (['db', 'upgrade'], ['db', 'current'], ['runs'], ['inventory'],"
        " ['changes'], ['--help']):\n"
        "    r = CliRunner().invoke(cli, [*args, *(['--database-url', url] if args[0] != '--help'"
        " else [])])\n"
        "    assert r.exit_code == 0, (args, r.output)\n"
        "bad = sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.'))\n"
        "assert not bad, bad[:5]\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


def test_db_upgrade_current_downgrade(database_url: str) -> None:
    url = ["--database-url", database_url]
    assert "empty database" in invoke("db", "current", *url).output
    upgraded = invoke("db", "upgrade", *url)
    assert upgraded.exit_code == 0, upgraded.output
    assert "upgraded" in upgraded.output
    assert "already at" in invoke("db", "upgrade", *url).output
    assert invoke("db", "current", *url).output.strip().endswith("(head)")
    down = invoke("db", "downgrade", "base", *url)
    assert down.exit_code == 0, down.output
    assert "empty database" in invoke("db", "current", *url).output
    assert invoke("db", "upgrade", *url).exit_code == 0


def test_database_url_from_the_environment(sqlite_url: str) -> None:
    result = invoke("db", "upgrade", env={"PHALA_SYNC_DATABASE_URL": sqlite_url})
    assert result.exit_code == 0, result.output
    assert Path(sqlite_url.removeprefix("sqlite:///")).exists()


def test_runs(synced: dict[str, Any]) -> None:
    url = ["--database-url", synced["url"]]
    text = invoke("runs", *url).output
    assert text.splitlines()[0].split()[:4] == ["id", "target", "api_version", "status"]
    assert text.count("succeeded") == 2
    rows = orjson.loads(invoke("runs", *url, "--json").output)
    assert [r["id"] for r in rows] == [synced["second"].run_id, synced["first"].run_id]
    assert rows[1]["created"] == FLEET
    assert len(orjson.loads(invoke("runs", *url, "--json", "--limit", "1").output)) == 1


def test_inventory_now_and_as_of(synced: dict[str, Any], engine: Engine) -> None:
    url = ["--database-url", synced["url"]]
    now = orjson.loads(invoke("inventory", *url, "--json").output)
    assert len(now) == len(queries.inventory(engine)) == FLEET + 1  # two created, one deleted
    text = invoke("inventory", *url, "--limit", "5").output
    assert f"(5 of {FLEET + 1} CVMs)" in text
    assert now[0]["vm_uuid"] in text

    between = synced["second"].started_at - timedelta(microseconds=1)
    then = orjson.loads(invoke("inventory", *url, "--json", "--as-of", between.isoformat()).output)
    assert len(then) == FLEET
    before = (synced["first"].started_at - timedelta(days=1)).strftime("%Y-%m-%d")
    assert invoke("inventory", *url, "--as-of", before).output.strip() == "no CVMs"
    assert invoke("inventory", *url, "--target", "nobody").output.strip() == "no CVMs"


def test_history_and_changes(synced: dict[str, Any]) -> None:
    url = ["--database-url", synced["url"]]
    second = synced["second"].run_id
    changes = orjson.loads(invoke("changes", *url, "--json").output)  # default: latest run
    assert {c["run_id"] for c in changes} == {second}
    cvm_changes = [c for c in changes if c["entity_type"] == "cvm"]
    truth = [c for c in synced["step"] if c["entity_type"] == "cvm"]
    assert sorted((c["entity_id"], c["change_type"]) for c in cvm_changes) == sorted(
        (c["entity_id"], c["change_type"]) for c in truth
    )
    only_cvms = orjson.loads(invoke("changes", *url, "--json", "--entity-type", "cvm").output)
    assert only_cvms == cvm_changes
    text = invoke("changes", *url, "--run", str(second)).output
    assert text.splitlines()[0].split() == ["entity", "created", "updated", "deleted", "restored"]
    assert "cvm" in text
    assert invoke("changes", *url, "--run", "999").output.strip() == "no changes in run 999"

    updated = next(c for c in cvm_changes if c["change_type"] == "updated")
    rows = orjson.loads(invoke("history", updated["entity_id"], *url, "--json").output)
    assert [r["run_id"] for r in rows] == [synced["first"].run_id, second]
    assert rows[0]["valid_to"] == rows[1]["valid_from"]
    text = invoke("history", updated["entity_id"], *url).output
    assert text.splitlines()[0].split()[:3] == ["run_id", "valid_from", "valid_to"]


def test_query_errors_are_one_line(synced: dict[str, Any], tmp_path: Path) -> None:
    url = ["--database-url", synced["url"]]
    assert_one_line_error(invoke("history", "no-such-cvm", *url), "no stored state")
    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    for command in ("runs", "inventory", "changes"):
        assert_one_line_error(invoke(command, "--database-url", missing), "db upgrade")
    bad_time = invoke("inventory", *url, "--as-of", "yesterday")
    assert bad_time.exit_code == 2
    assert "ISO 8601" in bad_time.output


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("mysql://user@localhost/db", "unsupported database"),
        ("::not a url::", "cannot parse database URL"),
        ("postgresql+asyncpg://u@localhost/db", "unsupported PostgreSQL driver"),
        ("postgresql://nobody@127.0.0.1:9/db", "database error"),
        ("sqlite:////no/such/dir/x.db", "/no/such/dir"),
    ],
)
def test_bad_database_urls_are_one_line_errors(url: str, needle: str) -> None:
    for args in (["runs"], ["db", "upgrade"]):
        assert_one_line_error(invoke(*args, "--database-url", url), needle)
    env = {"PHALA_CLOUD_API_KEY": KEY}
    assert_one_line_error(invoke("sync", "--database-url", url, env=env), needle)


def test_sync_refuses_bad_settings_before_anything_runs(sqlite_url: str) -> None:
    env = {"PHALA_CLOUD_API_KEY": KEY}
    db = ["--database-url", sqlite_url]
    line = assert_one_line_error(
        invoke("sync", *db, "--api-version", "2019-01-01", env=env), "unknown API version"
    )
    assert "2026-01-21" in line
    assert_one_line_error(invoke("sync", *db, "--page-size", "0", env=env), "page_size")
    assert_one_line_error(invoke("sync", *db), "no Phala Cloud API key", "PHALA_CLOUD_API_KEY")
    assert_one_line_error(
        invoke("sync", *db, env={**env, "PHALA_SYNC_API_VERSION": "nope"}), "unknown API version"
    )
    # A database a newer release migrated: refused before Prefect starts, --migrate or not.
    from_the_future(sqlite_url)
    for migrate in ([], ["--migrate"]):
        assert_one_line_error(
            invoke("sync", *db, *migrate, env=env), "ffff_future", "does not know"
        )


def from_the_future(url: str) -> None:
    """Leave the database at a revision this release does not know."""
    eng = make_engine(url)
    upgrade(eng)
    with eng.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff_future'"))
    eng.dispose()


def test_sync_reads_settings_from_a_dotenv_file(sqlite_url: str) -> None:
    Path(".env").write_text("PHALA_SYNC_API_VERSION=1999-01-01\n")
    result = invoke("sync", "--database-url", sqlite_url, env={"PHALA_CLOUD_API_KEY": KEY})
    assert_one_line_error(result, "'1999-01-01'")
    # A flag overrides the .env file: the run gets as far as the database's schema check.
    from_the_future(sqlite_url)
    result = invoke(
        "sync", "--database-url", sqlite_url, "--api-version", "2026-01-21",
        env={"PHALA_CLOUD_API_KEY": KEY},
    )  # fmt: skip
    assert_one_line_error(result, "ffff_future")


def test_debug_shows_the_real_exception(sqlite_url: str) -> None:
    result = invoke("--debug", "sync", "--database-url", sqlite_url, "--api-version", "2019-01-01")
    assert isinstance(result.exception, UnknownVersionError)


def test_error_line_is_one_line_for_any_error() -> None:
    from sqlalchemy.exc import OperationalError

    db_error = OperationalError("SELECT 1", {}, Exception("connection refused\n\tIs it up?"))
    assert error_line(db_error) == (
        "database error (Exception): connection refused; "
        "check --database-url or PHALA_SYNC_DATABASE_URL"
    )
    assert error_line(PermissionError(13, "Permission denied", "/x")).startswith(
        "PermissionError: [Errno 13] Permission denied"
    )
    bug = error_line(KeyError("two\nlines"))
    assert "\n" not in bug
    assert "--debug" in bug


@pytest.mark.subprocess
def test_main_is_the_console_script() -> None:
    done = subprocess.run(
        [Path(sys.executable).with_name("phala-sync"), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ},
    )
    assert done.returncode == 0, done.stderr
    assert "phala-sync" in done.stdout
