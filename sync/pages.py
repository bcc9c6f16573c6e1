"""Validated pages: the unit the client yields and the store stages.

``parse_cvm_page`` / ``parse_app_page`` turn the raw bytes of one response into a :class:`Page` of
canonical bundles under a validation policy:

- the body is decoded once (orjson); the envelope (``items``/``dstack_apps``, ``total``, ``page``,
  ``page_size``, ``pages``/``total_pages``) must be valid, else
  :class:`~sync.errors.InvalidEnvelopeError`, whatever the policy, as for a body that is not JSON;
- each item is validated alone by the version's item model, normalized, and kept with its raw JSON
  bytes (re-encoded from the decoded item, so unknown fields are never lost);
- ``strict``: the first invalid item raises :class:`~sync.errors.InvalidItemError` naming the
  version, endpoint, page, item index and field path;
- ``quarantine``: an invalid item becomes a :class:`QuarantinedItem` (raw JSON + error) and the
  rest of the page proceeds. The run-level share check lives with the run, not here.

An item is invalid when it fails validation, or, rarely, when a valid value cannot be normalized
(a ``memory_in_gb`` too large to convert, a date-time whose UTC equivalent is out of range).
Messages name the URL but never a header or a key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Generic, Literal, TypeVar

import orjson
from pydantic import TypeAdapter, ValidationError

from sync.errors import InvalidEnvelopeError, InvalidItemError
from sync.records import AppBundle, CvmBundle
from sync.versions import ApiVersion

Endpoint = Literal["cvms", "apps"]
ENDPOINT_PATHS: dict[Endpoint, str] = {"cvms": "/cvms/paginated", "apps": "/apps"}

ItemT = TypeVar("ItemT", CvmBundle, AppBundle)
Policy = Literal["strict", "quarantine"]


@dataclass(frozen=True, slots=True)
class QuarantinedItem:
    """An item that failed validation, kept with its raw JSON and the reason."""

    endpoint: Endpoint
    page: int
    index: int
    entity_id: str | None  # normalized VM UUID or app_id when the raw item still shows it
    raw: bytes
    error: str


@dataclass(frozen=True, slots=True)
class Page(Generic[ItemT]):
    """One validated page of one endpoint."""

    endpoint: Endpoint
    version: str
    number: int
    page_size: int
    total: int
    pages: int
    items: list[ItemT] = field(default_factory=list)
    quarantined: list[QuarantinedItem] = field(default_factory=list)


def parse_cvm_page(
    version: ApiVersion, page_no: int, body: bytes, *, policy: Policy, url: str
) -> Page[CvmBundle]:
    """Validate and normalize one ``GET /cvms/paginated`` response body (see the module doc)."""
    data = _decode("cvms", version, page_no, body, url)
    envelope = _validate_envelope("cvms", version.cvm_envelope, version, page_no, data, url)
    items, quarantined = _parse_items(
        "cvms",
        version,
        page_no,
        envelope.items,
        version.cvm_item,
        version.normalize_cvm,
        version.cvm_entity_id,
        policy,
        url,
    )
    return Page(
        endpoint="cvms",
        version=version.name,
        number=page_no,
        page_size=envelope.page_size,
        total=envelope.total,
        pages=envelope.pages,
        items=items,
        quarantined=quarantined,
    )


def parse_app_page(
    version: ApiVersion, page_no: int, body: bytes, *, policy: Policy, url: str
) -> Page[AppBundle]:
    """Validate and normalize one ``GET /apps`` response body (see the module doc)."""
    data = _decode("apps", version, page_no, body, url)
    envelope = _validate_envelope("apps", version.app_envelope, version, page_no, data, url)
    items, quarantined = _parse_items(
        "apps",
        version,
        page_no,
        envelope.dstack_apps,
        version.app_item,
        version.normalize_app,
        version.app_entity_id,
        policy,
        url,
    )
    return Page(
        endpoint="apps",
        version=version.name,
        number=page_no,
        page_size=envelope.page_size,
        total=envelope.total,
        pages=envelope.total_pages,
        items=items,
        quarantined=quarantined,
    )


_ENTITY_LABELS: Final[dict[Endpoint, str]] = {"cvms": "CVM", "apps": "app"}
_ENVELOPE_ADVICE: Final = (
    "This fails under every validation policy: check the base URL (it ends in /api/v1) and that "
    "the server serves the pinned API version."
)
_ITEM_ADVICE: Final = (
    "Check that the server serves the pinned API version, or use the quarantine validation "
    "policy to sync the valid items and set the invalid ones aside."
)
#: Validation errors spelled out per item; more are counted, not listed.
_MAX_ERRORS: Final = 3


def _where(endpoint: Endpoint, version: ApiVersion, page_no: int) -> str:
    return f"X-Phala-Version {version.name}, GET {ENDPOINT_PATHS[endpoint]} page {page_no}"


def _decode(endpoint: Endpoint, version: ApiVersion, page_no: int, body: bytes, url: str) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidEnvelopeError(
            f"{_where(endpoint, version, page_no)}: the response body is not JSON ({exc}; "
            f"it starts with {body[:60]!r}). URL: {url}. {_ENVELOPE_ADVICE}"
        ) from None


_EnvelopeT = TypeVar("_EnvelopeT")


def _validate_envelope(
    endpoint: Endpoint,
    adapter: TypeAdapter[_EnvelopeT],
    version: ApiVersion,
    page_no: int,
    data: Any,
    url: str,
) -> _EnvelopeT:
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise InvalidEnvelopeError(
            f"{_where(endpoint, version, page_no)}: invalid page envelope: "
            f"{describe_errors(exc, root='(the whole body)')}. "
            f"URL: {url}. {_ENVELOPE_ADVICE}"
        ) from None


def _parse_items(
    endpoint: Endpoint,
    version: ApiVersion,
    page_no: int,
    raw_items: list[Any],
    adapter: TypeAdapter[Any],
    normalize: Callable[[Any, bytes], ItemT],
    entity_id: Callable[[object], str | None],
    policy: Policy,
    url: str,
) -> tuple[list[ItemT], list[QuarantinedItem]]:
    """Validate and normalize each item; the hot path, so kept to a few calls per item."""
    validate = adapter.validate_python
    dumps = orjson.dumps
    items: list[ItemT] = []
    quarantined: list[QuarantinedItem] = []
    for index, item in enumerate(raw_items):
        raw = dumps(item)
        try:
            items.append(normalize(validate(item), raw))
        except ValidationError as exc:
            error = describe_errors(exc)
        except OverflowError as exc:
            # A valid value that cannot be converted: memory_in_gb x 1024 beyond a float, a
            # date-time in year 1 or 9999 whose UTC equivalent is outside the datetime range.
            error = f"cannot normalize: {exc}"
        else:
            continue
        key = entity_id(item)
        if policy == "strict":
            label = f" ({_ENTITY_LABELS[endpoint]} {key})" if key is not None else ""
            raise InvalidItemError(
                f"{_where(endpoint, version, page_no)}, item {index}{label} is invalid: {error}. "
                f"URL: {url}. {_ITEM_ADVICE}"
            )
        quarantined.append(QuarantinedItem(endpoint, page_no, index, key, raw, error))
    return items, quarantined


def describe_errors(exc: ValidationError, *, root: str = "(the whole item)") -> str:
    """The first validation errors as ``field.path[0].name: message (got ...)``, one per error."""
    errors = exc.errors(include_url=False, include_context=False)
    parts = []
    for err in errors[:_MAX_ERRORS]:
        text = f"{field_path(err['loc'], root=root)}: {err['msg']}"
        if err["type"] != "missing":
            text += f" (got {_describe_value(err['input'])})"
        parts.append(text)
    if len(errors) > _MAX_ERRORS:
        parts.append(f"and {len(errors) - _MAX_ERRORS} more errors")
    return "; ".join(parts)


def field_path(loc: tuple[int | str, ...], *, root: str = "(the whole item)") -> str:
    """A pydantic ``loc`` as a JSON path: ``('cvms', 0, 'vm_uuid')`` -> ``cvms[0].vm_uuid``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path or root


_JSON_TYPES: Final[dict[type, str]] = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
}


def _describe_value(value: object) -> str:
    """A short description of an offending value: its JSON type and, for scalars, a prefix."""
    if value is None:
        return "null"
    kind = _JSON_TYPES.get(type(value), type(value).__name__)
    if isinstance(value, dict | list):
        return kind
    try:
        text = orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        text = repr(value)
    return f"{kind} {text[:40]}{'...' if len(text) > 40 else ''}"
