"""Shared pieces of the simulator tests: the OpenAPI validators and an in-process caller."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from starlette.applications import Starlette

from simulator import Fleet, SimulatorTransport, create_app
from simulator.shapes import shape_of
from sync.versions import KNOWN_VERSIONS

API_KEY = "phak_simulator_test_key"
ADMIN_TOKEN = "admin-test-token"
#: Every version the registry knows (and so the simulator serves).
VERSIONS = KNOWN_VERSIONS
OPENAPI = (
    Path(__file__).resolve().parents[3] / "shared/reference/phala-cloud-openapi.list-endpoints.json"
)
#: The response schema of each endpoint in each shape (not the anyOf of both: stricter).
SCHEMAS = {
    ("cvms", "legacy"): "PaginatedHostedCvms",
    ("cvms", "current"): "PaginatedCvmInfos",
    ("apps", "legacy"): "teehouse__api__routes__apps__v20251028__schemas__DstackAppListResponse",
    ("apps", "current"): "teehouse__api__routes__apps__v20260121__schemas__DstackAppListResponse",
}
PATHS = {"cvms": "/api/v1/cvms/paginated", "apps": "/api/v1/apps"}


@cache
def openapi() -> dict[str, Any]:
    assert OPENAPI.is_file(), f"the OpenAPI reference is missing at {OPENAPI}"
    doc: dict[str, Any] = orjson.loads(OPENAPI.read_bytes())
    return doc


@cache
def validator(ref: str) -> Draft202012Validator:
    """A validator for ``#/components/schemas/<ref>`` of the reference, ``$ref``s resolved."""
    resource = Resource.from_contents(openapi(), default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:phala-openapi", resource)
    schema = {"$ref": f"urn:phala-openapi#/components/schemas/{ref}"}
    return Draft202012Validator(
        schema, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def page_validator(endpoint: str, version: str) -> Draft202012Validator:
    return validator(SCHEMAS[(endpoint, shape_of(version))])


def schema_errors(endpoint: str, version: str, body: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in page_validator(endpoint, version).iter_errors(body)
    ]


class Caller:
    """Calls an app in process (httpx + :class:`SimulatorTransport`) from synchronous tests."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self._runner = asyncio.Runner()
        self._client = httpx.AsyncClient(transport=SimulatorTransport(app), base_url="http://sim")

    def get(
        self,
        endpoint_or_path: str,
        *,
        version: str | None = None,
        key: str | None = API_KEY,
        headers: dict[str, str] | None = None,
        **params: Any,
    ) -> httpx.Response:
        path = PATHS.get(endpoint_or_path, endpoint_or_path)
        sent = dict(headers or {})
        if key is not None:
            sent["X-API-Key"] = key
        if version is not None:
            sent["X-Phala-Version"] = version
        return self._runner.run(self._client.get(path, params=params, headers=sent))

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self._runner.run(self._client.request(method, path, **kwargs))

    def admin(
        self, method: str, path: str, *, token: str | None = ADMIN_TOKEN, **kwargs: Any
    ) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["X-Admin-Token"] = token
        return self.request(method, f"/admin{path}", headers=headers, **kwargs)

    def all_items(self, endpoint: str, version: str, page_size: int = 100) -> list[dict[str, Any]]:
        key = "items" if endpoint == "cvms" else "dstack_apps"
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            r = self.get(endpoint, version=version, page=page, page_size=page_size)
            assert r.status_code == 200, r.text
            items = r.json()[key]
            if not items:
                return out
            out.extend(items)
            page += 1

    def close(self) -> None:
        self._runner.run(self._client.aclose())
        self._runner.close()


@pytest.fixture
def make_caller() -> Iterator[Any]:
    """``make_caller(fleet=..., **create_app_kwargs) -> Caller``; closed after the test."""
    callers: list[Caller] = []

    def make(fleet: Fleet | None = None, **kwargs: Any) -> Caller:
        kwargs.setdefault("api_key", API_KEY)
        kwargs.setdefault("admin_token", ADMIN_TOKEN)
        caller = Caller(create_app(fleet, **kwargs))
        callers.append(caller)
        return caller

    yield make
    for caller in callers:
        caller.close()


@pytest.fixture(scope="session")
def fleet_300() -> Fleet:
    """A 300-CVM fleet that tests must not change (use a fresh Fleet to evolve)."""
    return Fleet(300, seed=7)


def all_pages(caller: Caller, endpoint: str, version: str, page_size: int) -> list[Any]:
    """Every page of ``endpoint``, decoded, up to and including the empty one past the last."""
    pages = []
    page = 1
    while True:
        r = caller.get(endpoint, version=version, page=page, page_size=page_size)
        assert r.status_code == 200, r.text
        body = orjson.loads(r.content)
        pages.append(body)
        if page > body.get("pages", body.get("total_pages", 0)):
            return pages
        page += 1
