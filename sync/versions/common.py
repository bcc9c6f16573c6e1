"""What every API version shares: the model base and rules, the components and envelopes that are
the same in each, and the helpers that map them to canonical records.

The models mirror the server's OpenAPI component schemas field for field:

- required vs optional as in the schema: a required field must be present even when it is nullable
  (``CvmBasicInfo.vm_uuid``); an absent optional field takes the schema's default, ``None`` when
  the schema gives none and allows null, an empty list or an all-null object when it allows
  neither;
- types are strict, as in JSON: ``"3"`` is not an integer, ``3`` is not a string, ``1`` is not a
  boolean, and neither is an integral float (``3.0``) an integer, which the server never sends;
  a ``number`` accepts integers;
- ``format: date-time`` strings are parsed into aware datetimes (:data:`DateTime`) keeping their
  offset (the normalizers convert to UTC); a date-time without an offset is taken as UTC;
- hashed ids (``prj_...``, ``kms_...``) are checked against the schema's ``pattern``;
- unknown fields are accepted and kept (``extra="allow"``) at every level: they are in
  ``model_extra`` and, through the raw item bytes, in the store;
- **enums are open**: the server keeps adding values (``status``, ``kms_type``, ``billing_period``,
  a node's ``status``, ``storage_fs``), so every enum-typed field is a plain string. A value this
  code has never seen is data to record, not an error. ``const`` fields stay exact.

Each version module (:mod:`sync.versions.v2025_10_28`, :mod:`sync.versions.v2026_01_21`) imports
what it shares from here, as the OpenAPI document defines a shared component once; no version
module imports another.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Generic, Literal, Protocol, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    StringConstraints,
    TypeAdapter,
)
from pydantic_core import PydanticCustomError

from sync.records import UNKNOWN, AppBundle, AppRecord, normalize_vm_uuid

__all__ = [
    "APP_DISCRIMINATOR",
    "APP_ENVELOPE",
    "CVM_ENVELOPE",
    "AppPage",
    "AppPageEnvelope",
    "CvmNetworkUrls",
    "CvmPage",
    "CvmPageEnvelope",
    "DateTime",
    "DstackAppFull",
    "DstackAppMinimalResponse",
    "ListShape",
    "ProfileGetResponse",
    "ProjectId",
    "SchemaModel",
    "app_bundle",
    "app_entity_id",
    "app_variant",
    "member_vm_uuids",
    "minimal_app_bundle",
]

#: The shape of the two list endpoints' items, named by the version that introduced it: a version
#: module's ``SHAPE``, and what the simulator renders for a version (:attr:`ApiVersion.shape`).
ListShape = Literal["2025-10-28", "2026-01-21"]


class SchemaModel(BaseModel):
    """Base of every response model: JSON-strict types, unknown fields kept."""

    model_config = ConfigDict(strict=True, extra="allow")


_RFC3339: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})?"
)


def _parse_datetime(value: object) -> datetime:
    """An RFC 3339 date-time string (or a datetime) as an aware datetime; naive means UTC."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and _RFC3339.fullmatch(value):
        text = value[:-1] + "+00:00" if value[-1] in "Zz" else value
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise PydanticCustomError(
                "datetime_from_date_parsing", "Input is not a valid date-time"
            ) from None
    else:
        raise PydanticCustomError("datetime_type", "Input should be an RFC 3339 date-time string")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


#: ``type: string, format: date-time``: an aware datetime, with the offset given (UTC if none).
DateTime = Annotated[datetime, PlainValidator(_parse_datetime, json_schema_input_type=str)]
ProjectId = Annotated[str, StringConstraints(pattern=r"^prj_.+")]


# --- Components the same in every version --------------------------------------------------------


class CvmNetworkUrls(SchemaModel):
    app: str
    instance: str


class ProfileGetResponse(SchemaModel):
    display_name: str | None = None
    avatar_url: str | None = None
    description: str | None = None
    custom_domain: str | None = None


MemberT = TypeVar("MemberT", bound=SchemaModel)


class DstackAppFull(SchemaModel, Generic[MemberT]):
    """The fields of ``DstackAppFullResponse`` in every version; a version gives its member CVM
    model (``current_cvm``, ``cvms``) and adds its own fields after these."""

    id: ProjectId
    name: str
    app_id: str
    app_provision_type: str | None = None
    app_icon_url: str | None = None
    created_at: str
    kms_type: str
    profile: ProfileGetResponse | None = None
    current_cvm: MemberT | None = None
    cvms: list[MemberT] = Field(default_factory=list)
    cvm_count: int = 0


class DstackAppMinimalResponse(SchemaModel):
    """An app the caller may not see: only ``app_id`` is set, every other field is null."""

    id: None = None
    app_id: str
    name: None = None
    app_provision_type: None = None
    app_icon_url: None = None
    created_at: None = None
    kms_type: None = None
    profile: None = None
    current_cvm: None = None
    cvms: None = None
    cvm_count: None = None


def app_variant(value: Any) -> str | None:
    """The variant of a ``dstack_apps`` item: full when ``id`` is set (a required string there),
    minimal otherwise (always null there)."""
    if isinstance(value, dict):
        return "DstackAppMinimalResponse" if value.get("id") is None else "DstackAppFullResponse"
    if isinstance(value, BaseModel):
        return type(value).__name__
    return None


#: Picks the variant of an app item (``anyOf [DstackAppFullResponse, DstackAppMinimalResponse]``,
#: told apart by ``id``, so an error names the fields of one variant); any non-object is rejected
#: with one clear error.
APP_DISCRIMINATOR: Final = Discriminator(
    app_variant, custom_error_type="object_type", custom_error_message="Input should be an object"
)


# --- Page envelopes, items left for one-by-one validation (every version so far) ---------------


ItemT = TypeVar("ItemT")


class CvmPage(SchemaModel, Generic[ItemT]):
    """A page of ``GET /cvms/paginated`` with items of a version's shape."""

    items: list[ItemT]
    total: int
    page: int
    page_size: int
    pages: int


class AppPage(SchemaModel, Generic[ItemT]):
    """A page of ``GET /apps`` with items of a version's shape."""

    dstack_apps: list[ItemT]
    page: int
    page_size: int
    total: int
    total_pages: int


class CvmPageEnvelope(CvmPage[Any]):
    """``GET /cvms/paginated`` envelope with the items unvalidated (each is validated alone)."""


class AppPageEnvelope(AppPage[Any]):
    """``GET /apps`` envelope with the items unvalidated (each is validated alone)."""


CVM_ENVELOPE: Final = TypeAdapter(CvmPageEnvelope)
APP_ENVELOPE: Final = TypeAdapter(AppPageEnvelope)


# --- Mapping to canonical records ----------------------------------------------------------------


def app_entity_id(item: object) -> str | None:
    """The ``app_id`` of a raw, possibly invalid, app item; None if not shown."""
    if isinstance(item, dict):
        app_id = item.get("app_id")
        if isinstance(app_id, str):
            return app_id
    return None


def member_vm_uuids(vm_uuids: list[str | None]) -> tuple[str, ...]:
    """An app's member CVMs: the normalized non-null VM UUIDs, sorted and deduplicated."""
    return tuple(sorted({normalize_vm_uuid(u) for u in vm_uuids if u is not None}))


def minimal_app_bundle(app_id: str, raw: bytes) -> AppBundle:
    """A minimal app: only ``app_id`` is known to be set; members and team are unknown."""
    app = AppRecord(
        app_id=app_id,
        project_id=None,
        name=None,
        app_provision_type=None,
        app_icon_url=None,
        created_at=None,
        kms_type=None,
        profile_display_name=None,
        profile_avatar_url=None,
        profile_description=None,
        profile_custom_domain=None,
        cvm_count=None,
        current_vm_uuid=None,
    )
    return AppBundle(app=app, member_vm_uuids=UNKNOWN, raw=raw)


class _Profile(Protocol):
    display_name: str | None
    avatar_url: str | None
    description: str | None
    custom_domain: str | None


class _Member(Protocol):
    @property
    def vm_uuid(self) -> str | None: ...


class _FullApp(Protocol):
    """What :func:`app_bundle` reads of a full app, the same in every version."""

    @property
    def id(self) -> str: ...
    @property
    def app_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def app_provision_type(self) -> str | None: ...
    @property
    def app_icon_url(self) -> str | None: ...
    @property
    def created_at(self) -> str: ...
    @property
    def kms_type(self) -> str: ...
    @property
    def profile(self) -> _Profile | None: ...
    @property
    def current_cvm(self) -> _Member | None: ...
    @property
    def cvms(self) -> Sequence[_Member]: ...
    @property
    def cvm_count(self) -> int: ...


def app_bundle(item: _FullApp, raw: bytes, **version_fields: Any) -> AppBundle:
    """The bundle of a full app of any version: the fields every version shares, plus its own."""
    profile = item.profile
    current = item.current_cvm
    app = AppRecord(
        app_id=item.app_id,
        project_id=item.id,
        name=item.name,
        app_provision_type=item.app_provision_type,
        app_icon_url=item.app_icon_url,
        created_at=item.created_at,
        kms_type=item.kms_type,
        profile_display_name=profile.display_name if profile is not None else None,
        profile_avatar_url=profile.avatar_url if profile is not None else None,
        profile_description=profile.description if profile is not None else None,
        profile_custom_domain=profile.custom_domain if profile is not None else None,
        cvm_count=item.cvm_count,
        current_vm_uuid=(
            normalize_vm_uuid(current.vm_uuid)
            if current is not None and current.vm_uuid is not None
            else None
        ),
        **version_fields,
    )
    members = member_vm_uuids([c.vm_uuid for c in item.cvms])
    return AppBundle(app=app, member_vm_uuids=members, raw=raw)
