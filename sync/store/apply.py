"""Apply one run's staged records to the inventory, atomically, on the caller's connection.

For each entity type (parents first), staged records are compared with the stored rows:

- the observation hash equals the stored one: unchanged, and nothing is written (most unchanged
  items never reach staging at all: the fetch skipped them, see :mod:`sync.store.staging`);
- no stored row: ``created`` (row, first history row, event listing every known field);
- a stored row marked deleted: ``restored`` (history resumes; the event lists changed fields);
- otherwise the known fields are diffed: an ``updated`` event with every changed field, the open
  history row closed and a new one opened; no field changed (a version switch, or a payload change
  in fields the models do not read) only refreshes the stored hash and raw JSON.

Every row written gets ``last_seen_*`` of this run; an unchanged row is not rewritten (a complete,
succeeded run of its target saw every live row, see docs/schema.md).

Several targets may see the same CVMs and apps (:mod:`sync.store.membership`). The run's target
*owns* what it creates or restores; an update keeps the owner, and an item whose known fields
equal the stored ones is not rewritten by a target that does not own it (another target stored
that state first). The run's listed items start or re-hash its memberships. Deletions are inferred
for listed entity types only when the run's listing was complete: the fetch hands over the keys of
the target's live memberships it did not see (quarantined items that name an id are never among
them); those memberships end, and an entity is deleted only when no target sees it any more.
Nodes, workspaces and creators are references: deleted when no live CVM refers to them any more.
Nothing here commits: the caller owns the transaction, so a failure leaves no trace.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import psycopg
import sqlalchemy.exc
from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    Select,
    String,
    and_,
    bindparam,
    cast,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)

from models import AppCvm, ChangeEvent, StagedRecord, table_of
from sync.api.pages import Rejection
from sync.changes import created_changes, diff, loads_fields, merge
from sync.endpoints import source_endpoint
from sync.records import APP_MEMBERS, REFERENCE_TYPES, EntityType
from sync.store import fleet_levels, membership
from sync.store.bulk import analyze, bulk_insert
from sync.store.specs import APPLY_ORDER, SPECS, EntitySpec
from sync.store.staging import StagedRow, insert_quarantined

#: Staged rows applied per batch (and per savepoint); bounds the apply's memory.
CHUNK = 1000

_STAGING = table_of(StagedRecord)
_S = _STAGING.c
_EVENTS = table_of(ChangeEvent)
_MEMBERS = table_of(AppCvm)


@dataclass
class EntityCounts:
    seen: int = 0
    created: int = 0
    updated: int = 0
    deleted: int = 0
    restored: int = 0
    unchanged: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _staged_key(spec: EntitySpec) -> ColumnElement[Any]:
    """The stored key as the text staging holds it."""
    col = spec.key_column
    return cast(col, String) if spec.entity_type == "node" else col


@dataclass
class _Batch:
    """The writes of one chunk, executed together, and the counts they stand for."""

    inserts: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    refreshes: list[dict[str, Any]] = field(default_factory=list)
    closes: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    members: dict[str, list[str]] = field(default_factory=dict)
    #: Apps of ``members`` that were stored before: their old member rows go first (a new app
    #: has none: ``app_cvms`` rows need their app).
    replaced: list[str] = field(default_factory=list)
    created: int = 0
    updated: int = 0
    restored: int = 0


class _Staged(NamedTuple):
    """A staged row as the apply reads it, when it comes from the stager rather than the table."""

    entity_id: str
    observed_hash: str
    fields_json: str | None
    raw_json: str | None


@dataclass(frozen=True)
class Applied:
    """What an apply wrote (counts per entity type) and what the database refused."""

    counts: dict[EntityType, EntityCounts]
    #: Staged items whose values the database would not store (see :func:`_refusal`).
    refused: list[Rejection]
    #: Seconds spent bringing ``fleet_levels`` up to date (part of the apply).
    levels_seconds: float = 0.0


#: Errors caused by the values of the rows being written (a NUL in a PostgreSQL text column, a
#: number out of a column's range, text the driver cannot encode, a reference to a refused row).
#: Anything else (a lost connection, a full disk, a lost lock) still fails the run. The COPY path
#: goes through the driver itself, so its errors come unwrapped.
_ITEM_ERRORS: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.DataError,
    sqlalchemy.exc.IntegrityError,
    psycopg.DataError,
    psycopg.IntegrityError,
    OverflowError,
    UnicodeError,
)


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return f"the database refused it: {first}"


def _refusal(
    entity_type: EntityType, entity_id: str, raw_json: str, exc: BaseException
) -> Rejection:
    """A staged item the database would not store, set aside with its reason.

    No page and no index: it failed after the fetch; the endpoint is the one whose items carry
    the entity type (references come with CVMs). ``raw_json`` is the item as received (a
    reference: its fields as observed); the error names the entity, as messages quote it.
    """
    return Rejection(
        source_endpoint(entity_type),
        None,
        None,
        entity_id,
        raw_json.encode(),
        f"{entity_type} {entity_id}: {_reason(exc)}",
    )


class _EntityApplier:
    def __init__(
        self, conn: Connection, spec: EntitySpec, run_id: int, target: str, now: datetime
    ) -> None:
        self.conn = conn
        self.spec = spec
        self.run_id = run_id
        self.target = target
        self.now = now
        self.counts = EntityCounts()
        self.refused: list[Rejection] = []
        self._refused_ids: set[str] = set()
        #: Staged rows :meth:`apply_listed` applied, and started the memberships of (scoped);
        #: the rows the run staged, once :meth:`apply_staged` counted them.
        self.listed = 0
        self._staged: int | None = None
        #: The keys :meth:`apply_listed` wrote, when the table held nothing as it began
        #: (:meth:`begin_listing`); None: it reads the stored rows of each batch instead.
        self._written: set[str] | None = None
        t = spec.table
        self._key_param = "b_key"
        # executemany UPDATEs: the SET clause comes from the keys of the parameter dicts.
        self._update_stmt = update(t).where(spec.key_column == bindparam(self._key_param))
        h = spec.history
        self._close_stmt = (
            update(h)
            .where(h.c[spec.key] == bindparam(self._key_param), h.c.valid_to.is_(None))
            .values(valid_to=self.now)
        )

    # ------------------------------------------------------------------------------ observed
    def apply_staged(self, skipped: int = 0) -> None:
        """Apply the staged records; ``skipped`` listed items were unchanged and never staged."""
        spec = self.spec
        staged = int(
            self.conn.execute(
                select(func.count()).where(
                    _S.run_id == self.run_id, _S.entity_type == spec.entity_type
                )
            ).scalar_one()
        )
        self._staged = staged
        self.counts.seen = staged + skipped
        if self.listed != staged:  # else the apply ahead applied every staged row
            self._apply_chunks(new=False)
            self._apply_chunks(new=True)
        c = self.counts
        c.unchanged = c.seen - c.created - c.updated - c.restored - len(self.refused)

    def _apply_chunks(self, *, new: bool) -> None:
        """Walk the staged records that need work (new ones, or stored ones that differ)."""
        spec, t = self.spec, self.spec.table
        stored_key = _staged_key(spec)
        after = ""
        while True:
            # The stored side starts after the chunk too: otherwise the planner's merge join reads
            # the table from its first key for every chunk, and the apply grows with n squared.
            join = and_(stored_key == _S.entity_id, stored_key > after)
            needs_work: ColumnElement[bool]
            if new:
                source = _STAGING.outerjoin(t, join)
                needs_work = spec.key_column.is_(None)
            else:
                source = _STAGING.join(t, join)
                needs_work = or_(t.c.observed_hash != _S.observed_hash, t.c.deleted_at.is_not(None))
            rows = self.conn.execute(
                select(_S.entity_id, _S.observed_hash, _S.fields_json, _S.raw_json)
                .select_from(source)
                .where(
                    _S.run_id == self.run_id,
                    _S.entity_type == spec.entity_type,
                    _S.entity_id > after,
                    needs_work,
                )
                .order_by(_S.entity_id)
                .limit(CHUNK)
            ).all()
            if not rows:
                return
            after = rows[-1].entity_id
            if self._refused_ids:  # refused while applied ahead: set aside once
                rows = [r for r in rows if r.entity_id not in self._refused_ids]
            current: dict[str, Any] = {}
            if not new:
                keys = [spec.key_value(r.entity_id) for r in rows]
                for row in self.conn.execute(select(t).where(spec.key_column.in_(keys))):
                    current[str(row._mapping[spec.key])] = row._mapping
            self._apply_rows(rows, current)

    def begin_listing(self) -> None:
        """Before the first :meth:`apply_listed`: if the table holds nothing, remember the keys
        written instead of reading the stored rows of each batch (the apply ahead holds the
        database's lock, so only this run writes until it commits). A database's first sync
        spent 0.5 s of its writer's 10 s at 20k CVMs reading back nothing."""
        if not self.conn.scalar(select(exists().select_from(self.spec.table))):
            self._written = set()

    def apply_listed(self, rows: Sequence[StagedRow]) -> bool:
        """Apply staged rows as the stager writes them (:mod:`sync.store.ahead`).

        What needs work is judged as :meth:`_apply_chunks` judges it, against the stored rows.
        Returns False, writing nothing, when the rows repeat an entity: one twice among them, one
        this run already wrote or the database refused. The apply after the fetch would keep
        only its last sighting, so applying each sighting in turn could differ from it.
        """
        spec = self.spec
        ids = [r[2] for r in rows]
        if len(set(ids)) < len(ids) or self._refused_ids.intersection(ids):
            return False
        current: dict[str, Any] = {}
        if self._written is not None:  # only this run's rows are stored: nothing to read
            if self._written.intersection(ids):
                return False
            self._written.update(ids)
        else:
            keys = [spec.key_value(i) for i in ids]
            for row in self.conn.execute(select(spec.table).where(spec.key_column.in_(keys))):
                stored = row._mapping
                if stored["last_seen_run_id"] == self.run_id:
                    return False
                current[str(stored[spec.key])] = stored
        work = [
            _Staged(r[2], r[4], r[5], r[6])
            for r in rows
            if (cur := current.get(r[2])) is None
            or cur["observed_hash"] != r[4]
            or cur["deleted_at"] is not None
        ]
        if work:
            self._apply_rows(work, current)
        if spec.scoped:
            listed = [(r[2], r[4]) for r in rows if r[2] not in self._refused_ids]
            membership.start(
                self.conn, spec.entity_type, listed, target=self.target, run_id=self.run_id
            )
        self.listed += len(rows)
        return True

    def _apply_rows(
        self, rows: Sequence[Row[*tuple[Any, ...]]] | Sequence[_Staged], current: Mapping[str, Any]
    ) -> None:
        """Write these staged rows; rows the database refuses are found by halving, set aside.

        Each attempt runs in a savepoint, so a refused batch leaves nothing behind; a batch of one
        that is refused becomes a :class:`Rejection` and the rest of the run goes on.
        """
        spec = self.spec
        batch = _Batch()
        for r in rows:
            if r.fields_json is None:
                raise RuntimeError(
                    f"staged {spec.entity_type} {r.entity_id} has no payload but differs "
                    "from the stored row: the run lock was not held, or the apply ahead that "
                    "was handed it gave up unseen"
                )
            observed = loads_fields(r.fields_json, spec.datetime_fields)
            self._one(
                batch, r.entity_id, r.observed_hash, observed, r.raw_json,
                current.get(r.entity_id),
            )  # fmt: skip
        try:
            with self.conn.begin_nested():
                self._flush(batch)
        except Exception as exc:
            if not isinstance(exc, _ITEM_ERRORS):
                raise
            if len(rows) == 1:
                r = rows[0]
                raw = r.raw_json if r.raw_json is not None else r.fields_json or ""
                self.refused.append(_refusal(spec.entity_type, r.entity_id, raw, exc))
                self._refused_ids.add(r.entity_id)
                return
            half = len(rows) // 2
            self._apply_rows(rows[:half], current)
            self._apply_rows(rows[half:], current)
            return
        self.counts.created += batch.created
        self.counts.updated += batch.updated
        self.counts.restored += batch.restored

    def _one(
        self,
        batch: _Batch,
        entity_id: str,
        obs_hash: str,
        observed: dict[str, Any],
        raw: str | None,
        cur: Any,
    ) -> None:
        """Add one staged record to ``batch``: created, updated, restored, or only refreshed."""
        key = self.spec.key_value(entity_id)
        if cur is None:
            state = self._created(batch, key, observed, obs_hash, raw)
            change_type, changes = "created", created_changes(observed)
        else:
            stored = {f: cur[f] for f in self.spec.fields}
            changes = diff(stored, observed)
            restored = cur["deleted_at"] is not None
            # The owner of a live entity keeps it; a restored one belongs to its restorer.
            owner = self.target if restored or not self.spec.scoped else cur["target"]
            if not (changes or restored):
                if owner == self.target:  # another target stored this state: nothing to write
                    batch.refreshes.append(self._seen(key, obs_hash, raw))
                return
            state = self._changed(
                batch, key, merge(stored, observed), obs_hash, raw, restored, owner
            )
            change_type = "restored" if restored else "updated"
        batch.history.append(
            {self.spec.key: key, **state, "valid_from": self.now, "valid_to": None,
             "run_id": self.run_id}
        )  # fmt: skip
        batch.events.append(self._event(entity_id, change_type, changes))
        if self.spec.entity_type == "app" and APP_MEMBERS in observed:
            batch.members[entity_id] = list(observed[APP_MEMBERS] or [])
            if cur is not None:
                batch.replaced.append(entity_id)

    def _state(self, fields: dict[str, Any], owner: str) -> dict[str, Any]:
        """The inventory columns of an entity's new state (its owner, for a listed type)."""
        return {**fields, "target": owner} if self.spec.scoped else fields

    def _seen(self, key: Any, obs_hash: str, raw: str | None) -> dict[str, Any]:
        """The columns that any write of a listed-again entity sets (hash, payload, last seen)."""
        return {
            self._key_param: key,
            "observed_hash": obs_hash,
            "raw_json": raw,
            "last_seen_at": self.now,
            "last_seen_run_id": self.run_id,
        }

    def _created(
        self, batch: _Batch, key: Any, observed: dict[str, Any], obs_hash: str, raw: str | None
    ) -> dict[str, Any]:
        """Queue the insert of a new entity; its state is what was observed, the rest null."""
        state = self._state({**dict.fromkeys(self.spec.fields), **observed}, self.target)
        batch.created += 1
        batch.inserts.append(
            {
                self.spec.key: key,
                **state,
                "first_seen_at": self.now,
                "last_seen_at": self.now,
                "first_seen_run_id": self.run_id,
                "last_seen_run_id": self.run_id,
                "deleted_at": None,
                "observed_hash": obs_hash,
                "raw_json": raw,
            }
        )
        return state

    def _changed(
        self,
        batch: _Batch,
        key: Any,
        merged: dict[str, Any],
        obs_hash: str,
        raw: str | None,
        restored: bool,
        owner: str,
    ) -> dict[str, Any]:
        """Queue the update of a stored entity (closing its history row unless it was deleted)."""
        state = self._state(merged, owner)
        if restored:
            batch.restored += 1
        else:
            batch.updated += 1
            batch.closes.append({self._key_param: key})
        batch.updates.append({**self._seen(key, obs_hash, raw), **state, "deleted_at": None})
        return state

    def _event(self, entity_id: str, change_type: str, changes: dict[str, Any]) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "entity_type": self.spec.entity_type,
            "entity_id": entity_id,
            "change_type": change_type,
            "changes": changes,
            "observed_at": self.now,
        }

    def _flush(self, b: _Batch) -> None:
        c, spec = self.conn, self.spec
        if b.inserts:
            bulk_insert(c, spec.table, b.inserts)
        if b.updates:
            c.execute(self._update_stmt, b.updates)
        if b.refreshes:
            c.execute(self._update_stmt, b.refreshes)
        if b.closes:
            c.execute(self._close_stmt, b.closes)
        if b.history:
            bulk_insert(c, spec.history, b.history)
        if b.events:
            bulk_insert(c, _EVENTS, b.events)
        if b.replaced:
            c.execute(delete(_MEMBERS).where(_MEMBERS.c.app_id.in_(b.replaced)))
        if b.members:
            pairs = [
                {"app_id": app_id, "vm_uuid": vm}
                for app_id, vms in b.members.items()
                for vm in sorted(set(vms))
            ]
            bulk_insert(c, _MEMBERS, pairs)

    # ------------------------------------------------------------------------------ deletions
    def record_memberships(self) -> None:
        """The run's target sees what it listed: memberships started, resumed or re-hashed.

        Refused items leave staging first: their membership must not record a hash that was
        never stored, or the next run would skip them.
        """
        if self.listed == self._staged:  # the apply ahead started them (membership.start)
            return
        refused = [item.entity_id for item in self.refused if item.entity_id is not None]
        for start in range(0, len(refused), CHUNK):
            self.conn.execute(
                delete(_STAGING).where(
                    _S.run_id == self.run_id,
                    _S.entity_type == self.spec.entity_type,
                    _S.entity_id.in_(refused[start : start + CHUNK]),
                )
            )
        membership.record_listed(self.conn, self.spec, target=self.target, run_id=self.run_id)

    def infer_deletions(self, gone: Sequence[str]) -> None:
        """End this target's memberships of ``gone``; delete what no target sees any more.

        ``gone`` comes from the fetch (the target's live memberships minus the keys listed or
        quarantined), or from a retirement (all of them); the target's lock was held since, so
        they are still live. An entity another target still sees stays; if the ending target
        owned it, its ownership moves (:meth:`_move_owners`).
        """
        spec = self.spec
        key = spec.key_column
        ended = membership.end(
            self.conn, spec, target=self.target, keys=gone, run_id=self.run_id, now=self.now
        )
        self._move_owners(ended.moves)
        for start in range(0, len(ended.unseen), CHUNK):
            chunk = [spec.key_value(k) for k in ended.unseen[start : start + CHUNK]]
            self._mark_deleted(
                select(key).where(key.in_(chunk), spec.table.c.deleted_at.is_(None)).order_by(key)
            )

    def _move_owners(self, moves: Mapping[str, str]) -> None:
        """Give entities a new owner: the column, and a new history row carrying it.

        The state is unchanged, so no change event is written; the open history row closes and
        a copy with the new ``target`` opens, so the history says who owned it when.
        """
        spec, t, h = self.spec, self.spec.table, self.spec.history
        items = sorted(moves.items())
        set_owner = (
            update(t)
            .where(spec.key_column == bindparam(self._key_param))
            .values(target=bindparam("b_owner"))
        )
        for start in range(0, len(items), CHUNK):
            chunk = dict(items[start : start + CHUNK])
            keys = list(chunk)
            self.conn.execute(
                set_owner, [{self._key_param: k, "b_owner": o} for k, o in chunk.items()]
            )
            open_rows = self.conn.execute(
                select(h).where(h.c[spec.key].in_(keys), h.c.valid_to.is_(None))
            ).all()
            self.conn.execute(
                update(h)
                .where(h.c[spec.key].in_(keys), h.c.valid_to.is_(None))
                .values(valid_to=self.now)
            )
            copies = []
            for row in open_rows:
                values = {k: v for k, v in row._mapping.items() if k != "history_id"}
                values.update(
                    target=chunk[str(values[spec.key])],
                    valid_from=self.now,
                    valid_to=None,
                    run_id=self.run_id,
                )
                copies.append(values)
            if copies:
                bulk_insert(self.conn, h, copies)

    def infer_orphans(self) -> None:
        """A node, workspace or creator that no live CVM refers to any more is deleted.

        The API has no listing of its own for them: they exist for us while a CVM refers to one.
        One that a CVM refers to again is ``restored`` when it is next observed.
        """
        spec, t = self.spec, self.spec.table
        cvms = SPECS["cvm"].table
        referenced = exists().where(
            cvms.c[spec.key] == spec.key_column, cvms.c.deleted_at.is_(None)
        )
        self._mark_deleted(
            select(spec.key_column)
            .where(t.c.deleted_at.is_(None), ~referenced)
            .order_by(spec.key_column)
        )

    def restore_referenced(self) -> None:
        """A deleted node, workspace or creator that a live CVM refers to again is ``restored``.

        Usually the reference is observed again and restored when applied; this catches the
        case where the pinned version does not carry it (a legacy run keeps a CVM's last known
        workspace), from its last known state.
        """
        spec, t = self.spec, self.spec.table
        cvms = SPECS["cvm"].table
        referenced = exists().where(
            cvms.c[spec.key] == spec.key_column, cvms.c.deleted_at.is_(None)
        )
        rows = self.conn.execute(
            select(t).where(t.c.deleted_at.is_not(None), referenced).order_by(spec.key_column)
        ).all()
        for start in range(0, len(rows), CHUNK):
            chunk = [r._mapping for r in rows[start : start + CHUNK]]
            keys = [r[spec.key] for r in chunk]
            self.conn.execute(update(t).where(spec.key_column.in_(keys)).values(deleted_at=None))
            bulk_insert(
                self.conn,
                spec.history,
                [
                    {
                        spec.key: r[spec.key],
                        **{f: r[f] for f in spec.fields},
                        "valid_from": self.now,
                        "valid_to": None,
                        "run_id": self.run_id,
                    }
                    for r in chunk
                ],
            )
            bulk_insert(self.conn, _EVENTS, [self._event(str(k), "restored", {}) for k in keys])
        self.counts.restored += len(rows)

    def _mark_deleted(self, query: Select[Any]) -> None:
        spec, t = self.spec, self.spec.table
        key = spec.key_column
        gone = [row[0] for row in self.conn.execute(query)]
        for start in range(0, len(gone), CHUNK):
            chunk = gone[start : start + CHUNK]
            self.conn.execute(update(t).where(key.in_(chunk)).values(deleted_at=self.now))
            self.conn.execute(
                update(spec.history)
                .where(spec.history.c[spec.key].in_(chunk), spec.history.c.valid_to.is_(None))
                .values(valid_to=self.now)
            )
            self.conn.execute(insert(_EVENTS), [self._event(str(k), "deleted", {}) for k in chunk])
            if spec.entity_type == "app":
                self.conn.execute(delete(_MEMBERS).where(_MEMBERS.c.app_id.in_(chunk)))
        self.counts.deleted += len(gone)


def dedupe_staging(conn: Connection, run_id: int) -> None:
    """Keep only the last sighting of each entity (offset drift can show an item twice).

    An anti-join on the staging index: ``id NOT IN (SELECT max(id) ... GROUP BY ...)`` became an
    unhashed subplan on PostgreSQL once the staged rows outgrew ``work_mem`` (153k rows, 4 MB),
    comparing every row with every other: a 100k first sync spent over 20 minutes in it.
    """
    later = _STAGING.alias("later")
    newer = exists().where(
        later.c.run_id == run_id,
        later.c.entity_type == _S.entity_type,
        later.c.entity_id == _S.entity_id,
        later.c.id > _S.id,
    )
    conn.execute(delete(_STAGING).where(_S.run_id == run_id, newer))


def apply_staged(
    conn: Connection,
    *,
    run_id: int,
    target: str,
    now: datetime,
    complete: Mapping[EntityType, bool],
    unchanged: Mapping[EntityType, int] | None = None,
    gone: Mapping[EntityType, Sequence[str]] | None = None,
    ahead: Appliers | None = None,
) -> Applied:
    """Apply every staged record of ``run_id``.

    ``unchanged`` counts the listed items the fetch skipped (equal bytes); ``gone`` lists the
    stored live keys a listing did not show, deleted where ``complete`` says the listing was.
    Items the database refuses are left out and returned (see :class:`Applied`); the caller
    decides whether the run may still succeed and quarantines them. ``ahead`` are the appliers
    that already applied staged rows on this connection, in this transaction, during the fetch
    (:mod:`sync.store.ahead`): their counts go on, and what they wrote needs no more work.
    """
    # Fresh statistics for the staged rows first: the dedupe joins them with themselves and the
    # apply with the inventory. With the statistics of the last run's (deleted) rows, the
    # planner expected none of this run's and chose a nested loop: the dedupe of a second
    # target's 5,000-CVM first sync took 28 s instead of a fraction of one.
    if ahead is None or not ahead.applied_all(conn, run_id):
        analyze(conn, _STAGING)
        dedupe_staging(conn, run_id)
    appliers: dict[EntityType, _EntityApplier] = {}
    for entity_type in APPLY_ORDER:
        applier = (
            ahead.by_type[entity_type]
            if ahead is not None
            else _EntityApplier(conn, SPECS[entity_type], run_id, target, now)
        )
        applier.apply_staged((unchanged or {}).get(entity_type, 0))
        if SPECS[entity_type].scoped:
            applier.record_memberships()
            if complete.get(entity_type, False):
                applier.infer_deletions((gone or {}).get(entity_type, ()))
        appliers[entity_type] = applier
    for entity_type in REFERENCE_TYPES:
        appliers[entity_type].restore_referenced()
        appliers[entity_type].infer_orphans()
    counts = {entity_type: a.counts for entity_type, a in appliers.items()}
    conn.execute(delete(_STAGING).where(_S.run_id == run_id))
    start = time.perf_counter()
    fleet_levels.follow_run(conn, target=target, now=now, counts=counts)
    return Applied(
        counts,
        [item for a in appliers.values() for item in a.refused],
        levels_seconds=time.perf_counter() - start,
    )


@dataclass(frozen=True)
class Appliers:
    """One applier per entity type on one connection: the apply of a run begun early."""

    by_type: dict[EntityType, _EntityApplier]

    @classmethod
    def open(cls, conn: Connection, *, run_id: int, target: str, now: datetime) -> Appliers:
        appliers = {t: _EntityApplier(conn, SPECS[t], run_id, target, now) for t in APPLY_ORDER}
        for applier in appliers.values():
            applier.begin_listing()
        return cls(appliers)

    def apply_listed(self, rows: Sequence[StagedRow]) -> bool:
        """Apply a batch of staged rows, references first; False if it repeats an entity (see
        :meth:`_EntityApplier.apply_listed`), in which case the caller must roll back."""
        by_type: dict[str, list[StagedRow]] = {}
        for row in rows:
            by_type.setdefault(row[1], []).append(row)
        return all(self.by_type[t].apply_listed(by_type[t]) for t in APPLY_ORDER if t in by_type)

    def applied_all(self, conn: Connection, run_id: int) -> bool:
        """Whether :meth:`apply_listed` took every row run ``run_id`` staged: then none repeats an
        entity (it would have given up), and only what follows the writes is left to do."""
        counted = select(_S.entity_type, func.count()).where(_S.run_id == run_id)
        staged = {t: int(n) for t, n in conn.execute(counted.group_by(_S.entity_type))}
        return all(staged.get(t, 0) == a.listed for t, a in self.by_type.items()) and not (
            set(staged) - set(self.by_type)
        )


def retire_memberships(
    conn: Connection, *, run_id: int, target: str, now: datetime
) -> dict[EntityType, EntityCounts]:
    """End every live membership of ``target`` as run ``run_id``: what only it saw is deleted.

    The retirement's apply (``phala-sync targets retire``): no listing, only the deletions and
    ownership moves that the target's departure causes, then the references left orphaned.
    """
    appliers: dict[EntityType, _EntityApplier] = {}
    for entity_type in APPLY_ORDER:
        applier = _EntityApplier(conn, SPECS[entity_type], run_id, target, now)
        if SPECS[entity_type].scoped:
            applier.infer_deletions(membership.live_keys(conn, target, entity_type))
        appliers[entity_type] = applier
    for entity_type in REFERENCE_TYPES:
        appliers[entity_type].restore_referenced()
        appliers[entity_type].infer_orphans()
    counts = {entity_type: a.counts for entity_type, a in appliers.items()}
    fleet_levels.follow_run(conn, target=target, now=now, counts=counts)
    return counts


def quarantine_refused(conn: Connection, run_id: int, refused: Sequence[Rejection]) -> None:
    """Record refused items in ``quarantined_items`` (no page: they failed after the fetch)."""
    insert_quarantined(conn, run_id, 1, refused)


__all__ = [
    "CHUNK",
    "Applied",
    "Appliers",
    "EntityCounts",
    "apply_staged",
    "dedupe_staging",
    "quarantine_refused",
    "retire_memberships",
]
