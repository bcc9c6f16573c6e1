"""Staging: each validated page is written to ``sync_staging`` as it streams in.

Memory stays flat in fleet size: a page is turned into rows, written in bulk (PostgreSQL ``COPY``,
SQLite ``executemany``) and committed, and nothing of it is kept but keys and counts. Nodes,
workspaces and creators repeat on many CVMs, so each distinct observation of one is staged once per
run. Staged rows never touch the inventory: only :mod:`sync.store.apply` does, atomically.

Only what may have changed is staged. At the start of a run the stager reads the target's stored
``(key, observed_hash)`` pairs of live CVMs and apps once (:meth:`Stager.load_known`); the client
skips every item whose raw bytes hash to its stored value (:func:`sync.changes.source_hash`), and
the stager only notes its key. What a listing pass showed (keys staged, keys skipped, quarantined
ids) is kept in memory, so completeness and deletion inference are set arithmetic, not queries.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select

from models import QuarantinedItem, StagedRecord, table_of
from sync.api.pages import Endpoint, Page, Rejection
from sync.changes import dumps_fields, observed_hash, source_hash
from sync.records import LISTED_TYPES, AppBundle, CvmBundle, EntityType, Record
from sync.store.bulk import copy_rows
from sync.store.specs import APP_MEMBERS, SPECS

_STAGING = table_of(StagedRecord)
_QUARANTINE = table_of(QuarantinedItem)
_COLUMNS = (
    "run_id",
    "entity_type",
    "entity_id",
    "pass_no",
    "observed_hash",
    "fields_json",
    "raw_json",
)
#: The entity type each endpoint lists.
LISTED: dict[Endpoint, EntityType] = {"cvms": "cvm", "apps": "app"}

StagedRow = tuple[int, str, str, int, str, str | None, str | None]


def staged_row(
    run_id: int,
    pass_no: int,
    record: Record,
    raw: bytes | None,
    extra: dict[str, Any] | None = None,
    *,
    api_version: str | None = None,
) -> StagedRow:
    """The staging row of one record: canonical fields as JSON plus the observation hash.

    A listed record (with its raw item and version) is hashed by its source bytes, which determine
    its fields; a reference record by its canonical fields.
    """
    fields = record.known_fields()
    del fields[record.key_field]
    if extra:
        fields.update(extra)
    fields_json = dumps_fields(fields)
    if raw is not None and api_version is not None:
        digest = source_hash(raw, api_version)
    else:
        digest = observed_hash(fields_json, raw)
    return (
        run_id,
        record.entity_type,
        record.key,
        pass_no,
        digest,
        fields_json.decode(),
        raw.decode() if raw is not None else None,
    )


def _unstorable(page: Page[Any], key: str, raw: bytes, exc: TypeError) -> Rejection:
    """A valid item with a value that neither database can hold, set aside before staging.

    The canonical encoder refuses exactly those: integers beyond 64 bits (no integer column
    holds them) and text with lone surrogates (not encodable as UTF-8).
    """
    return Rejection(page.endpoint, page.number, None, key, raw, f"a value cannot be stored: {exc}")


def _digest(stored_hash: str) -> bytes:
    try:
        return bytes.fromhex(stored_hash)
    except ValueError:  # not a hash this release wrote: never equal, so the item is validated
        return b""


@dataclass
class ListingPass:
    """What one pass of one listing showed: keys only, so a fleet costs a few MB."""

    pass_no: int = 1
    staged: set[str] = field(default_factory=set)  # new or changed items, written to staging
    skipped: set[str] = field(default_factory=set)  # items whose bytes equal the stored ones
    held: set[str] = field(default_factory=set)  # ids of quarantined items
    unkeyed: int = 0  # quarantined items without an id
    quarantined: int = 0

    @property
    def distinct(self) -> int:
        """Distinct entities listed (staged or skipped), not counting quarantined ones."""
        return len(self.staged | self.skipped)

    @property
    def held_only(self) -> set[str]:
        """Quarantined ids that the pass did not also list validly."""
        return self.held - self.staged - self.skipped

    @property
    def unchanged_skipped(self) -> int:
        return len(self.skipped - self.staged)


@dataclass
class Stager:
    """Writes one run's pages to the staging table; one instance per run."""

    engine: Engine
    run_id: int
    target: str = "default"
    #: Pages written per commit: one transaction per page costs a commit round trip each.
    pages_per_commit: int = 20
    _refs: dict[tuple[str, str], Record] = field(default_factory=dict)
    _known: dict[EntityType, dict[str, bytes]] = field(default_factory=dict)
    _passes: dict[EntityType, ListingPass] = field(default_factory=dict)
    _conn: Connection | None = None
    _pending: int = 0
    #: Seconds spent building and writing staged rows (for run timings).
    seconds: float = 0.0
    #: Items quarantined per endpoint over all passes (invalid, or with an unstorable value).
    quarantined: dict[str, int] = field(default_factory=dict)
    #: Of those, valid items set aside here for a value no column can hold (see _unstorable).
    unstorable: dict[str, int] = field(default_factory=dict)

    # ------------------------------------------------------------------------ what is stored
    def load_known(self, entity_types: Iterable[EntityType] = LISTED_TYPES) -> None:
        """Read the stored ``(key, observed_hash)`` of the target's live CVMs and apps.

        Kept compact (hashes as 16-byte digests) and shrinking: an entry leaves the map when its
        entity is listed (see :meth:`_note`), so what is left at the end is what was not seen.
        """
        with self.engine.connect() as conn:
            for entity_type in entity_types:
                spec = SPECS[entity_type]
                t = spec.table
                rows = conn.execute(
                    select(spec.key_column, t.c.observed_hash).where(
                        t.c.target == self.target, t.c.deleted_at.is_(None)
                    )
                )
                self._known[entity_type] = {str(k): _digest(h) for k, h in rows}

    def known(self, entity_type: EntityType) -> dict[str, bytes]:
        """Key -> stored digest of the live entities of this target not listed yet."""
        return self._known.setdefault(entity_type, {})

    # ------------------------------------------------------------------------ listing passes
    def begin_pass(self, endpoint: Endpoint, pass_no: int) -> None:
        entity_type = LISTED[endpoint]
        if pass_no > 1 and entity_type in self._known:
            self.load_known([entity_type])  # the earlier pass took its entries out
        self._passes[entity_type] = ListingPass(pass_no)

    def current(self, endpoint: Endpoint) -> ListingPass:
        entity_type = LISTED[endpoint]
        if entity_type not in self._passes:
            self._passes[entity_type] = ListingPass()
        return self._passes[entity_type]

    def gone(self, endpoint: Endpoint) -> list[str]:
        """Stored live entities of this target that the final pass did not show (sorted)."""
        entity_type = LISTED[endpoint]
        seen = self.current(endpoint)
        known = self._known.get(entity_type, {})  # listed entities have left it (see _note)
        return sorted(known.keys() - seen.held)

    # ------------------------------------------------------------------------ writing pages
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
        start = time.perf_counter()
        listing = self.current("cvms")
        known = self.known("cvm")
        pass_no, version = listing.pass_no, page.version
        rows: list[StagedRow] = []
        unstorable: list[Rejection] = []
        refs = self._refs
        for b in page.items:
            try:
                row = staged_row(self.run_id, pass_no, b.cvm, b.raw, api_version=version)
                new_refs = [
                    (ref, staged_row(self.run_id, pass_no, ref, None))
                    for ref in (b.node, b.workspace, b.creator)
                    if ref is not None and refs.get((ref.entity_type, ref.key)) != ref
                ]
            except TypeError as exc:  # a value no column can hold (see _unstorable)
                unstorable.append(_unstorable(page, b.cvm.key, b.raw, exc))
                continue
            rows.append(row)
            listing.staged.add(b.cvm.key)
            known.pop(b.cvm.key, None)
            for ref, ref_row in new_refs:
                refs[(ref.entity_type, ref.key)] = ref
                rows.append(ref_row)
        self._finish_page(listing, page, rows, unstorable, start)

    def app_page(self, page: Page[AppBundle]) -> None:
        start = time.perf_counter()
        listing = self.current("apps")
        known = self.known("app")
        pass_no, version = listing.pass_no, page.version
        rows: list[StagedRow] = []
        unstorable: list[Rejection] = []
        for b in page.items:
            members = b.member_vm_uuids
            extra = {APP_MEMBERS: list(members)} if isinstance(members, tuple) else None
            try:
                row = staged_row(self.run_id, pass_no, b.app, b.raw, extra, api_version=version)
            except TypeError as exc:
                unstorable.append(_unstorable(page, b.app.key, b.raw, exc))
                continue
            rows.append(row)
            listing.staged.add(b.app.key)
            known.pop(b.app.key, None)
        self._finish_page(listing, page, rows, unstorable, start)

    def _finish_page(
        self,
        listing: ListingPass,
        page: Page[Any],
        rows: Sequence[StagedRow],
        unstorable: list[Rejection],
        start: float,
    ) -> None:
        """Note what the page showed, write its rows and quarantined items, count its time."""
        self._note(listing, page, unstorable)
        held = [*page.quarantined, *unstorable]
        self.quarantined[page.endpoint] = self.quarantined.get(page.endpoint, 0) + len(held)
        self.unstorable[page.endpoint] = self.unstorable.get(page.endpoint, 0) + len(unstorable)
        self._write(rows, held, listing.pass_no)
        self.seconds += time.perf_counter() - start

    def _note(self, listing: ListingPass, page: Page[Any], unstorable: list[Rejection]) -> None:
        """Count what a page showed; its skipped entities leave the map of those not listed yet."""
        known = self._known.get(LISTED[page.endpoint])
        if known:
            for key in page.unchanged:
                known.pop(key, None)
        listing.skipped.update(page.unchanged)
        listing.quarantined += len(page.quarantined) + len(unstorable)
        for q in [*page.quarantined, *unstorable]:
            if q.entity_id is None:
                listing.unkeyed += 1
            else:
                listing.held.add(q.entity_id)

    def _write(
        self, rows: Sequence[StagedRow], quarantined: Sequence[Rejection], pass_no: int
    ) -> None:
        if not rows and not quarantined:
            return
        conn = self._connection()
        if not conn.in_transaction():
            conn.begin()  # explicit: the COPY below goes through the driver, unseen by autobegin
        try:
            if rows:
                if conn.dialect.name == "postgresql":
                    copy_rows(conn, _STAGING, _COLUMNS, rows)
                else:
                    conn.execute(
                        insert(_STAGING), [dict(zip(_COLUMNS, r, strict=True)) for r in rows]
                    )
            insert_quarantined(conn, self.run_id, pass_no, quarantined)
        except BaseException:
            if conn.in_transaction():
                conn.rollback()
            raise
        self._pending += 1
        if self._pending >= self.pages_per_commit:
            self.flush()


def insert_quarantined(
    conn: Connection, run_id: int, pass_no: int, items: Sequence[Rejection]
) -> None:
    """Record quarantined items of a run in ``quarantined_items`` (on the caller's transaction)."""
    if items:
        now = datetime.now(UTC)
        conn.execute(
            insert(_QUARANTINE),
            [
                {
                    "run_id": run_id,
                    "endpoint": q.endpoint,
                    "page": q.page,
                    "item_index": q.index,
                    "entity_id": q.entity_id,
                    "pass_no": pass_no,
                    "error": q.error,
                    "raw_json": q.raw.decode(errors="replace"),
                    "observed_at": now,
                }
                for q in items
            ],
        )


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
