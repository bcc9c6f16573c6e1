"""Deployments of the sync flow: one per target (API key), each on a schedule, one run at a time.

A target is ``NAME`` (its key is ``PHALA_CLOUD_API_KEY``) or ``NAME:BLOCK`` (its key is in the
Prefect ``Secret`` block ``BLOCK``). Every deployment gets a concurrency limit of one with
``CANCEL_NEW``: a scheduled run that finds the previous one still going is cancelled rather than
queued, since the next schedule tick syncs everything anyway. Several targets share the database's
run lock, so their runs wait for each other up to ``lock_timeout`` seconds.

``serve`` runs the deployments in this process (``prefect.serve``). ``deploy`` registers them with
an existing work pool instead (:func:`register_deployments`): each references the flow by its
installed module path (``flows.sync_flow.sync_flow``), so a stock ``prefect worker start --pool
POOL`` runs it on any machine where phala-sync is installed, with nothing pushed or pulled. The
API key comes from the worker's environment or a Secret block, the database URL from the worker's
environment: neither is ever a parameter.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from prefect import serve
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL
from prefect.types.entrypoint import EntrypointType

from flows.sync_flow import sync_flow
from sync.errors import ConfigError
from sync.settings import DEPLOYMENT_OPTIONS, SERVED_LOCK_TIMEOUT

DEFAULT_INTERVAL = 3600.0
#: Prefect's default PREFECT_RUNNER_POLL_FREQUENCY (and the runner's prefetch), seconds.
RUNNER_POLL_SECONDS = 10.0
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
    parameters: Mapping[str, Any] | None = None,
    fetch_retries: int = 1,
    entrypoint_type: EntrypointType = EntrypointType.FILE_PATH,
) -> list[RunnerDeployment]:
    """One scheduled deployment of the sync flow per target.

    ``parameters`` are run settings every deployment carries (names of
    :data:`~sync.settings.DEPLOYMENT_OPTIONS`, values as JSON); ``lock_timeout`` is
    :data:`~sync.settings.SERVED_LOCK_TIMEOUT` unless they say otherwise. A setting a deployment
    does not carry is read from the environment where its runs happen (``report_dir``, for
    instance, is a directory there). ``entrypoint_type=EntrypointType.MODULE_PATH`` makes the
    deployment name the flow by module (for workers). Parameters carry nothing secret (Prefect
    stores them in clear): the API key is ``PHALA_CLOUD_API_KEY`` where the run happens, or a
    Secret block named by the target.
    """
    if cron is not None and interval is not None:
        raise ConfigError("give a cron schedule or an interval, not both")
    others = sorted(set(parameters or {}) - set(DEPLOYMENT_OPTIONS))
    if others:  # the database URL above all: it may carry a password
        raise ConfigError(
            f"not a deployment parameter: {', '.join(others)} (set it in the environment where "
            "the runs happen)"
        )
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
        run_parameters: dict[str, Any] = {
            "target": target.name,
            "lock_timeout": SERVED_LOCK_TIMEOUT,
            **(parameters or {}),
            "fetch_retries": fetch_retries,
        }
        if target.key_secret is not None:
            run_parameters["api_key_secret"] = target.key_secret
        deployment = sync_flow.to_deployment(
            name=deployment_name(target),
            **schedule,
            parameters=run_parameters,
            concurrency_limit=ConcurrencyLimitConfig(
                limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
            ),
            tags=["phala-sync", f"target:{target.name}"],
            description=f"Sync the Phala Cloud fleet of target {target.name!r}.",
            entrypoint_type=entrypoint_type,
        )
        # to_deployment dispatches on the caller: from synchronous code it returns the object.
        assert isinstance(deployment, RunnerDeployment)
        deployments.append(deployment)
    return deployments


def runner_timing(interval: float | None) -> dict[str, float]:
    """How often a serving runner asks for due runs, and how early it takes them, for ``interval``.

    Prefect's runner polls every ``PREFECT_RUNNER_POLL_FREQUENCY`` (10 s) for runs due within the
    next 10 s and starts them at once. A deployment with ``CANCEL_NEW`` gets one run per poll (the
    others found with it are cancelled), so a schedule shorter than two polls would run at most
    every 10 s, each run up to 10 s early. For such intervals the runner polls twice per interval
    and takes runs at most a quarter interval early; cron schedules (a minute at least) and
    longer intervals keep Prefect's defaults, and so does a poll frequency set in the environment.
    """
    if interval is None or os.environ.get("PREFECT_RUNNER_POLL_FREQUENCY"):
        return {}
    if interval >= 2 * RUNNER_POLL_SECONDS:
        return {}
    return {"query_seconds": interval / 2, "prefetch_seconds": interval / 4}


def serve_deployments(deployments: list[RunnerDeployment], *, interval: float | None) -> None:
    """Serve the deployments until interrupted (Ctrl-C or SIGTERM); see :func:`runner_timing`."""
    serve(*deployments, **runner_timing(interval))  # type: ignore[arg-type]


def _api_url() -> str:
    url = PREFECT_API_URL.value()
    if not url:
        raise ConfigError(
            "no Prefect server: set PREFECT_API_URL to the API of the server the workers poll, "
            "e.g. http://127.0.0.1:4200/api (deploy starts no temporary server: the deployments "
            "would vanish with it when deploy exits)"
        )
    return str(url)


def register_deployments(deployments: list[RunnerDeployment], work_pool: str) -> list[str]:
    """Create or update the deployments on the existing ``work_pool``; returns their full names.

    Raises :class:`~sync.errors.ConfigError` when no Prefect server is configured or reachable, or
    the pool does not exist (deploying never creates one: its type decides where runs happen).
    """
    url = _api_url()
    try:
        with get_client(sync_client=True) as client:
            client.read_work_pool(work_pool)
    except ObjectNotFound:
        raise ConfigError(
            f"no work pool {work_pool!r} on the Prefect server at {url}: create it with "
            f"`prefect work-pool create {work_pool} --type process`"
        ) from None
    except (httpx.HTTPError, RuntimeError) as exc:
        raise ConfigError(
            f"cannot reach the Prefect server at {url} ({type(exc).__name__}): start it "
            "(`prefect server start`) or fix PREFECT_API_URL"
        ) from None
    for deployment in deployments:
        deployment.apply(work_pool_name=work_pool)
    return [f"{d.flow_name}/{d.name}" for d in deployments]
