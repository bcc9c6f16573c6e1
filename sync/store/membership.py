"""Target memberships: which targets see which CVMs and apps (``target_memberships``).

Several API keys may see the same CVMs (two members of a workspace, a team key beside a personal
one, a rotated key set up as a new target). Each target keeps its own view:

- a run's listed items start (or resume) its memberships, and an item whose bytes differ from what
  *this target* last listed re-hashes it: so each target skips its own unchanged items, and a
  state another target already stored costs no write but that hash (:func:`record_listed`);
- a complete listing ends the target's memberships of what it no longer lists (:func:`end`);
  the entity is deleted only when no target sees it any more, and if the ending target owned it,
  ownership passes to the earliest target still seeing it (:class:`Ended`).

Unchanged items are never touched: a live membership was seen by every complete run of its target
since it started, so its last sighting is read from the ledger (docs/schema.md, "Targets").
Nothing here commits: the apply (or the retirement) owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Engine,
    Integer,
    and_,
    case,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)

from models import StagedRecord, SyncRun, TargetMembership, table_of
from sync.endpoints import listing_of
from sync.records import EntityType
from sync.store.bulk import bulk_insert
from sync.store.specs import EntitySpec

MEMBERSHIPS = table_of(TargetMembership)
_M = MEMBERSHIPS.c
_S = table_of(StagedRecord).c
_RUNS = table_of(SyncRun).c
_INT = BigInteger().with_variant(Integer(), "sqlite")

MEMBERSHIP_INSERT = (
    "target",
    "entity_type",
    "entity_id",
    "observed_hash",
    "first_seen_run_id",
    "last_seen_run_id",
)

#: Entity ids per statement (bounded IN lists).
CHUNK = 1000


def live(target: str, entity_type: EntityType) -> ColumnElement[bool]:
    """The WHERE clause of a target's live memberships of one entity type."""
    return and_(_M.target == target, _M.entity_type == entity_type, _M.ended_at.is_(None))


def live_hashes(
    conn: Connection, target: str, entity_type: EntityType
) -> Iterator[tuple[str, str]]:
    """``(entity_id, observed_hash)`` of every live membership of ``target`` of a type."""
    rows = conn.execute(select(_M.entity_id, _M.observed_hash).where(live(target, entity_type)))
    yield from rows


def record_listed(conn: Connection, spec: EntitySpec, *, target: str, run_id: int) -> None:
    """Memberships of the items ``run_id`` staged and stored: resumed, re-hashed or started.

    Runs after the apply wrote the inventory, over the staged rows (the items whose bytes differ
    from what this target listed last); items the database refused must have left staging, so
    that the next run reads them again. A staged item whose entity is not live (never stored)
    starts nothing.
    """
    x = spec.entity_type
    entity_live = exists().where(spec.key_column == _S.entity_id, spec.table.c.deleted_at.is_(None))
    staged = [_S.run_id == run_id, _S.entity_type == x]
    conn.execute(
        update(MEMBERSHIPS)
        .where(
            _M.target == target,
            _M.entity_type == x,
            _M.entity_id == _S.entity_id,
            *staged,
            or_(_M.observed_hash != _S.observed_hash, _M.ended_at.is_not(None)),
            entity_live,
        )
        .values(
            observed_hash=_S.observed_hash,
            last_seen_run_id=run_id,
            ended_at=None,
            ended_run_id=None,
        )
    )
    known = exists().where(_M.target == target, _M.entity_type == x, _M.entity_id == _S.entity_id)
    run = literal(run_id, _INT)
    conn.execute(
        insert(MEMBERSHIPS).from_select(
            list(MEMBERSHIP_INSERT),
            select(literal(target), literal(x), _S.entity_id, _S.observed_hash, run, run).where(
                *staged, entity_live, ~known
            ),
        )
    )


def start(
    conn: Connection,
    entity_type: EntityType,
    listed: Sequence[tuple[str, str]],
    *,
    target: str,
    run_id: int,
) -> None:
    """Start the memberships of ``listed`` ``(entity_id, observed_hash)``, stored and live now.

    The apply ahead's own (:mod:`sync.store.ahead`), batch by batch: it runs only for a target
    that has no membership at all, and gives up at an entity met twice, so each is new. Its
    :func:`record_listed` at the end then has nothing left to do, and is skipped.
    """
    bulk_insert(
        conn,
        MEMBERSHIPS,
        [
            dict(zip(MEMBERSHIP_INSERT, (target, entity_type, i, h, run_id, run_id), strict=True))
            for i, h in listed
        ],
    )


@dataclass
class Ended:
    """What ending some memberships of a target means for their entities."""

    #: Entities no target sees any more: to be deleted.
    unseen: list[str] = field(default_factory=list)
    #: Entities whose owner no longer sees them: the new owner, the earliest target still seeing
    #: them (by the run that started its membership, then by name).
    moves: dict[str, str] = field(default_factory=dict)


def last_complete_run(
    conn: Connection, target: str, entity_type: EntityType, before: int
) -> int | None:
    """The target's latest succeeded sync before run ``before`` that listed the type completely."""
    value = conn.execute(
        select(func.max(_RUNS.id)).where(
            _RUNS.target == target,
            _RUNS.status == "succeeded",
            _RUNS.kind == "sync",
            # the ledger column that says the run listed the type completely
            _RUNS[listing_of(entity_type).complete_column].is_(True),
            _RUNS.id < before,
        )
    ).scalar_one_or_none()
    return None if value is None else int(value)


def end(
    conn: Connection,
    spec: EntitySpec,
    *,
    target: str,
    keys: Sequence[str],
    run_id: int,
    now: datetime,
) -> Ended:
    """End the live memberships of ``target`` of ``keys``; say which entities are unseen now.

    ``last_seen_run_id`` becomes the target's latest complete run before ``run_id`` (a live
    membership was seen by each of them) when that is later than the stored one.
    """
    if not keys:
        return Ended()
    x = spec.entity_type
    latest = last_complete_run(conn, target, x, run_id)
    seen_last = (
        _M.last_seen_run_id
        if latest is None
        else case((_M.last_seen_run_id < latest, literal(latest, _INT)), else_=_M.last_seen_run_id)
    )
    t = spec.table
    ended = Ended()
    for start in range(0, len(keys), CHUNK):
        chunk = list(keys[start : start + CHUNK])
        conn.execute(
            update(MEMBERSHIPS)
            .where(live(target, x), _M.entity_id.in_(chunk))
            .values(ended_at=now, ended_run_id=run_id, last_seen_run_id=seen_last)
        )
        members: dict[str, list[str]] = {}
        rows = conn.execute(
            select(_M.entity_id, _M.target)
            .where(_M.entity_type == x, _M.entity_id.in_(chunk), _M.ended_at.is_(None))
            .order_by(_M.entity_id, _M.first_seen_run_id, _M.target)
        )
        for entity_id, member in rows:
            members.setdefault(entity_id, []).append(member)
        owners = conn.execute(
            select(spec.key_column, t.c.target).where(
                spec.key_column.in_(chunk), t.c.deleted_at.is_(None)
            )
        )
        for key, owner in owners:
            seeing = members.get(str(key))
            if not seeing:
                ended.unseen.append(str(key))
            elif owner not in seeing:
                ended.moves[str(key)] = seeing[0]
    ended.unseen.sort()
    return ended


def has_any(conn: Connection, target: str) -> bool:
    """Whether ``target`` has any membership, live or ended (it has run, or been retired)."""
    return conn.execute(select(_M.target).where(_M.target == target).limit(1)).first() is not None


def live_keys(conn: Connection, target: str, entity_type: EntityType) -> list[str]:
    """The entity ids a target sees now, sorted."""
    return sorted(conn.execute(select(_M.entity_id).where(live(target, entity_type))).scalars())


def membership_counts(engine: Engine) -> dict[tuple[str, str], int]:
    """Live memberships by (target, entity type)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(_M.target, _M.entity_type, func.count())
            .where(_M.ended_at.is_(None))
            .group_by(_M.target, _M.entity_type)
        )
        return {(t, x): int(n) for t, x, n in rows}


__all__ = [
    "MEMBERSHIPS",
    "Ended",
    "end",
    "has_any",
    "last_complete_run",
    "live_hashes",
    "live_keys",
    "membership_counts",
    "record_listed",
]
