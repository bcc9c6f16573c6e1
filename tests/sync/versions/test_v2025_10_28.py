"""The 2025-10-28 (legacy) models: their components, their CVM mapping against the OpenAPI schema,
and their edge cases. The checks every version shares run over ``SCHEMAS`` in test_common."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from pydantic import TypeAdapter, ValidationError

from sync.records import UNKNOWN, normalize_vm_uuid
from sync.versions import v2025_10_28 as legacy
from tests.sync.openapi_cases import (
    SCHEMA_SETTINGS,
    assert_extras_kept,
    instances_of,
    requires_spec,
)
from tests.sync.versions.schemas import VersionSchemas, locs, rejection

#: This version's models and the components they mirror (test_common checks them against these).
SCHEMAS = VersionSchemas(
    module=legacy,
    cvm_page="PaginatedHostedCvms",
    page_model=legacy.PaginatedHostedCvms,
    cvm_item="HostedCvm",
    apps="teehouse__api__routes__apps__v20251028__schemas__",
    team_fields=True,
)


@requires_spec
@SCHEMA_SETTINGS
@given(item=instances_of(SCHEMAS.cvm_item))
def test_every_valid_cvm_normalizes(item: dict[str, Any]) -> None:
    bundle = legacy.normalize_cvm(legacy.CVM_ITEM.validate_python(item), b"raw")
    assert bundle.cvm.vm_uuid == normalize_vm_uuid(item["hosted"]["id"])
    assert bundle.cvm.vm_uuid == legacy.cvm_entity_id(item)
    assert bundle.cvm.cvm_id is UNKNOWN
    assert (bundle.workspace, bundle.creator) == (None, None)
    assert bundle.raw == b"raw"


# --- Hand-written edge cases ---------------------------------------------------------------------


def hosted_cvm(**overrides: Any) -> dict[str, Any]:
    """A HostedCvm with only its required keys (and those of VmInfo)."""
    return {
        "hosted": {
            "id": "3F2A9C1E-7B4D-4E8A-9C21-5D6F7A8B9C01",
            "name": "web",
            "status": "running",
            "uptime": "1h",
            "app_id": "e4c1d0b5a7f3926c8b1e0d4a5f6c7b8a9d0e1f2a",
        },
        "name": "web",
        "status": "running",
        "public_urls": [],
    } | overrides


def cvm_basic_info(**overrides: Any) -> dict[str, Any]:
    """A CvmBasicInfo with its required keys, three of them required but null."""
    return {
        "vm_uuid": "3f2a9c1e-7b4d-4e8a-9c21-5d6f7a8b9c01",
        "app_id": "e4c1d0b5a7f3926c8b1e0d4a5f6c7b8a9d0e1f2a",
        "status": "running",
        "vcpu": 2,
        "memory": 2048,
        "disk_size": 40,
        "teepod_id": 12,
        "teepod_name": "prod5",
        "region_identifier": None,
        "kms_type": None,
        "instance_type": None,
    } | overrides


def full_app(**overrides: Any) -> dict[str, Any]:
    return {
        "id": "prj_w3bf0nt",
        "name": "web",
        "app_id": "e4c1d0b5a7f3926c8b1e0d4a5f6c7b8a9d0e1f2a",
        "created_at": "2025-11-02T09:10:00Z",
        "kms_type": "phala",
    } | overrides


def test_absent_optional_keys_take_the_schema_defaults() -> None:
    cvm = legacy.CVM_ITEM.validate_python(hosted_cvm())
    assert (cvm.listed, cvm.in_progress, cvm.allow_upgrade) == (False, False, False)
    assert (cvm.node, cvm.managed_user, cvm.kms_info, cvm.project_id) == (None, None, None, None)
    assert (cvm.vcpu, cvm.memory, cvm.disk_size, cvm.gateway_domain) == (None, None, None, None)
    assert cvm.hosted.events == []
    assert cvm.hosted.configuration is None
    assert cvm.model_extra == {}


def test_nested_defaults_follow_the_schema() -> None:
    configuration = {"name": "web", "image": "dstack-0.5.3", "vcpu": 2, "memory": 2048}
    configuration |= {"disk_size": 40, "compose_file": {"name": "web"}}
    cvm = legacy.CVM_ITEM.validate_python(
        hosted_cvm(hosted=hosted_cvm()["hosted"] | {"configuration": configuration})
    )
    config = cvm.hosted.configuration
    assert config is not None
    assert config.gpus == legacy.GpuConfig(gpus=[], attach_mode="listed")
    assert (config.kms_urls, config.gateway_urls, config.hugepages) == ([], [], False)
    compose = config.compose_file
    assert compose is not None
    assert compose.features == ["kms", "tproxy-net"]
    assert (compose.storage_fs, compose.manifest_version, compose.runner) == (
        "zfs",
        2,
        "docker-compose",
    )
    assert (compose.public_tcbinfo, compose.secure_time, compose.allowed_envs) == (True, False, [])


def test_explicit_nulls_are_accepted_where_the_schema_allows_them() -> None:
    item = hosted_cvm(node=None, managed_user=None, kms_info=None, vcpu=None, billing_period=None)
    cvm = legacy.CVM_ITEM.validate_python(item)
    assert (cvm.node, cvm.vcpu, cvm.billing_period) == (None, None, None)


@pytest.mark.parametrize("key", ["listed", "in_progress", "public_urls", "name", "status"])
def test_explicit_nulls_are_rejected_where_the_schema_does_not_allow_them(key: str) -> None:
    assert locs(rejection(legacy.CVM_ITEM, hosted_cvm(**{key: None}))) == [(key,)]


def test_a_required_but_nullable_field_must_be_present() -> None:
    adapter = TypeAdapter(legacy.CvmBasicInfo)
    assert adapter.validate_python(cvm_basic_info(vm_uuid=None)).vm_uuid is None
    for key in ("vm_uuid", "region_identifier", "kms_type", "instance_type"):
        item = cvm_basic_info()
        del item[key]
        errors = rejection(adapter, item)
        assert errors[0]["type"] == "missing"
        assert locs(errors) == [(key,)]


@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        ({"vcpu": "3"}, ("vcpu",)),  # lax mode would coerce "3" to 3
        ({"memory": 2048.0}, ("memory",)),
        ({"memory": True}, ("memory",)),
        ({"name": 3}, ("name",)),
        ({"listed": 1}, ("listed",)),
        ({"listed": "true"}, ("listed",)),
        ({"node": {"id": "12", "name": "prod5"}}, ("node", "id")),
        ({"node": {"id": 12}}, ("node", "name")),
        ({"public_urls": [{"app": "https://a"}]}, ("public_urls", 0, "instance")),
        ({"project_id": "w3bf0nt"}, ("project_id",)),  # pattern ^prj_.+
        ({"public_urls": {"app": "a", "instance": "i"}}, ("public_urls",)),
    ],
)
def test_wrong_types_are_rejected(overrides: dict[str, Any], loc: tuple[Any, ...]) -> None:
    assert locs(rejection(legacy.CVM_ITEM, hosted_cvm(**overrides))) == [loc]


def test_unknown_fields_are_kept_at_every_level() -> None:
    hosted = hosted_cvm()["hosted"] | {"boot_stage": "userspace"}
    item = hosted_cvm(
        hosted=hosted,
        node={"id": 12, "name": "prod5", "zone": "b"},
        kms_info={"id": "kms_1", "url": "https://kms", "version": "v1", "k256_pubkey": "02ab"},
        machine_info={"vcpu": 2},
        updated_at="2026-03-01T10:00:00Z",
    )
    cvm = legacy.CVM_ITEM.validate_python(item)
    assert cvm.model_extra == {"machine_info": {"vcpu": 2}, "updated_at": "2026-03-01T10:00:00Z"}
    assert cvm.hosted.model_extra == {"boot_stage": "userspace"}
    assert cvm.node is not None
    assert cvm.node.model_extra == {"zone": "b"}
    assert cvm.kms_info is not None
    assert cvm.kms_info.model_extra == {"k256_pubkey": "02ab"}
    assert_extras_kept(cvm, item)


def test_new_enum_values_are_accepted() -> None:
    cvm = legacy.CVM_ITEM.validate_python(hosted_cvm(status="hibernating", billing_period="yearly"))
    assert (cvm.status, cvm.billing_period) == ("hibernating", "yearly")
    basic = TypeAdapter(legacy.CvmBasicInfo).validate_python(cvm_basic_info(kms_type="tee-native"))
    assert basic.kms_type == "tee-native"
    compose = legacy.AppComposeV2.model_validate({"name": "x", "storage_fs": "btrfs"})
    assert compose.storage_fs == "btrfs"


def test_a_minimal_app_has_only_its_app_id() -> None:
    app = legacy.APP_ITEM.validate_python({"app_id": "ab12", "id": None, "cvms": None})
    assert isinstance(app, legacy.DstackAppMinimalResponse)
    assert (app.app_id, app.id, app.name, app.cvms, app.cvm_count) == (
        "ab12",
        None,
        None,
        None,
        None,
    )


def test_a_full_app_takes_defaults_and_team_fields() -> None:
    app = legacy.APP_ITEM.validate_python(full_app(team_slug="acme", team_name="Acme"))
    assert isinstance(app, legacy.DstackAppFullResponse)
    assert (app.cvms, app.cvm_count, app.profile, app.current_cvm) == ([], 0, None, None)
    assert (app.team_slug, app.team_name) == ("acme", "Acme")


@pytest.mark.parametrize(
    ("item", "loc"),
    [
        (full_app(name=None), ("DstackAppFullResponse", "name")),
        ({"app_id": "ab12", "name": "web"}, ("DstackAppMinimalResponse", "name")),
        ({"id": None}, ("DstackAppMinimalResponse", "app_id")),
        (full_app(cvms=[cvm_basic_info(vcpu="2")]), ("DstackAppFullResponse", "cvms", 0, "vcpu")),
        (full_app(kms_type=None), ("DstackAppFullResponse", "kms_type")),
        ("ab12", ()),
        (None, ()),
    ],
)
def test_invalid_apps_are_rejected_with_the_variant_in_the_path(
    item: Any, loc: tuple[Any, ...]
) -> None:
    assert locs(rejection(legacy.APP_ITEM, item)) == [loc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-01T10:00:00Z", datetime(2026, 3, 1, 10, tzinfo=UTC)),
        ("2026-03-01t10:00:00z", datetime(2026, 3, 1, 10, tzinfo=UTC)),
        ("2026-03-01T10:00:00.5+02:00", datetime(2026, 3, 1, 8, 0, 0, 500000, tzinfo=UTC)),
        ("2026-03-01 10:00:00", datetime(2026, 3, 1, 10, tzinfo=UTC)),  # no offset: UTC
        ("0001-01-01T00:00:00+23:59", datetime(1, 1, 1, tzinfo=timezone(timedelta(minutes=1439)))),
    ],
)
def test_date_times_parse_to_aware_datetimes(text: str, expected: datetime) -> None:
    basic = TypeAdapter(legacy.CvmBasicInfo).validate_python(cvm_basic_info(updated_at=text))
    assert basic.updated_at == expected
    assert basic.updated_at is not None
    assert basic.updated_at.tzinfo is not None


@pytest.mark.parametrize(
    "value", ["2026-03-01", "1700000000", 1700000000, "2026-13-01T00:00:00Z", "yesterday", 1.5]
)
def test_date_times_that_are_not_rfc3339_are_rejected(value: object) -> None:
    errors = rejection(TypeAdapter(legacy.CvmBasicInfo), cvm_basic_info(updated_at=value))
    assert locs(errors) == [("updated_at",)]


def test_numbers_fields_do_not_exist_here_but_integers_stay_integers() -> None:
    # Legacy carries memory in MB as an integer: a float, even integral, is schema drift here.
    with pytest.raises(ValidationError):
        legacy.CVM_ITEM.validate_python(hosted_cvm(memory=math.pi))
