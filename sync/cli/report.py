"""``phala-sync report``: the fleet as one self-contained HTML page (:mod:`sync.report`)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import click

from sync.cli.options import database_option, day_option, file_option, open_database
from sync.settings import build_settings


@click.command("report")
@database_option
@click.option("--target", help="The target to report (default: every target in the database).")
@day_option("--since", help="First UTC day (default: the 30 days up to --until).")
@day_option("--until", help="Last UTC day (default: the latest day with a successful run).")
@file_option("--out", default=Path("fleet-report.html"), help="The HTML file to write.")
def report(
    database_url: str | None,
    target: str | None,
    since: date | None,
    until: date | None,
    out: Path,
) -> None:
    """Write the fleet report: one HTML file with inline SVG charts, readable offline.

    Fleet size by status, capacity by region, CVMs by workspace, changes per run, CVM ages and
    the estimated daily compute cost, each with its numbers; the latest runs below. Every figure
    is a SQL aggregate over the BI views (docs/schema.md).
    """
    from sync.report.build import build_report, write_report  # matplotlib: only when drawing

    with open_database(build_settings({"database_url": database_url})) as engine:
        try:
            built = build_report(engine, target=target, since=since, until=until)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    path = write_report(built, out)
    window = built.window
    span = f"{window.since} to {window.until}" if not window.empty else "no successful run yet"
    click.echo(f"report written: {path} ({span})")
