"""The simulator's command line: ``simulate`` (serve), ``simulate-evolve`` and ``simulate-faults``.

The project CLI adds these to its group; ``python -m simulator serve|evolve|faults`` runs
them without it. ``simulate`` prints ``simulator listening on http://127.0.0.1:PORT/api/v1`` as
its first line of standard output (flushed) once the socket listens, so a parent process can read
the base URL; uvicorn's own logging goes to standard error.
"""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson

from simulator.admin import AdminClient
from simulator.app import create_app
from simulator.evolve import KINDS
from simulator.faults import FaultRule, FaultSpecError
from simulator.fleet import MAX_FLEET_SIZE, Fleet
from simulator.serve import LISTENING_PREFIX, base_url_of, bind_loopback, uvicorn_server

FAULT_HELP = (
    "A fault rule KIND[:key=value,...], repeatable. Kinds: 429 500 502 503 504 latency timeout "
    "drop malformed truncated drift page_drift. Selectors: endpoint=cvms|apps, "
    "page=N (or A-B, or A|B), after=N, times=N, rate=0..1. "
    "E.g. '503:page=2,times=2', '429:retry_after=date:2', "
    "'drift:what=missing,share=0.02', 'page_drift:page=3,insert=5,delete=5'."
)


def _parse_faults(specs: tuple[str, ...]) -> list[FaultRule]:
    try:
        return [FaultRule.parse(spec) for spec in specs]
    except FaultSpecError as exc:
        raise click.BadParameter(str(exc), param_hint="--fault") from None


@click.command("simulate")
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to bind.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="0: a free port."
)
@click.option(
    "--api-key",
    envvar="PHALA_CLOUD_API_KEY",
    required=True,
    help="The API key clients must send as X-API-Key (or PHALA_CLOUD_API_KEY).",
)
@click.option(
    "--cvms",
    type=click.IntRange(0, MAX_FLEET_SIZE),
    default=1000,
    show_default=True,
    help="Fleet size.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Fleet seed.")
@click.option(
    "--admin-token",
    envvar="PHALA_SIMULATOR_ADMIN_TOKEN",
    default=None,
    help="Token for the /admin endpoints (X-Admin-Token); without one they answer 403.",
)
@click.option("--fault", "faults", multiple=True, help=FAULT_HELP)
@click.option("--fault-seed", type=int, default=0, show_default=True, help="Seed of fault choices.")
@click.option(
    "--prewarm/--no-prewarm",
    default=False,
    show_default=True,
    help="Render every item before listening (first pages are then as fast as later ones).",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="warning",
    show_default=True,
)
def simulate(
    host: str,
    port: int,
    api_key: str,
    cvms: int,
    seed: int,
    admin_token: str | None,
    faults: tuple[str, ...],
    fault_seed: int,
    prewarm: bool,
    log_level: str,
) -> None:
    """Serve a simulated Phala Cloud API (GET /api/v1/cvms/paginated and /api/v1/apps)."""
    rules = _parse_faults(faults)
    try:
        sock = bind_loopback(host, port)
    except (ValueError, OSError) as exc:
        raise click.BadParameter(str(exc), param_hint="--host/--port") from None
    fleet = Fleet(cvms, seed)
    if prewarm:
        fleet.warm()
    app = create_app(
        fleet, api_key=api_key, admin_token=admin_token, faults=rules, fault_seed=fault_seed
    )
    server = uvicorn_server(app, log_level=log_level, own_logging=True)
    click.echo(f"{LISTENING_PREFIX}{base_url_of(sock)}")
    sys.stdout.flush()
    server.run(sockets=[sock])


def _admin(url: str, admin_token: str) -> AdminClient:
    return AdminClient(url, admin_token)


def _echo_json(value: Any) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


_URL = click.option(
    "--url", required=True, help="The simulator's base URL, as `simulate` printed it."
)
_TOKEN = click.option(
    "--admin-token", envvar="PHALA_SIMULATOR_ADMIN_TOKEN", required=True, help="X-Admin-Token."
)


def _kind_options(f: Any) -> Any:
    for kind in reversed(KINDS):
        flag = "--" + kind.replace("_", "-")
        f = click.option(
            flag, kind, type=click.IntRange(0), default=None, help=f"How many {kind}."
        )(f)
    return f


@click.command("simulate-evolve")
@_URL
@_TOKEN
@click.option("--seed", type=int, default=None, help="Seed of this step's choices.")
@click.option(
    "--total", type=click.IntRange(0), default=None, help="Changes drawn from the default mix."
)
@_kind_options
def simulate_evolve(
    url: str, admin_token: str, seed: int | None, total: int | None, **counts: int | None
) -> None:
    """Change a running simulator's fleet (one step) and print the step's ground truth."""
    chosen = {kind: n for kind, n in counts.items() if n is not None}
    with _admin(url, admin_token) as admin:
        _echo_json(admin.evolve(chosen or None, seed=seed, total=total))


@click.command("simulate-faults")
@_URL
@_TOKEN
@click.option("--set", "rules", multiple=True, help="Replace the rules with these. " + FAULT_HELP)
@click.option("--add", "added", multiple=True, help="Add these rules.")
@click.option("--clear", is_flag=True, help="Remove every rule.")
@click.option("--seed", type=int, default=None, help="New fault seed (with --set).")
def simulate_faults(
    url: str,
    admin_token: str,
    rules: tuple[str, ...],
    added: tuple[str, ...],
    clear: bool,
    seed: int | None,
) -> None:
    """Show or change a running simulator's fault rules."""
    _parse_faults(rules + added)
    with _admin(url, admin_token) as admin:
        if clear:
            admin.clear_faults()
        if rules:
            admin.set_faults(list(rules), seed=seed)
        if added:
            admin.add_faults(list(added))
        _echo_json(admin.faults())


@click.group("simulator")
def simulator_cli() -> None:
    """The Phala Cloud simulator (what ``python -m simulator`` runs)."""


simulator_cli.add_command(simulate, "serve")
simulator_cli.add_command(simulate_evolve, "evolve")
simulator_cli.add_command(simulate_faults, "faults")
