"""Settings: one class, read from flags, the environment or a ``.env`` file, built at the edges.

The API key and base URL use the official SDKs' variable names (``PHALA_CLOUD_API_KEY``,
``PHALA_CLOUD_API_PREFIX``); everything else is ``PHALA_SYNC_<FIELD>``.

``Settings`` is the one declaration of every setting: its name, type (a ``Literal`` is its
choices), default, bounds and help (the field's description). The run parameters are settings a
run may also be given: the flow's parameters, the ``sync`` command's options, and the options of
``serve``/``deploy`` that become each deployment's parameters. :data:`SYNC_OPTIONS` and
:data:`DEPLOYMENT_OPTIONS` name them; the CLI builds those options from the fields
(:func:`sync.cli.options.setting_option`), and tests/flows/test_run_parameters.py fails when the
flow's signature or its parameters' descriptions drift from the fields. Values are validated
here, once.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sync.errors import ConfigError
from sync.store.engine import normalize_database_url
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
    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        description="Database URL: sqlite:///path/file.db or postgresql://user@host:5432/db.",
    )
    target: str = Field(
        default="default",
        min_length=1,
        max_length=100,
        description="Name of this sync target (one per API key); deletions are inferred per "
        "target.",
    )
    page_size: int = Field(default=100, ge=1, le=100, description="Items per page (1-100).")
    concurrency: int = Field(default=4, ge=1, le=32, description="Pages fetched at once (1-32).")
    validation_policy: ValidationPolicy = Field(
        default="quarantine",
        description="strict: an invalid item fails the run; quarantine: it is set aside.",
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
        description="Seconds to wait for a run of the same target to finish before giving up "
        "(0: at once).",
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
    def _http_url(cls, value: str) -> str:
        url = value.strip().rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # Not the value: a URL may carry credentials.
            raise ValueError(
                f"not an http(s) URL; set {env_name('base_url')} (or --base-url) to the API's "
                f"URL up to and including /api/v1, e.g. {DEFAULT_BASE_URL}"
            )
        return url


# ------------------------------------------------------------------------------ run parameters
#: The settings ``phala-sync sync`` takes as options, each ``--<name with dashes>``; they become
#: parameters of its flow run. (``report_dir`` is not one: ``phala-sync report`` draws on demand.)
SYNC_OPTIONS = (
    "database_url",
    "api_version",
    "base_url",
    "page_size",
    "target",
    "validation_policy",
    "concurrency",
    "lock_timeout",
    "migrate",
)
#: The settings ``serve`` and ``deploy`` take as options and put in each deployment's parameters.
#: The others come from the environment where the runs happen: the database URL (it may carry a
#: password), the API URL, the concurrency; the target is the deployment's own (``--target``).
DEPLOYMENT_OPTIONS = (
    "api_version",
    "page_size",
    "validation_policy",
    "lock_timeout",
    "migrate",
    "report_dir",
)
#: A scheduled run's ``lock_timeout`` unless ``serve``/``deploy`` say otherwise: a run that finds
#: another run of its target holding the lock (one started by hand, say) waits for it this long
#: rather than giving up at once.
SERVED_LOCK_TIMEOUT = 600.0


def env_name(name: str) -> str:
    """The environment variable of the setting ``name`` (its alias, else PHALA_SYNC_<NAME>)."""
    choices = getattr(Settings.model_fields[name].validation_alias, "choices", None)
    if choices:
        return str(choices[0])
    return f"{Settings.model_config.get('env_prefix', '')}{name}".upper()


def setting_type(name: str) -> Any:
    """The type of the setting ``name`` without ``None``: ``int``, ``Path``, a ``Literal``..."""
    annotation = Settings.model_fields[name].annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        (kind,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return kind
    return annotation


def setting_choices(name: str) -> tuple[str, ...] | None:
    """The values a ``Literal`` setting allows (``validation_policy``), else None."""
    kind = setting_type(name)
    return typing.get_args(kind) if typing.get_origin(kind) is Literal else None


def setting_help(name: str, *, default: Any = None) -> str:
    """The setting's description, with its environment variable and default, or the
    ``default`` a command's option has of its own."""
    description = Settings.model_fields[name].description or ""
    if default is not None:  # the option always has a value: the environment is not read
        return f"{description} [default {default}]"
    shown = Settings.model_fields[name].default
    where = env_name(name) + ("" if shown is None else f"; default {shown}")
    return f"{description} [env {where}]"


# ------------------------------------------------------------------------------ at the edges
# The CLI and the flow build Settings the same way: every value given explicitly (a flag, a flow
# parameter) that is not None wins over PHALA_SYNC_*, PHALA_CLOUD_API_KEY, PHALA_CLOUD_API_PREFIX
# and .env. The API key is never one of those values on the command line (it would show in ps);
# the flow may pass one it loaded from a Prefect Secret block.

MISSING_KEY = (
    f"no Phala Cloud API key: set {env_name('api_key')} (a phak_... key from the Phala Cloud "
    "dashboard) in the environment or a .env file, or keep the key in a Prefect Secret block "
    "and name the block (sync --key-secret BLOCK, serve/deploy --target NAME:BLOCK, the flow's "
    "api_key_secret parameter)"
)

#: The one rule for secrets in run parameters: Prefect stores a flow run's parameters in clear,
#: so a database URL with a password never becomes one. ``sync`` (whose flow runs in its own
#: process) hands such a URL to the flow through the environment (:func:`flow_parameters`); the
#: flow refuses one it is given as a parameter (:func:`refuse_secret_parameters`), since by then
#: Prefect has stored it.
PASSWORD_PARAMETER = (
    "the database_url parameter carries a password, and Prefect stores flow parameters in "
    f"clear: put the URL with its password in {env_name('database_url')} where the run happens, "
    "and leave the parameter unset"
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


def api_key_text(api_key: SecretStr | str | None) -> str:
    """The key's text; :class:`~sync.errors.ConfigError` (:data:`MISSING_KEY`) if it is blank."""
    key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
    key = (key or "").strip()
    if not key:
        raise ConfigError(MISSING_KEY)
    return key


def require_api_key(settings: Settings) -> None:
    """Raise :class:`~sync.errors.ConfigError` unless the settings carry a non-blank key."""
    api_key_text(settings.api_key)


def _carries_password(parameters: Mapping[str, Any]) -> bool:
    url = parameters.get("database_url")
    return url is not None and normalize_database_url(url).password is not None


def flow_parameters(given: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The given run settings (None: not given) as flow parameters, and the environment
    variables that carry the rest: a database URL with a password (see
    :data:`PASSWORD_PARAMETER`)."""
    parameters = {k: v for k, v in given.items() if v is not None}
    environment = {}
    if _carries_password(parameters):
        environment[env_name("database_url")] = parameters.pop("database_url")
    return parameters, environment


def refuse_secret_parameters(parameters: Mapping[str, Any]) -> None:
    """Raise :class:`~sync.errors.ConfigError` (:data:`PASSWORD_PARAMETER`) when a flow
    parameter carries a password."""
    if _carries_password(parameters):
        raise ConfigError(PASSWORD_PARAMETER)
