"""Settings: the one place a value is validated, the one missing-key message, the one rule for a
password in a run parameter, and what the edges derive from the fields (env names, help, choices).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from sync.api.client import PhalaClient
from sync.errors import ConfigError
from sync.settings import (
    DEPLOYMENT_OPTIONS,
    MISSING_KEY,
    PASSWORD_PARAMETER,
    SYNC_OPTIONS,
    Settings,
    api_key_text,
    build_settings,
    env_name,
    flow_parameters,
    refuse_secret_parameters,
    require_api_key,
    setting_choices,
    setting_help,
    setting_type,
)

PASSWORD_URL = "postgresql://phala:hunter2@db.example:5432/phala_sync"


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nothing from the machine: no PHALA_* variable, no .env file."""
    monkeypatch.chdir(tmp_path)
    for name in ("PHALA_CLOUD_API_KEY", "PHALA_CLOUD_API_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    for field in Settings.model_fields:
        monkeypatch.delenv(f"PHALA_SYNC_{field.upper()}", raising=False)


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({"page_size": 0}, "page_size"),
        ({"page_size": 101}, "page_size"),
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": 33}, "concurrency"),
        ({"timeout": 0}, "timeout"),
        ({"lock_timeout": -1}, "lock_timeout"),
        ({"validation_policy": "lenient"}, "validation_policy"),
        ({"target": ""}, "target"),
        ({"base_url": "cloud.example/api/v1"}, "base_url"),
        ({"base_url": "ftp://cloud.example/api/v1"}, "base_url"),
        ({"base_url": "https://phak_SECRET@/api/v1"}, "base_url"),
    ],
)
def test_bad_values_are_one_config_error_naming_the_setting_not_the_value(
    overrides: dict[str, Any], name: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        build_settings(overrides)
    message = str(caught.value)
    assert message.startswith(f"invalid settings: {name}: ")
    assert "\n" not in message
    for value in overrides.values():
        if isinstance(value, str) and value:
            assert value not in message


def test_the_base_url_loses_its_slash_and_its_check_names_the_variable() -> None:
    assert build_settings({"base_url": " https://x.test/api/v1/ "}).base_url == (
        "https://x.test/api/v1"
    )
    with pytest.raises(ConfigError, match="PHALA_CLOUD_API_PREFIX"):
        build_settings({"base_url": "x.test"})


@pytest.mark.parametrize("key", [None, "", "   ", SecretStr(""), SecretStr(" \t")])
def test_one_missing_key_message_for_settings_and_client(key: SecretStr | str | None) -> None:
    with pytest.raises(ConfigError) as from_settings:
        require_api_key(Settings(api_key=key))
    with pytest.raises(ConfigError) as from_text:
        api_key_text(key)
    with pytest.raises(ConfigError) as from_client:
        PhalaClient(base_url="https://x.test/api/v1", api_key=key, version="2026-01-21")
    assert str(from_settings.value) == str(from_text.value) == str(from_client.value)
    assert str(from_client.value) == MISSING_KEY
    for way in ("PHALA_CLOUD_API_KEY", ".env", "--key-secret", "NAME:BLOCK", "api_key_secret"):
        assert way in MISSING_KEY, way
    assert api_key_text(SecretStr(" phak_x ")) == "phak_x"


def test_a_password_never_becomes_a_flow_parameter() -> None:
    given = {"database_url": PASSWORD_URL, "page_size": 10, "target": None}
    parameters, environment = flow_parameters(given)
    assert parameters == {"page_size": 10}
    assert environment == {"PHALA_SYNC_DATABASE_URL": PASSWORD_URL}
    with pytest.raises(ConfigError) as caught:
        refuse_secret_parameters(given)
    assert str(caught.value) == PASSWORD_PARAMETER
    assert "hunter2" not in PASSWORD_PARAMETER
    assert "PHALA_SYNC_DATABASE_URL" in PASSWORD_PARAMETER

    plain = {"database_url": "postgresql://phala@db.example/phala_sync"}
    assert flow_parameters(plain) == (plain, {})
    refuse_secret_parameters(plain)
    refuse_secret_parameters({})


def test_env_names_types_choices_and_help_come_from_the_fields() -> None:
    assert env_name("api_key") == "PHALA_CLOUD_API_KEY"
    assert env_name("base_url") == "PHALA_CLOUD_API_PREFIX"
    assert env_name("page_size") == "PHALA_SYNC_PAGE_SIZE"
    assert setting_type("page_size") is int
    assert setting_type("report_dir") is Path
    assert setting_choices("validation_policy") == ("strict", "quarantine")
    assert setting_choices("page_size") is None
    assert setting_help("page_size") == (
        "Items per page (1-100). [env PHALA_SYNC_PAGE_SIZE; default 100]"
    )
    assert setting_help("lock_timeout", default=600.0).endswith("[default 600.0]")


def test_run_parameters_are_settings_with_help() -> None:
    for name in (*SYNC_OPTIONS, *DEPLOYMENT_OPTIONS):
        assert name in Settings.model_fields, name
        assert Settings.model_fields[name].description, name
    assert len(set(SYNC_OPTIONS)) == len(SYNC_OPTIONS)
    assert len(set(DEPLOYMENT_OPTIONS)) == len(DEPLOYMENT_OPTIONS)
    # Never a run parameter: the key (a secret) and the database URL of a deployment.
    assert "api_key" not in {*SYNC_OPTIONS, *DEPLOYMENT_OPTIONS}
    assert "database_url" not in DEPLOYMENT_OPTIONS
