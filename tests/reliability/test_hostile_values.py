"""Hostile values: valid JSON, valid under the schema, unusual; stored intact or quarantined.

One CVM of the fleet carries the value (the API's first item); every other item is ordinary.
For each value, API version and database, a first sync must succeed and then:

- the item is stored intact (its column holds the value, its ``raw_json`` decodes to exactly the
  item that was sent), or it is quarantined with the database's or the models' reason and not
  stored;
- every other CVM is stored;
- a resync of the same pages is silent (no change event).

Where an item that is already stored turns unstorable, the stored row stays as it was and is not
deleted. The pages are rewritten on their way from the simulator with the stdlib encoder, which
writes integers of any size and lone surrogates as JSON allows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select, text

from models import ChangeEvent, Cvm, QuarantinedItem, table_of
from sync.records import normalize_vm_uuid
from sync.run import RunSummary, run_sync
from tests.reliability.conftest import Harness, new_harness

pytestmark = pytest.mark.slow

VERSIONS = ("2025-10-28", "2026-01-21")
FLEET = 30
#: Where a field sits in a CVM item of each version.
PATHS = {
    "name": {"2025-10-28": ("name",), "2026-01-21": ("name",)},
    "vcpu": {"2025-10-28": ("vcpu",), "2026-01-21": ("resource", "vcpu")},
    "extra": {"2025-10-28": ("x_hostile",), "2026-01-21": ("x_hostile",)},
}
#: Stands for a number literal that no Python value encodes to (replaced in the page's bytes).
HUGE_LITERAL = "__phala_sync_test_1e400__"


@dataclass(frozen=True)
class Case:
    label: str
    field: str
    value: Any
    #: What must happen where it is certain: "stored", "quarantined" or None (either is right).
    sqlite: str | None = None
    postgres: str | None = None


CASES = [
    Case("NUL in the name", "name", "evil\x00name", sqlite="stored", postgres="quarantined"),
    Case("C0 controls and DEL", "name", "\x01\x08\x1b\x7f\t\r\n", "stored", "stored"),
    Case("a 100,000-character name", "name", "é" * 100_000, "stored", "stored"),
    Case("astral, RTL, BOM, combining", "name", "🚀\u202eab\ufeffe\u0301", "stored", "stored"),
    Case("a lone surrogate", "name", "\ud800x"),
    Case("NUL in an unknown field", "extra", "a\x00b", "stored", "stored"),
    Case("an integer beyond 64 bits in an unknown field", "extra", 2**70 + 1, "stored", "stored"),
    Case("a negative integer beyond 64 bits", "extra", -(2**70) - 3, "stored", "stored"),
    Case("1e400 in an unknown field", "extra", HUGE_LITERAL, "quarantined", "quarantined"),
    Case("vcpu beyond 64 bits", "vcpu", 2**64 + 5, "quarantined", "quarantined"),
    Case("vcpu at the 64-bit maximum", "vcpu", 2**63 - 1, "stored", "stored"),
    Case("a negative vcpu", "vcpu", -3, "stored", "stored"),
]  # fmt: skip


def item_key(item: dict[str, Any]) -> str:
    uuid = item["hosted"]["id"] if "hosted" in item else item["vm_uuid"]
    return normalize_vm_uuid(uuid)


class Hostile(httpx.AsyncBaseTransport):
    """Sets one field of the first CVM of the listing to a hostile value, on every read."""

    def __init__(self, inner: httpx.AsyncBaseTransport, path: tuple[str, ...], value: Any) -> None:
        self.inner = inner
        self.path = path
        self.value = value
        self.victim: dict[str, Any] | None = None

    def mutate(self, item: dict[str, Any]) -> None:
        node = item
        for part in self.path[:-1]:
            node = node[part]
        node[self.path[-1]] = self.value

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if not (request.url.path.endswith("/cvms/paginated") and response.status_code == 200):
            return response
        body = json.loads(await response.aread())
        if request.url.params.get("page", "1") == "1" and body["items"]:
            self.mutate(body["items"][0])
            self.victim = body["items"][0]
        content = json.dumps(body).encode()
        content = content.replace(f'"{HUGE_LITERAL}"'.encode(), b"1e400")
        return httpx.Response(
            200, headers={"content-type": "application/json"}, content=content, request=request
        )


def sync(h: Harness, transport: httpx.AsyncBaseTransport, version: str) -> RunSummary:
    settings = h.settings(api_version=version)
    return run_sync(h.engine, settings, transport=transport)


def stored_row(engine: Engine, key: str) -> Any:
    cvms = table_of(Cvm)
    with engine.connect() as conn:
        return conn.execute(select(cvms).where(cvms.c.vm_uuid == key)).first()


def quarantined(engine: Engine, run_id: int) -> dict[str | None, str]:
    q = table_of(QuarantinedItem)
    with engine.connect() as conn:
        rows = conn.execute(select(q.c.entity_id, q.c.error).where(q.c.run_id == run_id))
        return {str(entity_id): str(error) for entity_id, error in rows}


def live_cvms(engine: Engine) -> int:
    cvms = table_of(Cvm)
    with engine.connect() as conn:
        return len(conn.execute(select(cvms.c.vm_uuid).where(cvms.c.deleted_at.is_(None))).all())


def events_of(engine: Engine, run_id: int) -> int:
    e = table_of(ChangeEvent)
    with engine.connect() as conn:
        return len(conn.execute(select(e.c.id).where(e.c.run_id == run_id)).all())


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_hostile_value_is_stored_intact_or_quarantined(
    engine: Engine, case: Case, version: str
) -> None:
    h = new_harness(engine, size=FLEET)
    hostile = Hostile(h.transport(), PATHS[case.field][version], case.value)
    first = sync(h, hostile, version)
    assert first.status == "succeeded"
    assert hostile.victim is not None
    key = item_key(hostile.victim)
    held = quarantined(engine, first.run_id)
    row = stored_row(engine, key)
    if key in held:
        outcome = "quarantined"
        assert held[key].strip(), "a quarantined item carries its reason"
        assert row is None
        assert live_cvms(engine) == FLEET - 1
    else:
        outcome = "stored"
        assert row is not None, f"{key} neither stored nor quarantined"
        assert json.loads(row.raw_json) == hostile.victim, "raw_json is not the item as sent"
        if case.field == "name":
            assert row.name == case.value
        if case.field == "vcpu":
            assert row.vcpu == case.value
            # The daily views still read: a vCPU sum beyond 64 bits is unknown, not an error.
            with engine.connect() as conn:
                vcpus = conn.execute(text("SELECT SUM(vcpus), SUM(cvms) FROM fleet_daily")).one()
            assert vcpus[1] == FLEET
        assert live_cvms(engine) == FLEET
    expected = case.postgres if engine.dialect.name == "postgresql" else case.sqlite
    if expected is not None:
        assert outcome == expected, held.get(key)
    assert first.quarantined == len(held)

    again = sync(h, hostile, version)
    assert again.status == "succeeded"
    assert events_of(engine, again.run_id) == 0, "a resync of the same pages recorded changes"
    assert (key in quarantined(engine, again.run_id)) == (outcome == "quarantined")


def test_an_unstorable_update_keeps_the_stored_row(engine: Engine) -> None:
    """A stored CVM whose new name the database refuses keeps its row; nothing is deleted."""
    h = new_harness(engine, size=FLEET)
    clean = Hostile(h.transport(), ("name",), "plain")
    sync(h, clean, "2026-01-21")
    assert clean.victim is not None
    key = item_key(clean.victim)
    before = stored_row(engine, key)
    evil: Callable[[], Hostile] = lambda: Hostile(h.transport(), ("name",), "x\x00y")  # noqa: E731
    summary = sync(h, evil(), "2026-01-21")
    assert summary.status == "succeeded"
    after = stored_row(engine, key)
    assert after is not None
    assert after.deleted_at is None
    if engine.dialect.name == "postgresql":
        assert key in quarantined(engine, summary.run_id)
        assert after == before
        assert summary.counts["cvm"]["deleted"] == 0
    else:
        assert after.name == "x\x00y"
    assert live_cvms(engine) == FLEET
