"""Each target's fleet in groups over time: what ``fleet_daily`` and ``fleet_daily_usage`` read.

A row is one group of a target's live CVMs (same ``status``, node ``region``, ``workspace_id``
and ``instance_type``) with its sums, valid from ``valid_from`` until ``valid_to`` (NULL while
open): the CVM history summed per group, kept by every run that changes the history
(``sync.store.fleet_levels``), so the daily views read one row per group and interval instead
of every CVM state. A target with no live CVM has one row with NULL group columns and
``cvms = 0``. ``region`` is the node's region as the run saw it.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Index, Numeric
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class FleetLevel(Base):
    __tablename__ = "fleet_levels"
    level_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    target: Mapped[str]
    status: Mapped[str | None]
    region: Mapped[str | None]
    workspace_id: Mapped[str | None]
    instance_type: Mapped[str | None]
    valid_from: Mapped[datetime]
    valid_to: Mapped[datetime | None]
    cvms: Mapped[int]
    #: Sums of the known values; NULL when none is known, or when the sum is beyond 64 bits
    #: (absurd values the API sent: the run stores them, the sum is unknown).
    vcpus: Mapped[int | None]
    memory_mb: Mapped[int | None]
    disk_gb: Mapped[int | None]
    gpus: Mapped[int | None]
    #: USD per hour: the sum of the known compute rates, and how many CVMs have none.
    compute_rate: Mapped[Decimal] = mapped_column(Numeric())
    compute_unknown: Mapped[int]
    #: USD per hour: the sum of the known storage rates, and how many CVMs have none.
    storage_rate: Mapped[Decimal] = mapped_column(Numeric())
    storage_unknown: Mapped[int]
    __table_args__ = (Index("ix_fleet_levels_target_valid_to", "target", "valid_to"),)
