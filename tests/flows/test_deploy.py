"""Deployment definitions, the retry condition and the artifact contents, without a server."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from prefect.client.schemas.objects import ConcurrencyLimitStrategy
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
from prefect.states import Failed
from prefect.types.entrypoint import EntrypointType

from flows.artifacts import artifact_key, changes_markdown, counts_table
from flows.deploy import SERVED_LOCK_TIMEOUT, Target, build_deployments, runner_timing
from flows.sync_flow import fetch_task, retriable_failure
from sync.errors import (
    ApiTransportError,
    AuthError,
    ConfigError,
    RateLimitedError,
    TooManyInvalidItemsError,
)


def test_targets_parse() -> None:
    assert Target.parse("acme") == Target("acme")
    assert Target.parse("acme:acme-key") == Target("acme", "acme-key")
    for bad in ("", "a/b", "acme:", "-x", "x" * 101):
        with pytest.raises(ConfigError):
            Target.parse(bad)


def test_one_deployment_per_target_with_schedule_limit_and_parameters() -> None:
    deployments = build_deployments(
        [Target("acme"), Target("beta", "beta-key")],
        cron="*/15 * * * *",
        parameters={
            "api_version": "2025-10-28",
            "page_size": 50,
            "validation_policy": "strict",
            "report_dir": "/srv/reports",
        },
    )
    assert [d.name for d in deployments] == ["sync-acme", "sync-beta"]
    for deployment in deployments:
        (schedule,) = deployment.schedules or []
        assert isinstance(schedule.schedule, CronSchedule)
        assert schedule.schedule.cron == "*/15 * * * *"
        assert deployment.concurrency_limit == 1
        assert deployment.concurrency_options is not None
        assert (
            deployment.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.CANCEL_NEW
        )
        assert "phala-sync" in deployment.tags
    acme, beta = (d.parameters for d in deployments)
    assert acme == {
        "target": "acme",
        "api_version": "2025-10-28",
        "page_size": 50,
        "validation_policy": "strict",
        "lock_timeout": SERVED_LOCK_TIMEOUT,
        "fetch_retries": 1,
        "report_dir": "/srv/reports",
    }
    assert beta["api_key_secret"] == "beta-key"
    assert "api_key_secret" not in acme


def test_deployments_for_a_work_pool_name_the_installed_module() -> None:
    """What ``deploy`` registers: a module path a stock worker imports, no path, no storage."""
    (plain,) = build_deployments([Target("acme")], entrypoint_type=EntrypointType.MODULE_PATH)
    assert plain.entrypoint == "flows.sync_flow.sync_flow"
    assert plain.storage is None
    assert plain.job_variables == {}
    assert "migrate" not in plain.parameters
    (migrating,) = build_deployments(
        [Target("acme")], entrypoint_type=EntrypointType.MODULE_PATH, parameters={"migrate": True}
    )
    assert migrating.parameters["migrate"] is True
    assert migrating.job_variables == {}
    (served,) = build_deployments([Target("acme")])
    assert served.entrypoint is not None
    assert served.entrypoint.endswith("sync_flow.py:sync_flow")


def test_interval_schedule_is_the_default() -> None:
    (deployment,) = build_deployments([Target("acme")])
    (schedule,) = deployment.schedules or []
    assert isinstance(schedule.schedule, IntervalSchedule)
    assert schedule.schedule.interval == timedelta(hours=1)
    (every_minute,) = build_deployments([Target("acme")], interval=60)
    (schedule,) = every_minute.schedules or []
    assert isinstance(schedule.schedule, IntervalSchedule)
    assert schedule.schedule.interval == timedelta(minutes=1)


@pytest.mark.parametrize(
    ("targets", "options", "message"),
    [
        ([Target("a")], {"cron": "* * * * *", "interval": 60}, "not both"),
        ([], {}, "no target"),
        ([Target("a"), Target("a", "k")], {}, "distinct"),
        ([Target("a"), Target("b")], {}, "Secret block"),
        ([Target("a")], {"parameters": {"database_url": "postgresql://u:pw@h/db"}}, "environment"),
    ],
)
def test_deployment_errors(targets: list[Target], options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_deployments(targets, **options)


def test_the_fetch_task_retries_only_retriable_errors() -> None:
    def decide(error: Exception) -> bool:
        return retriable_failure(fetch_task, None, Failed(data=error))  # type: ignore[arg-type]

    transport = ApiTransportError("refused", url="http://x", version="2026-01-21")
    limited = RateLimitedError("slow down", status=429, url="http://x", version="2026-01-21")
    auth = AuthError("no", status=401, url="http://x", version="2026-01-21")
    assert decide(transport)
    assert decide(limited)
    assert not decide(auth)
    assert not decide(TooManyInvalidItemsError("drift"))
    assert not decide(RuntimeError("a bug"))


SUMMARY: dict[str, Any] = {
    "run_id": 4,
    "target": "Acme Corp/EU",
    "api_version": "2026-01-21",
    "status": "succeeded",
    "started_at": "2026-04-15T12:00:00+00:00",
    "finished_at": "2026-04-15T12:00:01+00:00",
    "counts": {
        "cvm": {"seen": 3, "created": 1, "updated": 1, "deleted": 1, "restored": 0, "unchanged": 0}
    },
    "quarantined": 2,
    "listing_complete": True,
    "apps_listing_complete": True,
}


def test_artifact_keys_are_valid_for_any_target() -> None:
    assert artifact_key("Acme Corp/EU", "counts") == "phala-sync-acme-corp-eu-counts"
    assert artifact_key("///", "changes") == "phala-sync-target-changes"


def test_counts_table_has_quarantined_items() -> None:
    rows = counts_table(SUMMARY)
    assert rows[0]["entity"] == "cvm"
    assert rows[0]["created"] == 1
    assert rows[-1]["entity"] == "quarantined items"
    assert rows[-1]["seen"] == 2


def test_changes_markdown_lists_and_limits() -> None:
    changes = [
        {"entity_type": "cvm", "entity_id": f"id{i:03d}", "change_type": "updated",
         "changes": {"name": {"old": "a|b", "new": "c"}}}
        for i in range(105)
    ]  # fmt: skip
    text = changes_markdown(SUMMARY, changes)
    assert text.startswith("# Run 4 of target `Acme Corp/EU`: succeeded")
    assert "## Changes (105)" in text
    assert "| cvm | 0 | 105 | 0 | 0 |" in text
    assert "updated cvm id000: name a\\|b -> c" in text
    assert "id100" not in text
    assert "and 5 more: `phala-sync changes --run 4`" in text
    assert "Nothing changed." in changes_markdown(SUMMARY, [])


def test_serve_polls_twice_per_short_interval_and_keeps_prefects_defaults_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PREFECT_RUNNER_POLL_FREQUENCY", raising=False)
    assert runner_timing(5) == {"query_seconds": 2.5, "prefetch_seconds": 1.25}
    assert runner_timing(19.5)["query_seconds"] == 9.75
    assert runner_timing(20) == {}
    assert runner_timing(None) == {}  # cron
    monkeypatch.setenv("PREFECT_RUNNER_POLL_FREQUENCY", "3")
    assert runner_timing(5) == {}  # the user's setting wins
