"""(d) Evolution between syncs and its ground truth; the admin endpoints and their token."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from simulator import Fleet

from .conftest import Caller

KINDS = {
    "cvms": "cvm",
    "apps": "app",
    "nodes": "node",
    "workspaces": "workspace",
    "creators": "creator",
}
ORDER = ["cvm", "node", "workspace", "creator", "app"]


def snapshot_diff(
    before: dict[str, Any], after: dict[str, Any], seen: dict[str, set[str]]
) -> list[dict[str, Any]]:
    """The net changes between two snapshots, computed independently of the simulator's steps."""
    out = []
    for kind, entity_type in KINDS.items():
        old, new = before[kind], after[kind]
        for key in old.keys() | new.keys():
            change: dict[str, Any] = {"entity_type": entity_type, "entity_id": key}
            if key not in old:
                change["change_type"] = "restored" if key in seen[kind] else "created"
            elif key not in new:
                change["change_type"] = "deleted"
            else:
                fields = {
                    f: {"old": old[key][f], "new": v}
                    for f, v in new[key].items()
                    if old[key][f] != v
                }
                if not fields:
                    continue
                change["change_type"] = "updated"
                change["fields"] = fields
            out.append(change)
        seen[kind] |= new.keys()
    return sorted(out, key=lambda c: (ORDER.index(c["entity_type"]), c["entity_id"]))


def seen_in(snapshot: dict[str, Any]) -> dict[str, set[str]]:
    return {kind: set(snapshot[kind]) for kind in KINDS}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_ground_truth_is_the_net_change_of_each_step(seed: int) -> None:
    fleet = Fleet(150, seed=seed)
    before = fleet.snapshot()
    seen = seen_in(before)
    plans: list[dict[str, Any]] = [
        {"total": 25},
        {"total": 40},
        {"counts": {"delete": 30, "create": 5}},
        {"counts": {"restore": 20, "rename_workspace": 3}},
        {"counts": {"resize": 60, "rename": 60, "restart": 60, "move": 60}},  # touched twice
        {"total": 0},
    ]
    for n, plan in enumerate(plans):
        changes = fleet.evolve(plan.get("counts"), seed=seed * 100 + n, total=plan.get("total"))
        after = fleet.snapshot()
        assert changes == snapshot_diff(before, after, seen), plan
        ids = [(c["entity_type"], c["entity_id"]) for c in changes]
        assert len(ids) == len(set(ids))  # one entry per entity per step
        before = after
    drift = fleet.page_drift("cvms", insert=3, delete=4, offset=60, seed=5)
    assert drift == snapshot_diff(before, fleet.snapshot(), seen)
    assert fleet.step_count == len(plans) + 1
    assert fleet.changes(len(plans)) == [drift]
    assert orjson.loads(orjson.dumps(fleet.changes())) == fleet.changes()


def _cvm_changes(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in changes if c["entity_type"] == "cvm"]


def test_create_delete_restore() -> None:
    fleet = Fleet(200, seed=1)
    created = _cvm_changes(fleet.evolve({"create": 4}, seed=1))
    assert [c["change_type"] for c in created] == ["created"] * 4
    assert all("fields" not in c for c in created)
    assert {c["entity_id"] for c in created} == set(fleet.vm_uuids()[:4])  # newest first
    facts = dict(fleet.snapshot()["cvms"].items())
    deleted = _cvm_changes(fleet.evolve({"delete": 5}, seed=2))
    assert [c["change_type"] for c in deleted] == ["deleted"] * 5
    gone = {c["entity_id"] for c in deleted}
    assert not gone & set(fleet.vm_uuids())
    restored = _cvm_changes(fleet.evolve({"restore": 5}, seed=3))
    assert [c["change_type"] for c in restored] == ["restored"] * 5
    assert {c["entity_id"] for c in restored} == gone  # the same VM UUIDs come back
    now = fleet.snapshot()["cvms"]
    assert all(now[k] == facts[k] for k in gone)  # with the same facts
    assert list(now) == fleet.vm_uuids()
    assert len(now) == 204
    assert _cvm_changes(fleet.evolve({"restore": 1}, seed=4)) == []  # nothing left to restore


def test_created_and_deleted_in_one_step_never_shows() -> None:
    fleet = Fleet(10, seed=2)
    changes = _cvm_changes(fleet.evolve({"create": 5, "delete": 1000}, seed=1))
    assert fleet.cvm_count == 0
    assert sorted(c["change_type"] for c in changes) == ["deleted"] * 10
    back = _cvm_changes(fleet.evolve({"restore": 15}, seed=2))
    assert sorted(c["change_type"] for c in back) == ["created"] * 5 + ["restored"] * 10


@pytest.mark.parametrize(
    ("kind", "allowed", "required"),
    [
        ("restart", {"status", "instance_id", "in_progress"}, {"instance_id"}),
        (
            "resize",
            {"vcpu", "memory_mb", "disk_gb", "instance_type", "gpus", "compute_billing_price"}
            | {"hourly_rate_total", "hourly_rate_compute"},
            {"instance_type"},
        ),
        ("move", {"node_id"}, {"node_id"}),
        ("rename", {"name"}, {"name"}),
    ],
)
def test_each_update_changes_its_fields(kind: str, allowed: set[str], required: set[str]) -> None:
    fleet = Fleet(300, seed=3)
    changes = _cvm_changes(fleet.evolve({kind: 6}, seed=6))
    assert 1 <= len(changes) <= 6
    for change in changes:
        assert change["change_type"] == "updated"
        assert required <= set(change["fields"]) <= allowed
        for delta in change["fields"].values():
            assert delta["old"] != delta["new"]


def test_workspace_rename() -> None:
    fleet = Fleet(300, seed=4)
    changes = fleet.evolve({"rename_workspace": 1}, seed=1)
    workspaces = [c for c in changes if c["entity_type"] == "workspace"]
    assert len(workspaces) == 1
    assert workspaces[0]["change_type"] == "updated"
    assert set(workspaces[0]["fields"]) == {"name"}
    new_name = workspaces[0]["fields"]["name"]["new"]
    assert fleet.snapshot()["workspaces"][workspaces[0]["entity_id"]]["name"] == new_name
    assert not _cvm_changes(changes)  # a CVM's canonical record holds the workspace id only
    for app in (c for c in changes if c["entity_type"] == "app"):  # legacy apps show team_name
        assert set(app["fields"]) == {"team_name"}


def test_evolve_is_deterministic() -> None:
    a, b = Fleet(120, seed=8), Fleet(120, seed=8)
    for step in range(4):
        assert a.evolve(seed=step, total=15) == b.evolve(seed=step, total=15)
    assert a.snapshot() == b.snapshot()
    assert Fleet(120, seed=8).evolve(seed=1, total=15) != Fleet(120, seed=8).evolve(
        seed=2, total=15
    )


def test_bad_evolve_requests() -> None:
    fleet = Fleet(20)
    with pytest.raises(ValueError, match="unknown change kind"):
        fleet.evolve({"explode": 1})
    with pytest.raises(ValueError, match="non-negative"):
        fleet.evolve({"create": -1})
    with pytest.raises(ValueError, match="total"):
        fleet.evolve(total=-1)
    assert fleet.step_count == 0


def test_served_pages_follow_the_fleet(make_caller: Any) -> None:
    fleet = Fleet(100, seed=5)
    caller: Caller = make_caller(fleet)
    for version in ("2025-10-28", "2026-01-21"):
        caller.get("cvms", version=version, page_size=100)  # cached now
    changes = fleet.evolve({"create": 1, "rename": 3}, seed=9)
    new = next(c["entity_id"] for c in changes if c["change_type"] == "created")
    renamed = {
        c["entity_id"]: c["fields"]["name"]["new"]
        for c in _cvm_changes(changes)
        if c["change_type"] == "updated"
    }
    for version in ("2025-10-28", "2026-01-21"):
        body = caller.get("cvms", version=version, page_size=100).json()
        assert body["total"] == 101
        names = {
            (i.get("vm_uuid") or i["hosted"]["id"]).replace("-", ""): i["name"]
            for i in body["items"]
        }
        assert next(iter(names)) == new
        for key, name in renamed.items():
            assert names.get(key, name) == name


# ---------------------------------------------------------------- admin endpoints


def test_admin_needs_its_token(make_caller: Any) -> None:
    caller: Caller = make_caller(Fleet(30))
    for method, path in (
        ("POST", "/evolve"),
        ("GET", "/changes"),
        ("GET", "/snapshot"),
        ("GET", "/state"),
        ("GET", "/faults"),
        ("PUT", "/faults"),
        ("DELETE", "/faults"),
    ):
        assert caller.admin(method, path, token=None).status_code == 401
        assert caller.admin(method, path, token="wrong").status_code == 403
        r = caller.admin(method, path, token="", headers={"X-API-Key": "phak_simulator_test_key"})
        assert r.status_code == 401  # the API key is not an admin token
    disabled: Caller = make_caller(Fleet(30), admin_token=None)
    r = disabled.admin("POST", "/evolve", token="anything")
    assert r.status_code == 403
    assert "disabled" in r.json()["detail"]
    assert caller.admin("GET", "/state").json()["steps"] == 0  # nothing ran


def test_admin_evolve_and_changes(make_caller: Any) -> None:
    fleet = Fleet(200, seed=6)
    caller: Caller = make_caller(fleet)
    r = caller.admin("POST", "/evolve", json={"counts": {"create": 2, "delete": 2}, "seed": 4})
    assert r.status_code == 200
    first = r.json()
    assert first["step"] == 0
    assert len(_cvm_changes(first["changes"])) == 4
    second = caller.admin("POST", "/evolve", json={"seed": 5, "total": 12}).json()
    third = caller.admin("POST", "/evolve").json()  # default mix, seed = step index
    assert (second["step"], third["step"]) == (1, 2)
    steps = caller.admin("GET", "/changes").json()
    assert steps == [first["changes"], second["changes"], third["changes"]] == fleet.changes()
    assert caller.admin("GET", "/changes", params={"since": 2}).json() == [third["changes"]]
    state = caller.admin("GET", "/state").json()
    assert state["steps"] == 3
    assert state["cvms"] == fleet.cvm_count
    snap = caller.admin("GET", "/snapshot").json()
    assert snap == fleet.snapshot()


@pytest.mark.parametrize(
    "body",
    [
        {"counts": {"explode": 1}},
        {"counts": {"create": -1}},
        {"counts": [1, 2]},
        {"total": "ten"},
        {"seed": 1.5},
        {"steps": 3},
        [1, 2],
    ],
)
def test_admin_evolve_rejects_bad_bodies(make_caller: Any, body: Any) -> None:
    fleet = Fleet(20)
    r = make_caller(fleet).admin("POST", "/evolve", json=body)
    assert r.status_code == 422
    assert isinstance(r.json()["detail"], str)
    assert fleet.step_count == 0


def test_admin_changes_rejects_a_bad_since(make_caller: Any) -> None:
    r = make_caller(Fleet(20)).admin("GET", "/changes", params={"since": "-1"})
    assert r.status_code == 422
