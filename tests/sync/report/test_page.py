"""The HTML page: self-contained, a header, each chart with its numbers, the latest runs."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from sync.report.charts import Chart, Table
from sync.report.page import CSP, Header, RunRow, render_page

HEADER = Header(
    title="phala-sync fleet report: prod <eu>",
    target="prod <eu>",
    since=date(2026, 3, 1),
    until=date(2026, 3, 30),
    api_version="2026-01-21",
    generated_at=datetime(2026, 3, 30, 12, 0, tzinfo=UTC),
)
DRAWN = Chart(
    "fleet-status",
    "Fleet size over time",
    Table(("day", "running", "total"), (("2026-03-29", 3, 3), ("2026-03-30", 1234, 1234))),
    svg='<svg role="img"><g id="mark-fleet-status-0"><path d="M0 0"/></g></svg>',
    marks=1,
)
WORDS = Chart("age", "Ages", Table(("age", "CVMs"), ()), note="No live CVM: nothing to show.")
RUN = RunRow(7, datetime(2026, 3, 30, 6, tzinfo=UTC), 12.5, 1234, 3, 4, 1, 0, 2, "failed", "a<b")


def test_page_is_self_contained_and_has_no_script() -> None:
    page = render_page(HEADER, [DRAWN, WORDS], [RUN])
    assert page.startswith("<!DOCTYPE html>")
    assert f'content="{CSP}"' in page
    for needle in ("<script", "<link", "<img", "<iframe", "http://", "https://", "url("):
        assert needle not in page, needle


def test_header_names_target_window_version_and_time_escaped() -> None:
    page = render_page(HEADER, [DRAWN], [])
    assert "prod &lt;eu&gt;" in page
    assert "prod <eu>" not in page
    assert "2026-03-01 to 2026-03-30 (UTC days)" in page
    assert "2026-01-21" in page
    assert "2026-03-30 12:00:00 UTC" in page


def test_each_chart_has_its_numbers_in_details_and_words_when_empty() -> None:
    page = render_page(HEADER, [DRAWN, WORDS], [RUN])
    section = page.split('<section id="fleet-status"', 1)[1].split("</section>", 1)[0]
    assert 'data-marks="1"' in section
    assert "<details><summary>Numbers (2 rows)</summary>" in section
    assert '<tr data-key="2026-03-30">' in section
    assert '<td data-col="running" data-value="1234">1,234</td>' in section
    ages = page.split('<section id="age"', 1)[1].split("</section>", 1)[0]
    assert "<svg" not in ages
    assert '<p class="note">No live CVM: nothing to show.</p>' in ages


def test_runs_table_shows_duration_counts_status_and_escaped_error() -> None:
    page = render_page(HEADER, [], [RUN])
    runs = page.split('<section id="runs"', 1)[1]
    row = re.search(r'<tr data-key="7">(.*?)</tr>', runs)
    assert row is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))
    assert cells == ["7", "2026-03-30 06:00:00", "12.5 s", "1,234", "3", "4", "1", "0", "2",
                     "failed", "a&lt;b"]  # fmt: skip
    assert "nothing to draw" in page  # no chart: said in words
