"""The oracle of the reliability suite: what the database must hold, computed without the product.

:class:`Model` replays the documented semantics (docs/schema.md) over what the simulator serves:

- a listed entity (CVM, app) is ``created`` when first seen, ``updated`` with every changed field,
  ``deleted`` when a complete listing of its target misses it (never when its item was quarantined)
  and ``restored`` (changes against the state before deletion) when seen again;
- a field the pinned API version does not carry keeps its last known value ("not carried is not
  null"): 2025-10-28 carries no workspace, creator, OS, resource or timestamp fields, nodes only
  with their name and region; 2026-01-21 and later carry no ``team_slug``/``team_name``; a minimal
  app carries neither its team nor its members;
- nodes, workspaces and creators are references: created, updated and restored when a listed CVM
  shows them, deleted when no live CVM refers to them any more.

The checks read the tables through SQLAlchemy Core and compare canonical values (datetimes as UTC
ISO text, tuples as lists), so the same assertions hold on SQLite and PostgreSQL.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Engine, Table, select

from models import Base
from simulator import Fleet
from tests.carried_fields import LEGACY_NODE_CARRIED, LEGACY_UNKNOWN_CVM_FIELDS, TEAM_FIELDS

LEGACY = "2025-10-28"
CURRENT_VERSIONS = ("2026-01-21", "2026-05-22", "2026-06-23")
ALL_VERSIONS = (LEGACY, *CURRENT_VERSIONS)

ENTITY_TYPES = ("node", "workspace", "creator", "cvm", "app")
LISTED = ("cvm", "app")
REFERENCES = {"node": "node_id", "workspace": "workspace_id", "creator": "creator_id"}
TABLES = {
    "node": ("nodes", "node_history", "node_id"),
    "workspace": ("workspaces", "workspace_history", "workspace_id"),
    "creator": ("creators", "creator_history", "creator_id"),
    "cvm": ("cvms", "cvm_history", "vm_uuid"),
    "app": ("apps", "app_history", "app_id"),
}
SNAPSHOT_KEYS = {
    "node": "nodes",
    "workspace": "workspaces",
    "creator": "creators",
    "cvm": "cvms",
    "app": "apps",
}
MEMBERS = "member_vm_uuids"
BOOKKEEPING = frozenset(
    {
        "target",
        "first_seen_at",
        "last_seen_at",
        "first_seen_run_id",
        "last_seen_run_id",
        "deleted_at",
        "observed_hash",
        "raw_json",
    }
)
HISTORY_BOOKKEEPING = frozenset({"target", "history_id", "valid_from", "valid_to", "run_id"})
DATETIME_FIELDS: dict[str, frozenset[str]] = {"cvm": frozenset({"created_at", "api_deleted_at"})}

#: Every inventory, history and event table: a failed run must leave each exactly as it was.
INVENTORY_TABLES = (
    "nodes",
    "workspaces",
    "creators",
    "cvms",
    "apps",
    "app_cvms",
    "node_history",
    "workspace_history",
    "creator_history",
    "cvm_history",
    "app_history",
    "change_events",
)

Event = tuple[str, str, str, dict[str, Any]]
Observation = dict[str, dict[str, dict[str, Any]]]


def table(name: str) -> Table:
    return Base.metadata.tables[name]


def state_fields(entity_type: str) -> tuple[str, ...]:
    """The state columns of an entity type (its table's columns but key and bookkeeping)."""
    name, _, key = TABLES[entity_type]
    return tuple(c.name for c in table(name).columns if c.name != key and c.name not in BOOKKEEPING)


def canon(entity_type: str, name: str, value: Any) -> Any:
    """A value as the oracle compares it: datetimes as UTC ISO text, tuples as lists."""
    if value is not None and name in DATETIME_FIELDS.get(entity_type, ()):
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        return moment.astimezone(UTC).isoformat()
    if isinstance(value, tuple):
        return list(value)
    return value


def canon_changes(entity_type: str, changes: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: {"old": canon(entity_type, name, c["old"]), "new": canon(entity_type, name, c["new"])}
        for name, c in changes.items()
    }


# ---------------------------------------------------------------------------------- observing
def observe(fleet: Fleet) -> Observation:
    """What a complete listing of the fleet shows, now: canonical records by type and id.

    Apps carry their members (sorted VM UUIDs) unless they are minimal (then the key is absent).
    """
    with fleet.lock:
        snap = fleet.snapshot()
        apps = {a.app_id: a for a in fleet.apps()}
    out: Observation = {}
    for entity_type, snap_key in SNAPSHOT_KEYS.items():
        records = snap[snap_key]
        out[entity_type] = {
            str(eid): {k: canon(entity_type, k, v) for k, v in rec.items()}
            for eid, rec in records.items()
        }
    for app_id, rec in out["app"].items():
        app = apps[app_id]
        if not app.minimal:
            rec[MEMBERS] = sorted(c.key for c in app.members)
    return out


def carried(entity_type: str, record: Mapping[str, Any], version: str) -> dict[str, Any]:
    """The fields of a record that ``version`` carries (key left out)."""
    key = TABLES[entity_type][2]
    fields = {k: v for k, v in record.items() if k != key}
    if entity_type == "cvm" and version == LEGACY:
        return {k: v for k, v in fields.items() if k not in LEGACY_UNKNOWN_CVM_FIELDS}
    if entity_type == "node" and version == LEGACY:
        return {k: v for k, v in fields.items() if k in LEGACY_NODE_CARRIED}
    if entity_type == "app":
        minimal = MEMBERS not in record
        if minimal or version != LEGACY:
            return {k: v for k, v in fields.items() if k not in TEAM_FIELDS}
    return fields


def shown_by(version: str, entity_type: str) -> bool:
    """2025-10-28 shows no workspace and no creator at all."""
    return not (version == LEGACY and entity_type in ("workspace", "creator"))


# ------------------------------------------------------------------------------------ the model
@dataclass
class Entity:
    fields: dict[str, Any]
    deleted: bool = False


@dataclass
class Model:
    """The expected inventory of one target, advanced one sync at a time."""

    entities: dict[str, dict[str, Entity]] = field(
        default_factory=lambda: {t: {} for t in ENTITY_TYPES}
    )

    def sync(
        self,
        obs: Observation,
        version: str,
        *,
        held: Mapping[str, Iterable[str]] | None = None,
        complete: Mapping[str, bool] | None = None,
    ) -> list[Event]:
        """Apply one run that saw ``obs`` (minus the ``held`` ids); return its expected events.

        ``held``: ids per entity type whose items were quarantined (not observed, never deleted).
        ``complete``: per listed type, whether deletions may be inferred (default True).
        """
        held_ids = {t: set(ids) for t, ids in (held or {}).items()}
        events: list[Event] = []
        shown: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in ENTITY_TYPES}
        for cvm_id, rec in obs["cvm"].items():
            if cvm_id in held_ids.get("cvm", ()):
                continue
            shown["cvm"][cvm_id] = rec
            for ref, column in REFERENCES.items():
                ref_id = rec.get(column)
                if ref_id is not None and shown_by(version, ref):
                    shown[ref][str(ref_id)] = obs[ref][str(ref_id)]
        for app_id, rec in obs["app"].items():
            if app_id not in held_ids.get("app", ()):
                shown["app"][app_id] = rec
        for entity_type in ENTITY_TYPES:
            for eid, rec in shown[entity_type].items():
                event = self._observe(entity_type, eid, carried(entity_type, rec, version))
                if event is not None:
                    events.append(event)
        for entity_type in LISTED:
            if not (complete or {}).get(entity_type, True):
                continue
            listed = set(obs[entity_type]) | held_ids.get(entity_type, set())
            for eid, ent in self.entities[entity_type].items():
                if not ent.deleted and eid not in listed:
                    ent.deleted = True
                    events.append((entity_type, eid, "deleted", {}))
        live_cvms = [e.fields for e in self.entities["cvm"].values() if not e.deleted]
        for ref, column in REFERENCES.items():
            referred = {str(f[column]) for f in live_cvms if f.get(column) is not None}
            for eid, ent in self.entities[ref].items():
                if not ent.deleted and eid not in referred:
                    ent.deleted = True
                    events.append((ref, eid, "deleted", {}))
        return sort_events(events)

    def _observe(self, entity_type: str, eid: str, observed: dict[str, Any]) -> Event | None:
        current = self.entities[entity_type].get(eid)
        if current is None:
            state = dict.fromkeys(state_fields(entity_type))
            state.update(observed)
            self.entities[entity_type][eid] = Entity(state)
            changes = {k: {"old": None, "new": v} for k, v in observed.items()}
            return (entity_type, eid, "created", changes)
        changes = {
            k: {"old": current.fields.get(k), "new": v}
            for k, v in observed.items()
            if current.fields.get(k) != v
        }
        current.fields.update(observed)
        if current.deleted:
            current.deleted = False
            return (entity_type, eid, "restored", changes)
        return (entity_type, eid, "updated", changes) if changes else None


def sort_events(events: Iterable[Event]) -> list[Event]:
    return sorted(
        events, key=lambda e: (e[0], e[1], e[2], orjson.dumps(e[3], option=orjson.OPT_SORT_KEYS))
    )


# -------------------------------------------------------------------------------- reading the db
def recorded_events(engine: Engine, run_ids: Sequence[int] | None = None) -> list[Event]:
    """Change events (of the given runs, else all) as canonical, sorted tuples."""
    t = table("change_events")
    query = select(t.c.entity_type, t.c.entity_id, t.c.change_type, t.c.changes)
    if run_ids is not None:
        query = query.where(t.c.run_id.in_(list(run_ids)))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return sort_events(
        (r.entity_type, r.entity_id, r.change_type, canon_changes(r.entity_type, r.changes))
        for r in rows
    )


def stored_entities(engine: Engine) -> dict[str, dict[str, Entity]]:
    """Every entity row (deleted ones too) as canonical state fields and a deleted flag."""
    out: dict[str, dict[str, Entity]] = {}
    with engine.connect() as conn:
        for entity_type in ENTITY_TYPES:
            name, _, key = TABLES[entity_type]
            names = state_fields(entity_type)
            out[entity_type] = {
                str(row[key]): Entity(
                    {n: canon(entity_type, n, row[n]) for n in names},
                    deleted=row["deleted_at"] is not None,
                )
                for row in conn.execute(select(table(name))).mappings()
            }
    return out


def dump(
    engine: Engine, names: Sequence[str] = INVENTORY_TABLES
) -> dict[str, list[tuple[Any, ...]]]:
    """The full contents of tables, in primary-key order."""
    with engine.connect() as conn:
        return {
            name: [
                tuple(r)
                for r in conn.execute(select(table(name)).order_by(*table(name).primary_key))
            ]
            for name in names
        }


def runs(engine: Engine) -> list[dict[str, Any]]:
    t = table("sync_runs")
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(t).order_by(t.c.id)).mappings()]


def count(engine: Engine, name: str) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(table(name))).all())


# ------------------------------------------------------------------------------------ the checks
def assert_matches_model(engine: Engine, model: Model) -> None:
    """Every entity row equals the model's entity: same ids, fields and deleted flags."""
    stored = stored_entities(engine)
    for entity_type in ENTITY_TYPES:
        expected = model.entities[entity_type]
        got = stored[entity_type]
        assert set(got) == set(expected), (
            f"{entity_type}: missing {sorted(set(expected) - set(got))[:5]}, "
            f"unexpected {sorted(set(got) - set(expected))[:5]}"
        )
        for eid, ent in expected.items():
            assert got[eid].deleted == ent.deleted, f"{entity_type} {eid}: deleted flag"
            assert got[eid].fields == ent.fields, f"{entity_type} {eid}: fields"


def replay(events: Iterable[tuple[int, Event]]) -> dict[str, dict[str, Entity]]:
    """The entity states that replaying change events (in id order) from nothing produces.

    Asserts along the way that every event is possible: ``created`` once, ``updated`` and
    ``deleted`` only for a live entity, ``restored`` only for a deleted one, and every ``old``
    value equal to the replayed state.
    """
    states: dict[str, dict[str, Entity]] = {t: {} for t in ENTITY_TYPES}
    for _, (entity_type, eid, change_type, changes) in sorted(events, key=lambda e: e[0]):
        where = f"{change_type} event of {entity_type} {eid}"
        current = states[entity_type].get(eid)
        if change_type == "created":
            assert current is None, f"{where}: created twice"
            fields = dict.fromkeys(state_fields(entity_type))
            fields.update({k: c["new"] for k, c in changes.items()})
            states[entity_type][eid] = Entity(fields)
            continue
        assert current is not None, f"{where}: never created"
        if change_type == "deleted":
            assert not current.deleted, f"{where}: deleted twice"
            assert changes == {}, f"{where}: a deletion lists no fields"
            current.deleted = True
            continue
        assert current.deleted == (change_type == "restored"), f"{where}: wrong state"
        for name, c in changes.items():
            assert current.fields.get(name) == c["old"], f"{where}: old {name} is not the state"
            current.fields[name] = c["new"]
        current.deleted = False
        if change_type == "updated":
            assert changes, f"{where}: an update without changed fields"
    return states


def assert_consistent(engine: Engine, *, running_allowed: bool = False) -> None:
    """The invariants every committed database state must satisfy, whatever happened before.

    - no run is ``running`` (unless allowed) and the staging area is empty then;
    - change events, history rows and seen-run ids all belong to succeeded runs;
    - replaying the change events from nothing gives exactly the stored entities;
    - each live entity has exactly one open history row equal to its state, a deleted one none,
      and an entity's history intervals follow each other without overlap;
    - app membership rows are those of the live apps' known members.
    """
    ledger = runs(engine)
    succeeded = {r["id"] for r in ledger if r["status"] == "succeeded"}
    if not running_allowed:
        assert [r["id"] for r in ledger if r["status"] == "running"] == []
        assert count(engine, "sync_staging") == 0
    ev = table("change_events")
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                ev.c.id,
                ev.c.run_id,
                ev.c.entity_type,
                ev.c.entity_id,
                ev.c.change_type,
                ev.c.changes,
            )
        ).all()
    assert {r.run_id for r in rows} <= succeeded, "change events of a run that did not succeed"
    per_run = Counter((r.run_id, r.entity_type, r.entity_id) for r in rows)
    assert [k for k, n in per_run.items() if n > 1] == [], "two events for one entity in one run"
    replayed = replay(
        (r.id, (r.entity_type, r.entity_id, r.change_type, canon_changes(r.entity_type, r.changes)))
        for r in rows
    )
    stored = stored_entities(engine)
    for entity_type in ENTITY_TYPES:
        assert set(replayed[entity_type]) == set(stored[entity_type]), entity_type
        for eid, ent in stored[entity_type].items():
            assert replayed[entity_type][eid] == ent, f"replayed {entity_type} {eid} differs"
    with engine.connect() as conn:
        for entity_type in ENTITY_TYPES:
            name, history_name, key = TABLES[entity_type]
            t, h = table(name), table(history_name)
            for col in ("first_seen_run_id", "last_seen_run_id"):
                ids = set(conn.execute(select(t.c[col])).scalars())
                assert ids <= succeeded, f"{name}.{col} names a run that did not succeed"
            history: dict[str, list[Any]] = {}
            for row in conn.execute(select(h).order_by(h.c.history_id)).mappings():
                history.setdefault(str(row[key]), []).append(row)
                assert row["run_id"] in succeeded, f"{history_name} row of an unsucceeded run"
            for eid, ent in stored[entity_type].items():
                rows_of = sorted(history.get(eid, []), key=lambda r: r["valid_from"])
                assert rows_of, f"{entity_type} {eid} has no history"
                open_rows = [r for r in rows_of if r["valid_to"] is None]
                assert len(open_rows) == (0 if ent.deleted else 1), f"{entity_type} {eid}"
                for before, after in itertools.pairwise(rows_of):
                    assert before["valid_to"] is not None
                    assert before["valid_to"] <= after["valid_from"], f"{entity_type} {eid}"
                if open_rows:
                    state = {
                        n: canon(entity_type, n, open_rows[0][n])
                        for n in open_rows[0]
                        if n != key and n not in HISTORY_BOOKKEEPING
                    }
                    assert state == ent.fields, f"{entity_type} {eid}: open history row"
        members = conn.execute(select(table("app_cvms"))).all()
    live_apps = {k: e for k, e in stored["app"].items() if not e.deleted}
    expected_pairs = {
        (app_id, vm) for app_id, e in live_apps.items() for vm in e.fields[MEMBERS] or []
    }
    assert {(r.app_id, r.vm_uuid) for r in members} == expected_pairs


def assert_fleet_stored(engine: Engine, fleet: Fleet, version: str = "2026-01-21") -> None:
    """The live CVMs and apps are exactly the fleet's, with the fields ``version`` carries."""
    obs = observe(fleet)
    stored = stored_entities(engine)
    for entity_type in LISTED:
        live = {k for k, e in stored[entity_type].items() if not e.deleted}
        assert live == set(obs[entity_type]), (
            f"{entity_type}: missing {sorted(set(obs[entity_type]) - live)[:5]}, "
            f"extra {sorted(live - set(obs[entity_type]))[:5]}"
        )
    for entity_type in ENTITY_TYPES:
        if not shown_by(version, entity_type):
            continue
        for eid, rec in obs[entity_type].items():
            fields = carried(entity_type, rec, version)
            got = stored[entity_type][eid]
            assert not got.deleted, f"{entity_type} {eid} is marked deleted"
            assert {k: got.fields[k] for k in fields} == fields, f"{entity_type} {eid}"
