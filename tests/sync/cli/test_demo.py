"""``phala-sync demo`` end to end, as a fresh machine runs it: a child process, nothing configured.

It starts Prefect's ephemeral server (10-20 s here), so it is marked ``slow``.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import psutil
import pytest

from sync.cli.demo import DEMO_RUNS
from sync.cli.prefect import PREFECT_DEFAULTS, prefect_env_defaults

PHALA_SYNC = str(Path(sys.executable).with_name("phala-sync"))


def _fresh_env(prefect_home: Path) -> dict[str, str]:
    """The environment of a machine where nothing is configured (but PREFECT_HOME is private)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PHALA_", "PREFECT_")) and k not in ("PYTEST_CURRENT_TEST",)
    }
    env["PREFECT_HOME"] = str(prefect_home)
    return env


def _processes_with_home(prefect_home: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("PREFECT_HOME") == str(prefect_home):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


@pytest.mark.slow
@pytest.mark.subprocess
def test_demo_runs_end_to_end_and_leaves_nothing_running(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    prefect_home = tmp_path / "prefect-home"
    # A leftover of an earlier demo (here: not even a database) is replaced, not reused.
    (workdir / "phala-sync-demo.db").write_bytes(b"not a database")
    (workdir / "phala-sync-demo.db-wal").write_bytes(b"junk")
    done = subprocess.run(
        [PHALA_SYNC, "demo"],
        cwd=workdir,
        env=_fresh_env(prefect_home),
        capture_output=True,
        text=True,
        timeout=480,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "Traceback" not in done.stderr

    assert re.search(r"^Run 1 succeeded", out, re.MULTILINE), out
    run_line = r"^  Run (\d+) succeeded at (\S+) .*; created (\d+), updated (\d+), deleted (\d+)"
    lines = re.findall(run_line, out, re.MULTILINE)
    assert [int(n) for n, *_ in lines] == list(range(1, DEMO_RUNS + 1)), out
    days = [date.fromisoformat(day) for _, day, *_ in lines]
    assert days == [days[0] + timedelta(days=i) for i in range(DEMO_RUNS)]  # a day apart
    _, _, created, updated, deleted = lines[1]
    assert (int(created), int(deleted)) == (12, 2)  # the first evolve step: create 12, delete 2
    assert int(updated) > 0
    assert f"What the last run ({DEMO_RUNS}) changed" in out
    assert (workdir / "phala-sync-demo.db").exists()

    # The report: its path printed last, every chart drawn (the days give them shape).
    report = workdir / "phala-sync-demo-report.html"
    assert out.rstrip().endswith(f"fleet report: {report.resolve()}"), out[-500:]
    page = report.read_text()
    for key in ("fleet-status", "capacity-region", "workspaces-now", "workspaces-time",
                "changes-run", "age", "cost-workspace"):  # fmt: skip
        section = page.split(f'<section id="{key}"', 1)[1].split("</section>", 1)[0]
        assert 'id="mark-' in section, key

    # Nothing left: the simulator's port is closed and no process of this run remains.
    match = re.search(r"simulator listening on http://127\.0\.0\.1:(\d+)/api/v1", out)
    assert match, out
    deadline = time.monotonic() + 10
    while _processes_with_home(prefect_home) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_with_home(prefect_home) == []
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", int(match[1])), 1),
    ):
        pass


def test_prefect_defaults_fill_in_only_what_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*PREFECT_DEFAULTS, "PREFECT_LOGGING_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", raising=False)
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")
    prefect_env_defaults(quiet_console=True)
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == "300"
    assert os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] == "WARNING"

    monkeypatch.delenv("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL")
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "DEBUG")
    prefect_env_defaults(quiet_console=True)
    assert "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL" not in os.environ
