"""The flow's parameters agree with Settings: names, types (a Literal's choices), defaults and the
descriptions Prefect shows; and each one named like a setting reaches the run's Settings.

Prefect builds a flow's parameter schema from its signature, so the flow spells its parameters
out; these tests fail when one drifts from its setting. The CLI's side is
tests/sync/cli/test_run_options.py.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
from prefect.utilities.callables import parameter_schema

import flows.sync_flow as sync_flow_module
from flows.sync_flow import sync_flow
from sync.settings import DEPLOYMENT_OPTIONS, SYNC_OPTIONS, Settings, setting_choices

#: The flow's parameters that are not settings: how it runs under Prefect, and where its key is.
FLOW_ONLY = {"api_key_secret", "fetch_retries", "fetch_retry_delay_seconds"}

SIGNATURE = inspect.signature(sync_flow.fn, eval_str=True)
SETTING_PARAMETERS = [name for name in SIGNATURE.parameters if name in Settings.model_fields]
SCHEMA = parameter_schema(sync_flow).model_dump_for_openapi()["properties"]


def test_every_parameter_is_a_setting_or_flow_only() -> None:
    assert set(SIGNATURE.parameters) - set(SETTING_PARAMETERS) == FLOW_ONLY
    assert "api_key" not in SIGNATURE.parameters  # a secret is never a parameter
    # Whatever sync and serve/deploy pass is a flow parameter.
    assert set(SYNC_OPTIONS) <= set(SETTING_PARAMETERS)
    assert set(DEPLOYMENT_OPTIONS) <= set(SETTING_PARAMETERS)


@pytest.mark.parametrize("name", SETTING_PARAMETERS)
def test_a_setting_parameter_has_the_settings_type_no_default_and_its_help(name: str) -> None:
    field = Settings.model_fields[name]
    parameter = SIGNATURE.parameters[name]
    assert parameter.annotation == field.annotation | None
    assert parameter.default is None  # None: the environment's value, else the setting's default
    assert SCHEMA[name]["default"] is None
    assert SCHEMA[name]["description"] == field.description
    choices = setting_choices(name)
    if choices is not None:
        (allowed,) = [t for t in SCHEMA[name]["anyOf"] if "enum" in t]
        assert tuple(allowed["enum"]) == choices


def test_the_flow_only_parameters_are_described_too() -> None:
    for name in FLOW_ONLY:
        assert SCHEMA[name].get("description"), name


def test_each_setting_parameter_reaches_the_runs_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {name: object() for name in SETTING_PARAMETERS}
    seen: list[dict[str, Any]] = []

    class Stop(Exception):
        pass

    def flow_settings(given: dict[str, Any], api_key: object) -> Settings:
        seen.append(given)
        raise Stop

    monkeypatch.setattr(sync_flow_module, "flow_settings", flow_settings)
    with pytest.raises(Stop):
        asyncio.run(sync_flow.fn(**values))
    assert seen == [values]
