"""The chart functions, on figures made up here (no database): SVG, labels, numbers, words."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from sync.report import charts

DAYS = [date(2026, 3, 1) + timedelta(days=i) for i in range(5)]


def _marks(chart: charts.Chart) -> int:
    assert chart.svg is not None
    return len(re.findall(rf'<g id="mark-{chart.key}-\d+"', chart.svg))


def _texts(svg: str) -> str:
    """The text of the SVG's <text> elements (svg.fonttype 'none' keeps labels as text)."""
    return " ".join(re.findall(r"<text[^>]*>([^<]*)</text>", svg))


def test_pivot_fills_missing_days_with_zero_and_puts_other_last() -> None:
    rows = [
        (DAYS[0], "running", 3),
        (DAYS[1], "running", 4),
        (DAYS[1], None, 1),
        (DAYS[0], charts.OTHER, 50),
        (DAYS[1], "stopped", 2),
    ]
    keys, groups = charts.pivot(rows)
    assert keys == DAYS[:2]
    assert list(groups) == ["running", "stopped", charts.OTHER, charts.UNKNOWN]
    assert groups["stopped"] == [0, 2]
    assert groups[charts.UNKNOWN] == [0, 1]


def test_fleet_by_status_draws_one_line_per_status_with_labelled_axes() -> None:
    rows = [(d, s, i + k) for i, d in enumerate(DAYS) for k, s in enumerate(["running", "stopped"])]
    chart = charts.fleet_by_status(rows)
    assert chart.svg is not None
    assert chart.note is None
    assert chart.marks == 2 == _marks(chart)
    text = _texts(chart.svg)
    assert "CVMs (count)" in text
    assert "day (UTC, end of day)" in text
    assert "running" in text
    assert "<script" not in chart.svg
    assert 'role="img"' in chart.svg
    assert chart.table.columns == ("day", "stopped", "running", "total")
    assert chart.table.rows[-1] == (DAYS[-1].isoformat(), 5, 4, 9)


def test_one_day_is_said_in_words_with_its_numbers() -> None:
    chart = charts.fleet_by_status([(DAYS[0], "running", 7)])
    assert chart.svg is None
    assert chart.marks == 0
    assert chart.note is not None
    assert "Only one day" in chart.note
    assert chart.table.rows == ((DAYS[0].isoformat(), 7, 7),)


def test_capacity_has_three_panels_with_units_and_rounded_memory() -> None:
    rows = [
        (d, r, 4 * (i + 1), 7.123 * (i + 1), k)
        for i, d in enumerate(DAYS)
        for k, r in enumerate(["us-west-1", "eu-west-1"])
    ]
    chart = charts.capacity_by_region(rows)
    assert chart.svg is not None
    assert _marks(chart) == 6  # 3 measures x 2 regions
    text = _texts(chart.svg)
    for label in ("vCPUs (count)", "memory (GiB)", "GPUs (count)"):
        assert label in text
    assert "us-west-1 memory GiB" in chart.table.columns
    last = dict(zip(chart.table.columns, chart.table.rows[-1], strict=True))
    assert last["us-west-1 memory GiB"] == round(7.123 * 5, 2)
    assert last["eu-west-1 GPUs"] == 1


def test_workspaces_now_bars_largest_first() -> None:
    chart = charts.workspaces_now([("alpha", 9), ("beta", 4), (None, 1), (charts.OTHER, 2)])
    assert chart.svg is not None
    assert _marks(chart) == 4
    assert [r[0] for r in chart.table.rows] == ["alpha", "beta", charts.UNKNOWN, charts.OTHER]
    assert "live CVMs (count)" in _texts(chart.svg)


def test_no_live_cvm_is_said_in_words() -> None:
    chart = charts.workspaces_now([])
    assert chart.svg is None
    assert chart.note == "No live CVM: no workspace to show."


def test_age_buckets_in_order_and_unknown_bucket_refused() -> None:
    chart = charts.age_buckets([("> 1 year", 5), ("< 1 day", 2)])
    assert [r[0] for r in chart.table.rows] == list(charts.AGE_BUCKETS[:-1])
    assert dict(chart.table.rows)["30-90 days"] == 0
    assert _marks(chart) == 5
    with pytest.raises(ValueError, match="unknown age buckets"):
        charts.age_buckets([("2-3 weeks", 1)])


def test_changes_per_run_needs_two_runs() -> None:
    run = (1, datetime(2026, 3, 1, 6, tzinfo=UTC), 5, 1, 0, 0)
    one = charts.changes_per_run([run])
    assert one.svg is None
    assert one.note is not None
    assert "Only one succeeded run" in one.note
    two = charts.changes_per_run([run, (2, datetime(2026, 3, 2, 6, tzinfo=UTC), 0, 3, 2, 1)])
    assert _marks(two) == 8  # 2 runs x 4 kinds
    assert two.table.rows[1] == (2, "2026-03-02 06:00", 0, 3, 2, 1)


def test_daily_cost_sums_known_prices_and_names_the_unpriced() -> None:
    rows = [(d, w, Decimal("1.50") * (i + 1)) for i, d in enumerate(DAYS) for w in ["a", "b"]]
    chart = charts.daily_cost(rows, unpriced=3)
    assert chart.svg is not None
    assert "compute cost (USD per day)" in _texts(chart.svg)
    assert chart.note is not None
    assert "3 daily figures of a group with a CVM of unknown price" in chart.note
    assert chart.table.rows[-1] == (DAYS[-1].isoformat(), "7.50", "7.50", "15.00")


def test_no_cost_data_is_said_in_words() -> None:
    chart = charts.daily_cost([], unpriced=12)
    assert chart.svg is None
    assert chart.note is not None
    assert chart.note.startswith("No cost data")
    assert "12 daily figures" in chart.note


def test_svg_is_stable_for_the_same_figures() -> None:
    rows = [(d, "running", i) for i, d in enumerate(DAYS)]
    assert charts.fleet_by_status(rows).svg == charts.fleet_by_status(rows).svg


def test_a_towering_first_run_is_clipped_and_labelled() -> None:
    runs = [(1, datetime(2026, 3, 1, tzinfo=UTC), 300, 0, 0, 0)] + [
        (i, datetime(2026, 3, i, tzinfo=UTC), 5 + i, 3, 2, 0) for i in range(2, 6)
    ]
    chart = charts.changes_per_run(runs)
    assert chart.svg is not None
    assert "300 (clipped)" in _texts(chart.svg)
    even = charts.changes_per_run([(r[0], r[1], 8, 3, 2, 0) for r in runs])
    assert even.svg is not None
    assert "clipped" not in _texts(even.svg)
