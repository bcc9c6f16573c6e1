"""``build_report``: read the aggregates (one read transaction), draw the charts, write the page."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import Engine

from sync import clock
from sync.report import charts, data
from sync.report.page import Header, render_page

#: Charts that span the page's width.
WIDE = ("fleet-status", "capacity-region", "changes-run")


@dataclass(frozen=True)
class Report:
    """A built report: its HTML, the window it covers and the charts it holds."""

    html: str
    window: data.Window
    charts: tuple[charts.Chart, ...]


def build_report(
    engine: Engine,
    *,
    target: str | None = None,
    since: date | None = None,
    until: date | None = None,
    generated_at: datetime | None = None,
) -> Report:
    """The report of ``target`` (all targets when None) over ``since``..``until`` (UTC days).

    Every figure is read from the BI views in one transaction, so the charts agree with each
    other even while a run commits.
    """
    with engine.connect() as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        known = data.targets(conn)
        if target is not None and target not in known:
            names = ", ".join(known) or "none yet"
            raise ValueError(f"no run of target {target!r} in this database (targets: {names})")
        window = data.resolve_window(conn, target, since, until)
        label = target or (known[0] if len(known) == 1 else "all targets: " + ", ".join(known))
        header = Header(
            title=f"phala-sync fleet report: {label}",
            target=label,
            since=window.since,
            until=window.until,
            api_version=data.latest_api_version(conn, window),
            generated_at=generated_at or clock.now(),
        )
        runs = data.latest_runs(conn, window)
        if window.empty:
            drawn: tuple[charts.Chart, ...] = ()
        else:
            cost_rows, unpriced = data.daily_cost(conn, window)
            fleet = data.fleet_daily_figures(conn, window)
            drawn = (
                charts.fleet_by_status(fleet.status),
                charts.capacity_by_region(fleet.capacity),
                charts.workspaces_now(data.workspaces_now(conn, window)),
                charts.workspaces_over_time(fleet.workspaces),
                charts.changes_per_run(data.changes_per_run(conn, window)),
                charts.age_buckets(data.age_buckets(conn, window)),
                charts.daily_cost(cost_rows, unpriced=unpriced),
            )
    return Report(render_page(header, drawn, runs, wide=WIDE), window, drawn)


def write_report(report: Report, out: Path) -> Path:
    """Write the page to ``out`` atomically (a reader never sees half a file); returns the path."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(report.html)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
