"""The ``phala-sync`` command line: sync, serve, deploy, migrate, ask the database, run the demo.

Settings come from flags, then the environment (``PHALA_CLOUD_API_KEY``, ``PHALA_CLOUD_API_PREFIX``,
``PHALA_SYNC_*``), then a ``.env`` file. The API key is never a flag: a flag's value shows in
``ps`` and in shell history.

One module per command or family (:mod:`~sync.cli.sync`, :mod:`~sync.cli.scheduling` for
``serve`` and ``deploy``, :mod:`~sync.cli.db`, :mod:`~sync.cli.lookups` for ``runs``,
``inventory``, ``history``, ``changes`` and ``fleet``, :mod:`~sync.cli.report`,
:mod:`~sync.cli.targets`, :mod:`~sync.cli.demo`), gathered into the group of
:mod:`~sync.cli.group`, which imports a command's module only when the command runs. This package
is the only part of :mod:`sync` that reaches :mod:`flows`, and only inside the commands that run a
flow (``sync``, ``serve``, ``deploy``, ``demo``), so the others start without importing Prefect.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading

from sync.cli.group import cli, error_line


def main() -> None:
    """Console script entry point: run the command, then end the process at once.

    What a normal interpreter exit does that matters runs first, in its order: the non-daemon
    threads are joined (``threading._shutdown``, which also stops idle thread-pool workers), then
    the ``atexit`` callbacks (Prefect sends its last logs and events there, ``logging`` flushes
    its handlers, temporary directories are removed), then stdout and stderr are flushed. What is
    skipped is the teardown of every module and object: 0.7 s of wall and CPU after each
    ``phala-sync sync`` on this machine kind (Prefect and its imports are a large heap), with
    nothing left to write by then.
    """
    try:
        cli(prog_name="phala-sync")
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    _end_process(code)


def _end_process(code: object) -> None:
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"): printed to stderr, status 1 (as the interpreter does)
        print(code, file=sys.stderr)
        status = 1
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is None:  # not CPython as we know it: the usual exit
        sys.exit(status)
    shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


__all__ = ["cli", "error_line", "main"]
