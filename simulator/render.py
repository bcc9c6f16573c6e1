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

from simulator.model import App, Cvm, JsonDict
from simulator.versions import Shape


def derived_hex(salt: int, seq: int, tag: str, nbytes: int) -> str:
    """A stable pseudo-random hex string for one decorative field of one entity."""
    return hashlib.blake2b(f"{salt}:{seq}:{tag}".encode(), digest_size=nbytes).hexdigest()


def _progress_target(status: str) -> str:
    return {"stopping": "stopped", "shutting_down": "stopped"}.get(status, "running")


def cvm_current(c: Cvm, salt: int) -> JsonDict:
    """A ``CVMInfo`` item (2026-01-21 and later)."""
    app = c.app
    node = c.node
    kms = app.kms
    os_ = c.os
    v = c.variant
    domain = app.gateway_domain
    d: JsonDict = {
        "id": c.hashid,
        "name": c.name,
        "app_id": app.app_id,
        "vm_uuid": c.vm_uuid.replace("-", "") if c.dashless else c.vm_uuid,
        "instance_id": c.instance_id,
        "resource": {
            "instance_type": c.instance_type,
            "vcpu": c.vcpu,
            "memory_in_gb": c.memory_mb / 1024,
            "disk_in_gb": c.disk_gb,
            "gpus": c.gpus,
            "compute_billing_price": c.price,
            "billing_period": c.billing_period,
        },
        "node_info": None,
        "os": None,
        "kms_type": kms.kms_type if kms else None,
        "kms_info": None,
        "status": c.status,
        "in_progress": c.in_progress,
    }
    if node is not None:
        ni: JsonDict = {
            "object_type": "node",
            "id": node.id,
            "name": node.name,
            "region": node.region,
            "device_id": node.device_id,
            "ppid": node.ppid,
            "status": node.status,
            "version": node.version,
        }
        if v & 3 == 3:
            # The Python SDK's shape (``NodeRef.device_ids: list[DeviceIdEntry]``), not strings.
            ni["device_ids"] = [_device_id_entry(node.device_id)]
        d["node_info"] = ni
    if os_ is not None:
        d["os"] = {"name": os_[0], "version": os_[1], "is_dev": os_[2], "os_image_hash": os_[3]}
    if kms is not None:
        ki: JsonDict = {
            "chain_id": kms.chain_id,
            "dstack_kms_address": kms.contract_address,
            "dstack_app_address": None if kms.chain_id is None else "0x" + app.app_id,
            "deployer_address": None
            if kms.chain_id is None
            else "0x" + derived_hex(salt, app.seq, "deployer", 20),
            "rpc_endpoint": kms.rpc_endpoint,
            "encrypted_env_pubkey": derived_hex(salt, c.seq, "envkey", 32),
        }
        if v & 6 == 6:
            ki["k256_pubkey"] = "02" + derived_hex(salt, c.seq, "k256", 32)
        d["kms_info"] = ki
    if c.in_progress:
        d["progress"] = {
            "target": _progress_target(c.status),
            "started_at": c.updated_iso,
            "correlation_id": derived_hex(salt, c.seq, f"corr{c.status}", 16),
        }
    elif v & 4:
        d["progress"] = None
    d["compose_hash"] = c.compose_hash
    if v & 24 == 24:
        d["docker_compose_hash"] = derived_hex(salt, app.seq, "dc", 32)
        d["pre_launch_script_hash"] = None
    d["gateway"] = {
        "base_domain": domain,
        "cname": None if domain is None or v & 48 != 48 else f"{app.app_id[:12]}.{domain}",
    }
    base = f"https://{app.app_id}-8090.{domain}" if domain else None
    if base is not None and v & 0xE0 == 0xE0:
        d["logs"] = {
            "serial": f"{base}/logs/serial",
            "stdout": f"{base}/logs/stdout",
            "stderr": f"{base}/logs/stderr",
            "container_log_base": f"{base}/logs/containers",
        }
    d["services"] = (
        []
        if c.status != "running" or v & 0x6000 == 0
        else [{"name": "app", "image": f"ghcr.io/example/{app.seq}:latest", "status": "running"}]
    )
    d["endpoints"] = (
        None
        if domain is None or not c.gateway_enabled or c.instance_id is None
        else [
            {
                "app": f"https://{app.app_id}.{domain}",
                "instance": f"https://{c.instance_id}.{domain}",
            }
        ]
    )
    if d["endpoints"] is None and v & 0x1000:
        del d["endpoints"]
    d["public_logs"] = c.public_logs
    d["public_sysinfo"] = c.public_sysinfo
    d["public_tcbinfo"] = c.public_tcbinfo
    d["gateway_enabled"] = c.gateway_enabled
    d["secure_time"] = c.secure_time
    d["storage_fs"] = c.storage_fs
    ws = c.workspace
    d["workspace"] = (
        None
        if ws is None
        else {
            "object_type": "workspace",
            "id": ws.id,
            "name": ws.name,
            "slug": ws.slug,
            "avatar_url": ws.avatar_url,
        }
    )
    u = c.creator
    d["creator"] = (
        None
        if u is None
        else {"object_type": "user", "id": u.id, "username": u.username, "avatar_url": u.avatar_url}
    )
    d["created_at"] = c.created_iso
    d["deleted_at"] = None
    d["listed"] = c.listed
    d["project_type"] = c.project_type
    # Fields newer servers send that the 2026-01-21 schema does not list.
    d["updated_at"] = c.updated_iso
    if v & 0xC00 == 0xC00:
        d["app_url"] = base
        d["base_image"] = os_[0] if os_ else None
        d["features"] = ["kms", "tproxy-net"]
        d["runner"] = "docker-compose"
        # The Python SDK's shapes: ``manifest_version: str`` (the compose file's own
        # ``manifest_version`` is an integer) and ``hourly_rate`` an object of decimal strings.
        d["manifest_version"] = "2"
        d["hourly_rate"] = _hourly_rate(c.price)
        d["billing_interval"] = "hour" if c.billing_period == "hourly" else "month"
        d["gpu_rental_order"] = None
    return d


def _device_id_entry(device_id: str) -> JsonDict:
    """A ``node_info.device_ids`` entry (the Python SDK's ``DeviceIdEntry``)."""
    return {"device_id": device_id, "algorithm_version": "v1", "os_image_ids": [], "enabled": True}


def _hourly_rate(price: str | None) -> JsonDict | None:
    """``hourly_rate`` in the Python SDK's shape (``CvmHourlyRateV20260121``).

    The compute price is the total: the simulator has no separate disk price, so ``disk`` is
    null. No price, no rate.
    """
    return None if price is None else {"total": price, "compute": price, "disk": None}


def _compose_yaml(c: Cvm) -> str:
    image = f"ghcr.io/example/{c.app.seq}:latest"
    return (
        "services:\n  app:\n"
        f"    image: {image}\n"
        "    restart: always\n    ports:\n      - '8080:8080'\n"
        "    volumes:\n      - /var/run/tappd.sock:/var/run/tappd.sock\n"
        f"    environment:\n      - APP_NAME={c.app.name or c.name}\n"
    )


def cvm_legacy(c: Cvm, salt: int) -> JsonDict:
    """A ``HostedCvm`` item (2025-10-28)."""
    app = c.app
    node = c.node
    kms = app.kms
    os_ = c.os
    v = c.variant
    domain = app.gateway_domain
    base = f"https://{app.app_id}-8090.{domain}" if domain else None
    hosted: JsonDict = {
        "id": c.vm_uuid,
        "name": c.name,
        "status": c.status,
        "uptime": c.uptime,
        "app_url": base,
        "app_id": app.app_id,
        "instance_id": c.instance_id,
        "configuration": None,
    }
    if not v & 128:
        hosted["configuration"] = {
            "name": c.name,
            "image": os_[0] if os_ else "dstack-0.3.6",
            "compose_file": {
                "name": c.name,
                "docker_compose_file": _compose_yaml(c),
                "kms_enabled": kms is not None,
                "gateway_enabled": c.gateway_enabled,
                "public_logs": c.public_logs,
                "public_sysinfo": c.public_sysinfo,
                "public_tcbinfo": c.public_tcbinfo,
                "secure_time": c.secure_time,
                "storage_fs": c.storage_fs,
                "features": ["kms", "tproxy-net"],
                "manifest_version": 2,
                "runner": "docker-compose",
            },
            "vcpu": c.vcpu,
            "memory": c.memory_mb,
            "disk_size": c.disk_gb,
            "ports": None,
            "app_id": app.app_id,
            "hugepages": False,
            "pin_numa": False,
            "kms_urls": [kms.url] if kms else [],
            "gateway_urls": [f"https://gateway.{domain}"] if domain else [],
        }
    # Always present (null while running): the server serializes it, and the official SDK
    # schema (@phala/cloud 0.2.9, VmInfoV20251028) requires the key; OpenAPI has it optional.
    hosted["exited_at"] = c.updated_iso if c.status in ("exited", "stopped") else None
    hosted["boot_progress"] = "done" if c.status == "running" else None
    hosted["boot_error"] = c.boot_error
    hosted["shutdown_progress"] = None
    hosted["image_version"] = os_[1] if os_ else None
    hosted["events"] = [
        {"event": "boot.progress", "body": "done", "timestamp": int(c.created_at.timestamp())},
    ]
    u = c.creator
    d: JsonDict = {
        "hosted": hosted,
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
        "allow_upgrade": bool(v & 512),
        "project_id": app.project_id,
        "project_type": c.project_type,
        "billing_period": c.billing_period,
        "kms_info": None
        if kms is None
        else {
            "id": kms.id,
            "slug": kms.slug,
            "url": kms.url,
            "version": kms.version,
            "chain_id": kms.chain_id,
            "kms_contract_address": kms.contract_address,
            "gateway_app_id": kms.gateway_app_id,
        },
    }
    if kms is not None and kms.chain_id is not None:
        d["contract_address"] = "0x" + app.app_id
        d["deployer_address"] = "0x" + derived_hex(salt, app.seq, "deployer", 20)
    d["vcpu"] = c.vcpu
    d["memory"] = c.memory_mb
    d["disk_size"] = c.disk_gb
    d["gateway_domain"] = domain
    d["public_urls"] = (
        []
        if domain is None or c.instance_id is None
        else [
            {
                "app": f"https://{app.app_id}.{domain}",
                "instance": f"https://{c.instance_id}.{domain}",
            }
        ]
    )
    # In the TypeScript SDK's model, not in the OpenAPI schema.
    d["machine_info"] = _machine_info(c)
    d["updated_at"] = c.updated_iso
    return d


def _machine_info(c: Cvm) -> JsonDict:
    return {"vcpu": c.vcpu, "memory": c.memory_mb, "disk_size": c.disk_gb, "gpu_count": c.gpus or 0}


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
        "base_image": c.os[0] if c.os else None,
        "kms_slug": kms.slug if kms else None,
        "kms_id": kms.id if kms else None,
        "instance_id": c.instance_id,
        "machine_info": _machine_info(c),
        "updated_at": c.updated_iso,
    }


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
    pages = -(-total // page_size)
    return orjson.dumps(
        {"items": items, "total": total, "page": page, "page_size": page_size, "pages": pages}
    )


def app_envelope(items: list[Any], total: int, page: int, page_size: int) -> bytes:
    """The ``/apps`` envelope (note ``total_pages``, not ``pages``)."""
    pages = -(-total // page_size)
    return orjson.dumps(
        {
            "dstack_apps": items,
            "page": page,
            "page_size": page_size,
            "total": total,
            "total_pages": pages,
        }
    )
