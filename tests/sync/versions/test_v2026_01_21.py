"""The 2026-01-21 models: their components, their CVM mapping against the OpenAPI schema, and
their edge cases. The checks every version shares run over ``SCHEMAS`` in test_common."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given

from sync.records import UNKNOWN, normalize_vm_uuid
from sync.versions import v2026_01_21 as current
from tests.sync.openapi_cases import (
    SCHEMA_SETTINGS,
    assert_extras_kept,
    instances_of,
    requires_spec,
)
from tests.sync.versions.schemas import VersionSchemas, locs, rejection

#: This version's models and the components they mirror (test_common checks them against these).
SCHEMAS = VersionSchemas(
    module=current,
    cvm_page="PaginatedCvmInfos",
    page_model=current.PaginatedCvmInfos,
    cvm_item="teehouse__api__routes__cvms__v20260121__schemas__CVMInfo",
    apps="teehouse__api__routes__apps__v20260121__schemas__",
    team_fields=False,
)


def _at_range_ends(model: current.CVMInfo) -> bool:
    """Whether a value cannot be converted: memory beyond a float in MB, a date-time near year
    1 or 9999 whose UTC equivalent is outside the datetime range."""
    memory = model.resource.memory_in_gb
    dates = [d for d in (model.created_at, model.deleted_at) if d is not None]
    return (memory is not None and not math.isfinite(memory * 1024)) or any(
        d.year in (1, 9999) for d in dates
    )


@requires_spec
@SCHEMA_SETTINGS
@given(item=instances_of(SCHEMAS.cvm_item))
def test_every_valid_cvm_normalizes(item: dict[str, Any]) -> None:
    model = current.CVM_ITEM.validate_python(item)
    try:
        bundle = current.normalize_cvm(model, b"raw")
    except OverflowError:
        assert _at_range_ends(model)  # parse_page sets these items aside
        return
    expected = normalize_vm_uuid(item["vm_uuid"]) if item.get("vm_uuid") is not None else item["id"]
    assert bundle.cvm.vm_uuid == expected == current.cvm_entity_id(item)
    assert bundle.cvm.cvm_id == item["id"]
    # This version carries every canonical field: nothing is left UNKNOWN but ``hourly_rate``
    # (not in the schema) when the item does not send it.
    rates = {"hourly_rate_total", "hourly_rate_compute", "hourly_rate_disk"}
    unknown = set() if "hourly_rate" in item else rates
    assert bundle.cvm.known_fields().keys() == set(bundle.cvm.field_names()) - unknown
    if bundle.node is not None:
        assert bundle.node.known_fields().keys() == set(bundle.node.field_names())
    created_at = bundle.cvm.created_at
    assert created_at is None or (
        isinstance(created_at, datetime) and created_at.utcoffset() == timedelta(0)
    )


# --- Hand-written edge cases ---------------------------------------------------------------------


def cvm_info(**overrides: Any) -> dict[str, Any]:
    """A CVMInfo with only its required keys."""
    return {
        "id": "cvm_9x2kq1mz",
        "name": "web",
        "resource": {},
        "status": "running",
        "gateway": {},
    } | overrides


def test_absent_optional_keys_take_the_schema_defaults() -> None:
    cvm = current.CVM_ITEM.validate_python(cvm_info())
    assert (cvm.app_id, cvm.vm_uuid, cvm.instance_id) == (None, None, None)
    assert (cvm.node_info, cvm.os, cvm.kms_type, cvm.kms_info, cvm.progress) == (None,) * 5
    assert (cvm.workspace, cvm.creator, cvm.created_at, cvm.deleted_at) == (None,) * 4
    assert (cvm.in_progress, cvm.listed, cvm.public_logs, cvm.public_sysinfo) == (False,) * 4
    assert (cvm.gateway_enabled, cvm.secure_time, cvm.public_tcbinfo) == (False, False, True)
    assert cvm.storage_fs == "zfs"
    assert cvm.services == []
    assert cvm.endpoints is None
    assert cvm.logs == current.CVMLogUrls()  # absent, not nullable: an object of nulls
    assert (cvm.resource.vcpu, cvm.resource.memory_in_gb, cvm.resource.billing_period) == (
        None,
        None,
        None,
    )
    assert (cvm.gateway.base_domain, cvm.gateway.cname) == (None, None)


def test_embedded_references_take_their_constant_defaults() -> None:
    cvm = current.CVM_ITEM.validate_python(
        cvm_info(node_info={}, workspace={"id": "wks_1", "name": "Acme"}, creator={})
    )
    assert cvm.node_info == current.NodeRef(object_type="node")
    assert cvm.workspace is not None
    assert (cvm.workspace.object_type, cvm.workspace.slug, cvm.workspace.avatar_url) == (
        "workspace",
        None,
        None,
    )
    assert cvm.creator is not None
    assert (cvm.creator.object_type, cvm.creator.id, cvm.creator.username) == ("user", None, None)


def test_explicit_nulls_are_accepted_where_the_schema_allows_them() -> None:
    nulls = dict.fromkeys(["app_id", "vm_uuid", "node_info", "os", "kms_type", "created_at"])
    cvm = current.CVM_ITEM.validate_python(cvm_info(**nulls, endpoints=None))
    assert (cvm.vm_uuid, cvm.node_info, cvm.endpoints) == (None, None, None)


@pytest.mark.parametrize(
    "key",
    ["resource", "gateway", "logs", "services", "storage_fs", "public_logs", "listed", "status"],
)
def test_explicit_nulls_are_rejected_where_the_schema_does_not_allow_them(key: str) -> None:
    assert locs(rejection(current.CVM_ITEM, cvm_info(**{key: None}))) == [(key,)]


@pytest.mark.parametrize("key", ["id", "name", "resource", "status", "gateway"])
def test_required_keys_must_be_present(key: str) -> None:
    item = cvm_info()
    del item[key]
    errors = rejection(current.CVM_ITEM, item)
    assert locs(errors) == [(key,)]
    assert errors[0]["type"] == "missing"


@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        ({"resource": {"vcpu": "2"}}, ("resource", "vcpu")),  # lax mode would coerce "2" to 2
        ({"resource": {"vcpu": 2.0}}, ("resource", "vcpu")),
        ({"resource": {"memory_in_gb": "2"}}, ("resource", "memory_in_gb")),
        ({"resource": {"memory_in_gb": True}}, ("resource", "memory_in_gb")),
        ({"resource": {"compute_billing_price": 0.05}}, ("resource", "compute_billing_price")),
        ({"name": 3}, ("name",)),
        ({"vm_uuid": 3}, ("vm_uuid",)),
        ({"listed": 0}, ("listed",)),
        ({"id": "9x2kq1mz"}, ("id",)),  # pattern ^cvm_.+
        ({"workspace": {"id": "team_1", "name": "A"}}, ("workspace", "id")),
        ({"workspace": {"id": "wks_1"}}, ("workspace", "name")),
        ({"creator": {"id": "42"}}, ("creator", "id")),
        ({"node_info": {"object_type": "teepod"}}, ("node_info", "object_type")),
        ({"node_info": {"id": "12"}}, ("node_info", "id")),
        ({"os": {"is_dev": "false"}}, ("os", "is_dev")),
        ({"services": [["x"]]}, ("services", 0)),
        ({"endpoints": [{"app": "https://a"}]}, ("endpoints", 0, "instance")),
        ({"created_at": "2026-01-30"}, ("created_at",)),
        ({"created_at": 1769774400}, ("created_at",)),
    ],
)
def test_wrong_types_are_rejected(overrides: dict[str, Any], loc: tuple[Any, ...]) -> None:
    assert locs(rejection(current.CVM_ITEM, cvm_info(**overrides))) == [loc]


def test_a_number_accepts_integers() -> None:
    cvm = current.CVM_ITEM.validate_python(cvm_info(resource={"memory_in_gb": 2}))
    assert cvm.resource.memory_in_gb == 2.0


def test_unknown_fields_are_kept_at_every_level() -> None:
    item = cvm_info(
        resource={"vcpu": 2, "hourly_rate": "0.058"},
        node_info={"id": 12, "device_ids": ["a", "b"]},
        kms_info={"chain_id": 8453, "k256_pubkey": "02ab"},
        os={"name": "dstack", "kernel": "6.9"},
        gateway={"base_domain": "x.example", "port": 443},
        workspace={"id": "wks_1", "name": "Acme", "tier": "pro"},
        creator={"id": "usr_1", "email_verified": True},
        services=[{"name": "app", "anything": {"nested": [1, 2]}}],
        updated_at="2026-03-01T10:00:00Z",
        features=["kms"],
    )
    cvm = current.CVM_ITEM.validate_python(item)
    assert cvm.model_extra == {"updated_at": "2026-03-01T10:00:00Z", "features": ["kms"]}
    assert cvm.resource.model_extra == {"hourly_rate": "0.058"}
    assert cvm.node_info is not None
    assert cvm.node_info.model_extra == {"device_ids": ["a", "b"]}
    assert cvm.services == [{"name": "app", "anything": {"nested": [1, 2]}}]
    assert_extras_kept(cvm, item)


def test_new_enum_values_are_accepted() -> None:
    cvm = current.CVM_ITEM.validate_python(
        cvm_info(
            status="hibernating",
            kms_type="tee-native",
            resource={"billing_period": "yearly"},
            node_info={"id": 12, "status": "DRAINING"},
            storage_fs="btrfs",
        )
    )
    assert (cvm.status, cvm.kms_type, cvm.resource.billing_period) == (
        "hibernating",
        "tee-native",
        "yearly",
    )
    assert cvm.node_info is not None
    assert cvm.node_info.status == "DRAINING"


def test_date_times_keep_their_offset_until_normalized() -> None:
    cvm = current.CVM_ITEM.validate_python(cvm_info(created_at="2025-12-24T23:59:59.250+02:00"))
    assert cvm.created_at == datetime(
        2025, 12, 24, 23, 59, 59, 250000, tzinfo=timezone(timedelta(hours=2))
    )


def test_a_full_app_carries_full_cvms() -> None:
    app = current.APP_ITEM.validate_python(
        {
            "id": "prj_1",
            "name": "web",
            "app_id": "ab12",
            "created_at": "2025-11-02T09:10:00Z",
            "kms_type": "phala",
            "current_cvm": cvm_info(vm_uuid="AB-12"),
            "cvms": [cvm_info(vm_uuid="AB-12")],
        }
    )
    assert isinstance(app, current.DstackAppFullResponse)
    assert app.current_cvm is not None
    assert app.current_cvm.vm_uuid == "AB-12"
    assert app.cvm_count == 0
    assert "team_slug" not in current.DstackAppFullResponse.model_fields


@pytest.mark.parametrize(
    ("item", "loc"),
    [
        ({"app_id": "ab12", "cvm_count": 0}, ("DstackAppMinimalResponse", "cvm_count")),
        (
            {"id": "prj_1", "name": "w", "app_id": "a", "created_at": "c", "kms_type": "k"}
            | {"cvms": [cvm_info(resource=None)]},
            ("DstackAppFullResponse", "cvms", 0, "resource"),
        ),
        ([], ()),
    ],
)
def test_invalid_apps_are_rejected_with_the_variant_in_the_path(
    item: Any, loc: tuple[Any, ...]
) -> None:
    assert locs(rejection(current.APP_ITEM, item)) == [loc]


def test_a_minimal_app_is_shared_with_the_legacy_version() -> None:
    app = current.APP_ITEM.validate_python({"app_id": "ab12"})
    assert isinstance(app, current.DstackAppMinimalResponse)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, (UNKNOWN, UNKNOWN, UNKNOWN)),  # not sent: the last known rate stays
        ({"hourly_rate": None}, (None, None, None)),
        (
            {"hourly_rate": {"total": "0.058", "compute": "0.050", "disk": "0.008000"}},
            ("0.058", "0.050", "0.008000"),
        ),
        ({"hourly_rate": {"total": "0.058", "compute": "0.058"}}, ("0.058", "0.058", None)),
        # Not a decimal string (the field is not in the schema: kept unknown, never quarantined).
        ({"hourly_rate": {"total": 0.058, "compute": None, "disk": []}}, (None, None, None)),
        ({"hourly_rate": "0.058"}, ("0.058", None, None)),  # a bare string: the total
    ],
)
def test_hourly_rate_maps_to_decimal_text(extra: dict[str, Any], expected: tuple[Any, ...]) -> None:
    raw = orjson.dumps(cvm_info(**extra))
    cvm = current.normalize_cvm(current.CVM_ITEM.validate_json(raw), raw).cvm
    assert (cvm.hourly_rate_total, cvm.hourly_rate_compute, cvm.hourly_rate_disk) == expected
