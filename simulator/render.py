"""Per-version JSON rendering of fleet entities, straight to dicts (never through pydantic models).

Two shapes cover the four versions (see :mod:`.versions`): ``legacy`` renders ``HostedCvm`` items
and ``CvmBasicInfo`` app members, ``current`` renders ``CVMInfo`` for both. Every fact comes from
the same :class:`~.model.Cvm`, so a CVM shows the same facts in every version. Optional fields are
absent or null per CVM (chosen by ``Cvm.variant``, so stable across renders), and current items
carry fields newer servers send that the 2026-01-21 schema does not list, in the shapes the
official Python SDK gives them (see :mod:`simulator` for where the SDKs and OpenAPI differ).

Decorative values (addresses, hashes, URLs) are derived from the fleet salt and the entity's
sequence number, so they cost no memory and never change unless the facts do.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import orjson

from simulator.model import (
    App,
    Creator,
    Cvm,
    JsonDict,
    Kms,
    OsImage,
    Workspace,
    compose_settings,
)
from simulator.paging import page_count
from simulator.shapes import Shape


def derived_hex(salt: int, seq: int, tag: str, nbytes: int) -> str:
    """A stable pseudo-random hex string for one decorative field of one entity."""
    return hashlib.blake2b(f"{salt}:{seq}:{tag}".encode(), digest_size=nbytes).hexdigest()


# Masks over ``Cvm.variant``: an optional field (or its null or absent form) shows when every bit
# of its mask is set.
_DEVICE_IDS = 0x3  # current: node_info.device_ids
_K256_PUBKEY = 0x6  # current: kms_info.k256_pubkey
_NULL_PROGRESS = 0x4  # current: progress null, not absent, when nothing is in progress
_IMAGE_HASHES = 0x18  # current: docker_compose_hash and pre_launch_script_hash
_CNAME = 0x30  # current: gateway.cname
_LOGS = 0xE0  # current: logs
_NO_CONFIGURATION = 0x80  # legacy: hosted.configuration null
_ALLOW_UPGRADE = 0x200  # legacy: allow_upgrade true
_UNLISTED_FIELDS = 0xC00  # current: the fields newer servers send beyond the schema
_NO_NULL_ENDPOINTS = 0x1000  # current: endpoints absent, not null
_SERVICES = 0x6000  # current: services listed (a running CVM, either bit set)


def _shows(c: Cvm, mask: int) -> bool:
    """Whether every bit of ``mask`` is set in the CVM's variant."""
    return c.variant & mask == mask


# ------------------------------------------------------------------ facts both shapes show


def _app_url(c: Cvm) -> str | None:
    domain = c.app.gateway_domain
    return f"https://{c.app.app_id}-8090.{domain}" if domain else None


def _public_urls(c: Cvm) -> list[JsonDict] | None:
    """The app's and the instance's public URLs (None without a gateway domain or instance)."""
    domain = c.app.gateway_domain
    if domain is None or c.instance_id is None:
        return None
    return [
        {"app": f"https://{c.app.app_id}.{domain}", "instance": f"https://{c.instance_id}.{domain}"}
    ]


def _app_address(app: App) -> str:
    """The on-chain address of an app bound to an on-chain KMS."""
    return "0x" + app.app_id


def _deployer_address(app: App, salt: int) -> str:
    return "0x" + derived_hex(salt, app.seq, "deployer", 20)


def _image(app: App) -> str:
    """The container image of the app's compose file."""
    return f"ghcr.io/example/{app.seq}:latest"


def _machine_info(c: Cvm) -> JsonDict:
    return {"vcpu": c.vcpu, "memory": c.memory_mb, "disk_size": c.disk_gb, "gpu_count": c.gpus or 0}


# ------------------------------------------------------------------ current (CVMInfo)


def cvm_current(c: Cvm, salt: int) -> JsonDict:
    """A ``CVMInfo`` item (2026-01-21 and later)."""
    kms = c.kms
    return {
        "id": c.hashid,
        "name": c.name,
        "app_id": c.app.app_id,
        "vm_uuid": c.vm_uuid.replace("-", "") if c.dashless else c.vm_uuid,
        "instance_id": c.instance_id,
        "resource": _resource(c),
        "node_info": _node_info(c),
        "os": _os_info(c.os),
        "kms_type": kms.kms_type if kms else None,
        "kms_info": _kms_info(c, salt),
        "status": c.status,
        "in_progress": c.in_progress,
        **_progress(c, salt),
        "compose_hash": c.compose_hash,
        **_image_hashes(c, salt),
        "gateway": _gateway(c),
        **_logs(c),
        "services": _services(c),
        **_endpoints(c),
        **compose_settings(c),
        "workspace": _workspace_ref(c.workspace),
        "creator": _creator_ref(c.creator),
        "created_at": c.created_iso,
        "deleted_at": None,
        "listed": c.listed,
        "project_type": c.project_type,
        # Fields newer servers send that the 2026-01-21 schema does not list.
        "updated_at": c.updated_iso,
        **_unlisted_fields(c),
    }


def _resource(c: Cvm) -> JsonDict:
    return {
        "instance_type": c.instance_type,
        "vcpu": c.vcpu,
        "memory_in_gb": c.memory_mb / 1024,
        "disk_in_gb": c.disk_gb,
        "gpus": c.gpus,
        "compute_billing_price": c.price,
        "billing_period": c.billing_period,
    }


def _node_info(c: Cvm) -> JsonDict | None:
    node = c.node
    if node is None:
        return None
    info: JsonDict = {
        "object_type": "node",
        "id": node.id,
        "name": node.name,
        "region": node.region,
        "device_id": node.device_id,
        "ppid": node.ppid,
        "status": node.status,
        "version": node.version,
    }
    if _shows(c, _DEVICE_IDS):
        # The Python SDK's shape (``NodeRef.device_ids: list[DeviceIdEntry]``), not strings.
        info["device_ids"] = [_device_id_entry(node.device_id)]
    return info


def _device_id_entry(device_id: str) -> JsonDict:
    """A ``node_info.device_ids`` entry (the Python SDK's ``DeviceIdEntry``)."""
    return {"device_id": device_id, "algorithm_version": "v1", "os_image_ids": [], "enabled": True}


def _os_info(os_: OsImage | None) -> JsonDict | None:
    if os_ is None:
        return None
    return {
        "name": os_.name,
        "version": os_.version,
        "is_dev": os_.is_dev,
        "os_image_hash": os_.image_hash,
    }


def _kms_info(c: Cvm, salt: int) -> JsonDict | None:
    kms = c.kms
    if kms is None:
        return None
    onchain = kms.chain_id is not None
    info: JsonDict = {
        "chain_id": kms.chain_id,
        "dstack_kms_address": kms.contract_address,
        "dstack_app_address": _app_address(c.app) if onchain else None,
        "deployer_address": _deployer_address(c.app, salt) if onchain else None,
        "rpc_endpoint": kms.rpc_endpoint,
        "encrypted_env_pubkey": derived_hex(salt, c.seq, "envkey", 32),
    }
    if _shows(c, _K256_PUBKEY):
        info["k256_pubkey"] = "02" + derived_hex(salt, c.seq, "k256", 32)
    return info


def _progress_target(status: str) -> str:
    return {"stopping": "stopped", "shutting_down": "stopped"}.get(status, "running")


def _progress(c: Cvm, salt: int) -> JsonDict:
    """``progress``: an object while an operation runs, otherwise null or absent."""
    if c.in_progress:
        return {
            "progress": {
                "target": _progress_target(c.status),
                "started_at": c.updated_iso,
                "correlation_id": derived_hex(salt, c.seq, f"corr{c.status}", 16),
            }
        }
    return {"progress": None} if _shows(c, _NULL_PROGRESS) else {}


def _image_hashes(c: Cvm, salt: int) -> JsonDict:
    if not _shows(c, _IMAGE_HASHES):
        return {}
    return {
        "docker_compose_hash": derived_hex(salt, c.app.seq, "dc", 32),
        "pre_launch_script_hash": None,
    }


def _gateway(c: Cvm) -> JsonDict:
    domain = c.app.gateway_domain
    cname = None if domain is None or not _shows(c, _CNAME) else f"{c.app.app_id[:12]}.{domain}"
    return {"base_domain": domain, "cname": cname}


def _logs(c: Cvm) -> JsonDict:
    base = _app_url(c)
    if base is None or not _shows(c, _LOGS):
        return {}
    return {
        "logs": {
            "serial": f"{base}/logs/serial",
            "stdout": f"{base}/logs/stdout",
            "stderr": f"{base}/logs/stderr",
            "container_log_base": f"{base}/logs/containers",
        }
    }


def _services(c: Cvm) -> list[JsonDict]:
    if c.status != "running" or not c.variant & _SERVICES:
        return []
    return [{"name": "app", "image": _image(c.app), "status": "running"}]


def _endpoints(c: Cvm) -> JsonDict:
    """``endpoints``: the public URLs when the gateway serves them, otherwise null or absent."""
    urls = _public_urls(c) if c.gateway_enabled else None
    if urls is None and _shows(c, _NO_NULL_ENDPOINTS):
        return {}
    return {"endpoints": urls}


def _workspace_ref(ws: Workspace | None) -> JsonDict | None:
    if ws is None:
        return None
    return {
        "object_type": "workspace",
        "id": ws.id,
        "name": ws.name,
        "slug": ws.slug,
        "avatar_url": ws.avatar_url,
    }


def _creator_ref(u: Creator | None) -> JsonDict | None:
    if u is None:
        return None
    return {"object_type": "user", "id": u.id, "username": u.username, "avatar_url": u.avatar_url}


def _unlisted_fields(c: Cvm) -> JsonDict:
    """The fields beyond ``updated_at`` that newer servers send (for some CVMs)."""
    if not _shows(c, _UNLISTED_FIELDS):
        return {}
    return {
        "app_url": _app_url(c),
        "base_image": c.os.name if c.os else None,
        "features": ["kms", "tproxy-net"],
        "runner": "docker-compose",
        # The Python SDK's shapes: ``manifest_version: str`` (the compose file's own
        # ``manifest_version`` is an integer) and ``hourly_rate`` an object of decimal strings.
        "manifest_version": "2",
        "hourly_rate": _hourly_rate(c.price),
        "billing_interval": "hour" if c.billing_period == "hourly" else "month",
        "gpu_rental_order": None,
    }


def hourly_rate_record(c: Cvm) -> JsonDict:
    """The canonical ``hourly_rate_*`` fields of a CVM's current items: empty when its items do
    not send ``hourly_rate`` (the fields are then unknown, not null)."""
    if not _shows(c, _UNLISTED_FIELDS):
        return {}
    rate = _hourly_rate(c.price) or {}
    return {f"hourly_rate_{part}": rate.get(part) for part in ("total", "compute", "disk")}


def _hourly_rate(price: str | None) -> JsonDict | None:
    """``hourly_rate`` in the Python SDK's shape (``CvmHourlyRateV20260121``).

    The compute price is the total: the simulator has no separate disk price, so ``disk`` is
    null. No price, no rate.
    """
    return None if price is None else {"total": price, "compute": price, "disk": None}


# ------------------------------------------------------------------ legacy (HostedCvm)


def cvm_legacy(c: Cvm, salt: int) -> JsonDict:
    """A ``HostedCvm`` item (2025-10-28)."""
    app, node, u = c.app, c.node, c.creator
    base = _app_url(c)
    return {
        "hosted": _hosted(c),
        "name": c.name,
        "managed_user": None if u is None else {"id": u.number, "username": u.username},
        "node": None
        if node is None
        else {"id": node.id, "name": node.name, "region_identifier": node.region},
        "listed": c.listed,
        "status": c.status,
        "in_progress": c.in_progress,
        "dapp_dashboard_url": None if base is None else f"{base}/dashboard",
        "syslog_endpoint": None if base is None else f"{base}/logs/syslog",
        "allow_upgrade": _shows(c, _ALLOW_UPGRADE),
        "project_id": app.project_id,
        "project_type": c.project_type,
        "billing_period": c.billing_period,
        "kms_info": _legacy_kms_info(c.kms),
        **_contract(c, salt),
        "vcpu": c.vcpu,
        "memory": c.memory_mb,
        "disk_size": c.disk_gb,
        "gateway_domain": app.gateway_domain,
        "public_urls": _public_urls(c) or [],
        # In the TypeScript SDK's model, not in the OpenAPI schema.
        "machine_info": _machine_info(c),
        "updated_at": c.updated_iso,
    }


def _hosted(c: Cvm) -> JsonDict:
    """The VM itself (``hosted``)."""
    os_ = c.os
    return {
        "id": c.vm_uuid,
        "name": c.name,
        "status": c.status,
        "uptime": c.uptime,
        "app_url": _app_url(c),
        "app_id": c.app.app_id,
        "instance_id": c.instance_id,
        "configuration": None if _shows(c, _NO_CONFIGURATION) else _configuration(c),
        # Always present (null while running): the server serializes it, and the official SDK
        # schema (@phala/cloud 0.2.9, VmInfoV20251028) requires the key; OpenAPI has it optional.
        "exited_at": c.updated_iso if c.status in ("exited", "stopped") else None,
        "boot_progress": "done" if c.status == "running" else None,
        "boot_error": c.boot_error,
        "shutdown_progress": None,
        "image_version": os_.version if os_ else None,
        "events": [
            {"event": "boot.progress", "body": "done", "timestamp": int(c.created_at.timestamp())},
        ],
    }


def _configuration(c: Cvm) -> JsonDict:
    """The VM's configuration (``hosted.configuration``), its compose file included."""
    kms, domain = c.kms, c.app.gateway_domain
    return {
        "name": c.name,
        "image": c.os.name if c.os else "dstack-0.3.6",
        "compose_file": {
            "name": c.name,
            "docker_compose_file": _compose_yaml(c),
            "kms_enabled": kms is not None,
            **compose_settings(c),
            "features": ["kms", "tproxy-net"],
            "manifest_version": 2,
            "runner": "docker-compose",
        },
        "vcpu": c.vcpu,
        "memory": c.memory_mb,
        "disk_size": c.disk_gb,
        "ports": None,
        "app_id": c.app.app_id,
        "hugepages": False,
        "pin_numa": False,
        "kms_urls": [kms.url] if kms else [],
        "gateway_urls": [f"https://gateway.{domain}"] if domain else [],
    }


def _compose_yaml(c: Cvm) -> str:
    return (
        "services:\n  app:\n"
        f"    image: {_image(c.app)}\n"
        "    restart: always\n    ports:\n      - '8080:8080'\n"
        "    volumes:\n      - /var/run/tappd.sock:/var/run/tappd.sock\n"
        f"    environment:\n      - APP_NAME={c.app.name or c.name}\n"
    )


def _legacy_kms_info(kms: Kms | None) -> JsonDict | None:
    if kms is None:
        return None
    return {
        "id": kms.id,
        "slug": kms.slug,
        "url": kms.url,
        "version": kms.version,
        "chain_id": kms.chain_id,
        "kms_contract_address": kms.contract_address,
        "gateway_app_id": kms.gateway_app_id,
    }


def _contract(c: Cvm, salt: int) -> JsonDict:
    """The app's on-chain addresses, for an app bound to an on-chain KMS (otherwise absent)."""
    kms = c.kms
    if kms is None or kms.chain_id is None:
        return {}
    return {
        "contract_address": _app_address(c.app),
        "deployer_address": _deployer_address(c.app, salt),
    }


def cvm_basic(c: Cvm) -> JsonDict:
    """A legacy app member (``CvmBasicInfo``): only full apps list members; theirs have nodes."""
    app = c.app
    kms = app.kms
    node = c.node
    assert node is not None, "only CVMs of minimal apps (which list no members) lack a node"
    return {
        "vm_uuid": c.vm_uuid,
        "app_id": app.app_id,
        "name": c.name,
        "status": c.status,
        "vcpu": c.vcpu,
        "memory": c.memory_mb,
        "disk_size": c.disk_gb,
        "teepod_id": node.id,
        "teepod_name": node.name,
        "region_identifier": node.region,
        "kms_type": kms.kms_type if kms else None,
        "instance_type": c.instance_type,
        "listed": c.listed,
        "base_image": c.os.name if c.os else None,
        "kms_slug": kms.slug if kms else None,
        "kms_id": kms.id if kms else None,
        "instance_id": c.instance_id,
        "machine_info": _machine_info(c),
        "updated_at": c.updated_iso,
    }


# ------------------------------------------------------------------ items and envelopes


def cvm_item(c: Cvm, shape: Shape, salt: int) -> JsonDict:
    """One ``/cvms/paginated`` item in the given shape."""
    return cvm_legacy(c, salt) if shape == "legacy" else cvm_current(c, salt)


_MINIMAL_KEYS = (
    "id",
    "name",
    "app_provision_type",
    "app_icon_url",
    "created_at",
    "kms_type",
    "profile",
    "current_cvm",
    "cvms",
    "cvm_count",
)


def app_item(a: App, shape: Shape, member: Callable[[Cvm], Any]) -> JsonDict:
    """One ``/apps`` item; ``member`` renders an app's CVM (a dict or an ``orjson.Fragment``)."""
    if a.minimal:
        if a.seq % 2:  # some servers send the keys as nulls, some leave them out
            return {"app_id": a.app_id}
        d: JsonDict = dict.fromkeys(_MINIMAL_KEYS)
        d["app_id"] = a.app_id
        return d
    p = a.profile
    current = a.current
    assert a.kms is not None  # a full app always has a KMS (its kms_type is required)
    d = {
        "id": a.project_id,
        "name": a.name,
        "app_id": a.app_id,
        "app_provision_type": a.provision_type,
        "app_icon_url": a.icon_url,
        "created_at": a.created_iso,
        "kms_type": a.kms.kms_type,
        "profile": None
        if p is None
        else {
            "display_name": p.display_name,
            "avatar_url": p.avatar_url,
            "description": p.description,
            "custom_domain": p.custom_domain,
        },
        "current_cvm": None if current is None else member(current),
        "cvms": [member(c) for c in a.members],
        "cvm_count": len(a.members),
    }
    if shape == "legacy" and a.workspace is not None:
        d["team_slug"] = a.workspace.slug
        d["team_name"] = a.workspace.name
    return d


def cvm_envelope(items: list[Any], total: int, page: int, page_size: int) -> bytes:
    """The ``/cvms/paginated`` envelope; ``items`` are dicts or ``orjson.Fragment`` values."""
    pages = page_count(total, page_size)
    return orjson.dumps(
        {"items": items, "total": total, "page": page, "page_size": page_size, "pages": pages}
    )


def app_envelope(items: list[Any], total: int, page: int, page_size: int) -> bytes:
    """The ``/apps`` envelope (note ``total_pages``, not ``pages``)."""
    pages = page_count(total, page_size)
    return orjson.dumps(
        {
            "dstack_apps": items,
            "page": page,
            "page_size": page_size,
            "total": total,
            "total_pages": pages,
        }
    )
