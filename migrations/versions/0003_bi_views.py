"""BI views (current_cvms, cvm_states, fleet_daily, cvm_daily_usage, run_log); hourly rate columns

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 14:00:00.000000

- ``cvms`` and ``cvm_history`` get ``hourly_rate_total``, ``hourly_rate_compute`` and
  ``hourly_rate_disk`` (decimal text as sent, USD per hour). ``cvms`` rows are filled from their
  stored ``raw_json`` by the same rule as the mapper, and each open history row from its ``cvms``
  row, so the first run of this release finds nothing changed. Closed history rows stay NULL
  (unknown: their payloads were not kept).
- Five views, the SQL surface for BI tools (docs/schema.md), with the same names and columns on
  PostgreSQL and SQLite. Their SQL is frozen here: a later change to a view is a new revision.
  A later revision that rebuilds ``cvms``, ``cvm_history``, ``nodes``, ``workspaces``,
  ``creators`` or ``sync_runs`` on SQLite (batch mode) must drop the views first and create them
  again (``drop_views`` and ``create_views`` here).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RATE_COLUMNS = ("hourly_rate_total", "hourly_rate_compute", "hourly_rate_disk")
_RATE_PARTS = (
    ("total", "hourly_rate_total"),
    ("compute", "hourly_rate_compute"),
    ("disk", "hourly_rate_disk"),
)
#: Phala's public storage price, USD per GB-hour, billed while a CVM exists (running or not).
STORAGE_USD_PER_GB_HOUR = "0.000139"
#: Views in creation order (dropped in reverse).
VIEW_NAMES = ("current_cvms", "cvm_states", "fleet_daily", "cvm_daily_usage", "run_log")


class _Dialect(NamedTuple):
    """The few expressions that differ between PostgreSQL and SQLite."""

    day: Callable[[str], str]  # a timestamp's UTC date (DATE / 'YYYY-MM-DD')
    hours: Callable[[str, str], str]  # hours from a to b (timestamps)
    now: str  # the current time, as a timestamp expression
    money: Callable[[str], str]  # a USD amount as exposed (NUMERIC(18,6) / decimal text)
    price: Callable[[str], str]  # a decimal-text column as a number (NULL if not one)
    price_out: Callable[[str], str]  # a decimal-text column as exposed (NULL if not a number)
    greatest: str
    least: str
    real: Callable[[str], str]  # an integer expression as exact/real number for division


def _pg_price(col: str) -> str:
    return f"CASE WHEN {col} ~ '^[0-9]{{1,12}}(\\.[0-9]+)?$' THEN CAST({col} AS NUMERIC) END"


def _sqlite_is_decimal(col: str) -> str:
    return (
        f"{col} <> '' AND {col} NOT GLOB '*[^0-9.]*' AND {col} NOT GLOB '*.*.*' "
        f"AND {col} NOT GLOB '.*' AND {col} NOT GLOB '*.' AND length({col}) <= 40"
    )


PG = _Dialect(
    day=lambda x: f"CAST(({x}) AT TIME ZONE 'UTC' AS DATE)",
    hours=lambda a, b: f"(EXTRACT(EPOCH FROM ({b}) - ({a})) / 3600)",
    now="CURRENT_TIMESTAMP",
    money=lambda x: f"CAST({x} AS NUMERIC(18,6))",
    price=_pg_price,
    price_out=lambda col: f"CAST({_pg_price(col)} AS NUMERIC(18,6))",
    greatest="GREATEST",
    least="LEAST",
    real=lambda x: f"CAST({x} AS NUMERIC)",
)
SQLITE = _Dialect(
    day=lambda x: f"date({x})",
    hours=lambda a, b: f"((julianday({b}) - julianday({a})) * 24.0)",
    now="'now'",
    money=lambda x: f"CASE WHEN ({x}) IS NOT NULL THEN printf('%.6f', {x}) END",
    price=lambda col: f"CASE WHEN {_sqlite_is_decimal(col)} THEN CAST({col} AS REAL) END",
    price_out=lambda col: f"CASE WHEN {_sqlite_is_decimal(col)} THEN {col} END",
    greatest="MAX",
    least="MIN",
    real=lambda x: f"CAST({x} AS REAL)",
)


def _current_cvms(d: _Dialect) -> str:
    return f"""
SELECT c.target, c.vm_uuid, c.name, c.status, c.instance_type, c.vcpu,
       c.memory_mb / 1024.0 AS memory_gb, c.disk_gb, c.gpus, n.region, n.name AS node_name,
       c.workspace_id, w.name AS workspace_name, cr.username AS creator_username, c.created_at,
       {d.hours("c.created_at", d.now)} / 24 AS age_days,
       {d.greatest}(COALESCE(r.finished_at, c.last_seen_at), c.last_seen_at) AS last_seen_at,
       c.billing_period,
       {d.price_out("c.compute_billing_price")} AS compute_billing_price,
       {d.price_out("c.hourly_rate_total")} AS hourly_rate_total,
       {d.price_out("c.hourly_rate_compute")} AS hourly_rate_compute,
       {d.price_out("c.hourly_rate_disk")} AS hourly_rate_disk
FROM cvms c
LEFT JOIN nodes n ON n.node_id = c.node_id
LEFT JOIN workspaces w ON w.workspace_id = c.workspace_id
LEFT JOIN creators cr ON cr.creator_id = c.creator_id
LEFT JOIN (
  SELECT target, MAX(finished_at) AS finished_at FROM sync_runs
  WHERE status = 'succeeded' AND listing_complete
  GROUP BY target
) r ON r.target = c.target
WHERE c.deleted_at IS NULL"""


def _cvm_states(d: _Dialect) -> str:
    return f"""
SELECT h.history_id, h.vm_uuid, h.target, h.name, h.status, h.instance_type, h.vcpu,
       h.memory_mb / 1024.0 AS memory_gb, h.disk_gb, h.gpus, h.node_id, n.region,
       h.workspace_id, h.creator_id, h.billing_period,
       {d.price_out("h.compute_billing_price")} AS compute_billing_price,
       {d.price_out("h.hourly_rate_total")} AS hourly_rate_total,
       {d.price_out("h.hourly_rate_compute")} AS hourly_rate_compute,
       {d.price_out("h.hourly_rate_disk")} AS hourly_rate_disk,
       h.valid_from, h.valid_to,
       {d.hours("h.valid_from", f"COALESCE(h.valid_to, {d.now})")} AS hours,
       h.run_id,
       CASE WHEN LAG(h.history_id) OVER w IS NULL THEN 'created'
            WHEN LAG(h.valid_to) OVER w = h.valid_from THEN 'updated'
            ELSE 'restored' END AS change_type
FROM cvm_history h
LEFT JOIN nodes n ON n.node_id = h.node_id
WINDOW w AS (PARTITION BY h.vm_uuid ORDER BY h.valid_from, h.history_id)"""


def _bounds(d: _Dialect) -> str:
    """Each target's succeeded runs: first and last finish, and their UTC days."""
    return f"""bounds AS (
  SELECT target, MIN(finished_at) AS first_at, MAX(finished_at) AS last_at,
         {d.day("MIN(finished_at)")} AS first_day, {d.day("MAX(finished_at)")} AS last_day
  FROM sync_runs WHERE status = 'succeeded' AND finished_at IS NOT NULL
  GROUP BY target
)"""


_SIZES = (("vcpu", "v"), ("memory_mb", "m"), ("disk_gb", "dk"), ("gpus", "g"))
_GROUP = "target, status, region, workspace_id, instance_type"


def _fleet_daily(d: _Dialect, pg: bool) -> str:
    plus = ", ".join(
        f"{c} AS {a}, CASE WHEN {c} IS NULL THEN 0 ELSE 1 END AS {a}n" for c, a in _SIZES
    )
    minus = ", ".join(f"-{c}, CASE WHEN {c} IS NULL THEN 0 ELSE -1 END" for c, _ in _SIZES)
    sums = ", ".join(f"SUM({a}) AS {a}, SUM({a}n) AS {a}n" for _, a in _SIZES)
    running = ", ".join(f"SUM({a}) OVER w AS {a}, SUM({a}n) OVER w AS {a}n" for _, a in _SIZES)
    if pg:
        calendar = """calendar AS (
  SELECT b.target, CAST(s.day AS DATE) AS day FROM bounds b
  CROSS JOIN LATERAL generate_series(CAST(b.first_day AS TIMESTAMP),
                                     CAST(b.last_day AS TIMESTAMP), INTERVAL '1 day') AS s(day)
)"""
        expand = """JOIN bounds b ON b.target = l.target
CROSS JOIN LATERAL generate_series(
  CAST(l.day AS TIMESTAMP), CAST(COALESCE(l.next_day - 1, b.last_day) AS TIMESTAMP),
  INTERVAL '1 day') AS s(at)"""
        day = "CAST(s.at AS DATE)"
        int_ = "CAST({} AS BIGINT)"
    else:
        calendar = """calendar(target, day, last_day) AS (
  SELECT target, first_day, last_day FROM bounds
  UNION ALL
  SELECT target, date(day, '+1 day'), last_day FROM calendar WHERE day < last_day
)"""
        expand = """JOIN calendar c ON c.target = l.target AND c.day >= l.day
  AND (l.next_day IS NULL OR c.day < l.next_day)"""
        day = "c.day"
        int_ = "{}"
    return f"""
WITH RECURSIVE {_bounds(d)},
{calendar},
spans AS (
  SELECT h.target, h.status, n.region, h.workspace_id, h.instance_type,
         {d.greatest}({d.day("h.valid_from")}, b.first_day) AS from_day,
         {d.day("h.valid_to")} AS to_day,
         h.vcpu, h.memory_mb, h.disk_gb, h.gpus
  FROM cvm_history h
  JOIN bounds b ON b.target = h.target
  LEFT JOIN nodes n ON n.node_id = h.node_id
),
deltas AS (
  SELECT {_GROUP}, from_day AS day, 1 AS n, {plus}
  FROM spans WHERE to_day IS NULL OR to_day > from_day
  UNION ALL
  SELECT {_GROUP}, to_day, -1, {minus}
  FROM spans WHERE to_day > from_day
),
changes AS (
  SELECT {_GROUP}, day, SUM(n) AS n, {sums}
  FROM deltas GROUP BY {_GROUP}, day
),
levels AS (
  SELECT {_GROUP}, day, SUM(n) OVER w AS cvms, {running}, LEAD(day) OVER w AS next_day
  FROM changes
  WINDOW w AS (PARTITION BY {_GROUP} ORDER BY day ROWS UNBOUNDED PRECEDING)
),
totals AS (
  SELECT c.target, c.day,
         SUM(COALESCE(t.n, 0)) OVER (PARTITION BY c.target ORDER BY c.day
                                     ROWS UNBOUNDED PRECEDING) AS cvms
  FROM calendar c
  LEFT JOIN (SELECT target, day, SUM(n) AS n FROM changes GROUP BY target, day) t
    ON t.target = c.target AND t.day = c.day
)
SELECT {day} AS day, l.target, l.status, l.region, l.workspace_id, l.instance_type,
       {int_.format("l.cvms")} AS cvms,
       {int_.format("CASE WHEN l.vn > 0 THEN l.v END")} AS vcpus,
       CASE WHEN l.mn > 0 THEN l.m / 1024.0 END AS memory_gb,
       {int_.format("CASE WHEN l.dkn > 0 THEN l.dk END")} AS disk_gb,
       {int_.format("CASE WHEN l.gn > 0 THEN l.g END")} AS gpus
FROM levels l
{expand}
WHERE l.cvms > 0
UNION ALL
SELECT day, target, NULL, NULL, NULL, NULL, 0, 0, 0, 0, 0 FROM totals WHERE cvms = 0"""


def _cvm_daily_usage(d: _Dialect, pg: bool) -> str:
    if pg:
        pieces_from = f"""FROM spans s
  CROSS JOIN LATERAL generate_series(
    CAST({d.greatest}({d.day("s.valid_from")}, s.first_day) AS TIMESTAMP),
    CAST({d.least}({d.day("s.valid_end")}, s.last_day) AS TIMESTAMP),
    INTERVAL '1 day') AS c(at)"""
        day = "CAST(c.at AS DATE)"
        start = "(c.at AT TIME ZONE 'UTC')"
        end = "((c.at + INTERVAL '1 day') AT TIME ZONE 'UTC')"
        calendar = ""
    else:
        pieces_from = f"""FROM spans s
  JOIN calendar c ON c.target = s.target
    AND c.day BETWEEN {d.day("s.valid_from")} AND {d.day("s.valid_end")}"""
        day = "c.day"
        start = "c.day"
        end = "date(c.day, '+1 day')"
        calendar = """calendar(target, day, last_day) AS (
  SELECT target, first_day, last_day FROM bounds
  UNION ALL
  SELECT target, date(day, '+1 day'), last_day FROM calendar WHERE day < last_day
),"""
    storage = f"{d.real('h.disk_gb')} * {STORAGE_USD_PER_GB_HOUR}"
    compute_rate = (
        f"COALESCE({d.price('h.hourly_rate_compute')}, "
        f"CASE WHEN h.billing_period = 'hourly' THEN {d.price('h.compute_billing_price')} END)"
    )
    return f"""
WITH RECURSIVE {_bounds(d)},
{calendar}
spans AS (
  SELECT h.target, h.vm_uuid, h.workspace_id, n.region, h.instance_type, h.status,
         h.valid_from, {d.least}(COALESCE(h.valid_to, b.last_at), b.last_at) AS valid_end,
         b.first_day, b.last_day,
         {compute_rate} AS compute_rate,
         COALESCE({d.price("h.hourly_rate_disk")}, {storage}) AS storage_rate
  FROM cvm_history h
  JOIN bounds b ON b.target = h.target
  LEFT JOIN nodes n ON n.node_id = h.node_id
),
pieces AS (
  SELECT s.target, s.vm_uuid, s.workspace_id, s.region, s.instance_type, s.status,
         s.valid_from, s.compute_rate, s.storage_rate, {day} AS day,
         {d.hours(f"{d.greatest}(s.valid_from, {start})", f"{d.least}(s.valid_end, {end})")}
           AS hours
  {pieces_from}
),
ranked AS (
  SELECT p.*, ROW_NUMBER() OVER (PARTITION BY p.target, p.vm_uuid, p.day
                                 ORDER BY p.valid_from DESC) AS rn
  FROM pieces p WHERE p.hours > 0
)
SELECT day, target, vm_uuid,
       MAX(CASE WHEN rn = 1 THEN workspace_id END) AS workspace_id,
       MAX(CASE WHEN rn = 1 THEN region END) AS region,
       MAX(CASE WHEN rn = 1 THEN instance_type END) AS instance_type,
       SUM(hours) AS existing_hours,
       SUM(CASE WHEN status = 'running' THEN hours ELSE 0 END) AS running_hours,
       CASE WHEN SUM(CASE WHEN status = 'running' AND compute_rate IS NULL THEN 1 ELSE 0 END) = 0
            THEN {d.money("SUM(CASE WHEN status = 'running' THEN hours * compute_rate ELSE 0 END)")}
       END AS compute_cost_usd,
       CASE WHEN SUM(CASE WHEN storage_rate IS NULL THEN 1 ELSE 0 END) = 0
            THEN {d.money("SUM(hours * storage_rate)")}
       END AS storage_cost_usd
FROM ranked
GROUP BY day, target, vm_uuid"""


def _run_log(d: _Dialect) -> str:
    return f"""
SELECT id AS run_id, target, api_version, status, started_at, finished_at,
       {d.hours("started_at", "finished_at")} * 3600 AS duration_seconds,
       seen, created, updated, deleted, restored, unchanged, quarantined, listing_complete, error
FROM sync_runs"""


def view_sql(dialect_name: str) -> dict[str, str]:
    """The SELECT of each view for a dialect (``postgresql`` or ``sqlite``)."""
    pg = dialect_name == "postgresql"
    d = PG if pg else SQLITE
    return {
        "current_cvms": _current_cvms(d),
        "cvm_states": _cvm_states(d),
        "fleet_daily": _fleet_daily(d, pg),
        "cvm_daily_usage": _cvm_daily_usage(d, pg),
        "run_log": _run_log(d),
    }


def create_views() -> None:
    for name, select in view_sql(op.get_bind().dialect.name).items():
        op.execute(f"CREATE VIEW {name} AS {select}")


def drop_views() -> None:
    for name in reversed(VIEW_NAMES):
        op.execute(f"DROP VIEW IF EXISTS {name}")


def _rate_parts(raw_json: str) -> dict[str, Any] | None:
    """The mapper's rule (sync.versions.v2026_01_21.hourly_rate_fields) on a stored payload."""
    try:
        item = json.loads(raw_json)
    except ValueError:
        return None
    if not isinstance(item, dict) or "hourly_rate" not in item:
        return None
    rate = item["hourly_rate"]
    parts = rate if isinstance(rate, dict) else {"total": rate}
    return {
        name: value if isinstance(value := parts.get(part), str) else None
        for part, name in _RATE_PARTS
    }


def _fill_rates() -> None:
    """Fill the rate columns of ``cvms`` from raw_json, and of open history rows from ``cvms``."""
    conn = op.get_bind()
    cvms = sa.table(
        "cvms", sa.column("vm_uuid"), sa.column("raw_json"), *map(sa.column, RATE_COLUMNS)
    )
    rows = conn.execute(
        sa.select(cvms.c.vm_uuid, cvms.c.raw_json).where(cvms.c.raw_json.like('%"hourly_rate"%'))
    ).all()
    updates = [
        {"key": vm_uuid, **parts}
        for vm_uuid, raw_json in rows
        if raw_json is not None and (parts := _rate_parts(raw_json)) is not None
    ]
    if updates:
        conn.execute(
            sa.update(cvms)
            .where(cvms.c.vm_uuid == sa.bindparam("key"))
            .values({c: sa.bindparam(c) for c in RATE_COLUMNS}),
            updates,
        )
    setters = ", ".join(
        f"{c} = (SELECT c.{c} FROM cvms c WHERE c.vm_uuid = cvm_history.vm_uuid)"
        for c in RATE_COLUMNS
    )
    op.execute(
        f"UPDATE cvm_history SET {setters} WHERE valid_to IS NULL AND EXISTS "
        "(SELECT 1 FROM cvms c WHERE c.vm_uuid = cvm_history.vm_uuid AND c.deleted_at IS NULL)"
    )


def upgrade() -> None:
    for table in ("cvms", "cvm_history"):
        with op.batch_alter_table(table) as batch:
            for column in RATE_COLUMNS:
                batch.add_column(sa.Column(column, sa.String(), nullable=True))
    _fill_rates()
    create_views()


def downgrade() -> None:
    drop_views()
    for table in ("cvm_history", "cvms"):
        with op.batch_alter_table(table) as batch:
            for column in reversed(RATE_COLUMNS):
                batch.drop_column(column)
