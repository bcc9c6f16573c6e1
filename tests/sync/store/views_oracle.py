"""An independent computation of the BI views' figures from the history tables and the ledger.

Written from the definitions in docs/schema.md, in Python, one CVM state at a time: what the views'
SQL computes with interval arithmetic, this computes by walking days and states.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Engine, select

from models import Base

STORAGE_RATE = Decimal("0.000139")  # USD per GB-hour (Phala's public pricing)
DAY = timedelta(days=1)


def rows_of(engine: Engine, table: str) -> list[dict[str, Any]]:
    t = Base.metadata.tables[table]
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(t))]


def decimal(text: Any) -> Decimal | None:
    """A decimal-text price, or None when it is not one."""
    if not isinstance(text, str):
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() and value >= 0 and "e" not in text.lower() else None


def rates(h: dict[str, Any]) -> tuple[Decimal | None, Decimal | None]:
    """A state's compute and storage rates, USD per hour (docs/schema.md), None if unknown."""
    compute = decimal(h["hourly_rate_compute"])
    if compute is None and h["billing_period"] == "hourly":
        compute = decimal(h["compute_billing_price"])
    storage = decimal(h["hourly_rate_disk"])
    if storage is None and h["disk_gb"] is not None:
        storage = h["disk_gb"] * STORAGE_RATE
    return compute, storage


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@dataclass(frozen=True)
class Span:
    """A target's days: from its first succeeded run's day to its latest one's."""

    first_day: date
    last_day: date
    last_at: datetime

    def days(self) -> list[date]:
        n = (self.last_day - self.first_day).days
        return [self.first_day + timedelta(days=i) for i in range(n + 1)]


class History:
    """The stored history, ledger and nodes of a database, read once."""

    def __init__(self, engine: Engine) -> None:
        self.runs = rows_of(engine, "sync_runs")
        self.states = sorted(
            rows_of(engine, "cvm_history"), key=lambda h: (h["vm_uuid"], h["valid_from"])
        )
        self.regions = {n["node_id"]: n["region"] for n in rows_of(engine, "nodes")}
        self.spans: dict[str, Span] = {}
        for run in self.runs:
            if run["status"] != "succeeded":
                continue
            at = run["finished_at"]
            span = self.spans.get(run["target"])
            if span is None:
                self.spans[run["target"]] = Span(at.date(), at.date(), at)
            else:
                first = min(span.first_day, at.date())
                last_at = max(span.last_at, at)
                self.spans[run["target"]] = Span(first, last_at.date(), last_at)

    # ------------------------------------------------------------------------------ fleet_daily
    def fleet_daily(self) -> dict[tuple[Any, ...], tuple[Any, ...]]:
        """(day, target, status, region, workspace_id, instance_type) -> (cvms, vcpus, memory_gb,
        disk_gb, gpus): the states valid at the end of each day (the last day: its latest run)."""
        out: dict[tuple[Any, ...], list[Any]] = {}
        for target, span in self.spans.items():
            states = [h for h in self.states if h["target"] == target]
            for day in span.days():
                if day < span.last_day:  # the end of the day: valid just before midnight
                    end = midnight(day + DAY)
                    live = [
                        h
                        for h in states
                        if h["valid_from"] < end and (h["valid_to"] is None or h["valid_to"] >= end)
                    ]
                else:  # the latest succeeded run's view
                    at = span.last_at
                    live = [
                        h
                        for h in states
                        if h["valid_from"] <= at and (h["valid_to"] is None or h["valid_to"] > at)
                    ]
                if not live:
                    out[(day, target, None, None, None, None)] = [0, 0, 0.0, 0, 0]
                for h in live:
                    key = (
                        day,
                        target,
                        h["status"],
                        self.regions.get(h["node_id"]),
                        h["workspace_id"],
                        h["instance_type"],
                    )
                    acc = out.setdefault(key, [0, None, None, None, None])
                    acc[0] += 1
                    for i, name in ((1, "vcpu"), (2, "memory_mb"), (3, "disk_gb"), (4, "gpus")):
                        if h[name] is not None:
                            acc[i] = (acc[i] or 0) + h[name]
        return {
            k: (v[0], v[1], None if v[2] is None else v[2] / 1024, v[3], v[4])
            for k, v in out.items()
        }

    def pieces(self) -> Iterator[tuple[dict[str, Any], date, Decimal]]:
        """Each state's hours on each day of its target's span (up to its latest run), > 0."""
        for h in self.states:
            span = self.spans.get(h["target"])
            if span is None:
                continue
            start = h["valid_from"]
            end = min(h["valid_to"] or span.last_at, span.last_at)
            for day in span.days():
                lo, hi = max(start, midnight(day)), min(end, midnight(day + DAY))
                if hi > lo:
                    yield h, day, Decimal((hi - lo) // timedelta(microseconds=1)) / 3_600_000_000

    # -------------------------------------------------------------------------- cvm_daily_usage
    def daily_usage(self) -> dict[tuple[Any, ...], dict[str, Any]]:
        """(day, target, vm_uuid) -> hours, costs and the day's last state's dimensions."""
        pieces: dict[tuple[Any, ...], list[tuple[dict[str, Any], Decimal]]] = defaultdict(list)
        for h, day, hours in self.pieces():
            pieces[(day, h["target"], h["vm_uuid"])].append((h, hours))
        out = {}
        for key, parts in pieces.items():
            last = max(parts, key=lambda p: p[0]["valid_from"])[0]
            compute: Decimal | None = Decimal(0)
            storage: Decimal | None = Decimal(0)
            for h, hours in parts:
                rate, disk_rate = rates(h)
                if h["status"] == "running" and compute is not None:
                    compute = None if rate is None else compute + hours * rate
                if storage is not None:
                    storage = None if disk_rate is None else storage + hours * disk_rate
            out[key] = {
                "workspace_id": last["workspace_id"],
                "region": self.regions.get(last["node_id"]),
                "instance_type": last["instance_type"],
                "existing_hours": sum(hours for _, hours in parts),
                "running_hours": sum(hrs for h, hrs in parts if h["status"] == "running"),
                "compute_cost_usd": compute,
                "storage_cost_usd": storage,
            }
        return out

    # ------------------------------------------------------------------------ fleet_daily_usage
    def fleet_usage(self) -> dict[tuple[Any, ...], dict[str, Any]]:
        """(day, target, status, region, workspace_id, instance_type) -> CVM-hours and costs: each
        state's hours of each day, summed by the state's own dimensions."""
        out: dict[tuple[Any, ...], dict[str, Any]] = {}
        for h, day, hours in self.pieces():
            compute, storage = rates(h)
            running = h["status"] == "running"
            key = (day, h["target"], h["status"], self.regions.get(h["node_id"]),
                   h["workspace_id"], h["instance_type"])  # fmt: skip
            acc = out.setdefault(
                key,
                {"existing_hours": Decimal(0), "running_hours": Decimal(0),
                 "compute_cost_usd": Decimal(0), "storage_cost_usd": Decimal(0)},
            )  # fmt: skip
            acc["existing_hours"] += hours
            if running:
                acc["running_hours"] += hours
                if acc["compute_cost_usd"] is not None:
                    acc["compute_cost_usd"] = (
                        None if compute is None else acc["compute_cost_usd"] + hours * compute
                    )
            if acc["storage_cost_usd"] is not None:
                acc["storage_cost_usd"] = (
                    None if storage is None else acc["storage_cost_usd"] + hours * storage
                )
        return out

    # ------------------------------------------------------------------------------- cvm_states
    def change_types(self) -> dict[int, str]:
        """history_id -> created | updated | restored, from the order of each CVM's states."""
        out: dict[int, str] = {}
        previous: dict[str, Any] = {}
        for h in self.states:
            before = previous.get(h["vm_uuid"])
            if before is None:
                out[h["history_id"]] = "created"
            elif before["valid_to"] == h["valid_from"]:
                out[h["history_id"]] = "updated"
            else:
                out[h["history_id"]] = "restored"
            previous[h["vm_uuid"]] = h
        return out
