"""(c) Server behaviour: auth, versions, query validation, paging."""

from __future__ import annotations

import math
from typing import Any

import pytest

from simulator import Fleet, create_app

from .conftest import API_KEY, Caller


@pytest.mark.parametrize("endpoint", ["cvms", "apps"])
def test_a_missing_or_wrong_key_is_401(make_caller: Any, fleet_300: Fleet, endpoint: str) -> None:
    caller: Caller = make_caller(fleet_300)
    for key in (None, "", "phak_wrong"):
        r = caller.get(endpoint, key=key)
        assert r.status_code == 401
        body = r.json()
        assert list(body) == ["detail"]
        assert isinstance(body["detail"], str)
        assert body["detail"]
        assert r.headers["x-request-id"].startswith("req_")
    assert caller.get(endpoint).status_code == 200


def test_an_empty_key_cannot_be_configured() -> None:
    with pytest.raises(ValueError, match="API key"):
        create_app(Fleet(10), api_key="")


@pytest.mark.parametrize("version", ["2024-01-01", "2026-01-22", "latest", ""])
def test_an_unknown_version_is_refused(make_caller: Any, fleet_300: Fleet, version: str) -> None:
    r = make_caller(fleet_300).get("cvms", version=version)
    assert r.status_code == 400
    body = r.json()
    assert list(body) == ["error_code", "message", "request_id", "details", "suggestions", "links"]
    assert body["error_code"].startswith("ERR-")
    assert version in body["message"]
    assert body["request_id"] == r.headers["x-request-id"]
    assert body["details"][0]["field"] == "X-Phala-Version"
    assert body["details"][0]["value"] == version
    assert "2026-01-21" in body["suggestions"][0]


def test_a_missing_version_gets_the_default(make_caller: Any, fleet_300: Fleet) -> None:
    caller: Caller = make_caller(fleet_300)
    for endpoint in ("cvms", "apps"):
        default = caller.get(endpoint, page=2)
        assert default.status_code == 200
        assert default.content == caller.get(endpoint, version="2026-01-21", page=2).content
        assert default.content != caller.get(endpoint, version="2025-10-28", page=2).content


@pytest.mark.parametrize(
    ("params", "errors"),
    [
        ({"page": "0"}, [("page", "greater_than_equal", {"ge": 1})]),
        ({"page": "-3"}, [("page", "greater_than_equal", {"ge": 1})]),
        ({"page": "two"}, [("page", "int_parsing", None)]),
        ({"page": "1.5"}, [("page", "int_parsing", None)]),
        ({"page_size": "0"}, [("page_size", "greater_than_equal", {"ge": 1})]),
        ({"page_size": "101"}, [("page_size", "less_than_equal", {"le": 100})]),
        (
            {"page": "0", "page_size": "x"},
            [("page", "greater_than_equal", {"ge": 1}), ("page_size", "int_parsing", None)],
        ),
    ],
)
@pytest.mark.parametrize("endpoint", ["cvms", "apps"])
def test_bad_paging_is_a_fastapi_422(
    make_caller: Any,
    fleet_300: Fleet,
    endpoint: str,
    params: dict[str, str],
    errors: list[tuple[str, str, Any]],
) -> None:
    r = make_caller(fleet_300).get(endpoint, **params)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert len(detail) == len(errors)
    for entry, (name, kind, ctx) in zip(detail, errors, strict=True):
        assert entry["loc"] == ["query", name]
        assert entry["type"] == kind
        assert isinstance(entry["msg"], str)
        assert entry["msg"].startswith("Input should be")
        assert entry["input"] == params[name]
        assert entry.get("ctx") == ctx


def test_page_size_defaults_and_limits(make_caller: Any, fleet_300: Fleet) -> None:
    caller: Caller = make_caller(fleet_300)
    cvms = caller.get("cvms").json()
    apps = caller.get("apps").json()
    assert (cvms["page"], cvms["page_size"], len(cvms["items"])) == (1, 30, 30)
    assert (apps["page"], apps["page_size"], len(apps["dstack_apps"])) == (1, 20, 20)
    assert len(caller.get("cvms", page_size=100).json()["items"]) == 100
    assert len(caller.get("apps", page_size=100).json()["dstack_apps"]) == 100


@pytest.mark.parametrize("size", [0, 1, 10, 99, 100, 101, 250])
def test_pages_total_and_past_the_end(make_caller: Any, size: int) -> None:
    fleet = Fleet(size, seed=size)
    caller: Caller = make_caller(fleet)
    for page_size in (1, 7, 30, 100):
        body = caller.get("cvms", page_size=page_size).json()
        assert body["total"] == size
        assert body["pages"] == math.ceil(size / page_size)
        apps = caller.get("apps", page_size=page_size).json()
        assert apps["total"] == fleet.app_count
        assert apps["total_pages"] == math.ceil(fleet.app_count / page_size)
        for past in (body["pages"] + 1, body["pages"] + 50):
            beyond = caller.get("cvms", page=past, page_size=page_size).json()
            assert beyond["items"] == []
            assert (beyond["total"], beyond["pages"], beyond["page"]) == (size, body["pages"], past)
        last = caller.get("cvms", page=max(1, body["pages"]), page_size=page_size).json()
        assert len(last["items"]) == (size - (body["pages"] - 1) * page_size if size else 0)


def test_offset_paging_covers_the_fleet_in_a_stable_order(make_caller: Any) -> None:
    fleet = Fleet(257, seed=4)
    caller: Caller = make_caller(fleet)
    for page_size in (1, 30, 100):
        keys = [
            i["vm_uuid"].replace("-", "")
            for page in range(1, math.ceil(257 / page_size) + 1)
            for i in caller.get("cvms", page=page, page_size=page_size).json()["items"]
        ]
        assert keys == fleet.vm_uuids()  # newest first, no duplicate, none missed
    created = [i["created_at"] for i in caller.all_items("cvms", "2026-01-21")]
    assert created == sorted(created, reverse=True)
    apps = [a["app_id"] for a in caller.all_items("apps", "2025-10-28", page_size=13)]
    assert apps == fleet.app_ids()


def test_other_paths_and_methods(make_caller: Any, fleet_300: Fleet) -> None:
    caller: Caller = make_caller(fleet_300)
    assert caller.get("/api/v1/cvms").status_code == 404
    r = caller.request("POST", "/api/v1/apps", headers={"X-API-Key": API_KEY})
    assert r.status_code == 405
