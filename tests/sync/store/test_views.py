"""The BI views (migrations 0003, 0005) against an independent computation, on SQLite and PG.

A simulated fleet is evolved over 18+ runs at injected times spread over more than 30 days
(creations, deletions, restores, resizes, restarts, moves), with failed runs and API version
switches among them; every figure of every view must equal what :mod:`.views_oracle` computes
from the history tables and the ledger.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, text

from sync.clock import SteppingClock, use_clock
from sync.errors import RetriableApiError
from sync.store.views import VIEW_NAMES
from tests.conftest import POSTGRES_TWIN, shared_engine
from tests.reliability.conftest import Harness, new_harness
from tests.sync.store.views_oracle import History, rows_of

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
LEGACY = "2025-10-28"
MIX = ("create", "delete", "restore", "resize", "restart", "move", "rename")


def view(engine: Engine, name: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(f"SELECT * FROM {name}"))]


def as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def num(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def close(a: Any, b: Any, tolerance: str = "0.000002") -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(Decimal(str(a)) - Decimal(str(b))) <= Decimal(tolerance)


def evolve_and_sync(h: Harness, clock: SteppingClock, seed: int, runs: int) -> dict[str, int]:
    """``runs`` runs, 1 to 3 days apart at varying hours; between them the fleet changes; some
    runs fail (a persistent HTTP 500) and some use the legacy version. Returns what happened."""
    rng = random.Random(seed)
    at = START
    tally = {"succeeded": 0, "failed": 0, "legacy": 0}
    for i in range(runs):
        at = datetime.combine(
            at.date() + timedelta(days=rng.choice((1, 2, 2, 3))), datetime.min.time(), UTC
        ) + timedelta(hours=rng.randint(1, 22), minutes=rng.randint(0, 59))
        clock.jump(at)
        if i:
            h.fleet.evolve({kind: rng.randint(0, 3) for kind in MIX}, seed=rng.randint(0, 9999))
        version = LEGACY if i and rng.random() < 0.2 else "2026-01-21"
        if i and rng.random() < 0.15:
            h.faults.set(["500:endpoint=cvms,page=2"])
            h.fail(RetriableApiError, api_version=version)
            h.faults.set([])
            tally["failed"] += 1
            continue
        assert h.run(api_version=version).status == "succeeded"
        tally["succeeded"] += 1
        tally["legacy"] += version == LEGACY
    return tally


@pytest.fixture(scope="session")
def evolved_databases(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[tuple[int, str], Engine]]:
    """The evolved databases this process built, by seed and kind, dropped at the session's end.

    Session-wide, not module-wide: an xdist worker may run these tests apart from each other,
    and a module fixture would be built again each time.
    """
    with contextlib.ExitStack() as stack:
        built: dict[tuple[int, str], Engine] = {}

        def build(seed: int, kind: str) -> Engine:
            engine = stack.enter_context(shared_engine(kind, request, tmp_path_factory))
            h = new_harness(engine, size=40, seed=seed, page_size=20, max_attempts=1)
            clock = SteppingClock(START, 1.0)
            with use_clock(clock):
                tally = evolve_and_sync(h, clock, seed, runs=18)
            assert tally["succeeded"] >= 10
            spans = History(engine).spans.values()
            assert all((s.last_day - s.first_day).days >= 30 for s in spans)
            return engine

        request.config.stash[_BUILD] = build
        yield built


_BUILD = pytest.StashKey[Any]()


@pytest.fixture(
    params=[
        # One xdist worker builds each history once and runs every test that reads it.
        pytest.param(
            (seed, kind),
            id=f"{seed}-{kind}",
            marks=[pytest.mark.xdist_group(f"evolved-{seed}-{kind}"), *marks],
        )
        for seed in (7, 23)
        for kind, marks in (("sqlite", []), ("postgresql", [*POSTGRES_TWIN]))
    ],
)
def evolved(
    request: pytest.FixtureRequest, evolved_databases: dict[tuple[int, str], Engine]
) -> Engine:
    """A database evolved over 18 runs, built once per seed and database for every test that
    reads it (they only read)."""
    key: tuple[int, str] = request.param
    if key not in evolved_databases:
        evolved_databases[key] = request.config.stash[_BUILD](*key)
    return evolved_databases[key]


def test_every_view_exists_with_its_columns(engine: Engine) -> None:
    with engine.connect() as conn:
        for name in VIEW_NAMES:
            assert conn.execute(text(f"SELECT * FROM {name}")).keys()


def test_fleet_daily_equals_the_states_at_the_end_of_each_day(evolved: Engine) -> None:
    history = History(evolved)
    expected = history.fleet_daily()
    got = {}
    for r in view(evolved, "fleet_daily"):
        key = (as_date(r["day"]), r["target"], r["status"], r["region"], r["workspace_id"],
               r["instance_type"])  # fmt: skip
        assert key not in got, f"two rows for {key}"
        got[key] = (r["cvms"], r["vcpus"], r["memory_gb"], r["disk_gb"], r["gpus"])
    assert set(got) == set(expected)
    for key, (cvms, vcpus, memory_gb, disk_gb, gpus) in expected.items():
        g = got[key]
        assert (g[0], g[1], g[3], g[4]) == (cvms, vcpus, disk_gb, gpus), key
        assert close(g[2], memory_gb), key
    # No gaps: every day of every target's span is there, and deletions show in the counts.
    for target, span in history.spans.items():
        days = {k[0] for k in got if k[1] == target}
        assert days == set(span.days())
    per_day = [sum(v[0] for k, v in got.items() if k[0] == d) for d in sorted({k[0] for k in got})]
    assert len(set(per_day)) > 1


def test_cvm_daily_usage_equals_hours_and_cost_per_day(evolved: Engine) -> None:
    expected = History(evolved).daily_usage()
    got = {
        (as_date(r["day"]), r["target"], r["vm_uuid"]): r for r in view(evolved, "cvm_daily_usage")
    }
    assert set(got) == set(expected)
    priced = 0
    for key, e in expected.items():
        g = got[key]
        assert (g["workspace_id"], g["region"], g["instance_type"]) == (
            e["workspace_id"], e["region"], e["instance_type"]), key  # fmt: skip
        assert close(g["existing_hours"], e["existing_hours"]), key
        assert close(g["running_hours"], e["running_hours"]), key
        assert close(g["compute_cost_usd"], e["compute_cost_usd"]), key
        assert close(g["storage_cost_usd"], e["storage_cost_usd"]), key
        priced += g["compute_cost_usd"] is not None and e["running_hours"] > 0
    assert priced, "no compute cost was ever known: the test would not see a wrong one"
    assert any(g["compute_cost_usd"] is None for g in got.values())  # unknown stays NULL


def test_fleet_daily_usage_sums_each_states_hours_and_cost_by_its_group(evolved: Engine) -> None:
    expected = History(evolved).fleet_usage()
    got = {}
    for r in view(evolved, "fleet_daily_usage"):
        key = (as_date(r["day"]), r["target"], r["status"], r["region"], r["workspace_id"],
               r["instance_type"])  # fmt: skip
        assert key not in got, f"two rows for {key}"
        got[key] = r
    assert set(got) == set(expected)
    for key, e in expected.items():
        g = got[key]
        for name in ("existing_hours", "running_hours", "compute_cost_usd", "storage_cost_usd"):
            assert close(g[name], e[name], "0.00001"), (key, name, g[name], e[name])
    assert any(g["compute_cost_usd"] is not None and g["running_hours"] for g in got.values())
    assert any(g["compute_cost_usd"] is None for g in got.values())  # unknown stays NULL
    # The groups' hours add up to the CVMs' (cvm_daily_usage), day by day.
    per_cvm: dict[date, Decimal] = {}
    for r in view(evolved, "cvm_daily_usage"):
        day = as_date(r["day"])
        per_cvm[day] = per_cvm.get(day, Decimal(0)) + Decimal(str(r["existing_hours"]))
    for day, hours in per_cvm.items():
        total = sum(Decimal(str(g["existing_hours"])) for k, g in got.items() if k[0] == day)
        assert close(total, hours, "0.0001"), day


def test_cvm_states_are_the_history_rows_with_hours_and_change_type(evolved: Engine) -> None:
    history = History(evolved)
    events = {
        (e["run_id"], e["entity_id"]): e["change_type"]
        for e in rows_of(evolved, "change_events")
        if e["entity_type"] == "cvm"
    }
    types = history.change_types()
    now = datetime.now(UTC)
    got = {r["history_id"]: r for r in view(evolved, "cvm_states")}
    assert set(got) == {h["history_id"] for h in history.states}
    for h in history.states:
        g = got[h["history_id"]]
        assert g["change_type"] == types[h["history_id"]] == events[(h["run_id"], h["vm_uuid"])]
        for name in ("vm_uuid", "target", "status", "vcpu", "disk_gb", "workspace_id", "run_id"):
            assert g[name] == h[name], name
        assert g["region"] == history.regions.get(h["node_id"])
        end = h["valid_to"] or now
        hours = Decimal((end - h["valid_from"]) // timedelta(microseconds=1)) / 3_600_000_000
        assert close(g["hours"], hours, "0.000002" if h["valid_to"] else "0.01")
        assert close(g["compute_billing_price"], h["compute_billing_price"])


def test_current_cvms_and_run_log(evolved: Engine) -> None:
    cvms = {c["vm_uuid"]: c for c in rows_of(evolved, "cvms") if c["deleted_at"] is None}
    runs = rows_of(evolved, "sync_runs")
    got = {r["vm_uuid"]: r for r in view(evolved, "current_cvms")}
    assert set(got) == set(cvms)
    complete = [r for r in runs if r["status"] == "succeeded" and r["listing_complete"]]
    for key, c in cvms.items():
        g = got[key]
        assert (g["status"], g["vcpu"], g["disk_gb"]) == (c["status"], c["vcpu"], c["disk_gb"])
        assert close(g["memory_gb"], Decimal(c["memory_mb"]) / 1024)
        seen = max([r["finished_at"] for r in complete if r["target"] == c["target"]])
        assert str(g["last_seen_at"])[:19].replace("T", " ") == str(
            max(seen, c["last_seen_at"]).replace(tzinfo=None))[:19]  # fmt: skip
    log = {r["run_id"]: r for r in view(evolved, "run_log")}
    assert set(log) == {r["id"] for r in runs}
    assert {r["status"] for r in log.values()} == {"succeeded", "failed"}
    for r in runs:
        duration = (r["finished_at"] - r["started_at"]).total_seconds()
        assert close(log[r["id"]]["duration_seconds"], duration, "0.001")


def figures(engine: Engine, last_day: date) -> dict[str, Any]:
    """Every view's figures that a later run on the same day leaves alone."""
    usage = [r for r in view(engine, "cvm_daily_usage") if as_date(r["day"]) < last_day]
    states = [{k: v for k, v in r.items() if k != "hours"} for r in view(engine, "cvm_states")]
    current = [
        {k: v for k, v in r.items() if k not in ("age_days", "last_seen_at")}
        for r in view(engine, "current_cvms")
    ]
    key = lambda r: str(sorted(r.items()))  # noqa: E731
    return {
        "fleet_daily": sorted(view(engine, "fleet_daily"), key=key),
        "fleet_daily_usage": sorted(
            (r for r in view(engine, "fleet_daily_usage") if as_date(r["day"]) < last_day),
            key=key,
        ),
        "cvm_daily_usage": sorted(usage, key=key),
        "cvm_states": sorted(states, key=key),
        "current_cvms": sorted(current, key=key),
    }


@pytest.mark.parametrize("switch", [(LEGACY, "2026-01-21"), ("2026-01-21", LEGACY)])
def test_a_version_switch_changes_no_figure(engine: Engine, switch: tuple[str, str]) -> None:
    h = new_harness(engine, size=40, seed=5)
    clock = SteppingClock(START, 1.0)
    first, second = switch
    with use_clock(clock):
        h.run(api_version="2026-01-21")
        clock.jump(START + timedelta(days=2))
        h.fleet.evolve({"delete": 2, "resize": 2, "create": 2, "restart": 2}, seed=2)
        h.run(api_version="2026-01-21")
        clock.jump(START + timedelta(days=5))
        h.run(api_version=first)
        before = figures(engine, (START + timedelta(days=5)).date())
        clock.jump(START + timedelta(days=5, hours=2))
        summary = h.run(api_version=second)
    assert summary.status == "succeeded"
    assert sum(summary.counts["cvm"][k] for k in ("created", "updated", "deleted", "restored")) == 0
    assert figures(engine, (START + timedelta(days=5)).date()) == before
