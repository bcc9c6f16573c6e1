"""What the benchmark runs for one fleet size, every measured command in a process of its own.

For one size: the simulator in its own process (``SimulatorProcess``: seeded, prewarmed, so that
every page is served from its cache), then, interleaved so that the floor is measured right next
to the syncs of the same fleet:

1. ``floor`` #1 (``bench/floor.py``), then ``first``: ``phala-sync sync`` into an empty, migrated
   PostgreSQL database of its own, against the running ``prefect server start``;
2. ``floor`` #2, then ``resync_unchanged``: the same command again;
3. ``floor`` #3, then the in-process stage costs of the same pages (``bench/stagecost.py``);
4. at the extra sizes: ``first`` in ephemeral mode (no ``PREFECT_API_URL``, a fresh
   ``PREFECT_HOME``) into another empty PostgreSQL database, and a SQLite ``first`` +
   ``resync_unchanged`` against the running server;
5. one evolve step changing 1% of the CVMs, then ``resync_1pct`` into the PostgreSQL database.

The ratio of a run is its wall seconds over the best of the three floors.

A fleet at a latency (``make bench``: 100 ms, 20k CVMs) is served with the simulator's fault
``latency:ms=MS`` on every request, like a distant API. Its floor reads the pages with the
product's default concurrency (:data:`CONCURRENCY` in flight), as the sync does; it gets steps 1,
2 and 5 (the stage costs are the CPU of parsing, the same at any latency).
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchdb import analyze_database, drop_database, recreate_database
from procs import (
    BIN,
    Measured,
    PrefectServer,
    clean_env,
    cpu_seconds,
    group_cpu_seconds,
    run_measured,
)
from procs import json_document as parse_json

from simulator import AdminClient, SimulatorProcess
from sync.settings import Settings

#: The simulator's throwaway key and admin token (the only key anything here ever sees).
API_KEY = "bench-api-key"
ADMIN_TOKEN = "bench-admin-token"
PAGE_SIZE = 100
#: The product's default pinned version, which the sync uses; the floor asks for the same.
API_VERSION: str = Settings.model_fields["api_version"].default
HERE = Path(__file__).resolve().parent
PYTHON = str(BIN / "python")
PHALA_SYNC = str(BIN / "phala-sync")
FLOOR_RUNS = 3
#: The product's default requests in flight, which a floor at a latency uses too.
CONCURRENCY: int = Settings.model_fields["concurrency"].default


@dataclass
class Bench:
    """What every fleet shares: the Prefect server, the databases, where commands run."""

    server: PrefectServer
    #: The PostgreSQL server (``postgresql://postgres@127.0.0.1:5432/postgres``); None: no PG.
    postgres_server: str | None
    sqlite: bool
    #: Working directory of every command (empty: no ``.env`` is read) and SQLite files.
    workdir: Path
    run_timeout_s: float
    analyze_between: bool
    keep_databases: bool
    log: Callable[[str], None] = print


def one_percent(size: int) -> dict[str, int]:
    """An evolve plan touching 1% of the fleet: resizes, renames and moves in equal parts."""
    n = max(1, size // 100)
    third = n // 3
    return {"resize": third, "rename": third, "move": n - 2 * third}


def _tail(text: str, n: int = 1500) -> str:
    return text[-n:].replace(API_KEY, "<key>")


def _first_error_line(m: Measured) -> str:
    lines = [x for x in m.stderr.strip().splitlines() if x.strip()]
    last = lines[-1] if lines else m.stdout.strip()[-300:]
    why = "timed out" if m.timed_out else f"exit {m.exit_code}"
    return f"{why}: {last[:300]}".replace(API_KEY, "<key>")


# ------------------------------------------------------------------------------ commands
def upgrade(bench: Bench, url: str) -> float:
    """``phala-sync db upgrade --database-url URL`` (outside any timing); its wall seconds."""
    m = run_measured(
        [PHALA_SYNC, "db", "upgrade", "--database-url", url],
        env=clean_env({"PREFECT_HOME": str(bench.server.home)}),
        cwd=bench.workdir,
        timeout_s=600,
    )
    if m.exit_code != 0:
        raise RuntimeError(
            f"phala-sync db upgrade failed ({_first_error_line(m)}):\n{_tail(m.stderr)}"
        )
    return round(m.wall_s, 2)


def _page_tool(bench: Bench, script: str, base_url: str, *extra: str) -> Measured:
    """Run one of the tools that read every page (``bench/<script>``) in a process of its own."""
    return run_measured(
        [PYTHON, str(HERE / script), base_url, str(PAGE_SIZE), API_VERSION, *extra],
        env=clean_env({"PHALA_CLOUD_API_KEY": API_KEY}),
        cwd=bench.workdir,
        timeout_s=bench.run_timeout_s,
    )


def floor(bench: Bench, base_url: str, concurrency: int = 1) -> dict[str, Any]:
    """One floor run (``bench/floor.py``) in a process of its own."""
    m = _page_tool(bench, "floor.py", base_url, str(concurrency))
    if m.exit_code != 0:
        raise RuntimeError(f"the floor run failed ({_first_error_line(m)}):\n{_tail(m.stderr)}")
    result = parse_json(m.stdout)
    if result is None:
        raise RuntimeError(f"the floor run printed no JSON: {_tail(m.stdout)}")
    result["process_wall_s"] = round(m.wall_s, 3)
    result["process_peak_rss_mib"] = round(m.peak_rss_mib, 1)
    return result


def stage_costs(bench: Bench, base_url: str) -> dict[str, Any]:
    """The in-process parse costs of the same pages (``bench/stagecost.py``)."""
    m = _page_tool(bench, "stagecost.py", base_url)
    result = parse_json(m.stdout) if m.exit_code == 0 else None
    if result is None:
        return {"error": _first_error_line(m), "stderr_tail": _tail(m.stderr)}
    result["process_wall_s"] = round(m.wall_s, 2)
    return result


def sync(
    bench: Bench,
    scenario: str,
    *,
    size: int,
    db: str,
    url: str,
    base_url: str,
    simulator_pid: int,
    ephemeral_home: Path | None = None,
    latency_ms: int = 0,
) -> dict[str, Any]:
    """One ``phala-sync sync --json`` as a user runs it; wall, CPU, peak RSS, its summary."""
    env = {
        "PHALA_CLOUD_API_KEY": API_KEY,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    if ephemeral_home is None:
        env.update(PREFECT_API_URL=bench.server.api_url, PREFECT_HOME=str(bench.server.home))
    else:
        env.update(PREFECT_HOME=str(ephemeral_home))
    argv = [
        PHALA_SYNC,
        "sync",
        "--json",
        "--base-url",
        base_url,
        "--database-url",
        url,
        "--page-size",
        str(PAGE_SIZE),
    ]
    server_pgid = bench.server.pgid
    m = run_measured(
        argv,
        env=clean_env(env),
        cwd=bench.workdir,
        timeout_s=bench.run_timeout_s,
        watch={
            "simulator": lambda: cpu_seconds(simulator_pid),
            "prefect_server": lambda: group_cpu_seconds(server_pgid),
        },
    )
    summary = parse_json(m.stdout) if m.exit_code == 0 else None
    error = None
    if m.exit_code != 0:
        error = _first_error_line(m)
    elif summary is None:
        error = f"no JSON summary on stdout: {m.stdout.strip()[:300]!r}"
    elif summary.get("status") not in (None, "succeeded", "success", "completed"):
        error = f"run status {summary.get('status')!r}: {summary.get('error')}"
    summary = summary or {}
    timings = summary.pop("timings", None)
    result: dict[str, Any] = {
        "size": size,
        "latency_ms": latency_ms,
        "db": db,
        "mode": "ephemeral" if ephemeral_home is not None else "server",
        "scenario": scenario,
        "wall_s": round(m.wall_s, 3),
        "cpu_s": round(m.cpu_s, 2),
        "cpu_user_s": round(m.cpu_user_s, 2),
        "cpu_sys_s": round(m.cpu_sys_s, 2),
        "peak_rss_mib": round(m.peak_rss_mib, 1),
        "loadavg_start": m.loadavg_start,
        "loadavg_end": m.loadavg_end,
        **m.extra,
        "exit_code": m.exit_code,
        "timed_out": m.timed_out,
        "error": error,
        "summary": summary,
        "timings": timings,
    }
    if error:
        result["stderr_tail"] = _tail(m.stderr)
    if db == "postgres" and bench.analyze_between and not error:
        start = time.perf_counter()
        analyze_database(url)
        result["analyze_after_s"] = round(time.perf_counter() - start, 2)
    return result


# ------------------------------------------------------------------------------ one fleet
def fleet(
    bench: Bench, size: int, seed: int, *, extras: bool, ephemeral: bool, latency_ms: int = 0
) -> dict[str, Any]:
    """Every scenario of one fleet size, or those of a fleet at a latency (see the module doc)."""
    log = bench.log
    concurrency = CONCURRENCY if latency_ms else 1
    out: dict[str, Any] = {
        "size": size,
        "latency_ms": latency_ms,
        "floor_concurrency": concurrency,
        "seed": seed,
        "floor": {"runs": []},
        "runs": [],
    }
    floors: list[dict[str, Any]] = out["floor"]["runs"]
    runs: list[dict[str, Any]] = out["runs"]
    pg = bench.postgres_server
    databases: list[str] = []
    sqlite_dir = bench.workdir / f"sqlite-{size}"
    at = f", {latency_ms} ms per request" if latency_ms else ""
    log(f"\n[{size:,} CVMs{at}] starting the simulator (prewarmed) ...")
    start = time.perf_counter()
    faults = [f"latency:ms={latency_ms}"] if latency_ms else []
    with SimulatorProcess(
        api_key=API_KEY,
        cvms=size,
        seed=seed,
        prewarm=True,
        admin_token=ADMIN_TOKEN,
        faults=faults,
    ) as sim:
        assert sim.process is not None
        base_url, sim_pid = sim.base_url, sim.process.pid
        out["simulator_start_s"] = round(time.perf_counter() - start, 1)

        def best_floor() -> float:
            return min(float(f["seconds"]) for f in floors)

        def take_floor() -> None:
            floors.append(floor(bench, base_url, concurrency))
            f = floors[-1]
            log(
                f"  floor #{len(floors)}        {f['seconds']:7.2f} s  "
                f"(load {f['loadavg_1m'][0]} -> {f['loadavg_1m'][1]})"
            )

        def measure(scenario: str, db: str, url: str, **kwargs: Any) -> dict[str, Any]:
            run = sync(
                bench,
                scenario,
                size=size,
                db=db,
                url=url,
                base_url=base_url,
                simulator_pid=sim_pid,
                latency_ms=latency_ms,
                **kwargs,
            )
            runs.append(run)
            ratio = run["wall_s"] / best_floor()
            state = f"FAILED: {run['error']}" if run["error"] else f"ratio {ratio:5.2f}x (so far)"
            log(
                f"  {run['db']}/{run['mode']} {scenario:<17} {run['wall_s']:7.2f} s  {state}  "
                f"cpu {run['cpu_s']:.1f} s  rss {run['peak_rss_mib']:.0f} MiB  "
                f"(load {run['loadavg_start'][0]} -> {run['loadavg_end'][0]})"
            )
            return run

        def fresh_pg(name: str) -> str:
            assert pg is not None
            databases.append(name)
            url = recreate_database(pg, name)
            out.setdefault("upgrade_s", {})[name] = upgrade(bench, url)
            return url

        def fresh_sqlite(name: str) -> str:
            sqlite_dir.mkdir(exist_ok=True)
            url = f"sqlite:///{sqlite_dir / name}.db"
            out.setdefault("upgrade_s", {})[name] = upgrade(bench, url)
            return url

        try:
            main_db = "postgres" if pg else "sqlite"
            name = f"phala_sync_bench_{size}" + (f"_{latency_ms}ms" if latency_ms else "")
            main_url = fresh_pg(name) if pg else fresh_sqlite("main")
            take_floor()
            measure("first", main_db, main_url)
            take_floor()
            measure("resync_unchanged", main_db, main_url)
            take_floor()
            if not latency_ms:
                log("  stage costs (in-process parsing of the same pages) ...")
                out["stage_costs"] = stage_costs(bench, base_url)
            if extras and ephemeral:
                home = bench.workdir / f"prefect-ephemeral-{size}"
                home.mkdir()
                url = fresh_pg(f"phala_sync_bench_{size}_ephemeral") if pg else fresh_sqlite("eph")
                try:
                    measure("first", main_db, url, ephemeral_home=home)
                finally:
                    shutil.rmtree(home, ignore_errors=True)
            if extras and bench.sqlite and pg:
                url = fresh_sqlite("sqlite")
                measure("first", "sqlite", url)
                measure("resync_unchanged", "sqlite", url)
            with AdminClient(sim.admin_url, ADMIN_TOKEN) as admin:
                step = admin.evolve(one_percent(size), seed=seed)
            run = measure("resync_1pct", main_db, main_url)
            run["evolve_plan"] = one_percent(size)
            tally = Counter(f"{c['entity_type']}.{c['change_type']}" for c in step["changes"])
            run["expected_changes"] = dict(sorted(tally.items()))
        finally:
            if not bench.keep_databases:
                for name in databases:
                    assert pg is not None
                    drop_database(pg, name)
                shutil.rmtree(sqlite_dir, ignore_errors=True)
    best = best_floor() if floors else None
    out["floor"]["best_s"] = best
    for run in runs:
        run["floor_s"] = best
        run["ratio"] = round(run["wall_s"] / best, 2) if best else None
    return out


# ------------------------------------------------------------------------------ fixed costs
def fixed_costs(bench: Bench, repeats: int = 3) -> dict[str, Any]:
    """The CLI's fixed costs, best of ``repeats``: start-up, and the imports a sync pays."""
    commands = {
        "phala-sync --help": [PHALA_SYNC, "--help"],
        "import sync.run": [PYTHON, "-c", "import sync.run"],
        "import flows.sync_flow": [PYTHON, "-c", "import flows.sync_flow"],
    }
    env = clean_env({"PREFECT_HOME": str(bench.server.home)})
    out: dict[str, Any] = {}
    for name, argv in commands.items():
        ms = [run_measured(argv, env=env, cwd=bench.workdir, timeout_s=120) for _ in range(repeats)]
        if any(m.exit_code != 0 for m in ms):
            out[name] = {"error": _first_error_line(next(m for m in ms if m.exit_code))}
            continue
        best = min(ms, key=lambda m: m.wall_s)
        out[name] = {
            "wall_s": round(best.wall_s, 3),
            "cpu_s": round(best.cpu_s, 3),
            "peak_rss_mib": round(best.peak_rss_mib, 1),
            "loadavg_start": best.loadavg_start,
        }
    return out
