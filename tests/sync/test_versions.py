"""The version registry: known versions, lookups, reading keys from raw items, and that a version
with an existing list shape is one registry line for the settings, the simulator and a run."""

from __future__ import annotations

import dataclasses
from types import ModuleType

import pytest
from sqlalchemy import Engine, select

from models import Cvm, SyncRun, table_of
from simulator import Fleet, SimulatorTransport, create_app
from sync import versions
from sync.errors import ConfigError, UnknownVersionError
from sync.run import run_sync
from sync.settings import Settings
from sync.versions import DEFAULT_VERSION, KNOWN_VERSIONS, ApiVersion, get_version
from sync.versions import v2025_10_28 as legacy
from sync.versions import v2026_01_21 as current

#: The module of each list shape.
MODULES: dict[str, ModuleType] = {m.SHAPE: m for m in (legacy, current)}
#: A version no release will ship, registered for one test.
THROWAWAY = "2099-01-01"


def test_known_versions_are_listed_in_date_order() -> None:
    assert list(KNOWN_VERSIONS) == sorted(KNOWN_VERSIONS)
    assert len(set(KNOWN_VERSIONS)) == len(KNOWN_VERSIONS)
    assert {"2025-10-28", "2026-01-21"} <= set(KNOWN_VERSIONS)


def test_the_default_version_is_the_documented_current_one() -> None:
    assert DEFAULT_VERSION == "2026-01-21"
    assert DEFAULT_VERSION in KNOWN_VERSIONS
    assert Settings(_env_file=None).api_version == DEFAULT_VERSION


def test_each_shape_is_named_by_the_version_that_introduced_it() -> None:
    assert get_version("2025-10-28").shape == "2025-10-28"
    assert get_version("2026-01-21").shape == "2026-01-21"
    assert all(get_version(name).shape in MODULES for name in KNOWN_VERSIONS)


@pytest.mark.parametrize("name", KNOWN_VERSIONS)
def test_each_version_uses_the_module_of_its_shape(name: str) -> None:
    version = get_version(name)
    module = MODULES[version.shape]
    assert isinstance(version, ApiVersion)
    assert version.name == name
    assert version.shape == module.SHAPE
    assert version.cvm_item is module.CVM_ITEM
    assert version.app_item is module.APP_ITEM
    assert version.cvm_envelope is module.CVM_ENVELOPE
    assert version.app_envelope is module.APP_ENVELOPE
    assert version.normalize_cvm is module.normalize_cvm
    assert version.normalize_app is module.normalize_app
    assert version.cvm_entity_id is module.cvm_entity_id
    assert version.app_entity_id is module.app_entity_id
    assert repr(version) == f"ApiVersion('{name}')"


@pytest.mark.parametrize("name", ["2024-01-01", "2026-01-22", "", "latest", " 2026-01-21"])
def test_an_unknown_version_is_refused_with_the_known_ones(name: str) -> None:
    with pytest.raises(UnknownVersionError) as exc:
        get_version(name)
    assert isinstance(exc.value, ConfigError)
    assert (exc.value.version, exc.value.known) == (name, list(KNOWN_VERSIONS))
    message = str(exc.value)
    assert repr(name) in message
    assert all(known in message for known in KNOWN_VERSIONS)


def test_settings_accept_every_known_version_and_refuse_others() -> None:
    for name in KNOWN_VERSIONS:
        assert Settings(api_version=name, _env_file=None).api_version == name
    with pytest.raises(UnknownVersionError):
        Settings(api_version="2025-01-01", _env_file=None)


def test_a_version_is_immutable() -> None:
    version = get_version("2026-01-21")
    with pytest.raises(dataclasses.FrozenInstanceError):
        version.name = "2026-05-22"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (
            {"hosted": {"id": "3F2A9C1E-7B4D-4E8A-9C21-5D6F7A8B9C01"}},
            "3f2a9c1e7b4d4e8a9c215d6f7a8b9c01",
        ),
        ({"hosted": {"id": "3f2a", "name": 3}, "status": None}, "3f2a"),  # invalid elsewhere
        ({"hosted": {"id": 42}}, None),
        ({"hosted": None}, None),
        ({"hosted": "3f2a"}, None),
        ({"vm_uuid": "3f2a"}, None),  # the current shape has no hosted.id
        ({}, None),
        ("3f2a", None),
        (None, None),
    ],
)
def test_legacy_cvm_key_is_read_from_a_raw_item(item: object, expected: str | None) -> None:
    assert get_version("2025-10-28").cvm_entity_id(item) == expected


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"vm_uuid": "3F2A-9C1E", "id": "cvm_1"}, "3f2a9c1e"),
        ({"vm_uuid": None, "id": "cvm_1"}, "cvm_1"),  # no VM UUID: the hashed id as is
        ({"id": "cvm_1"}, "cvm_1"),
        ({"vm_uuid": 42, "id": "cvm_1"}, None),  # an invalid vm_uuid is not replaced by the id
        ({"vm_uuid": None, "id": 7}, None),
        ({"hosted": {"id": "3f2a"}}, None),
        ([], None),
    ],
)
def test_current_cvm_key_is_read_from_a_raw_item(item: object, expected: str | None) -> None:
    for name in KNOWN_VERSIONS:
        if get_version(name).shape == "2026-01-21":
            assert get_version(name).cvm_entity_id(item) == expected


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"app_id": "e4c1d0b5", "name": 3}, "e4c1d0b5"),
        ({"app_id": None}, None),
        ({"app_id": 12}, None),
        ({"id": "prj_1"}, None),
        (["app_id"], None),
    ],
)
def test_app_key_is_read_from_a_raw_item(item: object, expected: str | None) -> None:
    for name in KNOWN_VERSIONS:
        assert get_version(name).app_entity_id(item) == expected


@pytest.fixture
def throwaway(monkeypatch: pytest.MonkeyPatch) -> str:
    """:data:`THROWAWAY` registered as a registry line would: the current shape's module."""
    assert THROWAWAY not in KNOWN_VERSIONS
    registry = versions._REGISTRY
    monkeypatch.setitem(registry, THROWAWAY, ApiVersion.from_module(THROWAWAY, current))
    monkeypatch.setattr(versions, "KNOWN_VERSIONS", tuple(sorted(registry)))
    return THROWAWAY


def test_a_version_with_an_existing_shape_is_one_registry_line(
    throwaway: str, engine: Engine
) -> None:
    assert get_version(throwaway).shape == "2026-01-21"
    fleet = Fleet(60, seed=5)
    app = create_app(fleet, api_key="phak_versions_test_key")
    settings = Settings(
        api_key="phak_versions_test_key",
        base_url="http://simulator/api/v1",
        api_version=throwaway,  # the settings validator accepts it
        database_url=str(engine.url),
        page_size=25,
        _env_file=None,
    )
    # The simulator serves it, the client validates and maps it with the current shape's module.
    summary = run_sync(engine, settings, transport=SimulatorTransport(app))
    assert summary.listing_complete
    assert summary.api_version == throwaway
    runs = table_of(SyncRun).c
    with engine.connect() as conn:
        vm_uuids = set(conn.execute(select(table_of(Cvm).c.vm_uuid)).scalars())
        ledger = conn.execute(select(runs.api_version).where(runs.id == summary.run_id)).one()
    assert len(vm_uuids) == fleet.cvm_count
    assert vm_uuids == set(fleet.vm_uuids())
    assert ledger.api_version == throwaway
