"""Cases built from the server's OpenAPI document: valid instances and instances it forbids.

The document (``shared/reference/phala-cloud-openapi.list-endpoints.json``, beside the repository)
is the spec. :func:`component_schema` turns one component into a self-contained JSON schema (every
``$ref`` inlined: the list schemas are not recursive) for :mod:`jsonschema`; :func:`instances_of`
generates instances of a component with hypothesis-jsonschema; :func:`forbidden_variants` takes
such an instance and breaks it in each place in turn (drops a required key, or gives a property a
value of a type its schema does not allow), keeping the variants that :mod:`jsonschema` rejects.

hypothesis-jsonschema 0.23.1 (the latest release) drives its object strategy with
``many.more()``, which recent Hypothesis releases replaced by ``with many(...) as e: for _ in e``.
:func:`_install_many_compat` gives hypothesis-jsonschema (and only it) an adapter with the old
interface when the installed Hypothesis lacks it; with an older Hypothesis it does nothing.
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import hypothesis_jsonschema._from_schema as _hjs_from_schema
import jsonschema
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture import utils as _conjecture_utils
from hypothesis_jsonschema import from_schema
from pydantic import BaseModel

SPEC_PATH = (
    Path(__file__).parents[3] / "shared" / "reference" / "phala-cloud-openapi.list-endpoints.json"
)

requires_spec = pytest.mark.skipif(
    not SPEC_PATH.exists(),
    reason=f"the OpenAPI reference is missing ({SPEC_PATH}): schema-driven cases cannot be built",
)

#: Modest settings: the item schemas are large and the suite must stay fast. 50 examples, or
#: fewer under a profile that draws fewer (tests/conftest.py: make test-fast's "edit").
SCHEMA_SETTINGS = settings(
    max_examples=min(50, settings().max_examples),
    derandomize=True,  # the same cases every run: CI is reproducible
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Values of every JSON type, tried as replacements for a property's value; the first ones are
#: those a lax validator would coerce ("3" or True to an integer, 1 or "true" to a boolean).
_REPLACEMENTS: tuple[Any, ...] = (
    "3",
    True,
    1,
    "true",
    "3.5",
    3.5,
    None,
    "",
    [],
    {},
    ["x"],
    {"k": "v"},
)

#: Stands for a referenced component in a skeleton schema until an instance is drawn for it.
_PLACEHOLDER = "\x00$ref:"


class _OldStyleMany:
    """``many`` with the ``more()``/``reject()`` interface hypothesis-jsonschema calls."""

    def __init__(self, data: Any, **kwargs: Any) -> None:
        self._many = _conjecture_utils.many(data, **kwargs)
        self._many.__enter__()
        self._elements = iter(self._many)

    def more(self) -> bool:
        try:
            next(self._elements)
        except StopIteration:
            self._many.__exit__(None, None, None)
            return False
        return True

    def reject(self, why: str | None = None) -> None:
        self._many.reject(why)


def _install_many_compat() -> None:
    if hasattr(_conjecture_utils.many, "more"):
        return
    _hjs_from_schema.cu = types.SimpleNamespace(many=_OldStyleMany)  # type: ignore[attr-defined,assignment]


_install_many_compat()


@cache
def _components() -> dict[str, Any]:
    with SPEC_PATH.open(encoding="utf-8") as file:
        spec = json.load(file)
    components: dict[str, Any] = spec["components"]["schemas"]
    return components


def _inline(node: Any, components: dict[str, Any], *, defer: bool) -> Any:
    """``node`` with each ``$ref`` inlined, or (``defer``) replaced by a placeholder constant."""
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].removeprefix("#/components/schemas/")
            if defer:
                return {"const": _PLACEHOLDER + name}
            return _inline(components[name], components, defer=defer)
        out = {}
        for key, value in node.items():
            if key == "format" and value == "hashid":
                # Not a format JSON Schema knows (validators ignore it); the ``pattern`` beside it
                # is what constrains these ids, and hypothesis-jsonschema generates from it.
                continue
            out[key] = _inline(value, components, defer=defer)
        if defer and out.get("type") == "array" and "maxItems" not in out:
            out["maxItems"] = 2  # fewer instances, all of them valid: keeps generation fast
        return out
    if isinstance(node, list):
        return [_inline(value, components, defer=defer) for value in node]
    return node


@cache
def component_schema(name: str) -> dict[str, Any]:
    """The component ``name`` as a self-contained JSON schema (its ``$ref``s inlined; shared)."""
    components = _components()
    schema: dict[str, Any] = _inline(components[name], components, defer=False)
    return schema


@cache
def app_item_schema(full_component: str) -> dict[str, Any]:
    """A ``dstack_apps`` item: ``anyOf [<full_component>, DstackAppMinimalResponse]`` (shared)."""
    return {
        "anyOf": [component_schema(full_component), component_schema("DstackAppMinimalResponse")]
    }


def validator(schema: dict[str, Any]) -> Any:
    """A JSON Schema 2020-12 validator (the dialect of OpenAPI 3.1) for ``schema``."""
    key = id(schema)
    if key not in _VALIDATORS:
        jsonschema.Draft202012Validator.check_schema(schema)
        _VALIDATORS[key] = (schema, jsonschema.Draft202012Validator(schema))
    return _VALIDATORS[key][1]


#: Validators of the (cached, so long-lived) schemas, by identity; the schema is kept alive.
_VALIDATORS: dict[int, tuple[dict[str, Any], Any]] = {}


@cache
def instances_of(name: str) -> st.SearchStrategy[Any]:
    """Instances the component ``name`` allows, extra keys of any JSON value included.

    Each referenced component is drawn from its own strategy and put in place of a placeholder:
    hypothesis-jsonschema re-reads a property's schema on every draw, so one strategy for a whole
    page (CVMs inside apps inside a list) would be very slow. Arrays are kept to two elements.
    The document is read at the first draw, so that a test module imports (and its tests are
    skipped) when it is missing.
    """
    return st.deferred(lambda: _instances_now(name))


def _instances_now(name: str) -> st.SearchStrategy[Any]:
    components = _components()
    skeleton = _inline(components[name], components, defer=True)
    decimals = st.decimals(allow_nan=False, allow_infinity=False, places=6).map(str)
    shapes = from_schema(skeleton, custom_formats={"decimal": decimals})

    @st.composite
    def filled(draw: st.DrawFn) -> Any:
        return _fill(draw, draw(shapes))

    return filled()


@cache
def app_item_instances(full_component: str) -> st.SearchStrategy[Any]:
    """Instances of :func:`app_item_schema`: full apps and minimal ones."""
    return st.one_of(instances_of(full_component), instances_of("DstackAppMinimalResponse"))


def _fill(draw: st.DrawFn, value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_PLACEHOLDER):
        return draw(instances_of(value.removeprefix(_PLACEHOLDER)))
    if isinstance(value, dict):
        return {key: _fill(draw, item) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(draw, item) for item in value]
    return value


_TYPE_CHECKS: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "null": (type(None),),
}


def _branch(schema: dict[str, Any], value: Any) -> dict[str, Any] | None:
    """The subschema of ``schema`` that ``value`` (part of a valid instance) matches."""
    if "anyOf" not in schema:
        return schema
    options = [
        option
        for option in schema["anyOf"]
        if (kind := _TYPE_CHECKS.get(option.get("type", ""))) is None or isinstance(value, kind)
    ]
    if len(options) > 1:
        options = [o for o in options if jsonschema.Draft202012Validator(o).is_valid(value)]
    return _branch(options[0], value) if options else None


def _sites(value: Any, schema: dict[str, Any], path: tuple[Any, ...]) -> Iterator[Any]:
    """Every place to break: ``(kind, path, key, subschema)`` with kind "drop" or "retype"."""
    branch = _branch(schema, value)
    if branch is None:
        return
    if isinstance(value, dict):
        for key in branch.get("required", []):
            if key in value:
                yield ("drop", path, key, None)
        for key, subschema in branch.get("properties", {}).items():
            if key in value:
                yield ("retype", path, key, subschema)
                yield from _sites(value[key], subschema, (*path, key))
    elif isinstance(value, list) and "items" in branch:
        for index, element in enumerate(value):
            yield from _sites(element, branch["items"], (*path, index))


def _at(document: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        document = document[part]
    return document


def forbidden_variants(schema: dict[str, Any], instance: Any) -> Iterator[tuple[Any, str]]:
    """``instance`` broken in each place in turn, kept when ``schema`` rejects it, and how.

    Enums count as open (:func:`open_enums`): a new enum value is accepted on purpose.

    Each required key present is dropped; each property present gets, in turn, up to
    ``_PER_SITE`` values of types its schema does not allow. The instance is changed in place
    and restored before the next variant: use each variant before asking for the next one.
    """
    schema = _open_enums_of(schema)
    check = validator(schema)
    for kind, path, key, subschema in list(_sites(instance, schema, ())):
        parent = _at(instance, path)
        where = ".".join(map(str, (*path, key)))
        original = parent[key]
        if kind == "drop":
            del parent[key]
            if not check.is_valid(instance):
                yield instance, f"dropped required {where}"
        else:
            sub_check = jsonschema.Draft202012Validator(subschema)
            wrong = [v for v in _REPLACEMENTS if not sub_check.is_valid(v)][:_PER_SITE]
            for value in wrong:
                parent[key] = value
                # A change can land on another anyOf branch (a full app turned minimal).
                if not check.is_valid(instance):
                    yield instance, f"set {where} to {value!r}"
        parent[key] = original


def open_enums(node: Any) -> Any:
    """``node`` with its string enums opened, as the models do: any string is allowed there.

    The server keeps adding values (``status``, ``kms_type``, ``billing_period``...), so a new one
    is not drift. A ``const`` that is alone (``object_type``) stays exact.
    """
    if isinstance(node, list):
        return [open_enums(value) for value in node]
    if not isinstance(node, dict):
        return node
    out = {key: open_enums(value) for key, value in node.items() if key != "enum"}
    if "anyOf" in out:
        options = out["anyOf"]
        strings = [o for o in options if o.get("type") == "string" and "const" in o]
        if len(strings) > 1:
            out["anyOf"] = [o for o in options if o not in strings] + [{"type": "string"}]
    return out


def _open_enums_of(schema: dict[str, Any]) -> dict[str, Any]:
    key = id(schema)
    if key not in _OPENED:
        _OPENED[key] = (schema, open_enums(schema))
    return _OPENED[key][1]


_OPENED: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}

#: Wrong values tried per property: the first ones of ``_REPLACEMENTS`` its schema forbids.
_PER_SITE = 3


def assert_extras_kept(model: BaseModel, data: dict[str, Any]) -> None:
    """Every key of ``data`` a model does not declare is in its ``model_extra``, at every level."""
    fields = type(model).model_fields
    assert model.model_extra == {k: v for k, v in data.items() if k not in fields}
    for name in fields:
        if name in data:
            _assert_extras_in(getattr(model, name), data[name])


def _assert_extras_in(value: Any, data: Any) -> None:
    if isinstance(value, BaseModel):
        assert_extras_kept(value, data)
    elif isinstance(value, list):
        for item, item_data in zip(value, data, strict=True):
            _assert_extras_in(item, item_data)
