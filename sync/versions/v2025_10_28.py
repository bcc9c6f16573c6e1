"""API version 2025-10-28 (legacy): response models of the two list endpoints, and their mapper.

The models mirror the server's OpenAPI component schemas (``PaginatedHostedCvms`` / ``HostedCvm`` /
``VmInfo`` ... for ``GET /cvms/paginated``; ``DstackAppListResponse`` with ``DstackAppFullResponse``
| ``DstackAppMinimalResponse`` and ``CvmBasicInfo`` for ``GET /apps``) field for field, under the
rules of :mod:`sync.versions.common`, which also holds the components every version shares (the
base model, :data:`DateTime`, ``CvmNetworkUrls``, ``ProfileGetResponse``, the fields of a full app,
``DstackAppMinimalResponse`` and the page envelopes).

:func:`normalize_cvm` and :func:`normalize_app` map items to the canonical records of
:mod:`sync.records`; what this version does not carry is :data:`~sync.records.UNKNOWN`.
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import Field, StringConstraints, Tag, TypeAdapter

from sync.records import AppBundle, CvmBundle, CvmRecord, NodeRecord, normalize_vm_uuid
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
    ProjectId,
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
    "AppComposeV2",
    "AppPageEnvelope",
    "CvmBasicInfo",
    "CvmNetworkUrls",
    "CvmNode",
    "CvmPageEnvelope",
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
    "VmConfiguration",
    "VmInfo",
    "app_entity_id",
    "cvm_entity_id",
    "normalize_app",
    "normalize_cvm",
]

#: The list shape this module's models describe (see :data:`~sync.versions.common.ListShape`).
SHAPE: Final[ListShape] = "2025-10-28"

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


class PaginatedHostedCvms(CvmPage[HostedCvm]):
    """A page of ``GET /cvms/paginated``."""


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


class DstackAppFullResponse(DstackAppFull[CvmBasicInfo]):
    """A full app: the fields of every version, ``CvmBasicInfo`` members, and its team."""

    team_slug: str | None = None
    team_name: str | None = None


#: One ``dstack_apps`` item: ``anyOf [DstackAppFullResponse, DstackAppMinimalResponse]``, told apart
#: by ``id`` (a string in one, null in the other), so an error names the fields of one variant.
DstackApp = Annotated[
    Annotated[DstackAppFullResponse, Tag("DstackAppFullResponse")]
    | Annotated[DstackAppMinimalResponse, Tag("DstackAppMinimalResponse")],
    APP_DISCRIMINATOR,
]


class DstackAppListResponse(AppPage[DstackApp]):
    """A page of ``GET /apps``."""


CVM_ITEM: Final = TypeAdapter(HostedCvm)
APP_ITEM: Final[TypeAdapter[DstackAppFullResponse | DstackAppMinimalResponse]] = TypeAdapter(
    DstackApp
)


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


def normalize_app(item: DstackAppFullResponse | DstackAppMinimalResponse, raw: bytes) -> AppBundle:
    """Map a full or minimal app; ``team_slug``/``team_name`` exist in this version only."""
    if isinstance(item, DstackAppMinimalResponse):
        return minimal_app_bundle(item.app_id, raw)
    return app_bundle(item, raw, team_slug=item.team_slug, team_name=item.team_name)
