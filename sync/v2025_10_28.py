"""API version 2025-10-28 (legacy): response models of the two list endpoints, and their mapper.

The models mirror the server's OpenAPI component schemas (``PaginatedHostedCvms`` / ``HostedCvm`` /
``VmInfo`` ... for ``GET /cvms/paginated``; ``DstackAppListResponse`` with ``DstackAppFullResponse``
| ``DstackAppMinimalResponse`` and ``CvmBasicInfo`` for ``GET /apps``) field for field:

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
  a node's ``status``, ``storage_fs``), so every enum-typed field is a plain string here. A value
  this code has never seen is data to record, not an error. ``const`` fields stay exact.

Components shared with later versions (the base model, :data:`DateTime`, ``CvmNetworkUrls``,
``ProfileGetResponse``, ``DstackAppMinimalResponse`` and the page envelopes) are defined here once
and imported by them, as the OpenAPI document defines them once.

:func:`normalize_cvm` and :func:`normalize_app` map items to the canonical records of
:mod:`sync.records`; what this version does not carry is :data:`~sync.records.UNKNOWN`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Protocol

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    StringConstraints,
    Tag,
    TypeAdapter,
)
from pydantic_core import PydanticCustomError

from sync.records import (
    UNKNOWN,
    AppBundle,
    AppRecord,
    CvmBundle,
    CvmRecord,
    NodeRecord,
    normalize_vm_uuid,
)

__all__ = [
    "APP_DISCRIMINATOR",
    "APP_ENVELOPE",
    "APP_ITEM",
    "CVM_ENVELOPE",
    "CVM_ITEM",
    "AppComposeV2",
    "AppPageEnvelope",
    "CvmBasicInfo",
    "CvmNetworkUrls",
    "CvmNode",
    "CvmPageEnvelope",
    "DateTime",
    "DstackApp",
    "DstackAppFullResponse",
    "DstackAppListResponse",
    "DstackAppMinimalResponse",
    "GpuConfig",
    "GpuSpec",
    "GuestEvent",
    "HostedCvm",
    "KMSInfo",
    "KmsId",
    "MachineInfo",
    "ManagedUser",
    "PaginatedHostedCvms",
    "PortMapping",
    "ProfileGetResponse",
    "ProjectId",
    "SchemaModel",
    "VmConfiguration",
    "VmInfo",
    "app_bundle",
    "app_entity_id",
    "app_variant",
    "cvm_entity_id",
    "member_vm_uuids",
    "minimal_app_bundle",
    "normalize_app",
    "normalize_cvm",
]


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
KmsId = Annotated[str, StringConstraints(pattern=r"^kms_.+")]


# --- GET /cvms/paginated -------------------------------------------------------------------------


class GuestEvent(SchemaModel):
    event: str
    body: str
    timestamp: int = 0


class PortMapping(SchemaModel):
    protocol: str
    host_port: int
    vm_port: int
    host_address: str | None = None


class GpuSpec(SchemaModel):
    slot: str
    product_id: str | None = None


class GpuConfig(SchemaModel):
    gpus: list[GpuSpec]
    attach_mode: str = "listed"  # enum listed|all, or any string


class AppComposeV2(SchemaModel):
    allowed_envs: list[str] = Field(default_factory=list)
    bash_script: str | None = None
    default_gateway_domain: str | None = None
    docker_compose_file: str | None = None
    init_script: str | None = None
    kms_enabled: bool = True
    local_key_provider_enabled: bool = False
    manifest_version: int = 2
    name: str
    no_instance_id: bool = False
    pre_launch_script: str | None = None
    public_logs: bool = True
    public_sysinfo: bool = True
    public_tcbinfo: bool = True
    runner: str = "docker-compose"
    gateway_enabled: bool = True
    features: list[str] = Field(default_factory=lambda: ["kms", "tproxy-net"])
    salt: str | None = None
    secure_time: bool = False
    storage_fs: str | None = "zfs"  # enum ext4|zfs: open
    tproxy_enabled: bool = True


def _default_gpu_config() -> GpuConfig:
    return GpuConfig(gpus=[], attach_mode="listed")


class VmConfiguration(SchemaModel):
    name: str
    image: str
    compose_file: AppComposeV2 | None = None
    vcpu: int
    memory: int
    disk_size: int
    ports: list[PortMapping] | None = None
    encrypted_env: str | None = None
    app_id: str | None = None
    user_config: str | None = None
    hugepages: bool = False
    pin_numa: bool = False
    gpus: GpuConfig | None = Field(default_factory=_default_gpu_config)
    kms_urls: list[str] = Field(default_factory=list)
    gateway_urls: list[str] = Field(default_factory=list)


class VmInfo(SchemaModel):
    id: str
    name: str
    status: str
    uptime: str
    app_url: str | None = None
    app_id: str
    instance_id: str | None = None
    configuration: VmConfiguration | None = None
    exited_at: str | None = None
    boot_progress: str | None = None
    boot_error: str | None = None
    shutdown_progress: str | None = None
    image_version: str | None = None
    events: list[GuestEvent] = Field(default_factory=list)


class ManagedUser(SchemaModel):
    id: int
    username: str


class CvmNode(SchemaModel):
    id: int
    name: str
    region_identifier: str | None = None


class KMSInfo(SchemaModel):
    id: KmsId
    slug: str | None = None
    url: str
    version: str
    chain_id: int | None = None
    kms_contract_address: str | None = None
    gateway_app_id: str | None = None


class CvmNetworkUrls(SchemaModel):
    app: str
    instance: str


class HostedCvm(SchemaModel):
    """One item of ``GET /cvms/paginated``."""

    hosted: VmInfo
    name: str
    managed_user: ManagedUser | None = None
    node: CvmNode | None = None
    listed: bool = False
    status: str
    in_progress: bool = False
    dapp_dashboard_url: str | None = None
    syslog_endpoint: str | None = None
    allow_upgrade: bool = False
    project_id: ProjectId | None = None
    project_type: str | None = None
    billing_period: str | None = None
    kms_info: KMSInfo | None = None
    contract_address: str | None = None
    deployer_address: str | None = None
    vcpu: int | None = None
    memory: int | None = None
    disk_size: int | None = None
    gateway_domain: str | None = None
    public_urls: list[CvmNetworkUrls]


class PaginatedHostedCvms(SchemaModel):
    items: list[HostedCvm]
    total: int
    page: int
    page_size: int
    pages: int


# --- GET /apps -----------------------------------------------------------------------------------


class MachineInfo(SchemaModel):
    vcpu: int
    memory: int
    disk_size: int
    gpu_count: int


class CvmBasicInfo(SchemaModel):
    vm_uuid: str | None
    app_id: str
    name: str = ""
    status: str
    vcpu: int
    memory: int
    disk_size: int
    teepod_id: int
    teepod_name: str
    region_identifier: str | None
    kms_type: str | None
    instance_type: str | None
    listed: bool | None = None
    base_image: str | None = None
    kms_slug: str | None = None
    kms_id: str | None = None
    instance_id: str | None = None
    machine_info: MachineInfo | None = None
    updated_at: DateTime | None = None


class ProfileGetResponse(SchemaModel):
    display_name: str | None = None
    avatar_url: str | None = None
    description: str | None = None
    custom_domain: str | None = None


class DstackAppFullResponse(SchemaModel):
    id: ProjectId
    name: str
    app_id: str
    app_provision_type: str | None = None
    app_icon_url: str | None = None
    created_at: str
    kms_type: str
    profile: ProfileGetResponse | None = None
    current_cvm: CvmBasicInfo | None = None
    cvms: list[CvmBasicInfo] = Field(default_factory=list)
    cvm_count: int = 0
    team_slug: str | None = None
    team_name: str | None = None


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


#: Picks the variant of an app item; any non-object is rejected with one clear error.
APP_DISCRIMINATOR: Final = Discriminator(
    app_variant, custom_error_type="object_type", custom_error_message="Input should be an object"
)

#: One ``dstack_apps`` item: ``anyOf [DstackAppFullResponse, DstackAppMinimalResponse]``, told apart
#: by ``id`` (a string in one, null in the other), so an error names the fields of one variant.
DstackApp = Annotated[
    Annotated[DstackAppFullResponse, Tag("DstackAppFullResponse")]
    | Annotated[DstackAppMinimalResponse, Tag("DstackAppMinimalResponse")],
    APP_DISCRIMINATOR,
]


class DstackAppListResponse(SchemaModel):
    dstack_apps: list[DstackApp]
    page: int
    page_size: int
    total: int
    total_pages: int


# --- Page envelopes, items left for one-by-one validation (every version so far) ---------------


class CvmPageEnvelope(SchemaModel):
    """``GET /cvms/paginated`` envelope with the items unvalidated (each is validated alone)."""

    items: list[Any]
    total: int
    page: int
    page_size: int
    pages: int


class AppPageEnvelope(SchemaModel):
    """``GET /apps`` envelope with the items unvalidated (each is validated alone)."""

    dstack_apps: list[Any]
    page: int
    page_size: int
    total: int
    total_pages: int


CVM_ITEM: Final = TypeAdapter(HostedCvm)
APP_ITEM: Final[TypeAdapter[DstackAppFullResponse | DstackAppMinimalResponse]] = TypeAdapter(
    DstackApp
)
CVM_ENVELOPE: Final = TypeAdapter(CvmPageEnvelope)
APP_ENVELOPE: Final = TypeAdapter(AppPageEnvelope)


# --- Mapping to canonical records ----------------------------------------------------------------


def cvm_entity_id(item: object) -> str | None:
    """The normalized VM UUID (``hosted.id``) of a raw, maybe invalid, item; None if not shown."""
    if isinstance(item, dict):
        hosted = item.get("hosted")
        if isinstance(hosted, dict):
            vm_uuid = hosted.get("id")
            if isinstance(vm_uuid, str):
                return normalize_vm_uuid(vm_uuid)
    return None


def app_entity_id(item: object) -> str | None:
    """The ``app_id`` of a raw, possibly invalid, app item; None if not shown."""
    if isinstance(item, dict):
        app_id = item.get("app_id")
        if isinstance(app_id, str):
            return app_id
    return None


def normalize_cvm(item: HostedCvm, raw: bytes) -> CvmBundle:
    """Map a ``HostedCvm``; this version has no workspace, creator, OS, resource or timestamps."""
    hosted = item.hosted
    node = item.node
    kms = item.kms_info
    cvm = CvmRecord(
        vm_uuid=normalize_vm_uuid(hosted.id),
        name=item.name,
        app_id=hosted.app_id,
        instance_id=hosted.instance_id,
        status=item.status,
        in_progress=item.in_progress,
        listed=item.listed,
        vcpu=item.vcpu,
        memory_mb=item.memory,
        disk_gb=item.disk_size,
        billing_period=item.billing_period,
        node_id=node.id if node is not None else None,
        project_type=item.project_type,
        gateway_domain=item.gateway_domain,
        kms_chain_id=kms.chain_id if kms is not None else None,
    )
    node_record = (
        NodeRecord(node_id=node.id, name=node.name, region=node.region_identifier)
        if node is not None
        else None
    )
    # managed_user has an integer id from another id space than the hashed creator ids: unmapped.
    return CvmBundle(cvm=cvm, node=node_record, workspace=None, creator=None, raw=raw)


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


def normalize_app(item: DstackAppFullResponse | DstackAppMinimalResponse, raw: bytes) -> AppBundle:
    """Map a full or minimal app; ``team_slug``/``team_name`` exist in this version only."""
    if isinstance(item, DstackAppMinimalResponse):
        return minimal_app_bundle(item.app_id, raw)
    return app_bundle(item, raw, team_slug=item.team_slug, team_name=item.team_name)
