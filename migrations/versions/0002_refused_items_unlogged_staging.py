"""quarantined items refused by the database; unlogged staging on PostgreSQL

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 16:30:00.000000

- ``quarantined_items.page`` and ``item_index`` become nullable: an item whose values the database
  refuses is set aside at apply time, when its page is no longer known.
- On PostgreSQL ``sync_staging`` becomes ``UNLOGGED``: its rows live for one run and are never
  needed after a crash (a run that dies is failed and its staged rows are dropped), so writing
  them to the WAL is wasted work.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("quarantined_items") as batch:
        batch.alter_column("page", existing_type=_INT, nullable=True)
        batch.alter_column("item_index", existing_type=_INT, nullable=True)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE sync_staging SET UNLOGGED")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE sync_staging SET LOGGED")
    # Refused items had no page; 0001 requires one: they are kept as page 0, item -1.
    op.execute("UPDATE quarantined_items SET page = 0 WHERE page IS NULL")
    op.execute("UPDATE quarantined_items SET item_index = -1 WHERE item_index IS NULL")
    with op.batch_alter_table("quarantined_items") as batch:
        batch.alter_column("page", existing_type=_INT, nullable=False)
        batch.alter_column("item_index", existing_type=_INT, nullable=False)
