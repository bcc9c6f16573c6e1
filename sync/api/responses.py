"""Turning an error answer from the API into a typed error with a readable message.

The API answers errors in three JSON shapes, and proxies in front of it answer in anything:

- validation (422): ``{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}``
- plain: ``{"detail": "..."}``
- structured: ``{"error_code": "ERR-MM-NNN", "message", "request_id", "details": [{field, value,
  message}], "suggestions", "links"}``, with an ``X-Request-ID`` header
- not JSON (an HTML page from a gateway, an empty body): its first few hundred characters.

Every string taken from a response is passed through
:func:`~sync.api.redaction.redact_secrets`, so an API key that a server echoes back never reaches a
message, and URLs go through :func:`~sync.api.redaction.safe_url`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import httpx
import orjson

from sync.api.redaction import redact_secrets, safe_url
from sync.api.retry import parse_retry_after
from sync.errors import (
    ApiError,
    AuthError,
    FatalApiError,
    NotFoundError,
    RateLimitedError,
    RetriableApiError,
)

_MAX_TEXT = 300


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _describe_validation(detail: list[Any]) -> str:
    parts = []
    for entry in detail:
        if isinstance(entry, dict):
            loc = entry.get("loc")
            where = ".".join(str(p) for p in loc) if isinstance(loc, list) else None
            msg = _as_text(entry.get("msg", entry))
            parts.append(f"{where}: {msg}" if where else msg)
        else:
            parts.append(_as_text(entry))
    return "invalid request: " + "; ".join(parts) if parts else "invalid request"


def _describe_structured(body: dict[str, Any]) -> str:
    text = _as_text(body.get("message") or "no message")
    details = body.get("details")
    if isinstance(details, list) and details:
        described = []
        for entry in details:
            if isinstance(entry, dict):
                field = entry.get("field")
                message = _as_text(entry.get("message", ""))
                described.append(f"{field}: {message}" if field else message)
            else:
                described.append(_as_text(entry))
        text += " (" + "; ".join(described) + ")"
    suggestions = body.get("suggestions")
    if isinstance(suggestions, list) and suggestions:
        text += "; suggestions: " + "; ".join(_as_text(s) for s in suggestions)
    return text


def describe_body(content: bytes) -> tuple[str, str | None, str | None]:
    """``(description, error_code, request_id)`` of an error body, whatever its shape."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        text = content.decode("utf-8", errors="replace").strip()
        return (f"non-JSON body: {text}" if text else "empty body"), None, None
    if not isinstance(body, dict):
        return _as_text(body), None, None
    error_code = body.get("error_code")
    request_id = body.get("request_id")
    code = error_code if isinstance(error_code, str) else None
    rid = request_id if isinstance(request_id, str) else None
    if "error_code" in body or "message" in body:
        return _describe_structured(body), code, rid
    detail = body.get("detail")
    if isinstance(detail, list):
        return _describe_validation(detail), code, rid
    if isinstance(detail, str):
        return detail, code, rid
    return _as_text(body), code, rid


def _advice(status: int, response: httpx.Response, version: str) -> str:
    if status == 401:
        return "the API key was refused: check PHALA_CLOUD_API_KEY"
    if status == 403:
        return "the API key may not list this: check its workspace and permissions"
    if status == 404:
        return "check PHALA_CLOUD_API_PREFIX (the base URL, up to and including /api/v1)"
    if status == 429:
        return "rate limited: retry later or lower the concurrency"
    if status >= 500:
        return "server-side error: retry later"
    if 300 <= status < 400:
        location = response.headers.get("Location", "nowhere")
        return f"unexpected redirect to {safe_url(location)}: check PHALA_CLOUD_API_PREFIX"
    return f"the request was refused: the API may have changed for version {version}"


def error_from_response(
    response: httpx.Response,
    *,
    url: str,
    version: str,
    now: datetime,
    secrets: Iterable[str] = (),
) -> ApiError:
    """The typed error for a non-2xx ``response`` (its body must have been read).

    401/403 -> :class:`AuthError`, 404 -> :class:`NotFoundError`, 429 -> :class:`RateLimitedError`
    (with ``retry_after`` from the header), 5xx -> :class:`RetriableApiError`, anything else ->
    :class:`FatalApiError`. ``url`` should already be a :func:`~sync.api.redaction.safe_url`.
    """
    secrets = tuple(secrets)
    status = response.status_code
    description, error_code, body_request_id = describe_body(response.content)
    request_id = response.headers.get("X-Request-ID") or body_request_id
    advice = _advice(status, response, version)
    message = redact_secrets(f"{_shorten(description)}; {advice}", secrets)
    kw: dict[str, Any] = {
        "status": status,
        "url": redact_secrets(url, secrets),
        "version": version,
        "request_id": redact_secrets(_shorten(request_id), secrets) if request_id else None,
        "error_code": redact_secrets(_shorten(error_code), secrets) if error_code else None,
    }
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now=now)
        return RateLimitedError(message, retry_after=retry_after, **kw)
    if status in (401, 403):
        return AuthError(message, **kw)
    if status == 404:
        return NotFoundError(message, **kw)
    if 500 <= status < 600:
        return RetriableApiError(message, **kw)
    return FatalApiError(message, **kw)
