"""The ``phala-sync`` command line: sync, serve, deploy, migrate, ask the database, run the demo.

Settings come from flags, then the environment (``PHALA_CLOUD_API_KEY``, ``PHALA_CLOUD_API_PREFIX``,
``PHALA_SYNC_*``), then a ``.env`` file. The API key is never a flag: a flag's value shows in
``ps`` and in shell history.

One module per command or family (:mod:`~sync.cli.sync`, :mod:`~sync.cli.scheduling` for
``serve`` and ``deploy``, :mod:`~sync.cli.db`, :mod:`~sync.cli.lookups` for ``runs``,
``inventory``, ``history``, ``changes`` and ``fleet``, :mod:`~sync.cli.report`,
:mod:`~sync.cli.targets`, :mod:`~sync.cli.demo`), gathered here into the group of
:mod:`~sync.cli.group`. This package is the only part of :mod:`sync` that reaches :mod:`flows`,
and only inside the commands that run a flow (``sync``, ``serve``, ``deploy``, ``demo``), so the
others start without importing Prefect. ``simulate`` is loaded when invoked.
"""

from __future__ import annotations

from sync.cli import db, demo, lookups, report, scheduling, sync, targets
from sync.cli.group import cli, error_line

for _command in (
    sync.sync_command,
    scheduling.serve,
    scheduling.deploy,
    db.db,
    lookups.runs,
    lookups.inventory,
    lookups.history,
    lookups.changes,
    lookups.fleet,
    report.report,
    targets.targets,
    demo.demo,
):
    cli.add_command(_command)


def main() -> None:
    """Console script entry point."""
    cli(prog_name="phala-sync")


__all__ = ["cli", "error_line", "main"]
