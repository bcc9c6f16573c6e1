"""Child processes of the flow tests: each in a process group of its own, stopped as a group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import IO, Any


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
