"""A temporary local Prefect server that dies with the command that started it.

Without ``PREFECT_API_URL``, Prefect 3.8 starts its own temporary ("ephemeral") server as a child
process (``SubprocessASGIServer``: ``python -m uvicorn prefect.server.api.server:create_app``) and
stops it from an ``atexit`` hook. A command killed with SIGKILL (or SIGTERM, whose default action
skips ``atexit``) never runs that hook, so each such kill left a ~190 MiB ``uvicorn`` behind under
PID 1, for good.

:class:`LocalPrefectServer` starts the same server itself, with the kernel told to SIGKILL it when
its parent dies (Linux ``prctl(PR_SET_PDEATHSIG)``), and the caller points ``PREFECT_API_URL`` at
it, so Prefect never starts one of its own. A normal exit still stops it politely.

It comes in two kinds (:class:`ServerKind`). ``sync`` runs one flow and needs nothing but the API:
it gets Prefect's own light ephemeral server (``PREFECT__SERVER_EPHEMERAL``), which runs none of
the periodic background services. ``serve`` needs the scheduler, the service that turns a
deployment's schedule into flow runs; without it, a served deployment is polled forever for runs
nobody creates. Its server is started as a full one with only the services a served schedule
needs (:data:`_SCHEDULING_ENV`). Both keep their records where Prefect does: the database of
``PREFECT_HOME`` (``~/.prefect/prefect.db`` unless ``PREFECT_API_DATABASE_CONNECTION_URL`` says
otherwise), so a restarted ``serve`` finds its deployments and run history again.

This module starts a process; it does not import Prefect.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from enum import Enum

from sync.lifetime import die_with_parent

__all__ = ["LocalPrefectServer", "ServerKind"]

_SERVICES = "PREFECT_SERVER_SERVICES_"
_LEASES = "prefect.server.concurrency.lease_storage"


class ServerKind(Enum):
    """What the temporary server is for: one flow run, or serving schedules."""

    #: ``sync``: Prefect's own ephemeral server; no periodic service runs, so it starts light.
    EPHEMERAL = "ephemeral"
    #: ``serve``: a full server with the services a served schedule needs (see the module).
    SCHEDULING = "scheduling"


#: What Prefect's own temporary server runs with: no UI, and flagged as ephemeral.
_EPHEMERAL_ENV = {
    "PREFECT_UI_ENABLED": "0",
    "PREFECT__SERVER_EPHEMERAL": "1",
    "PREFECT__SERVER_FINAL": "1",
}
#: ``serve``'s server (Prefect 3.9's periodic services, ``prefect/server/services``). Not flagged
#: ephemeral, so the enabled ones run; the event services run in both kinds.
_SCHEDULING_ENV = {
    "PREFECT_UI_ENABLED": "0",
    "PREFECT__SERVER_FINAL": "1",
    # Needed: deployment schedules -> scheduled flow runs, which the serving runner picks up.
    f"{_SERVICES}SCHEDULER_ENABLED": "true",
    # Needed after a kill: frees the deployment's concurrency slot (limit 1, CANCEL_NEW) held by
    # a run that died with the command, once its lease expires. Without it, and with leases kept
    # in memory (Prefect's default), every later run of that deployment would be cancelled for
    # good; on disk (PREFECT_HOME/concurrency_leases) they outlive a restart.
    f"{_SERVICES}REPOSSESSOR_ENABLED": "true",
    "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": f"{_LEASES}.filesystem",
    # Kept: moves runs stuck in Cancelling (their process gone) to Cancelled.
    f"{_SERVICES}CANCELLATION_CLEANUP_ENABLED": "true",
    # Not needed by a served schedule: marking overdue runs Late (a label), work pool and worker
    # health, paused-run expiry, the worker channel's cleanup queue.
    f"{_SERVICES}LATE_RUNS_ENABLED": "false",
    f"{_SERVICES}FOREMAN_ENABLED": "false",
    f"{_SERVICES}PAUSE_EXPIRATIONS_ENABLED": "false",
    f"{_SERVICES}CLEANUP_RECONCILER_ENABLED": "false",
}
_SERVER_ENV = {ServerKind.EPHEMERAL: _EPHEMERAL_ENV, ServerKind.SCHEDULING: _SCHEDULING_ENV}
_POLL_SECONDS = 0.1


def _inherited_env() -> dict[str, str]:
    """This environment without Prefect's private flag for its own ephemeral server.

    Prefect sets ``PREFECT__SERVER_EPHEMERAL`` in its own server's environment only; one found
    here would turn a scheduling server into one without services.
    """
    return {k: v for k, v in os.environ.items() if k != "PREFECT__SERVER_EPHEMERAL"}


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

    def __init__(self, kind: ServerKind = ServerKind.EPHEMERAL) -> None:
        self.kind = kind
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def environment(self) -> dict[str, str]:
        """The server process's environment: this one, with the settings of its kind."""
        return {**_inherited_env(), **_SERVER_ENV[self.kind]}

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
            env=self.environment(),
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
