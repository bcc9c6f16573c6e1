"""PhalaClient when things go wrong: a failing page cancels the others, an abandoned listing stops,
the key never reaches errors or logs; and the same over a real loopback socket.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest

from sync.api.client import PhalaClient
from sync.api.pages import Page
from sync.endpoints import CVMS
from sync.errors import (
    AuthError,
    NotFoundError,
)
from tests.sync.api.fake_api import (
    KEY,
    VERSION,
    FakeApi,
    FakeTime,
    collect_cvms,
    make_client,
    other_tasks,
    raises,
    run,
    status,
)
from tests.sync.api.listings import PagesSeen

# --- failures, cancellation and secrecy --------------------------------------------------------


def test_a_failing_later_page_cancels_the_others_cleanly(caplog: pytest.LogCaptureFixture) -> None:
    async def forever() -> None:
        await asyncio.sleep(3600)

    api = FakeApi(
        total=1000,
        faults={4: [status(404, {"detail": "gone"})]},
        gates={2: forever, 3: forever, 5: forever},
    )

    async def main() -> set[asyncio.Task[Any]]:
        async with make_client(api, concurrency=4) as client:
            with pytest.raises(NotFoundError):
                await asyncio.wait_for(collect_cvms(client), timeout=5)
            return other_tasks()  # before the client's close could clean anything up

    with caplog.at_level(logging.DEBUG):
        leftover = run(main)
    assert leftover == set()
    assert sorted(api.cancelled) == [2, 3, 5]
    assert sorted(api.pages_requested()) == [1, 2, 3, 4, 5]
    assert not [r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.WARNING]


def test_closing_the_client_stops_an_abandoned_listing() -> None:
    async def forever() -> None:
        await asyncio.sleep(3600)

    api = FakeApi(total=1000, gates={3: forever, 4: forever})

    async def main() -> set[asyncio.Task[Any]]:
        async with asyncio.timeout(10), make_client(api, concurrency=3) as client:
            pages = client.pages(CVMS)
            assert (await anext(pages)).number == 1
            assert (await anext(pages)).number == 2
            # leave the iterator suspended, with pages 3 and 4 in flight
        return other_tasks()

    assert run(main) == set()
    assert sorted(api.cancelled) == [3, 4]


def test_the_key_never_reaches_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    echo = {
        "error_code": "ERR-01-001",
        "message": f"invalid key {KEY}",
        "details": [{"field": "X-API-Key", "value": KEY, "message": "revoked"}],
    }
    api = FakeApi(
        total=300,
        faults={
            2: [
                status(503, {"detail": f"upstream rejected {KEY}"}),
                raises(httpx.ReadError, f"connection reset while sending {KEY}"),
                status(200, None),  # empty body: invalid envelope, retried
            ],
            3: [status(401, echo, {"X-Request-ID": f"req-{KEY}"})],
        },
    )

    async def main() -> None:
        async with make_client(api, concurrency=1) as client:
            logging.getLogger("httpx").info("echo %s", KEY)  # as if httpx itself logged it
            await collect_cvms(client)

    with caplog.at_level(logging.DEBUG), pytest.raises(AuthError) as caught:
        run(main)
    err = caught.value
    for text in (str(err), repr(err), err.url, err.request_id or ""):
        assert KEY not in text
    assert "[redacted]" in str(err)
    assert len(caplog.records) > 3
    for record in caplog.records:
        assert KEY not in record.getMessage()
    assert KEY not in caplog.text
    messages = [r.getMessage() for r in caplog.records]
    assert any("HTTP 503" in m for m in messages)
    assert any("ReadError: connection reset while sending [redacted]" in m for m in messages)
    assert "echo [redacted]" in messages
    # after the client is closed, its filter no longer touches httpx's logger
    assert not logging.getLogger("httpx").filters


# --- over a real socket ------------------------------------------------------------------------

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class LoopbackApi:
    """A raw ASGI app serving CVM pages, with a dropped body and a key-echoing 503 on the way."""

    api: FakeApi
    served: dict[int, int] = field(default_factory=dict)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        headers = dict(scope["headers"])
        params = httpx.QueryParams(scope["query_string"].decode())
        page, size = int(params["page"]), int(params["page_size"])
        self.served[page] = self.served.get(page, 0) + 1
        if headers.get(b"x-api-key") != KEY.encode():
            await self._answer(send, 401, b'{"detail": "Invalid API key"}')
        elif page == 2 and self.served[page] == 1:
            # announce a long body, send part of it and drop the connection
            start = {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"5000")],
            }
            await send(start)
            await send({"type": "http.response.body", "body": b'{"items": [', "more_body": True})
            raise ConnectionAbortedError("dropping the connection mid-body")
        elif page == 3 and self.served[page] == 1:
            echo = f'{{"detail": "bad key {KEY}"}}'.encode()
            await self._answer(send, 503, echo, [(b"x-echo", KEY.encode())])
        else:
            await self._answer(send, 200, orjson.dumps(self.api.body(page, size)))

    @staticmethod
    async def _answer(
        send: Send, code: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        headers = [(b"content-type", b"application/json"), *(extra or [])]
        await send({"type": "http.response.start", "status": code, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def test_over_a_loopback_socket(caplog: pytest.LogCaptureFixture) -> None:
    uvicorn = pytest.importorskip("uvicorn")
    import socket

    app = LoopbackApi(FakeApi(total=250))
    fake_time = FakeTime()

    async def main() -> list[Page[Any]]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            app, lifespan="off", log_config=None, access_log=False, ws="none", http="h11"
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            while not server.started:
                await asyncio.sleep(0.01)
            client = PhalaClient(
                base_url=f"http://127.0.0.1:{port}/api/v1",
                api_key=KEY,
                version=VERSION,
                concurrency=2,
                timeout=10,
                sleep=fake_time.sleep,
                clock=fake_time.monotonic,
                now=fake_time.now,
                jitter=lambda: 0.5,
            )
            async with client:
                pages = await collect_cvms(client)
            bad_key_client = PhalaClient(
                base_url=f"http://127.0.0.1:{port}/api/v1", api_key="phak_wrong", version=VERSION
            )
            async with bad_key_client:
                with pytest.raises(AuthError, match="Invalid API key"):
                    await collect_cvms(bad_key_client)
            return pages
        finally:
            server.should_exit = True
            await serving
            sock.close()

    with caplog.at_level(logging.DEBUG):
        pages = run(main)
    assert sorted(p.number for p in pages) == [1, 2, 3]
    assert sum(len(p.items) for p in pages) == 250
    assert PagesSeen.of(pages).complete
    assert app.served == {1: 2, 2: 2, 3: 2}  # page 1 twice: once per client
    assert len(fake_time.sleeps) == 2  # one retry for the dropped body, one for the 503
    messages = [r.getMessage() for r in caplog.records]
    assert any("RemoteProtocolError" in m for m in messages)
    assert any("HTTP 503" in m for m in messages)
    # httpcore logged the 503's headers at DEBUG, with the echoed key redacted
    assert any(
        r.name.startswith("httpcore") and "[redacted]" in r.getMessage() for r in caplog.records
    )
    assert KEY not in caplog.text
