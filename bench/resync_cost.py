"""First sync, unchanged resyncs, a 1% resync, in-process: ``python bench/resync_cost.py 100000``.

Runs ``sync.run.run_sync`` (no CLI, no Prefect) against a prewarmed simulator into a private
PostgreSQL schema of the ``phala_sync_bench`` database (so it never collides with ``bench/run.py``
and its ``phala_sync_bench_<size>`` databases), ``ANALYZE`` between runs as ``bench/run.py``
does. Prints each run's wall seconds, its stage timings and the load average before and after,
as JSON lines. Used to compare two versions of the code on the same machine (issue 23: the
target memberships must not add a write per unchanged CVM). By hand only.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from benchdb import DEFAULT_POSTGRES_URL, ensure_postgres_database
from profiling import API_KEY, bench_settings, migrated
from scenarios import ADMIN_TOKEN, one_percent
from sqlalchemy import text

from simulator import AdminClient, SimulatorProcess
from sync.run import run_sync


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cvms", type=int, help="fleet size")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--unchanged", type=int, default=3, help="unchanged resyncs (default 3)")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    args = parser.parse_args()
    ensure_postgres_database(args.postgres_url)
    with (
        SimulatorProcess(
            api_key=API_KEY,
            cvms=args.cvms,
            seed=args.seed,
            prewarm=True,
            admin_token=ADMIN_TOKEN,
            startup_timeout=900.0,
        ) as sim,
        migrated("postgres", args.postgres_url) as (url, engine),
    ):
        settings = bench_settings(sim.base_url, url)

        def one(name: str) -> None:
            load = os.getloadavg()
            start = time.perf_counter()
            summary = run_sync(engine, settings)
            wall = time.perf_counter() - start
            with engine.begin() as conn:
                conn.execute(text("ANALYZE"))
            line = {
                "run": name,
                "cvms": args.cvms,
                "wall_s": round(wall, 3),
                "timings": {k: round(v, 3) for k, v in summary.timings.items()},
                "counts": summary.counts["cvm"],
                "node_counts": summary.counts.get("node"),
                "load_start": [round(x, 2) for x in load],
                "load_end": [round(x, 2) for x in os.getloadavg()],
            }
            print(json.dumps(line), flush=True)

        one("first")
        for i in range(args.unchanged):
            one(f"resync_unchanged_{i + 1}")
        with AdminClient(sim.admin_url, ADMIN_TOKEN) as admin:
            admin.evolve(one_percent(args.cvms), seed=args.seed)
        one("resync_1pct")


if __name__ == "__main__":
    main()
