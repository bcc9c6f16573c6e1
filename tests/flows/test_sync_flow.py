"""The real sync flow under the Prefect test server, against the simulator served over loopback.

Each database test runs on SQLite and on PostgreSQL (the ``database_url`` fixture).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any
from uuid import UUID

import orjson
import pytest
from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import State
from prefect.logging.handlers import APILogHandler
from pydantic import SecretStr
from sqlalchemy import Engine, func, select

from flows.sync_flow import sync_flow
from models import StagedRecord, table_of
from simulator import SimulatorServer
from sync.errors import AuthError, ConfigError, RetriableApiError
from sync.store import queries
from tests.flow_fixtures import API_KEY, FLEET

#: Every test runs under the session's Prefect test server, with the simulator's key set.
pytestmark = [
    pytest.mark.prefect,
    pytest.mark.xdist_group("prefect"),
    pytest.mark.usefixtures("prefect_api_url", "api_key_env"),
]
TARGET = "flowtest"


def _flow(
    database_url: str, simulator: SimulatorServer, *, page_size: int = 25, **params: Any
) -> State[Any]:
    async def call() -> State[Any]:
        return await sync_flow(
            target=TARGET,
            base_url=simulator.base_url,
            database_url=database_url,
            page_size=page_size,
            fetch_retry_delay_seconds=0,
            return_state=True,
            **params,
        )

    return asyncio.run(call())


async def _run_records(flow_run_id: UUID) -> dict[str, Any]:
    await APILogHandler.aflush()
    async with get_client() as client:
        flow_run = await client.read_flow_run(flow_run_id)
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        logs = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        task_runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return {"flow_run": flow_run, "artifacts": artifacts, "logs": logs, "task_runs": task_runs}


def _records(state: State[Any]) -> dict[str, Any]:
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    return asyncio.run(_run_records(flow_run_id))


def _fetch_attempts(records: dict[str, Any]) -> int:
    (fetch,) = [t for t in records["task_runs"] if t.task_key.startswith("fetch")]
    return int(fetch.run_count)


def test_flow_syncs_records_ledger_and_artifacts(
    simulator: SimulatorServer, database_url: str, engine: Engine
) -> None:
    first = _flow(database_url, simulator)
    assert first.is_completed(), first.message
    step = simulator.fleet.evolve({"create": 3, "delete": 2, "resize": 2, "rename": 1}, seed=11)
    second = _flow(database_url, simulator)
    assert second.is_completed(), second.message

    ledger = queries.runs(engine)
    assert [r["status"] for r in ledger] == ["succeeded", "succeeded"]
    latest, initial = ledger
    assert initial["seen"] == initial["created"] == FLEET
    truth = Counter(c["change_type"] for c in step if c["entity_type"] == "cvm")
    assert truth["created"] == 3
    assert truth["deleted"] == 2
    for kind in ("created", "updated", "deleted", "restored"):
        assert latest[kind] == truth[kind], kind
    assert latest["seen"] == FLEET + 1  # three created, two deleted

    summary = asyncio.run(second.aresult())
    assert summary["run_id"] == latest["id"]
    assert summary["counts"]["cvm"]["deleted"] == 2

    records = _records(second)
    artifacts = {a.key: a for a in records["artifacts"]}
    assert set(artifacts) == {
        "phala-sync-flowtest-counts",
        "phala-sync-flowtest-changes",
        "phala-sync-flowtest-fleet",
    }
    table = artifacts["phala-sync-flowtest-counts"].data
    rows = orjson.loads(table) if isinstance(table, str) else table
    cvm_row = next(r for r in rows if r["entity"] == "cvm")
    assert cvm_row["created"] == 3
    assert cvm_row["deleted"] == 2
    assert cvm_row["seen"] == FLEET + 1
    markdown = str(artifacts["phala-sync-flowtest-changes"].data)
    assert f"Run {latest['id']}" in markdown
    assert f"## Changes ({sum(truth.values()) + _other_changes(engine, latest['id'])})" in markdown

    # The key never leaves the process: not in parameters, artifacts or logs.
    assert API_KEY not in orjson.dumps(records["flow_run"].parameters).decode()
    for artifact in records["artifacts"]:
        assert API_KEY not in str(artifact.data)
        assert API_KEY not in str(artifact.description)
    log_text = "\n".join(log.message for log in records["logs"])
    assert "cvms: page 1 of" in log_text
    assert API_KEY not in log_text
    assert _fetch_attempts(records) == 1


def _other_changes(engine: Engine, run_id: int) -> int:
    """Change events of the run that are not CVM changes (apps, workspaces...)."""
    return sum(1 for c in queries.changes(engine, run_id=run_id) if c["entity_type"] != "cvm")


def test_wrong_key_fails_once_and_is_recorded(
    simulator: SimulatorServer, database_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHALA_CLOUD_API_KEY", "phak_wrong")
    state = _flow(database_url, simulator, fetch_retries=2)
    assert state.is_failed()
    with pytest.raises(AuthError, match="401"):
        asyncio.run(state.aresult())
    (run,) = queries.runs(engine)
    assert run["status"] == "failed"
    assert run["error"].startswith("AuthError: HTTP 401")
    assert _fetch_attempts(_records(state)) == 1  # an auth error is never retried


def test_retriable_failure_retries_the_fetch_from_scratch(
    simulator: SimulatorServer, database_url: str, engine: Engine
) -> None:
    # Page 3 of the CVMs answers 503 once: the client gives up (one attempt), the task retries.
    simulator.simulator.faults.set(["503:endpoint=cvms,page=3,times=1"])
    state = _flow(database_url, simulator, fetch_retries=1)
    assert state.is_completed(), state.message
    assert _fetch_attempts(_records(state)) == 2
    (run,) = queries.runs(engine)
    assert run["status"] == "succeeded"
    assert run["seen"] == run["created"] == FLEET
    with engine.connect() as conn:  # the failed attempt's staged rows are gone too
        assert conn.execute(select(func.count()).select_from(table_of(StagedRecord))).scalar() == 0


def test_retries_exhausted_leaves_a_failed_run(
    simulator: SimulatorServer, database_url: str, engine: Engine
) -> None:
    simulator.simulator.faults.set(["503:endpoint=cvms,page=2"])
    state = _flow(database_url, simulator, fetch_retries=1)
    assert state.is_failed()
    with pytest.raises(RetriableApiError, match="503"):
        asyncio.run(state.aresult())
    assert _fetch_attempts(_records(state)) == 2
    (run,) = queries.runs(engine)
    assert run["status"] == "failed"
    assert "503" in run["error"]


def test_key_from_a_secret_block(
    simulator: SimulatorServer, database_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.blocks.system import Secret

    Secret(value=SecretStr(API_KEY)).save("phala-sync-flowtest-key", overwrite=True)
    monkeypatch.delenv("PHALA_CLOUD_API_KEY")
    state = _flow(database_url, simulator, api_key_secret="phala-sync-flowtest-key")
    assert state.is_completed(), state.message
    assert queries.runs(engine)[0]["created"] == FLEET

    missing = _flow(database_url, simulator, api_key_secret="no-such-block")
    with pytest.raises(ConfigError, match="no-such-block"):
        asyncio.run(missing.aresult())
    assert len(queries.runs(engine)) == 1  # a configuration error opens no run


def test_no_key_and_password_parameter_are_refused(
    simulator: SimulatorServer, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_password = _flow("postgresql://user:hunter2@127.0.0.1:1/db", simulator)
    with pytest.raises(ConfigError, match="PHALA_SYNC_DATABASE_URL"):
        asyncio.run(with_password.aresult())
    monkeypatch.delenv("PHALA_CLOUD_API_KEY")
    no_key = _flow(sqlite_url, simulator)
    with pytest.raises(ConfigError, match="PHALA_CLOUD_API_KEY"):
        asyncio.run(no_key.aresult())
