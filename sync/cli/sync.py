"""``phala-sync sync``: one run through the Prefect flow, and its summary."""

from __future__ import annotations

import os
import sys
from typing import Any

import click
from sqlalchemy import Engine

from sync import prefetching
from sync.cli.options import json_option, open_database, retries_option, setting_options
from sync.present import summary_text, to_json
from sync.settings import SYNC_OPTIONS, build_settings, flow_parameters, require_api_key


@click.command("sync")
@setting_options(SYNC_OPTIONS)
@click.option(
    "--key-secret",
    metavar="BLOCK",
    help="Read the API key from this Prefect Secret block instead of PHALA_CLOUD_API_KEY.",
)
@retries_option(default=0)
@json_option
def sync_command(key_secret: str | None, retries: int, as_json: bool, **given: Any) -> None:
    """Run one sync through the Prefect flow and print its summary.

    The API key comes from PHALA_CLOUD_API_KEY (environment or .env) or, with --key-secret, from
    a Prefect Secret block. An empty database gets the schema; one at an older revision needs
    `phala-sync db upgrade` or --migrate. Without a Prefect server configured (PREFECT_API_URL),
    a temporary local one runs for the command and dies with it. A --database-url with a
    password reaches the flow through PHALA_SYNC_DATABASE_URL, never as a flow parameter. The
    first API requests go out while Prefect starts, and the run takes their answers.
    """
    settings = build_settings(given)
    if key_secret is None:
        require_api_key(settings)

    def send_ahead(engine: Engine) -> None:
        # The listing's first requests go out while the schema is checked and Prefect starts
        # (a key from a Secret block is not known yet).
        if key_secret is None:
            prefetching.begin(engine, settings)

    try:
        # Fail fast, before Prefect starts, on a database that is unreachable or stale.
        with open_database(settings, schema="runnable", on_open=send_ahead):
            pass
        parameters, environment = flow_parameters(given)
        os.environ.update(environment)  # the flow runs in this process and reads this environment
        parameters.update(api_key_secret=key_secret, fetch_retries=retries)

        from sync.cli.prefect import run_sync_flow

        summary = run_sync_flow(parameters, progress=sys.stderr.isatty() and not as_json)
    finally:
        prefetching.discard()
    click.echo(to_json(summary) if as_json else summary_text(summary))
