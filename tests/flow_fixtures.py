"""Fixtures for the tests that run the real flow: one Prefect test server, a served simulator.

A pytest plugin of tests/conftest.py, so that tests/flows and tests/sync/cli (the ``sync`` and
``serve`` commands) share them. ``prefect_api_url`` starts ONE ``prefect_test_harness`` per test
process (about 8 s) and gives its API URL, so a child process (``phala-sync serve``/``sync``) can
use the same server; under xdist every test using it runs on one worker (tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from simulator import SimulatorServer
from tests.children import PREFECT, base_env, free_port, start, stop

API_KEY = "phak_flowtest_0123456789abcdef"
ADMIN_TOKEN = "admin-flowtest"
FLEET = 120


def _server_default_result_storage_block_id() -> UUID | None:
    """Prefect's ``results._read_server_default_result_storage_block_id``, closing its client.

    Prefect 3.8.8 opens a synchronous API client there on every flow run and never closes it;
    the socket it leaves is garbage-collected later as a ``ResourceWarning``, which
    ``filterwarnings = error`` turns into a failure of whatever test is running at that moment.
    """
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    try:
        with get_client(sync_client=True) as client:
            configuration = client.read_server_default_result_storage()
    except (PrefectHTTPStatusError, httpx.HTTPError, RuntimeError, ValueError):
        return None
    return configuration.default_result_storage_block_id


@pytest.fixture(scope="session")
def prefect_api_url() -> Iterator[str]:
    import prefect.results
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            prefect.results,
            "_read_server_default_result_storage_block_id",
            _server_default_result_storage_block_id,
        )
        with prefect_test_harness(server_startup_timeout=120):
            url = PREFECT_API_URL.value()
            assert url
            yield str(url)


@pytest.fixture
def simulator() -> Iterator[SimulatorServer]:
    """The simulator served over loopback in a background thread (fleet at hand for evolving)."""
    with SimulatorServer(api_key=API_KEY, admin_token=ADMIN_TOKEN, cvms=FLEET, seed=3) as server:
        yield server


@pytest.fixture
def api_key_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """The simulator's key in PHALA_CLOUD_API_KEY; requests give up at once (no slow retries).

    Runs in an empty directory, so that no developer's ``.env`` file takes part.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PHALA_CLOUD_API_KEY", API_KEY)
    monkeypatch.setenv("PHALA_SYNC_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("PHALA_SYNC_RETRY_BUDGET", "2")
    return API_KEY


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[str]:
    """A real ``prefect server start`` on a free port with its own home; yields its API URL."""
    port = free_port()
    env = base_env(PREFECT_HOME=str(tmp_path / "server-home"))
    argv = [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        proc = start(argv, seconds=900, log=log, env=env, cwd=tmp_path)
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 150
        while True:
            assert proc.poll() is None, log_path.read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.5)
        yield api
    finally:
        stop(proc)
