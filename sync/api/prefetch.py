"""Pages asked for before the run needs them: a listing that starts while the run starts.

A ``phala-sync sync`` spends seconds before its flow reaches the fetch: importing Prefect and the
flow, starting the flow run, taking the target's lock, opening the ledger row (about 3 s measured
here; docs/performance.md). Against a distant API those seconds read a good part of the fleet. A
:class:`Prefetch` is a thread with its own event loop and connections that sends what the run's
listing sends: page 1 of every endpoint at once, then the pages each page 1 announced, endpoint
after endpoint, at most ``concurrency`` requests in flight. Its constructor returns once the first
request reaches the network (:data:`READY_WAIT` at the most): the thread's set-up then does not
share the interpreter with what the caller does next (measured: the first request went out 0.22 s
after the constructor returned, while the caller imported Alembic).

The run's client then sends through :meth:`Prefetch.transport`: a request the prefetch sent
(answered or still in flight) gets that answer, once; a request it is yet to send waits for it;
every other request goes to the network (and the prefetch will not send it). The prefetch goes on
sending ahead of the run, so the network stays busy while the run parses and stages what arrived:
the two no longer take turns. The client parses, validates, retries and judges each answer as if
it had just received it, so a prefetched error answer (a 503, a body cut short, a refused
connection) is retried over the network like any other.

Before the run claims it, it holds each answer with its body compressed (zlib, level 1: a page of
JSON keeps about a tenth of its size), decompressed when the run takes it, and waits while it holds
``max_bytes`` of them. After the claim it goes on only if its answers came ``slow_answer``
(:data:`SLOW_ANSWER`) or more apart on average, at most :data:`AHEAD` times the concurrency pages
beyond the last one the run asked for, kept as they came. Against a near API the run's parsing
sets the pace, and a thread doing the run's networking beside it only takes the GIL from it
(measured: a 100k unchanged resync at 0 ms parsed in 13.8 s instead of 5.0 s), so there it stops
at the claim and the run's client sends the rest itself.

It stops sending at an answer that is not a 2xx page or a request that fails: from there the run
sends its own requests. Answers nobody asked for are dropped when it closes. Whether a run may use
a prefetch at all (the same requests; no run of the target stored anything since it began) is
:mod:`sync.prefetching`'s question.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import threading
import zlib
from collections.abc import Callable, Sequence
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

__all__ = [
    "AHEAD",
    "MAX_BYTES",
    "READY_WAIT",
    "SLOW_ANSWER",
    "Answer",
    "Prefetch",
    "PrefetchedTransport",
]

log = logging.getLogger(__name__)

#: The most a prefetch holds before the claim (answers' bodies, compressed): about 200 pages of 100
#: CVMs (a page of the 2026-01-21 shape is 130-200 kB, 15-25 kB compressed), what 5 s read at 100 ms
#: per request, 4 in flight, against a startup of 2-3 s. Held uncompressed, 24 MiB (150 pages)
#: raised the peak RSS of a 100k first sync (0 ms: the prefetch fills) to 254 MiB; 8 MiB
#: compressed (400 pages) to 252 MiB.
MAX_BYTES = 4 * 1024 * 1024
#: After the claim: how far ahead of the run's last request the prefetch sends, in multiples of
#: the concurrency (pages of the same endpoint, or the first pages of the next one).
AHEAD = 2
#: The time per page from which the prefetch goes on after the claim: the mean time an answer took,
#: divided by the concurrency (with 4 in flight, pages arrive that far apart). The network sets the
#: pace of a listing whose pages come this far apart: the run parses and stages a page in 5-20 ms
#: here. At 100 ms per request, 4 in flight: 25 ms; from the simulator at 0 ms: 5-8 ms (its own
#: rendering and the machine's load; 25 ms per answer, a first threshold, was crossed there).
SLOW_ANSWER = 0.0125
#: The longest the constructor waits for the first request to reach the network, seconds.
READY_WAIT = 0.5
#: Headers that described the body as it came over the wire; the body kept is decoded.
_WIRE_HEADERS = frozenset({b"content-encoding", b"content-length", b"transfer-encoding"})


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer as the prefetch received it: status, headers and the decoded body (``data``,
    zlib-compressed when ``compressed``)."""

    status: int
    headers: list[tuple[bytes, bytes]]
    data: bytes
    compressed: bool

    @classmethod
    def of(cls, response: httpx.Response, *, compress: bool) -> Answer:
        headers = [(k, v) for k, v in response.headers.raw if k.lower() not in _WIRE_HEADERS]
        body = response.content
        return cls(
            response.status_code, headers, zlib.compress(body, 1) if compress else body, compress
        )

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    def body(self) -> bytes:
        return zlib.decompress(self.data) if self.compressed else self.data


#: Page 1's answer -> the URLs of the pages it announced, with their (endpoint's index, page).
Plan = Callable[[Answer | None], dict[str, tuple[int, int]]]

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
        slow_answer: float = SLOW_ANSWER,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """Starts at once, and returns when the first request is on its way (or after
        :data:`READY_WAIT`); nothing waits for its answers. ``transport`` is for tests."""
        self.base_url = base_url.rstrip("/")
        self.version = version
        self.page_size = page_size
        self.concurrency = concurrency
        self.endpoints = tuple(endpoints)
        self._version = get_version(version)
        self.max_bytes = max_bytes
        self.slow_answer = slow_answer
        self._key = api_key
        self._key_digest = hashlib.sha256(api_key.encode()).hexdigest()
        self._timeout = timeout
        self._wire = transport
        self._guard = threading.Lock()
        #: Under the guard: the outcome of each URL sent and not yet taken; the outcome of each
        #: URL the run waits for before it was sent; every URL sent, or left to the run's client;
        #: the URLs the prefetch will send (pages 1, then the pages each page 1 announced).
        self._answers: dict[str, Future[Outcome]] = {}
        self._awaited: dict[str, Future[Outcome]] = {}
        self._sent: set[str] = set()
        self._planned: dict[str, tuple[int, int]] = {}  # URL -> (endpoint's index, page)
        self._asked = (0, 0)  # the furthest planned (endpoint's index, page) the run asked for
        self._claimed = False
        self._held = 0  # bytes of answers received and not taken
        self._waited = 0.0  # seconds the answers received took, in all
        self._stopped = False  # closed or failed: send nothing new
        #: Requests sent, requests taken by the run, answers and their bytes received.
        self._answered = 0
        self.sent = 0
        self.taken = 0
        self.received = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._room: asyncio.Event | None = None  # set when the run takes an answer or waits
        self._ready = threading.Event()  # set when the first request reaches the network
        self._thread = threading.Thread(target=self._run, name="phala-sync prefetch", daemon=True)
        self._thread.start()
        self._ready.wait(READY_WAIT)

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
        """The run's transport: prefetched answers first, ``inner`` for the rest."""
        with self._guard:
            self._claimed = True
            per_page = self._waited / max(1, self._answered) / self.concurrency
            if self._answered and per_page < self.slow_answer:
                self._stopped = True  # a near API: the run's client sends the rest
            log.debug(
                "the listing sent ahead, claimed: %d answers, %.1f ms apart; %s",
                self._answered,
                per_page * 1000,
                "stops" if self._stopped else "goes on",
            )
        self._wake()
        return PrefetchedTransport(self, inner)

    def take(self, url: str) -> Future[Outcome] | None:
        """The outcome of the request for ``url`` (once): sent, or to be sent, by the prefetch.

        None if the prefetch will not send it; it then never does (the caller sends it).
        """
        with self._guard:
            self._asked = max(self._asked, self._planned.get(url, self._asked))
            future = self._answers.pop(url, None)
            if future is not None:
                if future.done() and isinstance(answer := future.result(), Answer):
                    self._held -= len(answer.data)
            elif not self._stopped and url in self._planned and url not in self._sent:
                future = self._awaited.setdefault(url, Future())
            else:
                self._sent.add(url)
                return None
            self.taken += 1
        self._wake()
        return future

    def _wake(self) -> None:
        loop, room = self._loop, self._room
        if loop is not None and room is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(room.set)

    def close(self) -> None:
        """Stop sending, cut short what is in flight, drop what was not taken; join the thread."""
        with self._guard:
            self._stopped = True
        loop, task = self._loop, self._sender or self._main
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(task.cancel)
        self._thread.join(timeout=30)
        with self._guard:
            self._settle_unsent()
            for future in self._answers.values():
                _settle(future, None)
            self._answers.clear()

    def _settle_unsent(self) -> None:
        """The run's client sends what it waits for and the prefetch will not (under the guard)."""
        for future in self._awaited.values():
            _settle(future, None)
        self._awaited.clear()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    # The thread's side.

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            self._loop = loop
            self._main = loop.create_task(self._send_ahead())
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
        """The sender, with a client that is closed whatever becomes of the sender.

        :meth:`close` cancels the sender, never this: a cancellation that reached the client's
        own closing would leave its sockets open.
        """
        self._room = asyncio.Event()
        async with http_client(
            base_url=self.base_url,
            key=self._key,
            version=self.version,
            timeout=self._timeout,
            concurrency=self.concurrency,
            transport=self._wire,
        ) as http:
            self._sender = asyncio.create_task(self._send_all(http))
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender

    async def _send_all(self, http: httpx.AsyncClient) -> None:
        """Page 1 of every endpoint at once, then each endpoint's announced pages in turn,
        ``concurrency`` requests in flight at the most."""
        slots = asyncio.Semaphore(self.concurrency)
        in_flight: set[asyncio.Task[Answer | None]] = set()

        def url_of(path: str, page: int) -> str:
            return str(self._request(http, path, page).url)

        async def send(path: str, page: int, plan: Plan | None = None) -> Answer | None:
            try:
                return await self._send(http, path, page, plan)
            finally:
                slots.release()

        def start(path: str, page: int, plan: Plan | None = None) -> asyncio.Task[Answer | None]:
            task = asyncio.create_task(send(path, page, plan))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            return task

        with self._guard:
            self._planned.update(
                (url_of(spec.path, 1), (index, 1)) for index, spec in enumerate(self.endpoints)
            )
        try:
            rests: list[dict[str, tuple[int, int]]] = [{} for _ in self.endpoints]
            firsts = []
            for index, spec in enumerate(self.endpoints):
                await slots.acquire()
                plan = functools.partial(self._plan, rests[index], index, url_of)
                firsts.append(start(spec.path, 1, plan))
            for index, spec in enumerate(self.endpoints):
                await asyncio.wait([firsts[index]])  # its plan is in rests[index]
                for url, (_, page) in rests[index].items():
                    await slots.acquire()
                    await self._until_room(url, (index, page))
                    if self._stopped:
                        slots.release()
                        break
                    start(spec.path, page)
                if self._stopped:
                    break
            await asyncio.gather(*in_flight, return_exceptions=True)
        finally:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
            with self._guard:
                self._stopped = True
                self._settle_unsent()

    async def _on_wire(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's trace of a request (its first event: connecting, or sending on a kept
        connection): from here the thread waits on the network, and the constructor returns."""
        self._ready.set()

    def _request(self, http: httpx.AsyncClient, path: str, page: int) -> httpx.Request:
        """The request for ``page``, as the run's client builds it (so its URL is the key)."""
        return http.build_request("GET", path, params={"page": page, "page_size": self.page_size})

    def _plan(
        self,
        into: dict[str, tuple[int, int]],
        index: int,
        url_of: Callable[[str, int], str],
        first: Answer | None,
    ) -> dict[str, tuple[int, int]]:
        """The pages after page 1 of endpoint ``index`` that ``first`` announced (see Plan)."""
        spec = self.endpoints[index]
        announced = _announced_pages(spec.models(self._version), first)
        into.update({url_of(spec.path, page): (index, page) for page in range(2, announced + 1)})
        return into

    async def _until_room(self, url: str, position: tuple[int, int]) -> None:
        """Wait while the prefetch holds ``max_bytes`` (before the claim) or is :data:`AHEAD` of the
        run (after it), unless the run waits for a page not sent yet."""
        assert self._room is not None
        while True:
            with self._guard:
                if self._stopped or self._awaited or url in self._sent or self._room_for(position):
                    return
                self._room.clear()
            await self._room.wait()

    def _room_for(self, position: tuple[int, int]) -> bool:
        """Whether the page at ``position`` may be sent now (under the guard)."""
        if not self._claimed:
            return self._held < self.max_bytes
        ahead = AHEAD * self.concurrency
        endpoint, page = position
        asked_endpoint, asked_page = self._asked
        if endpoint < asked_endpoint:  # the run went on to the next endpoint
            return True
        return page <= (asked_page if endpoint == asked_endpoint else 0) + ahead

    async def _send(
        self, http: httpx.AsyncClient, path: str, page: int, plan: Plan | None
    ) -> Answer | None:
        """One request, its outcome published under its URL as the run's client will build it.

        ``plan`` (page 1's) gives the URLs the prefetch will send next, planned before the answer
        is published: the run's client, which asks for them once it has page 1, then waits for
        them instead of sending them itself.
        """
        request = self._request(http, path, page)
        url = str(request.url)
        if not self._ready.is_set():  # httpcore calls it as the request reaches the network
            request.extensions["trace"] = self._on_wire
        with self._guard:
            if self._stopped or url in self._sent:
                return None
            self._sent.add(url)
            future = self._awaited.pop(url, None)
            if future is None:
                future = self._answers[url] = Future()
            self.sent += 1
        outcome: Outcome = None
        try:
            response = await http.send(request)
            with self._guard:
                self._answered += 1
                self._waited += response.elapsed.total_seconds()
                held = not self._claimed and self._answers.get(url) is future  # compressed
            outcome = Answer.of(response, compress=held)
        except httpx.RequestError as exc:
            outcome = exc
        except Exception:  # not a request's failure (a bug): the run sends it again itself
            log.debug("prefetch of %s page %d failed", path, page, exc_info=True)
        finally:  # a cancelled request (close) settles as None
            self._ready.set()
            answer = outcome if isinstance(outcome, Answer) else None
            planned = plan(answer) if plan is not None else {}
            with self._guard:
                self._planned.update(planned)
                _settle(future, outcome)
                if isinstance(outcome, Answer):
                    self.received += len(outcome.data)
                    if self._answers.get(url) is future:
                        self._held += len(outcome.data)
                if not isinstance(outcome, Answer) or not outcome.is_success:
                    self._stopped = True
                    self._settle_unsent()
            self._wake()
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
                "%d request(s) answered by the listing sent ahead of the run (%d sent, %d kB kept)",
                self._prefetch.taken,
                self._prefetch.sent,
                self._prefetch.received // 1024,
            )
        finally:
            await self._inner.aclose()
