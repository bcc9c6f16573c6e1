"""Serving the simulator over loopback: in a background thread, or in a child process.

- :class:`SimulatorServer` / :func:`run_simulator_in_thread`: uvicorn in a daemon thread of this
  process; the fleet is at hand (``server.fleet``) for evolving and checking.
- :class:`SimulatorProcess` / :func:`run_simulator_subprocess`: ``python -m simulator serve``
  in a child process (its own core and GIL: what benchmarks and demos want); it reads the base URL
  from the child's first line of output.

Only loopback addresses are accepted: the simulator is a test double, never a public server.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final, Self

import uvicorn
from starlette.applications import Starlette

from simulator.app import SimulatedDisconnect, Simulator, create_app, simulator_of
from simulator.faults import FaultRule
from simulator.fleet import Fleet

LISTENING_PREFIX: Final = "simulator listening on "


class _QuietDrops(logging.Filter):
    """Drops uvicorn's traceback for a simulated connection drop (it is the point, not a bug)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, SimulatedDisconnect)


def quiet_simulated_drops() -> None:
    """Install the filter on uvicorn's error logger (idempotent)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietDrops) for f in logger.filters):
        logger.addFilter(_QuietDrops())


def bind_loopback(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket on a loopback address (port 0: a free one)."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the simulator only listens on loopback addresses, not {host!r}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def base_url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/api/v1"


def uvicorn_server(
    app: Starlette, *, log_level: str = "warning", own_logging: bool
) -> uvicorn.Server:
    """A uvicorn server for the app: no lifespan, no access log, 1 s graceful shutdown.

    ``own_logging``: let uvicorn configure logging (the CLI); otherwise leave the host's alone.
    """
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
        log_config=uvicorn.config.LOGGING_CONFIG if own_logging else None,
    )
    quiet_simulated_drops()
    return uvicorn.Server(config)


class _Served(ABC):
    """A simulator served over loopback; a context manager that starts and stops it."""

    #: ``http://127.0.0.1:PORT/api/v1`` once started.
    base_url: str

    @property
    def admin_url(self) -> str:
        """The root the admin endpoints hang off: the base URL without ``/api/v1``."""
        return self.base_url.removesuffix("/api/v1")

    @abstractmethod
    def start(self) -> str:
        """Start serving; returns the base URL."""

    @abstractmethod
    def stop(self) -> None:
        """Stop serving (nothing happens when not started)."""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SimulatorServer(_Served):
    """The simulator served by uvicorn in a background thread of this process.

    ``with SimulatorServer(api_key="k", cvms=500) as server: server.base_url`` ... Pass ``app``
    to serve an existing app, or the :func:`~simulator.app.create_app` arguments.
    """

    def __init__(
        self,
        app: Starlette | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        startup_timeout: float = 30.0,
        **create_app_kwargs: Any,
    ) -> None:
        self.app = app if app is not None else create_app(**create_app_kwargs)
        self.host = host
        self.port = port
        self.log_level = log_level
        self.startup_timeout = startup_timeout
        self.base_url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def simulator(self) -> Simulator:
        return simulator_of(self.app)

    @property
    def fleet(self) -> Fleet:
        return self.simulator.fleet

    def start(self) -> str:
        """Start serving; returns the base URL (``http://127.0.0.1:PORT/api/v1``)."""
        if self._thread is not None:
            raise RuntimeError("this simulator server is already started")
        sock = bind_loopback(self.host, self.port)
        self.base_url = base_url_of(sock)
        server = self._server = uvicorn_server(
            self.app, log_level=self.log_level, own_logging=False
        )
        thread = self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="phala-simulator", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                sock.close()
                raise RuntimeError(f"the simulator did not start on {self.base_url}")
            time.sleep(0.005)
        return self.base_url

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None


@contextmanager
def run_simulator_in_thread(**kwargs: Any) -> Iterator[str]:
    """``with run_simulator_in_thread(api_key="k", cvms=100) as base_url: ...``"""
    with SimulatorServer(**kwargs) as server:
        yield server.base_url


def simulate_argv(
    *,
    api_key: str,
    cvms: int = 1000,
    seed: int = 0,
    admin_token: str | None = None,
    faults: Iterable[str] = (),
    fault_seed: int = 0,
    host: str = "127.0.0.1",
    port: int = 0,
    prewarm: bool = False,
) -> list[str]:
    """The ``serve`` arguments for these settings (the API key itself goes in the environment)."""
    argv = ["--host", host, "--port", str(port), "--cvms", str(cvms), "--seed", str(seed)]
    argv += ["--fault-seed", str(fault_seed)]
    for spec in faults:
        argv += ["--fault", spec]
    if admin_token is not None:
        argv += ["--admin-token", admin_token]
    if prewarm:
        argv.append("--prewarm")
    return argv


class SimulatorProcess(_Served):
    """The simulator in a child process (``python -m simulator serve``).

    ``with SimulatorProcess(api_key="k", cvms=100_000) as proc: proc.base_url`` ... The API key
    reaches the child through its environment, never its command line.
    """

    def __init__(
        self,
        *,
        api_key: str,
        startup_timeout: float = 120.0,
        env: Mapping[str, str] | None = None,
        **settings: Any,
    ) -> None:
        faults = settings.get("faults", ())
        if any(not isinstance(f, str) for f in faults):
            settings["faults"] = [_spec_text(f) for f in faults]
        self.argv = [
            sys.executable,
            "-m",
            "simulator",
            "serve",
            *simulate_argv(api_key=api_key, **settings),
        ]
        self.env = {**(env if env is not None else os.environ), "PHALA_CLOUD_API_KEY": api_key}
        self.startup_timeout = startup_timeout
        self.base_url = ""
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        proc = self.process = subprocess.Popen(self.argv, stdout=subprocess.PIPE, env=self.env)
        assert proc.stdout is not None
        line = _read_line(proc, self.startup_timeout)
        if not line.startswith(LISTENING_PREFIX):
            self.stop()
            raise RuntimeError(f"the simulator did not start (its first line: {line!r})")
        self.base_url = line.removeprefix(LISTENING_PREFIX).strip()
        return self.base_url

    def stop(self) -> None:
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        self.process = None


def _spec_text(rule: str | Mapping[str, Any] | FaultRule) -> str:
    """A fault rule as CLI text (for a child process's command line)."""
    parsed = rule if isinstance(rule, FaultRule) else FaultRule.parse(rule)
    data = parsed.to_json()
    kind = data.pop("kind")
    data.pop("matched")
    data.pop("fired")
    parts = []
    for key, value in data.items():
        if key == "pages":
            value = "|".join(map(str, value))
        if value is None:
            value = "none"
        parts.append(f"{key}={value}")
    return f"{kind}:{','.join(parts)}" if parts else str(kind)


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """The child's first line of output, waiting at most ``timeout`` seconds."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if sel.select(left):
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                buf += chunk
    return buf.split(b"\n", 1)[0].decode(errors="replace")


@contextmanager
def run_simulator_subprocess(**kwargs: Any) -> Iterator[str]:
    """``with run_simulator_subprocess(api_key="k", cvms=100_000) as base_url: ...``"""
    with SimulatorProcess(**kwargs) as proc:
        yield proc.base_url
