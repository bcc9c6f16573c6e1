"""(e) Each fault behaves as configured, at start and at run time."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson
import pytest

from simulator import FaultRule, FaultSpecError, Fleet, SimulatorServer

from .conftest import API_KEY, Caller, validator


def statuses(caller: Caller, n: int, **params: Any) -> list[int]:
    return [caller.get("cvms", **params).status_code for _ in range(n)]


# ---------------------------------------------------------------- the rule syntax


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("503", {"kind": "503", "retry_after": None}),
        ("429", {"kind": "429", "retry_after": "1"}),
        ("429:retry_after=date", {"kind": "429", "retry_after": "date:2"}),
        ("503:page=2,times=2,retry_after=5", {"pages": [2], "times": 2, "retry_after": "5"}),
        ("500:pages=2-4,after=1,endpoint=apps", {"pages": [2, 3, 4], "after": 1}),
        ("502:page=1|5,rate=0.25", {"pages": [1, 5], "rate": 0.25}),
        ("timeout", {"ms": 60_000}),
        ("latency:ms=20", {"ms": 20}),
        ("drop:bytes=100", {"bytes": 100}),
        ("drift:what=enum,share=0.5", {"what": "enum", "share": 0.5}),
        ("page_drift:page=3,insert=2,delete=1", {"times": 1, "insert": 2, "delete": 1}),
    ],
)
def test_fault_specs_parse(spec: str, expected: dict[str, Any]) -> None:
    described = FaultRule.parse(spec).to_json()
    assert expected.items() <= described.items()
    # The JSON form means the same rule.
    as_json = {k: v for k, v in described.items() if k not in ("matched", "fired")}
    assert FaultRule.parse(as_json).to_json() == described


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("418", "unknown fault kind"),
        ("503:bytes=3", "takes no 'bytes'"),
        ("503:times=0", "at least 1"),
        ("503:times=two", "must be an integer"),
        ("503:rate=1.5", "from 0 to 1"),
        ("503:page", "key=value"),
        ("503:endpoint=nodes", "cvms or apps"),
        ("drift:what=chaos", "missing, wrong_type"),
        ("429:retry_after=soon", "integer"),
        ("page_drift:endpoint=apps,delete=1", "never deleted"),
    ],
)
def test_bad_fault_specs_say_why(spec: str, message: str) -> None:
    with pytest.raises(FaultSpecError, match=message):
        FaultRule.parse(spec)


# ---------------------------------------------------------------- error answers


def test_429_with_retry_after_seconds_date_or_none(make_caller: Any, fleet_300: Fleet) -> None:
    caller: Caller = make_caller(
        fleet_300,
        faults=[
            "429:page=1,times=1",
            "429:page=2,times=1,retry_after=date:4",
            "429:page=3,retry_after=none,times=1",
        ],
    )
    r = caller.get("cvms", page=1)
    assert r.status_code == 429
    assert r.headers["retry-after"] == "1"
    assert isinstance(r.json()["detail"], str)
    assert r.headers["x-request-id"]
    r = caller.get("cvms", page=2)
    assert r.status_code == 429
    wait = parsedate_to_datetime(r.headers["retry-after"]).timestamp() - time.time()
    assert 1 <= wait <= 5
    r = caller.get("cvms", page=3)
    assert r.status_code == 429
    assert "retry-after" not in r.headers
    assert [caller.get("cvms", page=p).status_code for p in (1, 2, 3)] == [200, 200, 200]


@pytest.mark.parametrize(
    ("kind", "content_type"),
    [("500", "text/plain"), ("502", "text/html"), ("503", "text/html"), ("504", "text/html")],
)
def test_5xx_answers(make_caller: Any, fleet_300: Fleet, kind: str, content_type: str) -> None:
    caller: Caller = make_caller(fleet_300, faults=[f"{kind}:times=1,retry_after=2"])
    r = caller.get("apps")
    assert r.status_code == int(kind)
    assert r.headers["content-type"].startswith(content_type)
    assert r.headers["retry-after"] == "2"
    assert kind in r.text or "Internal Server Error" in r.text
    assert caller.get("apps").status_code == 200


def test_per_page_n_times_then_success(make_caller: Any, fleet_300: Fleet) -> None:
    caller: Caller = make_caller(fleet_300, faults=["503:page=2,times=2"])
    assert statuses(caller, 1, page=1) == [200]
    assert statuses(caller, 4, page=2) == [503, 503, 200, 200]
    assert statuses(caller, 1, page=3) == [200]


def test_after_and_endpoint_select_requests(make_caller: Any, fleet_300: Fleet) -> None:
    caller: Caller = make_caller(fleet_300, faults=["500:after=2,times=1", "502:endpoint=apps"])
    assert statuses(caller, 4) == [200, 200, 500, 200]
    assert caller.get("apps").status_code == 502


def test_rate_is_deterministic_and_about_right(make_caller: Any, fleet_300: Fleet) -> None:
    def run(seed: int, order: list[int]) -> dict[tuple[int, int], int]:
        caller: Caller = make_caller(fleet_300, faults=["503:rate=0.3"], fault_seed=seed)
        seen: dict[tuple[int, int], int] = {}
        for attempt in range(5):
            for page in order:
                seen[(page, attempt)] = caller.get("cvms", page=page, page_size=10).status_code
        return seen

    pages = list(range(1, 31))
    first = run(1, pages)
    assert first == run(1, pages[::-1])  # the same whatever the order pages are asked in
    assert first != run(2, pages)
    share = sum(s == 503 for s in first.values()) / len(first)
    assert 0.18 <= share <= 0.42, share


def test_latency(make_caller: Any, fleet_300: Fleet) -> None:
    caller: Caller = make_caller(fleet_300, faults=["latency:ms=150,page=1"])
    start = time.perf_counter()
    assert caller.get("cvms", page=1).status_code == 200
    assert time.perf_counter() - start >= 0.15
    start = time.perf_counter()
    assert caller.get("cvms", page=2).status_code == 200
    assert time.perf_counter() - start < 0.15


# ---------------------------------------------------------------- damaged bodies


def test_malformed_and_truncated_bodies(make_caller: Any, fleet_300: Fleet) -> None:
    caller: Caller = make_caller(
        fleet_300, faults=["malformed:page=1,times=1", "truncated:page=2,bytes=500,times=1"]
    )
    bad = caller.get("cvms", page=1)
    good = caller.get("cvms", page=1)
    assert bad.status_code == 200
    assert bad.content != good.content
    assert int(bad.headers["content-length"]) == len(bad.content) == len(good.content) + 1
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(bad.content)
    cut = caller.get("cvms", page=2)
    assert cut.status_code == 200
    assert int(cut.headers["content-length"]) == len(cut.content) == 500
    assert caller.get("cvms", page=2).content.startswith(cut.content)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(cut.content)


def test_drop_in_process_is_a_remote_protocol_error(make_caller: Any, fleet_300: Fleet) -> None:
    caller: Caller = make_caller(fleet_300, faults=["drop:times=1"])
    with pytest.raises(httpx.RemoteProtocolError, match="simulated connection drop"):
        caller.get("cvms")
    assert caller.get("cvms").status_code == 200


def test_drop_and_timeout_over_loopback() -> None:
    faults = ["drop:page=1,bytes=1000,times=1", "timeout:page=2,ms=2000,times=1"]
    with SimulatorServer(api_key=API_KEY, cvms=200, faults=faults) as server:
        headers = {"X-API-Key": API_KEY}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=0.5) as client:
            with pytest.raises(httpx.RemoteProtocolError, match="received 1000 bytes"):
                client.get("/cvms/paginated", params={"page": 1})
            assert client.get("/cvms/paginated", params={"page": 1}).status_code == 200
            with pytest.raises(httpx.ReadTimeout):
                client.get("/cvms/paginated", params={"page": 2})
            assert client.get("/cvms/paginated", params={"page": 2}).status_code == 200


# ---------------------------------------------------------------- schema drift


def _item_errors(endpoint: str, version: str, item: dict[str, Any]) -> bool:
    legacy = version == "2025-10-28"
    if endpoint == "cvms":
        ref = "HostedCvm" if legacy else "teehouse__api__routes__cvms__v20260121__schemas__CVMInfo"
    else:
        tag = "20251028" if legacy else "20260121"
        ref = f"teehouse__api__routes__apps__v{tag}__schemas__DstackAppListResponse"
        return not validator(ref).is_valid(
            {"dstack_apps": [item], "page": 1, "page_size": 1, "total": 1, "total_pages": 1}
        )
    return not validator(ref).is_valid(item)


@pytest.mark.parametrize("what", ["missing", "wrong_type", "enum", "unknown"])
@pytest.mark.parametrize("version", ["2025-10-28", "2026-01-21"])
@pytest.mark.parametrize("endpoint", ["cvms", "apps"])
def test_drift_on_a_share_of_items(
    make_caller: Any, fleet_300: Fleet, what: str, version: str, endpoint: str
) -> None:
    caller: Caller = make_caller(fleet_300, faults=[f"drift:what={what},share=0.2"], fault_seed=3)
    clean: Caller = make_caller(fleet_300)
    key = "items" if endpoint == "cvms" else "dstack_apps"
    r = caller.get(endpoint, version=version, page_size=100)
    items = r.json()[key]
    assert caller.get(endpoint, version=version, page_size=100).content == r.content  # same items
    originals = clean.get(endpoint, version=version, page_size=100).json()[key]
    drifted = [(i, o) for i, o in zip(items, originals, strict=True) if i != o]
    assert 8 <= len(drifted) <= 35, len(drifted)
    schema_breaking = what in ("missing", "wrong_type") or (
        what == "enum" and endpoint == "cvms" and version != "2025-10-28"
    )
    for item, original in drifted:
        assert not _item_errors(endpoint, version, original)
        assert _item_errors(endpoint, version, item) == schema_breaking, (what, item)
        if what == "unknown":
            assert set(item) - set(original) == {"x_simulator_new_field"}


# ---------------------------------------------------------------- page drift


def _keys(caller: Caller, page: int) -> list[str]:
    items = caller.get("cvms", page=page, page_size=10).json()["items"]
    return [i["vm_uuid"].replace("-", "") for i in items]


def _first_three_pages(caller: Caller, before: list[str]) -> list[list[str]]:
    """Pages 1 to 3 (10 items each) read in order: a page drift fires once page 2 is served,
    so pages 1 and 2 show the listing as it was ``before``."""
    pages = [_keys(caller, page) for page in (1, 2, 3)]
    assert pages[0] + pages[1] == before[:20]
    return pages


def test_page_drift_insert_shows_items_twice(make_caller: Any) -> None:
    fleet = Fleet(100, seed=1)
    caller: Caller = make_caller(fleet, faults=["page_drift:page=2,insert=3,endpoint=cvms"])
    before = fleet.vm_uuids()
    _, _, p3 = _first_three_pages(caller, before)
    assert p3 == before[17:27]  # three items of page 2 come again on page 3
    steps = fleet.changes()
    assert len(steps) == 1
    created = [c["entity_id"] for c in steps[0] if c["entity_type"] == "cvm"]
    assert sorted(created) == sorted(fleet.vm_uuids()[:3])
    assert _keys(caller, 2) == before[7:17]  # once (times=1 by default): no further drift
    assert fleet.step_count == 1


def test_page_drift_delete_skips_items(make_caller: Any) -> None:
    fleet = Fleet(100, seed=2)
    caller: Caller = make_caller(fleet, faults=["page_drift:page=2,delete=4"])
    before = fleet.vm_uuids()
    p1, p2, p3 = _first_three_pages(caller, before)
    deleted = {c["entity_id"] for c in fleet.changes()[0] if c["entity_type"] == "cvm"}
    assert len(deleted) == 4
    assert deleted <= set(p1 + p2)
    assert p3 == before[24:34]  # four items the client never sees
    missed = set(before) - deleted - set(p1 + p2 + p3) - set(before[34:])
    assert missed == set(before[20:24])


def test_page_drift_insert_and_delete(make_caller: Any) -> None:
    fleet = Fleet(100, seed=3)
    caller: Caller = make_caller(fleet, faults=["page_drift:page=2,insert=5,delete=5"])
    before = fleet.vm_uuids()
    _keys(caller, 2)
    changes = fleet.changes()[0]
    kinds = sorted(c["change_type"] for c in changes if c["entity_type"] == "cvm")
    assert kinds == ["created"] * 5 + ["deleted"] * 5
    deleted = {c["entity_id"] for c in changes if c["change_type"] == "deleted"}
    assert deleted <= set(before[:20])
    assert fleet.cvm_count == 100


def test_page_drift_on_apps(make_caller: Any) -> None:
    fleet = Fleet(100, seed=2)
    caller: Caller = make_caller(fleet, faults=["page_drift:endpoint=apps,page=1,insert=2"])
    before = fleet.app_ids()
    first = [a["app_id"] for a in caller.get("apps", page=1, page_size=10).json()["dstack_apps"]]
    second = [a["app_id"] for a in caller.get("apps", page=2, page_size=10).json()["dstack_apps"]]
    assert first == before[:10]
    assert second == before[8:18]
    created = [c for c in fleet.changes()[0] if c["change_type"] == "created"]
    assert sorted(c["entity_type"] for c in created) == ["app", "app", "cvm", "cvm"]


# ---------------------------------------------------------------- faults at run time


def test_faults_at_run_time(make_caller: Any, fleet_300: Fleet) -> None:
    caller: Caller = make_caller(fleet_300, faults=["502:endpoint=apps"])
    described = caller.admin("GET", "/faults").json()
    assert described["faults"][0]["kind"] == "502"
    assert described["seed"] == 0
    assert caller.get("apps").status_code == 502
    r = caller.admin("PUT", "/faults", json={"faults": ["503:times=1"], "seed": 9})
    assert r.status_code == 200
    assert r.json()["seed"] == 9
    assert caller.get("apps").status_code == 503
    assert caller.get("apps").status_code == 200
    r = caller.admin("POST", "/faults", json={"faults": [{"kind": "429", "page": 4}]})
    assert [f["kind"] for f in r.json()["faults"]] == ["503", "429"]
    assert r.json()["faults"][0]["fired"] == 1
    assert caller.get("cvms", page=4).status_code == 429
    assert caller.admin("DELETE", "/faults").json()["faults"] == []
    assert caller.get("cvms", page=4).status_code == 200
    bad = caller.admin("PUT", "/faults", json={"faults": ["418"]})
    assert bad.status_code == 422
    assert "unknown fault kind" in bad.json()["detail"]
    assert caller.admin("PUT", "/faults", json={"faults": "503"}).status_code == 422
