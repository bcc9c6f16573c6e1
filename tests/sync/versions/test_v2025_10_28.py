"""The 2025-10-28 (legacy) models against the OpenAPI schemas, and their edge cases."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError

from sync.records import UNKNOWN, normalize_vm_uuid
from sync.versions import v2025_10_28 as legacy
from tests.sync.openapi_cases import (
    SCHEMA_SETTINGS,
    app_item_instances,
    app_item_schema,
    assert_extras_kept,
    component_schema,
    forbidden_variants,
    instances_of,
    requires_spec,
    validator,
)

APPS = "teehouse__api__routes__apps__v20251028__schemas__"

# (component, adapter): the envelopes and items the sync reads, every other component nested.
SCHEMA_CASES: list[tuple[str, TypeAdapter[Any]]] = [
    ("PaginatedHostedCvms", TypeAdapter(legacy.PaginatedHostedCvms)),
    ("HostedCvm", legacy.CVM_ITEM),
    (f"{APPS}DstackAppListResponse", TypeAdapter(legacy.DstackAppListResponse)),
]


def _instances(component: str) -> st.SearchStrategy[Any]:
    if component == "app item":
        return app_item_instances(f"{APPS}DstackAppFullResponse")
    return instances_of(component)


def _schema(component: str) -> dict[str, Any]:
    if component == "app item":
        return app_item_schema(f"{APPS}DstackAppFullResponse")
    return component_schema(component)


ALL_CASES = [*SCHEMA_CASES, ("app item", legacy.APP_ITEM)]


@requires_spec
@pytest.mark.parametrize(("component", "adapter"), ALL_CASES, ids=[c for c, _ in ALL_CASES])
@SCHEMA_SETTINGS
@given(data=st.data())
def test_models_accept_what_the_schema_allows(
    component: str, adapter: TypeAdapter[Any], data: st.DataObject
) -> None:
    instance = data.draw(_instances(component))
    assert validator(_schema(component)).is_valid(instance)  # the generator's own check
    model = adapter.validate_python(instance)
    assert isinstance(model, BaseModel)
    assert_extras_kept(model, instance)


@requires_spec
@pytest.mark.parametrize(("component", "adapter"), ALL_CASES, ids=[c for c, _ in ALL_CASES])
@SCHEMA_SETTINGS
@given(data=st.data())
def test_models_reject_what_the_schema_forbids(
    component: str, adapter: TypeAdapter[Any], data: st.DataObject
) -> None:
    instance = data.draw(_instances(component))
    checked = 0
    for variant, how in forbidden_variants(_schema(component), instance):
        checked += 1
        try:
            adapter.validate_python(variant)
        except ValidationError:
            continue
        pytest.fail(f"accepted an instance the schema forbids: {how}")
    assert checked > 0


@requires_spec
@SCHEMA_SETTINGS
@given(page=instances_of("PaginatedHostedCvms"))
def test_page_envelope_accepts_every_valid_page(page: dict[str, Any]) -> None:
    envelope = legacy.CVM_ENVELOPE.validate_python(page)
    assert (envelope.items, envelope.total, envelope.pages) == (
        page["items"],
        page["total"],
        page["pages"],
    )


@requires_spec
@SCHEMA_SETTINGS
@given(item=instances_of("HostedCvm"))
def test_every_valid_cvm_normalizes(item: dict[str, Any]) -> None:
    bundle = legacy.normalize_cvm(legacy.CVM_ITEM.validate_python(item), b"raw")
    assert bundle.cvm.vm_uuid == normalize_vm_uuid(item["hosted"]["id"])
    assert bundle.cvm.vm_uuid == legacy.cvm_entity_id(item)
    assert bundle.cvm.cvm_id is UNKNOWN
    assert (bundle.workspace, bundle.creator) == (None, None)
    assert bundle.raw == b"raw"


@requires_spec
@SCHEMA_SETTINGS
@given(item=app_item_instances(f"{APPS}DstackAppFullResponse"))
def test_every_valid_app_normalizes(item: dict[str, Any]) -> None:
    bundle = legacy.normalize_app(legacy.APP_ITEM.validate_python(item), b"raw")
    assert bundle.app.app_id == item["app_id"] == legacy.app_entity_id(item)
    if item.get("id") is None:
        assert bundle.member_vm_uuids is UNKNOWN
    else:
        expected = {
            normalize_vm_uuid(c["vm_uuid"])
            for c in item.get("cvms", [])
            if c["vm_uuid"] is not None
        }
        assert bundle.member_vm_uuids == tuple(sorted(expected))


# --- Hand-written edge cases ---------------------------------------------------------------------


def hosted_cvm(**overrides: Any) -> dict[str, Any]:
    """A HostedCvm with only its required keys (and those of VmInfo)."""
    item: dict[str, Any] = {
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
    }
    item.update(overrides)
    return item


def cvm_basic_info(**overrides: Any) -> dict[str, Any]:
    """A CvmBasicInfo with its required keys, three of them required but null."""
    item: dict[str, Any] = {
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
    }
    item.update(overrides)
    return item


def full_app(**overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": "prj_w3bf0nt",
        "name": "web",
        "app_id": "e4c1d0b5a7f3926c8b1e0d4a5f6c7b8a9d0e1f2a",
        "created_at": "2025-11-02T09:10:00Z",
        "kms_type": "phala",
    }
    item.update(overrides)
    return item


def _error_locs(exc: pytest.ExceptionInfo[ValidationError]) -> list[tuple[int | str, ...]]:
    return [e["loc"] for e in exc.value.errors()]


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
    with pytest.raises(ValidationError) as exc:
        legacy.CVM_ITEM.validate_python(hosted_cvm(**{key: None}))
    assert _error_locs(exc) == [(key,)]


def test_a_required_but_nullable_field_must_be_present() -> None:
    adapter = TypeAdapter(legacy.CvmBasicInfo)
    assert adapter.validate_python(cvm_basic_info(vm_uuid=None)).vm_uuid is None
    for key in ("vm_uuid", "region_identifier", "kms_type", "instance_type"):
        item = cvm_basic_info()
        del item[key]
        with pytest.raises(ValidationError) as exc:
            adapter.validate_python(item)
        assert exc.value.errors()[0]["type"] == "missing"
        assert _error_locs(exc) == [(key,)]


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
    with pytest.raises(ValidationError) as exc:
        legacy.CVM_ITEM.validate_python(hosted_cvm(**overrides))
    assert _error_locs(exc) == [loc]


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
    with pytest.raises(ValidationError) as exc:
        legacy.APP_ITEM.validate_python(item)
    assert _error_locs(exc) == [loc]


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
    with pytest.raises(ValidationError) as exc:
        TypeAdapter(legacy.CvmBasicInfo).validate_python(cvm_basic_info(updated_at=value))
    assert _error_locs(exc) == [("updated_at",)]


def test_numbers_fields_do_not_exist_here_but_integers_stay_integers() -> None:
    # Legacy carries memory in MB as an integer: a float, even integral, is schema drift here.
    with pytest.raises(ValidationError):
        legacy.CVM_ITEM.validate_python(hosted_cvm(memory=math.pi))
