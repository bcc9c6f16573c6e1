"""``phala-sync serve`` runs its schedule on its own, with and without ``PREFECT_API_URL``.

No run is triggered by hand: ``serve --interval 5`` against the simulator and PostgreSQL, either
with no ``PREFECT_API_URL`` (its own local server with a scheduler, in a fresh ``PREFECT_HOME``) or
pointed at a separate ``prefect server start``. While the runs come, the fleet changes between
them (the simulator's admin ``evolve``), and each run's change events must be the simulator's
ground truth for the steps made before it. Then a SIGTERM must end ``serve`` within 10 s with no
process left, and no run half-applied. Without ``PREFECT_API_URL``, a second ``serve`` in the same
``PREFECT_HOME`` finds its deployment and history again, and closes the interrupted run; a
``kill -9`` of it takes its server down at once.

The clock of the 4 runs starts when ``serve`` says it serves: the local server's first start
(building its database) takes from 15 s on an idle 2-core machine to minutes on a loaded one, and
is bounded separately (:data:`STARTUP`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, Row, select
from sqlalchemy.exc import ProgrammingError

from models import SyncRun
from simulator import SimulatorServer
from simulator.admin import AdminClient
from sync.store import queries
from sync.store.engine import make_engine
from tests.children import PHALA_SYNC, base_env, marked, start, stop
from tests.flow_fixtures import ADMIN_TOKEN, API_KEY
from tests.reliability.oracle import canon_changes, recorded_events

pytestmark = [
    pytest.mark.prefect,
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.subprocess,
    pytest.mark.alone,
    pytest.mark.xdist_group("prefect"),
]

TARGET = "soak"
RUNS = 4  # the numbers: at least 4 runs succeed on their own within 75 s
WINDOW = 75.0
STOP = 10.0  # a SIGTERM ends serve within 10 s
#: After a kill -9 of serve, a run's process still starting (before its flow body, which has the
#: kernel kill it with serve) ends on its own once it finds serve and its server gone.
ORPHAN = 120.0
STARTUP = 300.0  # serve's start until it serves (a loaded machine: see the module docstring)
SERVING = "Your deployments are being served"
MARKER = "PHALA_SERVE_TEST"
TYPES = ("cvm", "workspace")  # the ground truth's entities (see test_change_tracking)

Truth = tuple[str, str, str, dict[str, Any] | None]


@dataclass
class Step:
    """One evolve step made between runs: its index and when the call began and returned."""

    index: int
    began: datetime
    done: datetime


@dataclass
class Served:
    """A ``serve`` process and what it left in its log."""

    proc: subprocess.Popen[str]
    log: Path
    marker: str
    steps: list[Step] = field(default_factory=list)

    def text(self) -> str:
        return self.log.read_text()

    def serve_pid(self) -> int:
        """The pid of ``phala-sync serve`` itself (``proc`` is the ``timeout`` around it)."""
        for pid, cmd in marked(MARKER, self.marker).items():
            if " serve --interval" in cmd and not cmd.startswith("timeout"):
                with contextlib.suppress(OSError):
                    if int(Path(f"/proc/{pid}/stat").read_text().split()[3]) == self.proc.pid:
                        return pid
        raise AssertionError(f"no serve process under {self.proc.pid}: {self.text()}")


def _now() -> datetime:
    return datetime.now(UTC)


def _runs(engine: Engine) -> list[Row[Any]]:
    """The target's ledger rows (``sync_runs``), oldest first; none before the schema exists."""
    runs = SyncRun.__table__
    with engine.connect() as conn:
        try:
            return list(conn.execute(select(runs).order_by(runs.c.id)).all())
        except ProgrammingError:  # no schema yet: the first run creates it
            return []


def _serve(tmp_path: Path, name: str, env: dict[str, str], marker: str) -> Served:
    log = tmp_path / f"{name}.log"
    argv = [PHALA_SYNC, "serve", "--interval", "5", "--target", TARGET]
    with log.open("w") as out:
        proc = start(argv, seconds=900, log=out, env={**env, MARKER: marker}, cwd=tmp_path)
    served = Served(proc, log, marker)
    deadline = time.monotonic() + STARTUP
    while SERVING not in served.text():
        assert proc.poll() is None, served.text()
        assert time.monotonic() < deadline, f"not serving after {STARTUP:g} s: {served.text()}"
        time.sleep(0.3)
    return served


def _run_and_evolve(served: Served, engine: Engine, admin: AdminClient) -> list[Row[Any]]:
    """Watch the runs for :data:`WINDOW` s; after each succeeded one, change the fleet once."""
    deadline = time.monotonic() + WINDOW
    evolved_after: set[int] = set()
    while True:
        runs = _runs(engine)
        failed = [(r.id, r.error) for r in runs if r.status == "failed"]
        assert not failed, (failed, served.text())
        done = [r for r in runs if r.status == "succeeded"]
        if len(done) >= RUNS:
            return runs
        assert time.monotonic() < deadline, (
            f"{len(done)} runs succeeded in {WINDOW:g} s: {[(r.id, r.status) for r in runs]}\n"
            + served.text()
        )
        assert served.proc.poll() is None, served.text()
        if done and done[-1].id not in evolved_after and all(r.status != "running" for r in runs):
            began = _now()
            step = admin.evolve(seed=len(served.steps) + 1, total=8)
            served.steps.append(Step(step["step"], began, _now()))
            evolved_after.add(done[-1].id)
        time.sleep(0.2)


def _truth(admin: AdminClient, steps: list[Step]) -> list[Truth]:
    out: list[Truth] = []
    for step in steps:
        (changes,) = admin.changes(since=step.index)[:1]
        out += [
            (c["entity_type"], c["entity_id"], c["change_type"],
             canon_changes(c["entity_type"], c["fields"]) if "fields" in c else None)
            for c in changes
            if c["entity_type"] in TYPES
        ]  # fmt: skip
    return sorted(out, key=_order)


def _order(t: Truth) -> tuple[str, str, str, bytes]:
    return (t[0], t[1], t[2], orjson.dumps(t[3], option=orjson.OPT_SORT_KEYS))


def _recorded(engine: Engine, run_id: int) -> list[Truth]:
    out: list[Truth] = [
        (t, eid, change, changes if change == "updated" else None)
        for t, eid, change, changes in recorded_events(engine, [run_id])
        if t in TYPES
    ]
    return sorted(out, key=_order)


def _assert_events_match_steps(
    engine: Engine, admin: AdminClient, runs: list[Row[Any]], steps: list[Step]
) -> None:
    """Each succeeded run after the first recorded exactly the steps made since the one before.

    A step is judged only if no run was in progress while it was made (the test evolves only
    between runs; a run that opened its ledger row during the evolve call fails the test here).
    """
    done = [r for r in runs if r.status == "succeeded"]
    for step in steps:
        for run in runs:
            finished = run.finished_at or _now()
            assert not (run.started_at < step.done and finished > step.began), (
                f"run {run.id} overlapped evolve step {step.index}: the comparison is void"
            )
    assert steps, "no evolve step was made between runs"
    for before, run in itertools.pairwise(done):
        made = [s for s in steps if before.started_at < s.began and s.done < run.started_at]
        assert _recorded(engine, run.id) == _truth(admin, made), (run.id, [s.index for s in made])


def _sigterm(served: Served, engine: Engine) -> None:
    """SIGTERM ``serve`` while a run is in progress if one comes; it must end within 10 s."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and all(r.status != "running" for r in _runs(engine)):
        time.sleep(0.1)
    pid = served.serve_pid()
    os.kill(pid, signal.SIGTERM)
    sent = time.monotonic()
    while marked(MARKER, served.marker) and time.monotonic() - sent < STOP:
        time.sleep(0.1)
    left = {p: c for p, c in marked(MARKER, served.marker).items() if p != served.proc.pid}
    assert not left, (f"still running {STOP:g} s after SIGTERM", left, served.text())
    served.proc.wait(timeout=10)  # the `timeout` wrapper, once serve is gone
    assert served.proc.returncode == 0, served.text()


def _sigkill(served: Served) -> None:
    """``kill -9`` of serve: its server and a run in progress die with it at once."""
    os.kill(served.serve_pid(), signal.SIGKILL)
    killed = time.monotonic()
    while any("uvicorn" in cmd for cmd in marked(MARKER, served.marker).values()):
        assert time.monotonic() - killed < STOP, ("the server outlived serve", served.text())
        time.sleep(0.1)
    while left := {p: c for p, c in marked(MARKER, served.marker).items() if p != served.proc.pid}:
        assert time.monotonic() - killed < ORPHAN, (left, served.text())
        time.sleep(0.2)


def _fleet_ids(admin: AdminClient) -> set[str]:
    return set(admin.snapshot()["cvms"])


def _inventory_ids(engine: Engine) -> set[str]:
    return {row["vm_uuid"] for row in queries.inventory(engine, target=TARGET)}


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    eng = make_engine(postgres_url)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture(params=["no PREFECT_API_URL", "prefect server start"])
def prefect_api_url(request: pytest.FixtureRequest) -> str | None:
    """Nothing (serve starts its own server), or a separate ``prefect server start``."""
    if request.param == "no PREFECT_API_URL":
        return None
    return str(request.getfixturevalue("prefect_server"))


def test_serve_runs_its_schedule_and_stops_on_sigterm(
    prefect_api_url: str | None,
    simulator: SimulatorServer,
    postgres_url: str,
    pg_engine: Engine,
    tmp_path: Path,
) -> None:
    engine = pg_engine
    home = tmp_path / "prefect-home"  # fresh
    env = base_env(
        PREFECT_HOME=str(home),
        PHALA_CLOUD_API_KEY=API_KEY,
        PHALA_CLOUD_API_PREFIX=simulator.base_url,
        PHALA_SYNC_DATABASE_URL=postgres_url,  # an empty schema: the first run creates it
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=str(STARTUP),
        **({"PREFECT_API_URL": prefect_api_url} if prefect_api_url else {}),
    )
    marker = uuid.uuid4().hex
    with AdminClient(simulator.base_url, ADMIN_TOKEN) as admin:
        served = _serve(tmp_path, "serve", env, marker)
        try:
            runs = _run_and_evolve(served, engine, admin)
            ids_seen = _fleet_ids(admin)  # what the next run sees: no evolve after this point
            _sigterm(served, engine)
        finally:
            stop(served.proc)
            for pid in marked(MARKER, marker):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        _assert_events_match_steps(engine, admin, runs, served.steps)

        # Never half-applied: what is stored is what the last succeeded run saw; a run cut short
        # is failed, or still `running` with nothing of it applied (the next run closes it).
        after = _runs(engine)
        assert {r.status for r in after} <= {"succeeded", "failed", "running"}
        assert _inventory_ids(engine) == ids_seen
        cut = [r for r in after if r.status != "succeeded"]
        for run in cut:
            assert not recorded_events(engine, [run.id]), run.id
        if prefect_api_url is None:
            _restart_finds_its_history(tmp_path, env, engine, home, after)


def _restart_finds_its_history(
    tmp_path: Path, env: dict[str, str], engine: Engine, home: Path, before: list[Row[Any]]
) -> None:
    """A second serve in the same PREFECT_HOME: the same deployment, the earlier flow runs kept,
    and its first run closes a run the SIGTERM cut short as abandoned. Then a kill -9 of it."""
    marker = uuid.uuid4().hex
    served = _serve(tmp_path, "restarted", env, marker)
    try:
        deadline = time.monotonic() + WINDOW
        while not [r for r in _runs(engine)[len(before) :] if r.status == "succeeded"]:
            assert time.monotonic() < deadline, served.text()
            time.sleep(0.3)
        _sigkill(served)
    finally:
        stop(served.proc)
    for run in before:
        if run.status == "running":
            (now,) = [r for r in _runs(engine) if r.id == run.id]
            assert now.status == "failed"
            assert str(now.error).startswith("abandoned"), now.error
    with contextlib.closing(sqlite3.connect(home / "prefect.db", timeout=10)) as db:
        deployments = db.execute("SELECT id FROM deployment WHERE name = ?", [f"sync-{TARGET}"])
        (deployment,) = deployments.fetchall()
        completed = db.execute(
            "SELECT COUNT(*) FROM flow_run WHERE deployment_id = ? AND state_type = 'COMPLETED'",
            deployment,
        ).fetchone()
    # The first serve's runs at least: the second's may be killed before it reports its own.
    assert completed[0] >= RUNS
