"""`phala-sync report` over the views, without a browser: too little data said in words, errors.

On SQLite and PostgreSQL (the ``engine`` fixture); the browser test covers a long history.
"""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import Engine

from sync.cli import cli
from sync.report.build import build_report
from tests.sync.report.history import TARGET, build_history


def _report(database_url: str, out: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, ["report", "--database-url", database_url, "--out", str(out), *args]
    )
    return result.exit_code, result.output


def test_no_run_yet_says_so(engine: Engine, database_url: str, tmp_path: Path) -> None:
    out = tmp_path / "empty.html"
    code, output = _report(database_url, out)
    assert code == 0, output
    assert "no successful run yet" in output
    page = out.read_text()
    assert "nothing to draw" in page
    assert "<svg" not in page


def test_one_run_is_said_in_words_not_drawn(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    (run,) = build_history(engine, runs=1)
    report = build_report(engine)
    charts = {c.key: c for c in report.charts}
    for key in ("fleet-status", "capacity-region", "workspaces-time", "changes-run"):
        assert charts[key].svg is None, key
        assert charts[key].note, key
        assert charts[key].table.rows, key  # the one day's (or run's) numbers are still listed
    assert "Only one day" in str(charts["fleet-status"].note)
    assert "Only one succeeded run" in str(charts["changes-run"].note)
    # What needs no trend is drawn: the fleet now, and its ages.
    assert charts["workspaces-now"].marks > 0
    assert charts["age"].marks > 0
    assert sum(n for _, n in charts["workspaces-now"].table.rows) == run.counts["cvm"]["seen"]
    assert report.window.since == report.window.until
    assert TARGET in report.html


def test_unknown_target_and_backwards_window_are_usage_errors(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    build_history(engine, runs=2, days_apart=1)
    code, output = _report(database_url, tmp_path / "x.html", "--target", "nope")
    assert code == 2
    assert "no run of target 'nope'" in output
    assert TARGET in output  # the known targets are named
    code, output = _report(
        database_url, tmp_path / "x.html", "--since", "2026-03-05", "--until", "2026-03-01"
    )
    assert code == 2
    assert re.search(r"starts \(2026-03-05\) after it ends \(2026-03-01\)", output)
    code, output = _report(database_url, tmp_path / "x.html", "--since", "March")
    assert code == 2
    assert "is not a day" in output
