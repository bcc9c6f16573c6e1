"""The key stays out of sight: in texts, URLs, the auth's repr and httpx's and httpcore's logs."""

from __future__ import annotations

import logging

import httpx
import pytest

from sync.api.redaction import (
    HTTP_LOGGERS,
    REDACTED,
    ApiKeyAuth,
    redact_logs,
    redact_secrets,
    safe_url,
)

KEY = "phak_redaction_test_0123456789SECRET"


def test_redact_secrets_hides_any_key_shaped_token() -> None:
    assert redact_secrets("a phak_OTHER-key_1 b") == "a [redacted] b"
    assert redact_secrets("s3cret and more", ["s3cret", ""]) == "[redacted] and more"
    assert redact_secrets("nothing here", []) == "nothing here"


def test_safe_url_drops_userinfo_fragment_and_secret_query_values() -> None:
    url = "https://user:pw@h.example/api/v1/apps?page=1&api_key=phak_abc&Token=t#frag"
    assert safe_url(url) == "https://h.example/api/v1/apps?page=1&api_key=redacted&Token=redacted"
    assert safe_url(httpx.URL("http://127.0.0.1:8000/api/v1/cvms/paginated")) == (
        "http://127.0.0.1:8000/api/v1/cvms/paginated"
    )


def test_api_key_auth_sends_the_key_and_hides_it_in_its_repr() -> None:
    auth = ApiKeyAuth(KEY)
    request = httpx.Request("GET", "https://h.example/api/v1/apps")
    sent = next(auth.auth_flow(request))
    assert sent.headers["X-API-Key"] == KEY
    assert KEY not in repr(auth)
    assert REDACTED in repr(auth)


def test_redact_logs_rewrites_records_until_removed(caplog: pytest.LogCaptureFixture) -> None:
    remove = redact_logs(("opaque-secret",), "tests.redaction")
    try:
        with caplog.at_level(logging.DEBUG):
            logging.getLogger("httpx").info("echo %s", "opaque-secret")
            # a key-shaped token alone does not make the filter act: only its secrets do
            logging.getLogger("httpcore.http11").debug("header %s", KEY)
            logging.getLogger("tests.redaction").warning("also %s here", "opaque-secret")
        assert caplog.messages == ["echo [redacted]", f"header {KEY}", "also [redacted] here"]
    finally:
        remove()
    for name in (*HTTP_LOGGERS, "tests.redaction"):
        assert not logging.getLogger(name).filters
