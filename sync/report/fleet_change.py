"""The fleet by status and region now and at the target's previous successful run.

Two ``GROUP BY`` queries over the BI views: ``current_cvms`` for now, ``cvm_states`` as of the
previous successful run's end (the states valid then) for before. The rows are what the flow's
per-run table artifact shows, with the differences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, text

TOTAL = "(all)"


@dataclass(frozen=True)
class FleetChange:
    """The comparison, and which run "previous" is (None: this is the target's first run)."""

    previous_run_id: int | None
    rows: tuple[dict[str, Any], ...]


def _previous_run(conn: Connection, target: str, run_id: int) -> tuple[int, Any] | None:
    row = conn.execute(
        text(
            "SELECT run_id, finished_at FROM run_log WHERE target = :target"
            " AND status = 'succeeded' AND run_id < :run_id AND finished_at IS NOT NULL"
            " ORDER BY run_id DESC LIMIT 1"
        ),
        {"target": target, "run_id": run_id},
    ).first()
    return None if row is None else (int(row[0]), row[1])


def _key(value: Any) -> str:
    return "(unknown)" if value is None else str(value)


def compare_rows(
    now: Sequence[tuple[Any, Any, int]], before: Sequence[tuple[Any, Any, int]]
) -> list[dict[str, Any]]:
    """``(status, region, cvms)`` now and before -> rows with the difference, and a total row."""
    counts: dict[tuple[str, str], list[int]] = {}
    for index, rows in enumerate((before, now)):
        for status, region, n in rows:
            counts.setdefault((_key(status), _key(region)), [0, 0])[index] += int(n)
    out = [
        {"status": s, "region": r, "previous": b, "now": a, "difference": a - b}
        for (s, r), (b, a) in sorted(counts.items())
    ]
    before_total = sum(b for b, _ in counts.values())
    now_total = sum(a for _, a in counts.values())
    out.append(
        {
            "status": TOTAL,
            "region": TOTAL,
            "previous": before_total,
            "now": now_total,
            "difference": now_total - before_total,
        }
    )
    return out


def _counts(conn: Connection, sql: str, params: dict[str, Any]) -> list[tuple[Any, Any, int]]:
    """``(status, region, cvms)`` rows of a ``GROUP BY status, region`` count query."""
    return [(s, r, int(n)) for s, r, n in conn.execute(text(sql), params)]


def fleet_change(engine: Engine, target: str, run_id: int) -> FleetChange:
    """The fleet of ``target`` by status and region after run ``run_id`` and after the previous
    successful run (nothing before a first run)."""
    with engine.connect() as conn:
        now = _counts(
            conn,
            "SELECT status, region, COUNT(*) FROM current_cvms WHERE target = :target"
            " GROUP BY status, region",
            {"target": target},
        )
        previous = _previous_run(conn, target, run_id)
        before: list[tuple[Any, Any, int]] = []
        if previous is not None:
            before = _counts(
                conn,
                "SELECT status, region, COUNT(*) FROM cvm_states WHERE target = :target"
                " AND valid_from <= :at AND (valid_to IS NULL OR valid_to > :at)"
                " GROUP BY status, region",
                {"target": target, "at": previous[1]},
            )
    return FleetChange(None if previous is None else previous[0], tuple(compare_rows(now, before)))
