"""Fixtures for the tests that run the real flow: one Prefect test server, a served simulator.

``prefect_api_url`` starts ONE ``prefect_test_harness`` for the whole session (about 8 s) and gives
its API URL, so a child process (``phala-sync serve``/``sync``) can use the same server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sync.simulator import SimulatorServer

API_KEY = "phak_flowtest_0123456789abcdef"
ADMIN_TOKEN = "admin-flowtest"
FLEET = 120


@pytest.fixture(scope="session")
def prefect_api_url() -> Iterator[str]:
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

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

