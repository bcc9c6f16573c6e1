"""The reliability suite's harness: a simulated fleet, runs against it, and the oracle beside it.

Every scenario runs on SQLite and on PostgreSQL (the ``engine`` fixture). The simulator is served
in process (:class:`~simulator.SimulatorTransport`) unless a scenario needs real sockets
(timeouts, another process). Retries are fast (10-50 ms backoff) so that faults cost little time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import Engine
from starlette.applications import Starlette

from simulator import (
    Faults,
    Fleet,
    SimulatorServer,
    SimulatorTransport,
    create_app,
    simulator_of,
)
from sync.run import RunSummary, run_sync
from sync.settings import Settings
from tests.reliability.oracle import (
    INVENTORY_TABLES,
    Event,
    Model,
    Observation,
    assert_consistent,
    assert_matches_model,
    dump,
    observe,
    recorded_events,
    runs,
)

#: Shaped like a real key (``phak_...``); the security tests bring keys of their own.
API_KEY = "phak_reliability_3f9c1e7a5b2d4068a1c3e5f7b9d0a2c4"
ADMIN_TOKEN = "reliability-admin-5d1e9a"
TARGET = "reliability"
BASE_URL = "http://simulator.invalid/api/v1"
FLEET_SIZE = 200
FLEET_SEED = 41
PAGE_SIZE = 20
#: A step of every kind of change, applied between the baseline run and the run under test.
EVOLVE = {
    "create": 6,
    "delete": 5,
    "restart": 4,
    "resize": 3,
    "move": 3,
    "rename": 3,
    "rename_workspace": 1,
    "restore": 0,
}
FAST_RETRIES: dict[str, Any] = {
    "max_attempts": 4,
    "retry_budget": 5.0,
    "backoff_base": 0.01,
    "backoff_max": 0.05,
    "timeout": 5.0,
}


def make_settings(database_url: str, **overrides: Any) -> Settings:
    """Settings for a run against the simulator; no ``.env`` file and no environment takes part."""
    values: dict[str, Any] = {
        "api_key": SecretStr(API_KEY),
        "base_url": BASE_URL,
        "api_version": "2026-01-21",
        "database_url": database_url,
        "target": TARGET,
        "page_size": PAGE_SIZE,
        "concurrency": 4,
        "validation_policy": "quarantine",
        # Wait for the run lock rather than fail: the PostgreSQL session of a killed run may take
        # a moment to end. Tests of the lock itself set their own timeout.
        "lock_timeout": 60.0,
        **FAST_RETRIES,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@dataclass
class Harness:
    """One database, one simulated fleet served in process, and the model of what must be stored."""

    engine: Engine
    fleet: Fleet
    app: Starlette
    model: Model = field(default_factory=Model)
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def faults(self) -> Faults:
        return simulator_of(self.app).faults

    def settings(self, **overrides: Any) -> Settings:
        url = self.engine.url.render_as_string(hide_password=False)
        return make_settings(url, **{**self.defaults, **overrides})

    def transport(self) -> httpx.AsyncBaseTransport:
        return SimulatorTransport(self.app)

    def run(self, **overrides: Any) -> RunSummary:
        """One run of ``run_sync`` against the simulator (raises the run's error)."""
        return run_sync(self.engine, self.settings(**overrides), transport=self.transport())

    def fail(self, error: type[BaseException], **overrides: Any) -> BaseException:
        """A run that must fail with ``error``; returns the exception."""
        with pytest.raises(error) as info:
            self.run(**overrides)
        return info.value

    def expect(
        self,
        summary: RunSummary | int,
        *,
        version: str = "2026-01-21",
        held: Mapping[str, Sequence[str]] | None = None,
        complete: Mapping[str, bool] | None = None,
        obs: Observation | None = None,
    ) -> list[Event]:
        """The run recorded exactly the model's events and the database equals the model.

        ``summary``: the run's summary, or the id of a run another process made.
        ``obs``: what the run saw, when it is not the fleet as it is now.
        """
        if isinstance(summary, RunSummary):
            assert summary.status == "succeeded"
            run_id = summary.run_id
        else:  # a run of another process: its ledger row
            run_id = summary
            assert {r["id"]: r["status"] for r in runs(self.engine)}[run_id] == "succeeded"
        seen = observe(self.fleet) if obs is None else obs
        expected = self.model.sync(seen, version, held=held, complete=complete)
        assert recorded_events(self.engine, [run_id]) == expected
        assert_matches_model(self.engine, self.model)
        assert_consistent(self.engine)
        return expected

    def baseline(self, **overrides: Any) -> RunSummary:
        """A clean run that the model follows (the state the scenario starts from)."""
        summary = self.run(**overrides)
        self.expect(summary, version=str(overrides.get("api_version", "2026-01-21")))
        return summary

    def baseline_and_step(self) -> None:
        """The usual start of a scenario: a baseline run, then one step of every kind of change
        (:data:`EVOLVE`, seed 3) for the run under test to record."""
        self.baseline()
        self.fleet.evolve(EVOLVE, seed=3)

    def clean_run(self, **overrides: Any) -> list[Event]:
        """Faults off, then a run that records exactly what the model expects: what the runs
        under faults left to record. Returns its events."""
        self.faults.set([])
        return self.expect(self.run(**overrides))


@dataclass(frozen=True)
class Before:
    """The database before a run that must change nothing but add one failed ledger row."""

    tables: dict[str, list[tuple[Any, ...]]]
    ledger: list[dict[str, Any]]

    @classmethod
    def of(cls, engine: Engine) -> Before:
        return cls(dump(engine, INVENTORY_TABLES), runs(engine))

    def assert_only_a_failed_run_added(self, engine: Engine) -> dict[str, Any]:
        """Every inventory, history and event table is as it was; the ledger gained one failed
        row (returned), and the staging area is empty again."""
        after = dump(engine, INVENTORY_TABLES)
        for name in INVENTORY_TABLES:
            assert after[name] == self.tables[name], f"{name} changed"
        ledger = runs(engine)
        assert ledger[: len(self.ledger)] == self.ledger
        (added,) = ledger[len(self.ledger) :]
        assert added["status"] == "failed"
        assert added["finished_at"] is not None
        assert added["error"]
        assert_consistent(engine)
        return added


def new_harness(
    engine: Engine,
    *,
    size: int = FLEET_SIZE,
    seed: int = FLEET_SEED,
    faults: Sequence[str] = (),
    **defaults: Any,
) -> Harness:
    """A fresh fleet of ``size`` CVMs served in process; ``defaults`` are settings overrides."""
    fleet = Fleet(size, seed=seed)
    app = create_app(fleet, api_key=API_KEY, admin_token=ADMIN_TOKEN, faults=faults)
    return Harness(engine=engine, fleet=fleet, app=app, defaults=defaults)


@pytest.fixture
def harness(engine: Engine) -> Harness:
    """A 200-CVM fleet (seed 41) served in process, over a migrated database."""
    return new_harness(engine)


@pytest.fixture
def served(engine: Engine) -> Iterator[tuple[Harness, SimulatorServer]]:
    """The harness's fleet also served over loopback (timeouts and other processes need it)."""
    h = new_harness(engine)
    with SimulatorServer(app=h.app) as server:
        yield h, server
