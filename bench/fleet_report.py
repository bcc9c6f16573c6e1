"""The fleet report and the per-run fleet artifact at scale (issue 19's speed targets).

    .venv/bin/python bench/fleet_report.py                       # 100k CVMs, 30 daily runs, PG
    .venv/bin/python bench/fleet_report.py --cvms 10000 --runs 30 --db sqlite
    .venv/bin/python bench/fleet_report.py --direct              # history inserted, 1% churn

Builds the history once (``run_sync`` over the in-process simulator, one run a simulated day, a
small evolve step between runs; or with ``--direct``, on PostgreSQL, rows inserted as
``bench/bi_views.py`` does, which takes seconds instead of most of an hour at 100k; not timed as
part of the report), then measures:

- ``phala-sync report`` as a user runs it: a separate process, its wall time and its peak RSS
  (``os.wait4``'s rusage of that one child). Targets: <= 15 s and <= 300 MiB at 100k.
- the per-run artifact's queries (:func:`sync.report.fleet_change.fleet_change`), best of 3 in
  this process. Target: <= 0.3 s at 100k.

By hand only; the machine is shared, so the load average is printed beside the figures.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.benchdb import fresh_database  # noqa: E402
from bench.procs import RssSampler  # noqa: E402
from simulator import Fleet, SimulatorTransport, create_app  # noqa: E402
from sync.clock import SteppingClock, use_clock  # noqa: E402
from sync.report.fleet_change import fleet_change  # noqa: E402
from sync.run import run_sync  # noqa: E402
from sync.settings import Settings  # noqa: E402
from sync.store.engine import make_engine  # noqa: E402
from sync.store.migrate import upgrade  # noqa: E402

KEY = "phak_bench_report"
TARGET = "bench"
START = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)


def build(url: str, cvms: int, runs: int, seed: int) -> float:
    engine = make_engine(url)
    upgrade(engine)
    fleet = Fleet(cvms, seed=seed)
    app = create_app(fleet, api_key=KEY)
    settings = Settings(
        api_key=KEY, base_url="http://simulator/api/v1", database_url=url, target=TARGET
    )
    clock = SteppingClock(START)
    began = time.perf_counter()
    step = max(1, cvms // 500)  # 0.2% of the fleet changes a day
    with use_clock(clock):
        for i in range(runs):
            if i:
                fleet.evolve(
                    {"create": step, "delete": step // 2 + 1, "restart": step, "resize": step},
                    seed=seed + i,
                )
                clock.jump(START + timedelta(days=i))
            summary = run_sync(engine, settings, transport=SimulatorTransport(app))
            print(
                f"  run {summary.run_id}: {summary.counts.get('cvm', {})}"
                f" ({time.perf_counter() - began:.0f} s)",
                flush=True,
            )
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    engine.dispose()
    return time.perf_counter() - began


def report_command(url: str, out: Path, since: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of ``phala-sync report`` in its own process.

    The peak is the child's own ``VmHWM`` (sampled): ``wait4``'s ``ru_maxrss`` would also count
    this process's peak, which Linux carries over the fork.
    """
    began = time.perf_counter()
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("phala-sync")), "report", "--database-url", url,
         "--target", TARGET, "--since", since, "--out", str(out)],
        start_new_session=True,
    )  # fmt: skip
    sampler = RssSampler(proc.pid, interval=0.1)
    sampler.start()
    code = proc.wait()
    wall = time.perf_counter() - began
    sampler.done.set()
    sampler.join()
    if code:
        raise SystemExit(f"phala-sync report failed with status {code}")
    return wall, sampler.own_hwm_kib / 1024


def artifact_seconds(url: str) -> float:
    engine = make_engine(url)
    with engine.connect() as conn:
        (run_id,) = conn.execute(text("SELECT MAX(run_id) FROM run_log")).one()
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        change = fleet_change(engine, TARGET, int(run_id))
        best = min(best, time.perf_counter() - began)
    engine.dispose()
    print(f"  fleet artifact rows: {len(change.rows)}, previous run {change.previous_run_id}")
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cvms", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--direct", action="store_true", help="insert the history (PostgreSQL)")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "PHALA_SYNC_BENCH_POSTGRES_SERVER", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="phala-sync-bench-report-") as tmp,
        fresh_database(args.db, args.postgres_url) as url,
    ):
        print(f"building {args.runs} daily runs of {args.cvms} CVMs ({args.db})", flush=True)
        since = START.date().isoformat()
        if args.direct:
            from bench import bi_views

            began = time.perf_counter()
            bi_views.build(url, args.cvms, args.runs - 1, 0.01, args.seed)
            built, since = time.perf_counter() - began, bi_views.START.date().isoformat()
        else:
            built = build(url, args.cvms, args.runs, args.seed)
        load = os.getloadavg()[0]
        wall, rss = report_command(url, Path(tmp) / "fleet-report.html", since)
        artifact = artifact_seconds(url)
        size = (Path(tmp) / "fleet-report.html").stat().st_size
    print(
        f"\n| CVMs | runs | db | history built | report | report peak RSS | page | fleet artifact"
        f" | load |\n|---|---|---|---|---|---|---|---|---|\n"
        f"| {args.cvms:,} | {args.runs} | {args.db} | {built:.0f} s | {wall:.1f} s | {rss:.0f} MiB"
        f" | {size / 1024:.0f} KiB | {artifact:.3f} s | {load:.1f} |"
    )


if __name__ == "__main__":
    main()
