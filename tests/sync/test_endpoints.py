"""The endpoint registry: each listed endpoint is declared once, every consumer reads the
declaration, and an endpoint declared only in the registry is paged, staged and applied."""

from __future__ import annotations

import ast
import dataclasses
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, select

from models import Cvm, QuarantinedItem, SyncRun, table_of
from simulator import Fleet, SimulatorTransport, create_app
from sync import endpoints
from sync.endpoints import (
    APPS,
    CVMS,
    EndpointSpec,
    get_endpoint,
    listed_endpoints,
    listing_of,
    source_endpoint,
)
from sync.records import ENTITY_TYPES, LISTED_TYPES, REFERENCE_TYPES, CvmBundle
from sync.run import RunSummary, run_sync
from sync.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
KEY = "phak_endpoints_test_key"

#: The modules that handle listed endpoints: they read the registry and name none of them.
CONSUMERS = (
    "sync/api",
    "sync/listing.py",
    "sync/run.py",
    "sync/store/staging.py",
    "sync/store/apply.py",
    "sync/store/membership.py",
    "sync/progress.py",
    "sync/present.py",
)

#: A listed endpoint no release will ship: the CVM listing under another name and path, declared
#: as a third endpoint would be (its models here are the CVM ones of each version).
INSTANCES: EndpointSpec[CvmBundle] = dataclasses.replace(
    CVMS,
    name="instances",
    path="/instances",
    label="instance",
    noun="instances",
)


def test_the_registry_lists_cvms_then_apps() -> None:
    assert listed_endpoints() == (CVMS, APPS)
    assert [get_endpoint(spec.name) for spec in listed_endpoints()] == [CVMS, APPS]
    with pytest.raises(KeyError):
        get_endpoint("nodes")


def test_each_listed_entity_type_has_one_endpoint() -> None:
    listed = [spec.entity_type for spec in listed_endpoints()]
    assert sorted(listed) == sorted(LISTED_TYPES)
    assert all(listing_of(t).entity_type == t for t in LISTED_TYPES)
    with pytest.raises(KeyError):
        listing_of("node")


def test_every_entity_type_comes_from_one_endpoint() -> None:
    assert {t: source_endpoint(t) for t in ENTITY_TYPES} == {
        "cvm": "cvms",
        "app": "apps",
        **dict.fromkeys(REFERENCE_TYPES, "cvms"),
    }


def test_the_ledger_columns_are_columns_of_the_ledger_and_of_the_summary() -> None:
    runs = table_of(SyncRun).c
    fields = {f.name for f in dataclasses.fields(RunSummary)}
    for spec in listed_endpoints():
        columns = [c for c in (spec.complete_column, spec.total_column) if c is not None]
        assert all(c in runs and c in fields for c in columns), spec.name
    assert [spec.complete_column for spec in listed_endpoints()] == [
        "listing_complete",
        "apps_listing_complete",
    ]


def _string_constants(path: Path) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def test_the_consumers_name_no_endpoint() -> None:
    """Names, paths and ledger columns live in sync/endpoints.py: the consumers read the specs."""
    declared = {
        word
        for spec in listed_endpoints()
        for word in (spec.name, spec.path, spec.complete_column, spec.total_column)
        if word is not None
    }
    found = []
    for consumer in CONSUMERS:
        path = ROOT / consumer
        for module in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            found += [
                f"{module.relative_to(ROOT)}:{line}: {text!r}"
                for line, text in _string_constants(module)
                if text in declared
            ]
    assert found == []


class _Renaming(httpx.AsyncBaseTransport):
    """Serves ``GET /instances`` as the simulator's CVM listing; counts the paths requested."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.paths: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths[request.url.path] += 1
        if request.url.path == "/api/v1/instances":
            url = request.url.copy_with(path="/api/v1/cvms/paginated")
            request = httpx.Request(request.method, url, headers=request.headers)
        return await self.inner.handle_async_request(request)


@pytest.fixture
def instances() -> Iterator[EndpointSpec[CvmBundle]]:
    """:data:`INSTANCES` declared in place of ``cvms``: the registry lists it, then apps."""
    registry = endpoints._REGISTRY
    saved = dict(registry)
    registry.clear()
    registry.update({INSTANCES.name: INSTANCES, APPS.name: APPS})
    try:
        yield INSTANCES
    finally:
        registry.clear()
        registry.update(saved)


def test_an_endpoint_is_one_declaration(instances: EndpointSpec[CvmBundle], engine: Engine) -> None:
    """The client requests its path, the listing and the stager key its pages by its entity type,
    its rejections and progress carry its name, the ledger gets its columns."""
    fleet = Fleet(90, seed=4)  # some CVMs drift (tests/sync/test_run.py)
    app = create_app(fleet, api_key=KEY, faults=["drift:what=missing,share=0.05"])
    transport = _Renaming(SimulatorTransport(app))
    settings = Settings(
        api_key=KEY,
        base_url="http://simulator/api/v1",
        database_url=str(engine.url),
        page_size=25,
        max_invalid_share=0.5,
        _env_file=None,
    )
    progress: set[str] = set()
    summary = run_sync(
        engine, settings, transport=transport, on_page=lambda name, *_: progress.add(name)
    )

    assert set(transport.paths) == {"/api/v1/instances", "/api/v1/apps"}
    assert progress == {"instances", "apps"}
    assert summary.listing_complete  # its complete_column
    assert summary.api_total == fleet.cvm_count  # its total_column
    q = table_of(QuarantinedItem).c
    runs = table_of(SyncRun).c
    with engine.connect() as conn:
        stored = set(conn.execute(select(table_of(Cvm).c.vm_uuid)).scalars())
        held = conn.execute(select(q.endpoint, q.entity_id)).all()
        ledger = conn.execute(
            select(runs.listing_complete, runs.api_total).where(runs.id == summary.run_id)
        ).one()
    assert "instances" in {endpoint for endpoint, _ in held}
    assert {endpoint for endpoint, _ in held} <= {"instances", "apps"}
    held_cvms = {key for endpoint, key in held if endpoint == "instances"}
    assert stored | held_cvms == set(fleet.vm_uuids())
    assert not stored & held_cvms
    assert tuple(ledger) == (True, fleet.cvm_count)
