"""The apply ahead: a first sync's rows written while its fetch runs, in the apply's transaction.

PostgreSQL only (SQLite has one writer at a time; there it never runs). The reliability harness's
model (`Harness.expect`) checks that what a run applied ahead is exactly what it must record.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import Engine

from sync import clock
from sync.run import run_sync
from sync.store import ahead
from sync.store.apply import Appliers
from sync.store.ledger import start_run
from sync.store.lock import run_lock
from sync.store.staging import StagedRow
from tests.conftest import migrated_engine
from tests.reliability.conftest import Before, Harness, new_harness
from tests.reliability.oracle import observe

pytestmark = pytest.mark.postgres

WAIT = 30.0


@pytest.fixture(params=[pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """These tests run on PostgreSQL only."""
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def harness(engine: Engine) -> Harness:
    """The reliability tests' 200-CVM fleet over this module's PostgreSQL database."""
    return new_harness(engine)


@pytest.fixture
def applied(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the batches the apply ahead applied, as it applied them."""
    sizes: list[int] = []
    real = Appliers.apply_listed

    def spy(self: Appliers, rows: Sequence[StagedRow]) -> bool:
        done = real(self, rows)
        sizes.append(len(rows))
        return done

    monkeypatch.setattr(Appliers, "apply_listed", spy)
    return sizes


def test_a_first_sync_applies_while_it_fetches(engine: Engine, applied: list[int]) -> None:
    h = new_harness(engine, size=1500, page_size=50)
    first_batch = threading.Event()
    before_end: list[bool] = []

    def on_page(endpoint: str, pages: int, planned: int, items: int) -> None:
        if len(applied) == 1:
            first_batch.set()
        if endpoint == "apps" and pages == planned:  # the fetch's last page: it waits here
            before_end.append(first_batch.wait(WAIT) or bool(applied))
            staged.extend(_rows(engine, "SELECT count(*), count(fields_json) FROM sync_staging"))

    staged: list[tuple[Any, ...]] = []

    summary = run_sync(engine, h.settings(), transport=h.transport(), on_page=on_page)
    assert before_end == [True], "no batch was applied before the fetch ended"
    assert "ahead" in summary.timings
    # What the apply ahead was handed whole, staging kept without its payload.
    [(rows, payloads)] = staged
    assert rows > 0
    assert payloads == 0
    # What went ahead is all that was staged: every CVM created once, its events exact.
    assert sum(applied) >= 1500
    assert summary.counts["cvm"]["created"] == 1500
    h.expect(summary)


def test_it_starts_the_memberships_as_it_applies(engine: Engine, applied: list[int]) -> None:
    """Every CVM and app listed, with the hash stored, as the apply after the fetch records them
    (the next run skips an item whose bytes equal its membership's hash)."""
    h = new_harness(engine, size=300, page_size=50)
    summary = run_sync(engine, h.settings(), transport=h.transport())
    assert applied, "nothing was applied ahead"
    stored = {
        (kind, str(key), digest)
        for kind, table, column in (("cvm", "cvms", "vm_uuid"), ("app", "apps", "app_id"))
        for key, digest in _rows(
            engine, f"SELECT {column}, observed_hash FROM {table} WHERE deleted_at IS NULL"
        )
    }
    members = _rows(
        engine,
        "SELECT entity_type, entity_id, observed_hash, target, first_seen_run_id,"
        " last_seen_run_id, ended_at FROM target_memberships",
    )
    target, run_id = h.settings().target, summary.run_id
    assert {(kind, key, digest) for kind, key, digest, *_ in members} == stored
    assert {tuple(row[3:]) for row in members} == {(target, run_id, run_id, None)}
    assert len(members) == len(stored) == 300 + summary.counts["app"]["seen"]


def _rows(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.exec_driver_sql(sql)]


def test_a_run_that_fails_after_writing_ahead_leaves_no_trace(
    engine: Engine, applied: list[int]
) -> None:
    h = new_harness(engine, size=1500, page_size=50)
    before = Before.of(engine)

    def on_page(endpoint: str, pages: int, planned: int, items: int) -> None:
        if endpoint == "apps":
            raise RuntimeError("the run breaks after its CVMs were applied ahead")

    with pytest.raises(RuntimeError, match="applied ahead"):
        run_sync(engine, h.settings(), transport=h.transport(), on_page=on_page)
    assert applied, "nothing was applied ahead before the failure"
    failed = before.assert_only_a_failed_run_added(engine)
    assert "applied ahead" in failed["error"]
    with run_lock(engine, timeout=5):  # the lock went with the rolled-back transaction
        pass
    assert not ahead._OPEN
    h.expect(h.run())  # the next run records the whole fleet


def test_a_second_listing_pass_gives_up_and_the_run_is_exact(
    harness: Harness, applied: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    h.faults.set(["page_drift:endpoint=cvms,page=3,insert=4"])
    with caplog.at_level(logging.INFO, logger="sync.run"):
        summary = h.run()
    # Staging kept only keys and hashes: the fetch starts over, without the apply ahead. Its
    # writer may meet a drifted item twice before the second pass begins: either reason holds.
    assert "reads the API again: the apply ahead gave up (" in caplog.text
    assert "ahead" not in summary.timings
    assert summary.listing_complete
    h.expect(summary, obs=observe(h.fleet))
    assert not ahead._OPEN


def test_a_give_up_after_the_last_page_reads_the_api_again(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The writer fails on a batch the stager handed over with the last page: the payloads of
    the staged rows are lost, so the fetch reads the API again before any apply meets them."""
    h = new_harness(engine, size=300, page_size=50)
    real = ahead.ApplyAhead.drain

    def drain(self: ahead.ApplyAhead) -> None:
        real(self)
        self.abandon("writing failed: the test's")

    monkeypatch.setattr(ahead.ApplyAhead, "drain", drain)
    with caplog.at_level(logging.INFO, logger="sync.run"):
        summary = run_sync(engine, h.settings(), transport=h.transport())
    assert (
        "reads the API again: the apply ahead gave up (writing failed: the test's)" in caplog.text
    )
    assert "ahead" not in summary.timings
    assert summary.counts["cvm"]["created"] == 300
    h.expect(summary)
    assert not ahead._OPEN


def test_a_repeated_entity_is_refused_by_the_applier(engine: Engine) -> None:
    h = new_harness(engine, size=5)
    h.baseline()  # a run to own the ledger row the rows name
    run_id = 1

    def row(entity_id: str, digest: str) -> StagedRow:
        return (run_id, "creator", entity_id, 1, digest, '{"username": "x"}', None)

    with engine.connect() as conn, conn.begin():
        appliers = Appliers.open(conn, run_id=run_id, target="t", now=clock.now())
        assert appliers.by_type["creator"]._written is None  # the baseline stored creators
        assert not appliers.apply_listed([row("c-1", "aa"), row("c-1", "bb")])
        assert appliers.apply_listed([row("c-2", "aa")])
        assert not appliers.apply_listed([row("c-2", "bb")]), "written by this run already"
        conn.rollback()


def test_on_empty_tables_it_refuses_repeats_without_reading_them(engine: Engine) -> None:
    """A database's first sync: what it wrote is remembered, not read back."""
    run_id = start_run(engine, target="t", api_version="2026-01-21", now=clock.now())

    def row(entity_id: str, digest: str) -> StagedRow:
        return (run_id, "creator", entity_id, 1, digest, '{"username": "x"}', None)

    with engine.connect() as conn, conn.begin():
        appliers = Appliers.open(conn, run_id=run_id, target="t", now=clock.now())
        assert appliers.by_type["creator"]._written == set()
        assert not appliers.apply_listed([row("c-1", "aa"), row("c-1", "bb")])
        assert appliers.apply_listed([row("c-2", "aa"), row("c-3", "aa")])
        assert not appliers.apply_listed([row("c-4", "aa"), row("c-2", "bb")]), "written already"
        assert appliers.by_type["creator"].counts.created == 2
        conn.rollback()


def test_it_never_waits_for_the_lock(harness: Harness) -> None:
    h = harness
    fetching = threading.Event()
    result: list[Any] = []

    def on_page(endpoint: str, pages: int, planned: int, items: int) -> None:
        fetching.set()

    def run() -> None:
        result.append(run_sync(h.engine, h.settings(), transport=h.transport(), on_page=on_page))

    with run_lock(h.engine, timeout=5):  # another target's apply, say
        thread = threading.Thread(target=run)
        thread.start()
        # The run opens and fetches while the lock is held: it needs it only to apply.
        assert fetching.wait(WAIT)
    thread.join(WAIT)
    (summary,) = result
    assert "ahead" not in summary.timings
    h.expect(summary)


def test_another_target_fetches_while_one_applies_ahead(harness: Harness) -> None:
    h = harness
    second_staged = threading.Event()
    summaries: dict[str, Any] = {}
    errors: list[BaseException] = []
    threads: list[threading.Thread] = []

    def run(target: str, on_page: Any) -> None:
        try:
            summaries[target] = run_sync(
                h.engine, h.settings(target=target), transport=h.transport(), on_page=on_page
            )
        except BaseException as exc:
            errors.append(exc)

    def start(target: str, on_page: Any) -> None:
        threads.append(threading.Thread(target=run, args=(target, on_page)))
        threads[-1].start()

    def first_on_page(endpoint: str, pages: int, planned: int, items: int) -> None:
        if endpoint == "apps" and pages == 1:  # holding the lock, its CVMs applied ahead
            start("second", second_on_page)
            assert second_staged.wait(WAIT), "the second target could not fetch meanwhile"

    def second_on_page(endpoint: str, pages: int, planned: int, items: int) -> None:
        second_staged.set()

    start("first", first_on_page)
    threads[0].join(WAIT)  # the first run started the second one as it fetched
    for t in threads[1:]:
        t.join(WAIT)
    assert not errors, errors
    assert "ahead" in summaries["first"].timings
    assert "ahead" not in summaries["second"].timings  # the lock was taken: after its fetch
    assert summaries["second"].counts["cvm"]["seen"] == len(observe(h.fleet)["cvm"])
    assert summaries["second"].counts["cvm"]["created"] == 0


def test_a_second_run_applies_after_its_fetch(harness: Harness) -> None:
    first, second = harness.baseline(), harness.run()
    assert "ahead" in first.timings
    assert "ahead" not in second.timings


def test_sqlite_applies_after_the_fetch(sqlite_url: str, request: pytest.FixtureRequest) -> None:
    with migrated_engine(sqlite_url, request) as engine:
        summary = new_harness(engine).baseline()
    assert "ahead" not in summary.timings
