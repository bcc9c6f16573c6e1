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

from sqlalchemy import Engine, delete, func, insert, select

from models import QuarantinedItem as QuarantinedRow
from models import StagedRecord, table_of
from sync.changes import dumps_fields, observed_hash
from sync.pages import Page, QuarantinedItem
from sync.records import AppBundle, CvmBundle, Record
from sync.store.specs import APP_MEMBERS

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

StagedRow = tuple[int, str, str, int, str, str, str | None]


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
    _refs: dict[tuple[str, str], str] = field(default_factory=dict)

    def cvm_page(self, page: Page[CvmBundle]) -> None:
        rows: list[StagedRow] = []
        for b in page.items:
            rows.append(staged_row(self.run_id, self.pass_no, b.cvm, b.raw))
            for ref in (b.node, b.workspace, b.creator):
                if ref is not None:
                    row = staged_row(self.run_id, self.pass_no, ref, None)
                    if self._refs.get((row[1], row[2])) != row[4]:
                        self._refs[(row[1], row[2])] = row[4]
                        rows.append(row)
        self._write(rows, page.quarantined)

    def app_page(self, page: Page[AppBundle]) -> None:
        rows: list[StagedRow] = []
        for b in page.items:
            members = b.member_vm_uuids
            extra = {APP_MEMBERS: list(members)} if isinstance(members, tuple) else None
            rows.append(staged_row(self.run_id, self.pass_no, b.app, b.raw, extra))
        self._write(rows, page.quarantined)

    def _write(self, rows: Sequence[StagedRow], quarantined: Sequence[QuarantinedItem]) -> None:
        with self.engine.begin() as conn:
            if rows:
                if conn.dialect.name == "postgresql":
                    dbapi: Any = conn.connection.driver_connection
                    with (
                        dbapi.cursor() as cur,
                        cur.copy(f"COPY sync_staging ({', '.join(_COLUMNS)}) FROM STDIN") as copy,
                    ):
                        for row in rows:
                            copy.write_row(row)
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


def clear_staging(engine: Engine, run_ids: Iterable[int]) -> None:
    ids = list(run_ids)
    if ids:
        with engine.begin() as conn:
            conn.execute(delete(_STAGING).where(_STAGING.c.run_id.in_(ids)))
