"""target memberships: which targets see which CVMs and apps; the ledger's run kind

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 14:00:00.000000

- ``target_memberships``: one row per (target, entity) for CVMs and apps (issue 23). Seeded from
  the ownership of release 2: each CVM and app is seen by the target in its ``target`` column,
  since the run that first stored it, with the stored hash; a deleted one's membership ended when
  it was deleted (by the run of its ``deleted`` event, where one is recorded). No other table's
  rows change.
- ``sync_runs.kind``: ``sync`` for every existing run; ``retire`` for the ledger runs of
  ``phala-sync targets retire``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

#: Each listed entity type's table and key column.
_LISTED = (("cvm", "cvms", "vm_uuid"), ("app", "apps", "app_id"))


def _seed(entity_type: str, table: str, key: str) -> str:
    return f"""
        INSERT INTO target_memberships (target, entity_type, entity_id, observed_hash,
            first_seen_run_id, last_seen_run_id, ended_at, ended_run_id)
        SELECT t.target, '{entity_type}', t.{key}, t.observed_hash, t.first_seen_run_id,
            t.last_seen_run_id, t.deleted_at,
            CASE WHEN t.deleted_at IS NULL THEN NULL ELSE (
                SELECT MAX(e.run_id) FROM change_events e
                WHERE e.entity_type = '{entity_type}' AND e.entity_id = t.{key}
                  AND e.change_type = 'deleted'
            ) END
        FROM {table} t
    """


def upgrade() -> None:
    op.create_table(
        "target_memberships",
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("entity_type", sa.String(), nullable=False),
        sa.Column("entity_id", sa.String(), nullable=False),
        sa.Column("observed_hash", sa.Text(), nullable=False),
        sa.Column("first_seen_run_id", _INT, nullable=False),
        sa.Column("last_seen_run_id", _INT, nullable=False),
        sa.Column("ended_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ended_run_id", _INT, nullable=True),
        sa.CheckConstraint(
            "entity_type IN ('cvm', 'app')", name=op.f("ck_target_memberships_entity_type")
        ),
        sa.ForeignKeyConstraint(
            ["first_seen_run_id"],
            ["sync_runs.id"],
            name=op.f("fk_target_memberships_first_seen_run_id_sync_runs"),
        ),
        sa.ForeignKeyConstraint(
            ["last_seen_run_id"],
            ["sync_runs.id"],
            name=op.f("fk_target_memberships_last_seen_run_id_sync_runs"),
        ),
        sa.ForeignKeyConstraint(
            ["ended_run_id"],
            ["sync_runs.id"],
            name=op.f("fk_target_memberships_ended_run_id_sync_runs"),
        ),
        sa.PrimaryKeyConstraint(
            "target", "entity_type", "entity_id", name=op.f("pk_target_memberships")
        ),
    )
    op.create_index(
        "ix_target_memberships_entity", "target_memberships", ["entity_type", "entity_id"]
    )
    op.add_column(
        "sync_runs", sa.Column("kind", sa.String(), server_default="sync", nullable=False)
    )
    for entity_type, table, key in _LISTED:
        op.execute(_seed(entity_type, table, key))


def downgrade() -> None:
    # Not a batch operation: on SQLite that copies sync_runs, whose rows other tables refer to.
    op.execute("ALTER TABLE sync_runs DROP COLUMN kind")
    op.drop_index("ix_target_memberships_entity", table_name="target_memberships")
    op.drop_table("target_memberships")
