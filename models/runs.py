"""The run ledger, change events, quarantine, staging and the run lock."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base

RUN_STATUSES = ("running", "succeeded", "failed")
CHANGE_TYPES = ("created", "updated", "deleted", "restored")
ENTITY_TYPES = ("cvm", "node", "workspace", "creator", "app")


class SyncRun(Base):
    """One row per sync run. Counts are for CVMs; ``entity_counts`` has them per entity type."""

    __tablename__ = "sync_runs"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    target: Mapped[str] = mapped_column(index=True)
    api_version: Mapped[str]
    status: Mapped[str]
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    seen: Mapped[int] = mapped_column(default=0)
    created: Mapped[int] = mapped_column(default=0)
    updated: Mapped[int] = mapped_column(default=0)
    deleted: Mapped[int] = mapped_column(default=0)
    restored: Mapped[int] = mapped_column(default=0)
    unchanged: Mapped[int] = mapped_column(default=0)
    quarantined: Mapped[int] = mapped_column(default=0)
    listing_complete: Mapped[bool | None]
    apps_listing_complete: Mapped[bool | None]
    api_total: Mapped[int | None]
    entity_counts: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    #: ``sync`` (a listing of the API) or ``retire`` (``phala-sync targets retire``: no listing).
    kind: Mapped[str] = mapped_column(default="sync", server_default="sync")
    __table_args__ = (
        CheckConstraint(f"status IN {RUN_STATUSES!r}", name="status"),
        Index("ix_sync_runs_status", "status"),
    )


class ChangeEvent(Base):
    """One row per entity change; ``changes`` maps each changed field to {"old": .., "new": ..}."""

    __tablename__ = "change_events"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("sync_runs.id"), index=True)
    entity_type: Mapped[str]
    entity_id: Mapped[str]
    change_type: Mapped[str]
    changes: Mapped[dict[str, Any]]
    observed_at: Mapped[datetime]
    __table_args__ = (
        CheckConstraint(f"change_type IN {CHANGE_TYPES!r}", name="change_type"),
        CheckConstraint(f"entity_type IN {ENTITY_TYPES!r}", name="entity_type"),
        Index("ix_change_events_entity", "entity_type", "entity_id"),
    )


class QuarantinedItem(Base):
    """An item that failed validation: its raw JSON and the error, per run."""

    __tablename__ = "quarantined_items"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("sync_runs.id"), index=True)
    endpoint: Mapped[str]
    page: Mapped[int | None]  # NULL: refused by the database after the fetch
    item_index: Mapped[int | None]
    entity_id: Mapped[str | None]
    pass_no: Mapped[int] = mapped_column(default=1)
    error: Mapped[str] = mapped_column(Text)
    raw_json: Mapped[str] = mapped_column(Text)
    observed_at: Mapped[datetime]


class StagedRecord(Base):
    """Records fetched by a run that is not applied yet (emptied when the run ends).

    ``id`` orders sightings: when offset-paging drift shows an item twice, the last one wins.
    ``pass_no`` numbers the listing passes of a run (a drifted listing is read again).
    """

    __tablename__ = "sync_staging"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(index=True)
    entity_type: Mapped[str]
    entity_id: Mapped[str]
    pass_no: Mapped[int]
    observed_hash: Mapped[str] = mapped_column(Text)
    # NULL when the stored row already has this observed_hash: nothing to apply but "seen".
    fields_json: Mapped[str | None] = mapped_column(Text)
    raw_json: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (Index("ix_sync_staging_run_entity", "run_id", "entity_type", "entity_id"),)
