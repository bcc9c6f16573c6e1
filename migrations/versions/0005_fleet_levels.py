"""fleet_levels (the fleet per group over time, kept by runs); fleet_daily on it; fleet_daily_usage

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 18:00:00.000000

- ``fleet_levels`` (models/fleet.py): each target's live CVMs summed per group (status, region,
  workspace, instance type) over the intervals in which the group did not change, with the
  groups' capacity and their summed compute and storage rates. Every run that changes the CVM
  history keeps it (``sync.store.fleet_levels``); here it is filled from the whole history at
  once, by the same definition: per group, the running sum of the states that open and close at
  each instant; a target with no live CVM gets a row of zeros from its first succeeded run.
- ``fleet_daily`` (a view of 0003) is rebuilt on that table: the same name, columns and
  figures, read from one row per group and interval instead of every CVM state. Its ``region`` is
  now the node's region as each run saw it (0003 joined today's ``nodes.region`` for every day).
- ``fleet_daily_usage`` (new view): ``cvm_daily_usage`` summed per day and group, from the same
  table: what the report's cost chart and BI dashboards read at fleet scale.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
#: Phala's public storage price, USD per GB-hour (as in 0003).
STORAGE_USD_PER_GB_HOUR = "0.000139"
_GROUP = "target, status, region, workspace_id, instance_type"
_INT64 = ("-9223372036854775808", "9223372036854775807")


class _Dialect(NamedTuple):
    day: Callable[[str], str]  # a timestamp's UTC date
    hours: Callable[[str, str], str]  # hours from a to b
    money: Callable[[str], str]  # a USD amount as exposed
    price: Callable[[str], str]  # a decimal-text column as a number (NULL if not one)
    greatest: str
    least: str


def _sqlite_price(col: str) -> str:
    is_decimal = (
        f"{col} <> '' AND {col} NOT GLOB '*[^0-9.]*' AND {col} NOT GLOB '*.*.*' "
        f"AND {col} NOT GLOB '.*' AND {col} NOT GLOB '*.' AND length({col}) <= 40"
    )
    return f"CASE WHEN {is_decimal} THEN CAST({col} AS REAL) END"


PG = _Dialect(
    day=lambda x: f"CAST(({x}) AT TIME ZONE 'UTC' AS DATE)",
    hours=lambda a, b: f"(EXTRACT(EPOCH FROM ({b}) - ({a})) / 3600)",
    money=lambda x: f"CAST({x} AS NUMERIC(18,6))",
    price=lambda col: (
        f"CASE WHEN {col} ~ '^[0-9]{{1,12}}(\\.[0-9]+)?$' THEN CAST({col} AS NUMERIC) END"
    ),
    greatest="GREATEST",
    least="LEAST",
)
SQLITE = _Dialect(
    day=lambda x: f"date({x})",
    hours=lambda a, b: f"((julianday({b}) - julianday({a})) * 24.0)",
    money=lambda x: f"CASE WHEN ({x}) IS NOT NULL THEN printf('%.6f', {x}) END",
    price=_sqlite_price,
    greatest="MAX",
    least="MIN",
)


def _bounds(d: _Dialect) -> str:
    """Each target's succeeded runs: first and last finish, and their UTC days (as in 0003)."""
    return f"""bounds AS (
  SELECT target, MIN(finished_at) AS first_at, MAX(finished_at) AS last_at,
         {d.day("MIN(finished_at)")} AS first_day, {d.day("MAX(finished_at)")} AS last_day
  FROM sync_runs WHERE status = 'succeeded' AND finished_at IS NOT NULL
  GROUP BY target
)"""


_CALENDAR = """calendar(target, day, last_day) AS (
  SELECT target, first_day, last_day FROM bounds
  UNION ALL
  SELECT target, date(day, '+1 day'), last_day FROM calendar WHERE day < last_day
)"""


def _fleet_daily(d: _Dialect, pg: bool) -> str:
    if pg:
        days = f"""CROSS JOIN LATERAL generate_series(
  CAST({d.greatest}({d.day("l.valid_from")}, b.first_day) AS TIMESTAMP),
  CAST(COALESCE({d.day("l.valid_to")} - 1, b.last_day) AS TIMESTAMP), INTERVAL '1 day') AS s(at)"""
        day, int_, calendar = "CAST(s.at AS DATE)", "CAST({} AS BIGINT)", ""
    else:
        days = f"""JOIN calendar c ON c.target = l.target
  AND c.day >= {d.greatest}({d.day("l.valid_from")}, b.first_day)
  AND (l.valid_to IS NULL OR c.day < {d.day("l.valid_to")})"""
        day, int_, calendar = "c.day", "{}", f",\n{_CALENDAR}"
    return f"""
WITH RECURSIVE {_bounds(d)}{calendar}
SELECT {day} AS day, l.target, l.status, l.region, l.workspace_id, l.instance_type,
       {int_.format("l.cvms")} AS cvms, {int_.format("l.vcpus")} AS vcpus,
       l.memory_mb / 1024.0 AS memory_gb, {int_.format("l.disk_gb")} AS disk_gb,
       {int_.format("l.gpus")} AS gpus
FROM fleet_levels l
JOIN bounds b ON b.target = l.target
{days}"""


def _fleet_daily_usage(d: _Dialect, pg: bool) -> str:
    """Per day and group. A day strictly inside a level is 24 of its hours with nothing to sum
    (no other level of the group has time in it); only the days where a level starts or ends, at
    most two per level, are cut into hours and summed per group."""
    if pg:
        inside = """CROSS JOIN LATERAL generate_series(
  CAST(GREATEST(l.from_day + 1, l.first_day) AS TIMESTAMP),
  CAST(LEAST(l.end_day - 1, l.last_day) AS TIMESTAMP), INTERVAL '1 day') AS c(at)"""
        inside_day, calendar = "CAST(c.at AS DATE)", ""
        edges = "CROSS JOIN (VALUES (0), (1)) AS e(k)"
        edge = "CASE e.k WHEN 0 THEN l.from_day ELSE l.end_day END"
        start = f"(CAST({edge} AS TIMESTAMP) AT TIME ZONE 'UTC')"
        end = f"(CAST({edge} + 1 AS TIMESTAMP) AT TIME ZONE 'UTC')"
    else:
        inside = """JOIN calendar c ON c.target = l.target
  AND c.day > l.from_day AND c.day < l.end_day"""
        inside_day, calendar = "c.day", f",\n{_CALENDAR}"
        edges = "JOIN (SELECT 0 AS k UNION ALL SELECT 1) AS e ON 1 = 1"
        edge = "CASE e.k WHEN 0 THEN l.from_day ELSE l.end_day END"
        start, end = edge, f"date({edge}, '+1 day')"
    hours = d.hours(f"{d.greatest}(l.valid_from, {start})", f"{d.least}(l.valid_end, {end})")
    run = "status = 'running'"
    return f"""
WITH RECURSIVE {_bounds(d)}{calendar},
spans AS (
  SELECT l.*, {d.least}(COALESCE(l.valid_to, b.last_at), b.last_at) AS valid_end,
         b.first_day, b.last_day
  FROM fleet_levels l
  JOIN bounds b ON b.target = l.target
  WHERE l.cvms > 0
),
levels AS (
  SELECT s.*, {d.day("s.valid_from")} AS from_day, {d.day("s.valid_end")} AS end_day FROM spans s
),
edges AS (
  SELECT {edge} AS day, l.target, l.status, l.region, l.workspace_id, l.instance_type,
         l.cvms, l.compute_rate, l.compute_unknown, l.storage_rate, l.storage_unknown,
         {hours} AS hours
  FROM levels l
  {edges}
  WHERE {edge} BETWEEN l.first_day AND l.last_day AND (e.k = 0 OR l.end_day <> l.from_day)
)
SELECT {inside_day} AS day, l.target, l.status, l.region, l.workspace_id, l.instance_type,
       l.cvms * 24 AS existing_hours,
       CASE WHEN l.{run} THEN l.cvms * 24 ELSE 0 END AS running_hours,
       CASE WHEN NOT (l.{run} AND l.compute_unknown > 0)
            THEN {d.money(f"CASE WHEN l.{run} THEN 24 * l.compute_rate ELSE 0 END")}
       END AS compute_cost_usd,
       CASE WHEN l.storage_unknown = 0 THEN {d.money("24 * l.storage_rate")}
       END AS storage_cost_usd
FROM levels l
{inside}
UNION ALL
SELECT day, {_GROUP},
       SUM(cvms * hours),
       SUM(CASE WHEN {run} THEN cvms * hours ELSE 0 END),
       CASE WHEN SUM(CASE WHEN {run} AND compute_unknown > 0 THEN 1 ELSE 0 END) = 0
            THEN {d.money(f"SUM(CASE WHEN {run} THEN hours * compute_rate ELSE 0 END)")}
       END,
       CASE WHEN SUM(CASE WHEN storage_unknown > 0 THEN 1 ELSE 0 END) = 0
            THEN {d.money("SUM(hours * storage_rate)")}
       END
FROM edges
WHERE hours > 0
GROUP BY day, {_GROUP}"""


def view_sql(dialect_name: str) -> dict[str, str]:
    """The SELECT of each view this revision creates, for a dialect."""
    pg = dialect_name == "postgresql"
    d = PG if pg else SQLITE
    return {"fleet_daily": _fleet_daily(d, pg), "fleet_daily_usage": _fleet_daily_usage(d, pg)}


def backfill_sql(dialect_name: str) -> list[str]:
    """Statements that fill an empty ``fleet_levels`` from the whole CVM history."""
    pg = dialect_name == "postgresql"
    d = PG if pg else SQLITE
    # Sums never overflow: PostgreSQL sums NUMERIC, SQLite TOTAL()s (a float, exact below 2**53;
    # its SUM raises on a 64-bit overflow).
    number = "CAST({} AS NUMERIC)" if pg else "{}"
    size_sum = "SUM" if pg else "TOTAL"
    compute = (
        f"COALESCE({d.price('h.hourly_rate_compute')}, "
        f"CASE WHEN h.billing_period = 'hourly' THEN {d.price('h.compute_billing_price')} END)"
    )
    storage = f"COALESCE({d.price('h.hourly_rate_disk')}, h.disk_gb * {STORAGE_USD_PER_GB_HOUR})"
    sizes = (("vcpu", "v"), ("memory_mb", "m"), ("disk_gb", "dk"), ("gpus", "g"))

    def signed(sign: str) -> str:
        known = ", ".join(
            f"{sign}{number.format(c)} AS {a}, "
            f"CASE WHEN {c} IS NULL THEN 0 ELSE {sign}1 END AS {a}n"
            for c, a in sizes
        )
        return (
            f"{known}, {sign}COALESCE(cr, 0) AS cr, "
            f"CASE WHEN cr IS NULL THEN {sign}1 ELSE 0 END AS cu, "
            f"{sign}COALESCE(sr, 0) AS sr, CASE WHEN sr IS NULL THEN {sign}1 ELSE 0 END AS su"
        )

    def known(a: str) -> str:  # NULL when none is known, or beyond 64 bits (absurd values)
        return f"CASE WHEN {a}n > 0 AND {a} BETWEEN {_INT64[0]} AND {_INT64[1]} THEN {a} END"

    columns_ = ("n", "v", "vn", "m", "mn", "dk", "dkn", "g", "gn", "cr", "cu", "sr", "su")
    sizes_ = {"v", "m", "dk", "g"}
    sums = ", ".join(f"{size_sum if a in sizes_ else 'SUM'}({a}) AS {a}" for a in columns_)
    running = ", ".join(
        f"{size_sum if a in sizes_ else 'SUM'}({a}) OVER w AS {a}" for a in columns_
    )
    states = f"""states AS (
  SELECT h.target, h.status, n.region, h.workspace_id, h.instance_type, h.valid_from,
         h.valid_to, h.vcpu, h.memory_mb, h.disk_gb, h.gpus, {compute} AS cr, {storage} AS sr
  FROM cvm_history h
  LEFT JOIN nodes n ON n.node_id = h.node_id
),
deltas AS (
  SELECT {_GROUP}, valid_from AS at, 1 AS n, {signed("")} FROM states
  UNION ALL
  SELECT {_GROUP}, valid_to, -1, {signed("-")} FROM states WHERE valid_to IS NOT NULL
)"""
    columns = (
        f"{_GROUP}, valid_from, valid_to, cvms, vcpus, memory_mb, disk_gb, gpus, "
        "compute_rate, compute_unknown, storage_rate, storage_unknown"
    )
    groups = f"""WITH {states},
changes AS (SELECT {_GROUP}, at, {sums} FROM deltas GROUP BY {_GROUP}, at),
levels AS (
  SELECT {_GROUP}, at, LEAD(at) OVER w AS next_at, {running}
  FROM changes
  WINDOW w AS (PARTITION BY {_GROUP} ORDER BY at ROWS UNBOUNDED PRECEDING)
)
INSERT INTO fleet_levels ({columns})
SELECT {_GROUP}, at, next_at, n, {known("v")}, {known("m")}, {known("dk")}, {known("g")},
       cr, cu, sr, su
FROM levels WHERE n > 0"""
    empty = f"""WITH {states},
firsts AS (
  SELECT target, MIN(started_at) AS at FROM sync_runs WHERE status = 'succeeded' GROUP BY target
),
points AS (
  SELECT target, at, SUM(n) AS n FROM (
    SELECT target, at, n FROM deltas
    UNION ALL
    SELECT target, at, 0 FROM firsts
  ) p GROUP BY target, at
),
totals AS (
  SELECT target, at, LEAD(at) OVER w AS next_at, SUM(n) OVER w AS n
  FROM points
  WINDOW w AS (PARTITION BY target ORDER BY at ROWS UNBOUNDED PRECEDING)
)
INSERT INTO fleet_levels ({columns})
SELECT t.target, NULL, NULL, NULL, NULL, t.at, t.next_at, 0, 0, 0, 0, 0, 0, 0, 0, 0
FROM totals t JOIN firsts f ON f.target = t.target
WHERE t.n = 0 AND t.at >= f.at"""
    return [groups, empty]


def _create_table() -> None:
    op.create_table(
        "fleet_levels",
        sa.Column("level_id", _INT, autoincrement=True, nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=True),
        sa.Column("region", sa.String(), nullable=True),
        sa.Column("workspace_id", sa.String(), nullable=True),
        sa.Column("instance_type", sa.String(), nullable=True),
        sa.Column("valid_from", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("valid_to", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cvms", _INT, nullable=False),
        sa.Column("vcpus", _INT, nullable=True),
        sa.Column("memory_mb", _INT, nullable=True),
        sa.Column("disk_gb", _INT, nullable=True),
        sa.Column("gpus", _INT, nullable=True),
        sa.Column("compute_rate", sa.Numeric(), nullable=False),
        sa.Column("compute_unknown", _INT, nullable=False),
        sa.Column("storage_rate", sa.Numeric(), nullable=False),
        sa.Column("storage_unknown", _INT, nullable=False),
        sa.PrimaryKeyConstraint("level_id", name=op.f("pk_fleet_levels")),
    )
    op.create_index(
        "ix_fleet_levels_target_valid_to", "fleet_levels", ["target", "valid_to"], unique=False
    )


def _revision_0003() -> object:
    """The 0003 module (its file name is not an importable module name)."""
    path = Path(__file__).with_name("0003_bi_views.py")
    spec = importlib.util.spec_from_file_location("phala_sync_migration_0003", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    _create_table()
    dialect = op.get_bind().dialect.name
    for statement in backfill_sql(dialect):
        op.execute(statement)
    op.execute("DROP VIEW fleet_daily")
    for name, select in view_sql(dialect).items():
        op.execute(f"CREATE VIEW {name} AS {select}")


def downgrade() -> None:
    op.execute("DROP VIEW fleet_daily_usage")
    op.execute("DROP VIEW fleet_daily")
    old = _revision_0003().view_sql(op.get_bind().dialect.name)  # type: ignore[attr-defined]
    op.execute(f"CREATE VIEW fleet_daily AS {old['fleet_daily']}")
    op.drop_index("ix_fleet_levels_target_valid_to", table_name="fleet_levels")
    op.drop_table("fleet_levels")
