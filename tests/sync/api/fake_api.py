"""A fake Phala Cloud API for PhalaClient tests: httpx.MockTransport handlers and a fake clock.

Retry waits go through the injected :class:`FakeTime`, so no test actually waits for a backoff.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import orjson
from pydantic import SecretStr

from sync.api.client import PhalaClient
from sync.api.pages import Page
from sync.endpoints import CVMS

KEY = "phak_client_test_0123456789SECRET"
BASE = "https://cloud-api.test/api/v1"
VERSION = "2026-01-21"
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)

T = TypeVar("T")
Fault = Callable[[httpx.Request], httpx.Response]


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(main())


def cvm_item(i: int) -> dict[str, Any]:
    """A minimal valid 2026-01-21 CVMInfo."""
    return {
        "id": f"cvm_{i:08x}",
        "name": f"cvm-{i}",
        "vm_uuid": str(uuid.UUID(int=i + 1)),
        "app_id": f"{i:040x}",
        "resource": {},
        "status": "running",
        "gateway": {},
    }


def app_item(i: int) -> dict[str, Any]:
    """A minimal 2026-01-21 app: only ``app_id`` is set."""
    return {"id": None, "app_id": f"{i:040x}", "name": None, "cvms": None, "current_cvm": None}


def status(code: int, body: Any = None, headers: dict[str, str] | None = None) -> Fault:
    def fault(request: httpx.Request) -> httpx.Response:
        content = b"" if body is None else orjson.dumps(body)
        return httpx.Response(code, content=content, headers=headers)

    return fault


def raises(exc_type: type[httpx.RequestError], message: str = "boom") -> Fault:
    def fault(request: httpx.Request) -> httpx.Response:
        raise exc_type(message, request=request)

    return fault


@dataclass
class FakeApi:
    """An async MockTransport handler serving a fleet of ``total`` items on one endpoint."""

    total: int
    endpoint: str = "cvms"
    #: page -> responses (or raisers) served, in order, before the page is served normally
    faults: dict[int, list[Fault]] = field(default_factory=dict)
    #: page -> envelope fields that page reports instead of the true ones
    overrides: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: page -> an awaitable the handler waits for before answering
    gates: dict[int, Callable[[], Awaitable[object]]] = field(default_factory=dict)
    delay: float = 0.0
    requests: list[httpx.Request] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    cancelled: list[int] = field(default_factory=list)
    on_request: Callable[[], None] | None = None

    def body(self, page: int, size: int) -> dict[str, Any]:
        start = (page - 1) * size
        ids = range(start, min(start + size, self.total))
        pages = math.ceil(self.total / size)
        if self.endpoint == "cvms":
            body: dict[str, Any] = {
                "items": [cvm_item(i) for i in ids],
                "total": self.total,
                "page": page,
                "page_size": size,
                "pages": pages,
            }
        else:
            body = {
                "dstack_apps": [app_item(i) for i in ids],
                "total": self.total,
                "page": page,
                "page_size": size,
                "total_pages": pages,
            }
        body.update(self.overrides.get(page, {}))
        return body

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.on_request is not None:
            self.on_request()
        page = int(request.url.params["page"])
        size = int(request.url.params["page_size"])
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if page in self.gates:
                await self.gates[page]()
            queue = self.faults.get(page)
            if queue:
                return queue.pop(0)(request)
            return httpx.Response(200, content=orjson.dumps(self.body(page, size)))
        except asyncio.CancelledError:
            self.cancelled.append(page)
            raise
        finally:
            self.in_flight -= 1

    def pages_requested(self) -> list[int]:
        return [int(r.url.params["page"]) for r in self.requests]


class FakeTime:
    """Monotonic clock, wall clock and sleep that only pretend time passes."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return NOW + timedelta(seconds=self.t)

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.t += delay
        await asyncio.sleep(0)


def make_client(
    api: Callable[[httpx.Request], Coroutine[None, None, httpx.Response]],
    fake_time: FakeTime | None = None,
    **kwargs: Any,
) -> PhalaClient:
    fake_time = fake_time or FakeTime()
    options: dict[str, Any] = {
        "base_url": BASE,
        "api_key": SecretStr(KEY),
        "version": VERSION,
        "transport": httpx.MockTransport(api),
        "sleep": fake_time.sleep,
        "clock": fake_time.monotonic,
        "now": fake_time.now,
        "jitter": lambda: 0.5,
    }
    options.update(kwargs)
    return PhalaClient(**options)


async def collect_cvms(client: PhalaClient) -> list[Page[Any]]:
    return [page async for page in client.pages(CVMS)]


def list_cvms(api: FakeApi, fake_time: FakeTime | None = None, **kwargs: Any) -> list[Page[Any]]:
    """One whole CVM listing from ``api`` by a client of :func:`make_client`: its pages."""

    async def main() -> list[Page[Any]]:
        async with make_client(api, fake_time, **kwargs) as client:
            return await collect_cvms(client)

    return run(main)


def other_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
