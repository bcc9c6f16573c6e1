"""Schema drift: unknown fields and new enum values are kept, invalid items fail the run (strict)
or are set aside (quarantine).

Which items drift is the simulator's own decision (``Faults.picker``), so the expected quarantine
is known before the run. Under ``quarantine`` the set-aside items are in ``quarantined_items`` with
the raw item as served and the error naming the field; a CVM whose item was set aside is neither
deleted nor changed by that run, and the next clean run records what it missed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from simulator.faults import NEW_ENUM_VALUE, UNKNOWN_FIELD, Decision
from sync.errors import InvalidItemError, TooManyInvalidItemsError
from sync.records import normalize_vm_uuid
from tests.reliability.conftest import API_KEY, EVOLVE, Before, Harness
from tests.reliability.oracle import LEGACY, assert_fleet_stored, recorded_events, runs, table

#: The drifts that make a current (2026-01-21) CVM item invalid, and the error's field path.
#: (A new enum value is not one of them: enums are open, see the test below.)
CVM_DRIFTS = {
    "missing": "status",
    "wrong_type": "resource.vcpu",
}


def drifted(h: Harness, endpoint: str, shape: str = "current") -> set[str]:
    """The ids of the fleet's items that the active drift rules alter on ``endpoint``."""
    rules = [
        (i, r)
        for i, r in enumerate(h.faults.rules)
        if r.kind == "drift" and r.endpoint in (None, endpoint)
    ]
    pick = h.faults.picker(Decision(drifts=rules), shape)  # type: ignore[arg-type]
    if pick is None:
        return set()
    if endpoint == "cvms":
        return {c.key for c in h.fleet.cvms() if pick(c) is not None}
    return {a.app_id for a in h.fleet.apps() if pick(a) is not None}


def served_item(h: Harness, endpoint: str, page: int, index: int, version: str) -> Any:
    """Item ``index`` of a page as the simulator serves it now (drift included)."""

    async def get() -> Any:
        async with httpx.AsyncClient(transport=h.transport(), base_url="http://sim") as client:
            path = "/api/v1/cvms/paginated" if endpoint == "cvms" else "/api/v1/apps"
            response = await client.get(
                path,
                params={"page": page, "page_size": h.settings().page_size},
                headers={"X-API-Key": API_KEY, "X-Phala-Version": version},
            )
            response.raise_for_status()
            return response.json()["items" if endpoint == "cvms" else "dstack_apps"][index]

    return asyncio.run(get())


def quarantined(h: Harness, run_id: int) -> list[dict[str, Any]]:
    q = table("quarantined_items")
    with h.engine.connect() as conn:
        rows = conn.execute(
            select(q).where(q.c.run_id == run_id).order_by(q.c.endpoint, q.c.page, q.c.item_index)
        ).mappings()
        return [dict(r) for r in rows]


@pytest.mark.parametrize("what", CVM_DRIFTS)
def test_invalid_cvms_fail_a_strict_run_and_change_nothing(harness: Harness, what: str) -> None:
    h = harness
    h.baseline_and_step()
    h.faults.set([f"drift:endpoint=cvms,what={what},share=0.05"], seed=9)
    bad = drifted(h, "cvms")
    assert bad
    before = Before.of(h.engine)
    exc = h.fail(InvalidItemError, validation_policy="strict")
    failed = before.assert_only_a_failed_run_added(h.engine)
    message = str(exc)
    assert CVM_DRIFTS[what] in message
    assert "X-Phala-Version 2026-01-21" in message
    named = [key for key in bad if f"CVM {key}" in message]
    assert len(named) == 1, message
    assert failed["error"] == f"InvalidItemError: {message}".splitlines()[0]
    assert len(h.clean_run(validation_policy="strict")) >= 20


@pytest.mark.parametrize("what", CVM_DRIFTS)
def test_invalid_cvms_are_quarantined_never_deleted(harness: Harness, what: str) -> None:
    h = harness
    h.baseline()
    known = set(h.model.entities["cvm"])
    h.fleet.evolve(EVOLVE, seed=3)
    h.faults.set([f"drift:endpoint=cvms,what={what},share=0.05"], seed=9)
    held = drifted(h, "cvms") & set(h.fleet.vm_uuids())
    assert len(held & known) >= 3  # stored CVMs whose items are set aside: must not be deleted
    summary = h.run(max_invalid_share=0.2)
    h.expect(summary, held={"cvm": sorted(held)})
    assert summary.listing_complete
    assert summary.counts["cvm"]["deleted"] >= 1  # the step's deletions, not the held CVMs
    ledger = runs(h.engine)[-1]
    assert ledger["quarantined"] == len(held)
    rows = quarantined(h, summary.run_id)
    assert {r["entity_id"] for r in rows} == held
    for row in rows:
        assert row["endpoint"] == "cvms"
        assert CVM_DRIFTS[what] in row["error"]
        raw = orjson.loads(row["raw_json"])
        assert raw == served_item(h, "cvms", row["page"], row["item_index"], "2026-01-21")
        assert normalize_vm_uuid(raw["vm_uuid"]) == row["entity_id"]
        if what == "missing":
            assert "status" not in raw
        else:
            assert isinstance(raw["resource"]["vcpu"], str)
    # The next clean run records what the set-aside items hid.
    h.clean_run()
    assert_fleet_stored(h.engine, h.fleet)


def test_too_many_invalid_items_fail_the_run_but_stay_visible(harness: Harness) -> None:
    h = harness
    h.baseline_and_step()
    h.faults.set(["drift:endpoint=cvms,what=missing,share=0.3"], seed=9)
    held = drifted(h, "cvms")
    before = Before.of(h.engine)
    exc = h.fail(TooManyInvalidItemsError)
    failed = before.assert_only_a_failed_run_added(h.engine)
    assert f"see quarantined_items for run {failed['id']}" in str(exc)
    assert failed["error"].startswith("TooManyInvalidItemsError: ")
    assert {r["entity_id"] for r in quarantined(h, failed["id"])} == held
    h.clean_run()


@pytest.mark.parametrize("version", [LEGACY, "2026-01-21"])
def test_unknown_fields_are_kept_and_never_fatal(harness: Harness, version: str) -> None:
    h = harness
    h.defaults.update(api_version=version, validation_policy="strict")
    h.baseline(api_version=version)
    h.fleet.evolve(EVOLVE, seed=3)
    h.faults.set(["drift:what=unknown,share=0.3"], seed=4)
    shape = "legacy" if version == LEGACY else "current"
    cvms, apps = drifted(h, "cvms", shape), drifted(h, "apps", shape)
    summary = h.run()
    h.expect(summary, version=version)  # no event mentions the unknown field
    assert summary.quarantined == 0
    for name, key, ids in (("cvms", "vm_uuid", cvms), ("apps", "app_id", apps)):
        t = table(name)
        with h.engine.connect() as conn:
            stored = dict(tuple(r) for r in conn.execute(select(t.c[key], t.c.raw_json)))
        live = ids & set(stored)
        assert len(live) >= 10
        for key_value in live:
            raw = orjson.loads(stored[key_value])
            assert raw[UNKNOWN_FIELD] == {"introduced": "2026-07-01", "value": 42}


#: Where each shape's new enum value lands: (version, canonical CVM field, the value sent).
NEW_ENUM = {
    "2025-10-28": ("legacy", "billing_period", "weekly"),
    "2026-01-21": ("current", "kms_type", NEW_ENUM_VALUE),
}


@pytest.mark.parametrize("policy", ["strict", "quarantine"])
@pytest.mark.parametrize("version", NEW_ENUM)
def test_a_new_enum_value_is_kept_as_sent(harness: Harness, version: str, policy: str) -> None:
    """Enums are open (docs/schema.md: "new values are kept as sent"): no failure, no quarantine;
    the value is stored and recorded as the update it is, and reverted the same way."""
    h = harness
    shape, column, value = NEW_ENUM[version]
    h.defaults.update(api_version=version, validation_policy=policy)
    h.baseline(api_version=version)
    h.faults.set(["drift:endpoint=cvms,what=enum,share=0.1"], seed=2)
    changed = drifted(h, "cvms", shape)
    old = {k: h.model.entities["cvm"][k].fields[column] for k in changed}
    assert len([k for k in changed if old[k] != value]) >= 5
    summary = h.run()
    assert summary.quarantined == 0
    assert recorded_events(h.engine, [summary.run_id]) == sorted(
        ("cvm", k, "updated", {column: {"old": old[k], "new": value}})
        for k in changed
        if old[k] != value
    )
    t = table("cvms")
    with h.engine.connect() as conn:
        stored = dict(tuple(r) for r in conn.execute(select(t.c.vm_uuid, t.c[column])))
    assert {stored[k] for k in changed} == {value}
    h.faults.set([])
    back = h.run()
    assert recorded_events(h.engine, [back.run_id]) == sorted(
        ("cvm", k, "updated", {column: {"old": value, "new": old[k]}})
        for k in changed
        if old[k] != value
    )


def test_invalid_apps_are_quarantined_and_never_deleted(harness: Harness) -> None:
    h = harness
    h.baseline_and_step()
    h.faults.set(["drift:endpoint=apps,what=missing,share=0.2"], seed=6)
    held = drifted(h, "apps")
    minimal = {a.app_id for a in h.fleet.apps() if a.minimal}
    assert held - minimal
    assert held & minimal
    summary = h.run(max_invalid_share=0.5)
    # A set-aside item without an id could be any app: no app deletion may be inferred.
    h.expect(summary, held={"app": sorted(held)}, complete={"app": False})
    assert summary.listing_complete
    assert summary.apps_listing_complete is False
    rows = quarantined(h, summary.run_id)
    assert sorted(r["entity_id"] for r in rows if r["entity_id"]) == sorted(held - minimal)
    assert len([r for r in rows if r["entity_id"] is None]) == len(held & minimal)
    assert all(r["endpoint"] == "apps" for r in rows)
    h.clean_run()


def test_a_run_failed_for_invalid_items_counts_them_in_the_ledger(harness: Harness) -> None:
    h = harness
    h.baseline()
    h.faults.set(["drift:endpoint=cvms,what=missing,share=0.3"], seed=9)
    exc = h.fail(TooManyInvalidItemsError)
    failed = runs(h.engine)[-1]
    assert str(len(quarantined(h, failed["id"]))) in str(exc)
    assert failed["quarantined"] == len(quarantined(h, failed["id"]))
