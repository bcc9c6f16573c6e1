"""The report checked as a person would: `phala-sync report`, opened in headless Chromium.

A history of 11 runs over 30 days is built on SQLite and on PostgreSQL; the command writes the
report; Chromium loads it (:mod:`tests.sync.report.browser`) with every network request bound to
fail. Skipped with the reason where Chromium is absent, failed instead in CI (``CI`` set).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, text

from sync.cli import cli
from sync.report.charts import UNKNOWN
from sync.report.data import as_date
from tests.sync.report.browser import PageVisit, find_chromium, visit
from tests.sync.report.history import START, TARGET, build_history

pytestmark = pytest.mark.slow

CHARTS = (
    "fleet-status",
    "capacity-region",
    "workspaces-now",
    "workspaces-time",
    "changes-run",
    "age",
    "cost-workspace",
)
RUNS, DAYS_APART = 11, 3  # 11 runs over 30 days


@pytest.fixture
def chromium() -> str:
    path = find_chromium()
    if path is None:
        reason = "no Chromium on PATH (Debian: apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test: {reason}")
        pytest.skip(reason)
    return path


def _label(value: Any) -> str:
    return UNKNOWN if value is None else str(value)


def _latest_day_from_fleet_daily(engine: Engine) -> dict[str, Any]:
    """The latest day's figures, read straight from fleet_daily (what the page must show)."""
    with engine.connect() as conn:
        (last,) = conn.execute(
            text("SELECT MAX(day) FROM fleet_daily WHERE target = :t"), {"t": TARGET}
        ).one()
        params = {"t": TARGET, "d": last}
        status = {
            _label(s): int(n)
            for s, n in conn.execute(
                text(
                    "SELECT status, SUM(cvms) FROM fleet_daily WHERE target = :t AND day = :d"
                    " GROUP BY status"
                ),
                params,
            )
        }
        regions = {
            _label(r): (int(v), round(float(m), 2), int(g))
            for r, v, m, g in conn.execute(
                text(
                    "SELECT region, SUM(vcpus), SUM(memory_gb), SUM(gpus) FROM fleet_daily"
                    " WHERE target = :t AND day = :d GROUP BY region"
                ),
                params,
            )
        }
    return {"day": as_date(last).isoformat(), "status": status, "regions": regions}


def truth_day(engine: Engine) -> str:
    return str(_latest_day_from_fleet_daily(engine)["day"])


def _row(seen: PageVisit, chart: str, key: str) -> dict[str, str]:
    rows = {r["key"]: r["cells"] for r in seen.page["tables"][chart]}
    assert key in rows, (chart, key, sorted(rows))
    cells: dict[str, str] = rows[key]
    return cells


def test_report_in_a_browser(
    chromium: str, engine: Engine, database_url: str, tmp_path: Path
) -> None:
    build_history(engine, runs=RUNS, days_apart=DAYS_APART)
    out = tmp_path / "fleet-report.html"
    result = CliRunner().invoke(
        cli,
        ["report", "--database-url", database_url, "--target", TARGET, "--since",
         START.date().isoformat(), "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert str(out) in result.output

    seen = visit(out, screenshot=tmp_path / "report.png")

    # Self-contained: the page's own file is the one request; nothing failed; no console error.
    assert seen.requests == [out.resolve().as_uri()]
    assert seen.failed == []
    assert seen.console_errors == []
    assert seen.page["scripts"] == 0
    assert seen.screenshot is not None
    png = seen.screenshot.read_bytes()
    assert png.startswith(b"\x89PNG")
    assert len(png) > 20_000

    # Every chart is drawn, with data marks (no chart fell back to words on this history).
    charts = {c["key"]: c for c in seen.page["charts"]}
    assert set(charts) == set(CHARTS)
    for key in CHARTS:
        assert charts[key]["svg"], (key, charts[key]["note"])
        assert charts[key]["marks"] > 0, key
    header = seen.page["header"]
    assert TARGET in header
    assert f"{START.date().isoformat()} to {truth_day(engine)}" in header

    # The latest day's numbers on the page are fleet_daily's.
    truth = _latest_day_from_fleet_daily(engine)
    status_row = _row(seen, "fleet-status", truth["day"])
    shown_status = {k: int(v) for k, v in status_row.items() if k not in ("day", "total")}
    assert {k: v for k, v in shown_status.items() if v} == {
        k: v for k, v in truth["status"].items() if v
    }
    assert int(status_row["total"]) == sum(truth["status"].values())
    capacity = _row(seen, "capacity-region", truth["day"])
    for region, (vcpus, memory, gpus) in truth["regions"].items():
        assert int(capacity[f"{region} vCPUs"]) == vcpus, region
        assert float(capacity[f"{region} memory GiB"]) == memory, region
        assert int(capacity[f"{region} GPUs"]) == gpus, region
    workspaces = _row(seen, "workspaces-time", truth["day"])
    assert int(workspaces["total"]) == sum(truth["status"].values())
    # One row per succeeded run in the changes chart, and the runs table lists the latest.
    assert len(seen.page["tables"]["changes-run"]) == RUNS
    assert len(seen.page["tables"]["runs"]) == RUNS
