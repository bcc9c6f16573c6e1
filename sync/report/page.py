"""The report's one HTML file: a header, the charts with their numbers, the latest runs.

Self-contained: the styles are inline, the charts inline SVG, and there is no script, link, image,
font or frame. A Content-Security-Policy of ``default-src 'none'`` (styles inline only) makes a
browser refuse any request the page might still try to make, so it works the same offline.
Every chart's numbers are a ``<table>`` in a ``<details>`` below it, marked with
``data-chart="<key>"`` and each row with ``data-key`` (the day, bucket or name), so they can be
read, copied and checked.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sync.report.charts import Chart, Table

CSP = "default-src 'none'; style-src 'unsafe-inline'"

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d1d1f;
       background: #fafafa; }
header { background: #20232a; color: #f5f5f5; padding: 16px 28px; }
header h1 { margin: 0 0 6px 0; font-size: 22px; }
header dl { display: grid; grid-template-columns: max-content auto; gap: 2px 14px; margin: 0;
            font-size: 13px; }
header dt { color: #a0a4ad; }
header dd { margin: 0; }
main { padding: 12px 28px 40px; display: grid; grid-template-columns: repeat(auto-fill,
       minmax(640px, 1fr)); gap: 18px; }
section { background: #fff; border: 1px solid #e3e3e3; border-radius: 6px; padding: 10px 14px; }
section.wide { grid-column: 1 / -1; }
h2 { font-size: 16px; margin: 4px 0 8px; }
svg { max-width: 100%; height: auto; }
p.note { color: #5a5a5a; font-style: italic; margin: 8px 0; }
details summary { cursor: pointer; color: #3b5b92; font-size: 13px; }
table { border-collapse: collapse; font-size: 12px; margin-top: 6px; }
th, td { border-bottom: 1px solid #eee; padding: 3px 8px; text-align: right;
         font-variant-numeric: tabular-nums; }
th:first-child, td:first-child { text-align: left; }
.numbers-wrap { overflow-x: auto; }
td.error { text-align: left; max-width: 420px; white-space: normal; color: #a02020; }
"""


@dataclass(frozen=True)
class Header:
    """What the report covers and when it was made."""

    title: str
    target: str
    since: date | None
    until: date | None
    api_version: str | None
    generated_at: datetime


@dataclass(frozen=True)
class RunRow:
    """One line of the latest-runs table (a row of the ``run_log`` view)."""

    run_id: int
    started_at: datetime
    duration_seconds: float | None
    seen: int
    created: int
    updated: int
    deleted: int
    restored: int
    quarantined: int
    status: str
    error: str | None


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return _e(value)


def table_html(chart_key: str, table: Table) -> str:
    """A chart's numbers as a table marked for readers and tests (raw values in ``data-value``)."""
    head = "".join(f"<th>{_e(c)}</th>" for c in table.columns)
    body = []
    for row in table.rows:
        cells = "".join(
            f'<td data-col="{_e(c)}" data-value="{_e(v)}">{_cell(v)}</td>'
            for c, v in zip(table.columns, row, strict=True)
        )
        body.append(f'<tr data-key="{_e(row[0])}">{cells}</tr>')
    return (
        f'<div class="numbers-wrap"><table data-chart="{_e(chart_key)}">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def chart_html(chart: Chart, *, wide: bool = False) -> str:
    parts = [
        f'<section id="{_e(chart.key)}" class="chart{" wide" if wide else ""}"'
        f' data-marks="{chart.marks}">',
        f"<h2>{_e(chart.title)}</h2>",
    ]
    if chart.svg is not None:
        parts.append(f"<figure>{chart.svg}</figure>")
    if chart.note:
        parts.append(f'<p class="note">{_e(chart.note)}</p>')
    parts.append(
        f"<details><summary>Numbers ({len(chart.table.rows)} rows)</summary>"
        f"{table_html(chart.key, chart.table)}</details>"
    )
    parts.append("</section>")
    return "\n".join(parts)


def _duration(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds:,.1f} s"


def runs_html(runs: Sequence[RunRow]) -> str:
    """The latest runs, newest first."""
    columns = (
        "run", "started (UTC)", "duration", "items seen", "created", "updated", "deleted",
        "restored", "quarantined", "status", "error",
    )  # fmt: skip
    if not runs:
        body = f'<tr><td colspan="{len(columns)}">No run in this window.</td></tr>'
    else:
        body = "".join(
            f'<tr data-key="{r.run_id}"><td>{r.run_id}</td>'
            f"<td>{r.started_at:%Y-%m-%d %H:%M:%S}</td><td>{_duration(r.duration_seconds)}</td>"
            + "".join(
                f"<td>{_cell(v)}</td>"
                for v in (r.seen, r.created, r.updated, r.deleted, r.restored, r.quarantined)
            )
            + f'<td>{_e(r.status)}</td><td class="error">{_e(r.error)}</td></tr>'
            for r in runs
        )
    head = "".join(f"<th>{c}</th>" for c in columns)
    return (
        '<section id="runs" class="wide"><h2>Latest runs</h2><div class="numbers-wrap">'
        f'<table data-chart="runs"><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
        "</table></div></section>"
    )


def header_html(header: Header) -> str:
    window = (
        f"{header.since.isoformat()} to {header.until.isoformat()} (UTC days)"
        if header.since and header.until
        else "no successful run yet"
    )
    items = (
        ("target", header.target),
        ("window", window),
        ("API version", header.api_version or "unknown"),
        ("generated at", f"{header.generated_at:%Y-%m-%d %H:%M:%S} UTC"),
    )
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items)
    return f"<header><h1>{_e(header.title)}</h1><dl>{rows}</dl></header>"


def render_page(
    header: Header, charts: Sequence[Chart], runs: Sequence[RunRow], *, wide: Sequence[str] = ()
) -> str:
    """The whole report as one HTML document (``wide``: keys of charts spanning the page)."""
    body = "\n".join(chart_html(c, wide=c.key in wide) for c in charts) or (
        '<section class="wide"><p class="note">No successful run of this target yet: '
        "there is nothing to draw. Run a sync, then make the report again.</p></section>"
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(header.title)}</title><style>{STYLE}</style></head>\n<body>\n"
        f"{header_html(header)}\n<main>\n{body}\n{runs_html(runs)}\n</main>\n</body></html>\n"
    )
