"""Stage clocks: where a sync run's wall time goes, measured without editing the pipeline.

:func:`instrumented` wraps the pipeline's boundaries *in this process* (module attributes and
class methods are patched on entry and restored on exit) and :func:`watch_sql` hooks an engine's
cursor events. Nothing in ``sync/`` changes. What each wrapper records:

- **wait**: each ``await`` of the next page in ``sync.run._listing``'s ``async for`` (a wrapper
  around ``PhalaClient.cvm_pages``/``app_pages``): the consumer is blocked on the producer, i.e. on
  HTTP (request, simulator, response) and on page parsing, which runs on the event loop thread.
- **parse**: each ``sync.client.parse_cvm_page``/``parse_app_page`` call (decode, envelope, every
  item's validation and normalization, raw re-encoding). Inside it, the version's item
  ``TypeAdapter.validate_python`` (**item validation**), envelope ``validate_python``
  (**envelope**) and ``normalize_cvm``/``normalize_app`` (**normalize**) are timed by swapping the
  registered :class:`~sync.versions.ApiVersion` for one whose adapters and mappers are timed.
- **staging**: each ``Stager.cvm_page``/``app_page`` call; the consumer runs it (on the event
  loop, or in ``asyncio.to_thread`` in earlier commits) before it asks for the next page, so it is
  on the critical path. Inside it, ``Stager._write`` (the transaction) and the SQL it ran.
- **apply**: ``sync.run.apply_run`` (one transaction: diff, inventory, history, events, ledger).
- **listing checks**: ``distinct_staged`` and ``quarantine_counts`` after each listing pass.
- **setup**: ``run_lock`` acquisition and ``open_run`` (schema check, ledger row).
- **SQL**: every cursor execution (SQLAlchemy ``before/after_cursor_execute``) and every ``COPY``
  (``copy_rows`` in ``sync.store.staging`` and ``sync.store.bulk``), by statement and by table.

:func:`critical_path` turns the intervals into a split of the run's wall time that adds up to it:
a page's parse is charged to the critical path only for the part of it that overlaps a consumer
wait (the rest was hidden behind staging in a thread), and its validate/normalize shares are
prorated.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import re
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar, cast

from pydantic import TypeAdapter
from sqlalchemy import Engine, event

import sync.client
import sync.run
import sync.store.bulk
import sync.store.staging
import sync.versions
from sync.client import PhalaClient
from sync.pages import Page
from sync.store.staging import Stager

P = ParamSpec("P")
R = TypeVar("R")

perf = time.perf_counter
Interval = tuple[float, float]


@dataclass
class StatementStats:
    calls: int = 0
    seconds: float = 0.0
    rows: int = 0


@dataclass
class PageParse:
    start: float
    end: float
    validate: float  # item validation inside this parse (envelope and normalize likewise)
    envelope: float
    normalize: float


@dataclass
class StageClock:
    """Everything one sync run's wrappers recorded; :meth:`reset` before each run."""

    waits: list[Interval] = field(default_factory=list)
    parses: list[PageParse] = field(default_factory=list)
    stagings: list[Interval] = field(default_factory=list)
    item_validate: float = 0.0
    envelope: float = 0.0
    normalize: float = 0.0
    listing_checks: float = 0.0
    staging_write: float = 0.0  # Stager._write: the transaction (lookup, COPY/INSERT, commit)
    staging_sql: float = 0.0  # statements (and COPY) executed while a page was being staged
    in_staging: bool = False
    apply_sql: float = 0.0  # statements (and COPY) executed inside apply_run
    in_apply: bool = False
    lock_wait: float = 0.0
    open_run: float = 0.0
    fetch_and_stage: float = 0.0
    apply: float = 0.0
    pages: dict[str, int] = field(default_factory=dict)
    statements: dict[str, StatementStats] = field(default_factory=dict)
    writes: dict[str, dict[str, int]] = field(default_factory=dict)

    def reset(self) -> None:
        fresh = StageClock()
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(fresh, f.name))

    def add_statement(self, key: str, seconds: float, rows: int) -> None:
        stats = self.statements.get(key)
        if stats is None:
            stats = self.statements[key] = StatementStats()
        stats.calls += 1
        stats.seconds += seconds
        stats.rows += rows

    def add_write(self, table: str, verb: str, rows: int) -> None:
        per = self.writes.setdefault(table, {})
        per[verb] = per.get(verb, 0) + rows


# --------------------------------------------------------------------------------- wrappers
class _TimedAdapter:
    """Stands in for a TypeAdapter in ``ApiVersion``: only ``validate_python`` is used there."""

    def __init__(self, inner: TypeAdapter[Any], clock: StageClock, attr: str) -> None:
        self._inner = inner
        self._clock = clock
        self._attr = attr

    def validate_python(self, data: Any, /, **kwargs: Any) -> Any:
        start = perf()
        try:
            return self._inner.validate_python(data, **kwargs)
        finally:
            setattr(self._clock, self._attr, getattr(self._clock, self._attr) + perf() - start)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _timed_normalize(fn: Callable[[Any, bytes], R], clock: StageClock) -> Callable[[Any, bytes], R]:
    def normalize(item: Any, raw: bytes) -> R:
        start = perf()
        try:
            return fn(item, raw)
        finally:
            clock.normalize += perf() - start

    return normalize


def _timed_version(version: sync.versions.ApiVersion, clock: StageClock) -> Any:
    def adapter(inner: TypeAdapter[Any], attr: str) -> TypeAdapter[Any]:
        return cast("TypeAdapter[Any]", _TimedAdapter(inner, clock, attr))

    return dataclasses.replace(
        version,
        cvm_item=adapter(version.cvm_item, "item_validate"),
        app_item=adapter(version.app_item, "item_validate"),
        cvm_envelope=adapter(version.cvm_envelope, "envelope"),
        app_envelope=adapter(version.app_envelope, "envelope"),
        normalize_cvm=_timed_normalize(version.normalize_cvm, clock),
        normalize_app=_timed_normalize(version.normalize_app, clock),
    )


def _timed_parse(fn: Callable[P, R], clock: StageClock) -> Callable[P, R]:
    def parse(*args: P.args, **kwargs: P.kwargs) -> R:
        v0, e0, n0 = clock.item_validate, clock.envelope, clock.normalize
        start = perf()
        try:
            return fn(*args, **kwargs)
        finally:
            clock.parses.append(
                PageParse(
                    start,
                    perf(),
                    clock.item_validate - v0,
                    clock.envelope - e0,
                    clock.normalize - n0,
                )
            )

    return parse


def _timed_pages(
    method: Callable[[PhalaClient], AsyncGenerator[Page[Any], None]],
    endpoint: str,
    clock: StageClock,
) -> Callable[[PhalaClient], AsyncGenerator[Page[Any], None]]:
    async def pages(self: PhalaClient) -> AsyncGenerator[Page[Any], None]:
        inner = method(self)
        try:
            while True:
                start = perf()
                try:
                    page = await inner.__anext__()
                except StopAsyncIteration:
                    clock.waits.append((start, perf()))
                    return
                clock.waits.append((start, perf()))
                clock.pages[endpoint] = clock.pages.get(endpoint, 0) + 1
                yield page
        finally:
            await inner.aclose()

    return pages


def _timed_staging(fn: Callable[P, R], clock: StageClock) -> Callable[P, R]:
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        start = perf()
        clock.in_staging = True
        try:
            return fn(*args, **kwargs)
        finally:
            clock.in_staging = False
            clock.stagings.append((start, perf()))

    return wrapper


def _timed_total(fn: Callable[P, R], clock: StageClock, attr: str) -> Callable[P, R]:
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        start = perf()
        try:
            return fn(*args, **kwargs)
        finally:
            setattr(clock, attr, getattr(clock, attr) + perf() - start)

    return wrapper


def _timed_apply(fn: Callable[P, R], clock: StageClock) -> Callable[P, R]:
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        start = perf()
        clock.in_apply = True
        try:
            return fn(*args, **kwargs)
        finally:
            clock.in_apply = False
            clock.apply += perf() - start

    return wrapper


def _timed_async_total(fn: Callable[P, Any], clock: StageClock, attr: str) -> Callable[P, Any]:
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        start = perf()
        try:
            return await fn(*args, **kwargs)
        finally:
            setattr(clock, attr, getattr(clock, attr) + perf() - start)

    return wrapper


def _timed_lock(fn: Callable[..., Any], clock: StageClock) -> Callable[..., Any]:
    @contextlib.contextmanager
    def run_lock(engine: Engine, *, timeout: float = 0.0) -> Iterator[None]:
        start = perf()
        with fn(engine, timeout=timeout):
            clock.lock_wait += perf() - start
            yield

    return run_lock


def _timed_copy(fn: Callable[..., None], clock: StageClock) -> Callable[..., None]:
    def copy_rows(
        conn: Any, table: Any, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        start = perf()
        try:
            fn(conn, table, columns, rows)
        finally:
            key = f"COPY {table.name} ({', '.join(columns)})"
            seconds = perf() - start
            if clock.in_staging:
                clock.staging_sql += seconds
            elif clock.in_apply:
                clock.apply_sql += seconds
            clock.add_statement(key, seconds, len(rows))
            clock.add_write(table.name, "copy", len(rows))

    return copy_rows


@contextlib.contextmanager
def instrumented(clock: StageClock) -> Iterator[StageClock]:
    """Patch the pipeline's boundaries in this process for the duration of the block."""
    wrappers: list[tuple[Any, str, Callable[[Any], Any]]] = [
        (sync.client, "parse_cvm_page", lambda f: _timed_parse(f, clock)),
        (sync.client, "parse_app_page", lambda f: _timed_parse(f, clock)),
        (PhalaClient, "cvm_pages", lambda f: _timed_pages(f, "cvms", clock)),
        (PhalaClient, "app_pages", lambda f: _timed_pages(f, "apps", clock)),
        (Stager, "cvm_page", lambda f: _timed_staging(f, clock)),
        (Stager, "app_page", lambda f: _timed_staging(f, clock)),
        (Stager, "_write", lambda f: _timed_total(f, clock, "staging_write")),
        (sync.run, "distinct_staged", lambda f: _timed_total(f, clock, "listing_checks")),
        (sync.run, "quarantine_counts", lambda f: _timed_total(f, clock, "listing_checks")),
        (sync.run, "open_run", lambda f: _timed_total(f, clock, "open_run")),
        (sync.run, "apply_run", lambda f: _timed_apply(f, clock)),
        (sync.run, "run_lock", lambda f: _timed_lock(f, clock)),
        (sync.run, "fetch_and_stage", lambda f: _timed_async_total(f, clock, "fetch_and_stage")),
        (sync.store.staging, "copy_rows", lambda f: _timed_copy(f, clock)),
        (sync.store.bulk, "copy_rows", lambda f: _timed_copy(f, clock)),
    ]
    registry = sync.versions._REGISTRY
    saved_versions = dict(registry)
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in wrappers]
    try:
        for name, version in saved_versions.items():
            registry[name] = _timed_version(version, clock)
        for (obj, name, wrap), (_, _, original) in zip(wrappers, saved, strict=True):
            setattr(obj, name, wrap(original))
        yield clock
    finally:
        for obj, name, original in saved:
            setattr(obj, name, original)
        registry.update(saved_versions)


# --------------------------------------------------------------------------------- SQL
_WRITE = re.compile(r'^\s*(INSERT INTO|UPDATE|DELETE FROM)\s+"?(\w+)"?', re.IGNORECASE)
_SPACE = re.compile(r"\s+")
_VERBS = {"insert into": "insert", "update": "update", "delete from": "delete"}


def statement_key(statement: str, limit: int = 160) -> str:
    text = _SPACE.sub(" ", statement).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def watch_sql(engine: Engine, clock: StageClock) -> Callable[[], None]:
    """Time every cursor execution on ``engine`` into ``clock``; returns the unhook function."""

    def before(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        conn.info.setdefault("bench_t0", []).append(perf())

    def after(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        seconds = perf() - conn.info["bench_t0"].pop()
        if clock.in_staging:
            clock.staging_sql += seconds
        elif clock.in_apply:
            clock.apply_sql += seconds
        compiled = getattr(context, "compiled", None)
        text = compiled.string if compiled is not None else statement
        rowcount = getattr(cursor, "rowcount", -1)
        if rowcount is None or rowcount < 0:
            rowcount = len(params) if many and isinstance(params, list | tuple) else 0
        if rowcount == 0 and not many and " RETURNING " in text:
            rowcount = 1  # sqlite3 counts an INSERT ... RETURNING only once its rows are fetched
        clock.add_statement(statement_key(text), seconds, rowcount)
        match = _WRITE.match(text)
        if match:
            clock.add_write(match.group(2), _VERBS[match.group(1).lower()], rowcount)

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)

    def unhook() -> None:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)

    return unhook


# --------------------------------------------------------------------------------- split
def _overlap(start: float, end: float, intervals: Sequence[Interval], from_index: int) -> float:
    total = 0.0
    for s, e in intervals[from_index:]:
        if s >= end:
            break
        total += max(0.0, min(e, end) - max(s, start))
    return total


def _parse_on_path(clock: StageClock) -> tuple[float, float]:
    """(parse seconds overlapping a consumer wait, the prorated normalize part of them)."""
    waits = sorted(clock.waits)
    on_path = normalize = 0.0
    first = 0
    for p in clock.parses:
        while first < len(waits) and waits[first][1] <= p.start:
            first += 1
        overlap = _overlap(p.start, p.end, waits, first)
        length = p.end - p.start
        if overlap <= 0 or length <= 0:
            continue
        on_path += overlap
        normalize += overlap / length * p.normalize
    return on_path, normalize


def critical_path(clock: StageClock, wall: float) -> dict[str, float]:
    """The run's wall time split into stages that add up to ``wall`` (see the module doc)."""
    on_path, normalize = _parse_on_path(clock)
    split = {
        "fetch_wait": sum(e - s for s, e in clock.waits) - on_path,
        "validate": on_path - normalize,
        "normalize": normalize,
        "write_staging": sum(e - s for s, e in clock.stagings),
        "listing_checks": clock.listing_checks,
        "write_apply": clock.apply,
        "setup": clock.lock_wait + clock.open_run,
    }
    split["other"] = wall - sum(split.values())
    return {k: round(v, 3) for k, v in split.items()}


def staging_contention(clock: StageClock) -> dict[str, float]:
    """Mean staging time per page when the event loop was parsing during most of it (>= 50%)
    vs. hardly at all (< 10%): the staging thread and the parser share one GIL."""
    parses = sorted((p.start, p.end) for p in clock.parses)
    ends = [e for _, e in parses]  # parses run one at a time on the loop: ends are sorted too
    alone: list[float] = []
    contended: list[float] = []
    for start, end in clock.stagings:
        length = end - start
        if length <= 0:
            continue
        share = _overlap(start, end, parses, bisect.bisect_right(ends, start)) / length
        if share < 0.1:
            alone.append(length)
        elif share >= 0.5:
            contended.append(length)

    def mean_ms(xs: list[float]) -> float:
        return round(1000 * sum(xs) / len(xs), 2) if xs else 0.0

    return {
        "pages_alone": len(alone),
        "ms_per_page_alone": mean_ms(alone),
        "pages_while_parsing": len(contended),
        "ms_per_page_while_parsing": mean_ms(contended),
    }


def busy(clock: StageClock) -> dict[str, float]:
    """Seconds spent in each stage whether or not it overlapped another one (not additive)."""
    parse_total = sum(p.end - p.start for p in clock.parses)
    on_path, _ = _parse_on_path(clock)
    in_items = clock.item_validate + clock.envelope + clock.normalize
    staging = sum(e - s for s, e in clock.stagings)
    values = {
        "parse": parse_total,
        "validate": parse_total - clock.normalize,
        "item_validation": clock.item_validate,
        "envelope_validation": clock.envelope,
        "normalize": clock.normalize,
        "decode_reencode_loop": parse_total - in_items,
        "parse_hidden_behind_staging": parse_total - on_path,
        "consumer_wait": sum(e - s for s, e in clock.waits),
        "write_staging": staging,
        "staging_rows_python": staging - clock.staging_write,
        "staging_sql": clock.staging_sql,
        "staging_txn_other": clock.staging_write - clock.staging_sql,
        "write_apply": clock.apply,
        "apply_sql": clock.apply_sql,
        "apply_python": clock.apply - clock.apply_sql,
        "sql_total": sum(s.seconds for s in clock.statements.values()),
    }
    return {k: round(v, 3) for k, v in values.items()}
