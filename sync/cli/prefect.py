"""The CLI's way into Prefect: environment defaults, quiet console errors, and one flow run.

This module imports Prefect (through :mod:`flows`) only inside its functions, so the commands
that never run a flow (``db``, ``runs``, ``inventory``...) start without it.

Without ``PREFECT_API_URL``, :func:`ensure_prefect_api` starts a temporary local Prefect server
that the kernel kills with this process (:mod:`sync.cli.prefect_server`), instead of letting Prefect
start one that a SIGKILL of the command would leave running for good.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import sys
from typing import Any

from sync.cli.prefect_server import LocalPrefectServer, ServerKind
from sync.progress import TerminalProgress, listening

__all__ = ["PREFECT_DEFAULTS", "ensure_prefect_api", "prefect_env_defaults", "run_sync_flow"]

#: Set for Prefect-using commands unless the user set them: no telemetry from the ephemeral
#: server, and time for its first start (12-16 s were measured on a 2-core machine).
PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
}
_CONSOLE_LEVEL = "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"


def prefect_env_defaults(*, quiet_console: bool = False) -> None:
    """Fill in :data:`PREFECT_DEFAULTS`; with ``quiet_console``, show only Prefect's warnings.

    Call before Prefect is imported: it reads its logging configuration at import.
    """
    for name, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    if quiet_console and not {"PREFECT_LOGGING_LEVEL", _CONSOLE_LEVEL} & set(os.environ):
        os.environ[_CONSOLE_LEVEL] = "WARNING"


class _QuietPrefectConsole(logging.Filter):
    """Keeps Prefect's error records (with their tracebacks) and exit chatter off the console.

    The CLI reports a failed run itself, in one line; the records still reach the Prefect API, so
    the run's page in the UI shows the full traceback. Prefect's background workers also note
    ``Still processing items`` while they send the last events at exit: not the user's concern.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.name.startswith("prefect"):
            return False
        return not (
            record.name.endswith("Worker") and str(record.msg).startswith("Still processing items")
        )


def _quiet_console_errors() -> None:
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and not any(
            isinstance(f, _QuietPrefectConsole) for f in handler.filters
        ):
            handler.addFilter(_QuietPrefectConsole())


#: The temporary server of this process, once started (one per process, like Prefect's own).
_local_server: list[LocalPrefectServer] = []


def _configured_api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def _announcement(kind: ServerKind) -> str:
    if kind is ServerKind.EPHEMERAL:
        return "starting a temporary local Prefect server (no PREFECT_API_URL)...\n"
    from prefect.settings import get_current_settings

    home = get_current_settings().home
    return (
        "starting a local Prefect server with its scheduler for as long as this command runs "
        f"(no PREFECT_API_URL); it keeps its records in PREFECT_HOME ({home})...\n"
    )


def ensure_prefect_api(*, announce: bool, kind: ServerKind = ServerKind.EPHEMERAL) -> str | None:
    """Make sure a Prefect API is configured; returns the temporary server's URL if one started.

    With no ``PREFECT_API_URL`` (environment, profile or a test harness), start
    :class:`~sync.cli.prefect_server.LocalPrefectServer` of ``kind`` once per process, point
    ``PREFECT_API_URL`` at it (the environment, for child processes such as served runs, and the
    current Prefect settings) and stop it at exit. Call from the main thread, before Prefect starts
    threads.
    """
    if _local_server:
        if _local_server[0].kind is not kind:
            raise RuntimeError(f"a {_local_server[0].kind.value} Prefect server already runs here")
        return _local_server[0].api_url
    if _configured_api_url():
        return None
    from prefect.context import refresh_global_settings_context
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    if announce:
        sys.stderr.write(_announcement(kind))
    server = LocalPrefectServer(kind)
    server.start()
    atexit.register(server.stop)  # before Prefect's exit hooks register: they run first
    server.wait_ready(float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()))
    _local_server.append(server)
    os.environ["PREFECT_API_URL"] = server.api_url
    # Prefect read its settings at import: make them pick up the new URL.
    refresh_global_settings_context()
    return server.api_url


def run_sync_flow(parameters: dict[str, Any], *, progress: bool) -> dict[str, Any]:
    """Run the sync flow once in this process and return its summary; raises the run's error.

    With ``progress``, a status line on stderr follows the pages as they are staged.
    """
    prefect_env_defaults(quiet_console=progress)
    ensure_prefect_api(announce=progress)
    # Imported here, not at the top of the module: Prefect takes a second or more to import, and
    # only the commands that run a flow need it.
    from flows.sync_flow import sync_flow

    _quiet_console_errors()
    with contextlib.ExitStack() as stack:
        if progress:
            bar = stack.enter_context(TerminalProgress(sys.stderr))
            stack.enter_context(listening(bar))
        result: dict[str, Any] = asyncio.run(sync_flow(**parameters))
    return result
