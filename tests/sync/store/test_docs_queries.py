"""Every SQL example in docs/schema.md runs on both databases and answers correctly."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, text

from sync.store import queries
from tests.sync.store.builders import bundle, cvm, run_with

DOC = Path(__file__).resolve().parents[3] / "docs" / "schema.md"


def doc_queries() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.S)


def test_docs_have_examples() -> None:
    assert len(doc_queries()) >= 6


def test_every_example_runs(engine: Engine) -> None:
    run_with(engine, [bundle(cvm(i)) for i in range(6)])
    run_with(engine, [bundle(cvm(i, node_id=3) if i == 0 else cvm(i)) for i in range(5)])
    params = {"as_of": datetime.now(UTC), "since": datetime.now(UTC) - timedelta(days=7)}
    results = {}
    with engine.connect() as conn:
        for sql in doc_queries():
            names = set(re.findall(r"(?<!:):(\w+)", sql))
            rows = conn.execute(text(sql), {k: params[k] for k in names}).all()
            results[sql.splitlines()[0]] = rows
    moves = results[
        "-- Every node move of every CVM (history rows whose node differs from the previous row)."
    ]
    assert [(r[0], r[1], r[2]) for r in moves] == [(f"{0:032x}", 1, 3)]
    deleted = results["-- CVMs deleted in the last 7 days, with where they ran."]
    assert [r[0] for r in deleted] == [f"{5:032x}"]
    latest = results["-- What changed in the latest successful run."]
    assert ("cvm", "deleted", 1) in [tuple(r) for r in latest]
    # The views: both runs are on today's UTC day, the second saw 5 CVMs of the 6.
    days = results["-- Fleet size per day (every day of the series)."]
    assert [(r[1], r[2]) for r in days] == [(5, sum(cvm(i).vcpu or 0 for i in range(5)))]
    ages = results["-- How old are the live CVMs (age buckets)."]
    assert sum(r[1] for r in ages) == 5
    runs = results["-- Runs per status and their average duration."]
    assert [(r[0], r[1]) for r in runs] == [("succeeded", 2)]
    hours = results["-- Hours per status of each CVM, over its whole stored history."]
    assert {r[0] for r in hours} == {f"{i:032x}" for i in range(6)}
    cost = results[
        "-- Estimated cost per workspace and day (the group sums; cvm_daily_usage has it per CVM)."
    ]
    assert cost
    assert sum(r[2] for r in cost) > 0


def test_point_in_time_returns_an_earlier_fleet_exactly(engine: Engine) -> None:
    first = run_with(engine, [bundle(cvm(i)) for i in range(4)])
    snapshot = queries.inventory(engine)
    run_with(engine, [bundle(cvm(i, status="stopped")) for i in range(1, 6)])
    assert queries.inventory(engine) != snapshot
    as_of = first.finished_at
    past = queries.inventory(engine, as_of=as_of)
    assert past == snapshot
    assert queries.inventory(engine, as_of=first.started_at - timedelta(seconds=1)) == []
