"""Staging: each validated page is written to ``sync_staging`` as it streams in.

Memory stays flat in fleet size: a page is turned into rows, written in bulk (PostgreSQL ``COPY``,
SQLite ``executemany``) and committed, and nothing of it is kept but counts. Nodes, workspaces and
creators repeat on many CVMs, so each distinct observation of one is staged once per run.
Staged rows never touch the inventory: only :mod:`sync.store.apply` does, atomically.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select

from models import QuarantinedItem as QuarantinedRow
from models import StagedRecord, table_of
from sync.changes import dumps_fields, observed_hash
from sync.pages import Page, QuarantinedItem
from sync.records import AppBundle, CvmBundle, Record
from sync.store.bulk import copy_rows
from sync.store.specs import APP_MEMBERS, SPECS, EntitySpec

_STAGING = table_of(StagedRecord)
_QUARANTINE = table_of(QuarantinedRow)
_COLUMNS = (
    "run_id",
    "entity_type",
    "entity_id",
    "pass_no",
    "observed_hash",
    "fields_json",
    "raw_json",
)

StagedRow = tuple[int, str, str, int, str, str | None, str | None]


def staged_row(
    run_id: int,
    pass_no: int,
    record: Record,
    raw: bytes | None,
    extra: dict[str, Any] | None = None,
) -> StagedRow:
    """The staging row of one record: canonical fields as JSON plus the observation hash."""
    fields = record.known_fields()
    del fields[record.key_field]
    if extra:
        fields.update(extra)
    fields_json = dumps_fields(fields)
    return (
        run_id,
        record.entity_type,
        record.key,
        pass_no,
        observed_hash(fields_json, raw),
        fields_json.decode(),
        raw.decode() if raw is not None else None,
    )


@dataclass
class Stager:
    """Writes one run's pages to the staging table; one instance per run."""

    engine: Engine
    run_id: int
    pass_no: int = 1
    _refs: dict[tuple[str, str], Record] = field(default_factory=dict)
    #: Pages written per commit: one transaction per page costs a commit round trip each.
    pages_per_commit: int = 20
    _conn: Connection | None = None
    _pending: int = 0

    def flush(self) -> None:
        """Commit what is written so far (before anything reads staging on another connection)."""
        if self._conn is not None and self._conn.in_transaction():
            self._conn.commit()
        self._pending = 0

    def close(self) -> None:
        """Commit and return the one connection held for the run's pages."""
        if self._conn is not None:
            try:
                self.flush()
            finally:
                self._conn.close()
                self._conn = None

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self.engine.connect()
        return self._conn

    def cvm_page(self, page: Page[CvmBundle]) -> None:
        rows: list[StagedRow] = []
        refs = self._refs
        for b in page.items:
            rows.append(staged_row(self.run_id, self.pass_no, b.cvm, b.raw))
            for ref in (b.node, b.workspace, b.creator):
                if ref is not None:
                    key = (ref.entity_type, ref.key)
                    if refs.get(key) != ref:
                        refs[key] = ref
                        rows.append(staged_row(self.run_id, self.pass_no, ref, None))
        self._write(rows, page.quarantined, SPECS["cvm"])

    def app_page(self, page: Page[AppBundle]) -> None:
        rows: list[StagedRow] = []
        for b in page.items:
            members = b.member_vm_uuids
            extra = {APP_MEMBERS: list(members)} if isinstance(members, tuple) else None
            rows.append(staged_row(self.run_id, self.pass_no, b.app, b.raw, extra))
        self._write(rows, page.quarantined, SPECS["app"])

    def _write(
        self,
        rows: Sequence[StagedRow],
        quarantined: Sequence[QuarantinedItem],
        listed: EntitySpec,
    ) -> None:
        conn = self._connection()
        if not conn.in_transaction():
            conn.begin()  # explicit: the COPY below goes through the driver, unseen by autobegin
        try:
            if rows:
                rows = _drop_unchanged_payloads(conn, listed, rows)
                if conn.dialect.name == "postgresql":
                    copy_rows(conn, _STAGING, _COLUMNS, rows)
                else:
                    conn.execute(
                        insert(_STAGING), [dict(zip(_COLUMNS, r, strict=True)) for r in rows]
                    )
            if quarantined:
                now = datetime.now(UTC)
                conn.execute(
                    insert(_QUARANTINE),
                    [
                        {
                            "run_id": self.run_id,
                            "endpoint": q.endpoint,
                            "page": q.page,
                            "item_index": q.index,
                            "entity_id": q.entity_id,
                            "pass_no": self.pass_no,
                            "error": q.error,
                            "raw_json": q.raw.decode(errors="replace"),
                            "observed_at": now,
                        }
                        for q in quarantined
                    ],
                )
        except BaseException:
            if conn.in_transaction():
                conn.rollback()
            raise
        self._pending += 1
        if self._pending >= self.pages_per_commit:
            self.flush()


def _drop_unchanged_payloads(
    conn: Connection, spec: EntitySpec, rows: Sequence[StagedRow]
) -> Sequence[StagedRow]:
    """Stage only the id and hash of listed items whose stored row has the same observed hash.

    The run lock is held from fetch to apply, so the stored hash cannot change in between; apply
    still compares hashes and never reads the payload of such a row.
    """
    keys = [spec.key_value(r[2]) for r in rows if r[1] == spec.entity_type]
    if not keys:
        return rows
    t = spec.table
    stored = {
        str(k): h
        for k, h in conn.execute(
            select(spec.key_column, t.c.observed_hash).where(
                spec.key_column.in_(keys), t.c.deleted_at.is_(None)
            )
        )
    }
    if not stored:
        return rows
    return [
        (r[0], r[1], r[2], r[3], r[4], None, None)
        if r[1] == spec.entity_type and stored.get(r[2]) == r[4]
        else r
        for r in rows
    ]


def distinct_staged(engine: Engine, run_id: int, entity_type: str, pass_no: int) -> int:
    """How many distinct entities of one type a listing pass staged."""
    s = _STAGING.c
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count(func.distinct(s.entity_id))).where(
                    s.run_id == run_id, s.entity_type == entity_type, s.pass_no == pass_no
                )
            ).scalar_one()
        )


def quarantine_counts(
    engine: Engine, run_id: int, endpoint: str, pass_no: int, entity_type: str
) -> tuple[int, int, int]:
    """(quarantined items, of those without an id, distinct ids not staged in the same pass)."""
    q = _QUARANTINE.c
    s = _STAGING.c
    where = (q.run_id == run_id, q.endpoint == endpoint, q.pass_no == pass_no)
    staged = select(s.entity_id).where(
        s.run_id == run_id, s.entity_type == entity_type, s.pass_no == pass_no
    )
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).where(*where)).scalar_one()
        unkeyed = conn.execute(
            select(func.count()).where(*where, q.entity_id.is_(None))
        ).scalar_one()
        keyed = conn.execute(
            select(func.count(func.distinct(q.entity_id))).where(
                *where, q.entity_id.is_not(None), q.entity_id.not_in(staged)
            )
        ).scalar_one()
    return int(total), int(unkeyed), int(keyed)


def discard_earlier_passes(engine: Engine, run_id: int, entity_type: str, pass_no: int) -> None:
    """Keep only the final listing pass of one entity type: the consistent one is the truth.

    Items that an earlier, drifted pass showed but the consistent pass did not are gone (or were
    never there), so they must not count as seen. Reference records are kept: they are not listed.
    """
    s = _STAGING.c
    with engine.begin() as conn:
        conn.execute(
            delete(_STAGING).where(
                s.run_id == run_id, s.entity_type == entity_type, s.pass_no < pass_no
            )
        )


def clear_staging(engine: Engine, run_ids: Iterable[int], *, quarantine: bool = False) -> None:
    """Drop the staged rows of runs (and their quarantined items, for a fetch about to restart)."""
    ids = list(run_ids)
    if ids:
        with engine.begin() as conn:
            conn.execute(delete(_STAGING).where(_STAGING.c.run_id.in_(ids)))
            if quarantine:
                conn.execute(delete(_QUARANTINE).where(_QUARANTINE.c.run_id.in_(ids)))
