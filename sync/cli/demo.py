"""``phala-sync demo``: the whole product on one machine with nothing configured.

A simulated fleet is served by a child process on a free loopback port; a local SQLite file is
migrated (recreated each time); the flow syncs once a simulated day for :data:`DEMO_RUNS` days,
the fleet changing through the simulator's admin endpoint between syncs (:data:`DAILY_CHANGES`);
then a head of the inventory and what the last run changed are shown, and the fleet report
(``phala-sync report``) is written. The simulator is stopped however the demo ends. Prefect runs
in its ephemeral mode (a temporary local server for the life of this process) unless
``PREFECT_API_URL`` points at a server.

Simulated days: the run's clock (:mod:`sync.clock`) is set for the whole demo, so the runs are
recorded a day apart, ending at the current hour, and the report's charts have days to show.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from sync import clock
from sync.cli.options import file_option
from sync.cli.prefect import run_sync_flow
from sync.present import change_line, change_tally, sort_changes, summary_text, table
from sync.store import queries
from sync.store.engine import make_engine
from sync.store.migrate import upgrade
from sync.versions import DEFAULT_VERSION

#: Syncs in the demo, one per simulated day.
DEMO_RUNS = 10
#: The evolve steps between the syncs, in turn: growth, churn, a clean-up day, restores...
DAILY_CHANGES: tuple[dict[str, int], ...] = (
    {"create": 12, "delete": 2, "restart": 4, "resize": 3, "move": 2, "rename": 2},
    {"create": 10, "delete": 3, "restart": 6, "resize": 2, "rename_workspace": 1},
    {"create": 15, "delete": 2, "restart": 3, "resize": 4, "move": 3},
    {"create": 6, "delete": 20, "restart": 3, "resize": 1},
    {"create": 18, "delete": 3, "restart": 5, "resize": 3, "move": 2},
    {"create": 12, "delete": 4, "restart": 8, "resize": 2, "rename": 2},
    {"create": 20, "delete": 2, "restart": 4, "resize": 5, "move": 3},
    {"create": 8, "delete": 10, "restart": 6, "resize": 2, "restore": 3},
    {"create": 14, "delete": 3, "restart": 5, "resize": 3, "rename_workspace": 1},
)
INVENTORY_HEAD = 8
CHANGES_SHOWN = 15
TARGET = "demo"


def recreate_sqlite(path: Path) -> None:
    """Remove the demo database and its companions (WAL, shared memory, lock file)."""
    for suffix in ("", "-wal", "-shm", "-journal", ".lock"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def run_times(runs: int, end: datetime) -> list[datetime]:
    """One time a day, ``runs`` of them, the last at ``end``'s hour."""
    last = end.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return [last - timedelta(days=runs - 1 - i) for i in range(runs)]


def run_line(summary: dict[str, Any]) -> str:
    """One run in one line: when, what it saw and changed."""
    cvm = (summary.get("counts") or {}).get("cvm", {})
    started = datetime.fromisoformat(str(summary["started_at"]))
    changed = ", ".join(f"{k} {cvm.get(k, 0)}" for k in ("created", "updated", "deleted"))
    return (
        f"Run {summary['run_id']} {summary['status']} at {started:%Y-%m-%d %H:%M} UTC: "
        f"{cvm.get('seen', 0)} CVMs seen; {changed}"
    )


def run_demo(
    *,
    database_path: Path,
    cvms: int,
    seed: int,
    echo: Callable[[str], None],
    runs: int = DEMO_RUNS,
    report_path: Path | None = None,
) -> list[dict[str, Any]]:
    """Run the demo, printing as it goes; returns the run summaries."""
    from simulator import AdminClient, SimulatorProcess

    api_key = f"phak_demo_{secrets.token_hex(12)}"
    admin_token = secrets.token_hex(16)
    database_path = database_path.resolve()
    database_url = f"sqlite:///{database_path}"
    times = run_times(runs, clock.wall_clock())
    # The flow reads the key from the environment of this process; the simulator child gets it
    # through its own environment (never a command line).
    os.environ["PHALA_CLOUD_API_KEY"] = api_key
    echo(
        f"phala-sync demo: {cvms} simulated CVMs synced into {database_path}, once a simulated "
        f"day for {runs} days ({times[0]:%Y-%m-%d} to {times[-1]:%Y-%m-%d})\n"
    )
    summaries: list[dict[str, Any]] = []
    run_clock = clock.SteppingClock(times[0])
    with (
        SimulatorProcess(api_key=api_key, admin_token=admin_token, cvms=cvms, seed=seed) as sim,
        clock.use_clock(run_clock),
    ):
        echo(f"[1/5] simulator listening on {sim.base_url} ({cvms} CVMs, seed {seed})")
        recreate_sqlite(database_path)
        engine = make_engine(database_url)
        try:
            upgrade(engine)
            echo(f"[2/5] database created and migrated: {database_path.name}")
            parameters: dict[str, Any] = {
                "target": TARGET,
                "base_url": sim.base_url,
                "database_url": database_url,
                "api_version": DEFAULT_VERSION,
                "fetch_retries": 0,
            }
            progress = sys.stderr.isatty()
            echo("[3/5] first sync (Prefect flow; a first start of Prefect takes a few seconds)")
            summaries.append(run_sync_flow(parameters, progress=progress))
            echo("\n" + summary_text(summaries[0]) + "\n")
            echo(
                f"[4/5] {runs - 1} more days: each day the fleet changes (a simulator evolve "
                "step), then the flow syncs (times are simulated, and so are the durations)"
            )
            echo("  " + run_line(summaries[0]))
            with AdminClient(sim.base_url, admin_token) as admin:
                for day, at in enumerate(times[1:], start=1):
                    counts = DAILY_CHANGES[(day - 1) % len(DAILY_CHANGES)]
                    admin.evolve(counts, seed=seed + day)
                    run_clock.jump(at)
                    summaries.append(run_sync_flow(parameters, progress=progress))
                    echo("  " + run_line(summaries[-1]))
            echo("")
            _show_results(engine, summaries[-1], database_url, echo)
        finally:
            engine.dispose()
    echo("the simulator is stopped; the database stays for you to query.\n")
    echo("[5/5] the fleet report")
    report = _write_demo_report(database_url, report_path, echo)
    echo(f"fleet report: {report}")
    return summaries


def _write_demo_report(
    database_url: str, report_path: Path | None, echo: Callable[[str], None]
) -> Path:
    from sync.report.build import build_report, write_report  # matplotlib: only when drawing

    engine = make_engine(database_url)
    try:
        built = build_report(engine, target=TARGET, generated_at=clock.wall_clock())
    finally:
        engine.dispose()
    path = write_report(built, report_path or Path("phala-sync-demo-report.html"))
    echo(
        f"  {len(built.charts)} charts over {built.window.since} to {built.window.until}: open "
        "it in a browser (one file, works offline), or write it again with\n"
        f"  phala-sync report --database-url {database_url} --out {path.name}\n"
    )
    return path


def _show_results(
    engine: Any, summary: dict[str, Any], database_url: str, echo: Callable[[str], None]
) -> None:
    fleet = queries.inventory(engine)
    head = fleet[:INVENTORY_HEAD]
    columns = ["vm_uuid", "name", "status", "vcpu", "memory_mb", "region", "workspace_name"]
    echo(f"Inventory now ({len(head)} of {len(fleet)} CVMs):")
    echo(table(head, columns) + "\n")
    run_id = int(summary["run_id"])
    changed = queries.changes(engine, run_id=run_id)
    echo(f"What the last run ({run_id}) changed ({len(changed)} change events):")
    echo(table(change_tally(changed), ["entity", "created", "updated", "deleted", "restored"]))
    for change in sort_changes(changed)[:CHANGES_SHOWN]:
        echo("  " + change_line(change))
    if len(changed) > CHANGES_SHOWN:
        echo(f"  ... and {len(changed) - CHANGES_SHOWN} more")
    echo("")
    flag = f"--database-url {database_url}"
    echo("Ask the database yourself:")
    for command in (
        f"runs {flag}",
        f"inventory {flag} --limit 20",
        f"changes {flag} --run {run_id}",
        f"history {flag} <vm_uuid>",
    ):
        echo(f"  phala-sync {command}")


@click.command()
@file_option(
    "--database",
    "database_path",
    default=Path("phala-sync-demo.db"),
    help="SQLite file to (re)create for the demo.",
)
@click.option(
    "--cvms", type=click.IntRange(1, 20_000), default=300, show_default=True, help="Fleet size."
)
@click.option("--seed", type=int, default=7, show_default=True, help="Fleet seed.")
@click.option(
    "--runs",
    type=click.IntRange(2, 60),
    default=DEMO_RUNS,
    show_default=True,
    help="Syncs, one per simulated day.",
)
@file_option(
    "--report",
    "report_path",
    default=Path("phala-sync-demo-report.html"),
    help="Where to write the fleet report.",
)
def demo(database_path: Path, cvms: int, seed: int, runs: int, report_path: Path) -> None:
    """Simulator + SQLite: a sync a day for several simulated days, the fleet changing between
    them; then what changed, and the fleet report (one HTML file).

    Needs nothing configured: the simulator runs in the background on a free loopback port and
    is stopped at the end; Prefect runs in its local ephemeral mode unless PREFECT_API_URL is set.
    """
    run_demo(
        database_path=database_path,
        cvms=cvms,
        seed=seed,
        echo=click.echo,
        runs=runs,
        report_path=report_path,
    )
