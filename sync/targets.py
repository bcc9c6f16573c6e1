"""Targets: what each one sees, whether it is stale, and retiring one (issue 23).

A *target* is one API key's view of the fleet (``PHALA_SYNC_TARGET``). Several may see the same
CVMs; which ones each sees lives in ``target_memberships`` (:mod:`sync.store.membership`).
:func:`target_statuses` answers ``phala-sync targets``; :func:`retire_target` answers
``phala-sync targets retire NAME``: the target's memberships end, as one ledger run of kind
``retire``, and what no other target sees is deleted.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, insert, select

from models import SyncRun, table_of
from sync import clock
from sync.errors import ConfigError, RunLockedError
from sync.run import RunSummary, database_lock
from sync.settings import Settings
from sync.store.apply import retire_memberships
from sync.store.ledger import close_abandoned, finish_run
from sync.store.lock import run_lock
from sync.store.membership import MEMBERSHIPS, has_any, membership_counts

_RUNS = table_of(SyncRun)

#: A target is *stale* when its latest successful sync finished longer ago than this (or it has
#: none): two days, so that a daily schedule that missed one run is not flagged yet, and one
#: whose key was revoked or forgotten is.
STALE_AFTER = timedelta(hours=48)


def target_statuses(
    engine: Engine, *, now: datetime, stale_after: timedelta = STALE_AFTER
) -> list[dict[str, Any]]:
    """Every target the database knows (from its runs and memberships), by name.

    ``last_success_*``: its latest succeeded sync run; ``cvms``/``apps``: how many it sees now;
    ``retired``: its latest run is a retirement (and it sees nothing); ``stale``: not retired, and
    no successful sync within ``stale_after``.
    """
    r = _RUNS.c
    with engine.connect() as conn:
        synced = {
            target: (int(run_id), finished)
            for target, run_id, finished in conn.execute(
                select(r.target, r.id, r.finished_at).where(
                    r.id.in_(
                        select(func.max(r.id))
                        .where(r.status == "succeeded", r.kind == "sync")
                        .group_by(r.target)
                    )
                )
            )
        }
        latest = dict(conn.execute(select(r.target, func.max(r.id)).group_by(r.target)).all())
        retirements = dict(
            conn.execute(
                select(r.target, func.max(r.id))
                .where(r.kind == "retire", r.status == "succeeded")
                .group_by(r.target)
            ).all()
        )
        members = set(conn.execute(select(MEMBERSHIPS.c.target).distinct()).scalars())
    counts = membership_counts(engine)
    rows = []
    for name in sorted(set(latest) | members):
        run_id, finished = synced.get(name, (None, None))
        cvms, apps = counts.get((name, "cvm"), 0), counts.get((name, "app"), 0)
        retired = name in retirements and retirements[name] == latest.get(name) and not cvms + apps
        rows.append(
            {
                "target": name,
                "last_success_run_id": run_id,
                "last_success_at": finished.isoformat() if finished else None,
                "cvms": cvms,
                "apps": apps,
                "retired": retired,
                "stale": not retired and (finished is None or now - finished > stale_after),
            }
        )
    return rows


def retire_target(engine: Engine, settings: Settings, name: str) -> RunSummary:
    """End every membership of target ``name`` in one ledger run; returns its summary.

    Refuses (:class:`RunLockedError`) while a run of the target is in progress: the target's lock
    is taken without waiting, and held throughout. The work is one transaction under the
    database's lock, like a run's apply: the ledger row, the ended memberships, the deletions
    (one ``deleted`` event each) and the ownership moves commit together or not at all.
    """
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(run_lock(engine, timeout=0, target=name))
        except RunLockedError as exc:
            raise RunLockedError(
                f"a run of target {name!r} is in progress, so it cannot be retired now; retry "
                f"when it has finished ({exc})"
            ) from None
        close_abandoned(engine, now=clock.now(), target=name)
        with database_lock(engine, settings), engine.begin() as conn:
            r = _RUNS.c
            version = conn.execute(
                select(r.api_version).where(r.target == name).order_by(r.id.desc()).limit(1)
            ).scalar_one_or_none()
            if version is None and not has_any(conn, name):
                raise ConfigError(
                    f"no target named {name!r} in this database; `phala-sync targets` lists them"
                )
            started = clock.now()
            run_id = int(
                conn.execute(
                    insert(_RUNS)
                    .values(
                        target=name,
                        api_version=version or "",
                        status="running",
                        started_at=started,
                        kind="retire",
                    )
                    .returning(r.id)
                ).scalar_one()
            )
            counts = retire_memberships(conn, run_id=run_id, target=name, now=started)
            finished = clock.now()
            cvm = counts["cvm"]
            finish_run(
                conn,
                run_id,
                now=finished,
                values={
                    "deleted": cvm.deleted,
                    "restored": cvm.restored,
                    "entity_counts": {k: c.as_dict() for k, c in counts.items()},
                },
            )
    return RunSummary(
        run_id=run_id,
        target=name,
        api_version=version or "",
        status="succeeded",
        started_at=started,
        finished_at=finished,
        counts={k: c.as_dict() for k, c in counts.items()},
    )


__all__ = ["STALE_AFTER", "retire_target", "target_statuses"]
