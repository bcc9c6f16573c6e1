"""The CLI commands that run the flow (``sync``, ``serve``), under the session's Prefect server.

In-process runs use click's CliRunner; the child-process runs point ``PREFECT_API_URL`` at the
same test server, so none of them pays for a Prefect server start of its own.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

import orjson
import pytest
from click.testing import CliRunner, Result
from prefect import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import ConcurrencyLimitStrategy
from prefect.client.schemas.responses import DeploymentResponse
from prefect.exceptions import ObjectNotFound
from sqlalchemy import Engine

from simulator import SimulatorServer
from sync.cli import cli
from sync.store import queries
from tests.children import stop
from tests.flow_fixtures import API_KEY, FLEET
from tests.sync.cli.test_commands import assert_one_line_error, from_the_future

pytestmark = [pytest.mark.prefect, pytest.mark.subprocess, pytest.mark.xdist_group("prefect")]

PHALA_SYNC = str(Path(sys.executable).with_name("phala-sync"))


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """SQLite only: the CLI's behaviour does not depend on the backend."""
    return sqlite_url


def _sync(*args: str) -> Result:
    return CliRunner().invoke(cli, ["sync", *args])


def test_sync_prints_the_summary(
    prefect_api_url: str,
    simulator: SimulatorServer,
    sqlite_url: str,
    engine: Engine,
    api_key_env: str,
) -> None:
    common = ["--database-url", sqlite_url, "--base-url", simulator.base_url, "--target", "cli"]
    first = _sync(*common, "--page-size", "30", "--concurrency", "2", "--lock-timeout", "5")
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("Run 1 succeeded")
    cvm_line = next(line for line in first.stdout.splitlines() if line.startswith("cvm "))
    assert cvm_line.split()[:3] == ["cvm", str(FLEET), str(FLEET)]

    simulator.fleet.evolve({"delete": 2}, seed=1)
    second = _sync(*common, "--json", "--validation-policy", "strict")
    assert second.exit_code == 0, second.output
    summary = orjson.loads(second.stdout)
    assert summary["run_id"] == 2
    assert summary["target"] == "cli"
    assert summary["counts"]["cvm"]["deleted"] == 2
    assert [r["status"] for r in queries.runs(engine)] == ["succeeded", "succeeded"]


def test_sync_failures_are_one_line(
    prefect_api_url: str,
    simulator: SimulatorServer,
    sqlite_url: str,
    engine: Engine,
    api_key_env: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = ["--database-url", sqlite_url]
    started = time.monotonic()
    unreachable = _sync(*db, "--base-url", "http://127.0.0.1:9/api/v1")
    assert_one_line_error(unreachable, "127.0.0.1:9", "ConnectError")
    assert time.monotonic() - started < 20

    monkeypatch.setenv("PHALA_CLOUD_API_KEY", "phak_wrong")
    wrong_key = _sync(*db, "--base-url", simulator.base_url)
    line = assert_one_line_error(wrong_key, "HTTP 401")
    assert "phak_wrong" not in line
    assert [r["status"] for r in queries.runs(engine)] == ["failed", "failed"]


def _child_env(prefect_api_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHALA_")}
    return {**env, "PREFECT_API_URL": prefect_api_url, **extra}


def _child_sync(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``phala-sync sync ARGS`` in a child process, its output captured."""
    return subprocess.run(
        [PHALA_SYNC, "sync", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=cwd,
    )


def test_sync_in_a_child_process_prints_no_traceback(
    prefect_api_url: str,
    simulator: SimulatorServer,
    sqlite_url: str,
    engine: Engine,
    tmp_path: Path,
) -> None:
    """Outside CliRunner, Prefect's own console logging shares stderr: still no traceback."""
    env = _child_env(prefect_api_url, PHALA_CLOUD_API_KEY="phak_wrong_key_here")
    done = _child_sync(
        env, tmp_path, "--database-url", sqlite_url, "--base-url", simulator.base_url
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("phala-sync: error:")]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith("phala-sync: error: HTTP 401")
    assert "Still processing items" not in done.stderr
    assert "phak_wrong_key_here" not in done.stderr + done.stdout
    assert done.stdout == ""


async def _flow_run_logs(flow_run_id: str) -> list[str]:
    async with get_client() as client:
        logs = await client.read_logs(
            LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(flow_run_id)]))
        )
    return [log.message for log in logs]


def test_a_child_sync_ends_at_once_with_its_output_and_last_logs_delivered(
    prefect_api_url: str,
    simulator: SimulatorServer,
    sqlite_url: str,
    engine: Engine,
    tmp_path: Path,
) -> None:
    """``main`` ends the process without the interpreter's teardown (sync.cli.main): the status
    is 0, the JSON summary on stdout is whole, and the flow run's logs, to its last line, reached
    the server."""
    env = _child_env(prefect_api_url, PHALA_CLOUD_API_KEY=API_KEY)
    args = ["--json", "--database-url", sqlite_url, "--base-url", simulator.base_url]
    done = _child_sync(env, tmp_path, *args)
    assert done.returncode == 0, done.stderr
    summary = orjson.loads(done.stdout)
    assert summary["status"] == "succeeded"
    assert summary["counts"]["cvm"]["created"] == FLEET
    (flow_run_id,) = set(re.findall(r"/runs/flow-run/([0-9a-f-]{36})", done.stderr))
    messages = asyncio.run(_flow_run_logs(flow_run_id))
    assert any(m.startswith(f"run {summary['run_id']} applied") for m in messages), messages
    assert messages[-1].startswith("Finished in state Completed"), messages


async def _deployment(name: str, timeout: float) -> DeploymentResponse:
    deadline = time.monotonic() + timeout
    async with get_client() as client:
        while True:
            try:
                return await client.read_deployment_by_name(name)
            except ObjectNotFound:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)


def test_serve_registers_one_limited_deployment_per_target(
    prefect_api_url: str, sqlite_url: str, engine: Engine, tmp_path: Path
) -> None:
    env = _child_env(
        prefect_api_url,
        PHALA_CLOUD_API_KEY=API_KEY,
        PHALA_SYNC_DATABASE_URL=sqlite_url,
    )
    argv = [PHALA_SYNC, "serve", "--target", "first", "--target", "second:second-key"]
    argv += ["--cron", "0 0 1 1 *", "--api-version", "2025-10-28", "--page-size", "40"]
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            argv, env=env, cwd=tmp_path, stdout=out, stderr=out, start_new_session=True
        )
    try:
        first = asyncio.run(_deployment("phala-sync/sync-first", timeout=60))
        second = asyncio.run(_deployment("phala-sync/sync-second", timeout=10))
    finally:
        stop(proc)
    for deployment in (first, second):
        assert deployment.global_concurrency_limit is not None
        assert deployment.global_concurrency_limit.limit == 1
        assert deployment.concurrency_options is not None
        assert (
            deployment.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.CANCEL_NEW
        )
        (schedule,) = deployment.schedules
        assert getattr(schedule.schedule, "cron", None) == "0 0 1 1 *"
    assert first.parameters["target"] == "first"
    assert first.parameters["api_version"] == "2025-10-28"
    assert first.parameters["page_size"] == 40
    assert "api_key_secret" not in first.parameters
    assert second.parameters["api_key_secret"] == "second-key"
    assert API_KEY not in orjson.dumps([first.parameters, second.parameters]).decode()
    assert "serving sync-first, sync-second" in log.read_text()


def test_serve_refuses_bad_input(prefect_api_url: str, sqlite_url: str, engine: Engine) -> None:
    runner = CliRunner()
    env = {"PHALA_SYNC_DATABASE_URL": sqlite_url, "PHALA_CLOUD_API_KEY": API_KEY}
    both = runner.invoke(cli, ["serve", "--cron", "* * * * *", "--interval", "60"], env=env)
    assert both.exit_code == 2
    assert "not both" in both.output
    assert_one_line_error(
        runner.invoke(cli, ["serve", "--cron", "every day"], env=env), "invalid schedule"
    )
    assert_one_line_error(
        runner.invoke(cli, ["serve", "--target", "a", "--target", "b"], env=env), "Secret block"
    )
    assert_one_line_error(
        runner.invoke(cli, ["serve", "--target", "a/b"], env=env), "invalid target"
    )
    no_key = {"PHALA_SYNC_DATABASE_URL": sqlite_url}
    assert_one_line_error(runner.invoke(cli, ["serve"], env=no_key), "PHALA_CLOUD_API_KEY")
    future = sqlite_url + ".future"
    from_the_future(future)
    newer = {**env, "PHALA_SYNC_DATABASE_URL": future}
    for migrate in ([], ["--migrate"]):
        assert_one_line_error(
            runner.invoke(cli, ["serve", *migrate], env=newer), "ffff_future", "does not know"
        )
