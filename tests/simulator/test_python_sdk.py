"""(b) Every page the simulator serves validates with the official Python SDK's models too.

The SDK is ``phala-cloud`` 0.2.0 (``make install`` adds it with ``--no-deps``: its ``pysha3``
dependency does not build here and nothing imported at list time needs it). It picks its page
model by version the way its client's ``get_cvm_list`` does. Where the SDK and the OpenAPI file
disagree (see :mod:`simulator`), the pages follow the OpenAPI file and the only rejections
allowed are the ones listed here: a minimal app, which the SDK's app model has no room for.

Without the SDK these tests fail on CI (``CI`` set) and are skipped elsewhere, never passed.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from types import ModuleType
from typing import Any

import pytest
from pydantic import ValidationError

from simulator import SUPPORTED_VERSIONS, Fleet

from .conftest import VERSIONS, all_pages, schema_errors

SDK = "phala-cloud==0.2.0"

#: The fields a minimal app (only ``app_id`` set, the rest null or absent: OpenAPI's
#: ``DstackAppMinimalResponse``) has null or absent that the SDK's app model requires non-null.
MINIMAL_APP_REJECTED = frozenset({"id", "name", "created_at", "kms_type", "cvms", "cvm_count"})


def _on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _import_sdk() -> dict[str, ModuleType]:
    """The SDK's model modules; a failure on CI, a skip elsewhere, when it is not installed."""
    try:
        return {
            "cvms": importlib.import_module("phala_cloud.models.cvms"),
            "apps": importlib.import_module("phala_cloud.models.apps"),
            "responses": importlib.import_module("phala_cloud.action_responses"),
        }
    except ImportError as exc:
        reason = (
            f"the official Python SDK is not importable ({exc}); install it with "
            f"`.venv/bin/python -m pip install --no-deps {SDK}` (make install does)"
        )
        if _on_ci():
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def sdk() -> dict[str, ModuleType]:
    return _import_sdk()


def page_model(sdk: dict[str, ModuleType], endpoint: str, version: str) -> Any:
    """The SDK model of one page of ``endpoint`` in ``version``.

    CVMs: ``PaginatedCvmInfosV20251028``, ``V20260121``, then ``V20260522`` for every later
    version, as the SDK client chooses. Apps: the SDK has typed list models only from 2026-01-21
    (``DstackAppListResponseV20260121`` / ``V20260522``); for 2025-10-28 it has none (its client
    validates ``GET /apps`` loosely in every version), so the envelope-only ``AppListResponse``
    that its full client maps ``GET /apps`` to is the check there, with the OpenAPI schema.
    """
    if endpoint == "cvms":
        module, name = sdk["cvms"], "PaginatedCvmInfos"
    elif version == "2025-10-28":
        return sdk["responses"].AppListResponse
    else:
        module, name = sdk["apps"], "DstackAppListResponse"
    suffix = {"2025-10-28": "V20251028", "2026-01-21": "V20260121"}.get(version, "V20260522")
    return getattr(module, name + suffix)


def sdk_errors(model: Any, body: Any) -> list[str]:
    """What the SDK model rejects in ``body``, less the minimal apps' known gaps."""
    try:
        model.model_validate(body)
    except ValidationError as exc:
        errors = exc.errors()
    else:
        return []
    out = []
    for e in errors:
        loc = e["loc"]
        if (
            len(loc) == 3
            and loc[0] == "dstack_apps"
            and isinstance(loc[1], int)
            and _is_minimal(body["dstack_apps"][loc[1]])
            and loc[2] in MINIMAL_APP_REJECTED
        ):
            continue
        out.append(f"{'/'.join(map(str, loc))}: {e['msg']} ({e['type']})")
    return out


def _is_minimal(app: dict[str, Any]) -> bool:
    return all(app[k] is None for k in app if k != "app_id")


@pytest.fixture(scope="module")
def fleet_1000() -> Fleet:
    """1,000 CVMs (seed 3) and two evolve steps: created, restored, renamed ... items too."""
    fleet = Fleet(1000, seed=3)
    for seed in (3, 4):
        fleet.evolve(seed=seed, total=40)
    return fleet


def test_every_supported_version_is_checked() -> None:
    assert VERSIONS == SUPPORTED_VERSIONS


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("endpoint", ["cvms", "apps"])
def test_every_page_validates_with_the_sdk_and_openapi(
    sdk: dict[str, ModuleType], make_caller: Any, fleet_1000: Fleet, endpoint: str, version: str
) -> None:
    caller = make_caller(fleet_1000)
    model = page_model(sdk, endpoint, version)
    pages = all_pages(caller, endpoint, version, 100)
    key = "items" if endpoint == "cvms" else "dstack_apps"
    assert len(pages) > 5
    assert pages[-1][key] == []
    assert sum(len(p[key]) for p in pages) == pages[0]["total"]
    for number, body in enumerate(pages, start=1):
        assert sdk_errors(model, body) == [], f"page {number}"
        assert schema_errors(endpoint, version, body) == [], f"page {number}"


@pytest.mark.parametrize("version", [v for v in VERSIONS if v != "2025-10-28"])
def test_the_fields_the_sdk_shapes_are_present(
    sdk: dict[str, ModuleType], make_caller: Any, fleet_1000: Fleet, version: str
) -> None:
    """The pages above carry the fields the SDK types and OpenAPI does not list, in its shapes."""
    items = make_caller(fleet_1000).all_items("cvms", version)
    devices = [d for i in items if i["node_info"] for d in i["node_info"].get("device_ids", ())]
    rates = [i["hourly_rate"] for i in items if "hourly_rate" in i]
    assert devices
    assert all(isinstance(d, dict) for d in devices)
    assert {type(i["manifest_version"]) for i in items if "manifest_version" in i} == {str}
    assert any(r is None for r in rates)
    assert any(isinstance(r, dict) for r in rates)
    item = sdk["cvms"].CvmInfoV20260121.model_validate(
        next(i for i in items if i.get("hourly_rate") and i["node_info"].get("device_ids"))
    )
    assert item.hourly_rate.total == item.resource.compute_billing_price
    assert item.node_info.device_ids[0].device_id == item.node_info.device_id


@pytest.mark.parametrize("version", [v for v in VERSIONS if v != "2025-10-28"])
def test_the_sdk_rejects_only_minimal_apps(
    sdk: dict[str, ModuleType], make_caller: Any, fleet_1000: Fleet, version: str
) -> None:
    """The one disagreement left: the SDK's app model rejects a minimal app, OpenAPI allows it."""
    apps = make_caller(fleet_1000).all_items("apps", version)
    minimal = [a for a in apps if _is_minimal(a)]
    assert any(len(a) == 1 for a in minimal)  # keys left out
    assert any(len(a) > 1 for a in minimal)  # keys sent as nulls
    model = page_model(sdk, "apps", version)
    envelope = {"page": 1, "page_size": 100, "total": len(apps), "total_pages": 1}
    body = {"dstack_apps": minimal, **envelope}
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    assert {e["loc"][2] for e in caught.value.errors()} == MINIMAL_APP_REJECTED
    assert sdk_errors(model, body) == []
    assert schema_errors("apps", version, body) == []
    model.model_validate({"dstack_apps": [a for a in apps if not _is_minimal(a)], **envelope})


def test_the_sdk_check_catches_a_bad_field(
    sdk: dict[str, ModuleType], make_caller: Any, fleet_300: Fleet
) -> None:
    caller = make_caller(fleet_300)
    body = caller.get("cvms", version="2026-01-21", page_size=30).json()
    item = next(i for i in body["items"] if "manifest_version" in i)
    item["manifest_version"] = 2
    model = page_model(sdk, "cvms", "2026-01-21")
    assert any("manifest_version" in e for e in sdk_errors(model, body))
    body = caller.get("apps", version="2026-05-22", page_size=30).json()
    full = next(a for a in body["dstack_apps"] if not _is_minimal(a))
    full["created_at"] = None
    assert any("created_at" in e for e in sdk_errors(page_model(sdk, "apps", "2026-05-22"), body))
    body = caller.get("apps", version="2025-10-28", page_size=3).json()
    body["page"] = "first"
    assert sdk_errors(page_model(sdk, "apps", "2025-10-28"), body)


@pytest.mark.parametrize(
    ("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)]
)
def test_a_missing_sdk_fails_on_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch, ci: str, outcome: type[BaseException]
) -> None:
    monkeypatch.setitem(sys.modules, "phala_cloud.models.cvms", None)
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match=re.escape(f"pip install --no-deps {SDK}")):
        _import_sdk()
