"""Processes that must not outlive the command that started them (Linux ``PR_SET_PDEATHSIG``).

A child of a command killed with SIGKILL is left running under PID 1 for good unless the kernel
is told to kill it with its parent. :func:`die_with_parent` tells it for a child the command
starts itself (a ``preexec_fn``: the temporary Prefect server). The runs that ``serve`` serves are
started by Prefect's runner, whose ``Popen`` this code does not reach: ``serve`` names itself in
:data:`PARENT_ENV`, which they inherit, and each run calls :func:`die_with_named_parent` first.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

__all__ = ["PARENT_ENV", "die_with_named_parent", "die_with_parent"]

#: The pid of the process whose death must end this one (set by ``serve`` for its runs).
PARENT_ENV = "PHALA_SYNC_DIE_WITH_PID"
_PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[[int, int, int, int, int], int]:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    prctl: Callable[[int, int, int, int, int], int] = libc.prctl
    return prctl


def die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child get SIGKILL when the process forking it dies.

    libc is looked up here, in the parent, so that the child (between fork and exec) only calls
    it. If the parent died before the call took effect, the child exits at once.
    """
    prctl = _prctl()
    parent = os.getpid()

    def preexec() -> None:  # pragma: no cover - runs in the child, between fork and exec
        if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            os._exit(126)
        if os.getppid() != parent:
            os._exit(0)

    return preexec


def die_with_named_parent() -> bool:
    """If :data:`PARENT_ENV` names this process's parent, get SIGKILL when that parent dies.

    Returns whether it was arranged. Exits at once (status 1) if the named process is already
    gone; does nothing where the variable is unset, names another process that is alive (a
    grandchild inherited it), or the platform is not Linux.
    """
    named = os.environ.get(PARENT_ENV, "")
    if not named.isdigit() or not sys.platform.startswith("linux"):
        return False
    pid = int(named)
    if os.getppid() != pid:
        if not _alive(pid):
            sys.stderr.write(f"phala-sync: the serving process {pid} is gone; this run stops\n")
            os._exit(1)
        return False
    if _prctl()(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return False
    if os.getppid() != pid:  # the parent died between the check and the prctl
        os._exit(1)
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
