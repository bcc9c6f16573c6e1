"""Settings at the edges (the CLI and the flow): explicit values over the environment and ``.env``.

Both edges build :class:`~sync.settings.Settings` the same way: every value given explicitly (a
flag, a flow parameter) that is not None wins over ``PHALA_SYNC_*``, ``PHALA_CLOUD_API_KEY``,
``PHALA_CLOUD_API_PREFIX`` and ``.env``. The API key is never one of those explicit values on the
command line (it would show in ``ps``); the flow may pass one it loaded from a Prefect Secret block.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr, ValidationError

from sync.errors import ConfigError
from sync.settings import Settings

__all__ = ["MISSING_KEY", "build_settings", "describe_validation_error", "require_api_key"]

MISSING_KEY = (
    "no Phala Cloud API key: set PHALA_CLOUD_API_KEY (in the environment or a .env file), or "
    "store the key in a Prefect Secret block and name the block (--key-secret)"
)


def describe_validation_error(error: ValidationError) -> str:
    """One line naming each invalid setting and why (never the value: it may be a secret)."""
    parts = []
    for entry in error.errors():
        name = ".".join(str(p) for p in entry.get("loc", ())) or "settings"
        parts.append(f"{name}: {entry.get('msg', 'invalid')}")
    return "invalid settings: " + "; ".join(parts)


def build_settings(overrides: Mapping[str, Any], api_key: SecretStr | None = None) -> Settings:
    """Settings from the environment and ``.env`` with the non-None ``overrides`` on top.

    Raises :class:`~sync.errors.ConfigError` (with a one-line message) for invalid values;
    :class:`~sync.errors.UnknownVersionError` for an unknown API version.
    """
    values = {k: v for k, v in overrides.items() if v is not None}
    if api_key is not None:
        values["api_key"] = api_key
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def require_api_key(settings: Settings) -> None:
    """Raise :class:`~sync.errors.ConfigError` unless the settings carry a non-blank key."""
    if settings.api_key is None or not settings.api_key.get_secret_value().strip():
        raise ConfigError(MISSING_KEY)
