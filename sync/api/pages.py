"""Validated pages: the unit the client yields and the store stages.

``parse_page`` turns the raw bytes of one response of a listed endpoint
(:class:`~sync.endpoints.EndpointSpec`) into a :class:`Page` of canonical bundles under a
validation policy:

- the body is decoded once (orjson); the envelope (``items``/``dstack_apps``, ``total``, ``page``,
  ``page_size``, ``pages``/``total_pages``: what the endpoint's ``models`` read) must be valid, else
  :class:`~sync.errors.InvalidEnvelopeError`, whatever the policy, as for a body that is not JSON;
- each item is validated alone by the version's item model, normalized, and kept with its raw JSON
  bytes (re-encoded from the decoded item, so unknown fields are never lost);
- with ``known`` (entity key -> stored digest, see :func:`sync.changes.source_digest`), an item
  whose raw bytes hash to the stored value is not validated again: the same bytes under the same
  version and release cannot validate differently. Only its key is kept, in ``Page.unchanged``;
- ``strict``: the first invalid item raises :class:`~sync.errors.InvalidItemError` naming the
  version, endpoint, page, item index and field path;
- ``quarantine``: an invalid item becomes a :class:`Rejection` (raw JSON + error) and the
  rest of the page proceeds. The run-level share check lives with the run, not here.

An item is invalid when it fails validation, or, rarely, when a valid value cannot be normalized
(a ``memory_in_gb`` too large to convert, a date-time whose UTC equivalent is out of range).
Messages name the URL but never a header or a key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

import orjson
from pydantic import TypeAdapter, ValidationError

from sync.changes import source_digest
from sync.endpoints import EndpointSpec
from sync.errors import InvalidEnvelopeError, InvalidItemError
from sync.settings import ValidationPolicy
from sync.versions import ApiVersion

ItemT = TypeVar("ItemT")
_EnvelopeT = TypeVar("_EnvelopeT")


@dataclass(frozen=True, slots=True)
class Rejection:
    """An item set aside for ``quarantined_items``, with its raw JSON and the reason.

    Invalid items (validation), unstorable ones (before staging) and ones the database refused
    (at apply) all become one; :func:`sync.store.staging.insert_quarantined` writes them.
    """

    endpoint: str  # the name of the listed endpoint (EndpointSpec.name)
    page: int | None  # None: refused by the database at apply time, when the page is not known
    index: int | None  # None: set aside after validation, where the index is not kept
    entity_id: str | None  # normalized VM UUID or app_id when the raw item still shows it
    raw: bytes
    error: str


@dataclass(frozen=True, slots=True)
class Page(Generic[ItemT]):
    """One validated page of one endpoint (``endpoint``: its :attr:`EndpointSpec.name`)."""

    endpoint: str
    version: str
    number: int
    page_size: int
    total: int
    pages: int
    items: list[ItemT] = field(default_factory=list)
    #: Invalid items set aside under ``quarantine`` (counted as ``quarantined`` by the listing).
    rejections: list[Rejection] = field(default_factory=list)
    #: Keys of the items whose bytes equal the stored ones (not validated, nothing to write).
    unchanged: list[str] = field(default_factory=list)


#: Entity key -> source digest (:func:`~sync.changes.source_digest`) of the stored item, for the
#: items a run may skip. (Not :data:`sync.records.Known`, a value a version may not carry.)
KnownDigests = Mapping[str, bytes]


def parse_page(
    spec: EndpointSpec[ItemT],
    version: ApiVersion,
    page_no: int,
    body: bytes,
    *,
    policy: ValidationPolicy,
    url: str,
    known: KnownDigests | None = None,
) -> Page[ItemT]:
    """Validate and normalize one response body of ``spec``'s endpoint (see the module doc).

    ``spec.models(version)`` gives the envelope, the item model, the normalizer and the key reader.
    """
    ctx = PageContext(spec, version, page_no, url, policy)
    models = spec.models(version)
    data, dumps = _decode(ctx, body)
    valid = _validate_envelope(ctx, models.envelope, data)
    raw_items, pages = models.contents(valid)
    items, rejections, unchanged = _parse_items(
        ctx, raw_items, models.item, models.normalize, models.entity_id, known, dumps
    )
    return Page(
        endpoint=spec.name,
        version=version.name,
        number=page_no,
        page_size=valid.page_size,
        total=valid.total,
        pages=pages,
        items=items,
        rejections=rejections,
        unchanged=unchanged,
    )


@dataclass(frozen=True, slots=True)
class PageContext:
    """The page being parsed: where it came from, and the policy its invalid items meet.

    One value for what every message and :class:`Rejection` of the page names.
    """

    spec: EndpointSpec[Any]
    version: ApiVersion
    number: int
    url: str
    policy: ValidationPolicy

    @property
    def where(self) -> str:
        """The request, for messages: version, endpoint and page number."""
        return f"X-Phala-Version {self.version.name}, GET {self.spec.path} page {self.number}"


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


#: Maps every ASCII digit to ``0`` and every other byte to a space (see :func:`has_long_integer`).
_DIGITS_ONLY: Final = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
#: 19 digits in a row: where an integer may be beyond what orjson decodes exactly (64 bits).
_LONG_DIGIT_RUN: Final = b"0" * 19
_BEFORE_NUMBER: Final = frozenset(b":,[")
_JSON_SPACE: Final = frozenset(b" \t\r\n")


def has_long_integer(body: bytes) -> bool:
    """Whether a JSON text may hold an integer literal of 19 digits or more.

    Digit runs that long are common inside strings (hex hashes), so each run found is checked for
    what precedes it: only a number token follows ``:``, ``,`` or ``[`` (and maybe ``-``). A false
    positive costs only a slower decode.
    """
    digits = body.translate(_DIGITS_ONLY)
    start = digits.find(_LONG_DIGIT_RUN)
    while start != -1:
        i = start - 1
        if i >= 0 and body[i] == 0x2D:  # a minus sign
            i -= 1
        while i >= 0 and body[i] in _JSON_SPACE:
            i -= 1
        if i < 0 or body[i] in _BEFORE_NUMBER:
            return True
        end = digits.find(b" ", start)
        if end == -1:
            return False
        start = digits.find(_LONG_DIGIT_RUN, end)
    return False


Dumps = Callable[[Any], bytes]


def exact_dumps(item: Any) -> bytes:
    """JSON bytes of a value the stdlib decoded: integers of any size exactly, no NaN/Infinity.

    Text that UTF-8 cannot carry (a lone surrogate, which JSON's ``\\u`` escapes allow) is kept
    as an escape. Raises ``ValueError`` for a non-finite number (a literal like ``1e400``).
    """
    try:
        return json.dumps(item, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    except UnicodeEncodeError:
        return json.dumps(item, separators=(",", ":"), allow_nan=False).encode()


def _decode(ctx: PageContext, body: bytes) -> tuple[Any, Dumps]:
    """The decoded body and the encoder that gives its items' raw bytes back without loss.

    orjson is fast but turns integers beyond 64 bits into floats and refuses lone surrogates and
    numbers beyond a double; such a page (rare) is decoded by the stdlib instead, which keeps
    them, and its items are re-encoded by :func:`exact_dumps`.
    """
    if not has_long_integer(body):
        try:
            return orjson.loads(body), orjson.dumps
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(body), exact_dumps
    except (ValueError, RecursionError) as exc:
        raise InvalidEnvelopeError(
            f"{ctx.where}: the response body is not JSON ({exc}; "
            f"it starts with {body[:60]!r}). URL: {ctx.url}. {_ENVELOPE_ADVICE}"
        ) from None


def _validate_envelope(ctx: PageContext, adapter: TypeAdapter[_EnvelopeT], data: Any) -> _EnvelopeT:
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise InvalidEnvelopeError(
            f"{ctx.where}: invalid page envelope: "
            f"{describe_errors(exc, root='(the whole body)')}. "
            f"URL: {ctx.url}. {_ENVELOPE_ADVICE}"
        ) from None


def _parse_items(
    ctx: PageContext,
    raw_items: list[Any],
    adapter: TypeAdapter[Any],
    normalize: Callable[[Any, bytes], ItemT],
    entity_id: Callable[[object], str | None],
    known: KnownDigests | None,
    dumps: Dumps,
) -> tuple[list[ItemT], list[Rejection], list[str]]:
    """Validate and normalize each item; the hot path, so kept to a few calls per item."""
    validate = adapter.validate_python
    items: list[ItemT] = []
    rejections: list[Rejection] = []
    unchanged: list[str] = []
    name = ctx.version.name
    for index, item in enumerate(raw_items):
        try:
            raw = dumps(item)
        except ValueError as exc:  # NaN or Infinity (orjson's error is a ValueError too)
            raw = json.dumps(item, separators=(",", ":")).encode()
            error = f"cannot keep the item's JSON exactly: {exc}"
            rejections.append(_set_aside(ctx, index, entity_id(item), raw, error))
            continue
        if known:
            key = entity_id(item)
            if key is not None and known.get(key) == source_digest(raw, name):
                unchanged.append(key)
                continue
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
        rejections.append(_set_aside(ctx, index, entity_id(item), raw, error))
    return items, rejections, unchanged


def _set_aside(ctx: PageContext, index: int, key: str | None, raw: bytes, error: str) -> Rejection:
    """An invalid item: quarantined, or under ``strict`` the error that fails the run."""
    if ctx.policy == "strict":
        label = f" ({ctx.spec.label} {key})" if key is not None else ""
        raise InvalidItemError(
            f"{ctx.where}, item {index}{label} is invalid: {error}. URL: {ctx.url}. {_ITEM_ADVICE}"
        )
    return Rejection(ctx.spec.name, ctx.number, index, key, raw, error)


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
