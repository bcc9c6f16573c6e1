"""Golden normalizer tests: one fleet written in both versions maps to the same canonical records.

``golden/cvms_<version>.json`` and ``golden/apps_<version>.json`` describe the same five CVMs and
three apps (full, empty, minimal) in each version's shape, with nulls, a node known only by its
physical ``node_id``, a creator without id, new enum values and fields the schema does not know.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from sync.api.pages import parse_page
from sync.endpoints import APPS, CVMS
from sync.records import (
    UNKNOWN,
    AppBundle,
    AppRecord,
    CreatorRecord,
    CvmBundle,
    CvmRecord,
    NodeRecord,
    WorkspaceRecord,
)
from sync.versions import get_version
from tests.carried_fields import LEGACY_UNKNOWN_CVM_FIELDS
from tests.sync.openapi_cases import component_schema, open_enums, requires_spec, validator

GOLDEN = Path(__file__).parent / "golden"
LEGACY, CURRENT = "2025-10-28", "2026-01-21"
WEB_APP = "e4c1d0b5a7f3926c8b1e0d4a5f6c7b8a9d0e1f2a"
WEB_1, WEB_2 = "3f2a9c1e7b4d4e8a9c215d6f7a8b9c01", "5e6f7a8b9c0d4e1fa2b3c4d5e6f7a8b9"
INDEXER, BATCH, GPU = (
    "6b1e4d7a2c9f4a3b8e5d0f1a2b3c4d5e",
    "a0b1c2d3e4f54a6b8c7d9e0f1a2b3c4d",
    "9c0d1e2f3a4b4c5d8e6f7a8b9c0d1e2f",
)


def cvms(version: str) -> dict[str, CvmBundle]:
    body = (GOLDEN / f"cvms_{version}.json").read_bytes()
    page = parse_page(CVMS, get_version(version), 1, body, policy="strict", url="golden")
    return {bundle.cvm.vm_uuid: bundle for bundle in page.items}


def apps(version: str) -> dict[str, AppBundle]:
    body = (GOLDEN / f"apps_{version}.json").read_bytes()
    page = parse_page(APPS, get_version(version), 1, body, policy="strict", url="golden")
    return {bundle.app.app_id: bundle for bundle in page.items}


APP_LIST = "teehouse__api__routes__apps__{}__schemas__DstackAppListResponse"


@requires_spec
@pytest.mark.parametrize(
    ("name", "component", "new_enum_values_at"),
    [
        (f"cvms_{LEGACY}", "PaginatedHostedCvms", {"items.4.hosted.configuration"}),
        (
            f"cvms_{CURRENT}",
            "PaginatedCvmInfos",
            {"items.4.kms_type", "items.4.node_info", "items.4.resource.billing_period"},
        ),
        (f"apps_{LEGACY}", APP_LIST.format("v20251028"), set()),
        (f"apps_{CURRENT}", APP_LIST.format("v20260121"), {"dstack_apps.0"}),
    ],
)
def test_the_golden_pages_follow_the_schema(
    name: str, component: str, new_enum_values_at: set[str]
) -> None:
    page = orjson.loads((GOLDEN / f"{name}.json").read_bytes())
    schema = component_schema(component)
    validator(open_enums(schema)).validate(page)
    # Against the exact schema, only the deliberately new enum values differ.
    errors = validator(schema).iter_errors(page)
    assert {".".join(map(str, error.absolute_path)) for error in errors} == new_enum_values_at


def test_the_golden_fleet_is_the_same_in_both_versions() -> None:
    assert cvms(LEGACY).keys() == cvms(CURRENT).keys() == {WEB_1, WEB_2, INDEXER, BATCH, GPU}
    assert apps(LEGACY).keys() == apps(CURRENT).keys()


def test_a_current_cvm_maps_every_field() -> None:
    bundle = cvms(CURRENT)[WEB_1]
    assert bundle.cvm == CvmRecord(
        vm_uuid=WEB_1,
        cvm_id="cvm_9x2kq1mz",
        name="web-frontend",
        app_id=WEB_APP,
        instance_id="5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b",
        status="running",
        in_progress=False,
        listed=True,
        vcpu=2,
        memory_mb=2048,
        disk_gb=40,
        instance_type="tdx.small",
        gpus=0,
        billing_period="hourly",
        compute_billing_price="0.058000",
        node_id=12,
        workspace_id="wks_7hq2m1",
        creator_id="usr_3kd9x0",
        project_type="webdev",
        gateway_domain="dstack-prod5.phala.network",
        kms_type="phala",
        kms_chain_id=None,
        os_name="dstack-0.5.3",
        os_version="0.5.3",
        os_image_hash="0f6ad1c3a1f5e7b9d2c4e6f8a0b2c4d6e8f0a2b4c6d8e0f2a4b6c8d0e2f4a6b8",
        os_is_dev=False,
        compose_hash="8e1d6f2a0c4b3e5d7f9a1c3e5b7d9f1a3c5e7b9d1f3a5c7e9b1d3f5a7c9e1b3d",
        gateway_enabled=True,
        public_logs=True,
        public_sysinfo=True,
        public_tcbinfo=True,
        secure_time=False,
        storage_fs="zfs",
        created_at=datetime(2025, 11, 2, 9, 14, 7, tzinfo=UTC),
        api_deleted_at=None,
    )
    assert bundle.node == NodeRecord(
        node_id=12,
        name="prod5",
        region="US-WEST-1",
        device_id="d3v1c3-0012",
        ppid="ppid-7f3a",
        status="ONLINE",
        version="0.5.3",
    )
    assert bundle.workspace == WorkspaceRecord(
        workspace_id="wks_7hq2m1",
        name="Acme Research",
        slug="acme-research",
        avatar_url="https://cdn.example.com/ws/acme.png",
    )
    assert bundle.creator == CreatorRecord(
        creator_id="usr_3kd9x0", username="alice", avatar_url="https://cdn.example.com/u/alice.png"
    )


def test_a_cvm_with_nothing_attached_maps_to_nulls() -> None:
    for version in (LEGACY, CURRENT):
        bundle = cvms(version)[BATCH]
        assert (bundle.node, bundle.workspace, bundle.creator) == (None, None, None)
        cvm = bundle.cvm
        assert (cvm.node_id, cvm.vcpu, cvm.memory_mb, cvm.disk_gb) == (None, None, None, None)
        assert (cvm.instance_id, cvm.billing_period, cvm.gateway_domain) == (None, None, None)
        assert cvm.kms_chain_id is None
    current = cvms(CURRENT)[BATCH].cvm
    assert (current.workspace_id, current.creator_id, current.kms_type) == (None, None, None)
    assert (current.os_name, current.os_is_dev, current.created_at) == (None, None, None)


def test_current_specifics_creator_without_id_node_without_id_and_offsets() -> None:
    indexer = cvms(CURRENT)[INDEXER]
    assert indexer.creator is None  # the creator object has a null id
    assert indexer.cvm.creator_id is None
    assert indexer.cvm.memory_mb == 1536  # 1.5 GB
    assert indexer.cvm.kms_chain_id == 8453
    assert (indexer.cvm.os_name, indexer.cvm.os_version, indexer.cvm.os_is_dev) == (None,) * 3
    assert indexer.cvm.created_at == datetime(2025, 12, 24, 21, 59, 59, 250000, tzinfo=UTC)
    gpu = cvms(CURRENT)[GPU]
    assert gpu.cvm.node_id == 5  # node_info.id is null: node_info.node_id
    assert gpu.node is not None
    assert (gpu.node.node_id, gpu.node.status) == (5, "MAINTENANCE")
    assert gpu.cvm.memory_mb == 131072
    assert gpu.creator == CreatorRecord(creator_id="usr_8fm2p7", username=None, avatar_url=None)


def test_new_enum_values_pass_through() -> None:
    new = cvms(CURRENT)[WEB_2]
    assert (new.cvm.status, new.cvm.billing_period, new.cvm.kms_type) == (
        "hibernating",
        "yearly",
        "tee-native",
    )
    assert new.cvm.storage_fs == "btrfs"
    assert new.node is not None
    assert new.node.status == "DRAINING"
    assert cvms(LEGACY)[WEB_2].cvm.billing_period == "yearly"


@pytest.mark.parametrize("vm_uuid", [WEB_1, WEB_2, INDEXER, BATCH, GPU])
def test_both_versions_agree_on_every_field_they_both_carry(vm_uuid: str) -> None:
    legacy, current = cvms(LEGACY)[vm_uuid], cvms(CURRENT)[vm_uuid]
    shared = legacy.cvm.known_fields()
    assert set(shared) == set(CvmRecord.field_names()) - LEGACY_UNKNOWN_CVM_FIELDS
    assert shared == {name: getattr(current.cvm, name) for name in shared}
    assert legacy.cvm.key == current.cvm.key == vm_uuid
    if current.node is None:
        assert legacy.node is None
    else:
        assert legacy.node is not None
        assert legacy.node.known_fields() == {
            "node_id": current.node.node_id,
            "name": current.node.name,
            "region": current.node.region,
        }


@pytest.mark.parametrize("vm_uuid", [WEB_1, WEB_2, INDEXER, BATCH, GPU])
def test_legacy_leaves_what_it_does_not_carry_unknown(vm_uuid: str) -> None:
    bundle = cvms(LEGACY)[vm_uuid]
    for name in LEGACY_UNKNOWN_CVM_FIELDS:
        assert getattr(bundle.cvm, name) is UNKNOWN, name
    if bundle.node is not None:
        assert (bundle.node.device_id, bundle.node.ppid) == (UNKNOWN, UNKNOWN)
        assert (bundle.node.status, bundle.node.version) == (UNKNOWN, UNKNOWN)
    # managed_user has an id from another id space: no creator, no workspace in this version.
    assert (bundle.workspace, bundle.creator) == (None, None)


def test_current_leaves_nothing_unknown() -> None:
    """Except ``hourly_rate`` where an item does not send it (only newer servers do)."""
    rates = {"hourly_rate_total", "hourly_rate_compute", "hourly_rate_disk"}
    sent = 0
    for bundle in cvms(CURRENT).values():
        unknown = set() if "hourly_rate" in orjson.loads(bundle.raw) else rates
        sent += not unknown
        assert set(bundle.cvm.known_fields()) == set(CvmRecord.field_names()) - unknown
        if bundle.node is not None:
            assert set(bundle.node.known_fields()) == set(NodeRecord.field_names())
    assert 0 < sent < len(cvms(CURRENT))


def test_the_bundle_keeps_the_raw_item() -> None:
    items = orjson.loads((GOLDEN / f"cvms_{LEGACY}.json").read_bytes())["items"]
    bundle = cvms(LEGACY)[WEB_2]
    assert orjson.loads(bundle.raw) == items[4]
    assert orjson.loads(bundle.raw)["hosted"]["boot_stage"] == "userspace"  # an unknown field


def test_a_full_app_maps_in_both_versions() -> None:
    expected = AppRecord(
        app_id=WEB_APP,
        project_id="prj_w3bf0nt",
        name="web-frontend",
        app_provision_type="dstack",
        app_icon_url=None,
        created_at="2025-11-02T09:10:00Z",
        kms_type="phala",
        profile_display_name="Acme Web",
        profile_avatar_url="https://cdn.example.com/apps/web.png",
        profile_description="Public web frontend",
        profile_custom_domain="www.acme.example",
        cvm_count=3,
        current_vm_uuid=WEB_1,
    )
    current, legacy = apps(CURRENT)[WEB_APP], apps(LEGACY)[WEB_APP]
    assert current.app == expected
    assert legacy.app == AppRecord(
        **(expected.known_fields() | {"team_slug": "acme-research", "team_name": "Acme Research"})
    )
    # Members: sorted, duplicates merged, the member without a VM UUID left out.
    assert current.member_vm_uuids == legacy.member_vm_uuids == (WEB_1, WEB_2)


def test_an_app_without_cvms_or_profile_maps_to_nulls() -> None:
    for version in (LEGACY, CURRENT):
        bundle = apps(version)["77f0e1d2c3b4a5968778695a4b3c2d1e0f9a8b7c"]
        assert bundle.member_vm_uuids == ()
        app = bundle.app
        assert (app.current_vm_uuid, app.profile_display_name, app.cvm_count) == (None, None, 0)
        assert app.created_at == "2025-12-01T00:00:00"  # the string as given
    legacy = apps(LEGACY)["77f0e1d2c3b4a5968778695a4b3c2d1e0f9a8b7c"].app
    assert (legacy.team_slug, legacy.team_name) == (None, None)  # absent: the schema's null


def test_a_minimal_app_knows_only_its_app_id() -> None:
    app_id = "ab12cd34ef56ab78cd90ef12ab34cd56ef78ab90"
    for version in (LEGACY, CURRENT):
        bundle = apps(version)[app_id]
        assert bundle.member_vm_uuids is UNKNOWN
        assert bundle.app.known_fields() == {
            "app_id": app_id,
            **dict.fromkeys(
                [
                    "project_id",
                    "name",
                    "app_provision_type",
                    "app_icon_url",
                    "created_at",
                    "kms_type",
                    "profile_display_name",
                    "profile_avatar_url",
                    "profile_description",
                    "profile_custom_domain",
                    "cvm_count",
                    "current_vm_uuid",
                ]
            ),
        }
        assert (bundle.app.team_slug, bundle.app.team_name) == (UNKNOWN, UNKNOWN)


def _current_item(index: int) -> dict[str, Any]:
    item: dict[str, Any] = copy.deepcopy(
        orjson.loads((GOLDEN / f"cvms_{CURRENT}.json").read_bytes())["items"][index]
    )
    return item


def _normalize_current(item: dict[str, Any]) -> CvmBundle:
    version = get_version(CURRENT)
    return version.normalize_cvm(version.cvm_item.validate_python(item), orjson.dumps(item))


def test_a_cvm_without_vm_uuid_is_keyed_by_its_hashed_id() -> None:
    item = _current_item(0) | {"vm_uuid": None}
    bundle = _normalize_current(item)
    assert bundle.cvm.vm_uuid == bundle.cvm.cvm_id == "cvm_9x2kq1mz"


def test_a_node_without_any_id_is_no_node() -> None:
    item = _current_item(0)
    item["node_info"]["id"] = item["node_info"]["node_id"] = None
    bundle = _normalize_current(item)
    assert (bundle.node, bundle.cvm.node_id) == (None, None)


@pytest.mark.parametrize(
    ("memory_in_gb", "memory_mb"), [(2, 2048), (0.5, 512), (0.3, 307), (4095 / 1024, 4095)]
)
def test_memory_in_gb_becomes_whole_megabytes(memory_in_gb: float, memory_mb: int) -> None:
    item = _current_item(0)
    item["resource"]["memory_in_gb"] = memory_in_gb
    assert _normalize_current(item).cvm.memory_mb == memory_mb


def test_a_date_time_without_offset_is_utc() -> None:
    item = _current_item(0) | {
        "created_at": "2025-11-02T09:14:07",
        "deleted_at": "2026-01-01T00:00:00+05:30",
    }
    cvm = _normalize_current(item).cvm
    assert cvm.created_at == datetime(2025, 11, 2, 9, 14, 7, tzinfo=UTC)
    assert cvm.api_deleted_at == datetime(2025, 12, 31, 18, 30, tzinfo=UTC)
    assert isinstance(cvm.api_deleted_at, datetime)
    assert cvm.api_deleted_at.tzinfo is UTC
