"""A process that names its parent in PHALA_SYNC_DIE_WITH_PID dies with it, even on SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sync.lifetime import PARENT_ENV, die_with_named_parent

#: A parent that starts a child naming it (or ``sys.argv[1]``) and waits; the child prints its
#: pid and whether the kernel will kill it with its parent, then sleeps.
PARENT = """
import os, subprocess, sys
named = sys.argv[1] if len(sys.argv) > 1 else str(os.getpid())
child = subprocess.Popen([sys.executable, "-c", CHILD],
                         env={**os.environ, "PHALA_SYNC_DIE_WITH_PID": named})
child.wait()
"""
CHILD = """
import os, sys, time
from sync.lifetime import die_with_named_parent
armed = die_with_named_parent()
print(os.getpid(), armed, flush=True)
time.sleep(120)
"""


def _start(tmp_path: Path, *named: str) -> tuple[subprocess.Popen[str], int, str]:
    script = tmp_path / "parent.py"
    script.write_text(f"CHILD = {CHILD!r}\n{PARENT}")
    parent = subprocess.Popen(
        ["timeout", "-k", "5", "60", sys.executable, str(script), *named],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
        start_new_session=True,
    )
    assert parent.stdout is not None
    with parent.stdout:
        pid, armed = parent.stdout.readline().split()
    return parent, int(pid), armed


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.subprocess
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_child_dies_with_the_parent_it_names(tmp_path: Path) -> None:
    parent, child, armed = _start(tmp_path)
    try:
        assert armed == "True"
        pgrep = ["pgrep", "-P", str(parent.pid)]
        (python,) = subprocess.run(pgrep, capture_output=True, text=True, check=True).stdout.split()
        os.kill(int(python), signal.SIGKILL)  # the parent python under `timeout`
        assert _gone(child, 10)
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()


@pytest.mark.subprocess
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_child_naming_a_live_stranger_is_left_alone(tmp_path: Path) -> None:
    parent, child, armed = _start(tmp_path, str(os.getpid()))  # this test process: alive
    try:
        assert armed == "False"
    finally:
        os.killpg(parent.pid, signal.SIGKILL)  # the child is in this group too
        parent.wait()
        with contextlib.suppress(ProcessLookupError):  # already killed with the group and reaped
            os.kill(child, signal.SIGKILL)


def test_nothing_happens_without_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PARENT_ENV, raising=False)
    assert die_with_named_parent() is False
