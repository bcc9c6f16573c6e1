"""Pages asked for before the run needs them: a listing that starts while the run starts.

A ``phala-sync sync`` spends seconds before its flow reaches the fetch: importing Prefect and the
flow, starting the flow run, taking the target's lock, opening the ledger row (about 3 s measured
here; docs/performance.md). Against a distant API those seconds read a good part of the fleet. A
:class:`Prefetch` is a thread with its own event loop and connections that sends what the run's
listing sends first, in the same order: page 1 of each endpoint alone, then the pages page 1
announced, at most ``concurrency`` requests in flight.

The run's client then sends through :meth:`Prefetch.transport`: a request the prefetch already
sent (answered or still in flight) gets that answer, once; every other request goes to the
network. Once the transport exists the prefetch sends nothing new. The client parses, validates,
retries and judges each answer as if it had just received it, so a prefetched error answer (a 503,
a body cut short, a refused connection) is retried over the network like any other.

It holds each answer's body compressed (zlib, level 1: a page of JSON keeps about a tenth of its
size, for about 1 ms of a thread that releases the GIL meanwhile) and decompresses it when the run
takes it, so what a few seconds of startup read against a distant API fits in a few MiB. The
prefetch stops sending when it holds ``max_bytes`` of compressed answers, when an answer is not
a 2xx page, or when a request fails. Answers nobody asked for are dropped when it closes. Whether
a run may use a prefetch at all (the same requests; no run of the target stored anything since it
began) is :mod:`sync.prefetching`'s question.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import zlib
from collections.abc import Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from pydantic import ValidationError

from sync.api.client import http_client
from sync.endpoints import EndpointSpec, ListModels
from sync.settings import Settings, api_key_text
from sync.versions import get_version

__all__ = ["MAX_BYTES", "Answer", "Prefetch", "PrefetchedTransport"]

log = logging.getLogger(__name__)

#: The most a prefetch holds (answers' bodies, compressed): about 400 pages of 100 CVMs (a page of
#: the 2026-01-21 shape is 130-200 kB, 15-25 kB compressed), what 10 s read at 100 ms per request,
#: 4 in flight. Held uncompressed, 24 MiB (150 pages) raised the peak RSS of a 100k first sync
#: (0 ms: the prefetch fills) to 254 MiB, and 8 MiB covered only 1.3 s of a 2-3 s startup.
MAX_BYTES = 8 * 1024 * 1024
#: Headers that described the body as it came over the wire; the body kept is decoded.
_WIRE_HEADERS = frozenset({b"content-encoding", b"content-length", b"transfer-encoding"})


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer as the prefetch received it: status, headers and the decoded body, compressed."""

    status: int
    headers: list[tuple[bytes, bytes]]
    packed: bytes

    @classmethod
    def of(cls, response: httpx.Response) -> Answer:
        headers = [(k, v) for k, v in response.headers.raw if k.lower() not in _WIRE_HEADERS]
        return cls(response.status_code, headers, zlib.compress(response.content, 1))

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    def body(self) -> bytes:
        return zlib.decompress(self.packed)


#: What a prefetched request came to: an answer, a failure to raise as the request's own, or
#: None (not sent, or cut short by the prefetch's close): send it to the network.
Outcome = Answer | httpx.RequestError | None


def _settle(future: Future[Outcome], outcome: Outcome) -> None:
    with contextlib.suppress(InvalidStateError):  # already settled, or cancelled by its waiter
        future.set_result(outcome)


def _announced_pages(models: ListModels[Any, Any], answer: Answer | None) -> int:
    """The page count a page-1 answer announces; 1 for anything that is not a valid page."""
    if answer is None or not answer.is_success:
        return 1
    try:
        _, pages = models.contents(models.envelope.validate_python(orjson.loads(answer.body())))
    except (orjson.JSONDecodeError, ValidationError):
        return 1
    return max(1, pages)


class Prefetch:
    """The first requests of a listing of ``endpoints``, sent ahead in a thread of their own."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        version: str,
        page_size: int,
        concurrency: int,
        timeout: float,
        endpoints: Sequence[EndpointSpec[Any]],
        max_bytes: int = MAX_BYTES,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """Starts at once; nothing waits for it. ``transport`` is for tests."""
        self.base_url = base_url.rstrip("/")
        self.version = version
        self.page_size = page_size
        self.concurrency = concurrency
        self.endpoints = tuple(endpoints)
        self._version = get_version(version)
        self.max_bytes = max_bytes
        self._key = api_key
        self._key_digest = hashlib.sha256(api_key.encode()).hexdigest()
        self._timeout = timeout
        self._wire = transport
        self._answers: dict[str, Future[Outcome]] = {}
        self._guard = threading.Lock()
        self._stopped = False  # claimed, closed, full or failed: send nothing new
        #: Requests sent, requests taken by the run, and bytes of answers held (compressed).
        self.sent = 0
        self.taken = 0
        self.received = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[None] | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="phala-sync prefetch", daemon=True)
        self._thread.start()
        self._ready.wait()

    @classmethod
    def from_settings(
        cls, settings: Settings, endpoints: Sequence[EndpointSpec[Any]], **kwargs: object
    ) -> Prefetch:
        """A prefetch of what a run with ``settings`` requests first."""
        return cls(
            base_url=settings.base_url,
            api_key=api_key_text(settings.api_key),
            version=settings.api_version,
            page_size=settings.page_size,
            concurrency=settings.concurrency,
            timeout=settings.timeout,
            endpoints=endpoints,
            **kwargs,  # type: ignore[arg-type]
        )

    def __repr__(self) -> str:
        return f"Prefetch(base_url={self.base_url!r}, version={self.version!r}, sent={self.sent})"

    def asks_as(self, settings: Settings, endpoints: Sequence[EndpointSpec[Any]]) -> bool:
        """Whether a run with ``settings`` listing ``endpoints`` sends the requests sent here."""
        key = api_key_text(settings.api_key)
        return (
            settings.base_url.rstrip("/") == self.base_url
            and settings.api_version == self.version
            and settings.page_size == self.page_size
            and hashlib.sha256(key.encode()).hexdigest() == self._key_digest
            and tuple(endpoints) == self.endpoints
        )

    def transport(self, inner: httpx.AsyncBaseTransport) -> PrefetchedTransport:
        """The run's transport: prefetched answers first, ``inner`` for the rest. Sends no more."""
        with self._guard:
            self._stopped = True
        return PrefetchedTransport(self, inner)

    def take(self, url: str) -> Future[Outcome] | None:
        """The outcome of the prefetched request for ``url`` (once), or None if none was sent."""
        with self._guard:
            future = self._answers.pop(url, None)
            if future is not None:
                self.taken += 1
        return future

    def close(self) -> None:
        """Stop sending, cut short what is in flight, drop what was not taken; join the thread."""
        with self._guard:
            self._stopped = True
        loop, main = self._loop, self._main
        if loop is not None and main is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(main.cancel)
        self._thread.join(timeout=30)
        with self._guard:
            for future in self._answers.values():
                _settle(future, None)
            self._answers.clear()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    # The thread's side.

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            self._loop = loop
            self._main = loop.create_task(self._send_ahead())
            self._ready.set()
            loop.run_until_complete(self._main)
        except asyncio.CancelledError:  # closed
            pass
        except Exception:  # not a request's failure (a bug): the run sends its requests itself
            log.debug("the listing sent ahead stopped", exc_info=True)
            with self._guard:
                self._stopped = True
        finally:
            self._ready.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _send_ahead(self) -> None:
        """Page 1 of each endpoint alone, then its announced pages, ``concurrency`` at a time."""
        async with http_client(
            base_url=self.base_url,
            key=self._key,
            version=self.version,
            timeout=self._timeout,
            concurrency=self.concurrency,
            transport=self._wire,
        ) as http:
            slots = asyncio.Semaphore(self.concurrency)
            in_flight: set[asyncio.Task[Answer | None]] = set()

            async def send(path: str, page: int) -> Answer | None:
                try:
                    return await self._send(http, path, page)
                finally:
                    slots.release()

            try:
                for spec in self.endpoints:
                    await slots.acquire()
                    first = await send(spec.path, 1)
                    for page in range(2, _announced_pages(spec.models(self._version), first) + 1):
                        await slots.acquire()
                        if self._stopped:
                            slots.release()
                            break
                        task = asyncio.create_task(send(spec.path, page))
                        in_flight.add(task)
                        task.add_done_callback(in_flight.discard)
                    if self._stopped:
                        break
                await asyncio.gather(*in_flight, return_exceptions=True)
            finally:
                for task in in_flight:
                    task.cancel()
                await asyncio.gather(*in_flight, return_exceptions=True)

    async def _send(self, http: httpx.AsyncClient, path: str, page: int) -> Answer | None:
        """One request, its outcome published under its URL as the run's client will build it."""
        request = http.build_request(
            "GET", path, params={"page": page, "page_size": self.page_size}
        )
        future: Future[Outcome] = Future()
        with self._guard:
            if self._stopped:
                return None
            self._answers[str(request.url)] = future
            self.sent += 1
        outcome: Outcome = None
        try:
            response = await http.send(request)
            outcome = Answer.of(response)
        except httpx.RequestError as exc:
            outcome = exc
        except Exception:  # not a request's failure (a bug): the run sends it again itself
            log.debug("prefetch of %s page %d failed", path, page, exc_info=True)
        finally:  # a cancelled request (close) settles as None
            _settle(future, outcome)
            with self._guard:
                if isinstance(outcome, Answer):
                    self.received += len(outcome.packed)
                if (
                    not isinstance(outcome, Answer)
                    or not outcome.is_success
                    or self.received >= self.max_bytes
                ):
                    self._stopped = True
        return outcome if isinstance(outcome, Answer) else None


class PrefetchedTransport(httpx.AsyncBaseTransport):
    """Answers a request from its prefetch when it was sent ahead; sends the rest to ``inner``.

    Closing it closes the prefetch, and logs how many of the run's requests it answered.
    """

    def __init__(self, prefetch: Prefetch, inner: httpx.AsyncBaseTransport) -> None:
        self._prefetch = prefetch
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        future = self._prefetch.take(str(request.url)) if request.method == "GET" else None
        outcome = None if future is None else await asyncio.wrap_future(future)
        if outcome is None:
            return await self._inner.handle_async_request(request)
        if isinstance(outcome, httpx.RequestError):
            raise outcome
        return httpx.Response(
            outcome.status, headers=outcome.headers, content=outcome.body(), request=request
        )

    async def aclose(self) -> None:
        try:
            await asyncio.to_thread(self._prefetch.close)
            log.info(
                "%d request(s) answered by the listing sent ahead of the run "
                "(%d sent, %d kB held compressed)",
                self._prefetch.taken,
                self._prefetch.sent,
                self._prefetch.received // 1024,
            )
        finally:
            await self._inner.aclose()
