"""The sync benchmark (issue #6): ``make bench`` or ``python bench/run.py [options]``.

For each fleet size and database, a fresh child process starts the simulator in a process of its
own and measures the real pipeline (``sync.run.run_sync`` over HTTP loopback): a first full sync,
an unchanged resync, a resync after 1% of the fleet changed, and a first sync with simulated API
latency. Then the Prefect flow's overhead over the plain function. It prints CVMs/s, the wall time
split by stage, rows written per table, peak RSS and the issue's targets, and writes everything to
``bench/results.json`` (git-ignored). How each figure is obtained: ``bench/README.md``.

By hand only, never in CI: a full run takes about ten minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import report
from benchdb import DEFAULT_POSTGRES_URL, ensure_postgres_database, server_settings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CHILD_TIMEOUT_S = 1800


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument(
        "--sizes",
        default="10000,100000",
        help="fleet sizes, comma-separated (default: 10000,100000)",
    )
    p.add_argument(
        "--db", default="sqlite,postgres", help="databases: sqlite, postgres or both (default)"
    )
    p.add_argument("--quick", action="store_true", help="10,000 CVMs only")
    p.add_argument("--seed", type=int, default=7, help="the simulated fleet's seed")
    p.add_argument(
        "--latency-ms",
        type=int,
        default=50,
        help="simulated latency per request for the latency scenario; 0 skips it (default 50)",
    )
    p.add_argument(
        "--postgres-url",
        default=os.environ.get("PHALA_SYNC_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="PostgreSQL database for the benchmark (created if missing; each run uses a private "
        f"schema in it). Default: $PHALA_SYNC_BENCH_POSTGRES_URL or {DEFAULT_POSTGRES_URL}",
    )
    p.add_argument(
        "--pg-analyze",
        choices=("between", "none"),
        default="between",
        help="between: ANALYZE every table after each measured PostgreSQL run, outside its time, "
        "as autovacuum would between scheduled runs (this machine's server runs with autovacuum "
        "off); none: never (shows the plans a never-analyzed database gets). Default: between",
    )
    p.add_argument(
        "--statement-timeout",
        type=float,
        default=300.0,
        help="PostgreSQL statement_timeout in seconds for the measured runs, so that a "
        "pathological plan fails its run instead of stalling the benchmark (0: none; default 300)",
    )
    p.add_argument("--no-flow", action="store_true", help="skip the Prefect flow overhead")
    p.add_argument("--flow-runs", type=int, default=3, help="timed flow/direct runs (default 3)")
    p.add_argument(
        "--flow-size", type=int, default=10_000, help="fleet size of the flow comparison"
    )
    p.add_argument(
        "--profile",
        metavar="DB:SIZE",
        help="instead of the benchmark, profile a first sync and an unchanged resync under "
        "cProfile (e.g. postgres:100000); writes bench/results-profile.json",
    )
    p.add_argument("--profile-top", type=int, default=30, help="functions kept per profile")
    p.add_argument("--out", type=Path, help="results file (default bench/results.json)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; its result comes back through a file."""
    with tempfile.TemporaryDirectory(prefix="phala-sync-bench-") as folder:
        out = Path(folder) / "result.json"
        spec = {**spec, "out": str(out)}
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
            cwd=ROOT,
            timeout=CHILD_TIMEOUT_S,
            check=False,
        )
        if proc.returncode != 0 or not out.exists():
            raise SystemExit(f"benchmark child {spec['kind']} failed (exit {proc.returncode})")
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def _child(spec_json: str) -> None:
    import scenarios

    spec = json.loads(spec_json)
    kind = spec["kind"]
    options = scenarios.DbOptions(**spec["db_options"])
    if kind == "fleet":
        result = scenarios.fleet(
            spec["db"], spec["size"], spec["seed"], options, spec["latency_ms"]
        )
    elif kind == "flow":
        result = scenarios.flow_overhead(
            spec["db"], spec["size"], spec["seed"], options, spec["runs"]
        )
    elif kind == "profile":
        result = scenarios.profile(spec["db"], spec["size"], spec["seed"], options, spec["top"])
    else:
        raise SystemExit(f"unknown child kind {kind!r}")
    Path(spec["out"]).write_text(json.dumps(result, indent=1))


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
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "page_size": 100,
        "concurrency": 4,
        "argv": sys.argv[1:],
        "seed": args.seed,
    }


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    if args.child:
        _child(args.child)
        return
    dbs = [d.strip() for d in args.db.split(",") if d.strip()]
    for db in dbs:
        if db not in ("sqlite", "postgres"):
            raise SystemExit(f"--db: unknown database {db!r} (sqlite, postgres)")
    sizes = [10_000] if args.quick else sorted(int(s) for s in args.sizes.split(","))
    if "postgres" in dbs or (args.profile or "").startswith("postgres"):
        ensure_postgres_database(args.postgres_url)
    started = time.perf_counter()
    db_options = {
        "postgres_url": args.postgres_url,
        "statement_timeout_s": args.statement_timeout,
        "analyze_between": args.pg_analyze == "between",
    }
    results: dict[str, Any] = {"meta": {**_meta(args), "db_options": db_options}}
    if "postgres" in dbs:
        results["meta"]["postgres"] = server_settings(args.postgres_url)

    if args.profile:
        db, _, size = args.profile.partition(":")
        profile = _run_child(
            {
                "kind": "profile",
                "db": db,
                "size": int(size or 100_000),
                "seed": args.seed,
                "db_options": db_options,
                "top": args.profile_top,
            }
        )
        results["profile"] = profile
        print(report.profile_text(profile))
        out = args.out or HERE / "results-profile.json"
    else:
        results["fleets"] = [
            _run_child(
                {
                    "kind": "fleet",
                    "db": db,
                    "size": size,
                    "seed": args.seed,
                    "db_options": db_options,
                    "latency_ms": args.latency_ms,
                }
            )
            for size in sizes
            for db in dbs
        ]
        if not args.no_flow:
            results["flow_overhead"] = _run_child(
                {
                    "kind": "flow",
                    "db": "postgres" if "postgres" in dbs else dbs[0],
                    "size": args.flow_size,
                    "seed": args.seed,
                    "db_options": db_options,
                    "runs": args.flow_runs,
                }
            )
        results["targets"] = report.targets(results)
        date = results["meta"]["date"]
        print("\n## Scenarios (wall seconds by stage; the stages add up to the wall time)\n")
        print(report.scenario_table(results))
        print("\n## Busy seconds per stage (overlapping; see bench/README.md)\n")
        print(report.busy_table(results))
        print("\n## Rows written\n")
        print(report.rows_table(results))
        print("\n## Targets\n")
        print(report.targets_table(results["targets"], date))
        out = args.out or HERE / "results.json"
    results["meta"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    results["meta"]["total_s"] = round(time.perf_counter() - started, 1)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwrote {out} ({results['meta']['total_s']:.0f} s in all)")


if __name__ == "__main__":
    main()
