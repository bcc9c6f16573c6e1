"""One sync run: lock, open the ledger row, fetch and stage every page, apply atomically.

The two stages are separate functions so that the Prefect flow can run them as coarse tasks;
:func:`run_sync` chains them for the CLI and the tests. A run that fails anywhere leaves the
inventory exactly as it was and a ``failed`` ledger row with the reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import Engine, func, select

from models import QuarantinedItem as QuarantinedRow
from models import table_of
from sync.client import PhalaClient
from sync.errors import TooManyInvalidItemsError
from sync.pages import Endpoint, Page
from sync.records import EntityType
from sync.settings import Settings
from sync.store.apply import EntityCounts, apply_staged
from sync.store.ledger import close_abandoned, fail_run, finish_run, require_running, start_run
from sync.store.lock import run_lock
from sync.store.migrate import require_current
from sync.store.staging import (
    Stager,
    clear_staging,
    discard_earlier_passes,
    distinct_staged,
    quarantine_counts,
)

log = logging.getLogger(__name__)

#: A drifted listing is read again up to this many times in all before it is called incomplete.
MAX_PASSES = 3

#: Called after each staged page: (endpoint, pages staged, pages planned, items staged).
OnPage = Callable[[str, int, int, int], None]


@dataclass(frozen=True)
class ListingResult:
    """What one endpoint's listing saw, and whether it may be trusted for deletions."""

    endpoint: Endpoint
    passes: int
    pages: int
    items: int
    quarantined: int
    api_total: int
    distinct: int
    complete: bool
    reason: str | None = None


@dataclass(frozen=True)
class FetchResult:
    cvms: ListingResult
    apps: ListingResult

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FetchResult:
        return cls(cvms=ListingResult(**data["cvms"]), apps=ListingResult(**data["apps"]))


@dataclass(frozen=True)
class RunSummary:
    """The outcome of a run, as recorded in its ledger row; plain values only."""

    run_id: int
    target: str
    api_version: str
    status: str
    started_at: datetime
    finished_at: datetime
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    quarantined: int = 0
    listing_complete: bool | None = None
    apps_listing_complete: bool | None = None
    api_total: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["finished_at"] = self.finished_at.isoformat()
        return data


def _now() -> datetime:
    return datetime.now(UTC)


def open_run(engine: Engine, settings: Settings) -> tuple[int, datetime]:
    """With the run lock held: check the schema, close abandoned runs, open a ledger row."""
    require_current(engine)
    started = _now()
    run_id = start_run(
        engine, target=settings.target, api_version=settings.api_version, now=started
    )
    abandoned = close_abandoned(engine, now=started, by_run=run_id)
    if abandoned:
        log.warning("closed %d abandoned run(s) as failed: %s", len(abandoned), abandoned)
    return run_id, started


async def _listing(
    endpoint: Endpoint,
    pages: Callable[[], AsyncIterator[Page[Any]]],
    stage: Callable[[Page[Any]], None],
    stager: Stager,
    on_page: OnPage | None,
) -> ListingResult:
    entity_type = "cvm" if endpoint == "cvms" else "app"
    total_pages = total_items = total_quarantined = 0
    result: ListingResult | None = None
    for pass_no in range(1, MAX_PASSES + 1):
        stager.pass_no = pass_no
        totals: set[int] = set()
        planned = staged_pages = 0
        async for page in pages():
            stage(page)
            totals.add(page.total)
            planned = max(planned, page.pages)
            staged_pages += 1
            total_pages += 1
            total_items += len(page.items)
            total_quarantined += len(page.quarantined)
            if on_page is not None:
                on_page(endpoint, staged_pages, planned, total_items)
        stager.flush()
        engine = stager.engine
        distinct = distinct_staged(engine, stager.run_id, entity_type, pass_no)
        _, unkeyed, held = quarantine_counts(engine, stager.run_id, endpoint, pass_no, entity_type)
        seen = distinct + held
        api_total = max(totals) if totals else 0
        reason: str | None = None
        if unkeyed:
            reason = f"{unkeyed} quarantined item(s) carry no id, so any CVM could be among them"
        elif len(totals) > 1:
            reason = f"the API total changed while paging ({min(totals)}..{max(totals)})"
        elif seen != api_total:
            reason = f"the API reported {api_total} items but {seen} distinct ones were listed"
        result = ListingResult(
            endpoint=endpoint,
            passes=pass_no,
            pages=total_pages,
            items=total_items,
            quarantined=total_quarantined,
            api_total=api_total,
            distinct=seen,
            complete=reason is None,
            reason=reason,
        )
        if reason is None:
            if pass_no > 1:
                discard_earlier_passes(engine, stager.run_id, entity_type, pass_no)
            break
        if unkeyed:
            break
        log.warning(
            "%s listing pass %d inconsistent: %s; reading it again", endpoint, pass_no, reason
        )
    assert result is not None
    if not result.complete:
        log.warning(
            "%s listing incomplete: %s; no deletions will be inferred", endpoint, result.reason
        )
    return result


async def fetch_and_stage(
    engine: Engine,
    settings: Settings,
    run_id: int,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    on_page: OnPage | None = None,
) -> FetchResult:
    """Page through both endpoints, staging every validated page as it arrives.

    Safe to call again for the same run (a retried task): it starts from an empty staging area.
    """
    clear_staging(engine, [run_id], quarantine=True)
    stager = Stager(engine, run_id)
    async with PhalaClient.from_settings(settings, transport=transport) as client:
        try:
            cvms = await _listing("cvms", client.cvm_pages, stager.cvm_page, stager, on_page)
            apps = await _listing("apps", client.app_pages, stager.app_page, stager, on_page)
        finally:
            stager.close()
    invalid = cvms.quarantined + apps.quarantined
    considered = cvms.items + apps.items + invalid
    if (
        settings.validation_policy == "quarantine"
        and considered
        and (invalid / considered > settings.max_invalid_share)
    ):
        raise TooManyInvalidItemsError(
            f"{invalid} of {considered} items failed validation against API version "
            f"{settings.api_version} ({invalid / considered:.1%} > the allowed "
            f"{settings.max_invalid_share:.1%}); see quarantined_items for run {run_id}. "
            "If the API changed, pin a supported version or raise PHALA_SYNC_MAX_INVALID_SHARE"
        )
    return FetchResult(cvms=cvms, apps=apps)


def _ledger_values(
    fetch: FetchResult | None, counts: Mapping[EntityType, EntityCounts] | None
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if fetch is not None:
        values.update(
            quarantined=fetch.cvms.quarantined + fetch.apps.quarantined,
            listing_complete=fetch.cvms.complete,
            apps_listing_complete=fetch.apps.complete,
            api_total=fetch.cvms.api_total,
        )
    if counts is not None:
        cvm = counts["cvm"]
        values.update(
            seen=cvm.seen,
            created=cvm.created,
            updated=cvm.updated,
            deleted=cvm.deleted,
            restored=cvm.restored,
            unchanged=cvm.unchanged,
            entity_counts={k: c.as_dict() for k, c in counts.items()},
        )
    return values


def apply_run(
    engine: Engine, settings: Settings, run_id: int, started: datetime, fetch: FetchResult
) -> RunSummary:
    """Apply the staged run atomically and mark it succeeded in the same transaction."""
    now = _now()
    with engine.begin() as conn:
        require_running(conn, run_id)
        counts = apply_staged(
            conn,
            run_id=run_id,
            target=settings.target,
            now=now,
            complete={"cvm": fetch.cvms.complete, "app": fetch.apps.complete},
        )
        finished = _now()
        values = _ledger_values(fetch, counts)
        finish_run(conn, run_id, now=finished, values=values)
    return RunSummary(
        run_id=run_id,
        target=settings.target,
        api_version=settings.api_version,
        status="succeeded",
        started_at=started,
        finished_at=finished,
        counts={k: c.as_dict() for k, c in counts.items()},
        quarantined=values["quarantined"],
        listing_complete=fetch.cvms.complete,
        apps_listing_complete=fetch.apps.complete,
        api_total=fetch.cvms.api_total,
    )


def record_failure(
    engine: Engine, run_id: int, error: BaseException, fetch: FetchResult | None = None
) -> None:
    """Close the run as failed with a one-line reason; the inventory was not touched."""
    reason = (
        f"{type(error).__name__}: {error}".splitlines()[0] if str(error) else type(error).__name__
    )
    values = _ledger_values(fetch, None)
    try:
        if fetch is None:
            values["quarantined"] = quarantined_count(engine, run_id)
        fail_run(engine, run_id, now=_now(), error=reason, values=values)
    except Exception:  # the database itself may be what failed; the next run closes the row
        log.exception("could not record the failure of run %d", run_id)


def quarantined_count(engine: Engine, run_id: int) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).where(table_of(QuarantinedRow).c.run_id == run_id)
            ).scalar_one()
        )


def run_sync(
    engine: Engine,
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    on_page: OnPage | None = None,
) -> RunSummary:
    """Run one complete sync (lock, fetch and stage, apply) and return its summary.

    Raises the run's error after recording it in the ledger.
    """
    with run_lock(engine, timeout=settings.lock_timeout):
        run_id, started = open_run(engine, settings)
        fetch: FetchResult | None = None
        try:
            fetch = asyncio.run(
                fetch_and_stage(engine, settings, run_id, transport=transport, on_page=on_page)
            )
            return apply_run(engine, settings, run_id, started, fetch)
        except BaseException as exc:
            record_failure(engine, run_id, exc, fetch)
            raise
