"""The listing sent ahead of a run: ``phala-sync sync`` begins it, the run's fetch claims it.

::

    with open_database(settings) as engine:
        prefetching.begin(engine, settings)     # pages start to arrive (sync.api.prefetch)
    ...                                         # Prefect starts, the flow takes the lock
    transport = prefetching.claim(engine, settings, run_id)   # in fetch_and_stage
    ...
    prefetching.discard()                       # one never claimed is closed

One prefetch waits in this process at a time. The run's fetch uses it only if all of these hold,
and otherwise closes it and reads the API afresh:

- the run sends the same requests: base URL, API version, page size, key and endpoints;
- no run of the target succeeded since the prefetch began (a
  :class:`~sync.store.ledger_mark.LedgerMark` taken before it started tells, without comparing
  clocks): such a run may have stored pages newer than the prefetched ones, and applying older
  pages after it would record changes back and forth.
  Runs of other targets are not waited for today either (their fetches overlap as before);
- it is the run's first attempt: :func:`claim` hands it out once, so a retried fetch task reads
  the API afresh.
"""

from __future__ import annotations

import logging

import httpx
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from sync.api.client import connection_limits
from sync.api.prefetch import Prefetch
from sync.endpoints import listed_endpoints
from sync.settings import Settings
from sync.store.ledger_mark import LedgerMark, ledger_mark, succeeded_since

__all__ = ["begin", "claim", "discard"]

log = logging.getLogger(__name__)

_waiting: list[tuple[Prefetch, LedgerMark]] = []  # at most one


def begin(engine: Engine, settings: Settings, **options: object) -> Prefetch | None:
    """Mark the target's ledger, then start sending the run's first requests (closes an older one).

    ``begin`` runs before the schema check: where the ledger cannot be read (a database of another
    shape), nothing is sent ahead, and the check says what is wrong. ``options`` go to
    :class:`~sync.api.prefetch.Prefetch` (``max_bytes``, a test's ``transport``).
    """
    discard()
    try:
        mark = ledger_mark(engine, settings.target)
    except SQLAlchemyError as exc:
        log.debug("no listing sent ahead: the ledger could not be read (%s)", type(exc).__name__)
        return None
    ahead = Prefetch.from_settings(settings, listed_endpoints(), **options)
    _waiting.append((ahead, mark))
    return ahead


def claim(engine: Engine, settings: Settings, run_id: int) -> httpx.AsyncBaseTransport | None:
    """The run's transport over the waiting prefetch, if the run may use it (see module doc)."""
    if not _waiting:
        return None
    ahead, mark = _waiting.pop()
    if not ahead.asks_as(settings, listed_endpoints()):
        log.info("the listing sent ahead asked for other pages than run %d: not used", run_id)
        ahead.close()
        return None
    newer = succeeded_since(engine, settings.target, mark, besides=run_id)
    if newer:
        log.info(
            "run(s) %s of target %s succeeded since the listing was sent ahead of run %d: "
            "its pages may be older than theirs, so the run reads the API afresh",
            ", ".join(map(str, newer)),
            settings.target,
            run_id,
        )
        ahead.close()
        return None
    return ahead.transport(httpx.AsyncHTTPTransport(limits=connection_limits(settings.concurrency)))


def discard() -> None:
    """Close a prefetch no run claimed."""
    while _waiting:
        _waiting.pop()[0].close()
