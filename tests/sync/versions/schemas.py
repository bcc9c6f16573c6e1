"""What the tests of the version modules share: a version's components, and a rejection's errors.

Each version's test module names its own components (:class:`VersionSchemas`); ``test_common``
runs the schema-driven checks every version shares over all of them. Not a test module.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from tests.sync.openapi_cases import (
    app_item_instances,
    app_item_schema,
    component_schema,
    instances_of,
)


@dataclass(frozen=True)
class Component:
    """An envelope or an item the sync reads, and the adapter of the model that mirrors it.

    ``name`` is the component in the OpenAPI document; for an app item (``app_item``), the full
    app's: the item is ``anyOf [<name>, DstackAppMinimalResponse]``.
    """

    label: str
    name: str
    adapter: TypeAdapter[Any]
    app_item: bool = False

    def schema(self) -> dict[str, Any]:
        return app_item_schema(self.name) if self.app_item else component_schema(self.name)

    def instances(self) -> st.SearchStrategy[Any]:
        return app_item_instances(self.name) if self.app_item else instances_of(self.name)


@dataclass(frozen=True)
class VersionSchemas:
    """One version's module of models and the OpenAPI components they mirror.

    ``cvm_page`` names the component of a CVM page and ``page_model`` is its model; ``apps`` is
    the prefix of the version's app components; ``team_fields``: whether its apps carry
    ``team_slug``/``team_name``.
    """

    module: ModuleType
    cvm_page: str
    page_model: type[BaseModel]
    cvm_item: str
    apps: str
    team_fields: bool

    @property
    def name(self) -> str:
        """The version that introduced the module's shape."""
        return str(self.module.SHAPE)

    @property
    def full_app(self) -> str:
        return f"{self.apps}DstackAppFullResponse"

    def components(self) -> list[Component]:
        """The envelopes and items the sync reads; every other component is nested in them."""
        module = self.module
        return [
            Component(self.cvm_page, self.cvm_page, TypeAdapter(self.page_model)),
            Component(self.cvm_item.rsplit("__", 1)[-1], self.cvm_item, module.CVM_ITEM),
            Component(
                "DstackAppListResponse",
                f"{self.apps}DstackAppListResponse",
                TypeAdapter(module.DstackAppListResponse),
            ),
            Component("app item", self.full_app, module.APP_ITEM, app_item=True),
        ]


def rejection(adapter: TypeAdapter[Any], item: Any) -> list[ErrorDetails]:
    """The errors of validating ``item``, which must fail."""
    with pytest.raises(ValidationError) as exc:
        adapter.validate_python(item)
    return exc.value.errors()


def locs(errors: list[ErrorDetails]) -> list[tuple[int | str, ...]]:
    """Where each error is."""
    return [e["loc"] for e in errors]
