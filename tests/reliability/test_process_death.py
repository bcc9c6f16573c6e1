"""Process death: ``kill -9`` of a real sync process at random points of its fetch and its apply.

The sync runs in a child process (``killable_sync.py``, the venv's Python calling
``sync.run.run_sync``) against the simulator served over loopback from this process, with some
latency so that there is time to kill. Afterwards the database is consistent: the killed run's
ledger row is ``running`` and nothing of it is visible, or (a kill after the commit) it is
``succeeded`` and the inventory is exactly the fleet. The next run succeeds, closes the stale row
as failed ("abandoned") and records exactly the changes since the last successful run.

Seeds (``random.Random(seed)`` picks the kill point): fetch 1 (after 5 staged pages) and 2 (after
28); apply 1 (after the third chunk write), 7 (after the CVM deletions) and 9 (after the ledger
update, just before the commit); any time 5 and 6 (a delay of up to 1.5 s: before, during or after
the run, whichever it hits).
"""

from __future__ import annotations

import os
import random
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import sync.run as run_module
from simulator import SimulatorServer
from sync.store.staging import Stager
from tests.reliability.conftest import API_KEY, EVOLVE, Before, Harness
from tests.reliability.oracle import (
    INVENTORY_TABLES,
    assert_consistent,
    assert_fleet_stored,
    count,
    dump,
    runs,
)

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

SCRIPT = Path(__file__).with_name("killable_sync.py")
PAUSE_IN_APPLY = 0.2
#: Where an apply-phase kill may land: (step printed by the child, its occurrence).
APPLY_POINTS = [
    ("dedupe", 1),
    ("flush", 1),
    ("flush", 3),
    ("orphans", 1),
    ("orphans", 3),
    ("deletions", 1),
    ("deletions", 2),
    ("ledger", 1),
]


class Child:
    """The killable sync process and its output lines."""

    def __init__(self, database_url: str, base_url: str, cwd: Path, pause: float) -> None:
        env = {**os.environ, "PHALA_CLOUD_API_KEY": API_KEY}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(SCRIPT),
                database_url,
                base_url,
                "--pause-in-apply",
                str(pause),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
        )
        self.lines: list[str] = []
        self._buffer = b""

    def wait_for(self, predicate: str, occurrence: int = 1, timeout: float = 60.0) -> bool:
        """Read output until the ``occurrence``-th line starting with ``predicate``; False when
        the child finished first."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                if sum(1 for line in self.lines if line.startswith(predicate)) >= occurrence:
                    return True
                if any(line.startswith("done") for line in self.lines):
                    return False
                left = deadline - time.monotonic()
                assert left > 0, f"no {predicate!r} from the child; saw {self.lines[-5:]}"
                if sel.select(left):
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        return False
                    self._buffer += chunk
                    *complete, self._buffer = self._buffer.split(b"\n")
                    self.lines += [c.decode() for c in complete]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read().decode(errors="replace")
        self.proc.stdout.close()
        self.proc.stderr.close()


def kill_and_recover(
    served: tuple[Harness, SimulatorServer], tmp_path: Path, seed: int, phase: str
) -> None:
    h, server = served
    rng = random.Random(seed)
    h.baseline()
    h.fleet.evolve(EVOLVE, seed=seed)
    h.faults.set(["latency:ms=15"])
    before = Before.of(h.engine)
    url = h.engine.url.render_as_string(hide_password=False)
    staged_pages = 0
    child = Child(url, server.base_url, tmp_path, PAUSE_IN_APPLY if phase == "apply" else 0.0)
    try:
        assert child.wait_for("ready")
        if phase == "fetch":
            # 21 CVM pages and 9 app pages of 10: kill after a random page, mid-request.
            staged_pages = rng.randint(1, 28)
            assert child.wait_for("staged", staged_pages)
            time.sleep(rng.uniform(0.0, 0.02))
        elif phase == "apply":
            step, occurrence = rng.choice(APPLY_POINTS)
            assert child.wait_for(f"apply {step}", occurrence), child.lines
        else:
            time.sleep(rng.uniform(0.0, 1.5))
    finally:
        child.kill()
    # At a random moment the child may already have finished its run (then it must be complete).
    landed = (-signal.SIGKILL, 0) if phase == "anytime" else (-signal.SIGKILL,)
    assert child.proc.returncode in landed, child.stderr
    assert "Traceback" not in child.stderr, child.stderr

    # The database as the kill left it: consistent, the run either invisible or complete.
    ledger = runs(h.engine)
    killed = ledger[len(before.ledger) :]
    assert len(killed) <= 1
    assert_consistent(h.engine, running_allowed=True)
    if killed and killed[0]["status"] == "succeeded":
        assert phase == "anytime"
        h.expect(killed[0]["id"])
        assert_fleet_stored(h.engine, h.fleet)
    else:
        assert [r["status"] for r in killed] in ([], ["running"])
        assert dump(h.engine, INVENTORY_TABLES) == before.tables
        if phase in ("fetch", "apply"):
            assert killed, "the kill landed before the run started"
    if phase == "fetch" and staged_pages >= Stager.pages_per_commit:
        # Staging commits every pages_per_commit pages: a later kill leaves staged rows behind...
        assert count(h.engine, "sync_staging") > 0
    # ...which the next run clears, with the stale row, and records exactly what is left.
    h.faults.set([])
    summary = h.run()
    h.expect(summary)
    assert_fleet_stored(h.engine, h.fleet)
    after = {r["id"]: r for r in runs(h.engine)}
    for row in killed:
        stale = after[row["id"]]
        if row["status"] == "running":
            assert stale["status"] == "failed"
            assert stale["finished_at"] is not None
            assert "abandoned" in stale["error"]
            assert f"closed by run {summary.run_id}" in stale["error"]
    assert count(h.engine, "sync_staging") == 0


@pytest.mark.parametrize("seed", [1, 2])
def test_kill_during_fetch(
    served: tuple[Harness, SimulatorServer], tmp_path: Path, seed: int
) -> None:
    kill_and_recover(served, tmp_path, seed, "fetch")


@pytest.mark.parametrize("seed", [1, 7, 9])
def test_kill_during_apply(
    served: tuple[Harness, SimulatorServer], tmp_path: Path, seed: int
) -> None:
    kill_and_recover(served, tmp_path, seed, "apply")


@pytest.mark.parametrize("seed", [5, 6])
def test_kill_at_a_random_moment(
    served: tuple[Harness, SimulatorServer], tmp_path: Path, seed: int
) -> None:
    kill_and_recover(served, tmp_path, seed, "anytime")


def test_an_interrupt_after_the_commit_leaves_the_run_succeeded(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    h.baseline_and_step()

    def interrupted(*_: object, **__: object) -> None:
        raise KeyboardInterrupt  # the signal lands between the commit and the return

    # apply_run builds its RunSummary right after the transaction commits.
    monkeypatch.setattr(run_module, "RunSummary", interrupted)
    with pytest.raises(KeyboardInterrupt):
        h.run()
    monkeypatch.undo()
    assert runs(h.engine)[-1]["status"] == "succeeded"
    assert_consistent(h.engine)
