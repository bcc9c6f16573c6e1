"""The command line: ``simulate`` serving in a child process, ``simulate-evolve``, faults."""

from __future__ import annotations

import click
import httpx
import orjson
import pytest
from click.testing import CliRunner

from simulator import AdminClient, SimulatorProcess, SimulatorServer, run_simulator_in_thread
from simulator.command import simulate, simulate_evolve, simulate_faults

from .conftest import ADMIN_TOKEN, API_KEY


def test_simulate_is_a_click_command() -> None:
    assert isinstance(simulate, click.Command)
    assert simulate.name == "simulate"
    names = {p.name for p in simulate.params}
    assert {"port", "api_key", "cvms", "seed", "admin_token", "faults", "fault_seed"} <= names


@pytest.mark.subprocess
def test_simulate_serves_in_a_child_process() -> None:
    with SimulatorProcess(
        api_key=API_KEY,
        cvms=120,
        seed=4,
        admin_token=ADMIN_TOKEN,
        faults=["503:page=2,times=1", {"kind": "429", "page": 3, "retry_after": "none"}],
        startup_timeout=60,
    ) as proc:
        assert proc.base_url.startswith("http://127.0.0.1:")
        assert proc.base_url.endswith("/api/v1")
        with httpx.Client(base_url=proc.base_url, headers={"X-API-Key": API_KEY}) as client:
            body = client.get("/cvms/paginated", params={"page_size": 100}).json()
            assert body["total"] == 120
            assert client.get("/cvms/paginated", params={"page": 2}).status_code == 503
            r = client.get("/cvms/paginated", params={"page": 3})
            assert r.status_code == 429
            assert "retry-after" not in r.headers
            assert client.get("/cvms/paginated").status_code == 200
            assert client.get("/apps", headers={"X-API-Key": "nope"}).status_code == 401
        with AdminClient(proc.base_url, ADMIN_TOKEN) as admin:
            step = admin.evolve({"create": 2}, seed=1)
            assert step["step"] == 0
            assert admin.state()["cvms"] == 122
            assert admin.changes() == [step["changes"]]
    assert proc.process is None


def test_simulate_refuses_bad_arguments() -> None:
    runner = CliRunner()
    result = runner.invoke(simulate, ["--api-key", "k", "--fault", "418"])
    assert result.exit_code == 2
    assert "unknown fault kind" in result.output
    result = runner.invoke(simulate, ["--api-key", "k", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "loopback" in result.output
    result = runner.invoke(simulate, ["--cvms", "10"])
    assert result.exit_code == 2
    assert "--api-key" in result.output
    result = runner.invoke(simulate, ["--api-key", "k", "--cvms", "200001"])
    assert result.exit_code == 2


def test_evolve_and_faults_commands() -> None:
    with SimulatorServer(api_key=API_KEY, cvms=80, admin_token=ADMIN_TOKEN) as server:
        runner = CliRunner()
        base = ["--url", server.base_url, "--admin-token", ADMIN_TOKEN]
        result = runner.invoke(simulate_evolve, [*base, "--create", "2", "--rename", "1"])
        assert result.exit_code == 0, result.output
        out = orjson.loads(result.output)
        assert out["step"] == 0
        kinds = sorted(c["change_type"] for c in out["changes"] if c["entity_type"] == "cvm")
        assert kinds == ["created", "created", "updated"]
        result = runner.invoke(simulate_evolve, [*base, "--seed", "5", "--total", "6"])
        assert result.exit_code == 0, result.output
        assert server.fleet.changes()[1] == orjson.loads(result.output)["changes"]
        result = runner.invoke(simulate_evolve, ["--url", server.base_url, "--admin-token", "x"])
        assert result.exit_code != 0
        assert "403" in str(result.exception)

        result = runner.invoke(simulate_faults, [*base, "--set", "503:times=1", "--seed", "3"])
        assert result.exit_code == 0, result.output
        assert orjson.loads(result.output)["faults"][0]["kind"] == "503"
        with httpx.Client(base_url=server.base_url, headers={"X-API-Key": API_KEY}) as client:
            assert client.get("/apps").status_code == 503
            assert client.get("/apps").status_code == 200
        result = runner.invoke(simulate_faults, [*base, "--clear"])
        assert orjson.loads(result.output)["faults"] == []
        result = runner.invoke(simulate_faults, [*base, "--add", "nonsense"])
        assert result.exit_code == 2


def test_run_simulator_in_thread_gives_the_base_url() -> None:
    with run_simulator_in_thread(api_key=API_KEY, cvms=15) as base_url:
        r = httpx.get(f"{base_url}/cvms/paginated", headers={"X-API-Key": API_KEY})
        assert r.json()["total"] == 15
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base_url}/cvms/paginated", headers={"X-API-Key": API_KEY})
