"""Canonical, version-independent records: what the store keeps, whatever the API version.

Every API version's models normalize into these dataclasses (see ``sync.versions``). A field the
pinned version does not carry holds :data:`UNKNOWN`, which is not ``None``: ``None`` means the API
said "null", ``UNKNOWN`` means the API (in this version) says nothing, so the store keeps the last
known value instead of recording a change.

Units: ``memory_mb`` is an integer number of MB, ``disk_gb`` an integer number of GB. Versions that
report memory in GB (``memory_in_gb``, a float) are converted by :func:`memory_gb_to_mb`, the one
place that does it: MB = GB x 1024 rounded to the nearest integer (halves to even). Values the API
derives as MB / 1024 convert back exactly.

Identity: a CVM is keyed by its VM UUID normalized by :func:`normalize_vm_uuid` (lower case, no
dashes), the only key present in every version; the hashed ``cvm_...`` id is kept in ``cvm_id``
when the version has it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Final, Literal, TypeAlias, TypeVar, final


@final
class Unknown:
    """The type of :data:`UNKNOWN`: a field the pinned API version does not carry."""

    _instance: ClassVar[Unknown | None] = None

    def __new__(cls) -> Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = Unknown()

T = TypeVar("T")
#: A value the version may not carry: ``Known[str | None]`` is a string, a null, or UNKNOWN.
Known: TypeAlias = T | Unknown

EntityType = Literal["cvm", "app", "node", "workspace", "creator"]
#: The entity types the two list endpoints return (``GET /cvms/paginated``, ``GET /apps``).
LISTED_TYPES: Final[tuple[EntityType, ...]] = ("cvm", "app")
#: The entity types known only through the CVMs that refer to them (the API does not list them).
REFERENCE_TYPES: Final[tuple[EntityType, ...]] = ("node", "workspace", "creator")
#: Every entity type, in the order they are shown (listed ones first).
ENTITY_TYPES: Final[tuple[EntityType, ...]] = (*LISTED_TYPES, *REFERENCE_TYPES)


def normalize_vm_uuid(value: str) -> str:
    """The CVM join key: the VM UUID in lower case without dashes."""
    return value.replace("-", "").strip().lower()


def memory_gb_to_mb(memory_in_gb: float | None) -> int | None:
    """``memory_in_gb`` (float GB) as integer MB: x 1024, rounded to nearest, halves to even."""
    if memory_in_gb is None:
        return None
    return round(memory_in_gb * 1024)


class Record:
    """Behaviour shared by the canonical records.

    Records are plain (not frozen) slotted dataclasses: a frozen dataclass with 38 fields costs
    about four times as much to build, on the hot path of every page. Treat them as values.
    """

    entity_type: ClassVar[EntityType]
    key_field: ClassVar[str]

    @property
    def key(self) -> str:
        """The entity's identifier as text (the store's ``entity_id``)."""
        return str(getattr(self, self.key_field))

    def known_fields(self) -> dict[str, Any]:
        """Every field the version carries, UNKNOWN ones left out, in declaration order."""
        return {name: v for name in self.field_names() if (v := getattr(self, name)) is not UNKNOWN}

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        names: tuple[str, ...] | None = _FIELD_NAMES.get(cls)
        if names is None:
            names = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
            _FIELD_NAMES[cls] = names
        return names


_FIELD_NAMES: dict[type[Record], tuple[str, ...]] = {}


@dataclass(slots=True, kw_only=True)
class CvmRecord(Record):
    """One confidential VM. Source fields per version are documented in docs/schema.md."""

    entity_type: ClassVar[EntityType] = "cvm"
    key_field: ClassVar[str] = "vm_uuid"

    vm_uuid: str
    cvm_id: Known[str | None] = UNKNOWN
    name: str
    app_id: str | None
    instance_id: str | None
    status: str
    in_progress: bool
    listed: bool
    vcpu: int | None
    memory_mb: int | None
    disk_gb: int | None
    instance_type: Known[str | None] = UNKNOWN
    gpus: Known[int | None] = UNKNOWN
    billing_period: str | None
    compute_billing_price: Known[str | None] = UNKNOWN
    node_id: int | None
    workspace_id: Known[str | None] = UNKNOWN
    creator_id: Known[str | None] = UNKNOWN
    project_type: str | None
    gateway_domain: str | None
    kms_type: Known[str | None] = UNKNOWN
    kms_chain_id: int | None
    os_name: Known[str | None] = UNKNOWN
    os_version: Known[str | None] = UNKNOWN
    os_image_hash: Known[str | None] = UNKNOWN
    os_is_dev: Known[bool | None] = UNKNOWN
    compose_hash: Known[str | None] = UNKNOWN
    gateway_enabled: Known[bool] = UNKNOWN
    public_logs: Known[bool] = UNKNOWN
    public_sysinfo: Known[bool] = UNKNOWN
    public_tcbinfo: Known[bool] = UNKNOWN
    secure_time: Known[bool] = UNKNOWN
    storage_fs: Known[str | None] = UNKNOWN
    created_at: Known[datetime | None] = UNKNOWN
    api_deleted_at: Known[datetime | None] = UNKNOWN
    # ``hourly_rate`` {total, compute, disk}: USD per hour, decimal text, where a server sends it.
    hourly_rate_total: Known[str | None] = UNKNOWN
    hourly_rate_compute: Known[str | None] = UNKNOWN
    hourly_rate_disk: Known[str | None] = UNKNOWN


@dataclass(slots=True, kw_only=True)
class NodeRecord(Record):
    """A node (teepod) that hosts CVMs, keyed by its integer id."""

    entity_type: ClassVar[EntityType] = "node"
    key_field: ClassVar[str] = "node_id"

    node_id: int
    name: str | None
    region: str | None
    device_id: Known[str | None] = UNKNOWN
    ppid: Known[str | None] = UNKNOWN
    status: Known[str | None] = UNKNOWN
    version: Known[str | None] = UNKNOWN


@dataclass(slots=True, kw_only=True)
class WorkspaceRecord(Record):
    """A workspace (team), keyed by its hashed ``wks_...`` id."""

    entity_type: ClassVar[EntityType] = "workspace"
    key_field: ClassVar[str] = "workspace_id"

    workspace_id: str
    name: str
    slug: str | None
    avatar_url: str | None


@dataclass(slots=True, kw_only=True)
class CreatorRecord(Record):
    """The user who created a CVM, keyed by the hashed ``usr_...`` id."""

    entity_type: ClassVar[EntityType] = "creator"
    key_field: ClassVar[str] = "creator_id"

    creator_id: str
    username: str | None
    avatar_url: str | None


@dataclass(slots=True, kw_only=True)
class AppRecord(Record):
    """An app (dstack app), keyed by its 40-hex ``app_id``; minimal apps carry only that."""

    entity_type: ClassVar[EntityType] = "app"
    key_field: ClassVar[str] = "app_id"

    app_id: str
    project_id: str | None
    name: str | None
    app_provision_type: str | None
    app_icon_url: str | None
    created_at: str | None
    kms_type: str | None
    profile_display_name: str | None
    profile_avatar_url: str | None
    profile_description: str | None
    profile_custom_domain: str | None
    cvm_count: int | None
    current_vm_uuid: str | None
    team_slug: Known[str | None] = UNKNOWN
    team_name: Known[str | None] = UNKNOWN


@dataclass(frozen=True, slots=True)
class CvmBundle:
    """Everything one CVM list item normalizes into, plus the item's raw JSON bytes."""

    cvm: CvmRecord
    node: NodeRecord | None
    workspace: WorkspaceRecord | None
    creator: CreatorRecord | None
    raw: bytes


#: Pseudo-field of an app: the sorted VM UUIDs of its CVMs (``AppBundle.member_vm_uuids``; the
#: store keeps them as rows of app_cvms).
APP_MEMBERS: Final = "member_vm_uuids"


@dataclass(frozen=True, slots=True)
class AppBundle:
    """One app list item: the app, its member CVMs' UUIDs (UNKNOWN for a minimal app), raw JSON."""

    app: AppRecord
    member_vm_uuids: Known[tuple[str, ...]]
    raw: bytes
