"""What one benchmark child process measures (one fleet size on one database, per process).

Each child starts its own simulator (``SimulatorProcess``: its own process, prewarmed, seeded) so
the client's peak RSS is that of one (database, size) pair, then runs the real pipeline,
``sync.run.run_sync``, over HTTP loopback:

1. ``first``: a first full sync into an empty, migrated database;
2. ``resync_unchanged``: the same fleet again;
3. ``resync_1pct``: after one evolve step that resizes, renames and moves 1% of the CVMs;
4. ``first_latency``: a first sync into another empty database while the simulator delays every
   response by ``latency_ms``.

``flow_overhead`` compares the Prefect flow with the plain function on unchanged resyncs;
``profile`` runs a first sync and an unchanged resync under cProfile (both threads).
"""

from __future__ import annotations

import asyncio
import atexit
import cProfile
import gc
import os
import pstats
import resource
import shutil
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from benchdb import TABLES, analyze, fresh_database, row_counts
from pydantic import SecretStr
from sqlalchemy import Engine
from stages import (
    StageClock,
    busy,
    critical_path,
    instrumented,
    staging_contention,
    watch_sql,
)

from sync.run import RunSummary, run_sync
from sync.settings import Settings
from sync.simulator import AdminClient, SimulatorProcess
from sync.store.engine import make_engine
from sync.store.migrate import upgrade
from sync.store.staging import Stager

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State

API_KEY = "bench-api-key"
ADMIN_TOKEN = "bench-admin-token"
TARGET = "bench"
PAGE_SIZE = 100
CONCURRENCY = 4
TOP_STATEMENTS = 12


# ------------------------------------------------------------------------------ process facts
def rss_mb() -> float:
    """Resident set size now (from /proc/self/statm)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def peak_rss_mb() -> float:
    """Peak RSS of this process so far (``ru_maxrss`` is in KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def one_percent(size: int) -> dict[str, int]:
    """An evolve plan touching 1% of the fleet: resizes, renames and moves in equal parts."""
    n = max(1, size // 100)
    third = n // 3
    return {"resize": third, "rename": third, "move": n - 2 * third}


def bench_settings(base_url: str, database_url: str) -> Settings:
    return Settings(
        _env_file=None,
        api_key=SecretStr(API_KEY),
        base_url=base_url,
        database_url=database_url,
        target=TARGET,
        page_size=PAGE_SIZE,
        concurrency=CONCURRENCY,
        lock_timeout=120.0,
    )


@contextmanager
def simulator(size: int, seed: int) -> Iterator[tuple[SimulatorProcess, AdminClient, float]]:
    start = time.perf_counter()
    with SimulatorProcess(
        api_key=API_KEY, cvms=size, seed=seed, prewarm=True, admin_token=ADMIN_TOKEN
    ) as proc:
        started = time.perf_counter() - start
        with AdminClient(proc.base_url, ADMIN_TOKEN) as admin:
            yield proc, admin, started


@dataclass(frozen=True)
class DbOptions:
    """Where PostgreSQL runs and how it is treated between measured runs."""

    postgres_url: str
    #: Bounds each statement (0: none), so that a pathological plan fails its run, not the bench.
    statement_timeout_s: float = 300.0
    #: ``ANALYZE`` every table after each measured run (outside its wall time), as autovacuum
    #: would between scheduled runs; this machine kind's PostgreSQL runs with autovacuum off.
    analyze_between: bool = True


@contextmanager
def migrated(kind: str, db: DbOptions) -> Iterator[tuple[str, Engine]]:
    with fresh_database(kind, db.postgres_url, statement_timeout_s=db.statement_timeout_s) as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            yield url, engine
        finally:
            engine.dispose()


# ------------------------------------------------------------------------------ one measured run
def measure(
    name: str,
    engine: Engine,
    settings: Settings,
    clock: StageClock,
    server_pid: int,
    *,
    expected: list[dict[str, Any]] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """One ``run_sync`` with every clock running; the wall time is that call's alone."""
    gc.collect()
    before = row_counts(engine)
    clock.reset()
    load_before = loadavg()
    client0 = os.times()
    server0 = cpu_seconds(server_pid)
    start = time.perf_counter()
    summary: RunSummary | None = None
    error: str | None = None
    progress: dict[str, list[int]] = {}

    def on_page(endpoint: str, pages: int, planned: int, items: int) -> None:
        progress[endpoint] = [pages, planned, items]

    try:
        summary = run_sync(engine, settings, on_page=on_page)
    except Exception as exc:  # a failed run is a result too (e.g. a statement timeout)
        error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
    wall = time.perf_counter() - start
    client1 = os.times()
    server1 = cpu_seconds(server_pid)
    after = row_counts(engine)
    rows: dict[str, dict[str, int]] = {}
    for table in sorted(set(TABLES) | set(clock.writes)):
        entry = {"net": after.get(table, 0) - before.get(table, 0), **clock.writes.get(table, {})}
        if any(entry.values()):
            rows[table] = entry
    counts = summary.counts if summary is not None else {}
    cvms = counts.get("cvm", {}).get("seen", 0)
    statements = sorted(clock.statements.items(), key=lambda kv: kv[1].seconds, reverse=True)
    result: dict[str, Any] = {
        "scenario": name,
        "wall_s": round(wall, 3),
        "cvms": cvms,
        "apps": counts.get("app", {}).get("seen", 0),
        "cvms_per_s": round(cvms / wall) if wall else 0,
        "pages": dict(clock.pages),
        "progress": progress,  # the last on_page call per endpoint: [pages, planned, items]
        "stages": critical_path(clock, wall),
        "busy": busy(clock),
        "staging_contention": staging_contention(clock),
        "rows": rows,
        "ledger": _ledger(summary) if summary is not None else {"status": "failed", "counts": {}},
        "error": error,
        "sql_top": [
            {"sql": sql, "calls": s.calls, "seconds": round(s.seconds, 3), "rows": s.rows}
            for sql, s in statements[:TOP_STATEMENTS]
        ],
        "cpu_s": {
            "client": round((client1.user - client0.user) + (client1.system - client0.system), 2),
            "simulator": round(server1 - server0, 2),
        },
        "rss_mb": {"now": rss_mb(), "peak_so_far": peak_rss_mb()},
        "loadavg": {"before": load_before, "after": loadavg()},
    }
    if expected is not None:
        tally = Counter(f"{c['entity_type']}.{c['change_type']}" for c in expected)
        result["expected_changes"] = dict(sorted(tally.items()))
    st = result["stages"]
    if error:
        log(f"  {name:<17} FAILED after {wall:.1f} s: {error}")
    log(
        f"  {name:<17} {wall:7.2f} s  {result['cvms_per_s']:>7} CVMs/s  "
        f"wait {st['fetch_wait']:.2f}  validate {st['validate']:.2f}  "
        f"normalize {st['normalize']:.2f}  staging {st['write_staging']:.2f}  "
        f"apply {st['write_apply']:.2f}  other {st['other']:.2f}  "
        f"(rss peak {result['rss_mb']['peak_so_far']} MB, load {result['loadavg']['after'][0]})"
    )
    return result


def _ledger(summary: RunSummary) -> dict[str, Any]:
    return {
        "run_id": summary.run_id,
        "status": summary.status,
        "counts": summary.counts,
        "quarantined": summary.quarantined,
        "listing_complete": summary.listing_complete,
        "apps_listing_complete": summary.apps_listing_complete,
        "api_total": summary.api_total,
    }


# ------------------------------------------------------------------------------ child kinds
def fleet(db: str, size: int, seed: int, options: DbOptions, latency_ms: int) -> dict[str, Any]:
    """The four scenarios for one (database, size), in this (fresh) process."""
    rss_at_start = rss_mb()
    out: dict[str, Any] = {"db": db, "size": size, "scenarios": []}
    runs: list[dict[str, Any]] = out["scenarios"]
    analyze_between = options.analyze_between and db == "postgres"
    print(f"[{db} {size:,} CVMs] starting the simulator ...", flush=True)
    with simulator(size, seed) as (proc, admin, started):
        assert proc.process is not None
        pid = proc.process.pid
        out["simulator_start_s"] = round(started, 1)
        clock = StageClock()

        def run(name: str, engine: Engine, settings: Settings, **kwargs: Any) -> dict[str, Any]:
            result = measure(name, engine, settings, clock, pid, **kwargs)
            if analyze_between:
                start = time.perf_counter()
                analyze(engine)
                result["analyze_after_s"] = round(time.perf_counter() - start, 2)
            runs.append(result)
            return result

        with instrumented(clock):
            with migrated(db, options) as (url, engine):
                unhook = watch_sql(engine, clock)
                settings = bench_settings(proc.base_url, url)
                out["rss_mb_before_first_sync"] = rss_mb()
                run("first", engine, settings)
                run("resync_unchanged", engine, settings)
                step = admin.evolve(one_percent(size), seed=seed)
                result = run("resync_1pct", engine, settings, expected=step["changes"])
                result["evolve_plan"] = one_percent(size)
                unhook()
            if latency_ms:
                admin.set_faults([f"latency:ms={latency_ms}"])
                with migrated(db, options) as (url, engine):
                    unhook = watch_sql(engine, clock)
                    result = run("first_latency", engine, bench_settings(proc.base_url, url))
                    result["latency_ms"] = latency_ms
                    unhook()
                admin.clear_faults()
    out["rss_mb_at_start"] = rss_at_start
    out["peak_rss_mb"] = peak_rss_mb()
    out["analyze_between_runs"] = analyze_between
    return out


def flow_overhead(db: str, size: int, seed: int, options: DbOptions, runs: int) -> dict[str, Any]:
    """Unchanged resyncs through the Prefect flow vs. ``run_sync`` called directly.

    Both sides build their own engine and settings per run (the flow does so inside), so the
    difference is what the flow adds: Prefect's run bookkeeping, the two tasks, the artifacts.
    The first flow run also starts Prefect's ephemeral API server; it is reported apart.
    """
    home = tempfile.mkdtemp(prefix="phala-sync-bench-prefect-")
    # Registered before Prefect is imported, so it runs after Prefect's own exit handlers (LIFO)
    # have stopped the ephemeral server that uses this directory.
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    os.environ.update(
        {
            "PREFECT_HOME": home,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PHALA_CLOUD_API_KEY": API_KEY,
        }
    )
    try:
        from flows.sync_flow import sync_flow
    except Exception as exc:  # someone else's module, perhaps not importable yet
        return {"measured": False, "reason": f"flows.sync_flow not importable: {exc!r}"}

    print(f"[flow overhead, {db} {size:,} CVMs] starting the simulator ...", flush=True)
    with (
        simulator(size, seed) as (proc, _admin, _started),
        fresh_database(
            db, options.postgres_url, statement_timeout_s=options.statement_timeout_s
        ) as url,
    ):
        admin_engine = make_engine(url)
        upgrade(admin_engine)

        def between_runs() -> None:
            if options.analyze_between and db == "postgres":
                analyze(admin_engine)

        def direct() -> float:
            start = time.perf_counter()
            engine = make_engine(url)
            try:
                run_sync(engine, bench_settings(proc.base_url, url))
            finally:
                engine.dispose()
            elapsed = time.perf_counter() - start
            between_runs()
            return elapsed

        def via_flow() -> float:
            start = time.perf_counter()
            run = sync_flow(
                target=TARGET,
                base_url=proc.base_url,
                database_url=url,
                page_size=PAGE_SIZE,
                concurrency=CONCURRENCY,
                return_state=True,
            )
            state = asyncio.run(cast("Coroutine[Any, Any, State[Any]]", run))
            elapsed = time.perf_counter() - start
            if not state.is_completed():
                raise RuntimeError(f"the flow run ended {state.type}: {state.message}")
            between_runs()
            return elapsed

        first_sync = direct()
        first_flow = via_flow()  # includes the ephemeral server's start
        directs: list[float] = []
        flows: list[float] = []
        for _ in range(runs):
            directs.append(direct())
            flows.append(via_flow())
        admin_engine.dispose()
    overhead = statistics.median(flows) - statistics.median(directs)
    result = {
        "measured": True,
        "db": db,
        "size": size,
        "scenario": "resync_unchanged",
        "first_direct_sync_s": round(first_sync, 2),
        "first_flow_run_s_with_server_start": round(first_flow, 2),
        "direct_s": [round(x, 3) for x in directs],
        "flow_s": [round(x, 3) for x in flows],
        "overhead_s": round(overhead, 3),
        "loadavg": loadavg(),
    }
    print(
        f"  flow {statistics.median(flows):.2f} s vs direct {statistics.median(directs):.2f} s "
        f"(medians of {runs}): overhead {overhead:.2f} s",
        flush=True,
    )
    return result


def profile(db: str, size: int, seed: int, options: DbOptions, top: int) -> dict[str, Any]:
    """A first sync and an unchanged resync under cProfile: the main thread (HTTP, parsing,
    apply, and staging when it runs on the event loop) and, when staging runs in a worker thread,
    that thread each have their own profiler; their stats are merged.
    """
    out: dict[str, Any] = {"db": db, "size": size, "profiles": {}}
    main_thread = threading.get_ident()
    print(f"[profile {db} {size:,} CVMs] starting the simulator ...", flush=True)
    with (
        simulator(size, seed) as (proc, _admin, _started),
        migrated(db, options) as (
            url,
            engine,
        ),
    ):
        settings = bench_settings(proc.base_url, url)
        for name in ("first", "resync_unchanged"):
            main, worker = cProfile.Profile(), cProfile.Profile()
            saved = Stager.cvm_page, Stager.app_page

            def profiled(
                fn: Callable[[Stager, Any], None], worker: cProfile.Profile = worker
            ) -> Callable[[Stager, Any], None]:
                def call(self: Stager, page: Any) -> None:
                    if threading.get_ident() == main_thread:
                        fn(self, page)  # staging on the event loop: the main profiler sees it
                        return
                    worker.enable()
                    try:
                        fn(self, page)
                    finally:
                        worker.disable()

                return call

            setattr(Stager, "cvm_page", profiled(saved[0]))  # noqa: B010
            setattr(Stager, "app_page", profiled(saved[1]))  # noqa: B010
            try:
                gc.collect()
                start = time.perf_counter()
                main.enable()
                run_sync(engine, settings)
                main.disable()
                wall = time.perf_counter() - start
            finally:
                setattr(Stager, "cvm_page", saved[0])  # noqa: B010
                setattr(Stager, "app_page", saved[1])  # noqa: B010
            stats = pstats.Stats(main)
            threaded = bool(worker.getstats())  # False when staging ran on the event loop
            if threaded:
                stats.add(worker)
            out["profiles"][name] = {
                "wall_s_under_profiler": round(wall, 2),
                "by_tottime": _top(stats, "tottime", top),
                "by_cumtime": _top(stats, "cumulative", top),
                "staging_thread_by_tottime": (
                    _top(pstats.Stats(worker), "tottime", top) if threaded else []
                ),
            }
            print(f"  {name}: {wall:.1f} s under the profiler", flush=True)
    return out


def _short(path: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _top(stats: pstats.Stats, key: str, n: int) -> list[dict[str, Any]]:
    stats.sort_stats(key)
    rows: list[dict[str, Any]] = []
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    order: list[Any] = stats.fcn_list  # type: ignore[attr-defined]
    for func in order[:n]:
        _cc, ncalls, tottime, cumtime, _callers = table[func]
        filename, line, name = func
        rows.append(
            {
                "function": f"{_short(filename)}:{line}({name})",
                "calls": ncalls,
                "tottime": round(tottime, 3),
                "cumtime": round(cumtime, 3),
            }
        )
    return rows
