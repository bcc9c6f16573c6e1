"""Error answers of every shape become typed errors with readable, key-free messages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from sync.api.responses import describe_body, error_from_response
from sync.errors import (
    ApiError,
    AuthError,
    FatalApiError,
    NotFoundError,
    RateLimitedError,
    RetriableApiError,
)

KEY = "phak_test_0123456789abcdefSECRET"
URL = "https://cloud-api.example/api/v1/cvms/paginated?page=2&page_size=100"
VERSION = "2026-01-21"
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def _error(
    status: int,
    body: Any = None,
    *,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> ApiError:
    if content is None:
        content = orjson.dumps(body)
    response = httpx.Response(status, content=content, headers=headers)
    return error_from_response(response, url=URL, version=VERSION, now=NOW, secrets=[KEY])


def test_validation_error_422() -> None:
    err = _error(
        422,
        {
            "detail": [
                {
                    "loc": ["query", "page_size"],
                    "msg": "Input should be less than or equal to 100",
                    "type": "less_than_equal",
                },
                {"loc": ["query", "page"], "msg": "Input should be greater than 0", "type": "x"},
            ]
        },
    )
    assert type(err) is FatalApiError
    assert not err.retriable
    assert (err.status, err.url, err.version) == (422, URL, VERSION)
    text = str(err)
    assert text.startswith(f"HTTP 422 from GET {URL} (X-Phala-Version {VERSION})")
    assert "query.page_size: Input should be less than or equal to 100" in text
    assert "query.page: Input should be greater than 0" in text


def test_plain_detail_404() -> None:
    err = _error(404, {"detail": "CVM not found"})
    assert type(err) is NotFoundError
    assert "CVM not found" in str(err)
    assert "PHALA_CLOUD_API_PREFIX" in str(err)


def test_structured_error_with_request_id_header() -> None:
    body = {
        "error_code": "ERR-01-003",
        "message": "API key lacks the workspace:read scope",
        "request_id": "req-from-body",
        "details": [{"field": "X-API-Key", "value": "phak_x", "message": "missing scope"}],
        "suggestions": ["Create a key with read access"],
        "links": [{"url": "https://docs.phala.network", "label": "docs"}],
    }
    err = _error(403, body, headers={"X-Request-ID": "req-123"})
    assert type(err) is AuthError
    assert (err.error_code, err.request_id) == ("ERR-01-003", "req-123")
    text = str(err)
    assert "request id req-123" in text
    assert "[ERR-01-003]" in text
    assert "API key lacks the workspace:read scope (X-API-Key: missing scope)" in text
    assert "suggestions: Create a key with read access" in text


def test_structured_error_request_id_from_body_when_no_header() -> None:
    err = _error(400, {"error_code": "ERR-02-001", "message": "bad filter", "request_id": "r-9"})
    assert type(err) is FatalApiError
    assert (err.error_code, err.request_id) == ("ERR-02-001", "r-9")


def test_non_json_body_is_shown_shortened() -> None:
    html = b"<html>\n<body><h1>502 Bad Gateway</h1>" + b"x" * 1000 + b"</body></html>"
    err = _error(502, content=html, headers={"Content-Type": "text/html"})
    assert type(err) is RetriableApiError
    assert err.retriable
    assert "non-JSON body: <html> <body><h1>502 Bad Gateway</h1>xxx" in str(err)
    assert len(str(err)) < 600


def test_empty_body() -> None:
    err = _error(503, content=b"")
    assert type(err) is RetriableApiError
    assert "empty body" in str(err)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'["a", 1]', '["a",1]'),
        (b'"just a string"', "just a string"),
        (b'{"unexpected": true}', '{"unexpected":true}'),
        (b'{"detail": {"odd": 1}}', '{"detail":{"odd":1}}'),
        (b'{"detail": ["not a dict"]}', "invalid request: not a dict"),
        (b'{"detail": []}', "invalid request"),
        (b'{"message": "only a message"}', "only a message"),
        (b"\xff\xfe not utf-8", "non-JSON body: \ufffd\ufffd not utf-8"),
    ],
)
def test_describe_odd_bodies(content: bytes, expected: str) -> None:
    assert describe_body(content)[0] == expected


def test_rate_limited_carries_retry_after() -> None:
    err = _error(429, {"detail": "slow down"}, headers={"Retry-After": "12"})
    assert isinstance(err, RateLimitedError)
    assert err.retry_after == 12.0
    assert err.retriable
    dated = _error(429, content=b"", headers={"Retry-After": "Sun, 01 Mar 2026 12:00:05 GMT"})
    assert isinstance(dated, RateLimitedError)
    assert dated.retry_after == 5.0
    assert isinstance(_error(429, content=b""), RateLimitedError)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, FatalApiError),
        (401, AuthError),
        (403, AuthError),
        (404, NotFoundError),
        (409, FatalApiError),
        (422, FatalApiError),
        (429, RateLimitedError),
        (500, RetriableApiError),
        (502, RetriableApiError),
        (503, RetriableApiError),
        (504, RetriableApiError),
        (302, FatalApiError),
    ],
)
def test_status_to_class(status: int, cls: type[ApiError]) -> None:
    assert type(_error(status, {"detail": "x"})) is cls


def test_redirect_names_its_target() -> None:
    err = _error(301, content=b"", headers={"Location": "https://elsewhere.example/api/v1/cvms"})
    assert "unexpected redirect to https://elsewhere.example/api/v1/cvms" in str(err)


def test_401_advice_names_the_key_variable() -> None:
    assert "PHALA_CLOUD_API_KEY" in str(_error(401, {"detail": "Invalid API key"}))


def test_echoed_key_is_scrubbed_everywhere() -> None:
    body = {
        "error_code": f"ERR-{KEY}",
        "message": f"key {KEY} is revoked",
        "request_id": KEY,
        "details": [{"field": "X-API-Key", "value": KEY, "message": f"bad key {KEY}"}],
        "suggestions": [f"rotate {KEY}"],
    }
    err = _error(401, body, headers={"X-Request-ID": f"r-{KEY}"})
    for text in (str(err), err.url, err.request_id or "", err.error_code or "", repr(err)):
        assert KEY not in text
    assert "[redacted]" in str(err)
    for status in (400, 404, 422, 500):
        assert KEY not in str(_error(status, {"detail": f"echo {KEY}"}))
        assert KEY not in str(_error(status, content=f"<p>{KEY}</p>".encode()))
