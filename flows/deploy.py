"""Deployments of the sync flow: one per target (API key), each on a schedule, one run at a time.

A target is ``NAME`` (its key is ``PHALA_CLOUD_API_KEY``) or ``NAME:BLOCK`` (its key is in the
Prefect ``Secret`` block ``BLOCK``). Every deployment gets a concurrency limit of one with
``CANCEL_NEW``: a scheduled run that finds the previous one still going is cancelled rather than
queued, since the next schedule tick syncs everything anyway. Several targets share the database's
run lock, so their runs wait for each other up to ``lock_timeout`` seconds.

``serve`` runs the deployments in this process (``prefect.serve``); the same
:func:`build_deployments` output can be handed to ``prefect.deploy(..., work_pool_name=...)`` to run
on workers of a work pool instead (see docs/operations.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment

from flows.sync_flow import sync_flow
from sync.errors import ConfigError
from sync.settings import ValidationPolicy

#: Served runs wait this long for another target's run to release the database's run lock.
SERVED_LOCK_TIMEOUT = 600.0
DEFAULT_INTERVAL = 3600.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class Target:
    """One sync target: its name and, optionally, the Secret block holding its API key."""

    name: str
    key_secret: str | None = None

    @classmethod
    def parse(cls, text: str) -> Target:
        name, sep, block = text.partition(":")
        if not _NAME.match(name):
            raise ConfigError(
                f"invalid target {text!r}: use NAME or NAME:SECRET_BLOCK, where NAME is letters, "
                "digits, '.', '_' or '-' (at most 100)"
            )
        if sep and not block:
            raise ConfigError(f"invalid target {text!r}: no Secret block name after ':'")
        return cls(name=name, key_secret=block or None)


def deployment_name(target: Target) -> str:
    return f"sync-{target.name}"


def build_deployments(
    targets: list[Target],
    *,
    cron: str | None = None,
    interval: float | None = None,
    api_version: str | None = None,
    page_size: int | None = None,
    validation_policy: ValidationPolicy | None = None,
    lock_timeout: float = SERVED_LOCK_TIMEOUT,
    fetch_retries: int = 1,
) -> list[RunnerDeployment]:
    """One scheduled deployment of the sync flow per target."""
    if cron is not None and interval is not None:
        raise ConfigError("give a cron schedule or an interval, not both")
    if not targets:
        raise ConfigError("no target to serve: give at least one --target")
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise ConfigError(f"targets must have distinct names, got {', '.join(names)}")
    if sum(t.key_secret is None for t in targets) > 1:
        raise ConfigError(
            "several targets would all use PHALA_CLOUD_API_KEY: give each target but one its "
            "own key as a Prefect Secret block, --target NAME:BLOCK"
        )
    schedule: dict[str, Any] = (
        {"cron": cron}
        if cron is not None
        else {"interval": timedelta(seconds=interval or DEFAULT_INTERVAL)}
    )
    deployments = []
    for target in targets:
        parameters: dict[str, Any] = {
            "target": target.name,
            "lock_timeout": lock_timeout,
            "fetch_retries": fetch_retries,
        }
        optional = {
            "api_key_secret": target.key_secret,
            "api_version": api_version,
            "page_size": page_size,
            "validation_policy": validation_policy,
        }
        parameters.update({k: v for k, v in optional.items() if v is not None})
        deployment = sync_flow.to_deployment(
            name=deployment_name(target),
            **schedule,
            parameters=parameters,
            concurrency_limit=ConcurrencyLimitConfig(
                limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
            ),
            tags=["phala-sync", f"target:{target.name}"],
            description=f"Sync the Phala Cloud fleet of target {target.name!r}.",
        )
        # to_deployment dispatches on the caller: from synchronous code it returns the object.
        assert isinstance(deployment, RunnerDeployment)
        deployments.append(deployment)
    return deployments


def serve_deployments(deployments: list[RunnerDeployment]) -> None:
    """Serve the deployments until interrupted (Ctrl-C or SIGTERM)."""
    serve(*deployments)
