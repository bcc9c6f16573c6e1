"""The BI views (migrations 0003 and 0005, documented in docs/schema.md) and what reads them.

- :data:`VIEW_NAMES`: the views, the stable SQL surface for BI tools and reports;
- :func:`fleet_series`: the daily series of ``fleet_daily``, summed per day (and one dimension);
- :func:`grant_reader`: read-only access for a PostgreSQL role (SELECT on every table and view
  of the schema, now and as later migrations create them).
"""

from __future__ import annotations

from datetime import date
from typing import Any, Final, Literal

from sqlalchemy import Engine, text

from sync.errors import ConfigError

__all__ = ["FLEET_DIMENSIONS", "VIEW_NAMES", "fleet_series", "grant_reader", "require_postgresql"]

#: The views, in the order docs/schema.md presents them.
VIEW_NAMES: Final = (
    "current_cvms",
    "cvm_states",
    "fleet_daily",
    "cvm_daily_usage",
    "fleet_daily_usage",
    "run_log",
)

Dimension = Literal["status", "region", "workspace", "instance_type"]
#: ``--by`` choices and the ``fleet_daily`` column each one groups by.
FLEET_DIMENSIONS: Final[dict[str, str]] = {
    "status": "status",
    "region": "region",
    "workspace": "workspace_id",
    "instance_type": "instance_type",
}


def fleet_series(
    engine: Engine,
    *,
    target: str | None = None,
    since: date | None = None,
    until: date | None = None,
    by: str | None = None,
) -> list[dict[str, Any]]:
    """``fleet_daily`` summed per day (and per ``by`` dimension), oldest day first.

    Days are UTC dates, both ends included. A day on which a target had no CVM is in the view as
    one row of zeros (NULL dimensions), so the series has no gaps.
    """
    column = FLEET_DIMENSIONS[by] if by is not None else None
    where, params = [], {}
    pg = engine.dialect.name == "postgresql"
    for name, value, op in (("since", since, ">="), ("until", until, "<=")):
        if value is not None:
            where.append(f"day {op} :{name}")
            params[name] = value if pg else value.isoformat()
    if target is not None:
        where.append("target = :target")
        params["target"] = target
    keys = ["day", *([column] if column else [])]
    sql = (
        f"SELECT {', '.join(keys)}, SUM(cvms) AS cvms, SUM(vcpus) AS vcpus, "
        "SUM(memory_gb) AS memory_gb, SUM(disk_gb) AS disk_gb, SUM(gpus) AS gpus "
        "FROM fleet_daily"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + f" GROUP BY {', '.join(keys)} ORDER BY {', '.join(keys)}"
    )
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(text(sql), params)]
    for row in rows:
        row["day"] = row["day"] if isinstance(row["day"], str) else row["day"].isoformat()
        for name in ("cvms", "vcpus", "disk_gb", "gpus"):
            row[name] = None if row[name] is None else int(row[name])
        if row["memory_gb"] is not None:
            row["memory_gb"] = round(float(row["memory_gb"]), 3)
    return rows


def require_postgresql(backend: str) -> None:
    """Refuse read-only grants on a database without roles."""
    if backend != "postgresql":
        raise ConfigError(
            f"grant-reader needs PostgreSQL: {backend} has no roles (give a BI tool a copy of "
            "the SQLite file, or open it read-only: sqlite:///file:PATH?mode=ro&uri=true)"
        )


def grant_reader(engine: Engine, role: str) -> str:
    """Give ``role`` SELECT on every table and view of the database's schema, and nothing else.

    Also sets the schema's default privileges, so that tables and views that later migrations
    (run by the same user as this grant) create are readable too. Returns the schema's name.
    """
    require_postgresql(engine.dialect.name)
    quote = engine.dialect.identifier_preparer.quote
    with engine.begin() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role})
        if exists.first() is None:
            raise ConfigError(
                f"role {role!r} does not exist: create it first, e.g. "
                f"CREATE ROLE {quote(role)} LOGIN PASSWORD '...'"
            )
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        if schema is None:
            raise ConfigError("the connection has no current schema (check its search_path)")
        r, s = quote(role), quote(schema)
        conn.execute(text(f"GRANT USAGE ON SCHEMA {s} TO {r}"))
        conn.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {r}"))
        conn.execute(text(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT SELECT ON TABLES TO {r}"))
    return str(schema)
