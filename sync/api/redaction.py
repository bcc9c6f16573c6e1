"""Keeping the API key out of sight: in requests' repr, messages, URLs and log records.

- :class:`ApiKeyAuth` sends the key as ``X-API-Key`` (so it is not one of a client's default
  headers) and never shows it in its repr.
- :func:`redact_secrets` hides the given secrets, and anything shaped like a Phala Cloud API key,
  in a text; every string taken from a response goes through it.
- :func:`safe_url` is a URL fit for a message: no user info, no fragment, secret-looking query
  values hidden.
- :func:`redact_logs` puts a redacting filter on the loggers of httpx and httpcore (and any
  others named) and gives back the function that takes it off again.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Generator, Iterable

import httpx

REDACTED = "[redacted]"
#: Phala Cloud API keys look like ``phak_...``; any such token in a server's answer is hidden too.
_KEY_PATTERN = re.compile(r"phak_[A-Za-z0-9_\-]+")
_SENSITIVE_QUERY = re.compile(r"key|token|secret|password|auth|sig", re.IGNORECASE)
#: Loggers of httpx and httpcore that get a redacting filter while a client is open. httpx logs
#: URLs and httpcore (at DEBUG) response headers, never request headers; the filter is a backstop
#: against a server that echoes the key back.
HTTP_LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)


def redact_secrets(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every secret in ``secrets`` and anything shaped like an API key hidden."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return _KEY_PATTERN.sub(REDACTED, text)


def safe_url(url: httpx.URL | str) -> str:
    """The URL without user info or fragment, and with secret-looking query values hidden."""
    url = httpx.URL(url)
    params = [
        (name, "redacted" if _SENSITIVE_QUERY.search(name) else value)
        for name, value in url.params.multi_items()
    ]
    cleaned = url.copy_with(userinfo=b"", fragment=None, params=params or None)
    return redact_secrets(str(cleaned))


class ApiKeyAuth(httpx.Auth):
    """Sends the API key as ``X-API-Key``; its repr does not show it."""

    def __init__(self, key: str) -> None:
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["X-API-Key"] = self._key
        yield request

    def __repr__(self) -> str:
        return f"ApiKeyAuth(key={REDACTED})"


class _RedactingFilter(logging.Filter):
    """Rewrites a log record whose message contains a secret."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(secret in message for secret in self._secrets):
            record.msg = redact_secrets(message, self._secrets)
            record.args = None
        return True


def redact_logs(secrets: tuple[str, ...], *also: str) -> Callable[[], None]:
    """Redact ``secrets`` from the records of :data:`HTTP_LOGGERS` and of the loggers ``also``.

    Returns the function that removes the filter again.
    """
    log_filter = _RedactingFilter(secrets)
    loggers = [logging.getLogger(name) for name in (*HTTP_LOGGERS, *also)]
    for each in loggers:
        each.addFilter(log_filter)

    def remove() -> None:
        for each in loggers:
            each.removeFilter(log_filter)

    return remove
