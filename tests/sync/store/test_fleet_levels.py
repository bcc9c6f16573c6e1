"""``fleet_levels`` as runs keep it equals ``fleet_levels`` rebuilt from the whole history.

The rebuild is migration 0005's backfill (what an upgraded database starts from); the daily
views read the table, so both must give the same ``fleet_daily`` and ``fleet_daily_usage``,
after evolving fleets with failed runs and version switches, and after targets that see the same
CVMs pass ownership between them and one is retired. Both databases.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, inspect, text

from sync.clock import SteppingClock, use_clock
from sync.store.migrate import downgrade, revision_module, upgrade
from sync.targets import retire_target
from tests.reliability.conftest import new_harness
from tests.sync.store.test_views import START, close, evolve_and_sync

_KEY = ("day", "target", "status", "region", "workspace_id", "instance_type")


def _rows(conn: Connection, view: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    out = {}
    for r in conn.execute(text(f"SELECT * FROM {view}")):
        row = dict(r._mapping)
        key = tuple(str(row[k]) for k in _KEY)
        assert key not in out, f"{view}: two rows for {key}"
        out[key] = {k: v for k, v in row.items() if k not in _KEY}
    return out


def assert_levels_equal_rebuilt(engine: Engine) -> int:
    """The views from the kept levels equal the views from levels rebuilt from the history
    (rolled back afterwards). Returns how many ``fleet_daily`` rows were compared."""
    with engine.connect() as conn, conn.begin() as tx:
        kept = {v: _rows(conn, v) for v in ("fleet_daily", "fleet_daily_usage")}
        conn.execute(text("DELETE FROM fleet_levels"))
        for statement in revision_module("0005").backfill_sql(engine.dialect.name):
            conn.execute(text(statement))
        rebuilt = {v: _rows(conn, v) for v in ("fleet_daily", "fleet_daily_usage")}
        tx.rollback()
    for view in kept:
        assert set(kept[view]) == set(rebuilt[view]), view
        for key, row in kept[view].items():
            other = rebuilt[view][key]
            assert all(close(row[c], other[c]) for c in row), (view, key, row, other)
    return len(kept["fleet_daily"])


def level_rows(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text("SELECT * FROM fleet_levels ORDER BY 1"))]


@pytest.fixture
def stepping() -> Iterator[SteppingClock]:
    clock = SteppingClock(START, 1.0)
    with use_clock(clock):
        yield clock


@pytest.mark.parametrize("seed", [3, 41])
def test_runs_keep_the_levels_the_history_defines(
    engine: Engine, stepping: SteppingClock, seed: int
) -> None:
    h = new_harness(engine, size=40, seed=seed, page_size=20, max_attempts=1)
    tally = evolve_and_sync(h, stepping, seed, runs=12)
    assert tally["succeeded"] >= 6
    assert assert_levels_equal_rebuilt(engine) > 30


def test_an_unchanged_resync_leaves_the_levels_alone(
    engine: Engine, stepping: SteppingClock
) -> None:
    h = new_harness(engine, size=60, seed=2)
    h.run()
    stepping.jump(START + timedelta(days=1))
    h.fleet.evolve({"delete": 3, "resize": 3, "create": 3, "restart": 3}, seed=4)
    h.run()
    before = level_rows(engine)
    assert before
    stepping.jump(START + timedelta(days=2))
    summary = h.run()
    assert summary.status == "succeeded"
    assert level_rows(engine) == before
    assert summary.timings["levels"] >= 0


def test_targets_passing_cvms_between_them_keep_their_levels(
    engine: Engine, stepping: SteppingClock
) -> None:
    """alpha and beta see one fleet; changes recorded by either, then alpha is retired."""
    h = new_harness(engine, size=80, seed=9)
    h.run(target="alpha")
    stepping.jump(START + timedelta(days=1, hours=3))
    h.run(target="beta")
    for day, target in ((2, "beta"), (3, "alpha"), (5, "beta")):
        stepping.jump(START + timedelta(days=day, hours=5))
        h.fleet.evolve({"create": 4, "delete": 5, "resize": 3, "move": 2}, seed=day)
        assert h.run(target=target).status == "succeeded"
    stepping.jump(START + timedelta(days=6))
    retire_target(engine, h.settings(), "alpha")
    stepping.jump(START + timedelta(days=7))
    assert h.run(target="beta").status == "succeeded"  # the day's figure follows the owner
    assert assert_levels_equal_rebuilt(engine) > 0
    with engine.connect() as conn:
        last = dict(
            conn.execute(
                text(
                    "SELECT target, SUM(cvms) FROM fleet_daily f WHERE day = "
                    "(SELECT MAX(day) FROM fleet_daily g WHERE g.target = f.target) GROUP BY target"
                )
            ).all()
        )
    assert last == {"alpha": 0, "beta": len(h.fleet.cvms())}


@pytest.mark.slow
@pytest.mark.migration_chain
def test_the_upgrade_to_0005_keeps_every_figure_of_fleet_daily(
    engine: Engine, stepping: SteppingClock
) -> None:
    """0003's ``fleet_daily`` read the history live; 0005's reads the backfilled levels."""
    h = new_harness(engine, size=40, seed=17, page_size=20, max_attempts=1)
    evolve_and_sync(h, stepping, 17, runs=10)
    downgrade(engine, "0004")
    assert "fleet_levels" not in inspect(engine).get_table_names()
    with engine.connect() as conn:
        live = _rows(conn, "fleet_daily")
    upgrade(engine)
    with engine.connect() as conn:
        kept = _rows(conn, "fleet_daily")
    assert len(live) > 30
    assert set(kept) == set(live)
    for key, row in live.items():
        assert all(close(row[c], kept[key][c]) for c in row), (key, row, kept[key])
