"""Read-side questions for the CLI and BI examples: runs, the fleet as of a time, history, changes.

Each returns plain dicts (JSON-ready values) so the CLI can print a table or ``--json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, FromClause, Row, func, or_, select

from models import (
    ChangeEvent,
    Cvm,
    CvmHistory,
    Node,
    NodeHistory,
    SyncRun,
    Workspace,
    WorkspaceHistory,
    table_of,
)
from sync.records import normalize_vm_uuid

_RUNS = table_of(SyncRun)
_CVMS = table_of(Cvm)
_HIST = table_of(CvmHistory)
_EVENTS = table_of(ChangeEvent)
_NODES = table_of(Node)
_WS = table_of(Workspace)

INVENTORY_COLUMNS = (
    "vm_uuid", "name", "status", "vcpu", "memory_mb", "disk_gb", "node_id", "node_name",
    "region", "workspace_id", "workspace_name", "creator_id", "app_id", "target",
)  # fmt: skip


def _plain(row: Row[*tuple[Any, ...]]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row._mapping.items()}


def runs(engine: Engine, *, limit: int = 20) -> list[dict[str, Any]]:
    """The most recent runs, newest first."""
    c = _RUNS.c
    stmt = select(
        c.id, c.target, c.api_version, c.status, c.kind, c.started_at, c.finished_at, c.seen,
        c.created, c.updated, c.deleted, c.restored, c.unchanged, c.quarantined,
        c.listing_complete, c.error,
    ).order_by(c.id.desc()).limit(limit)  # fmt: skip
    with engine.connect() as conn:
        return [_plain(r) for r in conn.execute(stmt)]


def inventory(
    engine: Engine, *, as_of: datetime | None = None, target: str | None = None
) -> list[dict[str, Any]]:
    """The CVMs that existed at ``as_of`` (now when None), with node and workspace names.

    Point in time is the history tables' one WHERE clause:
    ``valid_from <= T AND (valid_to IS NULL OR valid_to > T)``.
    """
    src: FromClause
    where: list[ColumnElement[bool]]
    node_name: ColumnElement[Any]
    region: ColumnElement[Any]
    ws_name: ColumnElement[Any]
    if as_of is None:
        src = _CVMS
        where = [src.c.deleted_at.is_(None)]
        node_j = _NODES.c.node_id == src.c.node_id
        ws_j = _WS.c.workspace_id == src.c.workspace_id
        node_name, region, ws_name = _NODES.c.name, _NODES.c.region, _WS.c.name
        from_ = src.outerjoin(_NODES, node_j).outerjoin(_WS, ws_j)
    else:
        src = _HIST
        where = [src.c.valid_from <= as_of, or_(src.c.valid_to.is_(None), src.c.valid_to > as_of)]
        nh = table_of(NodeHistory).alias("nh")
        wh = table_of(WorkspaceHistory).alias("wh")
        node_j = (
            (nh.c.node_id == src.c.node_id)
            & (nh.c.valid_from <= as_of)
            & or_(nh.c.valid_to.is_(None), nh.c.valid_to > as_of)
        )
        ws_j = (
            (wh.c.workspace_id == src.c.workspace_id)
            & (wh.c.valid_from <= as_of)
            & or_(wh.c.valid_to.is_(None), wh.c.valid_to > as_of)
        )
        node_name, region, ws_name = nh.c.name, nh.c.region, wh.c.name
        from_ = src.outerjoin(nh, node_j).outerjoin(wh, ws_j)
    if target is not None:
        where.append(src.c.target == target)
    stmt = (
        select(
            src.c.vm_uuid,
            src.c.name,
            src.c.status,
            src.c.vcpu,
            src.c.memory_mb,
            src.c.disk_gb,
            src.c.node_id,
            node_name.label("node_name"),
            region.label("region"),
            src.c.workspace_id,
            ws_name.label("workspace_name"),
            src.c.creator_id,
            src.c.app_id,
            src.c.target,
        )
        .select_from(from_)
        .where(*where)
        .order_by(src.c.vm_uuid)
    )
    with engine.connect() as conn:
        return [_plain(r) for r in conn.execute(stmt)]


def history(engine: Engine, cvm: str) -> list[dict[str, Any]]:
    """Every stored state of one CVM (by VM UUID in any spelling, or its ``cvm_...`` id)."""
    key = normalize_vm_uuid(cvm)
    h = _HIST.c
    with engine.connect() as conn:
        if not conn.execute(select(_CVMS.c.vm_uuid).where(_CVMS.c.vm_uuid == key)).first():
            found = conn.execute(select(_CVMS.c.vm_uuid).where(_CVMS.c.cvm_id == cvm)).first()
            if found is not None:
                key = found[0]
        stmt = (
            select(
                h.run_id,
                h.valid_from,
                h.valid_to,
                h.name,
                h.status,
                h.vcpu,
                h.memory_mb,
                h.disk_gb,
                h.node_id,
                h.workspace_id,
                h.instance_id,
            )
            .where(h.vm_uuid == key)
            .order_by(h.valid_from, h.history_id)
        )
        return [_plain(r) for r in conn.execute(stmt)]


def changes(
    engine: Engine, *, run_id: int | None = None, entity_type: str | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
    """Change events of one run (the latest succeeded one when None)."""
    e = _EVENTS.c
    with engine.connect() as conn:
        if run_id is None:
            run_id = conn.execute(
                select(_RUNS.c.id)
                .where(_RUNS.c.status == "succeeded")
                .order_by(_RUNS.c.id.desc())
                .limit(1)
            ).scalar()
            if run_id is None:
                return []
        stmt = select(
            e.run_id, e.entity_type, e.entity_id, e.change_type, e.changes, e.observed_at
        ).where(e.run_id == run_id)
        if entity_type is not None:
            stmt = stmt.where(e.entity_type == entity_type)
        stmt = stmt.order_by(e.entity_type, e.entity_id).limit(limit)
        return [_plain(r) for r in conn.execute(stmt)]


def change_counts(engine: Engine, run_id: int) -> dict[tuple[str, str], int]:
    """How many change events of each (entity type, change type) one run recorded, in SQL."""
    e = _EVENTS.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(e.entity_type, e.change_type, func.count())
            .where(e.run_id == run_id)
            .group_by(e.entity_type, e.change_type)
        )
        return {(str(t), str(k)): int(n) for t, k, n in rows}


def first_changes(
    engine: Engine, run_id: int, entity_types: Sequence[str], limit: int
) -> list[dict[str, Any]]:
    """At most ``limit`` change events of one run: entity types in the given order, then by id.

    One bounded query per entity type, so a run with a million changes costs no more to show.
    """
    out: list[dict[str, Any]] = []
    for entity_type in entity_types:
        if len(out) >= limit:
            break
        out.extend(changes(engine, run_id=run_id, entity_type=entity_type, limit=limit - len(out)))
    return out
