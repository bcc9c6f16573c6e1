"""``phala-sync targets`` and ``phala-sync targets retire NAME`` on both databases."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine

from sync.cli import cli
from sync.store.lock import run_lock
from tests.reliability.conftest import new_harness


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No developer's .env takes part."""
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=True)


def test_targets_lists_then_retires(engine: Engine, database_url: str) -> None:
    h = new_harness(engine, size=30)
    assert h.run(target="old").status == "succeeded"
    h.fleet.evolve({"delete": 4}, seed=1)
    assert h.run(target="new").status == "succeeded"

    listed = invoke("targets", "--database-url", database_url, "--json")
    assert listed.exit_code == 0, listed.output
    rows = {r["target"]: r for r in orjson.loads(listed.stdout)}
    assert (rows["old"]["cvms"], rows["new"]["cvms"]) == (30, 26)
    assert not rows["old"]["stale"]
    assert not rows["old"]["retired"]
    stale = orjson.loads(
        invoke("targets", "--database-url", database_url, "--json", "--stale-after", "0").stdout
    )
    assert all(r["stale"] for r in stale)
    text = invoke("targets", "--database-url", database_url).stdout
    assert text.splitlines()[0].split()[:4] == [
        "target",
        "last_success_run_id",
        "last_success_at",
        "cvms",
    ]

    with run_lock(engine, target="old"):
        refused = invoke("targets", "retire", "old", "--database-url", database_url)
    assert refused.exit_code == 1
    assert "a run of target 'old' is in progress" in refused.stderr

    retired = invoke("targets", "retire", "old", "--database-url", database_url, "--json")
    assert retired.exit_code == 0, retired.output
    summary = orjson.loads(retired.stdout)
    assert summary["counts"]["cvm"]["deleted"] == 4
    rows = {
        r["target"]: r
        for r in orjson.loads(invoke("targets", "--database-url", database_url, "--json").stdout)
    }
    assert rows["old"]["retired"]
    assert rows["old"]["cvms"] == 0
    runs = orjson.loads(invoke("runs", "--database-url", database_url, "--json").stdout)
    assert runs[0]["target"] == "old"
    assert runs[0]["deleted"] == 4

    unknown = invoke("targets", "retire", "nobody", "--database-url", database_url)
    assert unknown.exit_code == 1
    assert "no target named 'nobody'" in unknown.stderr
