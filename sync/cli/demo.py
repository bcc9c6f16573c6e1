"""``phala-sync demo``: the whole product on one machine with nothing configured.

A simulated fleet is served by a child process on a free loopback port; a local SQLite file is
migrated (recreated each time); the flow syncs, the fleet changes through the simulator's admin
endpoint, the flow syncs again; then a head of the inventory and what changed are shown. The
simulator is stopped however the demo ends. Prefect runs in its ephemeral mode (a temporary local
server for the life of this process) unless ``PREFECT_API_URL`` points at a server.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from sync.cli.prefect import run_sync_flow
from sync.present import change_line, change_tally, sort_changes, summary_text, table
from sync.store import queries
from sync.store.engine import make_engine
from sync.store.migrate import upgrade
from sync.versions import DEFAULT_VERSION

#: The evolve step between the two syncs: a bit of every kind of change.
EVOLVE_COUNTS = {
    "create": 4,
    "delete": 3,
    "restart": 3,
    "resize": 2,
    "move": 2,
    "rename": 2,
    "rename_workspace": 1,
}
INVENTORY_HEAD = 8
CHANGES_SHOWN = 15
TARGET = "demo"


def recreate_sqlite(path: Path) -> None:
    """Remove the demo database and its companions (WAL, shared memory, lock file)."""
    for suffix in ("", "-wal", "-shm", "-journal", ".lock"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def run_demo(
    *,
    database_path: Path,
    cvms: int,
    seed: int,
    echo: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Run the demo, printing as it goes; returns the two run summaries."""
    from simulator import AdminClient, SimulatorProcess

    api_key = f"phak_demo_{secrets.token_hex(12)}"
    admin_token = secrets.token_hex(16)
    database_path = database_path.resolve()
    database_url = f"sqlite:///{database_path}"
    # The flow reads the key from the environment of this process; the simulator child gets it
    # through its own environment (never a command line).
    os.environ["PHALA_CLOUD_API_KEY"] = api_key
    echo(f"phala-sync demo: {cvms} simulated CVMs synced into {database_path}\n")
    with SimulatorProcess(api_key=api_key, admin_token=admin_token, cvms=cvms, seed=seed) as sim:
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
            first = run_sync_flow(parameters, progress=progress)
            echo("\n" + summary_text(first) + "\n")
            with AdminClient(sim.base_url, admin_token) as admin:
                step = admin.evolve(EVOLVE_COUNTS, seed=seed)
            echo(
                f"[4/5] the fleet changed (simulator evolve step {step['step']}: "
                f"{len(step['changes'])} entity changes)"
            )
            echo("[5/5] second sync")
            second = run_sync_flow(parameters, progress=progress)
            echo("\n" + summary_text(second) + "\n")
            _show_results(engine, second, database_url, echo)
        finally:
            engine.dispose()
    echo("the simulator is stopped; the database stays for you to query.")
    return [first, second]


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
    echo(f"What run {run_id} changed ({len(changed)} change events):")
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
@click.option(
    "--database",
    "database_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("phala-sync-demo.db"),
    show_default=True,
    help="SQLite file to (re)create for the demo.",
)
@click.option(
    "--cvms", type=click.IntRange(1, 20_000), default=300, show_default=True, help="Fleet size."
)
@click.option("--seed", type=int, default=7, show_default=True, help="Fleet seed.")
def demo(database_path: Path, cvms: int, seed: int) -> None:
    """Simulator + SQLite: sync, change the fleet, sync again, show what changed.

    Needs nothing configured: the simulator runs in the background on a free loopback port and
    is stopped at the end; Prefect runs in its local ephemeral mode unless PREFECT_API_URL is set.
    """
    run_demo(database_path=database_path, cvms=cvms, seed=seed, echo=click.echo)
