"""Evolve steps: what may change between syncs, and the ground truth of what did.

A step (one ``Fleet.evolve`` call, or one page-drift event) touches entities and then reports the
*net* change of each, in canonical terms (the field names of :mod:`sync.records`)::

    {"entity_type": "cvm", "entity_id": "<vm uuid, lower case, no dashes>",
     "change_type": "updated", "fields": {"vcpu": {"old": 2, "new": 4}, ...}}

``change_type`` is ``created`` (never visible before), ``deleted``, ``restored`` (visible in an
earlier step, gone at the start of this one, back now) or ``updated`` (only this one has
``fields``). A CVM touched twice in one step appears once; one created and deleted in the same step
does not appear. Visibility: a CVM while it is live; an app always (apps are listed for
themselves); a node, workspace or creator while some live CVM refers to it (the API shows them
only inside CVM items).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Final

from simulator.model import (
    App,
    Creator,
    Cvm,
    JsonDict,
    Node,
    Workspace,
    app_record,
    creator_record,
    cvm_record,
    node_record,
    workspace_record,
)
from simulator.render import hourly_rate_record

#: The kinds of change an evolve step can make, with the default mix's weights.
KINDS: Final[dict[str, int]] = {
    "create": 20,
    "delete": 15,
    "restart": 15,
    "resize": 10,
    "move": 10,
    "rename": 10,
    "rename_workspace": 5,
    "restore": 15,
}
DEFAULT_TOTAL: Final = 10
ENTITY_ORDER: Final = {"cvm": 0, "node": 1, "workspace": 2, "creator": 3, "app": 4}

Entity = Cvm | App | Node | Workspace | Creator


def default_mix(rng: random.Random, total: int) -> dict[str, int]:
    """``total`` changes drawn from the default mix (every kind present, possibly with 0)."""
    drawn = Counter(rng.choices(list(KINDS), weights=list(KINDS.values()), k=total))
    return {kind: drawn.get(kind, 0) for kind in KINDS}


def parse_counts(counts: Mapping[str, Any]) -> dict[str, int]:
    """Validate ``{"create": 3, ...}``: known kinds, non-negative integers."""
    out: dict[str, int] = {}
    for kind, n in counts.items():
        if kind not in KINDS:
            raise ValueError(f"unknown change kind {kind!r}; known kinds: {', '.join(KINDS)}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"the count of {kind!r} must be a non-negative integer, not {n!r}")
        out[kind] = n
    return out


def entity_info(entity: Entity) -> tuple[str, str]:
    """The ground truth's ``entity_type`` and ``entity_id`` of an entity."""
    if isinstance(entity, Cvm):
        return "cvm", entity.key
    if isinstance(entity, App):
        return "app", entity.app_id
    if isinstance(entity, Node):
        return "node", str(entity.id)
    if isinstance(entity, Workspace):
        return "workspace", entity.id
    return "creator", entity.id


def record_of(entity: Entity) -> JsonDict:
    """The entity's canonical record (see :mod:`.model`)."""
    if isinstance(entity, Cvm):
        # ``hourly_rate`` only for CVMs whose current items send it (unknown for the others).
        return {**cvm_record(entity), **hourly_rate_record(entity)}
    if isinstance(entity, App):
        return app_record(entity)
    if isinstance(entity, Node):
        return node_record(entity)
    if isinstance(entity, Workspace):
        return workspace_record(entity)
    return creator_record(entity)


class Step:
    """Tracks the entities one step touches and reports their net change.

    Call :meth:`touch` (or :meth:`touch_cvm`) *before* changing an entity or the references to it,
    and :meth:`touch_new` for an entity the step creates; then :meth:`finish`.
    """

    def __init__(self, referenced: Callable[[Node | Workspace | Creator], bool]) -> None:
        self._referenced = referenced
        self._before: dict[Entity, JsonDict | None] = {}

    def _visible_record(self, entity: Entity) -> JsonDict | None:
        if isinstance(entity, Cvm):
            visible = entity.live
        elif isinstance(entity, App):
            visible = True
        else:
            visible = self._referenced(entity)
        return record_of(entity) if visible else None

    def touch(self, entity: Entity | None) -> None:
        if entity is not None and entity not in self._before:
            self._before[entity] = self._visible_record(entity)

    def touch_cvm(self, cvm: Cvm) -> None:
        """A CVM and everything whose visible record depends on it."""
        for entity in (cvm, cvm.app, cvm.node, cvm.workspace, cvm.creator):
            self.touch(entity)

    def touch_new(self, entity: Entity) -> None:
        self._before.setdefault(entity, None)

    def finish(self) -> list[JsonDict]:
        """The step's net changes, ordered by entity type then id; marks what is now visible."""
        out: list[JsonDict] = []
        for entity, before in self._before.items():
            after = self._visible_record(entity)
            entity_type, entity_id = entity_info(entity)
            change: JsonDict = {"entity_type": entity_type, "entity_id": entity_id}
            if before is None and after is not None:
                change["change_type"] = "restored" if entity.published else "created"
            elif before is not None and after is None:
                change["change_type"] = "deleted"
            elif before is not None and after is not None:
                fields = {
                    name: {"old": before[name], "new": value}
                    for name, value in after.items()
                    if before[name] != value
                }
                if not fields:
                    continue
                change["change_type"] = "updated"
                change["fields"] = fields
            else:
                continue
            out.append(change)
        for entity in self._before:
            if self._visible_record(entity) is not None:
                entity.published = True
        out.sort(key=lambda ch: (ENTITY_ORDER[ch["entity_type"]], ch["entity_id"]))
        return out
