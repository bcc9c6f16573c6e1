"""The Prefect flow: one sync of one target (one API key) into one database, as two coarse tasks.

::

    with target_lock(engine):                    # held across both tasks (same process)
        run_id, started = open_run(engine, settings)
        fetch   = fetch-and-stage(run_id)        # every page of both listings -> sync_staging
        summary = apply(run_id, fetch)           # one transaction; the ledger row says succeeded
    artifacts(summary)                           # counts, changes, fleet now vs before
    report(summary)                              # with report_dir: the HTML report, linked

Parameters override the environment (``PHALA_SYNC_*``, ``PHALA_CLOUD_API_PREFIX``, ``.env``). The
API key is never a parameter: it comes from ``PHALA_CLOUD_API_KEY`` or from the Prefect ``Secret``
block named by ``api_key_secret``. Only the fetch task retries, and only when the error's class is
``retriable`` (see :mod:`sync.errors`); each attempt first drops what an earlier attempt staged.

With ``report_dir`` (``PHALA_SYNC_REPORT_DIR``), a succeeded run then writes the target's fleet
report (``fleet-report-<target>.html``) there and links it in a markdown artifact. The run's data
is committed by then: a report that cannot be written is logged as an error and the run stays
succeeded (the next run writes it again).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.tasks import Task
from pydantic import SecretStr
from sqlalchemy import Engine

from flows.artifacts import (
    publish_fleet_change,
    publish_report_link,
    publish_summary,
    target_slug,
)
from sync.api.redaction import safe_url
from sync.errors import ConfigError, PhalaSyncError
from sync.lifetime import die_with_named_parent
from sync.progress import ThrottledLog, notify
from sync.run import FetchResult, apply_run, fetch_and_stage, run_stages
from sync.settings import (
    Settings,
    ValidationPolicy,
    build_settings,
    refuse_secret_parameters,
    require_api_key,
)
from sync.store.engine import make_engine, safe_database_url

FLOW_NAME = "phala-sync"
F = TypeVar("F", bound=Callable[..., Any])
#: Seconds between progress log lines while pages stream in.
PROGRESS_EVERY = 5.0


def retriable_failure(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """``retry_condition_fn``: retry only errors whose class says a new attempt may succeed."""
    error = state.data  # a task that raised fails with the exception as its state's data
    return isinstance(error, PhalaSyncError) and error.retriable


async def _api_key(secret_block: str | None) -> SecretStr | None:
    """The key from the named Prefect ``Secret`` block, or None to let Settings read the env."""
    if not secret_block:
        return None
    from prefect.blocks.system import Secret

    try:
        block = cast("Secret[str]", await Secret.aload(secret_block))
    except ValueError as exc:  # Prefect's "Unable to find block document named ..."
        raise ConfigError(
            f"cannot load the Prefect Secret block {secret_block!r} holding the API key: {exc}"
        ) from None
    value: object = block.get()
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"the Prefect Secret block {secret_block!r} holds no API key text")
    return SecretStr(value.strip())


def flow_settings(given: dict[str, Any], api_key: SecretStr | None) -> Settings:
    """Settings for one flow run: parameters over the environment, and a key from somewhere."""
    refuse_secret_parameters(given)
    settings = build_settings(given, api_key)
    require_api_key(settings)
    return settings


@task(name="fetch-and-stage", cache_policy=NO_CACHE, retry_condition_fn=retriable_failure)
async def fetch_task(engine: Engine, settings: Settings, run_id: int) -> dict[str, Any]:
    """Page through CVMs and apps, staging each page; returns ``FetchResult.to_dict()``."""
    logger = get_run_logger()
    # A retried attempt starts over: fetch_and_stage empties the run's staging and quarantine.
    page_log = ThrottledLog(logger.info, every=PROGRESS_EVERY)

    def on_page(endpoint: str, pages: int, planned: int, items: int) -> None:
        page_log(endpoint, pages, planned, items)
        notify(endpoint, pages, planned, items)

    fetch = await fetch_and_stage(engine, settings, run_id, on_page=on_page)
    for listing in fetch.listings.values():
        verdict = "complete" if listing.complete else f"incomplete ({listing.reason})"
        logger.info(
            "%s: %d items in %d pages, %d quarantined, listing %s",
            listing.endpoint,
            listing.items,
            listing.pages,
            listing.quarantined,
            verdict,
        )
    return fetch.to_dict()


@task(name="apply", cache_policy=NO_CACHE)
async def apply_task(
    engine: Engine, settings: Settings, run_id: int, started: str, fetch: dict[str, Any]
) -> dict[str, Any]:
    """Apply the staged run in one transaction; returns ``RunSummary.to_dict()``."""
    summary = await asyncio.to_thread(
        apply_run,
        engine,
        settings,
        run_id,
        datetime.fromisoformat(started),
        FetchResult.from_dict(fetch),
    )
    cvm = summary.counts.get("cvm", {})
    get_run_logger().info(
        "run %d applied: CVMs created %d, updated %d, deleted %d, restored %d, unchanged %d",
        run_id,
        cvm.get("created", 0),
        cvm.get("updated", 0),
        cvm.get("deleted", 0),
        cvm.get("restored", 0),
        cvm.get("unchanged", 0),
    )
    return summary.to_dict()


def report_path(report_dir: Path, target: str) -> Path:
    """Where a run writes its target's report: one file per target, replaced by each run."""
    return report_dir / f"fleet-report-{target_slug(target)}.html"


def _write_report(engine: Engine, target: str, path: Path) -> Path:
    from sync.report.build import build_report, write_report  # matplotlib: only when drawing

    return write_report(build_report(engine, target=target), path)


@task(name="report", cache_policy=NO_CACHE)
async def report_task(engine: Engine, target: str, report_dir: str) -> str:
    """Write the target's fleet report into ``report_dir``; returns the file's path."""
    path = await asyncio.to_thread(
        _write_report, engine, target, report_path(Path(report_dir), target)
    )
    get_run_logger().info("fleet report written: %s", path)
    return str(path)


async def _report(engine: Engine, settings: Settings, summary: dict[str, Any]) -> None:
    if settings.report_dir is None or summary.get("status") != "succeeded":
        return
    try:
        path = await report_task(engine, settings.target, str(settings.report_dir))
    except Exception as exc:  # the run's data is committed: say so, do not fail the run
        get_run_logger().error(
            "the fleet report for %s was not written: %s: %s",
            settings.report_dir,
            type(exc).__name__,
            exc,
        )
        return
    await publish_report_link(summary, Path(path))


async def _run(
    engine: Engine, settings: Settings, fetch_retries: int, retry_delay: float
) -> dict[str, Any]:
    """The run skeleton of :func:`sync.run.run_stages`, its two stages as Prefect tasks.

    The target's lock is held by the skeleton in this flow's process, around both tasks (they run
    here too); the apply task takes the database's lock.
    """
    fetch_with_retries = fetch_task.with_options(
        retries=fetch_retries, retry_delay_seconds=retry_delay
    )

    async def fetch(run_id: int) -> FetchResult:
        return FetchResult.from_dict(await fetch_with_retries(engine, settings, run_id))

    async def apply(run_id: int, started: datetime, fetched: FetchResult) -> dict[str, Any]:
        return await apply_task(engine, settings, run_id, started.isoformat(), fetched.to_dict())

    return await run_stages(engine, settings, fetch, apply)


def described_by_settings(fn: F) -> F:
    """Append to ``fn``'s ``Args:`` section (its last) each setting-named parameter with the
    setting's description: Prefect shows a parameter's entry there as its description (in the
    UI, the deployment's schema), so the flow's help is Settings' own."""
    doc = (fn.__doc__ or "").rstrip()
    heading = [line for line in doc.splitlines() if line.strip() == "Args:"]
    if not heading:  # no section yet (or no docstring at all, under python -OO)
        heading = ["Args:"]
        doc += "\n\nArgs:"
    indent = heading[0][: len(heading[0]) - len(heading[0].lstrip())] + "    "
    for name in inspect.signature(fn).parameters:
        if name in Settings.model_fields:
            doc += f"\n{indent}{name}: {Settings.model_fields[name].description}"
    fn.__doc__ = doc + "\n"
    return fn


@flow(name=FLOW_NAME, log_prints=False, persist_result=False)
@described_by_settings
async def sync_flow(
    target: str | None = None,
    api_version: str | None = None,
    page_size: int | None = None,
    validation_policy: ValidationPolicy | None = None,
    base_url: str | None = None,
    database_url: str | None = None,
    concurrency: int | None = None,
    lock_timeout: float | None = None,
    api_key_secret: str | None = None,
    migrate: bool | None = None,
    fetch_retries: int = 1,
    fetch_retry_delay_seconds: float = 30.0,
    report_dir: Path | None = None,
) -> dict[str, Any]:
    """Sync the CVMs and apps one API key sees into the database; returns the run summary.

    A parameter named like a setting (:class:`~sync.settings.Settings`) sets it for this run;
    left as None, the setting comes from the environment (``PHALA_SYNC_*``,
    ``PHALA_CLOUD_API_PREFIX``, ``.env``). Their descriptions, below, are the settings' own
    (tests/flows/test_run_parameters.py holds the names, types and defaults to Settings).
    ``database_url`` never carries a password: Prefect stores parameters in clear, so such a
    URL is refused (put it in ``PHALA_SYNC_DATABASE_URL`` where the run happens).

    Args:
        api_key_secret: A Prefect Secret block holding the API key; without it the key is
            PHALA_CLOUD_API_KEY where the run happens.
        fetch_retries: Restart the fetch stage this many times after a retriable failure the
            HTTP client's own retries did not overcome.
        fetch_retry_delay_seconds: Seconds between those restarts.
    """
    # First, while the parameters are all the names there are: those named like a setting.
    given = {name: value for name, value in locals().items() if name in Settings.model_fields}
    die_with_named_parent()  # a run served by `serve` ends with it, even on kill -9
    settings = flow_settings(given, await _api_key(api_key_secret))
    logger = get_run_logger()
    logger.info(
        "syncing target %r from %s (X-Phala-Version %s) into %s",
        settings.target,
        safe_url(settings.base_url),
        settings.api_version,
        safe_database_url(settings.database_url),
    )
    engine = make_engine(settings.database_url)
    try:
        summary = await _run(engine, settings, fetch_retries, fetch_retry_delay_seconds)
        # Side by side: each reads the database in a thread (0.6 s each after a 100k first sync,
        # whose tables have no statistics yet), then calls the Prefect API.
        await asyncio.gather(
            publish_summary(engine, summary), publish_fleet_change(engine, summary)
        )
        await _report(engine, settings, summary)
    finally:
        engine.dispose()
    return summary
