"""Concurrency: two runs started together against one database, with the real fetch stage.

One of them waits for the other (``lock_timeout``) or exits at once with a clear
:class:`~sync.errors.RunLockedError`; either way the ledger and the history are those of runs made
one after the other. The simulator adds latency so that the two runs really overlap.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, select

from models import Cvm, table_of
from sync.errors import RunLockedError
from sync.run import RunSummary
from tests.reliability.conftest import Harness, new_harness
from tests.reliability.oracle import assert_fleet_stored, count, observe, recorded_events, runs


def together(n: int, fn: Callable[[int], RunSummary]) -> list[RunSummary | BaseException]:
    """Call ``fn(i)`` for i in range(n) in threads released at the same moment."""
    barrier = threading.Barrier(n)
    results: list[RunSummary | BaseException] = [RuntimeError("did not run")] * n

    def one(i: int) -> None:
        barrier.wait(10)
        try:
            results[i] = fn(i)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_the_second_run_exits_at_once_with_a_clear_error(harness: Harness) -> None:
    h = harness
    h.baseline_and_step()
    h.faults.set(["latency:ms=60"])  # a run takes a few hundred ms: the two overlap
    ledger = runs(h.engine)
    results = together(2, lambda i: h.run(lock_timeout=0))
    done = [r for r in results if isinstance(r, RunSummary)]
    refused = [r for r in results if isinstance(r, RunLockedError)]
    assert (len(done), len(refused)) == (1, 1), results
    message = str(refused[0])
    assert "holds the run lock" in message
    assert "--lock-timeout" in message
    # The refused run left no trace: one more ledger row, the one of the run that went ahead.
    assert [r["id"] for r in runs(h.engine)] == [*(r["id"] for r in ledger), done[0].run_id]
    h.expect(done[0])
    assert_fleet_stored(h.engine, h.fleet)


@pytest.mark.parametrize("n", [2, 3])
def test_waiting_runs_go_one_after_the_other(harness: Harness, n: int) -> None:
    h = harness
    h.baseline_and_step()
    h.faults.set(["latency:ms=20"])
    history_before = count(h.engine, "cvm_history")
    results = together(n, lambda i: h.run(lock_timeout=60))
    summaries = sorted((r for r in results if isinstance(r, RunSummary)), key=lambda s: s.run_id)
    assert len(summaries) == n, results
    rows = runs(h.engine)[-n:]
    assert [r["status"] for r in rows] == ["succeeded"] * n
    for earlier, later in itertools.pairwise(rows):
        assert earlier["finished_at"] <= later["started_at"]  # never two at once
    # Exactly what sequential runs record: the first records the step, the others nothing.
    events = h.expect(summaries[0])
    assert len(events) >= 20
    for later_run in summaries[1:]:
        assert h.expect(later_run) == []
        assert later_run.counts["cvm"]["unchanged"] == h.fleet.cvm_count
    assert recorded_events(h.engine, [s.run_id for s in summaries[1:]]) == []
    assert count(h.engine, "cvm_history") == history_before + sum(
        1 for e in events if e[0] == "cvm" and e[2] != "deleted"
    )
    assert_fleet_stored(h.engine, h.fleet)


def test_two_targets_fetch_side_by_side_and_apply_one_at_a_time(engine: Engine) -> None:
    """Runs of different targets overlap (their fetches), and each stores exactly its fleet."""
    fleets = [new_harness(engine, size=80, seed=seed) for seed in (11, 12)]
    for h in fleets:
        h.faults.set(["latency:ms=40"])
    targets = ("alpha", "beta")

    def run(i: int) -> RunSummary:
        return fleets[i].run(target=targets[i], lock_timeout=0)

    results = together(2, run)
    assert all(isinstance(r, RunSummary) and r.status == "succeeded" for r in results), results
    a, b = (r for r in results if isinstance(r, RunSummary))
    # The target lock did not serialize them: each started before the other finished.
    assert a.started_at < b.finished_at
    assert b.started_at < a.finished_at
    cvms = table_of(Cvm)
    with engine.connect() as conn:
        for h, target in zip(fleets, targets, strict=True):
            stored = set(
                conn.execute(select(cvms.c.vm_uuid).where(cvms.c.target == target)).scalars()
            )
            assert stored == set(observe(h.fleet)["cvm"])
