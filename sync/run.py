"""One sync run: lock, open the ledger row, fetch and stage every page, apply atomically.

The two stages are separate functions so that the Prefect flow can run them as coarse tasks;
:func:`run_sync` chains them for the CLI and the tests. A run that fails anywhere leaves the
inventory exactly as it was and a ``failed`` ledger row with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import httpx
from sqlalchemy import Connection, Engine, func, select

from models import QuarantinedItem, table_of
from sync import clock, prefetching
from sync.api.client import PhalaClient
from sync.api.pages import Rejection
from sync.endpoints import get_endpoint, listed_endpoints
from sync.errors import TooManyInvalidItemsError, UnstorableItemError
from sync.listing import ListingResult, OnPage, read_listing
from sync.records import EntityType
from sync.settings import Settings
from sync.store import ahead
from sync.store.apply import EntityCounts, apply_staged, quarantine_refused
from sync.store.ledger import close_abandoned, fail_run, finish_run, require_running, start_run
from sync.store.lock import run_lock
from sync.store.migrate import SchemaState, check_schema, ensure_schema
from sync.store.staging import PayloadsLost, Stager, clear_staging

log = logging.getLogger(__name__)

#: Seconds a run waits at least for the database's lock before it opens its ledger row or applies.
DATABASE_LOCK_WAIT = 600.0

#: First-generation GC threshold while pages stream (CPython's default is 700). Validated items
#: leave cyclic garbage that only the collector frees: at 50,000 the fetch of 30k CVMs peaked at
#: 278 MiB instead of 154 MiB, so memory would grow with the fleet; 5,000 keeps it flat.
GC_THRESHOLD = 5_000

#: What ``timings`` name: ``fetch``, the whole fetch-and-stage stage, of which ``parse`` (decoding,
#: hashing, validating and normalizing pages) and ``stage`` (building and writing staged rows) are
#: the CPU-bound parts and the rest is waiting for the API; ``load_known``, reading the stored
#: hashes; ``apply``, the apply transaction, of which ``levels`` is keeping ``fleet_levels``;
#: ``ahead``, the apply ahead's writing during the fetch (:mod:`sync.store.ahead`), when it ran.
TIMINGS = ("fetch", "load_known", "parse", "stage", "apply", "levels", "ahead")


@dataclass(frozen=True)
class FetchResult:
    #: Each listed endpoint's listing, by its name, in the order they were read.
    listings: dict[str, ListingResult]
    #: Seconds by stage: ``fetch`` (the whole stage), ``parse``, ``stage`` (see :data:`TIMINGS`).
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def quarantined(self) -> int:
        """Items of every listing set aside by the fetch (invalid or unstorable)."""
        return sum(listing.quarantined for listing in self.listings.values())

    @property
    def considered(self) -> int:
        """Items of every listing: listed validly or quarantined."""
        return sum(listing.items for listing in self.listings.values()) + self.quarantined

    def by_entity_type(self) -> dict[EntityType, ListingResult]:
        """Each listing by the entity type its endpoint lists (what the apply is told)."""
        return {get_endpoint(name).entity_type: lst for name, lst in self.listings.items()}

    def ledger_columns(self) -> dict[str, Any]:
        """The ledger columns each endpoint declares: its listing was complete, its API total."""
        values: dict[str, Any] = {}
        for name, listing in self.listings.items():
            spec = get_endpoint(name)
            values[spec.complete_column] = listing.complete
            if spec.total_column is not None:
                values[spec.total_column] = listing.api_total
        return values

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FetchResult:
        def listing(values: dict[str, Any]) -> ListingResult:
            return ListingResult(**{**values, "gone": tuple(values.get("gone", ()))})

        return cls(
            listings={name: listing(values) for name, values in data["listings"].items()},
            timings=dict(data.get("timings", {})),
        )


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
    # The ledger columns the listed endpoints declare (FetchResult.ledger_columns fills them).
    listing_complete: bool | None = None
    apps_listing_complete: bool | None = None
    api_total: int | None = None
    error: str | None = None
    #: Seconds by stage of this process's work (see :data:`TIMINGS`); not stored in the ledger.
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["finished_at"] = self.finished_at.isoformat()
        return data


def database_lock(engine: Engine, settings: Settings) -> contextlib.AbstractContextManager[None]:
    """The database's lock, for the short steps that write what all targets share.

    It waits at least :data:`DATABASE_LOCK_WAIT` seconds: another target's apply is short, and
    giving up on it would throw away a whole fetch.
    """
    return run_lock(engine, timeout=max(settings.lock_timeout, DATABASE_LOCK_WAIT))


def target_lock(engine: Engine, settings: Settings) -> contextlib.AbstractContextManager[None]:
    """The target's lock, held for a whole run: one run per target at a time.

    Waits ``lock_timeout`` seconds (0: gives up at once) for a run of the same target.
    """
    return run_lock(engine, timeout=settings.lock_timeout, target=settings.target)


def open_run(engine: Engine, settings: Settings) -> tuple[int, datetime]:
    """With the target's lock held: check the schema, close abandoned runs, open a ledger row.

    Creating or migrating the schema runs under the database's lock, so two first runs of
    different targets cannot race. A schema at head needs no lock: a run opens while another
    target's apply (or its apply ahead, :mod:`sync.store.ahead`) holds it.
    """
    if check_schema(engine, migrate=settings.migrate) is not SchemaState.CURRENT:
        with database_lock(engine, settings):
            ensure_schema(engine, migrate=settings.migrate)
    started = clock.now()
    run_id = start_run(
        engine, target=settings.target, api_version=settings.api_version, now=started
    )
    abandoned = close_abandoned(engine, now=started, by_run=run_id, target=settings.target)
    if abandoned:
        log.warning("closed %d abandoned run(s) as failed: %s", len(abandoned), abandoned)
    return run_id, started


@contextlib.contextmanager
def tuned_gc() -> Iterator[None]:
    """Fewer cyclic GC passes while a run streams pages: its objects die young and acyclic.

    What exists before the run (modules, models, Prefect) is frozen out of the collector's scans,
    and the first generation's threshold is raised; both are restored afterwards. No collection
    comes first: a full one costs 50-100 ms in a process that has imported Prefect (more in a
    test process), and what garbage the freeze keeps is released with the unfreeze.
    """
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, threshold[1], threshold[2])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


async def fetch_and_stage(
    engine: Engine,
    settings: Settings,
    run_id: int,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    on_page: OnPage | None = None,
) -> FetchResult:
    """Page through every listed endpoint, staging every new or changed item as it arrives.

    Safe to call again for the same run (a retried task): it starts from an empty staging area.
    Without a ``transport``, a listing sent ahead of the run (:mod:`sync.prefetching`) answers
    what it already asked for, if the run may use it.
    """
    start = time.perf_counter()
    given = transport
    if transport is None:
        transport = prefetching.claim(engine, settings, run_id)
    early = ahead.begin(engine, target=settings.target, run_id=run_id)
    try:
        try:
            listings, stager, parse = await _read_listings(
                engine, settings, run_id, transport, on_page, early
            )
        except PayloadsLost:
            log.info(
                "run %d reads the API again: the apply ahead gave up (%s) after staging kept "
                "only keys and hashes",
                run_id,
                early.reason if early is not None else None,
            )
            ahead.discard(engine, run_id)
            early = None
            listings, stager, parse = await _read_listings(
                engine, settings, run_id, given, on_page, None
            )
        timings = {
            "fetch": time.perf_counter() - start,
            "load_known": stager.load_seconds,
            "parse": parse,
            "stage": stager.seconds,
        }
        if early is not None:
            timings["ahead"] = early.seconds
        fetched = FetchResult(listings, timings=timings)
        share = _over_invalid_share(settings, fetched.quarantined, fetched.considered)
        if settings.validation_policy == "quarantine" and share is not None:
            raise TooManyInvalidItemsError(
                f"{fetched.quarantined} of {fetched.considered} items failed validation against "
                f"API version {settings.api_version} ({share}); see quarantined_items for run "
                f"{run_id}. If the API changed, pin a supported version or raise "
                "PHALA_SYNC_MAX_INVALID_SHARE"
            )
    except BaseException:
        ahead.discard(engine, run_id)
        raise
    return fetched


async def _read_listings(
    engine: Engine,
    settings: Settings,
    run_id: int,
    transport: httpx.AsyncBaseTransport | None,
    on_page: OnPage | None,
    early: ahead.ApplyAhead | None,
) -> tuple[dict[str, ListingResult], Stager, float]:
    """Every listed endpoint read and staged, from an empty staging area; the stager, and the
    client's parse seconds. Raises :class:`PayloadsLost` when ``early`` gave up after staging
    kept only keys and hashes."""
    clear_staging(engine, [run_id], quarantine=True)
    stager = Stager(engine, run_id, settings.target, ahead=early)
    listings: dict[str, ListingResult] = {}
    async with PhalaClient.from_settings(settings, transport=transport) as client:
        try:
            with tuned_gc():
                for spec in listed_endpoints():
                    pages = functools.partial(client.pages, spec)
                    listings[spec.name] = await read_listing(spec, pages, stager, on_page)
        finally:
            stager.close()
    stager.payloads_kept()
    return listings, stager, client.parse_seconds


def _over_invalid_share(settings: Settings, invalid: int, considered: int) -> str | None:
    """The one judgment of the invalid share: ``"x% > the allowed y%"`` when ``invalid`` of
    ``considered`` items is over ``max_invalid_share``, else None."""
    if not considered or invalid / considered <= settings.max_invalid_share:
        return None
    return f"{invalid / considered:.1%} > the allowed {settings.max_invalid_share:.1%}"


def _ledger_values(
    fetch: FetchResult | None, counts: Mapping[EntityType, EntityCounts] | None
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if fetch is not None:
        values.update(quarantined=fetch.quarantined, **fetch.ledger_columns())
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


def _check_refused(settings: Settings, fetch: FetchResult, refused: list[Rejection]) -> None:
    """Fail the run (nothing applied) if the refused items break the validation policy.

    A refused item's error names it (``cvm <id>: the database refused it: ...``).
    """
    if not refused:
        return
    first = refused[0]
    if settings.validation_policy == "strict":
        raise UnstorableItemError(
            f"the database refused {len(refused)} item(s), e.g. {first.error}. The strict "
            "policy fails the run; the quarantine policy would set such items aside in "
            "quarantined_items and store the rest"
        )
    invalid = fetch.quarantined + len(refused)
    share = _over_invalid_share(settings, invalid, fetch.considered)
    if share is not None:
        raise UnstorableItemError(
            f"{invalid} of {fetch.considered} items were invalid or refused by the database "
            f"({share}), e.g. {first.error}"
        )
    for item in refused:
        log.warning("quarantined %s", item.error)


def apply_run(
    engine: Engine, settings: Settings, run_id: int, started: datetime, fetch: FetchResult
) -> RunSummary:
    """Apply the staged run atomically and mark it succeeded in the same transaction.

    Runs under the database's lock: runs of different targets fetch side by side, but apply one
    at a time, since they share nodes, workspaces and creators.
    """
    start = time.perf_counter()
    early = ahead.take(engine, run_id)
    transaction: contextlib.AbstractContextManager[Connection]
    if early is not None:  # begun with the fetch: its transaction holds the lock
        transaction, began, appliers = early.transaction(), early.now, early.appliers
    else:
        transaction, began, appliers = _locked_transaction(engine, settings), None, None
    with transaction as conn:
        # Taken with the database's lock held, so the applies' clocks follow their commits: the
        # history's intervals and the levels rely on it (two targets share nodes, for one).
        now = began if began is not None else clock.now()
        require_running(conn, run_id)
        listed = fetch.by_entity_type()
        applied = apply_staged(
            conn,
            run_id=run_id,
            target=settings.target,
            now=now,
            complete={t: listing.complete for t, listing in listed.items()},
            unchanged={t: listing.unchanged for t, listing in listed.items()},
            gone={t: listing.gone for t, listing in listed.items()},
            ahead=appliers,
        )
        counts = applied.counts
        _check_refused(settings, fetch, applied.refused)
        quarantine_refused(conn, run_id, applied.refused)
        finished = clock.now()
        values = _ledger_values(fetch, counts)
        values["quarantined"] += len(applied.refused)
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
        **fetch.ledger_columns(),
        timings={
            **fetch.timings,
            "apply": time.perf_counter() - start,
            "levels": applied.levels_seconds,
        },
    )


@contextlib.contextmanager
def _locked_transaction(engine: Engine, settings: Settings) -> Iterator[Connection]:
    with database_lock(engine, settings), engine.begin() as conn:
        yield conn


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
        fail_run(engine, run_id, now=clock.now(), error=reason, values=values)
    except Exception:  # the database itself may be what failed; the next run closes the row
        log.exception("could not record the failure of run %d", run_id)


def quarantined_count(engine: Engine, run_id: int) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).where(table_of(QuarantinedItem).c.run_id == run_id)
            ).scalar_one()
        )


_SummaryT = TypeVar("_SummaryT")


async def run_stages(
    engine: Engine,
    settings: Settings,
    fetch: Callable[[int], Awaitable[FetchResult]],
    apply: Callable[[int, datetime, FetchResult], Awaitable[_SummaryT]],
) -> _SummaryT:
    """The one skeleton of a run: the target's lock, a ledger row, fetch, apply, or the failure.

    ``fetch(run_id)`` and ``apply(run_id, started, fetch_result)`` are the two stages: plain calls
    of :func:`fetch_and_stage` and :func:`apply_run` for :func:`run_sync`, Prefect tasks around
    them for the flow. Whatever fails is recorded in the ledger, then raised.
    """
    with target_lock(engine, settings):
        run_id, started = open_run(engine, settings)
        fetched: FetchResult | None = None
        try:
            fetched = await fetch(run_id)
            return await apply(run_id, started, fetched)
        except BaseException as exc:
            ahead.discard(engine, run_id)  # a run that failed between its fetch and its apply
            record_failure(engine, run_id, exc, fetched)
            raise


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

    async def fetch(run_id: int) -> FetchResult:
        return await fetch_and_stage(engine, settings, run_id, transport=transport, on_page=on_page)

    async def apply(run_id: int, started: datetime, fetched: FetchResult) -> RunSummary:
        return apply_run(engine, settings, run_id, started, fetched)

    return asyncio.run(run_stages(engine, settings, fetch, apply))
