"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24 00:06:59.483586
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "apps",
        sa.Column("app_id", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("project_id", sa.String(), nullable=True),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("app_provision_type", sa.String(), nullable=True),
        sa.Column("app_icon_url", sa.String(), nullable=True),
        sa.Column("created_at", sa.String(), nullable=True),
        sa.Column("kms_type", sa.String(), nullable=True),
        sa.Column("profile_display_name", sa.String(), nullable=True),
        sa.Column("profile_avatar_url", sa.String(), nullable=True),
        sa.Column("profile_description", sa.String(), nullable=True),
        sa.Column("profile_custom_domain", sa.String(), nullable=True),
        sa.Column("cvm_count", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("current_vm_uuid", sa.String(), nullable=True),
        sa.Column("team_slug", sa.String(), nullable=True),
        sa.Column("team_name", sa.String(), nullable=True),
        sa.Column("member_vm_uuids", sa.JSON(), nullable=True),
        sa.Column("first_seen_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "first_seen_run_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column(
            "last_seen_run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("deleted_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("observed_hash", sa.Text(), nullable=False),
        sa.Column("raw_json", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("app_id", name=op.f("pk_apps")),
    )
    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_apps_target"), ["target"], unique=False)

    op.create_table(
        "creators",
        sa.Column("creator_id", sa.String(), nullable=False),
        sa.Column("username", sa.String(), nullable=True),
        sa.Column("avatar_url", sa.String(), nullable=True),
        sa.Column("first_seen_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "first_seen_run_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column(
            "last_seen_run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("deleted_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("observed_hash", sa.Text(), nullable=False),
        sa.Column("raw_json", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("creator_id", name=op.f("pk_creators")),
    )
    op.create_table(
        "nodes",
        sa.Column(
            "node_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("region", sa.String(), nullable=True),
        sa.Column("device_id", sa.String(), nullable=True),
        sa.Column("ppid", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=True),
        sa.Column("version", sa.String(), nullable=True),
        sa.Column("first_seen_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "first_seen_run_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column(
            "last_seen_run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("deleted_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("observed_hash", sa.Text(), nullable=False),
        sa.Column("raw_json", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_nodes")),
    )
    op.create_table(
        "sync_runs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("api_version", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("started_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("seen", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("updated", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("deleted", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("restored", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "unchanged", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "quarantined", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("listing_complete", sa.Boolean(), nullable=True),
        sa.Column("apps_listing_complete", sa.Boolean(), nullable=True),
        sa.Column("api_total", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("entity_counts", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'succeeded', 'failed')", name=op.f("ck_sync_runs_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_runs")),
    )
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.create_index("ix_sync_runs_status", ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_sync_runs_target"), ["target"], unique=False)

    op.create_table(
        "sync_staging",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("entity_type", sa.String(), nullable=False),
        sa.Column("entity_id", sa.String(), nullable=False),
        sa.Column("pass_no", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("observed_hash", sa.Text(), nullable=False),
        sa.Column("fields_json", sa.Text(), nullable=True),
        sa.Column("raw_json", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_staging")),
    )
    with op.batch_alter_table("sync_staging", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sync_staging_run_entity", ["run_id", "entity_type", "entity_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_sync_staging_run_id"), ["run_id"], unique=False)

    op.create_table(
        "workspaces",
        sa.Column("workspace_id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("slug", sa.String(), nullable=True),
        sa.Column("avatar_url", sa.String(), nullable=True),
        sa.Column("first_seen_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "first_seen_run_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column(
            "last_seen_run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("deleted_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("observed_hash", sa.Text(), nullable=False),
        sa.Column("raw_json", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("workspace_id", name=op.f("pk_workspaces")),
    )
    op.create_table(
        "app_cvms",
        sa.Column("app_id", sa.String(), nullable=False),
        sa.Column("vm_uuid", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.app_id"], name=op.f("fk_app_cvms_app_id_apps"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("app_id", "vm_uuid", name=op.f("pk_app_cvms")),
    )
    with op.batch_alter_table("app_cvms", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_app_cvms_vm_uuid"), ["vm_uuid"], unique=False)

    op.create_table(
        "app_history",
        sa.Column("app_id", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("project_id", sa.String(), nullable=True),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("app_provision_type", sa.String(), nullable=True),
        sa.Column("app_icon_url", sa.String(), nullable=True),
        sa.Column("created_at", sa.String(), nullable=True),
        sa.Column("kms_type", sa.String(), nullable=True),
        sa.Column("profile_display_name", sa.String(), nullable=True),
        sa.Column("profile_avatar_url", sa.String(), nullable=True),
        sa.Column("profile_description", sa.String(), nullable=True),
        sa.Column("profile_custom_domain", sa.String(), nullable=True),
        sa.Column("cvm_count", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("current_vm_uuid", sa.String(), nullable=True),
        sa.Column("team_slug", sa.String(), nullable=True),
        sa.Column("team_name", sa.String(), nullable=True),
        sa.Column("member_vm_uuids", sa.JSON(), nullable=True),
        sa.Column(
            "history_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("valid_from", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("valid_to", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["sync_runs.id"], name=op.f("fk_app_history_run_id_sync_runs")
        ),
        sa.PrimaryKeyConstraint("history_id", name=op.f("pk_app_history")),
    )
    with op.batch_alter_table("app_history", schema=None) as batch_op:
        batch_op.create_index(
            "ix_app_history_app_id_valid_to", ["app_id", "valid_to"], unique=False
        )

    op.create_table(
        "change_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("entity_type", sa.String(), nullable=False),
        sa.Column("entity_id", sa.String(), nullable=False),
        sa.Column("change_type", sa.String(), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("observed_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "change_type IN ('created', 'updated', 'deleted', 'restored')",
            name=op.f("ck_change_events_change_type"),
        ),
        sa.CheckConstraint(
            "entity_type IN ('cvm', 'node', 'workspace', 'creator', 'app')",
            name=op.f("ck_change_events_entity_type"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["sync_runs.id"], name=op.f("fk_change_events_run_id_sync_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_events")),
    )
    with op.batch_alter_table("change_events", schema=None) as batch_op:
        batch_op.create_index("ix_change_events_entity", ["entity_type", "entity_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_change_events_run_id"), ["run_id"], unique=False)

    op.create_table(
        "creator_history",
        sa.Column("creator_id", sa.String(), nullable=False),
        sa.Column("username", sa.String(), nullable=True),
        sa.Column("avatar_url", sa.String(), nullable=True),
        sa.Column(
            "history_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("valid_from", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("valid_to", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["sync_runs.id"], name=op.f("fk_creator_history_run_id_sync_runs")
        ),
        sa.PrimaryKeyConstraint("history_id", name=op.f("pk_creator_history")),
    )
    with op.batch_alter_table("creator_history", schema=None) as batch_op:
        batch_op.create_index(
            "ix_creator_history_creator_id_valid_to", ["creator_id", "valid_to"], unique=False
        )

    op.create_table(
        "cvm_history",
        sa.Column("vm_uuid", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("node_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("workspace_id", sa.String(), nullable=True),
        sa.Column("creator_id", sa.String(), nullable=True),
        sa.Column("cvm_id", sa.String(), nullable=True),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("app_id", sa.String(), nullable=True),
        sa.Column("instance_id", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=True),
        sa.Column("in_progress", sa.Boolean(), nullable=True),
        sa.Column("listed", sa.Boolean(), nullable=True),
        sa.Column("vcpu", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("memory_mb", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("disk_gb", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("instance_type", sa.String(), nullable=True),
        sa.Column("gpus", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("billing_period", sa.String(), nullable=True),
        sa.Column("compute_billing_price", sa.String(), nullable=True),
        sa.Column("project_type", sa.String(), nullable=True),
        sa.Column("gateway_domain", sa.String(), nullable=True),
        sa.Column("kms_type", sa.String(), nullable=True),
        sa.Column(
            "kms_chain_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("os_name", sa.String(), nullable=True),
        sa.Column("os_version", sa.String(), nullable=True),
        sa.Column("os_image_hash", sa.String(), nullable=True),
        sa.Column("os_is_dev", sa.Boolean(), nullable=True),
        sa.Column("compose_hash", sa.String(), nullable=True),
        sa.Column("gateway_enabled", sa.Boolean(), nullable=True),
        sa.Column("public_logs", sa.Boolean(), nullable=True),
        sa.Column("public_sysinfo", sa.Boolean(), nullable=True),
        sa.Column("public_tcbinfo", sa.Boolean(), nullable=True),
        sa.Column("secure_time", sa.Boolean(), nullable=True),
        sa.Column("storage_fs", sa.String(), nullable=True),
        sa.Column("created_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("api_deleted_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "history_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("valid_from", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("valid_to", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["sync_runs.id"], name=op.f("fk_cvm_history_run_id_sync_runs")
        ),
        sa.PrimaryKeyConstraint("history_id", name=op.f("pk_cvm_history")),
    )
    with op.batch_alter_table("cvm_history", schema=None) as batch_op:
        batch_op.create_index(
            "ix_cvm_history_valid_from_valid_to", ["valid_from", "valid_to"], unique=False
        )
        batch_op.create_index(
            "ix_cvm_history_vm_uuid_valid_to", ["vm_uuid", "valid_to"], unique=False
        )

    op.create_table(
        "cvms",
        sa.Column("vm_uuid", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("node_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("workspace_id", sa.String(), nullable=True),
        sa.Column("creator_id", sa.String(), nullable=True),
        sa.Column("cvm_id", sa.String(), nullable=True),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("app_id", sa.String(), nullable=True),
        sa.Column("instance_id", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=True),
        sa.Column("in_progress", sa.Boolean(), nullable=True),
        sa.Column("listed", sa.Boolean(), nullable=True),
        sa.Column("vcpu", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("memory_mb", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("disk_gb", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("instance_type", sa.String(), nullable=True),
        sa.Column("gpus", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("billing_period", sa.String(), nullable=True),
        sa.Column("compute_billing_price", sa.String(), nullable=True),
        sa.Column("project_type", sa.String(), nullable=True),
        sa.Column("gateway_domain", sa.String(), nullable=True),
        sa.Column("kms_type", sa.String(), nullable=True),
        sa.Column(
            "kms_chain_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("os_name", sa.String(), nullable=True),
        sa.Column("os_version", sa.String(), nullable=True),
        sa.Column("os_image_hash", sa.String(), nullable=True),
        sa.Column("os_is_dev", sa.Boolean(), nullable=True),
        sa.Column("compose_hash", sa.String(), nullable=True),
        sa.Column("gateway_enabled", sa.Boolean(), nullable=True),
        sa.Column("public_logs", sa.Boolean(), nullable=True),
        sa.Column("public_sysinfo", sa.Boolean(), nullable=True),
        sa.Column("public_tcbinfo", sa.Boolean(), nullable=True),
        sa.Column("secure_time", sa.Boolean(), nullable=True),
        sa.Column("storage_fs", sa.String(), nullable=True),
        sa.Column("created_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("api_deleted_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("first_seen_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "first_seen_run_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column(
            "last_seen_run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("deleted_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("observed_hash", sa.Text(), nullable=False),
        sa.Column("raw_json", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["creator_id"], ["creators.creator_id"], name=op.f("fk_cvms_creator_id_creators")
        ),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.node_id"], name=op.f("fk_cvms_node_id_nodes")),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.workspace_id"],
            name=op.f("fk_cvms_workspace_id_workspaces"),
        ),
        sa.PrimaryKeyConstraint("vm_uuid", name=op.f("pk_cvms")),
    )
    with op.batch_alter_table("cvms", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cvms_creator_id"), ["creator_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_cvms_node_id"), ["node_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_cvms_target"), ["target"], unique=False)
        batch_op.create_index(batch_op.f("ix_cvms_workspace_id"), ["workspace_id"], unique=False)

    op.create_table(
        "node_history",
        sa.Column("node_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("region", sa.String(), nullable=True),
        sa.Column("device_id", sa.String(), nullable=True),
        sa.Column("ppid", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=True),
        sa.Column("version", sa.String(), nullable=True),
        sa.Column(
            "history_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("valid_from", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("valid_to", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["sync_runs.id"], name=op.f("fk_node_history_run_id_sync_runs")
        ),
        sa.PrimaryKeyConstraint("history_id", name=op.f("pk_node_history")),
    )
    with op.batch_alter_table("node_history", schema=None) as batch_op:
        batch_op.create_index(
            "ix_node_history_node_id_valid_to", ["node_id", "valid_to"], unique=False
        )

    op.create_table(
        "quarantined_items",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("endpoint", sa.String(), nullable=False),
        sa.Column("page", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "item_index", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("entity_id", sa.String(), nullable=True),
        sa.Column("pass_no", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("raw_json", sa.Text(), nullable=False),
        sa.Column("observed_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["sync_runs.id"], name=op.f("fk_quarantined_items_run_id_sync_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantined_items")),
    )
    with op.batch_alter_table("quarantined_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_quarantined_items_run_id"), ["run_id"], unique=False)

    op.create_table(
        "workspace_history",
        sa.Column("workspace_id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("slug", sa.String(), nullable=True),
        sa.Column("avatar_url", sa.String(), nullable=True),
        sa.Column(
            "history_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("valid_from", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("valid_to", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["sync_runs.id"], name=op.f("fk_workspace_history_run_id_sync_runs")
        ),
        sa.PrimaryKeyConstraint("history_id", name=op.f("pk_workspace_history")),
    )
    with op.batch_alter_table("workspace_history", schema=None) as batch_op:
        batch_op.create_index(
            "ix_workspace_history_workspace_id_valid_to", ["workspace_id", "valid_to"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("workspace_history", schema=None) as batch_op:
        batch_op.drop_index("ix_workspace_history_workspace_id_valid_to")

    op.drop_table("workspace_history")
    with op.batch_alter_table("quarantined_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quarantined_items_run_id"))

    op.drop_table("quarantined_items")
    with op.batch_alter_table("node_history", schema=None) as batch_op:
        batch_op.drop_index("ix_node_history_node_id_valid_to")

    op.drop_table("node_history")
    with op.batch_alter_table("cvms", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cvms_workspace_id"))
        batch_op.drop_index(batch_op.f("ix_cvms_target"))
        batch_op.drop_index(batch_op.f("ix_cvms_node_id"))
        batch_op.drop_index(batch_op.f("ix_cvms_creator_id"))

    op.drop_table("cvms")
    with op.batch_alter_table("cvm_history", schema=None) as batch_op:
        batch_op.drop_index("ix_cvm_history_vm_uuid_valid_to")
        batch_op.drop_index("ix_cvm_history_valid_from_valid_to")

    op.drop_table("cvm_history")
    with op.batch_alter_table("creator_history", schema=None) as batch_op:
        batch_op.drop_index("ix_creator_history_creator_id_valid_to")

    op.drop_table("creator_history")
    with op.batch_alter_table("change_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_change_events_run_id"))
        batch_op.drop_index("ix_change_events_entity")

    op.drop_table("change_events")
    with op.batch_alter_table("app_history", schema=None) as batch_op:
        batch_op.drop_index("ix_app_history_app_id_valid_to")

    op.drop_table("app_history")
    with op.batch_alter_table("app_cvms", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_app_cvms_vm_uuid"))

    op.drop_table("app_cvms")
    op.drop_table("workspaces")
    with op.batch_alter_table("sync_staging", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sync_staging_run_id"))
        batch_op.drop_index("ix_sync_staging_run_entity")

    op.drop_table("sync_staging")
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sync_runs_target"))
        batch_op.drop_index("ix_sync_runs_status")

    op.drop_table("sync_runs")
    op.drop_table("nodes")
    op.drop_table("creators")
    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_apps_target"))

    op.drop_table("apps")
