"""Settings: one class, read from flags, the environment or a ``.env`` file, built at the edges.

The API key and base URL use the official SDKs' variable names (``PHALA_CLOUD_API_KEY``,
``PHALA_CLOUD_API_PREFIX``); everything else is ``PHALA_SYNC_<FIELD>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sync.errors import ConfigError
from sync.versions import DEFAULT_VERSION, get_version

DEFAULT_BASE_URL = "https://cloud-api.phala.com/api/v1"
DEFAULT_DATABASE_URL = "sqlite:///phala-sync.db"

ValidationPolicy = Literal["strict", "quarantine"]


class Settings(BaseSettings):
    """Everything a sync run needs to know. Secrets are ``SecretStr`` and never printed."""

    model_config = SettingsConfigDict(
        env_prefix="PHALA_SYNC_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("PHALA_CLOUD_API_KEY", "api_key"),
        description="Phala Cloud API key (phak_...), sent as X-API-Key.",
    )
    base_url: str = Field(
        default=DEFAULT_BASE_URL,
        validation_alias=AliasChoices("PHALA_CLOUD_API_PREFIX", "base_url"),
        description="API base URL, up to and including /api/v1.",
    )
    api_version: str = Field(default=DEFAULT_VERSION, description="Pinned X-Phala-Version.")
    database_url: str = Field(default=DEFAULT_DATABASE_URL, description="SQLAlchemy database URL.")
    target: str = Field(
        default="default",
        min_length=1,
        max_length=100,
        description="Name of this sync target (one per API key); deletions are inferred per target",
    )
    page_size: int = Field(default=100, ge=1, le=100, description="Items per page (1-100).")
    concurrency: int = Field(default=4, ge=1, le=32, description="Pages fetched at once.")
    validation_policy: ValidationPolicy = Field(
        default="quarantine", description="strict: any invalid item fails the run."
    )
    max_invalid_share: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="quarantine policy: the run fails above this share of invalid items.",
    )
    timeout: float = Field(default=30.0, gt=0, description="Per-request timeout in seconds.")
    max_attempts: int = Field(default=6, ge=1, le=50, description="Attempts per request.")
    retry_budget: float = Field(
        default=60.0, gt=0, description="Seconds a request may spend retrying before giving up."
    )
    backoff_base: float = Field(default=0.5, gt=0, description="First retry delay in seconds.")
    backoff_max: float = Field(default=15.0, gt=0, description="Longest retry delay in seconds.")
    lock_timeout: float = Field(
        default=0.0,
        ge=0,
        description="Seconds to wait for another run's lock before giving up (0: exit at once).",
    )
    migrate: bool = Field(
        default=False,
        description="Upgrade a database at an older schema revision when a run starts "
        "(an empty database is always created).",
    )
    report_dir: Path | None = Field(
        default=None,
        description="Directory where each successful flow run writes the target's fleet report "
        "(fleet-report-<target>.html); unset: no report.",
    )

    @field_validator("api_version")
    @classmethod
    def _known_version(cls, value: str) -> str:
        get_version(value)  # UnknownVersionError, naming the known ones, if the registry has none
        return value

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")


# ------------------------------------------------------------------------------ at the edges
# The CLI and the flow build Settings the same way: every value given explicitly (a flag, a flow
# parameter) that is not None wins over PHALA_SYNC_*, PHALA_CLOUD_API_KEY, PHALA_CLOUD_API_PREFIX
# and .env. The API key is never one of those values on the command line (it would show in ps);
# the flow may pass one it loaded from a Prefect Secret block.

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
