"""``phala-sync deploy``: its help and its one-line errors, with no Prefect server running.

The deployments it registers, and a stock worker running them, are in tests/flows/test_processes.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sync.cli import cli
from tests.sync.cli.test_commands import assert_one_line_error

#: Nothing listens on the discard port: a server that cannot be reached.
UNREACHABLE = "http://127.0.0.1:9/api"


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def deploy(*args: str, api_url: str | None = UNREACHABLE) -> Result:
    """Run ``deploy`` in this process with Prefect's API URL set to ``api_url`` (or unset).

    Prefect reads its environment once, at import: in-process, its settings are set directly.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if api_url is None:
        settings = temporary_settings(restore_defaults={PREFECT_API_URL})
    else:
        settings = temporary_settings(updates={PREFECT_API_URL: api_url})
    with settings:
        return CliRunner().invoke(cli, ["deploy", *args], catch_exceptions=True)


def test_deploy_has_the_serve_options_and_no_key_or_database_flag() -> None:
    text = deploy("--help").output
    serve_text = CliRunner().invoke(cli, ["serve", "--help"]).output
    for flag in ("--work-pool", "--target", "--cron", "--interval", "--api-version",
                 "--page-size", "--validation-policy", "--lock-timeout", "--retries",
                 "--migrate"):  # fmt: skip
        assert flag in text, flag
        assert flag == "--work-pool" or flag in serve_text, flag
    assert "--api-key" not in text
    assert "--database-url" not in text


def test_deploy_needs_a_work_pool() -> None:
    result = deploy("--target", "acme")
    assert result.exit_code == 2
    assert "--work-pool" in result.output


@pytest.mark.parametrize(
    ("args", "api_url", "needles"),
    [
        (["--work-pool", "p"], None, ["no Prefect server", "PREFECT_API_URL"]),
        (["--work-pool", "p"], UNREACHABLE, ["cannot reach the Prefect server", UNREACHABLE]),
        (["--work-pool", "p", "--cron", "every day"], UNREACHABLE, ["invalid schedule"]),
        (["--work-pool", "p", "--target", "a", "--target", "b"], UNREACHABLE, ["Secret block"]),
        (["--work-pool", "p", "--target", "a/b"], UNREACHABLE, ["invalid target"]),
        (["--work-pool", "p", "--page-size", "0"], UNREACHABLE, ["page_size"]),
    ],
)
def test_deploy_errors_are_one_line(
    args: list[str], api_url: str | None, needles: list[str]
) -> None:
    assert_one_line_error(deploy(*args, api_url=api_url), *needles)


def test_deploy_refuses_cron_and_interval_together() -> None:
    result = deploy("--work-pool", "p", "--cron", "* * * * *", "--interval", "60")
    assert result.exit_code == 2
    assert "not both" in result.output
