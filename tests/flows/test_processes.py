"""End to end with real processes: a ``serve`` process, a killed ``sync``, and a work pool.

Every child runs under ``timeout -k`` in its own process group, and is killed in ``finally``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from simulator import SimulatorServer
from sync.store import queries
from sync.store.engine import make_engine
from tests.children import PHALA_SYNC, PREFECT, base_env, marked, start, stop
from tests.flow_fixtures import API_KEY

pytestmark = [pytest.mark.prefect, pytest.mark.slow, pytest.mark.subprocess]


def _fleet_ids(simulator: SimulatorServer) -> set[str]:
    return set(simulator.fleet.snapshot()["cvms"])  # keyed by normalized VM UUID


def _inventory_ids(database_url: str, target: str) -> set[str]:
    eng = make_engine(database_url)
    try:
        return {row["vm_uuid"] for row in queries.inventory(eng, target=target)}
    finally:
        eng.dispose()


# ------------------------------------------------------------------------------------- serve
@pytest.mark.xdist_group("prefect")
def test_a_served_deployment_run_fills_an_empty_database(
    prefect_api_url: str, simulator: SimulatorServer, sqlite_url: str, tmp_path: Path
) -> None:
    from prefect.deployments import run_deployment

    env = base_env(
        PREFECT_API_URL=prefect_api_url,
        PHALA_CLOUD_API_KEY=API_KEY,
        PHALA_CLOUD_API_PREFIX=simulator.base_url,
        PHALA_SYNC_DATABASE_URL=sqlite_url,  # no file yet: the first run creates the schema
    )
    argv = [PHALA_SYNC, "serve", "--target", "served", "--cron", "0 0 1 1 *"]
    with (tmp_path / "serve.log").open("w") as log:
        proc = start(argv, seconds=300, log=log, env=env, cwd=tmp_path)
    try:
        run = _wait_for(lambda: _run_when_served(run_deployment), timeout=90)
        assert run.state is not None
        assert run.state.is_completed(), (run.state, (tmp_path / "serve.log").read_text())
    finally:
        stop(proc)
    assert _inventory_ids(sqlite_url, "served") == _fleet_ids(simulator)


def _run_when_served(run_deployment: Any) -> Any:
    from prefect.exceptions import ObjectNotFound

    try:
        return run_deployment("phala-sync/sync-served", timeout=180)
    except ObjectNotFound:  # not registered yet
        return None


def _wait_for(probe: Any, *, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while (value := probe()) is None:
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)
    return value


# ------------------------------------------------------------------------------------- kill
def _marked(marker: str) -> dict[int, str]:
    """pid -> command line of every process whose environment carries ``marker``."""
    return marked("PHALA_KILL_TEST", marker)


def _running_runs(path: Path) -> int:
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=1)) as conn:
            row = conn.execute("SELECT COUNT(*) FROM sync_runs WHERE status = 'running'").fetchone()
    except sqlite3.Error:
        return 0
    return int(row[0])


def test_a_sync_killed_with_sigkill_leaves_no_process_behind(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    """No PREFECT_API_URL: the sync's temporary Prefect server must die with it."""
    simulator.simulator.faults.set(["latency:ms=1000"])  # every page takes a second
    marker = uuid.uuid4().hex
    database = tmp_path / "killed.db"
    env = base_env(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PHALA_CLOUD_API_KEY=API_KEY,
        PHALA_KILL_TEST=marker,
    )
    argv = [PHALA_SYNC, "sync", "--database-url", f"sqlite:///{database}",
            "--base-url", simulator.base_url, "--page-size", "5", "--concurrency", "1"]  # fmt: skip
    with (tmp_path / "sync.log").open("w") as log:
        proc = start(argv, seconds=300, log=log, env=env, cwd=tmp_path)
    seen: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 150
        while not _running_runs(database):  # the flow is fetching: its server is up
            assert proc.poll() is None, (tmp_path / "sync.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "sync.log").read_text()
            time.sleep(0.5)
        seen = _marked(marker)
        (sync_pid,) = [p for p, cmd in seen.items() if " sync --database-url" in cmd and
                       "timeout" not in cmd.split()[0]]  # fmt: skip
        assert any("uvicorn" in cmd for cmd in seen.values()), seen  # the temporary server

        os.kill(sync_pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while _marked(marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _marked(marker) == {}
    finally:
        for pid in _marked(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        stop(proc)


# ---------------------------------------------------------------------------------- work pool
def _run(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 180) -> str:
    done = subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, (argv, done.stdout, done.stderr)
    return done.stdout + done.stderr


@pytest.mark.postgres
def test_a_stock_worker_runs_two_deployed_targets_into_one_postgres_database(
    prefect_server: str, postgres_url: str, tmp_path: Path
) -> None:
    key_a, key_b = "phak_pool_alpha_0123456789", "phak_pool_beta_9876543210"
    client_env = base_env(PREFECT_API_URL=prefect_server, PREFECT_HOME=str(tmp_path / "home"))
    _run([PREFECT, "work-pool", "create", "phala-pool", "--type", "process"], client_env, tmp_path)
    save_secret = (
        "from prefect.blocks.system import Secret; "
        f"Secret(value={key_b!r}).save('beta-key', overwrite=True)"
    )
    _run([sys.executable, "-c", save_secret], client_env, tmp_path)

    deployed = _run(
        [PHALA_SYNC, "deploy", "--work-pool", "phala-pool", "--target", "alpha",
         "--target", "beta:beta-key", "--cron", "0 0 1 1 *", "--page-size", "20"],
        client_env,
        tmp_path,
    )  # fmt: skip
    assert "deployed phala-sync/sync-alpha to work pool 'phala-pool'" in deployed
    assert "deployed phala-sync/sync-beta to work pool 'phala-pool'" in deployed
    deployments = httpx.post(f"{prefect_server}/deployments/filter", json={}, timeout=30).json()
    assert {d["name"] for d in deployments} == {"sync-alpha", "sync-beta"}
    for deployment in deployments:
        assert deployment["entrypoint"] == "flows.sync_flow.sync_flow"
        assert deployment["path"] is None
        assert not deployment["pull_steps"]
        assert deployment["work_pool_name"] == "phala-pool"
        assert deployment["global_concurrency_limit"]["limit"] == 1
        text = orjson.dumps(deployment).decode()
        assert key_a not in text
        assert key_b not in text
        assert "database_url" not in deployment["parameters"]

    elsewhere = tmp_path / "worker-cwd"
    elsewhere.mkdir()
    worker_env = {
        **client_env,
        "PREFECT_HOME": str(tmp_path / "worker-home"),
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "PHALA_CLOUD_API_KEY": key_a,
        "PHALA_SYNC_DATABASE_URL": postgres_url,
        "PHALA_SYNC_MAX_ATTEMPTS": "2",
    }
    with (
        SimulatorServer(api_key=key_a, cvms=60, seed=21) as alpha,
        SimulatorServer(api_key=key_b, cvms=45, seed=22) as beta,
        (tmp_path / "worker.log").open("w") as log,
    ):
        worker = start(
            [PREFECT, "worker", "start", "--pool", "phala-pool"],
            seconds=600,
            log=log,
            env=worker_env,
            cwd=elsewhere,
        )
        try:
            for name, simulator in (("alpha", alpha), ("beta", beta)):
                params = orjson.dumps({"base_url": simulator.base_url}).decode()
                watched = _run(
                    [PREFECT, "deployment", "run", f"phala-sync/sync-{name}", "--params",
                     params, "--watch", "--watch-timeout", "240"],
                    client_env,
                    tmp_path,
                    timeout=300,
                )  # fmt: skip
                assert "Completed" in watched, (watched, (tmp_path / "worker.log").read_text())
        finally:
            stop(worker)
        for name, simulator in (("alpha", alpha), ("beta", beta)):
            ids = _inventory_ids(postgres_url, name)
            assert len(ids) == len(simulator.fleet.snapshot()["cvms"])
            assert ids == _fleet_ids(simulator), name
    assert _inventory_ids(postgres_url, "alpha").isdisjoint(_inventory_ids(postgres_url, "beta"))
