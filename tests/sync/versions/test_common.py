"""What every version shares (sync.versions.common): the model rules and the app mapping, checked
against each version's OpenAPI schemas.

Each version's components are named in its own test module (``SCHEMAS``); its own edge cases are
there too.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from sync.records import UNKNOWN, normalize_vm_uuid
from tests.sync.openapi_cases import (
    SCHEMA_SETTINGS,
    app_item_instances,
    assert_extras_kept,
    forbidden_variants,
    instances_of,
    requires_spec,
    validator,
)
from tests.sync.versions import test_v2025_10_28, test_v2026_01_21
from tests.sync.versions.schemas import Component, VersionSchemas

SCHEMAS = (test_v2025_10_28.SCHEMAS, test_v2026_01_21.SCHEMAS)
VERSIONS = [pytest.param(schemas, id=schemas.name) for schemas in SCHEMAS]
COMPONENTS = [
    pytest.param(component, id=f"{schemas.name}-{component.label}")
    for schemas in SCHEMAS
    for component in schemas.components()
]


@requires_spec
@pytest.mark.parametrize("component", COMPONENTS)
@SCHEMA_SETTINGS
@given(data=st.data())
def test_models_accept_what_the_schema_allows(component: Component, data: st.DataObject) -> None:
    instance = data.draw(component.instances())
    assert validator(component.schema()).is_valid(instance)  # the generator's own check
    model = component.adapter.validate_python(instance)
    assert isinstance(model, BaseModel)
    assert_extras_kept(model, instance)


@requires_spec
@pytest.mark.parametrize("component", COMPONENTS)
@SCHEMA_SETTINGS
@given(data=st.data())
def test_models_reject_what_the_schema_forbids(component: Component, data: st.DataObject) -> None:
    checked = 0
    for variant, how in forbidden_variants(component.schema(), data.draw(component.instances())):
        checked += 1
        try:
            component.adapter.validate_python(variant)
        except ValidationError:
            continue
        pytest.fail(f"accepted an instance the schema forbids: {how}")
    assert checked > 0


@requires_spec
@pytest.mark.parametrize("version", VERSIONS)
@SCHEMA_SETTINGS
@given(data=st.data())
def test_page_envelope_accepts_every_valid_page(
    version: VersionSchemas, data: st.DataObject
) -> None:
    page = data.draw(instances_of(version.cvm_page))
    envelope = version.module.CVM_ENVELOPE.validate_python(page)
    assert (envelope.items, envelope.total, envelope.pages) == (
        page["items"],
        page["total"],
        page["pages"],
    )


@requires_spec
@pytest.mark.parametrize("version", VERSIONS)
@SCHEMA_SETTINGS
@given(data=st.data())
def test_every_valid_app_normalizes(version: VersionSchemas, data: st.DataObject) -> None:
    module = version.module
    item: dict[str, Any] = data.draw(app_item_instances(version.full_app))
    bundle = module.normalize_app(module.APP_ITEM.validate_python(item), b"raw")
    assert bundle.app.app_id == item["app_id"] == module.app_entity_id(item)
    if not version.team_fields:
        assert (bundle.app.team_slug, bundle.app.team_name) == (UNKNOWN, UNKNOWN)
    if item.get("id") is None:
        assert bundle.member_vm_uuids is UNKNOWN
    else:
        cvms = item.get("cvms", [])
        expected = {normalize_vm_uuid(c["vm_uuid"]) for c in cvms if c.get("vm_uuid") is not None}
        assert bundle.member_vm_uuids == tuple(sorted(expected))
