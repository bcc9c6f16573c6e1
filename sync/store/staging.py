"""Staging: each validated page is written to ``sync_staging`` as it streams in.

Memory stays flat in fleet size: a page is turned into rows, which wait for the commit (every
``pages_per_commit`` pages) or until ``rows_per_write`` of them wait, then are written in bulk
(:func:`sync.store.bulk.insert_tuples`); nothing of a page is kept after that but keys and counts.
Nodes, workspaces and creators repeat on many CVMs, so each distinct observation of one is staged
once per run. Staged rows never touch the inventory: only :mod:`sync.store.apply` does, atomically.

Only what may have changed is staged. At the start of a listing pass the stager reads the
``(key, observed_hash)`` pairs of the CVMs or apps the target sees (its live memberships) once
(:meth:`Stager.load_known`); the client skips every item whose raw bytes hash to its stored
value (:func:`sync.changes.source_hash`).
What a pass showed is kept by :mod:`sync.listing`, which calls :meth:`Stager.stage` for each page.
The rows an item stages are its endpoint's declaration (:class:`~sync.endpoints.EndpointSpec`):
its ``listed`` record with any ``extra`` pseudo-fields (:func:`listed_row`), and the
``references`` it carries (:func:`reference_row`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, delete, insert

from models import QuarantinedItem, StagedRecord, table_of
from sync import clock
from sync.api.pages import Page, Rejection
from sync.changes import dumps_fields, fields_hash, source_hash
from sync.endpoints import EndpointSpec, get_endpoint
from sync.records import EntityType, Record
from sync.store.bulk import insert_tuples
from sync.store.membership import live_hashes

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
StagedRow = tuple[int, str, str, int, str, str | None, str | None]


class RowSink(Protocol):
    """Where staged rows also go as they are written: the apply ahead (:mod:`sync.store.ahead`).

    While it goes on, it is handed each row whole and applies it, so staging keeps only the row's
    key and hash (no payload): the COPY of every payload into staging, and PostgreSQL's
    compression of it, cost a first sync a tenth of its time. If it gives up after that, the
    payloads are lost, and the fetch must start over (:class:`PayloadsLost`).
    """

    @property
    def going(self) -> bool: ...

    def put(self, rows: Sequence[StagedRow]) -> None: ...

    def abandon(self, reason: str) -> None: ...

    def drain(self) -> None: ...


class PayloadsLost(Exception):
    """The apply ahead gave up after staging kept only keys and hashes: read the listing again,
    without it (:func:`sync.run.fetch_and_stage` does)."""


def listed_row(
    run_id: int,
    pass_no: int,
    record: Record,
    raw: bytes,
    api_version: str,
    extra: dict[str, Any] | None = None,
) -> StagedRow:
    """The staging row of a listed item (CVM, app): its ``observed_hash`` is its source hash.

    The raw bytes, under the version and release, determine the fields
    (:func:`sync.changes.source_hash`), and the next run compares them before validating.
    """
    fields_json = _fields_json(record, extra)
    digest = source_hash(raw, api_version)
    return (
        run_id, record.entity_type, record.key, pass_no, digest, fields_json.decode(), raw.decode()
    )  # fmt: skip


def reference_row(run_id: int, pass_no: int, record: Record) -> StagedRow:
    """The staging row of a node, workspace or creator: its ``observed_hash`` hashes its fields.

    A reference has no raw bytes of its own (:func:`sync.changes.fields_hash`).
    """
    fields_json = _fields_json(record, None)
    digest = fields_hash(fields_json)
    return (run_id, record.entity_type, record.key, pass_no, digest, fields_json.decode(), None)


def _fields_json(record: Record, extra: dict[str, Any] | None) -> bytes:
    """The record's canonical fields without its key, plus ``extra`` pseudo-fields."""
    fields = record.known_fields()
    del fields[record.key_field]
    if extra:
        fields.update(extra)
    return dumps_fields(fields)


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
class Stager:
    """Writes one run's pages to the staging table; one instance per run."""

    engine: Engine
    run_id: int
    target: str = "default"
    #: Pages written per commit: one transaction per page costs a commit round trip each.
    pages_per_commit: int = 20
    #: Staged rows are written in one statement once this many wait (a first sync's page has
    #: about 130), else at the commit. One COPY per page cost a round trip per page: most pages of
    #: a 1% resync hold one or two changed items (1.8 s of its fetch at 100k CVMs).
    rows_per_write: int = 1_000
    #: Also handed every batch of rows written, and told when a second listing pass begins.
    ahead: RowSink | None = None
    _refs: dict[tuple[str, str], Record] = field(default_factory=dict)
    _conn: Connection | None = None
    _pending: int = 0
    _unwritten: list[StagedRow] = field(default_factory=list)
    #: Whether rows were staged without their payload (the apply ahead took them whole).
    _slim: bool = False
    #: Seconds spent building and writing staged rows (for run timings).
    seconds: float = 0.0
    #: Seconds spent reading the stored hashes (for run timings).
    load_seconds: float = 0.0

    # ------------------------------------------------------------------------ what is stored
    def load_known(self, entity_type: EntityType) -> dict[str, bytes]:
        """The hash by key of the CVMs or apps the target sees, as it last listed them.

        Read from the target's live memberships (:mod:`sync.store.membership`): an item another
        target stored but this one never listed is validated and staged, to start its membership.

        Kept compact: hashes as 16-byte digests, about 10 MB for 100k entities.
        """
        start = time.perf_counter()
        with self.engine.connect() as conn:
            rows = live_hashes(conn, self.target, entity_type)
            known = {k: _digest(h) for k, h in rows}
        self.load_seconds += time.perf_counter() - start
        return known

    # ------------------------------------------------------------------------ writing pages
    def flush(self) -> None:
        """Write the rows still waiting and commit (before anything reads staging on another
        connection)."""
        self._write_waiting()
        if self._conn is not None and self._conn.in_transaction():
            self._conn.commit()
        self._pending = 0

    def close(self) -> None:
        """Write and commit what was staged, and return the one connection held for the run's
        pages (a run that fails keeps what it staged before, as its quarantined items)."""
        try:
            self.flush()
        finally:
            self._unwritten = []
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self.engine.connect()
        return self._conn

    def stage(self, page: Page[Any], pass_no: int) -> tuple[list[str], list[Rejection]]:
        """Write one page of pass ``pass_no``: its new or changed items and its quarantined ones.

        Returns the keys staged and the valid items set aside for a value no column can hold.
        """
        start = time.perf_counter()
        if pass_no > 1 and self.ahead is not None:
            self.ahead.abandon("the listing was read again (the final pass is the truth)")
        self.check_payloads()
        rows, staged, set_aside = self._rows(get_endpoint(page.endpoint), page, pass_no)
        self._write(rows, [*page.rejections, *set_aside], pass_no)
        self.seconds += time.perf_counter() - start
        return staged, set_aside

    def _rows(
        self, spec: EndpointSpec[Any], page: Page[Any], pass_no: int
    ) -> tuple[list[StagedRow], list[str], list[Rejection]]:
        """A page's rows as its endpoint declares them: each item's listed record (with its
        pseudo-fields), then the records it refers to that were not staged yet in this run."""
        run_id, version, refs = self.run_id, page.version, self._refs
        listed, extra, references = spec.listed, spec.extra, spec.references
        rows: list[StagedRow] = []
        staged: list[str] = []
        set_aside: list[Rejection] = []
        for b in page.items:
            record = listed(b)
            try:
                row = listed_row(run_id, pass_no, record, b.raw, version, extra(b))
                new_refs = [
                    (ref, reference_row(run_id, pass_no, ref))
                    for ref in references(b)
                    if ref is not None and refs.get((ref.entity_type, ref.key)) != ref
                ]
            except TypeError as exc:  # a value no column can hold (see _unstorable)
                set_aside.append(_unstorable(page, record.key, b.raw, exc))
                continue
            rows.append(row)
            staged.append(record.key)
            for ref, ref_row in new_refs:
                refs[(ref.entity_type, ref.key)] = ref
                rows.append(ref_row)
        return rows, staged, set_aside

    def discard_earlier_passes(self, entity_type: EntityType, pass_no: int) -> None:
        """Keep only the final listing pass of one entity type: the consistent one is the truth.

        Items that an earlier, drifted pass showed but the consistent pass did not are gone (or
        were never there), so they must not count as seen. Reference records are kept: they are
        not listed.
        """
        s = _STAGING.c
        with self.engine.begin() as conn:
            conn.execute(
                delete(_STAGING).where(
                    s.run_id == self.run_id, s.entity_type == entity_type, s.pass_no < pass_no
                )
            )

    def _write(
        self, rows: Sequence[StagedRow], quarantined: Sequence[Rejection], pass_no: int
    ) -> None:
        if not rows and not quarantined:
            return
        self._unwritten.extend(rows)
        if quarantined:
            with self._transaction() as conn:
                insert_quarantined(conn, self.run_id, pass_no, quarantined)
        if len(self._unwritten) >= self.rows_per_write:
            self._write_waiting()
        self._pending += 1
        if self._pending >= self.pages_per_commit:
            self.flush()

    def check_payloads(self) -> None:
        """Raise :class:`PayloadsLost` if rows were staged without their payload and the apply
        ahead that took them whole gave up since."""
        if self._slim and self.ahead is not None and not self.ahead.going:
            raise PayloadsLost

    def payloads_kept(self) -> None:
        """After the last page: wait until the apply ahead applied every row it was handed, then
        :meth:`check_payloads` (so that a run's apply never meets a row without its payload)."""
        if self._slim and self.ahead is not None:
            self.ahead.drain()
        self.check_payloads()

    def _write_waiting(self) -> None:
        """Write the staged rows that wait, in one statement, in the open transaction: without
        their payloads while the apply ahead goes on (it is handed them whole)."""
        rows, self._unwritten = self._unwritten, []
        if rows:
            slim = self.ahead is not None and self.ahead.going
            with self._transaction() as conn:
                kept = [(*r[:5], None, None) for r in rows] if slim else rows
                insert_tuples(conn, _STAGING, _COLUMNS, kept)
            if self.ahead is not None:
                self._slim = self._slim or slim
                self.ahead.put(rows)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """The run's staging connection in its open transaction, rolled back on an error."""
        conn = self._connection()
        if not conn.in_transaction():
            conn.begin()  # explicit: a COPY goes through the driver, unseen by autobegin
        try:
            yield conn
        except BaseException:
            self._unwritten = []
            if conn.in_transaction():
                conn.rollback()
            raise


def insert_quarantined(
    conn: Connection, run_id: int, pass_no: int, items: Sequence[Rejection]
) -> None:
    """Record quarantined items of a run in ``quarantined_items`` (on the caller's transaction)."""
    if items:
        now = clock.now()
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


def clear_staging(engine: Engine, run_ids: Iterable[int], *, quarantine: bool = False) -> None:
    """Drop the staged rows of runs (and their quarantined items, for a fetch about to restart)."""
    ids = list(run_ids)
    if ids:
        with engine.begin() as conn:
            conn.execute(delete(_STAGING).where(_STAGING.c.run_id.in_(ids)))
            if quarantine:
                conn.execute(delete(_QUARANTINE).where(_QUARANTINE.c.run_id.in_(ids)))
