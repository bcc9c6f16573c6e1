"""The two kinds of temporary Prefect server: what each runs, read back through Prefect."""

from __future__ import annotations

import pytest
from prefect.settings import Settings

from sync.cli.prefect_server import LocalPrefectServer, ServerKind


def _settings(kind: ServerKind, monkeypatch: pytest.MonkeyPatch) -> tuple[Settings, bool]:
    """Prefect's settings as the server of ``kind`` reads them, and its ephemeral flag."""
    env = LocalPrefectServer(kind).environment()
    for name, value in env.items():
        if name.startswith("PREFECT_"):
            monkeypatch.setenv(name, value)
    return Settings(), bool(env.get("PREFECT__SERVER_EPHEMERAL"))


def test_sync_gets_the_light_ephemeral_server(monkeypatch: pytest.MonkeyPatch) -> None:
    _, ephemeral = _settings(ServerKind.EPHEMERAL, monkeypatch)
    assert ephemeral  # Prefect then runs none of its periodic services (no scheduler)


def test_serve_gets_a_server_with_the_services_a_schedule_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PREFECT__SERVER_EPHEMERAL", "1")  # inherited by mistake: not passed on
    monkeypatch.setenv("PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED", "false")  # overridden
    settings, ephemeral = _settings(ServerKind.SCHEDULING, monkeypatch)
    assert not ephemeral
    services = settings.server.services
    assert services.scheduler.enabled
    assert services.repossessor.enabled
    assert settings.server.concurrency.lease_storage.endswith(".filesystem")
    assert not services.late_runs.enabled
    assert not services.foreman.enabled
    assert not settings.server.ui.enabled
