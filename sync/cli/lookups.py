"""``phala-sync runs|inventory|history|changes|fleet``: what the database holds, as text or JSON.

The commands that look things up; the queries themselves are :mod:`sync.store.queries`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import click

from sync.cli.group import CliError
from sync.cli.options import database_option, day_option, json_option, open_database
from sync.present import change_tally, table, to_json
from sync.records import ENTITY_TYPES
from sync.settings import build_settings
from sync.store import queries, views


def _emit(rows: list[dict[str, Any]], columns: list[str], as_json: bool, empty: str) -> None:
    if as_json:
        click.echo(to_json(rows))
    elif rows:
        click.echo(table(rows, columns))
    else:
        click.echo(empty)


def _short_time(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 19 and value[10] == "T":
        return value[:19].replace("T", " ")
    return value


@click.command()
@database_option
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@json_option
def runs(database_url: str | None, limit: int, as_json: bool) -> None:
    """The latest sync runs, newest first, with their counts and errors."""
    with open_database(build_settings({"database_url": database_url})) as engine:
        rows = queries.runs(engine, limit=limit)
    if not as_json:
        rows = [
            {**r, "started_at": _short_time(r["started_at"]), "complete": r["listing_complete"]}
            for r in rows
        ]
    columns = ["id", "target", "api_version", "status", "kind", "started_at", "seen", "created",
               "updated", "deleted", "restored", "quarantined", "complete", "error"]  # fmt: skip
    _emit(rows, columns, as_json, "no runs yet: run `phala-sync sync`")


def _timestamp(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """An ``--as-of`` value as an aware datetime (UTC when it names no offset)."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time such as 2026-04-15 or 2026-04-15T12:00:00Z"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@click.command()
@database_option
@click.option(
    "--as-of",
    metavar="TIME",
    callback=_timestamp,
    help="The fleet as it was at this time, ISO 8601 (UTC unless an offset is given).",
)
@click.option("--target", help="Only this target's CVMs.")
@click.option("--limit", type=click.IntRange(min=1), help="Show at most this many CVMs.")
@json_option
def inventory(
    database_url: str | None,
    as_of: datetime | None,
    target: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """The CVMs that exist now (or existed --as-of a time), with node and workspace."""
    with open_database(build_settings({"database_url": database_url})) as engine:
        rows = queries.inventory(engine, as_of=as_of, target=target)
    total = len(rows)
    rows = rows[:limit] if limit else rows
    columns = ["vm_uuid", "name", "status", "vcpu", "memory_mb", "disk_gb", "node_name", "region",
               "workspace_name", "target"]  # fmt: skip
    _emit(rows, columns, as_json, "no CVMs")
    if not as_json and rows:
        click.echo(f"({len(rows)} of {total} CVMs)" if len(rows) < total else f"({total} CVMs)")


@click.command()
@click.argument("cvm")
@database_option
@json_option
def history(cvm: str, database_url: str | None, as_json: bool) -> None:
    """Every stored state of one CVM, by VM UUID (any spelling) or cvm_... id."""
    with open_database(build_settings({"database_url": database_url})) as engine:
        rows = queries.history(engine, cvm)
    if not rows:
        raise CliError(f"no stored state for CVM {cvm!r} (give its VM UUID or its cvm_... id)")
    if not as_json:
        rows = [
            {
                **r,
                "valid_from": _short_time(r["valid_from"]),
                "valid_to": _short_time(r["valid_to"]),
            }
            for r in rows
        ]
    columns = ["run_id", "valid_from", "valid_to", "name", "status", "vcpu", "memory_mb",
               "disk_gb", "node_id", "workspace_id"]  # fmt: skip
    _emit(rows, columns, as_json, "")


@click.command()
@database_option
@click.option("--run", "run_id", type=int, help="The run's id [default: the latest succeeded].")
@click.option(
    "--entity-type",
    type=click.Choice(ENTITY_TYPES),
    help="Only changes of this entity type.",
)
@click.option("--limit", type=click.IntRange(min=1), default=1000, show_default=True)
@json_option
def changes(
    database_url: str | None,
    run_id: int | None,
    entity_type: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """What one run changed: created, updated, deleted and restored entities."""
    with open_database(build_settings({"database_url": database_url})) as engine:
        rows = queries.changes(engine, run_id=run_id, entity_type=entity_type, limit=limit)
    if as_json:
        click.echo(to_json(rows))
        return
    if not rows:
        click.echo("no changes" + (f" in run {run_id}" if run_id is not None else ""))
        return
    click.echo(table(change_tally(rows), ["entity", "created", "updated", "deleted", "restored"]))
    click.echo("")
    shown = [{**r, "fields": ", ".join(sorted(r.get("changes") or {}))} for r in rows]
    click.echo(table(shown, ["run_id", "change_type", "entity_type", "entity_id", "fields"]))


@click.command()
@database_option
@click.option("--target", help="Only this target's CVMs [default: every target, summed].")
@day_option("--since", help="From this UTC day on (YYYY-MM-DD).")
@day_option("--until", help="Up to this UTC day, included.")
@click.option(
    "--by",
    type=click.Choice(list(views.FLEET_DIMENSIONS)),
    help="One row per day and value of this dimension.",
)
@json_option
def fleet(
    database_url: str | None,
    target: str | None,
    since: date | None,
    until: date | None,
    by: str | None,
    as_json: bool,
) -> None:
    """The fleet day by day (UTC): CVMs and capacity at the end of each day, from fleet_daily."""
    if since is not None and until is not None and since > until:
        raise CliError(f"--since {since} is after --until {until}")
    with open_database(build_settings({"database_url": database_url})) as engine:
        rows = views.fleet_series(engine, target=target, since=since, until=until, by=by)
    key = [views.FLEET_DIMENSIONS[by]] if by else []
    columns = ["day", *key, "cvms", "vcpus", "memory_gb", "disk_gb", "gpus"]
    _emit(rows, columns, as_json, "no days yet: the series starts with the first succeeded run")
