"""One function per chart: aggregated figures in, a :class:`Chart` (inline SVG and its numbers) out.

No function here touches a database: :mod:`sync.report.data` reads the aggregates from the BI
views, and these functions only draw them, so each is tested with figures made up in the test.

Why matplotlib's SVG backend: it draws on a machine with no display and no browser, the SVG it
writes needs no script and no font or file from elsewhere (so the page works offline), and with
``svg.fonttype = 'none'`` every label stays text in the page (it can be searched, selected, read by
a screen reader and checked by a test). Hand-written SVG would need its own axis ticks, date
labels and legend layout; matplotlib has them right already. The figure is drawn with
:class:`~matplotlib.figure.Figure` directly (not ``pyplot``): no global state, no GUI backend.

A chart whose window holds too little (fewer than two days or runs, no cost known) has no SVG but
a sentence saying why (:attr:`Chart.note`); its numbers are still listed.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, ParamSpec, cast

import matplotlib
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

#: Stable SVG output: ids from a fixed salt, text kept as text, no creation date.
SVG_RC: dict[str, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "phala-sync-report",
    "font.size": 9.0,
}
#: Colours in a fixed order, so that one name keeps its colour across charts of one report.
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
P = ParamSpec("P")
OTHER = "(other)"
UNKNOWN = "(unknown)"
#: The age buckets of the age chart, in order (the data layer names its rows with these).
AGE_BUCKETS = ("< 1 day", "1-30 days", "30-90 days", "90-365 days", "> 1 year", "unknown")
WIDTH, HEIGHT = 7.2, 3.2  # inches; 100 dpi in the SVG's viewBox
WIDE = 11.0  # the charts that span the page
OUTLIER = 4  # a run whose bars are this many times the others' is clipped (see _clip_outliers)


@dataclass(frozen=True)
class Table:
    """A chart's numbers: column names and rows of plain values (the first column is the key)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]


@dataclass(frozen=True)
class Chart:
    """One chart of the report: an id for the page, a title, SVG or a note, and its numbers."""

    key: str
    title: str
    table: Table
    svg: str | None = None
    note: str | None = None
    marks: int = field(default=0)  # data marks drawn (lines, bars); 0 without an SVG


# ----------------------------------------------------------------------------- small helpers
def _label(value: str | None) -> str:
    return UNKNOWN if value is None or value == "" else str(value)


def pivot(
    rows: Sequence[tuple[Any, str | None, Any]],
) -> tuple[list[Any], dict[str, list[Any]]]:
    """``(key, group, value)`` rows -> the sorted keys and one list of values per group.

    A group with no row for a key counts 0 there (a day on which no CVM had that status). Groups
    come in order of their total, largest first, :data:`OTHER` and :data:`UNKNOWN` last.
    """
    keys = sorted({r[0] for r in rows})
    index = {k: i for i, k in enumerate(keys)}
    groups: dict[str, list[Any]] = {}
    for key, group, value in rows:
        name = _label(group)
        series = groups.setdefault(name, [0] * len(keys))
        series[index[key]] += value
    order = sorted(
        groups,
        key=lambda g: (g in (OTHER, UNKNOWN), -float(sum(groups[g])), g),
    )
    return keys, {g: groups[g] for g in order}


def _figure(
    rows: int = 1, height: float = HEIGHT, width: float = WIDTH
) -> tuple[Figure, list[Any]]:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)
    return fig, [a for (a,) in axes]


def _date_axis(ax: Any) -> None:
    locator = AutoDateLocator(minticks=3, maxticks=8)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    formatter = ConciseDateFormatter(locator, show_offset=False)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_formatter(formatter)


def _finish(ax: Any, *, xlabel: str | None, ylabel: str, legend: bool = True) -> None:
    if xlabel:
        ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=6, integer=False))
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)


def styled() -> contextlib.AbstractContextManager[None]:
    """The report's matplotlib settings (:data:`SVG_RC`), for drawing and for saving."""
    return cast("contextlib.AbstractContextManager[None]", matplotlib.rc_context(cast(Any, SVG_RC)))


def _drawn(func: Callable[P, Chart]) -> Callable[P, Chart]:
    """Draw the chart under :func:`styled` (text sizes are read when an artist is made)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Chart:
        with styled():
            return func(*args, **kwargs)

    return wrapper


_XML_HEAD = re.compile(r"^.*?(?=<svg)", re.DOTALL)


def to_svg(fig: Figure, title: str) -> str:
    """The figure as an inline ``<svg>`` element (no XML prolog, no date), titled for readers."""
    buffer = io.StringIO()
    with styled():
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    svg = _XML_HEAD.sub("", buffer.getvalue(), count=1)
    return svg.replace("<svg ", f'<svg role="img" aria-label="{_escape_attr(title)}" ', 1).strip()


def _escape_attr(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def _mark(artist: Any, chart: str, n: int) -> int:
    """Name a data artist ``mark-<chart>-<n>`` in the SVG (the browser test counts them)."""
    artist.set_gid(f"mark-{chart}-{n}")
    return n + 1


def _colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _to_datetime(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


def _number(value: Any) -> float:
    return float(value) if value is not None else 0.0


# ------------------------------------------------------------------------------- time series
def _too_few_days(days: Sequence[date]) -> str | None:
    if len(days) >= 2:
        return None
    if not days:
        return "No day in this window has a successful run: nothing to draw."
    return (
        f"Only one day ({days[0].isoformat()}) in this window: a trend needs at least two days "
        "of runs. Its figures are listed below."
    )


def _lines(
    key: str,
    title: str,
    rows: Sequence[tuple[date, str | None, Any]],
    *,
    ylabel: str,
    stacked: bool = False,
    first_column: str = "day",
    width: float = WIDTH,
) -> Chart:
    days, groups = pivot(rows)
    table = Table(
        (first_column, *groups, "total"),
        tuple(
            (d.isoformat(), *(g[i] for g in groups.values()), sum(g[i] for g in groups.values()))
            for i, d in enumerate(days)
        ),
    )
    note = _too_few_days(days)
    if note:
        return Chart(key, title, table, note=note)
    fig, (ax,) = _figure(width=width)
    x = [_to_datetime(d) for d in days]
    n = 0
    if stacked:
        polys = ax.stackplot(
            x,
            *[[_number(v) for v in g] for g in groups.values()],
            labels=list(groups),
            colors=[_colour(i) for i in range(len(groups))],
            alpha=0.85,
        )
        for poly in polys:
            n = _mark(poly, key, n)
    else:
        for i, (name, values) in enumerate(groups.items()):
            (line,) = ax.plot(
                x,
                [_number(v) for v in values],
                label=name,
                color=_colour(i),
                marker="o",
                markersize=3,
                linewidth=1.6,
            )
            n = _mark(line, key, n)
    _date_axis(ax)
    _finish(ax, xlabel="day (UTC, end of day)", ylabel=ylabel)
    return Chart(key, title, table, svg=to_svg(fig, title), marks=n)


@_drawn
def fleet_by_status(rows: Sequence[tuple[date, str | None, int]]) -> Chart:
    """CVMs per day by status, from ``(day, status, cvms)``."""
    return _lines(
        "fleet-status",
        "Fleet size over time, by status",
        rows,
        ylabel="CVMs (count)",
        width=WIDE,
    )


@_drawn
def workspaces_over_time(rows: Sequence[tuple[date, str | None, int]]) -> Chart:
    """CVMs per day by workspace (the largest few and the rest), from ``(day, workspace, cvms)``."""
    return _lines(
        "workspaces-time",
        "CVMs by workspace over time",
        rows,
        ylabel="CVMs (count)",
        stacked=True,
    )


@_drawn
def capacity_by_region(
    rows: Sequence[tuple[date, str | None, int, float, int]],
) -> Chart:
    """vCPUs, memory and GPUs per day by region, from ``(day, region, vcpus, memory_gb, gpus)``."""
    key, title = "capacity-region", "Capacity over time, by region"
    measures = (
        ("vCPUs", "vCPUs (count)"),
        ("memory GiB", "memory (GiB)"),
        ("GPUs", "GPUs (count)"),
    )
    pivots = [pivot([(r[0], r[1], r[2 + m]) for r in rows]) for m in range(3)]
    days = pivots[0][0]
    regions = list(pivots[0][1])
    columns = ["day"] + [f"{region} {name}" for region in regions for name, _ in measures]
    body = []
    for i, d in enumerate(days):
        cells: list[Any] = [d.isoformat()]
        for region in regions:
            cells.extend(_round(p[1][region][i]) for p in pivots)
        body.append(tuple(cells))
    table = Table(tuple(columns), tuple(body))
    note = _too_few_days(days)
    if note:
        return Chart(key, title, table, note=note)
    fig, axes = _figure(3, height=6.4, width=WIDE)
    x = [_to_datetime(d) for d in days]
    n = 0
    for m, ((_, ylabel), ax) in enumerate(zip(measures, axes, strict=True)):
        for i, region in enumerate(regions):
            (line,) = ax.plot(
                x,
                [_number(v) for v in pivots[m][1][region]],
                color=_colour(i),
                linewidth=1.6,
                marker="o",
                markersize=3,
                label=region if m == 0 else None,
            )
            n = _mark(line, key, n)
        _date_axis(ax)
        _finish(ax, xlabel="day (UTC, end of day)" if m == 2 else None, ylabel=ylabel)
    return Chart(key, title, table, svg=to_svg(fig, title), marks=n)


def _round(value: Any) -> Any:
    return round(value, 2) if isinstance(value, float) else value


# ------------------------------------------------------------------------------------- bars
def _hbars(
    key: str, title: str, rows: Sequence[tuple[str, int]], *, xlabel: str, label: str, empty: str
) -> Chart:
    table = Table((label, "CVMs"), tuple((name, count) for name, count in rows))
    if not rows or not any(count for _, count in rows):
        return Chart(key, title, table, note=empty)
    fig, (ax,) = _figure(height=max(2.0, 0.32 * len(rows) + 0.9))
    names = [name for name, _ in rows][::-1]
    counts = [count for _, count in rows][::-1]
    bars = ax.barh(names, counts, color=_colour(0))
    n = 0
    for bar in bars:
        n = _mark(bar, key, n)
    ax.bar_label(bars, padding=2, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return Chart(key, title, table, svg=to_svg(fig, title), marks=n)


@_drawn
def workspaces_now(rows: Sequence[tuple[str | None, int]]) -> Chart:
    """Live CVMs by workspace now, largest first, from ``(workspace, cvms)``."""
    return _hbars(
        "workspaces-now",
        "CVMs by workspace now",
        [(_label(name), count) for name, count in rows],
        xlabel="live CVMs (count)",
        label="workspace",
        empty="No live CVM: no workspace to show.",
    )


@_drawn
def age_buckets(rows: Sequence[tuple[str, int]]) -> Chart:
    """Live CVMs by age, from ``(bucket, cvms)`` with buckets named as in :data:`AGE_BUCKETS`."""
    counts = dict(rows)
    unknown = set(counts) - set(AGE_BUCKETS)
    if unknown:
        raise ValueError(f"unknown age buckets {sorted(unknown)}; known: {AGE_BUCKETS}")
    shown = [(b, int(counts.get(b, 0))) for b in AGE_BUCKETS if b != "unknown" or counts.get(b)]
    return _hbars(
        "age",
        "Live CVMs by age (since created_at)",
        shown,
        xlabel="live CVMs (count)",
        label="age",
        empty="No live CVM with a known creation time: no ages to show.",
    )


@_drawn
def changes_per_run(rows: Sequence[tuple[int, datetime, int, int, int, int]]) -> Chart:
    """CVMs created, updated, deleted and restored per succeeded run.

    From ``(run_id, started_at, created, updated, deleted, restored)``, in run order.
    """
    key, title = "changes-run", "CVMs created, updated and deleted per run"
    kinds = ("created", "updated", "deleted", "restored")
    table = Table(
        ("run", "started (UTC)", *kinds),
        tuple((r[0], r[1].strftime("%Y-%m-%d %H:%M"), *r[2:6]) for r in rows),
    )
    if len(rows) < 2:
        return Chart(
            key,
            title,
            table,
            note=(
                "Only one succeeded run in this window: changes per run need at least two runs."
                if rows
                else "No succeeded run in this window."
            ),
        )
    fig, (ax,) = _figure(width=WIDE)
    positions = list(range(len(rows)))
    width = 0.8 / len(kinds)
    n = 0
    for k, kind in enumerate(kinds):
        values = [r[2:][k] for r in rows]
        bars = ax.bar(
            [p + (k - 1.5) * width for p in positions],
            values,
            width,
            label=kind,
            color=_colour(k),
        )
        for bar in bars:
            n = _mark(bar, key, n)
    _clip_outliers(ax, [[r[2:][k] for k in range(len(kinds))] for r in rows])
    ax.set_xticks(positions, [f"{r[0]}\n{r[1]:%m-%d}" for r in rows])
    if len(rows) > 16:  # keep every few labels readable
        for i, label in enumerate(ax.get_xticklabels()):
            label.set_visible(i % (len(rows) // 12 + 1) == 0)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    _finish(ax, xlabel="run (id, start date UTC)", ylabel="CVMs (count)")
    return Chart(key, title, table, svg=to_svg(fig, title), marks=n)


def _clip_outliers(ax: Any, values: Sequence[Sequence[int]]) -> None:
    """Keep a few towering bars (a first run creates the whole fleet) from flattening the rest.

    When the tallest bar is more than :data:`OUTLIER` times the tallest of the others' runs, the
    y axis stops above the others and each clipped bar is labelled with its value.
    """
    peaks = [max(v, default=0) for v in values]
    ordered = sorted(peaks)
    if len(ordered) < 3 or ordered[-1] <= OUTLIER * max(ordered[-2], 1):
        return
    top = ordered[-2] * 1.3 + 1
    ax.set_ylim(0, top)
    for patch in ax.patches:
        if patch.get_height() > top:
            ax.annotate(
                f"{int(patch.get_height())} (clipped)",
                (patch.get_x() + patch.get_width() / 2, top),
                xytext=(0, -10),
                textcoords="offset points",
                ha="left",
                va="top",
                fontsize=8,
            )


@_drawn
def daily_cost(rows: Sequence[tuple[date, str | None, Decimal]], *, unpriced: int) -> Chart:
    """Estimated compute cost per day by workspace, from ``(day, workspace, cost_usd)``.

    Only the figures with a known price are summed (an unknown price is NULL, never 0); a figure
    is one day of one group of ``fleet_daily_usage`` (status, region, workspace, instance type).
    ``unpriced`` says how many were left out, and the note below the chart says so.
    """
    key, title = "cost-workspace", "Estimated daily compute cost, by workspace"
    days, groups = pivot(rows)
    table = Table(
        ("day", *groups, "total"),
        tuple(
            (
                d.isoformat(),
                *(_money(g[i]) for g in groups.values()),
                _money(sum((Decimal(g[i]) for g in groups.values()), Decimal(0))),
            )
            for i, d in enumerate(days)
        ),
    )
    left_out = (
        f" {unpriced} daily figures of a group with a CVM of unknown price are left out"
        " (not counted as 0)."
        if unpriced
        else ""
    )
    if not rows:
        return Chart(
            key,
            title,
            table,
            note="No cost data: no CVM in this window has a known price." + left_out,
        )
    if len(days) < 2:
        return Chart(key, title, table, note=(_too_few_days(days) or "") + left_out)
    fig, (ax,) = _figure()
    x = [_to_datetime(d) for d in days]
    bottom = [0.0] * len(days)
    n = 0
    for i, (name, values) in enumerate(groups.items()):
        heights = [_number(v) for v in values]
        bars = ax.bar(x, heights, 0.8, bottom=bottom, label=name, color=_colour(i))
        for bar in bars:
            n = _mark(bar, key, n)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    _date_axis(ax)
    _finish(ax, xlabel="day (UTC)", ylabel="compute cost (USD per day)")
    return Chart(key, title, table, svg=to_svg(fig, title), note=left_out.strip() or None, marks=n)


def _money(value: Any) -> str:
    return f"{Decimal(value):.2f}"
