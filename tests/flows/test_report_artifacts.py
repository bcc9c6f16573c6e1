"""The flow's fleet artifact (now vs the previous successful run) and PHALA_SYNC_REPORT_DIR.

The real flow under the Prefect test server, against the simulator served over loopback, on SQLite
and on PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from prefect.client.schemas.objects import State
from sqlalchemy import Engine, text

from flows.sync_flow import report_path
from simulator import SimulatorServer
from tests.flow_fixtures import FLEET
from tests.flows.test_sync_flow import TARGET, _flow, _records

pytestmark = [
    pytest.mark.prefect,
    pytest.mark.xdist_group("prefect"),
    pytest.mark.usefixtures("prefect_api_url", "api_key_env"),
]


def _artifacts(state: State[Any]) -> dict[str, Any]:
    return {a.key: a for a in _records(state)["artifacts"]}


def _table(artifact: Any) -> list[dict[str, Any]]:
    data = artifact.data
    rows: list[dict[str, Any]] = orjson.loads(data) if isinstance(data, str) else data
    return rows


def test_fleet_artifact_and_report_dir(
    simulator: SimulatorServer,
    database_url: str,
    engine: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reports = tmp_path / "reports"
    monkeypatch.setenv("PHALA_SYNC_REPORT_DIR", str(reports))
    first = _flow(database_url, simulator, page_size=50)
    assert first.is_completed(), first.message
    first_fleet = _table(_artifacts(first)["phala-sync-flowtest-fleet"])
    assert first_fleet[-1] == {
        "status": "(all)",
        "region": "(all)",
        "previous": 0,
        "now": FLEET,
        "difference": FLEET,
    }

    simulator.fleet.evolve({"create": 3, "delete": 2, "restart": 2}, seed=11)
    second = _flow(database_url, simulator, page_size=50)
    assert second.is_completed(), second.message
    artifacts = _artifacts(second)
    assert {
        "phala-sync-flowtest-fleet",
        "phala-sync-flowtest-report",
    } <= set(artifacts)
    assert "previous successful run" in str(artifacts["phala-sync-flowtest-fleet"].description)

    rows = _table(artifacts["phala-sync-flowtest-fleet"])
    total = rows[-1]
    assert (total["previous"], total["now"], total["difference"]) == (FLEET, FLEET + 1, 1)
    with engine.connect() as conn:
        now = {
            ("(unknown)" if s is None else s, "(unknown)" if r is None else r): int(n)
            for s, r, n in conn.execute(
                text(  # from the tables, not the views the artifact reads
                    "SELECT c.status, n.region, COUNT(*) FROM cvms c"
                    " LEFT JOIN nodes n ON n.node_id = c.node_id"
                    " WHERE c.target = :t AND c.deleted_at IS NULL GROUP BY c.status, n.region"
                ),
                {"t": TARGET},
            )
        }
    shown = {(r["status"], r["region"]): r["now"] for r in rows[:-1] if r["now"]}
    assert shown == now
    for row in rows:
        assert row["difference"] == row["now"] - row["previous"]
    assert sum(r["previous"] for r in rows[:-1]) == FLEET
    assert any(r["difference"] for r in rows[:-1])

    # The report was written after each run (replaced), and the markdown artifact links it.
    path = report_path(reports, TARGET)
    assert path.is_file()
    page = path.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page
    assert 'id="fleet-status"' in page
    markdown = str(artifacts["phala-sync-flowtest-report"].data)
    assert path.resolve().as_uri() in markdown
