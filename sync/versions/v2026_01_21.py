"""API version 2026-01-21 (also 2026-05-22 and 2026-06-23): list response models and their mapper.

The models mirror the OpenAPI component schemas of ``GET /cvms/paginated`` (``PaginatedCvmInfos``
of ``CVMInfo`` with ``CVMResourceInfo``, ``NodeRef``, ``CVMOSInfo``, ``CVMKmsInfo``, ...) and of
``GET /apps`` (``DstackAppListResponse`` of ``DstackAppFullResponse`` with full ``CVMInfo`` members,
or ``DstackAppMinimalResponse``), under the rules of :mod:`sync.versions.common`: required/optional
and nullable exactly as in the schema, JSON-strict types, date-times as aware UTC datetimes, unknown
fields kept at every level, and **open enums**: ``kms_type`` (``KmsType``),
``resource.billing_period`` (``BillingPeriod``) and ``node_info.status`` (``TeepodStatus``) accept
any string, because the server keeps adding values and a new one is data, not drift.
``object_type`` constants stay exact. Components the same in every version are imported from
:mod:`sync.versions.common`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import Field, StringConstraints, Tag, TypeAdapter

from sync.records import (
    UNKNOWN,
    AppBundle,
    CreatorRecord,
    CvmBundle,
    CvmRecord,
    Known,
    NodeRecord,
    WorkspaceRecord,
    memory_gb_to_mb,
    normalize_vm_uuid,
)
from sync.versions.common import (
    APP_DISCRIMINATOR,
    APP_ENVELOPE,
    CVM_ENVELOPE,
    AppPage,
    AppPageEnvelope,
    CvmNetworkUrls,
    CvmPage,
    CvmPageEnvelope,
    DateTime,
    DstackAppFull,
    DstackAppMinimalResponse,
    ListShape,
    ProfileGetResponse,
    SchemaModel,
    app_bundle,
    app_entity_id,
    minimal_app_bundle,
)

__all__ = [
    "APP_ENVELOPE",
    "APP_ITEM",
    "CVM_ENVELOPE",
    "CVM_ITEM",
    "SHAPE",
    "AppPageEnvelope",
    "CVMGatewayInfo",
    "CVMInfo",
    "CVMKmsInfo",
    "CVMLogUrls",
    "CVMOSInfo",
    "CVMProgressInfo",
    "CVMResourceInfo",
    "CvmNetworkUrls",
    "CvmPageEnvelope",
    "DstackApp",
    "DstackAppFullResponse",
    "DstackAppListResponse",
    "DstackAppMinimalResponse",
    "NodeRef",
    "PaginatedCvmInfos",
    "ProfileGetResponse",
    "UserRef",
    "WorkspaceRef",
    "app_entity_id",
    "cvm_entity_id",
    "normalize_app",
    "normalize_cvm",
]

#: The list shape this module's models describe (see :data:`~sync.versions.common.ListShape`).
SHAPE: Final[ListShape] = "2026-01-21"

CvmId = Annotated[str, StringConstraints(pattern=r"^cvm_.+")]
WorkspaceId = Annotated[str, StringConstraints(pattern=r"^wks_.+")]
UserId = Annotated[str, StringConstraints(pattern=r"^usr_.+")]


# --- GET /cvms/paginated -------------------------------------------------------------------------


class CVMResourceInfo(SchemaModel):
    instance_type: str | None = None
    vcpu: int | None = None
    memory_in_gb: float | None = None
    disk_in_gb: int | None = None
    gpus: int | None = None
    compute_billing_price: str | None = None  # format: decimal, kept as the string given
    billing_period: str | None = None  # BillingPeriod skip|hourly|monthly: open


class NodeRef(SchemaModel):
    object_type: Literal["node"] = "node"
    id: int | None = None
    node_id: int | None = None
    name: str | None = None
    region: str | None = None
    device_id: str | None = None
    ppid: str | None = None
    status: str | None = None  # TeepodStatus ONLINE|OFFLINE|MAINTENANCE: open
    version: str | None = None


class CVMOSInfo(SchemaModel):
    name: str | None = None
    version: str | None = None
    is_dev: bool | None = None
    os_image_hash: str | None = None


class CVMKmsInfo(SchemaModel):
    chain_id: int | None = None
    dstack_kms_address: str | None = None
    dstack_app_address: str | None = None
    deployer_address: str | None = None
    rpc_endpoint: str | None = None
    encrypted_env_pubkey: str | None = None


class CVMProgressInfo(SchemaModel):
    target: str | None = None
    started_at: DateTime | None = None
    correlation_id: str | None = None


class CVMGatewayInfo(SchemaModel):
    base_domain: str | None = None
    cname: str | None = None


class CVMLogUrls(SchemaModel):
    serial: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    container_log_base: str | None = None


class WorkspaceRef(SchemaModel):
    object_type: Literal["workspace"] = "workspace"
    id: WorkspaceId
    name: str
    slug: str | None = None
    avatar_url: str | None = None


class UserRef(SchemaModel):
    object_type: Literal["user"] = "user"
    id: UserId | None = None
    username: str | None = None
    avatar_url: str | None = None


class CVMInfo(SchemaModel):
    """One item of ``GET /cvms/paginated``, and a member of an app in ``GET /apps``."""

    id: CvmId
    name: str
    app_id: str | None = None
    vm_uuid: str | None = None
    instance_id: str | None = None
    resource: CVMResourceInfo
    node_info: NodeRef | None = None
    os: CVMOSInfo | None = None
    kms_type: str | None = None  # KmsType phala|ethereum|base|legacy: open
    kms_info: CVMKmsInfo | None = None
    status: str
    in_progress: bool = False
    progress: CVMProgressInfo | None = None
    compose_hash: str | None = None
    docker_compose_hash: str | None = None
    pre_launch_script_hash: str | None = None
    gateway: CVMGatewayInfo
    logs: CVMLogUrls = Field(default_factory=CVMLogUrls)
    services: list[dict[str, Any]] = Field(default_factory=list)
    endpoints: list[CvmNetworkUrls] | None = None
    public_logs: bool = False
    public_sysinfo: bool = False
    public_tcbinfo: bool = True
    gateway_enabled: bool = False
    secure_time: bool = False
    storage_fs: str = "zfs"
    workspace: WorkspaceRef | None = None
    creator: UserRef | None = None
    created_at: DateTime | None = None
    deleted_at: DateTime | None = None
    listed: bool = False
    project_type: str | None = None


class PaginatedCvmInfos(CvmPage[CVMInfo]):
    """A page of ``GET /cvms/paginated``."""


# --- GET /apps -----------------------------------------------------------------------------------


class DstackAppFullResponse(DstackAppFull[CVMInfo]):
    """A full app: the fields of every version, with full ``CVMInfo`` members."""


#: One ``dstack_apps`` item: full or minimal, told apart by ``id`` (:data:`APP_DISCRIMINATOR`).
DstackApp = Annotated[
    Annotated[DstackAppFullResponse, Tag("DstackAppFullResponse")]
    | Annotated[DstackAppMinimalResponse, Tag("DstackAppMinimalResponse")],
    APP_DISCRIMINATOR,
]


class DstackAppListResponse(AppPage[DstackApp]):
    """A page of ``GET /apps``."""


CVM_ITEM: Final = TypeAdapter(CVMInfo)
APP_ITEM: Final[TypeAdapter[DstackAppFullResponse | DstackAppMinimalResponse]] = TypeAdapter(
    DstackApp
)


# --- Mapping to canonical records ----------------------------------------------------------------


def _utc(value: datetime | None) -> datetime | None:
    """A date-time in UTC (OverflowError at the ends of the datetime range)."""
    return value.astimezone(UTC) if value is not None else None


def _vm_uuid(vm_uuid: str | None, cvm_id: str) -> str:
    """The CVM key: the normalized ``vm_uuid``, or the hashed ``id`` as is when it is null."""
    return normalize_vm_uuid(vm_uuid) if vm_uuid is not None else cvm_id


def cvm_entity_id(item: object) -> str | None:
    """The CVM key of a raw, maybe invalid, item (``vm_uuid``, else ``id``); None if not shown."""
    if isinstance(item, dict):
        vm_uuid = item.get("vm_uuid")
        if isinstance(vm_uuid, str):
            return normalize_vm_uuid(vm_uuid)
        cvm_id = item.get("id")
        if vm_uuid is None and isinstance(cvm_id, str):
            return cvm_id
    return None


#: The parts of ``hourly_rate`` (the Python SDK's ``CvmHourlyRateV20260121``), as record fields.
HOURLY_RATE_PARTS: Final = (
    ("total", "hourly_rate_total"),
    ("compute", "hourly_rate_compute"),
    ("disk", "hourly_rate_disk"),
)


def hourly_rate_fields(item: CVMInfo) -> dict[str, Known[str | None]]:
    """``hourly_rate`` {total, compute, disk} as the ``hourly_rate_*`` fields.

    Not in the OpenAPI schema, so not modeled (a number there must not quarantine an item): it is
    read from the item's unknown fields. Absent: UNKNOWN (this server does not send it, the last
    known rate stays); null: every part None; an object: each part kept as the decimal text sent,
    and None when absent, null or not a string; a bare string: the total.
    """
    extra = item.model_extra or {}
    if "hourly_rate" not in extra:
        return dict.fromkeys((name for _, name in HOURLY_RATE_PARTS), UNKNOWN)
    rate = extra["hourly_rate"]
    # A bare decimal string (as ``GET /instance-types`` gives it) is the total.
    parts = rate if isinstance(rate, dict) else {"total": rate}
    return {
        name: value if isinstance(value := parts.get(part), str) else None
        for part, name in HOURLY_RATE_PARTS
    }


def normalize_cvm(item: CVMInfo, raw: bytes) -> CvmBundle:
    """Map a ``CVMInfo`` and its embedded node, workspace and creator."""
    resource = item.resource
    node = item.node_info
    node_id = None if node is None else (node.id if node.id is not None else node.node_id)
    os = item.os
    kms = item.kms_info
    workspace = item.workspace
    creator = item.creator
    creator_id = creator.id if creator is not None else None
    cvm = CvmRecord(
        vm_uuid=_vm_uuid(item.vm_uuid, item.id),
        cvm_id=item.id,
        name=item.name,
        app_id=item.app_id,
        instance_id=item.instance_id,
        status=item.status,
        in_progress=item.in_progress,
        listed=item.listed,
        vcpu=resource.vcpu,
        memory_mb=memory_gb_to_mb(resource.memory_in_gb),
        disk_gb=resource.disk_in_gb,
        instance_type=resource.instance_type,
        gpus=resource.gpus,
        billing_period=resource.billing_period,
        compute_billing_price=resource.compute_billing_price,
        node_id=node_id,
        workspace_id=workspace.id if workspace is not None else None,
        creator_id=creator_id,
        project_type=item.project_type,
        gateway_domain=item.gateway.base_domain,
        kms_type=item.kms_type,
        kms_chain_id=kms.chain_id if kms is not None else None,
        os_name=os.name if os is not None else None,
        os_version=os.version if os is not None else None,
        os_image_hash=os.os_image_hash if os is not None else None,
        os_is_dev=os.is_dev if os is not None else None,
        compose_hash=item.compose_hash,
        gateway_enabled=item.gateway_enabled,
        public_logs=item.public_logs,
        public_sysinfo=item.public_sysinfo,
        public_tcbinfo=item.public_tcbinfo,
        secure_time=item.secure_time,
        storage_fs=item.storage_fs,
        created_at=_utc(item.created_at),
        api_deleted_at=_utc(item.deleted_at),
        **hourly_rate_fields(item),
    )
    node_record = (
        NodeRecord(
            node_id=node_id,
            name=node.name,
            region=node.region,
            device_id=node.device_id,
            ppid=node.ppid,
            status=node.status,
            version=node.version,
        )
        if node is not None and node_id is not None
        else None
    )
    workspace_record = (
        WorkspaceRecord(
            workspace_id=workspace.id,
            name=workspace.name,
            slug=workspace.slug,
            avatar_url=workspace.avatar_url,
        )
        if workspace is not None
        else None
    )
    creator_record = (
        CreatorRecord(
            creator_id=creator_id, username=creator.username, avatar_url=creator.avatar_url
        )
        if creator is not None and creator_id is not None
        else None
    )
    return CvmBundle(
        cvm=cvm, node=node_record, workspace=workspace_record, creator=creator_record, raw=raw
    )


def normalize_app(item: DstackAppFullResponse | DstackAppMinimalResponse, raw: bytes) -> AppBundle:
    """Map a full or minimal app; this version has no ``team_slug``/``team_name``."""
    if isinstance(item, DstackAppMinimalResponse):
        return minimal_app_bundle(item.app_id, raw)
    return app_bundle(item, raw)
