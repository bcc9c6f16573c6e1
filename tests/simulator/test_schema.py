"""(a) Every page the simulator serves validates against the server's OpenAPI schemas."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from simulator import Fleet

from .conftest import VERSIONS, all_pages, schema_errors, validator


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("endpoint", ["cvms", "apps"])
def test_every_page_validates(make_caller: Any, version: str, endpoint: str) -> None:
    fleet = Fleet(300, seed=11)
    for seed in (3, 4):  # created, restored, resized, renamed ... items validate too
        fleet.evolve(seed=seed, total=30)
    caller = make_caller(fleet)
    pages = all_pages(caller, endpoint, version, 100)
    assert pages[-1][("items" if endpoint == "cvms" else "dstack_apps")] == []
    for body in pages:
        assert schema_errors(endpoint, version, body) == []
    for page in (1, 2, 43):  # a small page size, and the empty page past the last
        body = caller.get(endpoint, version=version, page=page, page_size=7).json()
        assert schema_errors(endpoint, version, body) == []


def test_the_shapes_differ_by_version(make_caller: Any, fleet_300: Fleet) -> None:
    """A legacy page is not a current page and vice versa: the validators tell them apart."""
    caller = make_caller(fleet_300)
    legacy = caller.get("cvms", version="2025-10-28", page_size=5).json()
    current = caller.get("cvms", version="2026-01-21", page_size=5).json()
    assert schema_errors("cvms", "2026-01-21", legacy)
    assert schema_errors("cvms", "2025-10-28", current)


def test_the_validator_catches_a_bad_item(make_caller: Any, fleet_300: Fleet) -> None:
    caller = make_caller(fleet_300)
    body = caller.get("cvms", version="2026-01-21", page_size=3).json()
    body["items"][1]["resource"]["memory_in_gb"] = "lots"
    assert any("memory_in_gb" in e for e in schema_errors("cvms", "2026-01-21", body))
    body = caller.get("apps", version="2025-10-28", page_size=3).json()
    body["total_pages"] = None
    assert schema_errors("apps", "2025-10-28", body)


def test_the_fleet_looks_real(make_caller: Any) -> None:
    fleet = Fleet(2000, seed=5)
    caller = make_caller(fleet)
    items = caller.all_items("cvms", "2026-01-21")
    apps = caller.all_items("apps", "2026-01-21")
    assert len(items) == 2000
    regions = {i["node_info"]["region"] for i in items if i["node_info"]}
    nodes = Counter(i["node_info"]["id"] for i in items if i["node_info"])
    workspaces = Counter(i["workspace"]["id"] for i in items if i["workspace"])
    creators = Counter(i["creator"]["id"] for i in items if i["creator"])
    replicas = Counter(i["app_id"] for i in items)
    statuses = Counter(i["status"] for i in items)
    types = Counter(i["resource"]["instance_type"] for i in items)
    assert len(regions) >= 2
    assert len(nodes) >= 3
    assert max(nodes.values()) > 10
    assert max(workspaces.values()) > 10
    assert max(creators.values()) > 5
    assert max(replicas.values()) >= 4
    assert len(replicas) < len(items)
    assert {"running", "stopped", "error"} <= set(statuses)
    assert len(statuses) >= 5
    assert statuses.most_common(1)[0][0] == "running"
    assert len(types) >= 5
    assert None in types
    # Nulls where the schema allows them, absent optional fields, fields the schema lacks.
    assert any(i["creator"] is None for i in items)
    assert any(i["kms_info"] is None for i in items)
    assert any("progress" not in i for i in items)
    assert any(i.get("progress") for i in items)
    assert any("logs" in i for i in items)
    assert any("logs" not in i for i in items)
    assert any("updated_at" in i for i in items)
    assert any("gpu_rental_order" in i for i in items)
    assert any("-" not in i["vm_uuid"] for i in items)
    assert any("-" in i["vm_uuid"] for i in items)
    # Full and minimal apps; minimal apps with null keys and with absent keys.
    minimal = [a for a in apps if a.get("id") is None]
    assert minimal
    assert len(minimal) < len(apps) / 5
    assert any("name" in a for a in minimal)
    assert any("name" not in a for a in minimal)
    assert all(
        set(a) <= {"app_id"} or all(a[k] is None for k in a if k != "app_id") for a in minimal
    )
    assert any(a["profile"] is None for a in apps if a.get("id"))


def test_item_size_is_realistic(fleet_300: Fleet) -> None:
    sizes = [len(fleet_300.cvm_fragment(c, "current")) for c in fleet_300.cvms()]
    average = sum(sizes) / len(sizes)
    assert 1400 <= average <= 2500, average


def test_reference_schema_is_the_one_checked() -> None:
    """The schema file is found beside the repository and holds the two list endpoints."""
    v = validator("PaginatedCvmInfos")
    assert v.is_valid({"items": [], "total": 0, "page": 1, "page_size": 30, "pages": 0})
    assert not v.is_valid({"items": [], "total": 0, "page": 1, "page_size": 30})
