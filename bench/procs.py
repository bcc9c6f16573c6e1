"""The processes the benchmark starts: the Prefect server, measured commands, their rusage.

Every process is started in a session of its own, so that a timeout, an error or Ctrl-C ends it
and its children (Prefect's ephemeral server, uvicorn) by process group, and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc (Linux); 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of the live processes of one process group (ours)."""
    return sum(cpu_seconds(pid) for pid in group_pids(pgid))


def _status_kib(pid: int, key: str) -> int:
    """A ``/proc/<pid>/status`` field in KiB (``VmHWM``, ``VmRSS``); 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def group_pids(pgid: int) -> list[int]:
    """The live processes of one process group (from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                pids.append(int(entry.name))
    return pids


class RssSampler(threading.Thread):
    """Samples, every ``interval`` seconds, the process's own ``VmHWM`` and the summed ``VmRSS``
    of its process group (it and its children, e.g. Prefect's ephemeral server)."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.own_hwm_kib = 0
        self.group_peak_kib = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.interval):
            self.own_hwm_kib = max(self.own_hwm_kib, _status_kib(self.pid, "VmHWM"))
            total = sum(_status_kib(p, "VmRSS") for p in group_pids(self.pid))
            self.group_peak_kib = max(self.group_peak_kib, total)


def _kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def clean_env(extra: Mapping[str, str], *, drop: Sequence[str] = ()) -> dict[str, str]:
    """This process's environment without any PREFECT_*/PHALA_* setting, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "PHALA_")) and k not in drop
    }
    env.update(extra)
    return env


# ------------------------------------------------------------------------------ measured runs
@dataclass
class Measured:
    """One command run to its end: wall seconds, its rusage, its output."""

    argv: list[str]
    exit_code: int
    wall_s: float
    cpu_user_s: float
    cpu_sys_s: float
    peak_rss_mib: float
    loadavg_start: list[float]
    loadavg_end: list[float]
    stdout: str
    stderr: str
    timed_out: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cpu_s(self) -> float:
        return self.cpu_user_s + self.cpu_sys_s


def run_measured(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    timeout_s: float,
    watch: Mapping[str, Callable[[], float]] | None = None,
) -> Measured:
    """Run ``argv`` to its end; wall time by ``perf_counter`` around it, CPU and peak RSS from
    ``os.wait4`` (the child's rusage, which includes the descendants it waited for).

    ``watch`` names other processes' CPU clocks (e.g. the simulator's, the Prefect server's),
    read before and after the run, so that their CPU seconds over it are recorded too.
    """
    watch = dict(watch or {})
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        cpu0 = {name: clock() for name, clock in watch.items()}
        load0 = loadavg()
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            _kill_group(proc.pid)

        timer = threading.Timer(timeout_s, expire)
        timer.start()
        sampler = RssSampler(proc.pid)
        sampler.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            _kill_group(proc.pid)
            proc.wait()
            raise
        finally:
            timer.cancel()
            sampler.done.set()
        wall = time.perf_counter() - start
        load1 = loadavg()
        proc.returncode = os.waitstatus_to_exitcode(status)
        # Whatever the process left behind in its group (none expected) goes with it.
        _kill_group(proc.pid)
        extra: dict[str, Any] = {
            "cpu_s_" + name: round(clock() - cpu0[name], 2) for name, clock in watch.items()
        }
        sampler.join()
        extra["sampled_own_hwm_mib"] = round(sampler.own_hwm_kib / 1024, 1)
        extra["sampled_group_rss_peak_mib"] = round(sampler.group_peak_kib / 1024, 1)
        out.seek(0)
        err.seek(0)
        return Measured(
            argv=list(argv),
            exit_code=proc.returncode,
            wall_s=wall,
            cpu_user_s=usage.ru_utime,
            cpu_sys_s=usage.ru_stime,
            peak_rss_mib=usage.ru_maxrss / 1024,
            loadavg_start=load0,
            loadavg_end=load1,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            timed_out=expired.is_set(),
            extra=extra,
        )


def json_document(text: str) -> dict[str, Any] | None:
    """The JSON object a command printed (``--json``), even with other lines around it."""
    text = text.strip()
    with contextlib.suppress(ValueError):
        value = json.loads(text)
        return value if isinstance(value, dict) else None
    decoder = json.JSONDecoder()
    offset = 0
    for line in text.splitlines(keepends=True):
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                value, _ = decoder.raw_decode(text, offset)
                if isinstance(value, dict):
                    return value
        offset += len(line)
    return None


# ------------------------------------------------------------------------------ Prefect server
class PrefectServer:
    """``prefect server start`` on a free loopback port, in a temporary ``PREFECT_HOME``, bounded
    by ``timeout -k 10 SECONDS``; stopped (its whole process group) on exit, error or Ctrl-C."""

    def __init__(self, home: Path, *, timeout_s: int, startup_timeout_s: float = 180.0) -> None:
        self.home = home
        self.timeout_s = timeout_s
        self.startup_timeout_s = startup_timeout_s
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = home / "prefect-server.log"
        self.startup_s = 0.0

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def pgid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def env(self) -> dict[str, str]:
        return clean_env(
            {"PREFECT_HOME": str(self.home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        )

    def start(self) -> None:
        self.port = free_port()
        argv = [
            "timeout",
            "-k",
            "10",
            str(self.timeout_s),
            str(BIN / "prefect"),
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        start = time.perf_counter()
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                argv,
                env=self.env(),
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = start + self.startup_timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"prefect server start exited {self.process.returncode}: {self.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    break
            if time.perf_counter() > deadline:
                raise RuntimeError(
                    f"the Prefect server did not answer /api/health: {self.log_tail()}"
                )
            time.sleep(0.5)
        self.startup_s = time.perf_counter() - start

    def log_tail(self, n: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            _kill_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                proc.wait()
        _kill_group(proc.pid)  # anything of its group still alive
        self.process = None


@contextlib.contextmanager
def prefect_server(home: Path, *, timeout_s: int) -> Iterator[PrefectServer]:
    server = PrefectServer(home, timeout_s=timeout_s)
    try:
        server.start()
        yield server
    finally:
        server.stop()
