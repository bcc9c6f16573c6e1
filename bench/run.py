"""The sync benchmark: ``make bench`` or ``python bench/run.py [options]``.

Measures ``phala-sync sync`` as a user runs it: a separate process, against one running
``prefect server start``, into PostgreSQL, from the simulator in a process of its own, for each
fleet size, next to the *floor* of the same fleet (fetching and ``json.loads``-ing every page of
both endpoints, one after another, in a process of its own; best of 3). Scenarios: a first sync,
an unchanged resync, a resync after 1% of the fleet changed; at the extra sizes also a first sync
in ephemeral mode (no Prefect server configured) and a SQLite first sync + unchanged resync. Then
the same three syncs of a fleet that answers each request after a latency (``--latency``, default
100 ms and 20,000 CVMs: a distant API), against a floor reading with the product's concurrency.
Prints Markdown tables (ratio to the floor, CPU seconds and peak RSS of the sync process, the load
average, the targets' verdicts, where the time goes) and writes everything to
``bench/results.json`` (git-ignored). How each figure is obtained: ``bench/README.md``.

By hand only, never in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import report
import scenarios
from benchdb import DEFAULT_POSTGRES_SERVER, DEFAULT_POSTGRES_URL, ensure_postgres_database
from benchdb import server_settings as pg_settings
from procs import ROOT, loadavg, prefect_server

HERE = Path(__file__).resolve().parent


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument(
        "--sizes",
        default="10000,100000,200000",
        help="fleet sizes, comma-separated (default: 10000,100000,200000)",
    )
    p.add_argument("--quick", action="store_true", help="10,000 CVMs only")
    p.add_argument(
        "--db",
        default="postgres,sqlite",
        help="postgres: every scenario at every size; sqlite: a first sync and an unchanged "
        "resync at the extra sizes (at every size, in place of PostgreSQL, without postgres). "
        "Default: postgres,sqlite",
    )
    p.add_argument(
        "--extra-sizes",
        default="10000",
        help="sizes that also get the ephemeral-mode and SQLite runs, comma-separated, or 'all' "
        "(default: 10000)",
    )
    p.add_argument("--no-ephemeral", action="store_true", help="skip the ephemeral-mode run")
    p.add_argument(
        "--latency",
        default="100:20000",
        help="fleets served with a latency per request, MS:CVMS comma-separated, or 'none' "
        "(default: 100:20000)",
    )
    p.add_argument("--seed", type=int, default=7, help="the simulated fleet's seed (default 7)")
    p.add_argument(
        "--postgres-url",
        default=os.environ.get("PHALA_SYNC_BENCH_POSTGRES_SERVER", DEFAULT_POSTGRES_SERVER),
        help="the PostgreSQL server (no password); each fleet gets a fresh database "
        "phala_sync_bench_<size> on it, dropped at the end. Default: "
        f"$PHALA_SYNC_BENCH_POSTGRES_SERVER or {DEFAULT_POSTGRES_SERVER}",
    )
    p.add_argument(
        "--pg-analyze",
        choices=("between", "none"),
        default="between",
        help="between: ANALYZE the database after each PostgreSQL run, outside its time, as "
        "autovacuum would between scheduled runs (autovacuum is off on this machine kind's "
        "server); none: never. Default: between",
    )
    p.add_argument("--keep-databases", action="store_true", help="keep the databases after the run")
    p.add_argument(
        "--run-timeout",
        type=float,
        default=1800.0,
        help="seconds before a measured command is killed (default 1800)",
    )
    p.add_argument(
        "--server-timeout",
        type=int,
        default=0,
        help="bound of `prefect server start` (timeout -k 10 SECONDS); default: from the sizes",
    )
    p.add_argument(
        "--profile",
        metavar="DB:SIZE",
        help="instead of the benchmark, profile a first sync and an unchanged resync of "
        "sync.run.run_sync in-process under cProfile (e.g. postgres:100000); writes "
        "bench/results-profile.json",
    )
    p.add_argument("--profile-top", type=int, default=30, help="functions kept per profile")
    p.add_argument("--out", type=Path, help="results file (default bench/results.json)")
    return p.parse_args(argv)


def _latencies(text: str) -> list[tuple[int, int]]:
    """``--latency``: (milliseconds, CVMs) pairs; 'none' gives none."""
    if text.strip() == "none":
        return []
    pairs = []
    for part in text.split(","):
        ms, sep, cvms = part.strip().partition(":")
        if not sep or not ms.isdigit() or not cvms.isdigit() or int(ms) <= 0:
            raise SystemExit(f"--latency: MS:CVMS pairs such as 100:20000, or 'none'; not {part!r}")
        pairs.append((int(ms), int(cvms)))
    return pairs


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _meta(args: argparse.Namespace) -> dict[str, Any]:
    status = _git("status", "--porcelain")
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "git_head": _git("rev-parse", "--short", "HEAD"),
        "git_dirty_files": len(status.splitlines()) if status != "unknown" else None,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "loadavg_start": loadavg(),
        "page_size": scenarios.PAGE_SIZE,
        "api_version": scenarios.API_VERSION,
        "argv": sys.argv[1:],
        "seed": args.seed,
    }


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def _profile(args: argparse.Namespace, results: dict[str, Any]) -> Path:
    db, _, size = args.profile.partition(":")
    if db == "postgres":
        ensure_postgres_database(DEFAULT_POSTGRES_URL)
    with tempfile.TemporaryDirectory(prefix="phala-sync-bench-") as folder:
        out = Path(folder) / "profile.json"
        spec = {
            "db": db,
            "size": int(size or 100_000),
            "seed": args.seed,
            "postgres_url": DEFAULT_POSTGRES_URL,
            "top": args.profile_top,
            "out": str(out),
        }
        subprocess.run(
            [sys.executable, str(HERE / "profiling.py"), json.dumps(spec)], cwd=ROOT, check=True
        )
        profile = json.loads(out.read_text())
    results["profile"] = profile
    print(report.profile_text(profile))
    out_path: Path = args.out or HERE / "results-profile.json"
    return out_path


def _print_tables(results: dict[str, Any]) -> None:
    date = results["meta"]["date"]
    print(f"\n## `phala-sync sync` against the floor ({date}, git {results['meta']['git_head']})\n")
    print(report.runs_table(results))
    print("\n## The floor (fetch + `json.loads` of every page, one after another)\n")
    print(report.floor_table(results))
    print("\n## Where the time goes (each stage's cost against the floor of the same fleet)\n")
    print(report.stages_table(results))
    timings = report.timings_table(results)
    if timings:
        print("\n## Per-stage seconds reported by the sync (its summary's `timings`)\n")
        print(timings)
    print("\n## What each run did\n")
    print(report.counts_table(results))
    print("\n## Targets\n")
    print(report.targets_table(results["targets"], date))


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    started = time.perf_counter()
    results: dict[str, Any] = {"meta": _meta(args)}
    if args.profile:
        profile_out = _profile(args, results)
        profile_out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"\nwrote {profile_out}")
        return

    dbs = {d.strip() for d in args.db.split(",") if d.strip()}
    if not dbs or dbs - {"postgres", "sqlite"}:
        raise SystemExit(f"--db: postgres, sqlite or both, not {args.db!r}")
    sizes = [10_000] if args.quick else sorted(int(s) for s in args.sizes.split(","))
    latencies = _latencies(args.latency)
    extra = (
        set(sizes)
        if args.extra_sizes.strip() == "all"
        else {int(s) for s in args.extra_sizes.split(",") if s.strip()}
    )
    pg = args.postgres_url if "postgres" in dbs else None
    if pg:
        results["meta"]["postgres"] = pg_settings(pg)
    out: Path = args.out or HERE / "results.json"
    # The server's bound: generous for today's rates (about 1-3k CVMs/s; 6 syncs per size).
    server_timeout = args.server_timeout or int(
        1800 + (sum(sizes) + sum(n for _, n in latencies)) * 6 / 500
    )
    results["meta"]["prefect_server_timeout_s"] = server_timeout
    workdir = Path(tempfile.mkdtemp(prefix="phala-sync-bench-"))
    try:
        print(f"starting `prefect server start` (bounded by timeout {server_timeout} s) ...")
        home = workdir / "prefect-home"
        home.mkdir()
        with prefect_server(home, timeout_s=server_timeout) as server:
            results["meta"]["prefect_server_start_s"] = round(server.startup_s, 1)
            print(f"  {server.api_url} answered /api/health after {server.startup_s:.1f} s")
            bench = scenarios.Bench(
                server=server,
                postgres_server=pg,
                sqlite="sqlite" in dbs,
                workdir=workdir,
                run_timeout_s=args.run_timeout,
                analyze_between=args.pg_analyze == "between",
                keep_databases=args.keep_databases,
                log=lambda line: print(line, flush=True),
            )
            print("CLI fixed costs (best of 3) ...", flush=True)
            results["fixed_costs"] = scenarios.fixed_costs(bench)
            results["fleets"] = []
            for size in sizes:
                results["fleets"].append(
                    scenarios.fleet(
                        bench,
                        size,
                        args.seed,
                        extras=size in extra,
                        ephemeral=not args.no_ephemeral,
                    )
                )
                out.write_text(json.dumps(results, indent=1) + "\n")  # partial results so far
            for ms, size in latencies:
                results["fleets"].append(
                    scenarios.fleet(
                        bench, size, args.seed, extras=False, ephemeral=False, latency_ms=ms
                    )
                )
                out.write_text(json.dumps(results, indent=1) + "\n")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["targets"] = report.targets(results)
    _print_tables(results)
    results["meta"]["loadavg_end"] = loadavg()
    results["meta"]["total_s"] = round(time.perf_counter() - started, 1)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwrote {out} ({results['meta']['total_s']:.0f} s in all)")


if __name__ == "__main__":
    main()
