"""(b) The same seed gives the same fleet; every version shows the same facts."""

from __future__ import annotations

from typing import Any

import pytest

from simulator import Fleet
from simulator.shapes import shape_of
from sync.records import AppRecord, CreatorRecord, CvmRecord, NodeRecord, WorkspaceRecord

from .conftest import VERSIONS, Caller


def norm(uuid: str) -> str:
    return uuid.replace("-", "").lower()


#: Facts both shapes keep at the top level of a CVM item, under their canonical names.
TOP_LEVEL_FACTS = ("name", "status", "in_progress", "listed", "project_type")


def legacy_facts(item: dict[str, Any]) -> dict[str, Any]:
    """The canonical facts of a ``HostedCvm`` item (the mapping the normalizer relies on)."""
    hosted, node, kms = item["hosted"], item["node"], item["kms_info"]
    assert hosted["name"] == item["name"]
    assert hosted["status"] == item["status"]
    assert isinstance(hosted["id"], str)
    assert hosted["id"].count("-") == 4
    assert node is None or isinstance(node["name"], str)
    assert kms is None or {"id", "url", "version"} <= set(kms)
    return {
        **{name: item[name] for name in TOP_LEVEL_FACTS},
        "vm_uuid": norm(hosted["id"]),
        "app_id": hosted["app_id"],
        "instance_id": hosted["instance_id"],
        "vcpu": item["vcpu"],
        "memory_mb": item["memory"],
        "disk_gb": item["disk_size"],
        "billing_period": item["billing_period"],
        "node": None if node is None else (node["id"], node["name"], node["region_identifier"]),
        "gateway_domain": item["gateway_domain"],
        "kms_chain_id": None if kms is None else kms["chain_id"],
        "user": None if item["managed_user"] is None else item["managed_user"]["username"],
    }


def current_facts(item: dict[str, Any]) -> dict[str, Any]:
    """The canonical facts of a ``CVMInfo`` item."""
    res, node, kms = item["resource"], item["node_info"], item["kms_info"]
    memory_mb = res["memory_in_gb"] * 1024
    assert memory_mb == int(memory_mb)  # MB / 1024 converts back exactly
    return {
        **{name: item[name] for name in TOP_LEVEL_FACTS},
        "vm_uuid": norm(item["vm_uuid"]),
        "app_id": item["app_id"],
        "instance_id": item["instance_id"],
        "vcpu": res["vcpu"],
        "memory_mb": int(memory_mb),
        "disk_gb": res["disk_in_gb"],
        "billing_period": res["billing_period"],
        "node": None if node is None else (node["id"], node["name"], node["region"]),
        "gateway_domain": item["gateway"]["base_domain"],
        "kms_chain_id": None if kms is None else kms["chain_id"],
        "user": None if item["creator"] is None else item["creator"]["username"],
    }


def test_same_seed_same_fleet(make_caller: Any) -> None:
    a, b = make_caller(Fleet(400, seed=21)), make_caller(Fleet(400, seed=21))
    other = make_caller(Fleet(400, seed=22))
    for endpoint in ("cvms", "apps"):
        for version in ("2025-10-28", "2026-01-21"):
            for page in (1, 4):
                first = a.get(endpoint, version=version, page=page, page_size=100).content
                assert first == b.get(endpoint, version=version, page=page, page_size=100).content
                assert first != other.get(endpoint, version=version, page=page).content
    assert Fleet(400, seed=21).snapshot() == Fleet(400, seed=21).snapshot()


def test_fleet_size_bounds() -> None:
    assert Fleet(10).cvm_count == 10
    with pytest.raises(ValueError, match="0 to 200000"):
        Fleet(200_001)
    with pytest.raises(ValueError, match="0 to 200000"):
        Fleet(-1)


def test_canonical_records_use_the_record_field_names(fleet_300: Fleet) -> None:
    snap = fleet_300.snapshot()
    for kind, record in (
        ("cvms", CvmRecord),
        ("apps", AppRecord),
        ("nodes", NodeRecord),
        ("workspaces", WorkspaceRecord),
        ("creators", CreatorRecord),
    ):
        assert snap[kind], kind
        names = list(record.field_names())
        # ``hourly_rate_*`` (the record's last fields) only for CVMs whose items send it.
        allowed = [names, names[:-3]] if kind == "cvms" else [names]
        shapes = {tuple(value) for value in snap[kind].values()}
        assert sorted(shapes) == sorted(tuple(a) for a in allowed), kind


def test_every_version_shows_the_same_facts(make_caller: Any) -> None:
    fleet = Fleet(500, seed=3)
    fleet.evolve(seed=1, total=30)  # an evolved fleet too: restored, resized, moved ...
    caller: Caller = make_caller(fleet)
    legacy = {f["vm_uuid"]: f for f in map(legacy_facts, caller.all_items("cvms", "2025-10-28"))}
    current = {f["vm_uuid"]: f for f in map(current_facts, caller.all_items("cvms", "2026-01-21"))}
    assert legacy == current
    assert list(current) == fleet.vm_uuids()
    snap = fleet.snapshot()
    for key, facts in current.items():
        record = snap["cvms"][key]
        for name in facts.keys() - {"node", "user"}:
            assert facts[name] == record[name], (key, name)
        assert (facts["node"] or (None,))[0] == record["node_id"]
    # The versions that share the 2026-01-21 shape serve the very same bytes.
    for version in [v for v in VERSIONS if shape_of(v) == "current" and v != "2026-01-21"]:
        for endpoint in ("cvms", "apps"):
            same = caller.get(endpoint, version="2026-01-21", page=2, page_size=100).content
            assert caller.get(endpoint, version=version, page=2, page_size=100).content == same


def test_current_only_facts_match_the_records(make_caller: Any, fleet_300: Fleet) -> None:
    caller: Caller = make_caller(fleet_300)
    snap = fleet_300.snapshot()
    for item in caller.all_items("cvms", "2026-05-22"):
        record = snap["cvms"][norm(item["vm_uuid"])]
        res, os_ = item["resource"], item["os"] or {}
        assert item["id"] == record["cvm_id"]
        assert res["instance_type"] == record["instance_type"]
        assert res["gpus"] == record["gpus"]
        assert res["compute_billing_price"] == record["compute_billing_price"]
        assert item["kms_type"] == record["kms_type"]
        assert os_.get("name") == record["os_name"]
        assert os_.get("os_image_hash") == record["os_image_hash"]
        assert (item["workspace"] or {}).get("id") == record["workspace_id"]
        assert (item["creator"] or {}).get("id") == record["creator_id"]
        assert item["created_at"] == record["created_at"]
        assert item["deleted_at"] is None
        for flag in ("public_logs", "gateway_enabled", "secure_time", "storage_fs"):
            assert item[flag] == record[flag]
        if item["workspace"]:
            assert item["workspace"]["name"] == snap["workspaces"][record["workspace_id"]]["name"]


@pytest.mark.parametrize("version", ["2025-10-28", "2026-01-21"])
def test_apps_and_their_cvms_agree(make_caller: Any, version: str) -> None:
    fleet = Fleet(600, seed=9)
    fleet.evolve(seed=2, total=40)
    caller: Caller = make_caller(fleet)
    cvms = caller.all_items("cvms", version)
    apps = caller.all_items("apps", version)
    facts = legacy_facts if version == "2025-10-28" else current_facts
    by_app: dict[str, list[str]] = {}
    for item in cvms:  # listing order: newest first
        f = facts(item)
        by_app.setdefault(f["app_id"], []).append(f["vm_uuid"])
    app_ids = [a["app_id"] for a in apps]
    assert len(app_ids) == len(set(app_ids)) == fleet.app_count
    assert set(by_app) <= set(app_ids)  # every CVM's app is listed
    snap = fleet.snapshot()
    members_seen = 0
    for app in apps:
        record = snap["apps"][app["app_id"]]
        if app.get("id") is None:  # minimal: only the app_id
            assert record["name"] is None
            assert app.get("cvms") is None
            continue
        members = app["cvms"]
        keys = [m["vm_uuid"].replace("-", "").lower() for m in members]
        assert sorted(keys) == sorted(by_app.get(app["app_id"], []))
        assert app["cvm_count"] == len(members) == record["cvm_count"]
        newest = by_app[app["app_id"]][0] if keys else None
        current = app["current_cvm"]
        assert (current and norm(current["vm_uuid"])) == newest == record["current_vm_uuid"]
        assert app["id"] == record["project_id"]
        assert app["name"] == record["name"]
        assert app["created_at"] == record["created_at"]
        assert app["kms_type"] == record["kms_type"]
        assert (app["profile"] or {}).get("description") == record["profile_description"]
        if version == "2025-10-28":
            assert app.get("team_name") == record["team_name"]
            for m in members:
                full = next(c for c in cvms if norm(c["hosted"]["id"]) == norm(m["vm_uuid"]))
                f = legacy_facts(full)
                assert (m["vcpu"], m["memory"], m["disk_size"]) == (
                    f["vcpu"],
                    f["memory_mb"],
                    f["disk_gb"],
                )
                assert (m["name"], m["status"], m["instance_id"]) == (
                    f["name"],
                    f["status"],
                    f["instance_id"],
                )
                assert (m["teepod_id"], m["teepod_name"], m["region_identifier"]) == f["node"]
        else:
            listed = {norm(c["vm_uuid"]): c for c in cvms}
            for m in members:
                assert m == listed[norm(m["vm_uuid"])]  # the same CVMInfo as the CVM listing
        members_seen += len(members)
    assert members_seen > 0
