"""The apply ahead: a first sync's rows written to the inventory while its fetch still runs.

A first sync writes every entity, its history and its change event. That apply took as long as
the fetch, and it began only after the last page: against an API 100 ms away, 20k CVMs took
8 s to fetch, then 8 s to apply, while the run's process mostly waited on the network.

So, on PostgreSQL, when a target's run sees nothing yet, the apply's transaction opens when the
fetch starts, under the database's lock, and a writer thread applies each batch of rows as the
stager writes it to staging (:meth:`ApplyAhead.put`), and starts the target's memberships of the
CVMs and apps in it. PostgreSQL then writes while the run waits for the API or parses. Staging
keeps only each row's key and hash (the writer was handed it whole). The run's apply
(:func:`sync.run.apply_run`) finishes in that same transaction: deletions, references, the
fleet's levels and the ledger row, then one commit. It is one transaction, as before: a failed run
leaves no trace, and kill -9 ends the session, so the server rolls it back and frees the lock.

It is speculative. The apply after the fetch keeps only the last sighting of an entity and only
the final listing pass; so the apply ahead gives up (:meth:`ApplyAhead.abandon`) at a second pass
or at an entity it meets again. It also gives up if writing fails. Giving up rolls back what it
wrote and frees the lock. The rows staged without their payloads are then of no use: the stager
raises :class:`~sync.store.staging.PayloadsLost` (at the next page, or after the last once the
writer drained), and the fetch reads the API again without the apply ahead; the run then applies
after the fetch, as a run always did before.

Other runs: it is tried only when the database's lock is free at once, so it never waits. While
it holds the lock, another target's run fetches and stages side by side (opening a run takes the
lock only to create or migrate the schema), and its apply waits for this run's commit.
SQLite has one writer at a time, so a transaction held open there would stop the staging: it is
PostgreSQL only.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime

from sqlalchemy import Connection, Engine

from sync import clock
from sync.errors import RunLockedError
from sync.store.apply import Appliers
from sync.store.lock import run_lock
from sync.store.membership import has_any
from sync.store.staging import StagedRow

log = logging.getLogger(__name__)

#: Whether runs may apply ahead (tests turn it off to cover the apply after the fetch alone).
ENABLED = True

#: Batches of staged rows (about 1,000 rows each) waiting for the writer; when it is this far
#: behind, the stager waits, so memory stays flat.
QUEUE_BATCHES = 2

#: Open applies ahead, by engine and run: the fetch opens one, the run's apply takes it.
_OPEN: dict[tuple[int, int], ApplyAhead] = {}


class ApplyAhead:
    """One run's apply, begun with its fetch; see the module's docstring."""

    def __init__(
        self,
        conn: Connection,
        stack: contextlib.ExitStack,
        *,
        run_id: int,
        target: str,
        now: datetime,
    ) -> None:
        self.conn = conn
        #: When the apply writes: every row it writes carries it, as ``now`` of an apply.
        self.now = now
        self.appliers = Appliers.open(conn, run_id=run_id, target=target, now=now)
        #: Seconds the writer spent applying (for the run's timings).
        self.seconds = 0.0
        self._stack = stack  # the transaction's connection and the database's lock
        self._queue: queue.Queue[list[StagedRow] | None] = queue.Queue(maxsize=QUEUE_BATCHES)
        self._reason: str | None = None  # why it gave up; None while it goes on
        self._released = False
        self._thread = threading.Thread(
            target=self._work, name="phala-sync-apply-ahead", daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------------ the fetch's side
    @property
    def going(self) -> bool:
        """Whether it goes on (it has not given up)."""
        return self._reason is None

    @property
    def reason(self) -> str | None:
        """Why it gave up; None while it goes on."""
        return self._reason

    def drain(self) -> None:
        """Wait until the writer is done with every batch handed over so far."""
        if self._thread.is_alive():
            self._queue.join()

    def put(self, rows: Sequence[StagedRow]) -> None:
        """Hand over a batch of rows just staged; waits while the writer is behind."""
        if self._reason is None and rows:
            self._queue.put(list(rows))

    def abandon(self, reason: str) -> None:
        """Give up: the writer rolls back and frees the lock; the run applies after the fetch."""
        if self._reason is None:
            self._reason = reason
            with contextlib.suppress(queue.Full):  # a full queue: the writer sees it next anyway
                self._queue.put_nowait([])  # wakes the writer, which then sees the reason

    # ------------------------------------------------------------------ the writer
    def _work(self) -> None:
        while (rows := self._queue.get()) is not None:
            try:
                self._apply(rows)
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _apply(self, rows: list[StagedRow]) -> None:
        if self._reason is not None:
            self._release()  # and drain what is left without applying it
            return
        start = time.perf_counter()
        try:
            if not self.appliers.apply_listed(rows):
                self._reason = "an entity was staged twice (the apply keeps its last sighting)"
        except Exception as exc:  # the run's apply after the fetch will meet it, or not
            self._reason = f"writing failed: {type(exc).__name__}: {exc}".splitlines()[0]
        self.seconds += time.perf_counter() - start
        if self._reason is not None:
            self._release()

    def _release(self) -> None:
        """Roll back what was written and free the lock (once; on the thread using the
        connection)."""
        if not self._released:
            self._released = True
            try:
                self._stack.close()  # the connection's close rolls its transaction back
            except Exception:  # a lost connection: the server rolled back and freed the lock
                log.debug("closing the apply ahead's connection failed", exc_info=True)

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    # ------------------------------------------------------------------ the apply's side
    def finish(self) -> bool:
        """Wait for the writer; True if it applied every batch and the run may go on from it."""
        self._stop()
        if self._reason is not None:
            log.info("applying after the fetch: the apply ahead gave up (%s)", self._reason)
            self._release()
            return False
        return True

    def close(self) -> None:
        """End it without committing (a failed run, or one that applies after the fetch)."""
        self.abandon("the run ended without it")
        self._stop()
        self._release()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Its connection, in the open transaction, under the lock: committed if the block
        succeeds, rolled back if not; the lock is freed either way."""
        try:
            yield self.conn
            self.conn.commit()
        finally:
            self._release()


def begin(engine: Engine, *, target: str, run_id: int) -> ApplyAhead | None:
    """Begin the apply of run ``run_id`` with its fetch, if it may: None if not.

    It may on PostgreSQL, for a target that sees nothing yet, when the database's lock is free.
    A retried fetch of the same run starts over: what an earlier attempt began is rolled back.
    """
    discard(engine, run_id)
    if not ENABLED or engine.dialect.name != "postgresql":
        return None
    with engine.connect() as conn:
        if has_any(conn, target):
            return None
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(run_lock(engine, timeout=0))
    except RunLockedError:
        stack.close()
        log.debug("run %d applies after its fetch: the database's lock is taken", run_id)
        return None
    try:
        conn = stack.enter_context(engine.connect())
        conn.begin()
        ahead = ApplyAhead(conn, stack, run_id=run_id, target=target, now=clock.now())
    except BaseException:
        stack.close()
        raise
    _OPEN[(id(engine), run_id)] = ahead
    log.debug("run %d applies ahead: its rows are written as the fetch stages them", run_id)
    return ahead


def take(engine: Engine, run_id: int) -> ApplyAhead | None:
    """The apply ahead of run ``run_id``, finished, if one went through; else None."""
    ahead = _OPEN.pop((id(engine), run_id), None)
    if ahead is None or not ahead.finish():
        return None
    return ahead


def discard(engine: Engine, run_id: int) -> None:
    """Roll back and end the apply ahead of run ``run_id``, if one is open."""
    ahead = _OPEN.pop((id(engine), run_id), None)
    if ahead is not None:
        ahead.close()


__all__ = ["ENABLED", "QUEUE_BATCHES", "ApplyAhead", "begin", "discard", "take"]
