"""The inventory: one current-state table and one history table per entity type.

Column names equal the canonical record fields in ``sync.records`` (the store maps them 1:1).
Every entity row carries bookkeeping columns: ``first_seen_at``/``last_seen_at``, the run ids,
``deleted_at`` (NULL while the entity exists), ``observed_hash`` (so an unchanged item costs no
write: for CVMs and apps the source hash of their raw bytes, version and release,
``sync.changes.source_hash``; for nodes, workspaces and creators, which are not listed on their
own, the hash of their canonical fields, ``sync.changes.fields_hash``) and ``raw_json`` (the last
payload as received, so fields the models do not know are kept).

History tables hold one row per distinct state: ``valid_from`` <= t < ``valid_to`` (NULL for the
current state; a deleted entity has no open row), with the run that observed it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class _Tracked:
    """Bookkeeping columns of every current-state table."""

    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    first_seen_run_id: Mapped[int]
    last_seen_run_id: Mapped[int]
    deleted_at: Mapped[datetime | None]
    observed_hash: Mapped[str] = mapped_column(Text)
    raw_json: Mapped[str | None] = mapped_column(Text)


class _Versioned:
    """Validity interval of every history table."""

    history_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    valid_from: Mapped[datetime]
    valid_to: Mapped[datetime | None]
    run_id: Mapped[int] = mapped_column(ForeignKey("sync_runs.id"))


# ---------------------------------------------------------------------------------------- nodes
class _NodeFields:
    name: Mapped[str | None]
    region: Mapped[str | None]
    device_id: Mapped[str | None]
    ppid: Mapped[str | None]
    status: Mapped[str | None]
    version: Mapped[str | None]


class Node(_NodeFields, _Tracked, Base):
    __tablename__ = "nodes"
    node_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)


class NodeHistory(_NodeFields, _Versioned, Base):
    __tablename__ = "node_history"
    node_id: Mapped[int]
    __table_args__ = (Index("ix_node_history_node_id_valid_to", "node_id", "valid_to"),)


# ----------------------------------------------------------------------------------- workspaces
class _WorkspaceFields:
    name: Mapped[str | None]
    slug: Mapped[str | None]
    avatar_url: Mapped[str | None]


class Workspace(_WorkspaceFields, _Tracked, Base):
    __tablename__ = "workspaces"
    workspace_id: Mapped[str] = mapped_column(primary_key=True)


class WorkspaceHistory(_WorkspaceFields, _Versioned, Base):
    __tablename__ = "workspace_history"
    workspace_id: Mapped[str]
    __table_args__ = (
        Index("ix_workspace_history_workspace_id_valid_to", "workspace_id", "valid_to"),
    )


# ------------------------------------------------------------------------------------- creators
class _CreatorFields:
    username: Mapped[str | None]
    avatar_url: Mapped[str | None]


class Creator(_CreatorFields, _Tracked, Base):
    __tablename__ = "creators"
    creator_id: Mapped[str] = mapped_column(primary_key=True)


class CreatorHistory(_CreatorFields, _Versioned, Base):
    __tablename__ = "creator_history"
    creator_id: Mapped[str]
    __table_args__ = (Index("ix_creator_history_creator_id_valid_to", "creator_id", "valid_to"),)


# ----------------------------------------------------------------------------------------- cvms
class _CvmFields:
    cvm_id: Mapped[str | None]
    name: Mapped[str | None]
    app_id: Mapped[str | None]
    instance_id: Mapped[str | None]
    status: Mapped[str | None]
    in_progress: Mapped[bool | None]
    listed: Mapped[bool | None]
    vcpu: Mapped[int | None]
    memory_mb: Mapped[int | None]
    disk_gb: Mapped[int | None]
    instance_type: Mapped[str | None]
    gpus: Mapped[int | None]
    billing_period: Mapped[str | None]
    compute_billing_price: Mapped[str | None]
    project_type: Mapped[str | None]
    gateway_domain: Mapped[str | None]
    kms_type: Mapped[str | None]
    kms_chain_id: Mapped[int | None]
    os_name: Mapped[str | None]
    os_version: Mapped[str | None]
    os_image_hash: Mapped[str | None]
    os_is_dev: Mapped[bool | None]
    compose_hash: Mapped[str | None]
    gateway_enabled: Mapped[bool | None]
    public_logs: Mapped[bool | None]
    public_sysinfo: Mapped[bool | None]
    public_tcbinfo: Mapped[bool | None]
    secure_time: Mapped[bool | None]
    storage_fs: Mapped[str | None]
    created_at: Mapped[datetime | None]
    api_deleted_at: Mapped[datetime | None]
    hourly_rate_total: Mapped[str | None]  # decimal text as sent, USD per hour
    hourly_rate_compute: Mapped[str | None]
    hourly_rate_disk: Mapped[str | None]


class Cvm(_CvmFields, _Tracked, Base):
    __tablename__ = "cvms"
    vm_uuid: Mapped[str] = mapped_column(primary_key=True)
    target: Mapped[str] = mapped_column(index=True)
    node_id: Mapped[int | None] = mapped_column(ForeignKey("nodes.node_id"), index=True)
    workspace_id: Mapped[str | None] = mapped_column(
        ForeignKey("workspaces.workspace_id"), index=True
    )
    creator_id: Mapped[str | None] = mapped_column(ForeignKey("creators.creator_id"), index=True)


class CvmHistory(_CvmFields, _Versioned, Base):
    __tablename__ = "cvm_history"
    vm_uuid: Mapped[str]
    target: Mapped[str]
    node_id: Mapped[int | None]
    workspace_id: Mapped[str | None]
    creator_id: Mapped[str | None]
    __table_args__ = (
        Index("ix_cvm_history_vm_uuid_valid_to", "vm_uuid", "valid_to"),
        Index("ix_cvm_history_valid_from_valid_to", "valid_from", "valid_to"),
    )


# ----------------------------------------------------------------------------------------- apps
class _AppFields:
    project_id: Mapped[str | None]
    name: Mapped[str | None]
    app_provision_type: Mapped[str | None]
    app_icon_url: Mapped[str | None]
    created_at: Mapped[str | None]
    kms_type: Mapped[str | None]
    profile_display_name: Mapped[str | None]
    profile_avatar_url: Mapped[str | None]
    profile_description: Mapped[str | None]
    profile_custom_domain: Mapped[str | None]
    cvm_count: Mapped[int | None]
    current_vm_uuid: Mapped[str | None]
    team_slug: Mapped[str | None]
    team_name: Mapped[str | None]
    member_vm_uuids: Mapped[list[str] | None]


class App(_AppFields, _Tracked, Base):
    __tablename__ = "apps"
    app_id: Mapped[str] = mapped_column(primary_key=True)
    target: Mapped[str] = mapped_column(index=True)


class AppHistory(_AppFields, _Versioned, Base):
    __tablename__ = "app_history"
    app_id: Mapped[str]
    target: Mapped[str]
    __table_args__ = (Index("ix_app_history_app_id_valid_to", "app_id", "valid_to"),)


class AppCvm(Base):
    """Current app-to-CVM membership (from each app's ``cvms[]``); its history is in app_history."""

    __tablename__ = "app_cvms"
    app_id: Mapped[str] = mapped_column(
        ForeignKey("apps.app_id", ondelete="CASCADE"), primary_key=True
    )
    vm_uuid: Mapped[str] = mapped_column(primary_key=True, index=True)


class TargetMembership(Base):
    """Which targets see which CVMs and apps: one row per target and entity it ever listed.

    A membership is *live* while ``ended_at`` is NULL: every complete listing of the target since
    ``first_seen_run_id`` showed the entity. It ends when a complete listing of the target no
    longer shows it, or when the target is retired; it is live again when the target lists the
    entity again. ``observed_hash`` is the hash of the item as this target last listed it, so that
    each target skips its own unchanged items. Only starts, ends and observed changes write a row:
    a live membership's last sighting is its target's latest complete run (docs/schema.md).
    """

    __tablename__ = "target_memberships"
    target: Mapped[str] = mapped_column(primary_key=True)
    entity_type: Mapped[str] = mapped_column(primary_key=True)
    entity_id: Mapped[str] = mapped_column(primary_key=True)
    observed_hash: Mapped[str] = mapped_column(Text)
    first_seen_run_id: Mapped[int] = mapped_column(ForeignKey("sync_runs.id"))
    last_seen_run_id: Mapped[int] = mapped_column(ForeignKey("sync_runs.id"))
    ended_at: Mapped[datetime | None]
    ended_run_id: Mapped[int | None] = mapped_column(ForeignKey("sync_runs.id"))
    __table_args__ = (
        CheckConstraint("entity_type IN ('cvm', 'app')", name="entity_type"),
        Index("ix_target_memberships_entity", "entity_type", "entity_id"),
    )
