"""``bench/run.py --profile DB:SIZE``: a first sync and an unchanged resync under cProfile.

Run in a process of its own (``python bench/profiling.py SPEC_JSON``). Unlike the benchmark, this
calls the pipeline in-process, ``sync.run.run_sync(engine, settings)`` (no CLI, no Prefect flow),
against a simulator in its own process, so that the profile shows the pipeline's functions (they
all run on the main thread: HTTP, parsing, staging and the apply). The top functions by own and
cumulative time are returned. cProfile charges every Python call: use it for shares, not rates.
"""

from __future__ import annotations

import cProfile
import gc
import json
import pstats
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchdb import fresh_database
from pydantic import SecretStr
from sqlalchemy import Engine

from simulator import SimulatorProcess
from sync.run import run_sync
from sync.settings import Settings
from sync.store.engine import make_engine
from sync.store.migrate import upgrade

API_KEY = "bench-api-key"
PAGE_SIZE = 100
CONCURRENCY = 4


def bench_settings(base_url: str, database_url: str) -> Settings:
    return Settings(
        _env_file=None,
        api_key=SecretStr(API_KEY),
        base_url=base_url,
        database_url=database_url,
        target="bench",
        page_size=PAGE_SIZE,
        concurrency=CONCURRENCY,
        lock_timeout=120.0,
    )


@contextmanager
def migrated(kind: str, postgres_url: str) -> Iterator[tuple[str, Engine]]:
    with fresh_database(kind, postgres_url) as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            yield url, engine
        finally:
            engine.dispose()


def profile(db: str, size: int, seed: int, postgres_url: str, top: int) -> dict[str, Any]:
    """A first sync and an unchanged resync under cProfile (HTTP, parsing, staging and apply all
    run on the main thread's event loop).
    """
    out: dict[str, Any] = {"db": db, "size": size, "profiles": {}}
    print(f"[profile {db} {size:,} CVMs] starting the simulator ...", flush=True)
    with (
        SimulatorProcess(api_key=API_KEY, cvms=size, seed=seed, prewarm=True) as proc,
        migrated(db, postgres_url) as (url, engine),
    ):
        settings = bench_settings(proc.base_url, url)
        for name in ("first", "resync_unchanged"):
            profiler = cProfile.Profile()
            gc.collect()
            start = time.perf_counter()
            profiler.enable()
            run_sync(engine, settings)
            profiler.disable()
            wall = time.perf_counter() - start
            stats = pstats.Stats(profiler)
            out["profiles"][name] = {
                "wall_s_under_profiler": round(wall, 2),
                "by_tottime": _top(stats, "tottime", top),
                "by_cumtime": _top(stats, "cumulative", top),
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


def main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    result = profile(spec["db"], spec["size"], spec["seed"], spec["postgres_url"], spec["top"])
    Path(spec["out"]).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
