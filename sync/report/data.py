"""The report's figures: SQL aggregates over the BI views, and nothing else.

Every function here sends one ``GROUP BY`` (or a handful) to the database and gets back a few rows
per day, status, region, workspace or run: never a row per CVM. The views are the contract of
docs/schema.md (``fleet_daily``, ``fleet_daily_usage``, ``current_cvms``, ``run_log``), so what the
report draws is what a SQL user of the views reads. Days are dates here (the views give a DATE on
PostgreSQL and ``YYYY-MM-DD`` text on SQLite); money comes back as :class:`~decimal.Decimal`.

Workspaces: the largest :data:`TOP_WORKSPACES` (by live CVMs on the window's last day, or by cost
over the window) are shown by name and the rest summed as ``(other)``, in SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.sql.elements import TextClause

from sync.report.charts import OTHER, UNKNOWN
from sync.report.page import RunRow

#: Workspaces shown by name in the workspace and cost charts; the rest are ``(other)``.
TOP_WORKSPACES = 8
#: Default window: this many days up to the latest day with a successful run.
DEFAULT_DAYS = 30
#: Runs listed in the latest-runs table.
LATEST_RUNS = 15


@dataclass(frozen=True)
class Window:
    """The report's scope: one target (or all, as None) and a range of UTC days, both included."""

    target: str | None
    since: date | None
    until: date | None

    @property
    def empty(self) -> bool:
        return self.since is None or self.until is None


def as_date(value: Any) -> date:
    """A view's ``day``: a date on PostgreSQL, ``YYYY-MM-DD`` text on SQLite."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def as_datetime(value: Any) -> datetime:
    """A view's timestamp as an aware UTC datetime (SQLite gives text or naive datetimes)."""
    at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _day_param(conn: Connection, day: date) -> Any:
    # SQLite keeps days as text; binding a date there needs the adapter Python 3.12 deprecates.
    return day.isoformat() if conn.dialect.name == "sqlite" else day


def _time_param(conn: Connection, at: datetime) -> Any:
    if conn.dialect.name == "sqlite":  # the text the store writes: 'YYYY-MM-DD HH:MM:SS.ffffff'
        return at.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")
    return at


def _target_clause(window: Window, column: str = "target") -> str:
    return "" if window.target is None else f" AND {column} = :target"


def _params(conn: Connection, window: Window) -> dict[str, Any]:
    if window.since is None or window.until is None:
        raise ValueError("an empty window has no days to query")
    start = datetime(window.since.year, window.since.month, window.since.day, tzinfo=UTC)
    end = datetime(window.until.year, window.until.month, window.until.day, tzinfo=UTC)
    return {
        "target": window.target,
        "since": _day_param(conn, window.since),
        "until": _day_param(conn, window.until),
        "start": _time_param(conn, start),
        "end": _time_param(conn, end + timedelta(days=1)),
    }


def _rows(conn: Connection, sql: str, params: dict[str, Any]) -> list[Any]:
    statement: TextClause = text(sql)
    return list(conn.execute(statement, {k: v for k, v in params.items() if f":{k}" in sql}))


# ------------------------------------------------------------------------------------ window
def resolve_window(
    conn: Connection, target: str | None, since: date | None, until: date | None
) -> Window:
    """The window to report: ``until`` defaults to the latest day of ``fleet_daily`` (for the
    target), ``since`` to :data:`DEFAULT_DAYS` days before it (not before the first day)."""
    where = "" if target is None else " WHERE target = :target"
    first, last = conn.execute(
        text(f"SELECT MIN(day), MAX(day) FROM fleet_daily{where}"),
        {} if target is None else {"target": target},
    ).one()
    if last is None:
        return Window(target, None, None)
    end = until or as_date(last)
    start = since or max(as_date(first), end - timedelta(days=DEFAULT_DAYS - 1))
    if start > end:
        raise ValueError(f"the window starts ({start}) after it ends ({end})")
    return Window(target, start, end)


def targets(conn: Connection) -> list[str]:
    return [
        str(t) for (t,) in conn.execute(text("SELECT DISTINCT target FROM run_log ORDER BY target"))
    ]


def latest_api_version(conn: Connection, window: Window) -> str | None:
    """The API version of the window's latest succeeded run."""
    sql = (
        "SELECT api_version FROM run_log WHERE status = 'succeeded'"
        f"{_target_clause(window)} ORDER BY started_at DESC, run_id DESC LIMIT 1"
    )
    row = conn.execute(text(sql), {"target": window.target} if window.target else {}).first()
    return None if row is None else str(row[0])


# ------------------------------------------------------------------------------ fleet_daily
def _workspace_names(conn: Connection, window: Window, ids: list[str]) -> dict[str, str]:
    """Workspace id -> a readable, unique label (its name now, or the id)."""
    if not ids:
        return {}
    marks = ", ".join(f":w{i}" for i in range(len(ids)))
    sql = (
        "SELECT workspace_id, MAX(workspace_name) FROM current_cvms"
        f" WHERE workspace_id IN ({marks}){_target_clause(window)} GROUP BY workspace_id"
    )
    params: dict[str, Any] = {f"w{i}": w for i, w in enumerate(ids)} | {"target": window.target}
    names = {str(w): n for w, n in _rows(conn, sql, params)}
    labels = {w: str(names.get(w) or w) for w in ids}
    counts: dict[str, int] = {}
    for label in labels.values():
        counts[label] = counts.get(label, 0) + 1
    return {w: (f"{label} ({w})" if counts[label] > 1 else label) for w, label in labels.items()}


def _label_workspaces(
    conn: Connection, window: Window, rows: list[Any]
) -> list[tuple[Any, str, Any]]:
    ids = sorted({str(w) for _, w, _ in rows if w not in (OTHER, UNKNOWN)})
    labels = _workspace_names(conn, window, ids)
    return [(k, labels.get(str(w), str(w)), v) for k, w, v in rows]


_WS = f"COALESCE(workspace_id, '{UNKNOWN}')"


@dataclass(frozen=True)
class FleetDaily:
    """The three charts' figures from ``fleet_daily``, read in one query."""

    status: list[tuple[date, str | None, int]]
    capacity: list[tuple[date, str | None, int, float, int]]
    workspaces: list[tuple[date, str, int]]


def fleet_daily_figures(conn: Connection, window: Window) -> FleetDaily:
    """CVMs by day and status, capacity by day and region, CVMs by day and workspace.

    One statement, so the view is computed once: its window's rows are a CTE used three times
    (PostgreSQL and SQLite both materialize a CTE referenced more than once), grouped three ways
    and put together with ``UNION ALL``; the largest workspaces (on the last day) are picked from
    the same CTE, the rest summed as ``(other)``.
    """
    tc = _target_clause(window)
    sql = (
        f"WITH base AS (SELECT day, status, region, {_WS} AS ws, cvms, vcpus, memory_gb, gpus"
        f" FROM fleet_daily WHERE day BETWEEN :since AND :until{tc}),"
        " top AS (SELECT ws FROM base WHERE day = :until GROUP BY ws"
        f" ORDER BY SUM(cvms) DESC, ws LIMIT {TOP_WORKSPACES})"
        " SELECT 's' AS kind, day, status AS k, SUM(cvms), NULL, NULL, NULL FROM base"
        " GROUP BY day, status"
        " UNION ALL SELECT 'r', day, region, SUM(cvms), SUM(vcpus), SUM(memory_gb), SUM(gpus)"
        " FROM base GROUP BY day, region"
        f" UNION ALL SELECT 'w', day, CASE WHEN ws IN (SELECT ws FROM top) THEN ws"
        f" ELSE '{OTHER}' END AS w, SUM(cvms), NULL, NULL, NULL FROM base GROUP BY day, w"
    )
    status: list[tuple[date, str | None, int]] = []
    capacity: list[tuple[date, str | None, int, float, int]] = []
    spaces: list[tuple[date, str, int]] = []
    for kind, day, key, cvms, vcpus, memory, gpus in _rows(conn, sql, _params(conn, window)):
        d = as_date(day)
        if kind == "s":
            status.append((d, key, int(cvms)))
        elif kind == "r":
            capacity.append((d, key, int(vcpus or 0), round(float(memory or 0), 2), int(gpus or 0)))
        else:
            spaces.append((d, str(key), int(cvms)))
    return FleetDaily(status, capacity, _label_workspaces(conn, window, spaces))


# ----------------------------------------------------------------------------- current_cvms
def workspaces_now(conn: Connection, window: Window) -> list[tuple[str, int]]:
    """Live CVMs of the largest workspaces now, largest first, and ``(other)`` for the rest."""
    tc = _target_clause(window)
    params = {"target": window.target}
    sql = (
        f"SELECT {_WS}, COUNT(*) AS n FROM current_cvms WHERE 1 = 1{tc}"
        f" GROUP BY {_WS} ORDER BY n DESC, {_WS} LIMIT {TOP_WORKSPACES}"
    )
    top = [(str(w), int(n)) for w, n in _rows(conn, sql, params)]
    (total,) = conn.execute(
        text(f"SELECT COUNT(*) FROM current_cvms WHERE 1 = 1{tc}"),
        {"target": window.target} if window.target else {},
    ).one()
    rest = int(total) - sum(n for _, n in top)
    labelled = [
        (w, lab, n) for w, lab, n in _label_workspaces(conn, window, [(w, w, n) for w, n in top])
    ]
    result = [(label, n) for _, label, n in labelled]
    if rest:
        result.append((OTHER, rest))
    return result


#: Age buckets of :data:`sync.report.charts.AGE_BUCKETS`, as a SQL CASE over ``age_days``.
AGE_CASE = (
    "CASE WHEN age_days IS NULL THEN 'unknown'"
    " WHEN age_days < 1 THEN '< 1 day' WHEN age_days < 30 THEN '1-30 days'"
    " WHEN age_days < 90 THEN '30-90 days' WHEN age_days < 365 THEN '90-365 days'"
    " ELSE '> 1 year' END"
)


def age_buckets(conn: Connection, window: Window) -> list[tuple[str, int]]:
    sql = (
        f"SELECT {AGE_CASE} AS bucket, COUNT(*) FROM current_cvms"
        f" WHERE 1 = 1{_target_clause(window)} GROUP BY bucket"
    )
    return [(str(b), int(n)) for b, n in _rows(conn, sql, {"target": window.target})]


# -------------------------------------------------------------------------- fleet_daily_usage
def daily_cost(conn: Connection, window: Window) -> tuple[list[tuple[date, str, Decimal]], int]:
    """Compute cost per day of the costliest workspaces over the window and ``(other)``.

    Sums only the figures with a known price; returns those sums and the count of daily group
    figures whose price is unknown (NULL cost). One pass over ``fleet_daily_usage`` (the groups'
    sums; ``cvm_daily_usage``, one row per CVM and day, is for drilling down, not for charts).
    """
    tc = _target_clause(window)
    sql = (
        f"WITH per AS (SELECT day, {_WS} AS ws, SUM(compute_cost_usd) AS cost,"
        " SUM(CASE WHEN compute_cost_usd IS NULL THEN 1 ELSE 0 END) AS unpriced"
        f" FROM fleet_daily_usage WHERE day BETWEEN :since AND :until{tc} GROUP BY day, {_WS}),"
        " top AS (SELECT ws FROM per WHERE cost IS NOT NULL GROUP BY ws"
        f" ORDER BY SUM(cost) DESC, ws LIMIT {TOP_WORKSPACES})"
        f" SELECT day, CASE WHEN ws IN (SELECT ws FROM top) THEN ws ELSE '{OTHER}' END AS w,"
        " SUM(cost), SUM(unpriced) FROM per GROUP BY day, w"
    )
    found = _rows(conn, sql, _params(conn, window))
    rows = [(as_date(d), w, _decimal(c)) for d, w, c, _ in found if c is not None]
    unpriced = sum(int(u or 0) for *_, u in found)
    return _label_workspaces(conn, window, rows), unpriced


def _decimal(value: Any) -> Decimal:
    # PostgreSQL: NUMERIC -> Decimal. SQLite sums decimal text as REAL: back to cents.
    if isinstance(value, Decimal):
        return value
    return Decimal(str(value)).quantize(Decimal("0.000001"))


# ---------------------------------------------------------------------------------- run_log
def changes_per_run(
    conn: Connection, window: Window
) -> list[tuple[int, datetime, int, int, int, int]]:
    """The CVM counts of each succeeded run that started within the window."""
    sql = (
        "SELECT run_id, started_at, created, updated, deleted, restored FROM run_log"
        " WHERE status = 'succeeded' AND started_at >= :start AND started_at < :end"
        f"{_target_clause(window)} ORDER BY started_at, run_id"
    )
    return [
        (int(r), as_datetime(s), int(c or 0), int(u or 0), int(d or 0), int(x or 0))
        for r, s, c, u, d, x in _rows(conn, sql, _params(conn, window))
    ]


def latest_runs(conn: Connection, window: Window, limit: int = LATEST_RUNS) -> list[RunRow]:
    """The latest runs (any status) that started before the window's end, newest first."""
    params: dict[str, Any] = {"target": window.target}
    until = ""
    if window.until is not None:
        end = datetime(window.until.year, window.until.month, window.until.day, tzinfo=UTC)
        params["end"] = _time_param(conn, end + timedelta(days=1))
        until = " AND started_at < :end"
    sql = (
        "SELECT run_id, started_at, duration_seconds, seen, created, updated, deleted, restored,"
        f" quarantined, status, error FROM run_log WHERE 1 = 1{until}{_target_clause(window)}"
        f" ORDER BY started_at DESC, run_id DESC LIMIT {int(limit)}"
    )
    return [
        RunRow(
            run_id=int(r[0]),
            started_at=as_datetime(r[1]),
            duration_seconds=None if r[2] is None else float(r[2]),
            seen=int(r[3] or 0),
            created=int(r[4] or 0),
            updated=int(r[5] or 0),
            deleted=int(r[6] or 0),
            restored=int(r[7] or 0),
            quarantined=int(r[8] or 0),
            status=str(r[9]),
            error=r[10],
        )
        for r in _rows(conn, sql, params)
    ]
