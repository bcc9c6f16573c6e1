"""parse_page of each listed endpoint: envelopes, items, and the two validation policies."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest

from sync.api.pages import (
    Page,
    Rejection,
    exact_dumps,
    field_path,
    has_long_integer,
    parse_page,
)
from sync.endpoints import APPS, CVMS, EndpointSpec
from sync.errors import InvalidEnvelopeError, InvalidItemError, SchemaDriftError
from sync.records import UNKNOWN
from sync.versions import KNOWN_VERSIONS, get_version

GOLDEN = Path(__file__).parent.parent / "golden"
LEGACY, CURRENT = "2025-10-28", "2026-01-21"
URL = "https://cloud-api.example.com/api/v1/cvms/paginated?page=3&page_size=100"
APPS_URL = "https://cloud-api.example.com/api/v1/apps?page=3&page_size=100"
POLICIES = ["strict", "quarantine"]


def golden(endpoint: str, version: str) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads((GOLDEN / f"{endpoint}_{version}.json").read_bytes())
    return data


def golden_items(endpoint: str, version: str) -> list[Any]:
    items: list[Any] = golden(endpoint, version)["items" if endpoint == "cvms" else "dstack_apps"]
    return items


def cvm_body(items: Any, /, **envelope: Any) -> bytes:
    return orjson.dumps(
        {"items": items, "total": 250, "page": 3, "page_size": 100, "pages": 3} | envelope
    )


def app_body(items: Any, /, **envelope: Any) -> bytes:
    return orjson.dumps(
        {"dstack_apps": items, "page": 3, "page_size": 100, "total": 250, "total_pages": 3}
        | envelope
    )


# --- Valid pages ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [LEGACY, CURRENT])
def test_a_golden_cvm_page_parses_with_raw_items_kept(version: str) -> None:
    body = (GOLDEN / f"cvms_{version}.json").read_bytes()
    items = golden_items("cvms", version)
    page = parse_page(CVMS, get_version(version), 1, body, policy="strict", url=URL)
    assert isinstance(page, Page)
    assert (page.endpoint, page.version, page.number) == ("cvms", version, 1)
    assert (page.total, page.page_size, page.pages) == (5, 100, 1)
    assert page.rejections == []
    assert [orjson.loads(b.raw) for b in page.items] == items  # unknown fields included
    assert orjson.loads(page.items[4].raw)["updated_at"] == "2026-03-01T10:00:00Z"


@pytest.mark.parametrize("version", [LEGACY, CURRENT])
def test_a_golden_app_page_parses_with_raw_items_kept(version: str) -> None:
    body = (GOLDEN / f"apps_{version}.json").read_bytes()
    page = parse_page(APPS, get_version(version), 1, body, policy="strict", url=APPS_URL)
    assert (page.endpoint, page.version, page.number) == ("apps", version, 1)
    assert (page.total, page.page_size, page.pages) == (3, 100, 1)
    assert [orjson.loads(b.raw) for b in page.items] == golden_items("apps", version)
    assert page.items[2].member_vm_uuids is UNKNOWN  # the minimal app


@pytest.mark.parametrize("version", KNOWN_VERSIONS)
@pytest.mark.parametrize("policy", POLICIES)
def test_an_empty_page_with_zero_pages_is_valid(version: str, policy: Any) -> None:
    api = get_version(version)
    cvms = parse_page(CVMS, api, 1, cvm_body([], total=0, page=1, pages=0), policy=policy, url=URL)
    assert (cvms.items, cvms.rejections, cvms.total, cvms.pages) == ([], [], 0, 0)
    apps = parse_page(
        APPS, api, 1, app_body([], total=0, page=1, total_pages=0), policy=policy, url=APPS_URL
    )
    assert (apps.items, apps.rejections, apps.total, apps.pages) == ([], [], 0, 0)


def test_unknown_envelope_fields_are_accepted() -> None:
    body = cvm_body(golden_items("cvms", CURRENT)[:1], next_cursor="abc", has_more=True)
    page = parse_page(CVMS, get_version(CURRENT), 3, body, policy="strict", url=URL)
    assert len(page.items) == 1


def test_the_page_number_is_the_one_requested() -> None:
    page = parse_page(CVMS, get_version(CURRENT), 7, cvm_body([], page=1), policy="strict", url=URL)
    assert page.number == 7


# --- Invalid envelopes: fatal under every policy -------------------------------------------------


#: endpoint -> its spec, the version its envelope cases run under, the URL and the path
PARSERS: dict[str, tuple[EndpointSpec[Any], str, str, str]] = {
    "cvms": (CVMS, CURRENT, URL, "/cvms/paginated"),
    "apps": (APPS, LEGACY, APPS_URL, "/apps"),
}


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize(
    ("endpoint", "body", "field"),
    [
        ("cvms", cvm_body(None), "items"),
        ("cvms", cvm_body({"0": {}}), "items"),
        ("cvms", cvm_body([], total="250"), "total"),
        ("cvms", cvm_body([], pages=3.0), "pages"),
        ("cvms", cvm_body([], page_size=True), "page_size"),
        ("cvms", orjson.dumps({"items": [], "total": 0, "page": 1, "page_size": 100}), "pages"),
        ("cvms", cvm_body([]).replace(b'"pages"', b'"total_pages"'), "pages"),
        ("cvms", orjson.dumps([]), "(the whole body)"),
        ("apps", app_body("none"), "dstack_apps"),
        ("apps", app_body([], total_pages=None), "total_pages"),
        ("apps", cvm_body([]), "dstack_apps"),  # a CVM page where an app page belongs
    ],
)
def test_an_invalid_envelope_always_fails(
    endpoint: str, body: bytes, field: str, policy: Any
) -> None:
    spec, version, url, path = PARSERS[endpoint]
    with pytest.raises(InvalidEnvelopeError) as exc:
        parse_page(spec, get_version(version), 3, body, policy=policy, url=url)
    message = str(exc.value)
    for part in (version, path, "page 3", url, field):
        assert part in message


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize(
    "body", [b"", b"<html><body>502 Bad Gateway</body></html>", b'{"items": [', b"\xff\xfe"]
)
def test_a_body_that_is_not_json_always_fails(body: bytes, policy: Any) -> None:
    for spec in (CVMS, APPS):
        with pytest.raises(InvalidEnvelopeError) as exc:
            parse_page(spec, get_version(CURRENT), 3, body, policy=policy, url=URL)
        message = str(exc.value)
        assert "not JSON" in message
        assert CURRENT in message
        assert "page 3" in message
        assert URL in message
        assert isinstance(exc.value, SchemaDriftError)


# --- Invalid items: strict fails, quarantine sets them aside -------------------------------------


def _with_invalid_second_item(version: str) -> tuple[list[Any], Any]:
    items = copy.deepcopy(golden_items("cvms", version)[:3])
    if version == LEGACY:
        items[1]["vcpu"] = "1"
    else:
        items[1]["resource"]["vcpu"] = "1"
    return items, items[1]


@pytest.mark.parametrize(
    ("version", "path"), [(LEGACY, "vcpu"), (CURRENT, "resource.vcpu")], ids=[LEGACY, CURRENT]
)
def test_strict_fails_on_the_first_invalid_item_with_where_and_why(version: str, path: str) -> None:
    items, _ = _with_invalid_second_item(version)
    items[2]["name"] = None  # a second invalid item: only the first one is reported
    with pytest.raises(InvalidItemError) as exc:
        parse_page(CVMS, get_version(version), 3, cvm_body(items), policy="strict", url=URL)
    message = str(exc.value)
    for part in (version, "/cvms/paginated", "page 3", "item 1", path, URL):
        assert part in message
    assert "CVM 6b1e4d7a2c9f4a3b8e5d0f1a2b3c4d5e" in message
    assert 'Input should be a valid integer (got a string "1")' in message
    assert "batch-worker" not in message  # the third item is not reported
    assert "indexer" not in message  # nor is the invalid item dumped: only the offending value


@pytest.mark.parametrize("version", [LEGACY, CURRENT])
def test_quarantine_sets_the_invalid_item_aside_and_keeps_the_rest(version: str) -> None:
    items, invalid = _with_invalid_second_item(version)
    page = parse_page(CVMS, get_version(version), 3, cvm_body(items), policy="quarantine", url=URL)
    assert [b.cvm.name for b in page.items] == ["web-frontend", "batch-worker"]
    [held] = page.rejections
    assert isinstance(held, Rejection)
    assert (held.endpoint, held.page, held.index) == ("cvms", 3, 1)
    assert held.entity_id == "6b1e4d7a2c9f4a3b8e5d0f1a2b3c4d5e"
    assert orjson.loads(held.raw) == invalid
    assert "vcpu" in held.error
    assert "valid integer" in held.error


@pytest.mark.parametrize("item", [42, "cvm", None, [], {}])
def test_an_item_that_is_not_even_an_object_is_quarantined_without_a_key(item: Any) -> None:
    page = parse_page(CVMS, get_version(CURRENT), 3, cvm_body([item]), policy="quarantine", url=URL)
    [held] = page.rejections
    assert held.entity_id is None
    assert held.raw == orjson.dumps(item)
    assert page.items == []


def test_the_error_lists_a_few_fields_and_counts_the_rest() -> None:
    page = parse_page(
        CVMS,
        get_version(CURRENT),
        3,
        cvm_body([{"vm_uuid": "AB-CD"}]),
        policy="quarantine",
        url=URL,
    )
    [held] = page.rejections
    assert held.entity_id == "abcd"
    assert held.error == (
        "id: Field required; name: Field required; resource: Field required; and 2 more errors"
    )


def test_an_item_that_cannot_be_normalized_is_set_aside_too() -> None:
    items = copy.deepcopy(golden_items("cvms", CURRENT)[:2])
    items[0]["resource"]["memory_in_gb"] = 1.7e308  # a number, but not as MB
    page = parse_page(CVMS, get_version(CURRENT), 3, cvm_body(items), policy="quarantine", url=URL)
    assert [h.index for h in page.rejections] == [0]
    assert page.rejections[0].error.startswith("cannot normalize")
    with pytest.raises(InvalidItemError, match=r"item 0 .*cannot normalize"):
        parse_page(CVMS, get_version(CURRENT), 3, cvm_body(items), policy="strict", url=URL)


def test_an_item_of_the_other_version_is_invalid() -> None:
    current_items = golden_items("cvms", CURRENT)[:1]
    with pytest.raises(InvalidItemError, match=r"hosted: Field required"):
        parse_page(CVMS, get_version(LEGACY), 3, cvm_body(current_items), policy="strict", url=URL)


def test_strict_app_errors_name_the_app_and_the_variant_path() -> None:
    apps = copy.deepcopy(golden_items("apps", CURRENT))
    apps[0]["cvms"][1]["resource"]["disk_in_gb"] = "40"
    with pytest.raises(InvalidItemError) as exc:
        parse_page(APPS, get_version(CURRENT), 3, app_body(apps), policy="strict", url=APPS_URL)
    message = str(exc.value)
    for part in (CURRENT, "/apps", "page 3", "item 0", APPS_URL):
        assert part in message
    assert "app e4c1d0b5a7f3926c8b1e0d4a5f6c7b8a9d0e1f2a" in message
    assert "DstackAppFullResponse.cvms[1].resource.disk_in_gb" in message


def test_quarantined_apps_keep_their_app_id() -> None:
    apps = copy.deepcopy(golden_items("apps", LEGACY))
    apps[2]["name"] = "ghost"  # a minimal app with a name is neither variant
    page = parse_page(
        APPS, get_version(LEGACY), 3, app_body(apps), policy="quarantine", url=APPS_URL
    )
    [held] = page.rejections
    assert (held.endpoint, held.index, held.entity_id) == ("apps", 2, apps[2]["app_id"])
    assert "DstackAppMinimalResponse.name" in held.error
    assert len(page.items) == 2


@pytest.mark.parametrize(
    ("loc", "text"),
    [
        ((), "(the whole item)"),
        (("name",), "name"),
        (("resource", "vcpu"), "resource.vcpu"),
        (("cvms", 0, "vm_uuid"), "cvms[0].vm_uuid"),
        (("items", 3), "items[3]"),
    ],
)
def test_field_paths_read_like_json_paths(loc: tuple[int | str, ...], text: str) -> None:
    assert field_path(loc) == text


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"a": 1180591620717411303424}', True),
        (b"[1,-12345678901234567890]", True),
        (b"[\n  -1234567890123456789]", True),
        (b"1234567890123456789", True),
        (b'{"hash":"x94714ad87949572919162452822ff86a"}', False),
        (b'{"id":"1234567890123456789012"}', False),
        (b'{"small":123456789012345678,"f":0.12345678901234567890}', False),
    ],
)
def test_long_integer_literals_are_found_outside_strings(body: bytes, expected: bool) -> None:
    assert has_long_integer(body) is expected


def test_exact_dumps_keeps_big_integers_and_refuses_infinity() -> None:
    assert exact_dumps({"a": 2**70, "b": "\ud800"}) == b'{"a":1180591620717411303424,"b":"\\ud800"}'
    with pytest.raises(ValueError, match="Out of range"):
        exact_dumps({"a": float("inf")})
