"""docker-compose.yml and the Dockerfile, checked statically (no container engine runs here).

The file must parse, have the services and dependencies the README describes, run only commands
that exist, and read no PHALA_* variable that the code does not read.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML comes with Prefect, its stubs do not
from click.testing import CliRunner

from sync.cli import cli
from sync.cli.group import command_named
from sync.settings import Settings
from tests.sync.cli.test_commands import cli_commands

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
_DEFAULTED = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")


def _interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with the defaults (what an empty environment gives)."""
    return re.sub(r"\$\{[A-Z0-9_]+:?-([^}]*)\}", r"\1", value)


def _command(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    argv = command if isinstance(command, list) else shlex.split(command)
    return [_interpolate(str(a)) for a in argv]


def _cli_env_vars() -> set[str]:
    """Every environment variable a CLI option reads (``envvar=``), lazy commands included."""
    found: set[str] = set()
    for _, command in cli_commands():
        for param in command.params:
            envvar = getattr(param, "envvar", None)
            if isinstance(envvar, str):
                found.add(envvar)
            elif envvar:
                found.update(envvar)
    return found


def _settings_env_vars() -> set[str]:
    names = set()
    for field, info in Settings.model_fields.items():
        choices = getattr(info.validation_alias, "choices", None)
        names.add(str(choices[0]) if choices else f"PHALA_SYNC_{field.upper()}")
    return names


def _assert_prefect_help_lists_options(args: list[str], argv: list[str]) -> None:
    """``prefect <args> --help`` succeeds, and the help lists every option of ``argv``."""
    done = subprocess.run(
        [str(Path(sys.executable).with_name("prefect")), *args, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for option in (a for a in argv if a.startswith("--")):
        assert option in done.stdout, option


def test_services_and_their_order() -> None:
    assert {"postgres", "prefect", "migrate", "sync", "worker", "simulator"} <= set(SERVICES)
    assert SERVICES["postgres"]["healthcheck"]["test"]
    sync_deps = SERVICES["sync"]["depends_on"]
    assert sync_deps["migrate"]["condition"] == "service_completed_successfully"
    assert sync_deps["prefect"]["condition"] == "service_healthy"
    assert SERVICES["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert SERVICES["migrate"]["restart"] == "no"
    assert SERVICES["simulator"]["profiles"] == ["simulator"]
    assert SERVICES["simulator"]["network_mode"] == "service:sync"
    worker_deps = SERVICES["worker"]["depends_on"]
    assert worker_deps["migrate"]["condition"] == "service_completed_successfully"
    assert worker_deps["prefect"]["condition"] == "service_healthy"
    for name in ("sync", "migrate", "worker"):
        env = SERVICES[name]["environment"]
        assert env["PHALA_SYNC_DATABASE_URL"].startswith("postgresql://")
        assert "@postgres:5432/" in env["PHALA_SYNC_DATABASE_URL"]
        assert env["PREFECT_API_URL"] == "http://prefect:4200/api"
    for name, service in SERVICES.items():
        depends = service.get("depends_on", {})
        for dependency in depends:
            assert dependency in SERVICES, (name, dependency)


def test_every_phala_sync_command_exists() -> None:
    runner = CliRunner()
    checked = 0
    for name, service in SERVICES.items():
        if "command" not in service:
            continue
        argv = _command(service)
        if argv[0] != "phala-sync":
            continue
        result = runner.invoke(cli, [*argv[1:], "--help"])
        assert result.exit_code == 0, (name, argv, result.output)
        checked += 1
    assert checked == 3  # migrate, sync, simulator


def test_service_arguments_parse() -> None:
    """The options each service passes are accepted (``--help`` alone would ignore bad ones)."""
    serve_argv = _command(SERVICES["sync"])
    assert serve_argv[:2] == ["phala-sync", "serve"]
    command = command_named("serve")
    ctx = command.make_context("serve", serve_argv[2:])
    assert ctx.params["cron"] == "*/30 * * * *"
    simulate = cli.get_command(click.Context(cli), "simulate")
    assert simulate is not None
    argv = _command(SERVICES["simulator"])
    ctx = simulate.make_context("simulate", [*argv[2:], "--api-key", "k"])
    assert ctx.params["port"] == 8000


@pytest.mark.subprocess
def test_the_prefect_service_command_exists() -> None:
    argv = _command(SERVICES["prefect"])
    assert argv[:3] == ["prefect", "server", "start"]
    _assert_prefect_help_lists_options(argv[1:], argv)


@pytest.mark.subprocess
def test_the_worker_polls_a_process_pool_with_real_options() -> None:
    """The worker is a stock ``prefect worker start`` on a process pool that README deploys to."""
    argv = _command(SERVICES["worker"])
    assert argv[:3] == ["prefect", "worker", "start"]
    pool = argv[argv.index("--pool") + 1]
    assert argv[argv.index("--type") + 1] == "process"
    readme = (ROOT / "README.md").read_text()
    assert f"--work-pool {pool}" in readme
    assert f"--work-pool {pool}" in COMPOSE_TEXT  # the comment says how to deploy to it
    _assert_prefect_help_lists_options(argv[1:3], argv)
    deploy = command_named("deploy").make_context("deploy", ["--work-pool", pool, "--target", "a"])
    assert deploy.params["work_pool"] == pool


def test_no_phala_variable_the_code_does_not_read() -> None:
    known = _settings_env_vars() | _cli_env_vars()
    used = set(re.findall(r"\bPHALA_[A-Z0-9_]+", COMPOSE_TEXT))
    assert used, "the compose file sets no PHALA_* variable?"
    assert used <= known, sorted(used - known)
    interpolated = set(_DEFAULTED.findall(COMPOSE_TEXT))
    assert {v for v in interpolated if v.startswith("PHALA_")} <= known


def test_prefect_variables_in_compose_are_prefect_settings() -> None:
    import prefect.settings

    names = set(re.findall(r"\bPREFECT_[A-Z0-9_]+", COMPOSE_TEXT))
    assert names
    unknown = sorted(n for n in names if not hasattr(prefect.settings, n))
    assert not unknown, unknown


def test_dockerfile_builds_from_files_that_exist() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            *sources, _dest = line.split()[1:]
            for source in sources:
                assert (ROOT / source).exists(), source
    assert "pip install ." in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    for needed in ("sync", "flows", "models", "migrations", "pyproject.toml", "README.md"):
        assert needed not in ignored
