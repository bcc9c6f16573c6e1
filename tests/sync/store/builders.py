"""Canonical records and pages built directly, to test the store without HTTP."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Engine

from sync.api.pages import Page, Rejection
from sync.endpoints import get_endpoint
from sync.listing import ListingPass, ListingResult
from sync.records import (
    UNKNOWN,
    AppBundle,
    AppRecord,
    CreatorRecord,
    CvmBundle,
    CvmRecord,
    NodeRecord,
    WorkspaceRecord,
)
from sync.run import FetchResult, RunSummary, apply_run, open_run
from sync.settings import Settings
from sync.store.lock import run_lock
from sync.store.staging import Stager
from tests.carried_fields import LEGACY_UNKNOWN_CVM_FIELDS


def cvm(n: int, **overrides: Any) -> CvmRecord:
    base = CvmRecord(
        vm_uuid=f"{n:032x}",
        cvm_id=f"cvm_{n}",
        name=f"cvm-{n}",
        app_id=f"{n % 5:040x}",
        instance_id=f"inst-{n}",
        status="running",
        in_progress=False,
        listed=True,
        vcpu=2,
        memory_mb=4096,
        disk_gb=40,
        instance_type="tdx.small",
        gpus=0,
        billing_period="hourly",
        compute_billing_price="0.058",
        node_id=n % 3 + 1,
        workspace_id=f"wks_{n % 2}",
        creator_id=f"usr_{n % 4}",
        project_type="webdev",
        gateway_domain="dstack.example",
        kms_type="phala",
        kms_chain_id=None,
        os_name="dstack",
        os_version="0.5.3",
        os_image_hash="ab" * 16,
        os_is_dev=False,
        compose_hash="cd" * 16,
        gateway_enabled=True,
        public_logs=True,
        public_sysinfo=True,
        public_tcbinfo=True,
        secure_time=False,
        storage_fs="zfs",
        created_at=datetime(2026, 1, 1, 12, n % 60, tzinfo=UTC),
        api_deleted_at=None,
    )
    return replace(base, **overrides)


LEGACY_UNKNOWN: dict[str, Any] = dict.fromkeys(LEGACY_UNKNOWN_CVM_FIELDS, UNKNOWN)


def bundle(rec: CvmRecord, *, legacy: bool = False) -> CvmBundle:
    node_id = rec.node_id
    node = None
    if node_id is not None:
        node = NodeRecord(node_id=node_id, name=f"node-{node_id}", region="us-west")
        if not legacy:
            node = replace(node, device_id="dev", ppid="pp", status="ONLINE", version="1")
    if legacy:
        rec = replace(rec, **LEGACY_UNKNOWN)
    ws = cr = None
    if isinstance(rec.workspace_id, str):
        ws = WorkspaceRecord(
            workspace_id=rec.workspace_id, name=f"ws {rec.workspace_id}", slug=None, avatar_url=None
        )
    if isinstance(rec.creator_id, str):
        cr = CreatorRecord(creator_id=rec.creator_id, username=rec.creator_id, avatar_url=None)
    # The raw item determines the records, as an API payload does (its hash stands for them).
    raw = orjson.dumps(
        {
            "cvm": rec.known_fields(),
            "refs": [r.known_fields() if r is not None else None for r in (node, ws, cr)],
            "legacy": legacy,
        }
    )
    return CvmBundle(cvm=rec, node=node, workspace=ws, creator=cr, raw=raw)


def app(app_id: str, members: tuple[str, ...] | None) -> AppBundle:
    rec = AppRecord(
        app_id=app_id,
        project_id=f"prj_{app_id[:6]}",
        name=f"app {app_id[:6]}",
        app_provision_type=None,
        app_icon_url=None,
        created_at="2026-01-01T00:00:00Z",
        kms_type="phala",
        profile_display_name=None,
        profile_avatar_url=None,
        profile_description=None,
        profile_custom_domain=None,
        cvm_count=len(members or ()),
        current_vm_uuid=(members or (None,))[0],
    )
    return AppBundle(
        app=rec,
        member_vm_uuids=UNKNOWN if members is None else members,
        raw=orjson.dumps({**rec.known_fields(), "members": members}),
    )


def cvm_page(items: list[CvmBundle], *, number: int = 1, total: int | None = None,
             rejections: list[Rejection] | None = None) -> Page[CvmBundle]:  # fmt: skip
    n = len(items) + len(rejections or [])
    return Page(
        endpoint="cvms", version="2026-01-21", number=number, page_size=100,
        total=n if total is None else total, pages=1, items=items,
        rejections=rejections or [],
    )  # fmt: skip


def listing(
    endpoint: str, n: int, *, complete: bool = True, gone: tuple[str, ...] = ()
) -> ListingResult:
    return ListingResult(
        endpoint=endpoint,
        passes=1, pages=1, items=n, quarantined=0, api_total=n, distinct=n,
        complete=complete, reason=None if complete else "test: incomplete",
        gone=gone if complete else (),
    )  # fmt: skip


def run_with(
    engine: Engine,
    cvms: list[CvmBundle],
    *,
    apps: list[AppBundle] | None = None,
    target: str = "default",
    complete: bool = True,
    rejections: list[Rejection] | None = None,
    lock_timeout: float = 0.0,
) -> RunSummary:
    """One run whose fetch stage is replaced by staging the given bundles directly."""
    settings = Settings(target=target, database_url=str(engine.url))
    with run_lock(engine, timeout=lock_timeout, target=target):
        run_id, started = open_run(engine, settings)
        stager = Stager(engine, run_id, target)
        app_items = apps or []
        app_page = Page(
            endpoint="apps", version="2026-01-21", number=1, page_size=100,
            total=len(app_items), pages=1, items=app_items,
        )  # fmt: skip
        gone: list[tuple[str, ...]] = []
        for page in (cvm_page(cvms, rejections=rejections), app_page):
            # Every item is staged (none is skipped here); the passes tell the deletions.
            entity_type = get_endpoint(page.endpoint).entity_type
            listed = ListingPass(page.endpoint, 1, known=stager.load_known(entity_type))
            listed.note(page, *stager.stage(page, 1))
            gone.append(listed.gone())
        stager.close()  # commits: staging is read back on other connections
        fetch = FetchResult(
            {
                "cvms": listing("cvms", len(cvms), complete=complete, gone=gone[0]),
                "apps": listing("apps", len(app_items), complete=complete, gone=gone[1]),
            }
        )
        return apply_run(engine, settings, run_id, started, fetch)
