"""A temporary local Prefect server that dies with the command that started it.

Without ``PREFECT_API_URL``, Prefect 3.8 starts its own temporary ("ephemeral") server as a child
process (``SubprocessASGIServer``: ``python -m uvicorn prefect.server.api.server:create_app``) and
stops it from an ``atexit`` hook. A command killed with SIGKILL (or SIGTERM, whose default action
skips ``atexit``) never runs that hook, so each such kill left a ~190 MiB ``uvicorn`` behind under
PID 1, for good.

:class:`LocalPrefectServer` starts the same server itself, with the kernel told to SIGKILL it when
its parent dies (Linux ``prctl(PR_SET_PDEATHSIG)``), and the caller points ``PREFECT_API_URL`` at
it, so Prefect never starts one of its own. A normal exit still stops it politely.

This module starts a process; it does not import Prefect.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable

__all__ = ["LocalPrefectServer", "die_with_parent"]

_PR_SET_PDEATHSIG = 1
#: What Prefect's own temporary server runs with: no UI, and flagged as ephemeral.
_SERVER_ENV = {
    "PREFECT_UI_ENABLED": "0",
    "PREFECT__SERVER_EPHEMERAL": "1",
    "PREFECT__SERVER_FINAL": "1",
}
_POLL_SECONDS = 0.1


def die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child get SIGKILL when the process forking it dies.

    libc is looked up here, in the parent, so that the child (between fork and exec) only calls
    it. If the parent died before the call took effect, the child exits at once.
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    parent = os.getpid()

    def preexec() -> None:  # pragma: no cover - runs in the child, between fork and exec
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            os._exit(126)
        if os.getppid() != parent:
            os._exit(0)

    return preexec


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalPrefectServer:
    """Prefect's API server on a free loopback port, as a child that cannot outlive this process.

    The child must be started from the thread that lives as long as the process (the main
    thread): Linux signals the death of the forking *thread*.
    """

    def __init__(self) -> None:
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> None:
        """Start the server process; :meth:`wait_ready` waits until it answers."""
        if not sys.platform.startswith("linux"):
            raise OSError("the temporary Prefect server needs Linux (prctl PR_SET_PDEATHSIG)")
        argv = [sys.executable, "-m", "uvicorn", "--factory",
                "prefect.server.api.server:create_app", "--host", "127.0.0.1",
                "--port", str(self.port), "--log-level", "error", "--lifespan", "on"]  # fmt: skip
        self.process = subprocess.Popen(
            argv,
            env={**os.environ, **_SERVER_ENV},
            stdin=subprocess.DEVNULL,
            # Started before Prefect runs any thread of its own here (see the class docstring).
            preexec_fn=die_with_parent(),
        )

    def wait_ready(self, timeout: float) -> None:
        """Wait until ``/api/health`` answers; raise :class:`OSError` if it never does."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None, "start() first"
            code = self.process.poll()
            if code is not None:
                raise OSError(
                    f"the temporary Prefect server exited with status {code} while starting; "
                    "run `prefect server start` and set PREFECT_API_URL instead"
                )
            if self._healthy():
                return
            if time.monotonic() >= deadline:
                self.stop()
                raise OSError(
                    f"the temporary Prefect server did not answer within {timeout:g} s; raise "
                    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS or set PREFECT_API_URL"
                )
            time.sleep(_POLL_SECONDS)

    def _healthy(self) -> bool:
        url = f"{self.api_url}/health"  # always http://127.0.0.1:<port>/...
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        """Terminate the server (kill it after 5 s) and reap it; safe to call twice."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
