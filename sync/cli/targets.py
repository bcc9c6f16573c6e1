"""``phala-sync targets`` and ``phala-sync targets retire NAME``: the targets of one database."""

from __future__ import annotations

from datetime import timedelta

import click

from sync import clock
from sync.cli.options import database_option, json_option, open_database
from sync.present import summary_text, table, to_json
from sync.settings import build_settings
from sync.targets import STALE_AFTER, retire_target, target_statuses

_COLUMNS = ("target", "last_success_run_id", "last_success_at", "cvms", "apps", "stale", "retired")
_STALE_HOURS = STALE_AFTER.total_seconds() / 3600


@click.group(invoke_without_command=True)
@database_option
@click.option(
    "--stale-after",
    metavar="HOURS",
    type=click.FloatRange(min=0),
    default=_STALE_HOURS,
    show_default=True,
    help="Flag a target as stale when its latest successful sync is older than this.",
)
@json_option
@click.pass_context
def targets(
    ctx: click.Context, database_url: str | None, stale_after: float, as_json: bool
) -> None:
    """The targets (one per API key) syncing into the database: their latest successful run,
    how many CVMs and apps each sees, and whether it is stale or retired.

    A target whose key was revoked or rotated under a new target name stays stale, and keeps
    CVMs that only it saw alive: retire it with `phala-sync targets retire NAME`.
    """
    if ctx.invoked_subcommand is not None:
        return
    with open_database(build_settings({"database_url": database_url})) as engine:
        rows = target_statuses(engine, now=clock.now(), stale_after=timedelta(hours=stale_after))
    if as_json:
        click.echo(to_json(rows))
    elif rows:
        click.echo(table(rows, list(_COLUMNS)))
    else:
        click.echo("no targets yet: run `phala-sync sync`")


@targets.command()
@click.argument("name")
@database_option
@json_option
def retire(name: str, database_url: str | None, as_json: bool) -> None:
    """Retire target NAME: end what it sees, delete what no other target sees, in one run.

    Refuses while a run of NAME is in progress. The deletions are recorded as a ledger run of
    kind `retire` (see `phala-sync runs`), one `deleted` event per CVM or app that only NAME saw;
    the CVMs other targets still see move to one of them. A later sync of NAME starts afresh.
    """
    settings = build_settings({"database_url": database_url})
    with open_database(settings) as engine:
        summary = retire_target(engine, settings, name)
    click.echo(to_json(summary.to_dict()) if as_json else summary_text(summary.to_dict()))
