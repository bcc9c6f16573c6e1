"""The simulated fleet's entities and their canonical (``sync.records``) view.

Entities are plain mutable objects holding the *facts* of the fleet; :mod:`.render` turns them into
each version's JSON and :func:`cvm_record` & co. into the canonical field names of
:mod:`sync.records` (``CvmRecord``, ``NodeRecord``, ``WorkspaceRecord``, ``CreatorRecord``,
``AppRecord``), which is the vocabulary of the evolve ground truth. Canonical values are JSON
values: datetimes are ISO 8601 strings, the VM UUID is normalized (lower case, no dashes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sync.records import AppRecord, normalize_vm_uuid

JsonDict = dict[str, Any]


def iso(value: datetime) -> str:
    """RFC 3339 text in UTC with a ``Z``, to the second (the form every payload uses)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


@dataclass(slots=True, eq=False)
class Node:
    """A TEE node (teepod) in a region."""

    id: int
    name: str
    region: str
    device_id: str
    ppid: str
    status: str  # ONLINE | OFFLINE | MAINTENANCE
    version: str
    published: bool = False


@dataclass(slots=True, eq=False)
class Kms:
    """A key management service a CVM's app is bound to."""

    id: str  # kms_...
    slug: str
    url: str
    version: str
    kms_type: str  # phala | ethereum | base | legacy
    chain_id: int | None
    contract_address: str | None
    gateway_app_id: str | None
    rpc_endpoint: str | None


@dataclass(slots=True, eq=False)
class Workspace:
    """A workspace (team) shared by many CVMs and apps."""

    id: str  # wks_...
    name: str
    slug: str | None
    avatar_url: str | None
    published: bool = False


@dataclass(slots=True, eq=False)
class Creator:
    """A user; ``number`` is the internal integer id the legacy ``managed_user`` shows."""

    number: int
    id: str  # usr_...
    username: str
    avatar_url: str | None
    published: bool = False


class OsImage(NamedTuple):
    """The OS image a CVM runs."""

    name: str
    version: str
    is_dev: bool
    image_hash: str


@dataclass(slots=True, eq=False)
class Profile:
    display_name: str | None
    avatar_url: str | None
    description: str | None
    custom_domain: str | None


@dataclass(slots=True, eq=False)
class App:
    """A dstack app; a minimal app (``project_id is None``) is listed with only its ``app_id``."""

    seq: int
    app_id: str  # 40 hex
    project_id: str | None  # prj_...; None for a minimal app
    name: str | None
    provision_type: str | None
    icon_url: str | None
    created_at: datetime
    created_iso: str
    kms: Kms | None
    profile: Profile | None
    workspace: Workspace | None
    gateway_domain: str | None
    members: list[Cvm] = field(default_factory=list)  # live CVMs, in creation order
    published: bool = False

    @property
    def minimal(self) -> bool:
        return self.project_id is None

    @property
    def current(self) -> Cvm | None:
        """The app's current CVM: its most recently created live one."""
        return self.members[-1] if self.members else None


@dataclass(slots=True, eq=False)
class Cvm:
    """One confidential VM: every fact any version shows, once."""

    seq: int  # creation sequence: the listing order (newest first)
    vm_uuid: str  # dashed, lower case
    hashid: str  # cvm_...
    dashless: bool  # current versions render the UUID without dashes
    name: str
    app: App
    instance_id: str | None
    status: str
    in_progress: bool
    listed: bool
    instance_type: str | None
    vcpu: int
    memory_mb: int
    disk_gb: int
    gpus: int | None
    price: str | None  # compute_billing_price, a decimal string
    billing_period: str | None
    node: Node | None
    workspace: Workspace | None
    creator: Creator | None
    project_type: str | None
    os: OsImage | None
    compose_hash: str | None
    public_logs: bool
    public_sysinfo: bool
    public_tcbinfo: bool
    gateway_enabled: bool
    secure_time: bool
    storage_fs: str
    created_at: datetime
    created_iso: str
    updated_iso: str  # the fleet clock at its last change (a non-canonical field)
    uptime: str
    boot_error: str | None
    variant: int  # random bits choosing which optional fields are absent or null
    live: bool = True
    published: bool = False

    @property
    def key(self) -> str:
        return normalize_vm_uuid(self.vm_uuid)

    @property
    def kms(self) -> Kms | None:
        return self.app.kms


def cvm_record(c: Cvm) -> JsonDict:
    """The CVM's canonical ``CvmRecord`` fields, as JSON values."""
    kms = c.kms
    os_ = c.os
    return {
        "vm_uuid": c.key,
        "cvm_id": c.hashid,
        "name": c.name,
        "app_id": c.app.app_id,
        "instance_id": c.instance_id,
        "status": c.status,
        "in_progress": c.in_progress,
        "listed": c.listed,
        "vcpu": c.vcpu,
        "memory_mb": c.memory_mb,
        "disk_gb": c.disk_gb,
        "instance_type": c.instance_type,
        "gpus": c.gpus,
        "billing_period": c.billing_period,
        "compute_billing_price": c.price,
        "node_id": c.node.id if c.node else None,
        "workspace_id": c.workspace.id if c.workspace else None,
        "creator_id": c.creator.id if c.creator else None,
        "project_type": c.project_type,
        "gateway_domain": c.app.gateway_domain,
        "kms_type": kms.kms_type if kms else None,
        "kms_chain_id": kms.chain_id if kms else None,
        "os_name": os_.name if os_ else None,
        "os_version": os_.version if os_ else None,
        "os_image_hash": os_.image_hash if os_ else None,
        "os_is_dev": os_.is_dev if os_ else None,
        "compose_hash": c.compose_hash,
        **compose_settings(c),
        "created_at": c.created_iso,
        "api_deleted_at": None,
    }


def compose_settings(c: Cvm) -> JsonDict:
    """The CVM's app-compose settings, named as in its record and the legacy compose file."""
    return {
        "gateway_enabled": c.gateway_enabled,
        "public_logs": c.public_logs,
        "public_sysinfo": c.public_sysinfo,
        "public_tcbinfo": c.public_tcbinfo,
        "secure_time": c.secure_time,
        "storage_fs": c.storage_fs,
    }


def node_record(n: Node) -> JsonDict:
    return {
        "node_id": n.id,
        "name": n.name,
        "region": n.region,
        "device_id": n.device_id,
        "ppid": n.ppid,
        "status": n.status,
        "version": n.version,
    }


def workspace_record(w: Workspace) -> JsonDict:
    return {"workspace_id": w.id, "name": w.name, "slug": w.slug, "avatar_url": w.avatar_url}


def creator_record(u: Creator) -> JsonDict:
    return {"creator_id": u.id, "username": u.username, "avatar_url": u.avatar_url}


def app_record(a: App) -> JsonDict:
    """The app's canonical ``AppRecord`` fields (a minimal app: everything but app_id is null)."""
    if a.minimal:
        record: JsonDict = dict.fromkeys(AppRecord.field_names())
        record["app_id"] = a.app_id
        return record
    p = a.profile
    current = a.current
    ws = a.workspace
    return {
        "app_id": a.app_id,
        "project_id": a.project_id,
        "name": a.name,
        "app_provision_type": a.provision_type,
        "app_icon_url": a.icon_url,
        "created_at": a.created_iso,
        "kms_type": a.kms.kms_type if a.kms else None,
        "profile_display_name": p.display_name if p else None,
        "profile_avatar_url": p.avatar_url if p else None,
        "profile_description": p.description if p else None,
        "profile_custom_domain": p.custom_domain if p else None,
        "cvm_count": len(a.members),
        "current_vm_uuid": current.key if current else None,
        # Legacy (2025-10-28) only: the app's workspace as "team".
        "team_slug": ws.slug if ws else None,
        "team_name": ws.name if ws else None,
    }
