"""``phala-sync fleet``: the daily series of fleet_daily, as a table or JSON."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine

from sync.cli import cli
from sync.clock import SteppingClock, use_clock
from tests.reliability.conftest import new_harness
from tests.sync.store.views_oracle import History

START = datetime(2026, 5, 3, 8, 0, tzinfo=UTC)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=True)


@pytest.fixture
def synced(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Runs on days 0, 3 and 4; the CLI arguments that point at the database."""
    monkeypatch.chdir(tmp_path)
    h = new_harness(engine, size=30, seed=11)
    clock = SteppingClock(START, 1.0)
    with use_clock(clock):
        h.run()
        for day in (3, 4):
            clock.jump(START + timedelta(days=day))
            h.fleet.evolve({"delete": 3, "create": 1, "restart": 2}, seed=day)
            h.run()
    return ["--database-url", engine.url.render_as_string(hide_password=False)]


def test_fleet_prints_every_day_with_the_fleet_s_size(engine: Engine, synced: list[str]) -> None:
    expected = Counter[str]()
    by_status = Counter[tuple[str, str | None]]()
    for key, figures in History(engine).fleet_daily().items():
        expected[key[0].isoformat()] += figures[0]
        by_status[(key[0].isoformat(), key[2])] += figures[0]
    rows = orjson.loads(invoke("fleet", *synced, "--json").output)
    assert [r["day"] for r in rows] == [
        (START + timedelta(days=i)).date().isoformat() for i in range(5)
    ]
    assert {r["day"]: r["cvms"] for r in rows} == dict(expected)
    assert rows[0]["cvms"] == 30
    assert rows[-1]["cvms"] < 30

    text = invoke("fleet", *synced).output
    assert text.splitlines()[0].split() == ["day", "cvms", "vcpus", "memory_gb", "disk_gb", "gpus"]
    assert len(text.splitlines()) == 2 + 5

    status = orjson.loads(invoke("fleet", *synced, "--by", "status", "--json").output)
    assert {(r["day"], r["status"]): r["cvms"] for r in status} == dict(by_status)
    window = ["--since", "2026-05-04", "--until", "2026-05-06", "--json"]
    assert [r["day"] for r in orjson.loads(invoke("fleet", *synced, *window).output)] == [
        "2026-05-04", "2026-05-05", "2026-05-06"]  # fmt: skip
    other = invoke("fleet", *synced, "--target", "nobody").output.strip()
    assert other.startswith("no days yet")


def test_bad_days_are_named(engine: Engine, synced: list[str]) -> None:
    bad = invoke("fleet", *synced, "--since", "May 4")
    assert bad.exit_code == 2
    assert "'May 4' is not a day such as 2026-04-15" in bad.output
    reversed_ = invoke("fleet", *synced, "--since", "2026-05-06", "--until", "2026-05-04")
    assert reversed_.exit_code == 1
    assert "--since 2026-05-06 is after --until 2026-05-04" in reversed_.output
