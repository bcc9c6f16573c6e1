"""How fast the BI views read at scale: ``fleet_daily``, ``current_cvms``, the usage views.

    .venv/bin/python bench/bi_views.py                  # 100k CVMs, 30 daily runs, 1% churn
    .venv/bin/python bench/bi_views.py --cvms 10000 --days 30 --repeat 3
    .venv/bin/python bench/bi_views.py --skip cvm_daily_usage   # leave out the per-CVM view

The history is **inserted directly** (COPY), not synced: ``--days + 1`` succeeded runs, one a day at
03:00 UTC; the first creates ``--cvms`` CVMs, each later one changes ``--churn`` of the fleet
(a third deleted, a third resized or restarted, a third created). Syncing 30 runs of 100k CVMs would
take most of an hour on this machine; the views read only the history, the ledger and the nodes,
workspaces and creators, so the rows are what a sync would have written. The schema comes from
the real migrations (a private schema in ``phala_sync_bench``, dropped afterwards);
``fleet_levels``, which runs keep as they apply, is filled by migration 0005's backfill.

Prints each query's best-of-``--repeat`` wall time three ways: every row fetched into Python
(psycopg builds a Decimal or date for each value), every row copied to the client as text
(``COPY ... TO STDOUT``, as a BI extract reads), and the server's time alone (``EXPLAIN
ANALYZE``: every row computed, none sent); the rows, and the load average beside it (the machine
is shared: figures mean something only next to it).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.benchdb import DEFAULT_POSTGRES_URL, ensure_postgres_database, fresh_database
from sync.store.engine import make_engine
from sync.store.migrate import revision_module, upgrade

START = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)
REGIONS = (
    "us-west-1",
    "us-east-1",
    "eu-central-1",
    "eu-west-2",
    "ap-southeast-1",
    "ap-northeast-1",
)
TYPES = (("tdx.small", 1, 2048, 20, "0.058"), ("tdx.medium", 2, 4096, 40, "0.116"),
         ("tdx.large", 4, 8192, 80, "0.232"), ("tdx.xlarge", 8, 16384, 160, "0.464"),
         ("h200.small", 24, 196608, 500, None))  # fmt: skip
COUNTS = ("seen", "created", "updated", "deleted", "restored", "unchanged", "quarantined")
STATUSES = ("running",) * 8 + ("stopped", "error")

QUERIES = {
    "fleet_daily: every row": "SELECT * FROM fleet_daily",
    "fleet_daily: per day": "SELECT day, SUM(cvms), SUM(vcpus), SUM(memory_gb) FROM fleet_daily "
    "GROUP BY day ORDER BY day",
    "current_cvms: every row": "SELECT * FROM current_cvms",
    "fleet_daily_usage: per day and workspace": "SELECT day, workspace_id, SUM(existing_hours), "
    "SUM(running_hours), SUM(compute_cost_usd), SUM(storage_cost_usd) FROM fleet_daily_usage "
    "GROUP BY day, workspace_id ORDER BY day, workspace_id",
    "cvm_daily_usage: per day": "SELECT day, SUM(existing_hours), SUM(running_hours), "
    "SUM(compute_cost_usd), SUM(storage_cost_usd) FROM cvm_daily_usage GROUP BY day ORDER BY day",
    "cvm_states: every row": "SELECT * FROM cvm_states",
}


def _copy(cur: Any, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    buf = io.StringIO()
    for row in rows:
        buf.write("\t".join("\\N" if v is None else str(v) for v in row) + "\n")
    buf.seek(0)
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        copy.write(buf.read())


def build(url: str, cvms: int, days: int, churn: float, seed: int) -> dict[str, int]:
    """Fill the migrated database at ``url``; returns the row counts."""
    rng = random.Random(seed)
    engine = make_engine(url)
    upgrade(engine)
    n_nodes, n_ws = max(3, cvms // 400), max(2, cvms // 40)
    runs = [(i + 1, START + timedelta(days=i)) for i in range(days + 1)]
    live: dict[str, dict[str, Any]] = {}
    history: list[tuple[Any, ...]] = []
    current: dict[str, tuple[Any, ...]] = {}
    seq = 0

    def new_state() -> dict[str, Any]:
        itype, vcpu, mem, disk, price = rng.choice(TYPES)
        return {"status": rng.choice(STATUSES), "instance_type": itype, "vcpu": vcpu,
                "memory_mb": mem, "disk_gb": disk, "price": price,
                "node_id": rng.randrange(n_nodes), "workspace_id": f"wks_{rng.randrange(n_ws)}",
                "creator_id": f"usr_{rng.randrange(n_ws * 2)}"}  # fmt: skip

    def open_row(key: str, state: dict[str, Any], run_id: int, at: datetime) -> None:
        state["from"], state["run"] = at, run_id
        live[key] = state

    def close_row(key: str, at: datetime | None) -> None:
        s = live[key]
        history.append((key, "bench", s["node_id"], s["workspace_id"], s["creator_id"], key,
                        s["status"], s["vcpu"], s["memory_mb"], s["disk_gb"], s["instance_type"],
                        0, "hourly", s["price"], s["price"], s["from"], at, s["run"]))  # fmt: skip

    for run_id, at in runs:
        if run_id == 1:
            for _ in range(cvms):
                seq += 1
                open_row(f"{seq:032x}", new_state(), run_id, at)
            continue
        changes = int(len(live) * churn)
        keys = rng.sample(sorted(live), changes * 2 // 3)
        for key in keys[: changes // 3]:  # deleted
            close_row(key, at)
            current[key] = (key, at)
            del live[key]
        for key in keys[changes // 3 :]:  # resized or restarted
            close_row(key, at)
            state = {**live[key]}
            if rng.random() < 0.5:
                itype, state["vcpu"], state["memory_mb"], state["disk_gb"], state["price"] = (
                    rng.choice(TYPES)
                )
                state["instance_type"] = itype
            else:
                state["status"] = "running" if state["status"] != "running" else "stopped"
            open_row(key, state, run_id, at)
        for _ in range(changes // 3):  # created
            seq += 1
            open_row(f"{seq:032x}", new_state(), run_id, at)
    for key in list(live):
        close_row(key, None)
    last_at = runs[-1][1]
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        half = timedelta(seconds=30)
        _copy(cur, "sync_runs", ["id", "target", "api_version", "status", "started_at",
              "finished_at", "listing_complete", *COUNTS],
              [(i, "bench", "2026-01-21", "succeeded", at - half, at + half, "t", *[0] * 7)
               for i, at in runs])  # fmt: skip
        _copy(cur, "nodes", ["node_id", "name", "region", "first_seen_at", "last_seen_at",
              "first_seen_run_id", "last_seen_run_id", "observed_hash"],
              [(i, f"node-{i}", REGIONS[i % len(REGIONS)], START, last_at, 1, 1, "x")
               for i in range(n_nodes)])  # fmt: skip
        _copy(cur, "workspaces", ["workspace_id", "name", "first_seen_at", "last_seen_at",
              "first_seen_run_id", "last_seen_run_id", "observed_hash"],
              [(f"wks_{i}", f"Workspace {i}", START, last_at, 1, 1, "x")
               for i in range(n_ws)])  # fmt: skip
        _copy(cur, "creators", ["creator_id", "username", "first_seen_at", "last_seen_at",
              "first_seen_run_id", "last_seen_run_id", "observed_hash"],
              [(f"usr_{i}", f"user{i}", START, last_at, 1, 1, "x")
               for i in range(n_ws * 2)])  # fmt: skip
        hist_cols = ["vm_uuid", "target", "node_id", "workspace_id", "creator_id", "cvm_id",
                     "status", "vcpu", "memory_mb", "disk_gb", "instance_type", "gpus",
                     "billing_period", "compute_billing_price", "hourly_rate_compute",
                     "valid_from", "valid_to", "run_id"]  # fmt: skip
        _copy(cur, "cvm_history", hist_cols, history)
        cur.execute("ANALYZE")
        t0 = time.perf_counter()
        for statement in revision_module("0005").backfill_sql("postgresql"):
            cur.execute(statement)
        print(f"fleet_levels filled from the history in {time.perf_counter() - t0:.1f} s "
              "(migration 0005's backfill)")  # fmt: skip
        latest = {h[0]: h for h in history}  # rows are in time order: the last one per CVM
        _copy(cur, "cvms", [*hist_cols[:15], "first_seen_at", "last_seen_at", "first_seen_run_id",
              "last_seen_run_id", "deleted_at", "observed_hash"],
              [(*h[:15], h[15], h[15], h[17], h[17], current.get(k, (k, None))[1], "x")
               for k, h in latest.items()])  # fmt: skip
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
        engine.dispose()
    return {"sync_runs": len(runs), "cvm_history": len(history), "cvms": len(latest)}


def _timed(engine: Any, repeat: int, run: Any) -> tuple[float, Any]:
    """Best of ``repeat`` wall seconds of ``run(cursor)`` on a fresh connection, and its result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            t0 = time.perf_counter()
            result = run(cur)
            best = min(best, time.perf_counter() - t0)
        finally:
            raw.close()
    return best, result


def _fetch_all(sql: str) -> Any:
    def run(cur: Any) -> int:
        cur.execute(sql)
        return len(cur.fetchall())

    return run


def _copy_out(sql: str) -> Any:
    def run(cur: Any) -> int:
        size = 0
        with cur.copy(f"COPY ({sql}) TO STDOUT") as copy:
            for block in copy:
                size += len(block)
        return size

    return run


def _server_only(sql: str) -> Any:
    def run(cur: Any) -> None:
        cur.execute(f"EXPLAIN (ANALYZE, TIMING OFF) {sql}")
        cur.fetchall()

    return run


def measure(url: str, repeat: int) -> list[dict[str, Any]]:
    """Each query three ways: rows fetched into Python (psycopg builds a Decimal or date per
    value), every row copied to the client as text (``COPY ... TO STDOUT``, as a BI extract or
    ``psql \\copy`` reads), and the server's work alone (``EXPLAIN ANALYZE``)."""
    engine = make_engine(url)
    out = []
    try:
        for name, sql in QUERIES.items():
            fetched, rows = _timed(engine, repeat, _fetch_all(sql))
            copied, size = _timed(engine, repeat, _copy_out(sql))
            server, _ = _timed(engine, repeat, _server_only(sql))
            out.append({"query": name, "seconds": round(fetched, 3), "copy": round(copied, 3),
                        "copy_mib": round(size / 2**20, 1), "server": round(server, 3),
                        "rows": rows,
                        "load": " ".join(f"{x:.2f}" for x in os.getloadavg())})  # fmt: skip
    finally:
        engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cvms", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--churn", type=float, default=0.01)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--skip", action="append", default=[], metavar="TEXT",
                        help="leave out the queries whose name contains TEXT")  # fmt: skip
    args = parser.parse_args()
    for name in [q for q in QUERIES if any(s in q for s in args.skip)]:
        del QUERIES[name]
    ensure_postgres_database(args.postgres_url)
    with fresh_database("postgres", args.postgres_url) as url:
        t0 = time.perf_counter()
        counts = build(url, args.cvms, args.days, args.churn, args.seed)
        print(f"built {counts} in {time.perf_counter() - t0:.1f} s (rows inserted directly)")
        print(f"\n{args.cvms} CVMs, {args.days} daily runs of {args.churn:.0%} churn, PostgreSQL, "
              f"best of {args.repeat}, every row fetched:\n")  # fmt: skip
        print("| query | s, rows fetched into Python | s, rows copied out (MiB) | s, server only "
              "| rows | load average |")  # fmt: skip
        print("|---|---:|---:|---:|---:|---|")
        for r in measure(url, args.repeat):
            print(f"| {r['query']} | {r['seconds']} | {r['copy']} ({r['copy_mib']}) "
                  f"| {r['server']} | {r['rows']} | {r['load']} |")  # fmt: skip


if __name__ == "__main__":
    main()
