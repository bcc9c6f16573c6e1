"""A fleet's history for report tests: runs of the simulator's fleet at simulated times, days apart.

The syncs run in process (:func:`sync.run.run_sync` over the simulator's ASGI app, no HTTP and no
Prefect); the run's clock (:mod:`sync.clock`) is moved to each run's time, and the fleet evolves
between runs (some more creates than deletes, restarts, resizes and moves), so every chart has
something to draw.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from simulator import Fleet, SimulatorTransport, create_app
from sync.clock import SteppingClock, use_clock
from sync.run import RunSummary, run_sync
from sync.settings import Settings

KEY = "phak_report_test_key"
TARGET = "reported"
START = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
STEP = {"create": 6, "delete": 2, "restart": 3, "resize": 2, "move": 2, "rename_workspace": 1}


def build_history(
    engine: Engine,
    *,
    runs: int = 11,
    days_apart: int = 3,
    cvms: int = 120,
    start: datetime = START,
    seed: int = 5,
) -> list[RunSummary]:
    """``runs`` successful syncs of target :data:`TARGET`, ``days_apart`` days apart."""
    fleet = Fleet(cvms, seed=seed)
    app = create_app(fleet, api_key=KEY)
    settings = Settings(
        api_key=KEY,
        base_url="http://simulator/api/v1",
        database_url=str(engine.url),
        target=TARGET,
        page_size=50,
        max_attempts=2,
        retry_budget=2,
        backoff_base=0.01,
    )
    clock = SteppingClock(start)
    summaries = []
    with use_clock(clock):
        for i in range(runs):
            if i:
                fleet.evolve(dict(STEP), seed=seed + i)
                clock.jump(start + timedelta(days=days_apart * i))
            summaries.append(run_sync(engine, settings, transport=SimulatorTransport(app)))
    return summaries
