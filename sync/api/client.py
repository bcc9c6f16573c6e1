"""The async Phala Cloud API client: pages the listed endpoints, with retries.

::

    async with PhalaClient.from_settings(settings) as client:
        async for page in client.pages(CVMS):      # pages arrive in any order
            ...

An endpoint is an :class:`~sync.endpoints.EndpointSpec` (:mod:`sync.endpoints`): the client
requests its ``path`` and parses each page with :func:`~sync.api.pages.parse_page`.

A listing fetches page 1, learns the page count from it, then fetches pages 2..N with at most
``concurrency`` requests in flight: exactly the pages page 1 announced, even when a later page
announces another count or ``total``. The client keeps no count of a listing and judges nothing
of it: the caller (:class:`sync.listing.ListingPass`) judges whether a listing is complete from
the pages' numbers, ``total`` and ``pages``, and says so.
Requests in flight plus fetched pages not yet handed to the caller never exceed ``concurrency``,
so memory does not grow with the fleet. If a request fails for good the iterator raises that
error after cancelling (and awaiting) the other requests; leaving the ``async for`` early, or
closing the client, does the same cleanup.

Every request carries ``X-API-Key``, the pinned ``X-Phala-Version``, ``Accept: application/json``
and ``User-Agent: phala-sync/<release>``. The key is sent by an :class:`httpx.Auth` (so it is not
part of the client's default headers), never logged, and redacted from every error message and,
while a client is open, from the records of httpx's and httpcore's own loggers
(see :mod:`sync.api.redaction`).

Retries follow :class:`~sync.api.retry.RetryPolicy`. A 2xx answer whose body is not JSON or whose
page envelope is invalid (usually a body cut short) is retried up to ``RetryPolicy.body_retries``
times within the same attempt and time budget; after that
:class:`~sync.errors.InvalidEnvelopeError` is raised. An invalid *item* (``strict`` policy) is
never retried: the same bytes would fail again.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import logging
import random
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Self, TypeVar

import httpx
from pydantic import SecretStr

from sync.api.pages import KnownDigests, Page, parse_page
from sync.api.redaction import ApiKeyAuth, redact_logs, redact_secrets, safe_url
from sync.api.responses import error_from_response
from sync.api.retry import RetryPolicy, parse_retry_after
from sync.endpoints import EndpointSpec
from sync.errors import (
    ApiTransportError,
    InvalidEnvelopeError,
    InvalidItemError,
    PhalaSyncError,
)
from sync.settings import Settings, ValidationPolicy, api_key_text
from sync.versions import get_version

logger = logging.getLogger(__name__)

#: Failures without an HTTP answer that a new attempt may not meet again. Any other
#: ``httpx.TransportError`` (``UnsupportedProtocol``, ``LocalProtocolError``) is our side's fault.
_TRANSIENT_TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
    httpx.DecodingError,  # a compressed body cut short
)

_ItemT = TypeVar("_ItemT")


@dataclass(frozen=True, slots=True)
class _Retriable:
    """A failed attempt that a new one may not meet again: what failed, and how to retry."""

    error: PhalaSyncError
    #: For the log: "HTTP 503", "ReadError: ...", "invalid body ...".
    reason: str
    #: The wait the server asked for (``Retry-After``), if any.
    retry_after: float | None = None
    #: The exception the error is raised from when the client gives up.
    cause: BaseException | None = None
    #: A 2xx body that is not JSON or has an invalid envelope (retried ``body_retries`` times).
    invalid_body: bool = False


@functools.cache
def user_agent() -> str:
    """``phala-sync/<installed release>``."""
    try:
        release = importlib.metadata.version("phala-sync")
    except importlib.metadata.PackageNotFoundError:
        release = "0+unknown"
    return f"phala-sync/{release}"


def http_client(
    *,
    base_url: str,
    key: str,
    version: str,
    timeout: float,
    concurrency: int,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """The httpx client every request of a listing goes through (the prefetch's too).

    ``X-Phala-Version``, ``Accept`` and ``User-Agent`` are default headers; the key is sent by
    :class:`~sync.api.redaction.ApiKeyAuth`. At most ``concurrency`` connections.
    """
    return httpx.AsyncClient(
        base_url=base_url,
        auth=ApiKeyAuth(key),
        headers={
            "X-Phala-Version": version,
            "Accept": "application/json",
            "User-Agent": user_agent(),
        },
        timeout=httpx.Timeout(timeout),
        limits=connection_limits(concurrency),
        follow_redirects=False,
        transport=transport,
    )


def connection_limits(concurrency: int) -> httpx.Limits:
    """At most ``concurrency`` connections, all kept alive between requests."""
    return httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class PhalaClient:
    """Lists CVMs and apps of one Phala Cloud workspace, pinned to one API version."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: SecretStr | str | None,
        version: str,
        page_size: int = 100,
        concurrency: int = 4,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        validation_policy: ValidationPolicy = "quarantine",
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utcnow,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        """Nothing is sent until a listing starts.

        The values are :class:`~sync.settings.Settings`' (:meth:`from_settings`), which
        validated them; only the key is checked here, since a client built directly (tests,
        tools) may be handed none. ``sleep`` (retry waits), ``clock`` (monotonic seconds, for
        the retry budget), ``now`` (wall clock, for HTTP-date ``Retry-After``) and ``jitter``
        (uniform in [0, 1)) are injectable for tests.

        Raises :class:`~sync.errors.UnknownVersionError` for an unknown ``version`` and
        :class:`~sync.errors.ConfigError` (:data:`~sync.settings.MISSING_KEY`) for a blank key.
        """
        self._api_version = get_version(version)
        self.version = version
        key = api_key_text(api_key)
        self.base_url = base_url.rstrip("/")
        self.page_size = page_size
        self.concurrency = concurrency
        self.retry = retry or RetryPolicy()
        self.validation_policy: ValidationPolicy = validation_policy
        self._secrets = (key,)
        #: CPU-bound seconds spent decoding, validating and normalizing pages (for run timings).
        self.parse_seconds = 0.0
        self._sleep = sleep
        self._clock = clock
        self._now = now
        self._jitter = jitter
        self._http = http_client(
            base_url=self.base_url,
            key=key,
            version=version,
            timeout=timeout,
            concurrency=concurrency,
            transport=transport,
        )
        self._open_listings: weakref.WeakSet[AsyncGenerator[object, None]] = weakref.WeakSet()
        self._stop_redacting_logs = redact_logs(self._secrets, __name__)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> Self:
        """A client configured from :class:`~sync.settings.Settings` (key, URL, retries...)."""
        return cls(
            base_url=settings.base_url,
            api_key=settings.api_key,
            version=settings.api_version,
            page_size=settings.page_size,
            concurrency=settings.concurrency,
            timeout=settings.timeout,
            retry=RetryPolicy(
                max_attempts=settings.max_attempts,
                budget_seconds=settings.retry_budget,
                base=settings.backoff_base,
                max_delay=settings.backoff_max,
            ),
            validation_policy=settings.validation_policy,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"PhalaClient(base_url={self.base_url!r}, version={self.version!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop any unfinished listing (cancelling its requests) and close the connections."""
        try:
            for listing in list(self._open_listings):
                await listing.aclose()
            await self._http.aclose()
        finally:
            self._stop_redacting_logs()

    def pages(
        self, spec: EndpointSpec[_ItemT], known: KnownDigests | None = None
    ) -> AsyncGenerator[Page[_ItemT], None]:
        """All pages of ``spec``'s endpoint, validated, in the order they arrive.

        Items whose bytes hash to their entry in ``known`` are not validated (``Page.unchanged``).
        """
        listing = self._listing(spec, known)
        self._open_listings.add(listing)
        return listing

    async def _listing(
        self, spec: EndpointSpec[_ItemT], known: KnownDigests | None
    ) -> AsyncGenerator[Page[_ItemT], None]:
        """Pages 1..N of ``spec``'s endpoint as they arrive, N the page count page 1 announced."""
        first = await self._fetch_page(spec, known, 1)
        planned_pages = max(1, first.pages)
        yield first

        pending: dict[asyncio.Task[Page[_ItemT]], int] = {}
        next_no = 2

        def fill() -> None:
            nonlocal next_no
            while next_no <= planned_pages and len(pending) < self.concurrency:
                task = asyncio.create_task(
                    self._fetch_page(spec, known, next_no),
                    name=f"phala-sync GET {spec.name} page {next_no}",
                )
                pending[task] = next_no
                next_no += 1

        try:
            fill()
            while pending:
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.exception() is not None:
                        task.result()  # raises it; the finally clause cancels the others
                for task in sorted(done, key=pending.__getitem__):
                    del pending[task]
                    yield task.result()
                    fill()
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    # Fetching one page, in layers (as httpx sends a request):
    # - _fetch_page: the retry loop, counting attempts and invalid bodies;
    # - _attempt: one request, whose outcome is a page, a _Retriable failure, or a raised error;
    # - _error_answer (a non-2xx answer) and _parse_body (a 2xx body, the key redacted from what
    #   parsing reports): one outcome each;
    # - _wait_or_give_up: the retry decision after a _Retriable failure, and its log line.

    async def _fetch_page(
        self, spec: EndpointSpec[_ItemT], known: KnownDigests | None, page_no: int
    ) -> Page[_ItemT]:
        """One page, retried per the policy; raises the last error when it gives up."""
        params = {"page": page_no, "page_size": self.page_size}
        url = safe_url(self._http.build_request("GET", spec.path, params=params).url)
        start = self._clock()
        attempts = 0
        body_failures = 0
        while True:
            attempts += 1
            outcome = await self._attempt(spec, known, params, url, page_no)
            if not isinstance(outcome, _Retriable):
                return outcome
            if outcome.invalid_body:
                body_failures += 1
                if body_failures > self.retry.body_retries:
                    raise outcome.error from None
            await self._wait_or_give_up(url, outcome, attempts, start)

    async def _attempt(
        self,
        spec: EndpointSpec[_ItemT],
        known: KnownDigests | None,
        params: dict[str, int],
        url: str,
        page_no: int,
    ) -> Page[_ItemT] | _Retriable:
        """One request: the page, or a failure worth another attempt; raises any other failure."""
        attempt_start = self._clock()
        try:
            response = await self._http.get(spec.path, params=params)
        except _TRANSIENT_TRANSPORT_ERRORS as exc:
            reason = self._describe_exception(exc)
            error = ApiTransportError(reason, url=url, version=self.version)
            return _Retriable(error, reason, cause=exc)
        except httpx.TransportError as exc:
            reason = self._describe_exception(exc)
            raise ApiTransportError(reason, url=url, version=self.version) from exc
        if not response.is_success:
            return self._error_answer(response, url)
        page = self._parse_body(spec, known, page_no, response.content, url)
        if isinstance(page, _Retriable):
            return page
        logger.debug(
            "GET %s: %d items, %d quarantined, %d of %d pages, %.3fs",
            url,
            len(page.items),
            len(page.rejections),
            page.number,
            page.pages,
            self._clock() - attempt_start,
        )
        return page

    def _error_answer(self, response: httpx.Response, url: str) -> _Retriable:
        """A non-2xx answer as a retriable failure; raises its error if the status is final."""
        error = error_from_response(
            response, url=url, version=self.version, now=self._now(), secrets=self._secrets
        )
        if response.status_code not in self.retry.retry_statuses:
            raise error
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now=self._now())
        return _Retriable(error, f"HTTP {response.status_code}", retry_after=retry_after)

    def _parse_body(
        self,
        spec: EndpointSpec[_ItemT],
        known: KnownDigests | None,
        page_no: int,
        body: bytes,
        url: str,
    ) -> Page[_ItemT] | _Retriable:
        """The page in a 2xx ``body``, or an invalid body to fetch again; the key redacted.

        Raises :class:`~sync.errors.InvalidItemError` (``strict`` policy): not worth retrying.
        """
        parse_start = time.perf_counter()
        try:
            page = parse_page(
                spec,
                self._api_version,
                page_no,
                body,
                policy=self.validation_policy,
                url=url,
                known=known,
            )
        except InvalidEnvelopeError as exc:
            # The message quotes the body, which a server may have echoed the key in.
            clean = InvalidEnvelopeError(self._redact(str(exc)))
            return _Retriable(clean, "invalid body (not JSON or bad envelope)", invalid_body=True)
        except InvalidItemError as exc:
            raise InvalidItemError(self._redact(str(exc))) from None
        self.parse_seconds += time.perf_counter() - parse_start
        if page.rejections:
            page.rejections[:] = [replace(q, error=self._redact(q.error)) for q in page.rejections]
        return page

    async def _wait_or_give_up(
        self, url: str, failure: _Retriable, attempts: int, start: float
    ) -> None:
        """Sleep before the next attempt, or raise the failure's error when the policy gives up.

        ``attempts`` counts the attempts made so far (all failed); ``start`` is when the first one
        started, on the client's clock.
        """
        policy = self.retry
        elapsed = self._clock() - start
        delay = policy.next_delay(
            attempts, elapsed=elapsed, retry_after=failure.retry_after, jitter=self._jitter()
        )
        if delay is None:
            note = f"gave up after {attempts} attempt(s) in {elapsed:.1f}s"
            if failure.retry_after is not None and attempts < policy.max_attempts:
                note += f" (the server asked to wait {failure.retry_after:.1f}s, beyond the budget)"
            logger.warning("GET %s: %s; %s", url, failure.reason, note)
            failure.error.add_note(note)
            raise failure.error from failure.cause
        logger.warning(
            "GET %s: %s (attempt %d of %d); retrying in %.2fs",
            url,
            failure.reason,
            attempts,
            policy.max_attempts,
            delay,
        )
        await self._sleep(delay)

    def _redact(self, text: str) -> str:
        return redact_secrets(text, self._secrets)

    def _describe_exception(self, exc: Exception) -> str:
        detail = str(exc).strip()
        message = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        return self._redact(message)
