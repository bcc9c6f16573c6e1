"""PhalaClient's configuration: the headers every request carries, and what it refuses before
any request (unknown version, missing key). Every other value is validated by Settings, once
(tests/sync/test_settings.py).
"""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from sync.api.client import PhalaClient, user_agent
from sync.api.retry import RetryPolicy
from sync.errors import (
    ConfigError,
    UnknownVersionError,
)
from sync.settings import Settings
from sync.versions import KNOWN_VERSIONS
from tests.sync.api.fake_api import (
    BASE,
    KEY,
    VERSION,
    FakeApi,
    collect_cvms,
    list_cvms,
    make_client,
    run,
)

# --- configuration -----------------------------------------------------------------------------


def test_every_request_carries_key_version_accept_and_user_agent() -> None:
    api = FakeApi(total=250)

    list_cvms(api)
    assert sorted(api.pages_requested()) == [1, 2, 3]
    for request in api.requests:
        assert request.headers["X-API-Key"] == KEY
        assert request.headers["X-Phala-Version"] == VERSION
        assert request.headers["Accept"] == "application/json"
        assert request.headers["User-Agent"] == user_agent()
        assert request.url.path == "/api/v1/cvms/paginated"
        assert request.url.params["page_size"] == "100"
    assert user_agent().startswith("phala-sync/")


def test_unknown_version_is_refused_before_any_request() -> None:
    api = FakeApi(total=3)
    with pytest.raises(UnknownVersionError) as caught:
        make_client(api, version="2099-01-01")
    assert api.requests == []
    for known in KNOWN_VERSIONS:
        assert known in str(caught.value)


@pytest.mark.parametrize("key", [None, "", "   ", SecretStr("")])
def test_missing_key_is_refused_before_any_request(key: SecretStr | str | None) -> None:
    api = FakeApi(total=3)
    with pytest.raises(ConfigError, match="PHALA_CLOUD_API_KEY"):
        make_client(api, api_key=key)
    assert api.requests == []


def test_plain_string_key_and_trailing_slash(monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeApi(total=1)

    async def main() -> None:
        async with make_client(api, api_key=KEY, base_url=BASE + "/") as client:
            assert client.base_url == BASE
            assert KEY not in repr(client)
            await collect_cvms(client)

    run(main)
    assert str(api.requests[0].url) == f"{BASE}/cvms/paginated?page=1&page_size=100"
    assert api.requests[0].headers["X-API-Key"] == KEY


def test_from_settings_reads_the_sdk_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHALA_CLOUD_API_KEY", KEY)
    monkeypatch.setenv("PHALA_CLOUD_API_PREFIX", "https://env.test/api/v1/")
    monkeypatch.setenv("PHALA_SYNC_PAGE_SIZE", "40")
    monkeypatch.setenv("PHALA_SYNC_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("PHALA_SYNC_RETRY_BUDGET", "20")
    settings = Settings(_env_file=None)
    api = FakeApi(total=50)

    async def main() -> None:
        client = PhalaClient.from_settings(settings, transport=httpx.MockTransport(api))
        async with client:
            assert client.retry == RetryPolicy(max_attempts=3, budget_seconds=20)
            assert (client.page_size, client.concurrency, client.version) == (40, 4, VERSION)
            await collect_cvms(client)

    run(main)
    assert [str(r.url) for r in api.requests] == [
        "https://env.test/api/v1/cvms/paginated?page=1&page_size=40",
        "https://env.test/api/v1/cvms/paginated?page=2&page_size=40",
    ]
    assert all(r.headers["X-API-Key"] == KEY for r in api.requests)


def test_from_settings_without_a_key_is_a_config_error() -> None:
    settings = Settings(_env_file=None)
    with pytest.raises(ConfigError, match="PHALA_CLOUD_API_KEY"):
        PhalaClient.from_settings(settings)
