"""``phala-sync serve`` and ``phala-sync deploy``: scheduled deployments, one per target.

The commands that schedule runs; the deployments themselves are built by :mod:`flows.deploy`.
Prefect and :mod:`flows` are imported only when one of these commands runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from sync.cli.group import CliError, first_line
from sync.cli.options import F, open_database, retries_option, setting_options
from sync.lifetime import PARENT_ENV
from sync.settings import (
    DEPLOYMENT_OPTIONS,
    SERVED_LOCK_TIMEOUT,
    Settings,
    build_settings,
    require_api_key,
)
from sync.store.engine import safe_database_url

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment


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
        # Each given one becomes a parameter of every deployment; the others are read from the
        # environment where the runs happen.
        setting_options(DEPLOYMENT_OPTIONS, lock_timeout=SERVED_LOCK_TIMEOUT),
        retries_option(default=1),
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
    retries: int
    #: The run settings of :data:`~sync.settings.DEPLOYMENT_OPTIONS` (None: not given).
    run: dict[str, Any]

    @classmethod
    def from_given(cls, given: dict[str, Any]) -> DeploymentOptions:
        run = {name: given.pop(name) for name in DEPLOYMENT_OPTIONS}
        if given["cron"] is not None and given["interval"] is not None:
            raise click.UsageError("give --cron or --interval, not both")
        return cls(run=run, **given)

    def settings(self) -> Settings:
        """The settings of this process with the given run settings on top (validated)."""
        return build_settings(self.run)


def _deployments(
    options: DeploymentOptions, settings: Settings, **extra: Any
) -> list[RunnerDeployment]:
    """The deployments for ``options``; one-line errors for bad targets and schedules."""
    from flows.deploy import Target, build_deployments

    parsed = [Target.parse(t) for t in options.targets] or [Target(settings.target)]
    given = {name for name, value in options.run.items() if value is not None}
    try:
        return build_deployments(
            parsed,
            cron=options.cron,
            interval=options.interval,
            # Settings' values, validated and as JSON (a Path as its text).
            parameters=settings.model_dump(mode="json", include=given),
            fetch_retries=options.retries,
            **extra,
        )
    except ValueError as exc:  # Prefect's schedule validation (a bad cron expression)
        raise CliError(f"invalid schedule: {first_line(str(exc))}") from None


@click.command()
@deployment_options
def serve(**given: Any) -> None:
    """Serve one scheduled deployment per target until interrupted.

    Each deployment runs at most one flow run at a time (a run due while the previous one is
    still going is cancelled). The database is PHALA_SYNC_DATABASE_URL; an empty one gets the
    schema at the first run, one at an older revision needs `phala-sync db upgrade` or
    --migrate. Point PREFECT_API_URL at a Prefect server to see the runs there. Without one, a
    local Prefect server with its scheduler runs for as long as this command (and dies with
    it); it keeps deployments and run history in PREFECT_HOME (~/.prefect), where a restarted
    serve finds them again.
    """
    options = DeploymentOptions.from_given(given)
    settings = options.settings()
    with open_database(settings, schema="runnable"):
        pass  # fail at start, not at the first scheduled run
    from sync.cli.prefect import ensure_prefect_api, prefect_env_defaults
    from sync.cli.prefect_server import ServerKind

    prefect_env_defaults()
    # Imported here: Prefect is slow to import and only the flow-running commands need it.
    from flows.deploy import serve_deployments

    deployments = _deployments(options, settings)
    if any("api_key_secret" not in d.parameters for d in deployments):
        require_api_key(settings)  # a target reads PHALA_CLOUD_API_KEY, here
    ensure_prefect_api(announce=True, kind=ServerKind.SCHEDULING)
    # The runs are the runner's children: each makes the kernel kill it with this process.
    os.environ[PARENT_ENV] = str(os.getpid())
    names = ", ".join(d.name for d in deployments)
    click.echo(f"serving {names} (database {safe_database_url(settings.database_url)})", err=True)
    serve_deployments(deployments, interval=options.interval)


@click.command()
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
    options = DeploymentOptions.from_given(given)
    settings = options.settings()
    from sync.cli.prefect import prefect_env_defaults

    prefect_env_defaults()
    from prefect.types.entrypoint import EntrypointType

    from flows.deploy import register_deployments

    deployments = _deployments(
        options,
        settings,
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    for name in register_deployments(deployments, work_pool):
        click.echo(f"deployed {name} to work pool {work_pool!r}")
    click.echo(
        f"start a worker where phala-sync is installed: prefect worker start --pool {work_pool}",
        err=True,
    )
