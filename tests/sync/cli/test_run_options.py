"""The run options of ``sync``, ``serve`` and ``deploy`` are Settings' fields: names, types,
choices, defaults and help come from the declaration, and what is given reaches the flow run (or
each deployment) as validated parameters, a password never among them.

The flow's side (its signature and parameter descriptions) is tests/flows/test_run_parameters.py.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from sync.cli import cli, scheduling
from sync.cli import sync as sync_module
from sync.settings import (
    DEPLOYMENT_OPTIONS,
    SERVED_LOCK_TIMEOUT,
    SYNC_OPTIONS,
    Settings,
    env_name,
    setting_choices,
    setting_type,
)
from tests.sync.cli.test_commands import cli_commands

KEY = "phak_run_options_test_key"


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def setting_params(command: click.Command) -> dict[str, click.Option]:
    return {
        p.name: p
        for p in command.params
        if isinstance(p, click.Option) and p.name in Settings.model_fields
    }


#: command -> (its run settings, the defaults its options have of their own)
COMMANDS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "sync": (SYNC_OPTIONS, {}),
    "serve": (DEPLOYMENT_OPTIONS, {"lock_timeout": SERVED_LOCK_TIMEOUT}),
    "deploy": (DEPLOYMENT_OPTIONS, {"lock_timeout": SERVED_LOCK_TIMEOUT}),
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_run_options_are_the_declared_settings(name: str) -> None:
    names, defaults = COMMANDS[name]
    options = setting_params(dict(cli_commands())[(name,)])
    assert list(options) == list(names)
    for setting, option in options.items():
        field = Settings.model_fields[setting]
        assert option.opts == ["--" + setting.replace("_", "-")]
        assert option.default == defaults.get(setting), setting
        assert field.description is not None
        assert (option.help or "").startswith(field.description), setting
        if setting in defaults:
            assert (option.help or "").endswith(f"[default {defaults[setting]}]")
        else:
            assert f"[env {env_name(setting)}" in (option.help or ""), setting
        kind = setting_type(setting)
        choices = setting_choices(setting)
        if kind is bool:
            assert option.is_flag, setting
        elif choices is not None:
            assert isinstance(option.type, click.Choice)
            assert tuple(option.type.choices) == choices
        elif kind in (int, float):
            assert option.type is {int: click.INT, float: click.FLOAT}[kind], setting


def test_every_database_url_option_is_built_from_the_setting() -> None:
    """The query commands' ``--database-url`` too. (Their ``--target`` is a filter of what to
    show, not the run's setting, and says so in its own help.)"""
    description = Settings.model_fields["database_url"].description
    assert description is not None
    found = 0
    for path, command in cli_commands():
        option = setting_params(command).get("database_url")
        if option is not None:
            found += 1
            assert (option.help or "").startswith(description), path
    assert found >= 8


@contextlib.contextmanager
def _no_database() -> Iterator[None]:
    yield None


def test_sync_passes_what_it_was_given_and_keeps_a_password_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran: list[dict[str, Any]] = []

    def run_sync_flow(parameters: dict[str, Any], *, progress: bool) -> dict[str, Any]:
        ran.append({**parameters, "env": os.environ.get("PHALA_SYNC_DATABASE_URL")})
        return {}

    monkeypatch.setattr(sync_module, "open_database", lambda *a, **k: _no_database())
    monkeypatch.setattr(sync_module.prefetching, "begin", lambda *a, **k: None)  # no database
    monkeypatch.setattr(sync_module, "summary_text", lambda summary: "ok")
    monkeypatch.setattr("sync.cli.prefect.run_sync_flow", run_sync_flow)
    monkeypatch.delenv("PHALA_SYNC_DATABASE_URL", raising=False)  # undone after the test
    url = "postgresql://phala:hunter2@db.example:5432/phala_sync"
    args = ["sync", "--database-url", url, "--page-size", "7", "--validation-policy", "strict"]
    result = CliRunner().invoke(cli, [*args, "--migrate"], env={"PHALA_CLOUD_API_KEY": KEY})
    assert result.exit_code == 0, result.output
    (parameters,) = ran
    assert parameters == {
        "page_size": 7,
        "validation_policy": "strict",
        "migrate": True,
        "api_key_secret": None,
        "fetch_retries": 0,
        "env": url,
    }


def test_deployments_carry_the_given_settings_validated() -> None:
    given: dict[str, Any] = {
        "targets": ("acme",),
        "cron": None,
        "interval": None,
        "retries": 2,
        "api_version": "2025-10-28",
        "page_size": 50,
        "validation_policy": None,
        "lock_timeout": 5.0,
        "migrate": True,
        "report_dir": "reports",
    }
    options = scheduling.DeploymentOptions.from_given(dict(given))
    settings = options.settings()
    (deployment,) = scheduling._deployments(options, settings)
    assert deployment.parameters == {
        "target": "acme",
        "api_version": "2025-10-28",
        "page_size": 50,
        "lock_timeout": 5.0,
        "migrate": True,
        "report_dir": "reports",
        "fetch_retries": 2,
    }
    with pytest.raises(click.UsageError, match="not both"):
        scheduling.DeploymentOptions.from_given({**given, "cron": "* * * * *", "interval": 60})
