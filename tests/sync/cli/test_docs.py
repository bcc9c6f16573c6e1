"""The README and docs/operations.md stay true to the code: settings, commands, errors, SQL."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import click
import pytest
from sqlalchemy import Engine, text

import sync.errors
from sync.cli import cli
from sync.cli.group import command_named
from sync.settings import MISSING_KEY, PASSWORD_PARAMETER, Settings, env_name

ROOT = Path(__file__).resolve().parents[3]
README = (ROOT / "README.md").read_text()
OPERATIONS = (ROOT / "docs" / "operations.md").read_text()


def _config_rows() -> dict[str, list[str]]:
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells
    return rows


def test_readme_configuration_table_matches_settings() -> None:
    rows = _config_rows()
    assert set(rows) == set(Settings.model_fields)
    for field, (_, env, flag, default, _meaning) in rows.items():
        assert env == f"`{env_name(field)}`", field
        value = Settings.model_fields[field].default
        if value is not None:
            assert default == f"`{value}`", field
        if flag.startswith("`--"):
            option = flag.strip("`")
            sync_command = command_named("sync")
            assert any(option in p.opts for p in sync_command.params), option
    # The registry is the one list of versions: the README points to it rather than copy it.
    assert "`sync/versions/__init__.py`" in rows["api_version"][4]


def test_readme_mentions_every_command_and_the_two_quick_start_commands() -> None:
    assert "make demo" in README
    assert "make test" in README
    with click.Context(cli) as ctx:
        for name in cli.list_commands(ctx):
            assert f"phala-sync {name}" in README or f"`{name}`" in README, name


def test_operations_quotes_the_one_missing_key_and_password_messages() -> None:
    for message in (MISSING_KEY, PASSWORD_PARAMETER):
        assert f"| `{message}` |" in OPERATIONS, message


def test_operations_names_every_error_class() -> None:
    for name, obj in inspect.getmembers(sync.errors, inspect.isclass):
        if issubclass(obj, sync.errors.PhalaSyncError) and obj is not sync.errors.PhalaSyncError:
            assert f"`{name}`" in OPERATIONS, name


def _retention_statements() -> list[str]:
    blocks = re.findall(r"```sql\n(.*?)```", OPERATIONS, re.DOTALL)
    return [b for b in blocks if b.startswith("-- retention")]


def test_retention_sql_runs(engine: Engine) -> None:
    statements = _retention_statements()
    assert len(statements) == 3
    cutoff = "2000-01-01T00:00:00+00:00"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO sync_runs (target, api_version, status, started_at, seen, created,"
                " updated, deleted, restored, unchanged, quarantined)"
                " VALUES ('t', '2026-01-21', 'failed', :at, 0, 0, 0, 0, 0, 0, 0)"
            ),
            {"at": "1999-01-01T00:00:00+00:00"},
        )
        for statement in statements:
            sql = re.sub(r"^--.*$", "", statement, flags=re.MULTILINE).strip().rstrip(";")
            conn.execute(text(sql), {"cutoff": cutoff})
        remaining = conn.execute(text("SELECT COUNT(*) FROM sync_runs")).scalar_one()
    assert remaining == 0


@pytest.mark.parametrize("doc", ["README.md", "docs/operations.md"])
def test_docs_link_to_files_that_exist(doc: str) -> None:
    body = (ROOT / doc).read_text()
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", body):
        assert (ROOT / doc).parent.joinpath(target).exists(), target
