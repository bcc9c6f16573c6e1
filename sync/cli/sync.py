"""``phala-sync sync``: one run through the Prefect flow, and its summary."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from sync.cli.options import database_option, json_option, migrate_option, open_database
from sync.present import summary_text, to_json
from sync.settings import build_settings, require_api_key
from sync.store.engine import normalize_database_url


@click.command("sync")
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
        "migrate": migrate,
    }
    settings = build_settings(overrides)
    if key_secret is None:
        require_api_key(settings)
    with open_database(settings, schema="runnable"):
        pass  # fail fast, before Prefect starts, on a database that is unreachable or stale
    parameters = {k: v for k, v in overrides.items() if v is not None}
    if database_url is not None and normalize_database_url(database_url).password is not None:
        # A flow parameter is stored by Prefect: keep the password out of it. The flow runs in
        # this process and reads the same environment.
        os.environ["PHALA_SYNC_DATABASE_URL"] = parameters.pop("database_url")
    parameters.update(api_key_secret=key_secret, fetch_retries=retries)

    from sync.cli.prefect import run_sync_flow

    summary = run_sync_flow(parameters, progress=sys.stderr.isatty() and not as_json)
    click.echo(to_json(summary) if as_json else summary_text(summary))
