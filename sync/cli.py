"""The ``phala-sync`` command line: sync, serve, deploy, migrate, ask the database, run the demo.

Settings come from flags, then the environment (``PHALA_CLOUD_API_KEY``, ``PHALA_CLOUD_API_PREFIX``,
``PHALA_SYNC_*``), then a ``.env`` file. The API key is never a flag: a flag's value shows in
``ps`` and in shell history. Errors end the command with one line on stderr and exit status 1
(2 for a usage error); ``phala-sync --debug ...`` shows the traceback instead.

Only ``sync``, ``serve``, ``deploy`` and ``demo`` import Prefect, and only when they run;
``simulate`` is loaded when it is invoked.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import click
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from sync import queries
from sync.errors import PhalaSyncError, StoreError
from sync.present import change_tally, summary_text, table, to_json
from sync.settings import Settings, build_settings, require_api_key
from sync.store import migrate
from sync.store.engine import make_engine, normalize_database_url, redact

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

F = TypeVar("F", bound=Callable[..., Any])

#: Commands whose module is imported only when they are invoked: name -> (module, attribute).
LAZY_COMMANDS = {
    "simulate": ("sync.simulator.command", "simulate"),
    "simulate-evolve": ("sync.simulator.command", "simulate_evolve"),
    "simulate-faults": ("sync.simulator.command", "simulate_faults"),
}


class CliError(click.ClickException):
    """A failure reported as one line on stderr, exit status 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"phala-sync: error: {self.format_message()}", err=True)


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def error_line(exc: BaseException) -> str:
    """What went wrong, in one line, for any exception a command may end with."""
    if isinstance(exc, PhalaSyncError):
        return _first_line(str(exc)) or type(exc).__name__
    if isinstance(exc, DBAPIError):
        orig = exc.orig if exc.orig is not None else exc
        return (
            f"database error ({type(orig).__name__}): {_first_line(str(orig))}; "
            "check --database-url or PHALA_SYNC_DATABASE_URL"
        )
    if isinstance(exc, SQLAlchemyError):
        return f"database error ({type(exc).__name__}): {_first_line(str(exc))}"
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {_first_line(str(exc))}"
    return (
        f"unexpected {type(exc).__name__}: {_first_line(str(exc))} "
        "(run `phala-sync --debug ...` for the traceback)"
    )


class PhalaSyncGroup(click.Group):
    """A group that loads :data:`LAZY_COMMANDS` on demand and turns errors into one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            module, attribute = LAZY_COMMANDS[cmd_name]
            command = getattr(importlib.import_module(module), attribute)
            assert isinstance(command, click.Command)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            raise CliError(error_line(exc)) from None


# ------------------------------------------------------------------------------------ options
def database_option(f: F) -> F:
    return click.option(
        "--database-url",
        metavar="URL",
        help="sqlite:///path/file.db or postgresql://user@host:5432/db "
        "[env PHALA_SYNC_DATABASE_URL; default sqlite:///phala-sync.db]",
    )(f)


def migrate_option(f: F) -> F:
    return click.option(
        "--migrate",
        is_flag=True,
        default=None,
        help="Upgrade a database at an older schema revision when a run starts [env "
        "PHALA_SYNC_MIGRATE]. An empty database is always created.",
    )(f)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(f)


def _settings(**overrides: Any) -> Settings:
    return build_settings(overrides)


#: What :func:`open_database` asks of the schema: at head (``current``, the query commands), one
#: a run can start on (``runnable``: empty, at head, or older with ``migrate``), or nothing.
SchemaCheck = Literal["current", "runnable", "none"]


@contextlib.contextmanager
def open_database(settings: Settings, *, schema: SchemaCheck = "current") -> Iterator[Engine]:
    """An engine on the configured database, whose schema passed the ``schema`` check."""
    url = normalize_database_url(settings.database_url)
    path = url.database if url.get_backend_name() == "sqlite" else None
    missing = bool(path) and path != ":memory:" and not Path(str(path)).exists()
    if path and path != ":memory:":
        if schema == "current" and missing:
            raise StoreError(
                f"no database at {path}: create it with `phala-sync db upgrade` or a first "
                "`phala-sync sync` (or point --database-url / PHALA_SYNC_DATABASE_URL at an "
                "existing one)"
            )
        if not Path(path).absolute().parent.is_dir():
            raise StoreError(
                f"cannot create the database {path}: the directory "
                f"{Path(path).absolute().parent} does not exist"
            )
    engine = make_engine(url)
    try:
        if schema == "current":
            migrate.require_current(engine)
        elif schema == "runnable" and not missing:  # a missing file: the first run creates it
            migrate.check_schema(engine, migrate=settings.migrate)
        yield engine
    finally:
        engine.dispose()


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


# ---------------------------------------------------------------------------------- the group
@click.group(cls=PhalaSyncGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="phala-sync", prog_name="phala-sync")
def cli(debug: bool) -> None:
    """Keep a SQL history of a Phala Cloud fleet (CVMs, apps, nodes, workspaces, creators).

    Settings come from flags, the environment (PHALA_CLOUD_API_KEY, PHALA_CLOUD_API_PREFIX,
    PHALA_SYNC_*) or a .env file in the current directory. Start with `phala-sync demo`.
    """


# ----------------------------------------------------------------------------------- sync
@cli.command("sync")
@database_option
@click.option("--api-version", metavar="DATE", help="Pinned X-Phala-Version, e.g. 2026-01-21.")
@click.option("--base-url", metavar="URL", help="API base URL [env PHALA_CLOUD_API_PREFIX].")
@click.option("--page-size", type=int, help="Items per page, 1-100.")
@click.option("--target", help="Name of this sync target (one per API key).")
@click.option(
    "--validation-policy",
    type=click.Choice(["strict", "quarantine"]),
    help="strict: an invalid item fails the run; quarantine: it is kept aside.",
)
@click.option("--concurrency", type=int, help="Pages fetched at once, 1-32.")
@click.option("--lock-timeout", type=float, help="Seconds to wait for another run's lock.")
@click.option(
    "--key-secret",
    metavar="BLOCK",
    help="Read the API key from this Prefect Secret block instead of PHALA_CLOUD_API_KEY.",
)
@click.option(
    "--retries",
    type=click.IntRange(0, 10),
    default=0,
    show_default=True,
    help="Restart the fetch this many times after a retriable failure.",
)
@migrate_option
@json_option
def sync_command(
    database_url: str | None,
    api_version: str | None,
    base_url: str | None,
    page_size: int | None,
    target: str | None,
    validation_policy: str | None,
    concurrency: int | None,
    lock_timeout: float | None,
    key_secret: str | None,
    retries: int,
    migrate: bool | None,
    as_json: bool,
) -> None:
    """Run one sync through the Prefect flow and print its summary.

    The API key comes from PHALA_CLOUD_API_KEY (environment or .env) or, with --key-secret, from
    a Prefect Secret block. An empty database gets the schema; one at an older revision needs
    `phala-sync db upgrade` or --migrate. Without a Prefect server configured (PREFECT_API_URL),
    a temporary local one runs for the command and dies with it.
    """
    overrides: dict[str, Any] = {
        "database_url": database_url,
        "api_version": api_version,
        "base_url": base_url,
        "page_size": page_size,
        "target": target,
        "validation_policy": validation_policy,
        "concurrency": concurrency,
        "lock_timeout": lock_timeout,
    }
    settings = build_settings({**overrides, "migrate": migrate})
    if key_secret is None:
        require_api_key(settings)
    with open_database(settings, schema="runnable"):
        pass  # fail fast, before Prefect starts, on a database that is unreachable or stale
    _pass_migrate_on(settings)
    parameters = {k: v for k, v in overrides.items() if v is not None}
    if database_url is not None and normalize_database_url(database_url).password is not None:
        # A flow parameter is stored by Prefect: keep the password out of it. The flow runs in
        # this process and reads the same environment.
        os.environ["PHALA_SYNC_DATABASE_URL"] = parameters.pop("database_url")
    parameters.update(api_key_secret=key_secret, fetch_retries=retries)

    from sync.cli_flow import run_sync_flow

    summary = run_sync_flow(parameters, progress=sys.stderr.isatty() and not as_json)
    click.echo(to_json(summary) if as_json else summary_text(summary))


def _pass_migrate_on(settings: Settings) -> None:
    """The flow reads ``migrate`` from the environment (it is no flow parameter): pass it on."""
    if settings.migrate:
        os.environ["PHALA_SYNC_MIGRATE"] = "true"


# ------------------------------------------------------------------------- serve and deploy
def deployment_options(f: F) -> F:
    """The options ``serve`` and ``deploy`` share: targets, schedule, and run parameters."""
    options = [
        click.option(
            "--target",
            "targets",
            multiple=True,
            metavar="NAME[:BLOCK]",
            help="A target, repeatable. NAME uses PHALA_CLOUD_API_KEY; NAME:BLOCK reads the key "
            "from the Prefect Secret block BLOCK. [default: PHALA_SYNC_TARGET or 'default']",
        ),
        click.option("--cron", help="Cron schedule, e.g. '*/30 * * * *'."),
        click.option(
            "--interval",
            type=click.FloatRange(min=1),
            help="Seconds between runs [default: 3600].",
        ),
        click.option("--api-version", metavar="DATE", help="Pinned X-Phala-Version."),
        click.option("--page-size", type=int, help="Items per page, 1-100."),
        click.option("--validation-policy", type=click.Choice(["strict", "quarantine"])),
        click.option(
            "--lock-timeout",
            type=float,
            default=600.0,
            show_default=True,
            help="Seconds a run waits for another target's run to release the database.",
        ),
        click.option(
            "--retries",
            type=click.IntRange(0, 10),
            default=1,
            show_default=True,
            help="Restart a run's fetch this many times after a retriable failure.",
        ),
        migrate_option,
    ]
    for option in reversed(options):
        f = option(f)
    return f


@dataclass(frozen=True)
class DeploymentOptions:
    """What ``serve`` and ``deploy`` were given (see :func:`deployment_options`)."""

    targets: tuple[str, ...]
    cron: str | None
    interval: float | None
    api_version: str | None
    page_size: int | None
    validation_policy: str | None
    lock_timeout: float
    retries: int
    migrate: bool | None


def _deployments(
    options: DeploymentOptions, settings: Settings, **extra: Any
) -> list[RunnerDeployment]:
    """The deployments for ``options``; one-line errors for bad targets and schedules."""
    from flows.deploy import Target, build_deployments

    parsed = [Target.parse(t) for t in options.targets] or [Target(settings.target)]
    try:
        return build_deployments(
            parsed,
            cron=options.cron,
            interval=options.interval,
            api_version=options.api_version,
            page_size=options.page_size,
            validation_policy=settings.validation_policy if options.validation_policy else None,
            lock_timeout=options.lock_timeout,
            fetch_retries=options.retries,
            **extra,
        )
    except ValueError as exc:  # Prefect's schedule validation (a bad cron expression)
        raise CliError(f"invalid schedule: {_first_line(str(exc))}") from None


def _deployment_settings(options: DeploymentOptions) -> Settings:
    if options.cron is not None and options.interval is not None:
        raise click.UsageError("give --cron or --interval, not both")
    return _settings(
        api_version=options.api_version,
        page_size=options.page_size,
        validation_policy=options.validation_policy,
        migrate=options.migrate,
    )


@cli.command()
@deployment_options
def serve(**given: Any) -> None:
    """Serve one scheduled deployment per target until interrupted.

    Each deployment runs at most one flow run at a time (a run due while the previous one is
    still going is cancelled). The database is PHALA_SYNC_DATABASE_URL; an empty one gets the
    schema at the first run, one at an older revision needs `phala-sync db upgrade` or
    --migrate. Point PREFECT_API_URL at a Prefect server to see the runs there; without one, a
    temporary local server runs for as long as this command.
    """
    options = DeploymentOptions(**given)
    settings = _deployment_settings(options)
    with open_database(settings, schema="runnable"):
        pass  # fail at start, not at the first scheduled run
    from sync.cli_flow import ensure_prefect_api, prefect_env_defaults

    prefect_env_defaults()
    # Imported here: Prefect is slow to import and only the flow-running commands need it.
    from flows.deploy import serve_deployments

    deployments = _deployments(options, settings)
    if any("api_key_secret" not in d.parameters for d in deployments):
        require_api_key(settings)  # a target reads PHALA_CLOUD_API_KEY, here
    _pass_migrate_on(settings)
    ensure_prefect_api(announce=True)
    names = ", ".join(d.name for d in deployments)
    click.echo(f"serving {names} (database {redact(settings.database_url)})", err=True)
    serve_deployments(deployments)


@cli.command()
@click.option(
    "--work-pool",
    required=True,
    metavar="POOL",
    help="An existing Prefect work pool, e.g. made with `prefect work-pool create POOL "
    "--type process`.",
)
@deployment_options
def deploy(work_pool: str, **given: Any) -> None:
    """Register one scheduled deployment per target with a Prefect work pool, and exit.

    A stock `prefect worker start --pool POOL` on any machine where phala-sync is installed runs
    them: the deployments name the flow by module (flows.sync_flow), nothing is pushed or pulled.
    Give the workers PHALA_SYNC_DATABASE_URL and, for NAME targets, PHALA_CLOUD_API_KEY; neither
    becomes a parameter. Needs PREFECT_API_URL (the server the workers poll). Each deployment
    runs one flow run at a time, like `serve`; --migrate lets the runs upgrade an older schema.
    """
    options = DeploymentOptions(**given)
    settings = _deployment_settings(options)
    from sync.cli_flow import prefect_env_defaults

    prefect_env_defaults()
    from prefect.types.entrypoint import EntrypointType

    from flows.deploy import register_deployments

    deployments = _deployments(
        options,
        settings,
        entrypoint_type=EntrypointType.MODULE_PATH,
        env={"PHALA_SYNC_MIGRATE": "true"} if settings.migrate else None,
    )
    for name in register_deployments(deployments, work_pool):
        click.echo(f"deployed {name} to work pool {work_pool!r}")
    click.echo(
        f"start a worker where phala-sync is installed: prefect worker start --pool {work_pool}",
        err=True,
    )


# ------------------------------------------------------------------------------------- db
@cli.group()
def db() -> None:
    """Create and migrate the database schema (Alembic)."""


@db.command()
@click.argument("revision", default="head")
@database_option
def upgrade(revision: str, database_url: str | None) -> None:
    """Migrate the database up to REVISION (default: the latest, head)."""
    settings = _settings(database_url=database_url)
    with open_database(settings, schema="none") as engine:
        before = migrate.current_revision(engine)
        migrate.upgrade(engine, revision)
        after = migrate.current_revision(engine)
    where = redact(settings.database_url)
    if before == after:
        click.echo(f"{where} is already at {after}")
    else:
        click.echo(f"upgraded {where} from {before or 'an empty database'} to {after}")


@db.command()
@click.argument("revision")
@database_option
def downgrade(revision: str, database_url: str | None) -> None:
    """Migrate the database down to REVISION ('base' removes every table)."""
    settings = _settings(database_url=database_url)
    with open_database(settings, schema="none") as engine:
        before = migrate.current_revision(engine)
        migrate.downgrade(engine, revision)
        after = migrate.current_revision(engine)
    click.echo(
        f"downgraded {redact(settings.database_url)} from {before} to {after or 'base (empty)'}"
    )


@db.command()
@database_option
def current(database_url: str | None) -> None:
    """Show the database's schema revision and this release's head."""
    settings = _settings(database_url=database_url)
    with open_database(settings, schema="none") as engine:
        revision = migrate.current_revision(engine)
    head = migrate.head_revision()
    if revision is None:
        click.echo(f"empty database (head is {head}): run `phala-sync db upgrade`")
    elif revision == head:
        click.echo(f"{revision} (head)")
    else:
        click.echo(f"{revision} (head is {head}: run `phala-sync db upgrade`)")


# ------------------------------------------------------------------------------- queries
@cli.command()
@database_option
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@json_option
def runs(database_url: str | None, limit: int, as_json: bool) -> None:
    """The latest sync runs, newest first, with their counts and errors."""
    with open_database(_settings(database_url=database_url)) as engine:
        rows = queries.runs(engine, limit=limit)
    if not as_json:
        rows = [
            {**r, "started_at": _short_time(r["started_at"]), "complete": r["listing_complete"]}
            for r in rows
        ]
    columns = ["id", "target", "api_version", "status", "started_at", "seen", "created",
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


@cli.command()
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
    with open_database(_settings(database_url=database_url)) as engine:
        rows = queries.inventory(engine, as_of=as_of, target=target)
    total = len(rows)
    rows = rows[:limit] if limit else rows
    columns = ["vm_uuid", "name", "status", "vcpu", "memory_mb", "disk_gb", "node_name", "region",
               "workspace_name", "target"]  # fmt: skip
    _emit(rows, columns, as_json, "no CVMs")
    if not as_json and rows:
        click.echo(f"({len(rows)} of {total} CVMs)" if len(rows) < total else f"({total} CVMs)")


@cli.command()
@click.argument("cvm")
@database_option
@json_option
def history(cvm: str, database_url: str | None, as_json: bool) -> None:
    """Every stored state of one CVM, by VM UUID (any spelling) or cvm_... id."""
    with open_database(_settings(database_url=database_url)) as engine:
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


@cli.command()
@database_option
@click.option("--run", "run_id", type=int, help="The run's id [default: the latest succeeded].")
@click.option(
    "--entity-type",
    type=click.Choice(["cvm", "app", "node", "workspace", "creator"]),
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
    with open_database(_settings(database_url=database_url)) as engine:
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


# ----------------------------------------------------------------------------------- demo
@cli.command()
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
    from sync.demo import run_demo

    run_demo(database_path=database_path, cvms=cvms, seed=seed, echo=click.echo)


def main() -> None:
    """Console script entry point."""
    cli(prog_name="phala-sync")


if __name__ == "__main__":  # pragma: no cover
    main()
