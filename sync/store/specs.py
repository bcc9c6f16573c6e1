"""How each canonical entity type maps onto its tables (one spec per entity type)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, get_type_hints

from sqlalchemy import Column, Table

import models
from sync.records import (
    APP_MEMBERS,
    LISTED_TYPES,
    REFERENCE_TYPES,
    AppRecord,
    CreatorRecord,
    CvmRecord,
    EntityType,
    NodeRecord,
    Record,
    WorkspaceRecord,
)


@dataclass(frozen=True)
class EntitySpec:
    """Tables, key and fields of one entity type."""

    entity_type: EntityType
    record: type[Record]
    table: Table
    history: Table
    key: str
    fields: tuple[str, ...]  # state columns other than the key (and target)
    datetime_fields: frozenset[str]
    scoped: bool  # listed per target: has a target column and deletions are inferred

    @property
    def key_column(self) -> Column[Any]:
        return self.table.c[self.key]

    def key_value(self, entity_id: str) -> Any:
        """The key column's value for a staged (text) entity id."""
        return int(entity_id) if self.entity_type == "node" else entity_id


def _spec(
    entity_type: EntityType,
    record: type[Record],
    table: type[models.Base],
    history: type[models.Base],
    *,
    scoped: bool,
    extra_fields: tuple[str, ...] = (),
) -> EntitySpec:
    key = record.key_field
    names = tuple(n for n in record.field_names() if n != key) + extra_fields
    hints = get_type_hints(record)
    dt = frozenset(n for n in names if "datetime" in str(hints.get(n, "")))
    return EntitySpec(
        entity_type=entity_type,
        record=record,
        table=models.table_of(table),
        history=models.table_of(history),
        key=key,
        fields=names,
        datetime_fields=dt,
        scoped=scoped,
    )


SPECS: dict[EntityType, EntitySpec] = {
    "node": _spec("node", NodeRecord, models.Node, models.NodeHistory, scoped=False),
    "workspace": _spec(
        "workspace", WorkspaceRecord, models.Workspace, models.WorkspaceHistory, scoped=False
    ),
    "creator": _spec("creator", CreatorRecord, models.Creator, models.CreatorHistory, scoped=False),
    "cvm": _spec("cvm", CvmRecord, models.Cvm, models.CvmHistory, scoped=True),
    "app": _spec(
        "app", AppRecord, models.App, models.AppHistory, scoped=True, extra_fields=(APP_MEMBERS,)
    ),
}

#: Apply order: referenced tables before the tables whose foreign keys point at them.
APPLY_ORDER: tuple[EntityType, ...] = (*REFERENCE_TYPES, *LISTED_TYPES)
