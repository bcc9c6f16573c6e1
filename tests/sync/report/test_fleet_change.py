"""The per-run fleet comparison's rows (pure; the flow test reads them from the views)."""

from __future__ import annotations

from sync.report.fleet_change import TOTAL, compare_rows


def test_rows_pair_now_and_before_with_differences_and_a_total() -> None:
    now = [("running", "us-west-1", 5), ("stopped", None, 2), ("running", "eu-west-1", 1)]
    before = [("running", "us-west-1", 7), ("error", "us-west-1", 1)]
    rows = compare_rows(now, before)
    assert rows == [
        {"status": "error", "region": "us-west-1", "previous": 1, "now": 0, "difference": -1},
        {"status": "running", "region": "eu-west-1", "previous": 0, "now": 1, "difference": 1},
        {"status": "running", "region": "us-west-1", "previous": 7, "now": 5, "difference": -2},
        {"status": "stopped", "region": "(unknown)", "previous": 0, "now": 2, "difference": 2},
        {"status": TOTAL, "region": TOTAL, "previous": 8, "now": 8, "difference": 0},
    ]


def test_first_run_has_nothing_before() -> None:
    rows = compare_rows([("running", "r", 3)], [])
    assert rows[-1] == {"status": TOTAL, "region": TOTAL, "previous": 0, "now": 3, "difference": 3}
