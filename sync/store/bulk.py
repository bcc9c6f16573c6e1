"""The fastest correct bulk insert per dialect, chosen in one place.

PostgreSQL: ``COPY ... FROM STDIN`` through psycopg 3 (about 3x an executemany upsert here).
SQLite: ``executemany`` of one INSERT (the sqlite3 module's C loop).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import JSON, Connection, Table, insert


@functools.cache
def _json_columns(table: Table) -> frozenset[str]:
    return frozenset(c.name for c in table.columns if isinstance(c.type, JSON))


def copy_rows(
    conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """COPY tuples (values in ``columns`` order, JSON already text) into ``table``: PostgreSQL."""
    dbapi: Any = conn.connection.driver_connection
    quoted = ", ".join(f'"{c}"' for c in columns)
    with dbapi.cursor() as cur, cur.copy(f'COPY "{table.name}" ({quoted}) FROM STDIN') as copy:
        for row in rows:
            copy.write_row(row)


def insert_tuples(
    conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert tuples (values in ``columns`` order, JSON already text) by the dialect's fastest
    path."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        copy_rows(conn, table, columns, rows)
    else:
        conn.execute(insert(table), [dict(zip(columns, r, strict=True)) for r in rows])


def bulk_insert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert dict rows that all have the same keys, by the dialect's fastest path."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(insert(table), list(rows))
        return
    columns = list(rows[0])
    values = _getter(columns)
    idx = [i for i, c in enumerate(columns) if c in _json_columns(table)]
    if not idx:
        copy_rows(conn, table, columns, [values(r) for r in rows])
        return
    dumps = orjson.dumps

    def encode(row: dict[str, Any]) -> list[Any]:
        out = list(values(row))
        for i in idx:
            if out[i] is not None:
                out[i] = dumps(out[i]).decode()
        return out

    copy_rows(conn, table, columns, [encode(r) for r in rows])


def _getter(columns: list[str]) -> Callable[[dict[str, Any]], Sequence[Any]]:
    """A row's values in ``columns`` order, read in C (``itemgetter``), always as a tuple."""
    if len(columns) == 1:
        (only,) = columns
        return lambda row: (row[only],)
    return itemgetter(*columns)


def analyze(conn: Connection, table: Table) -> None:
    """PostgreSQL: refresh the planner's statistics of ``table`` (inside the transaction)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f'ANALYZE "{table.name}"')
