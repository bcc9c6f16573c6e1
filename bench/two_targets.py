"""Two targets into one PostgreSQL schema: one after the other, then together (issue 13).

``python bench/two_targets.py [--cvms 10000] [--latency-ms 50]``: two simulators (their own
fleets and keys) answer with a fixed latency per request; ``run_sync`` of target ``a`` and of
target ``b`` runs in two processes, first one after the other into a fresh schema, then at the
same time into another. Prints the wall seconds of each mode, each run's seconds and apply time,
and the load average. By hand only; the schemas ``bench_two_serial``/``bench_two_parallel`` of the
PostgreSQL database are dropped and made again.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time
from typing import Any

from sqlalchemy import text

from simulator import SimulatorProcess
from sync.run import run_sync
from sync.settings import Settings
from sync.store.engine import make_engine
from sync.store.migrate import upgrade

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _one(url: str, base_url: str, key: str, target: str, out: Any) -> None:
    start = time.perf_counter()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        api_key=key,
        base_url=base_url,
        database_url=url,
        target=target,
        page_size=100,
        lock_timeout=600,
    )
    summary = run_sync(make_engine(url), settings)
    out.put((target, time.perf_counter() - start, summary.timings.get("apply", 0.0)))


def _fresh_schema(server_url: str, schema: str) -> str:
    with make_engine(server_url).begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{server_url}?options=-csearch_path%3D{schema}"
    upgrade(make_engine(url))
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cvms", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--postgres-url", default=DEFAULT_URL)
    args = parser.parse_args()
    fault = [f"latency:ms={args.latency_ms}"]
    with (
        SimulatorProcess(api_key="phak_a", cvms=args.cvms, seed=1, prewarm=True, faults=fault) as a,
        SimulatorProcess(api_key="phak_b", cvms=args.cvms, seed=2, prewarm=True, faults=fault) as b,
    ):
        for mode in ("serial", "parallel"):
            url = _fresh_schema(args.postgres_url, f"bench_two_{mode}")
            out: Any = mp.Queue()
            runs = [(url, a.base_url, "phak_a", "a", out), (url, b.base_url, "phak_b", "b", out)]
            start = time.perf_counter()
            procs = [mp.Process(target=_one, args=run) for run in runs]
            if mode == "serial":
                for proc in procs:
                    proc.start()
                    proc.join()
            else:
                for proc in procs:
                    proc.start()
                for proc in procs:
                    proc.join()
            wall = time.perf_counter() - start
            results = sorted(out.get() for _ in runs)
            each = "; ".join(f"{t}: {s:.2f} s (apply {ap:.2f} s)" for t, s, ap in results)
            print(f"{mode}: {wall:.2f} s wall; {each}; load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
