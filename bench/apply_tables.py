"""Where a first sync's apply spends its time, per table: ``python bench/apply_tables.py 30000``.

Runs ``sync.run.run_sync`` in-process (no CLI, no Prefect) against a prewarmed simulator into a
fresh PostgreSQL database, and times every bulk write of the apply (``COPY`` into each table,
wall time including the server's work) and every other SQL statement (from the engine's cursor
events, by its first words). The sum leaves out the apply's Python work between statements
(decoding staged fields, building rows and events). By hand only.
"""

from __future__ import annotations

import argparse
import collections
import time
from typing import Any

from profiling import API_KEY, bench_settings, migrated
from sqlalchemy import Connection, Table, event

import sync.store.apply as apply_module
from simulator import SimulatorProcess
from sync.run import run_sync


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cvms", type=int, help="fleet size")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()

    seconds: collections.Counter[str] = collections.Counter()
    rows: collections.Counter[str] = collections.Counter()
    bulk_insert = apply_module.bulk_insert

    def timed_bulk_insert(conn: Connection, table: Table, values: Any) -> None:
        start = time.perf_counter()
        bulk_insert(conn, table, values)
        seconds[f"COPY {table.name}"] += time.perf_counter() - start
        rows[f"COPY {table.name}"] += len(values)

    apply_module.bulk_insert = timed_bulk_insert  # type: ignore[assignment]
    with (
        SimulatorProcess(api_key=API_KEY, cvms=args.cvms, seed=args.seed, prewarm=True) as proc,
        migrated("postgres", args.postgres_url) as (url, engine),
    ):
        started: dict[int, float] = {}

        @event.listens_for(engine, "before_cursor_execute")
        def before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            started[id(cursor)] = time.perf_counter()

        @event.listens_for(engine, "after_cursor_execute")
        def after(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            start = started.pop(id(cursor), None)
            if start is not None:
                seconds["SQL " + " ".join(statement.split()[:3])[:60]] += (
                    time.perf_counter() - start
                )

        summary = run_sync(engine, bench_settings(proc.base_url, url))
    print(f"{args.cvms:,} CVMs, first sync: " + ", ".join(
        f"{k} {v:.2f} s" for k, v in summary.timings.items()
    ))  # fmt: skip
    print("| seconds | rows | statement |\n|---|---|---|")
    for name, spent in seconds.most_common(15):
        print(f"| {spent:.2f} | {rows[name] or ''} | `{name}` |")


if __name__ == "__main__":
    main()
