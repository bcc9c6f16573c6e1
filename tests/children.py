"""Child processes of the flow tests: each in a process group of its own, stopped as a group."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

BIN = Path(sys.executable).parent
PHALA_SYNC = str(BIN / "phala-sync")
PREFECT = str(BIN / "prefect")


def base_env(**extra: str) -> dict[str, str]:
    """This environment without any phala-sync or Prefect API setting, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PHALA_") and k not in {"PREFECT_API_URL", "PREFECT_HOME"}
    }
    return {**env, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **extra}


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def marked(name: str, value: str) -> dict[int, str]:
    """pid -> command line of every process whose environment has ``name=value``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # gone, or not ours
            continue
        if f"{name}={value}".encode() in environ.split(b"\0"):
            found[int(entry.name)] = cmdline
    return found


def start(argv: list[str], *, seconds: int, log: IO[str], **popen: Any) -> subprocess.Popen[str]:
    """``argv`` bounded by ``timeout -k``, in a process group of its own."""
    bounded = ["timeout", "-k", "5", str(seconds), *argv]
    return subprocess.Popen(
        bounded, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True, **popen
    )


def stop(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM the process group of ``proc`` (started with ``start_new_session``), SIGKILL it
    after 20 s; reap."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
