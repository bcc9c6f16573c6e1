"""The async Phala Cloud API client: pages the two list endpoints, with retries.

::

    async with PhalaClient.from_settings(settings) as client:
        async for page in client.cvm_pages():      # pages arrive in any order
            ...
        listing = client.last_listing("cvms")       # what the listing saw: judge completeness

A listing fetches page 1, learns the page count from it, then fetches pages 2..N with at most
``concurrency`` requests in flight. Requests in flight plus fetched pages not yet handed to the
caller never exceed ``concurrency``, so memory does not grow with the fleet. If a request fails for
good the iterator raises that error after cancelling (and awaiting) the other requests; leaving the
``async for`` early, or closing the client, does the same cleanup.

Every request carries ``X-API-Key``, the pinned ``X-Phala-Version``, ``Accept: application/json``
and ``User-Agent: phala-sync/<release>``. The key is sent by an :class:`httpx.Auth` (so it is not
part of the client's default headers), never logged, and redacted from every error message and,
while a client is open, from the records of httpx's and httpcore's own loggers.

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
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Protocol, Self, TypeVar

import httpx
from pydantic import SecretStr

from sync.api.pages import ENDPOINT_PATHS, Endpoint, Known, Page, parse_app_page, parse_cvm_page
from sync.api.responses import error_from_response, redact, safe_url
from sync.api.retry import RetryPolicy, parse_retry_after
from sync.errors import (
    ApiTransportError,
    ConfigError,
    InvalidEnvelopeError,
    InvalidItemError,
    PhalaSyncError,
)
from sync.records import AppBundle, CvmBundle
from sync.settings import Settings, ValidationPolicy
from sync.versions import ApiVersion, get_version

logger = logging.getLogger(__name__)

MAX_PAGE_SIZE = 100
#: Loggers of httpx and httpcore that get a redacting filter while a client is open. httpx logs
#: URLs and httpcore (at DEBUG) response headers, never request headers; the filter is a backstop
#: against a server that echoes the key back.
_HTTP_LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)
#: Failures without an HTTP answer that a new attempt may not meet again. Any other
#: ``httpx.TransportError`` (``UnsupportedProtocol``, ``LocalProtocolError``) is our side's fault.
_TRANSIENT_TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
    httpx.DecodingError,  # a compressed body cut short
)

_ItemT = TypeVar("_ItemT", CvmBundle, AppBundle)


class _PageParser(Protocol[_ItemT]):
    def __call__(
        self,
        version: ApiVersion,
        page_no: int,
        body: bytes,
        *,
        policy: ValidationPolicy,
        url: str,
    ) -> Page[_ItemT]: ...


@dataclass(frozen=True, slots=True)
class ListingStats:
    """What one listing of one endpoint saw, for judging whether it is complete.

    ``planned_pages`` is the page count page 1 announced (at least 1: page 1 is always fetched) and
    the pages fetched are exactly pages 1..``planned_pages``, even when later pages announce another
    count. ``fleet_changed`` says some page announced another ``total`` or page count than page 1:
    items created or deleted during the listing may have shifted across pages.
    """

    endpoint: Endpoint
    version: str
    page_size: int
    planned_pages: int
    first_total: int
    min_total: int
    max_total: int
    pages_fetched: int = 0
    items: int = 0
    quarantined: int = 0
    fleet_changed: bool = False
    finished: bool = False

    @property
    def complete(self) -> bool:
        """Every planned page came back, all agreed with page 1, and the item count adds up."""
        return (
            self.finished
            and not self.fleet_changed
            and self.items + self.quarantined == self.first_total
        )


class _RedactingFilter(logging.Filter):
    """Rewrites a log record whose message contains a secret."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(secret in message for secret in self._secrets):
            record.msg = redact(message, self._secrets)
            record.args = None
        return True


class _ApiKeyAuth(httpx.Auth):
    def __init__(self, key: str) -> None:
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["X-API-Key"] = self._key
        yield request

    def __repr__(self) -> str:
        return "_ApiKeyAuth(key=[redacted])"


@functools.cache
def user_agent() -> str:
    """``phala-sync/<installed release>``."""
    try:
        release = importlib.metadata.version("phala-sync")
    except importlib.metadata.PackageNotFoundError:
        release = "0+unknown"
    return f"phala-sync/{release}"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _key_text(api_key: SecretStr | str | None) -> str:
    key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
    key = (key or "").strip()
    if not key:
        raise ConfigError(
            "no Phala Cloud API key: set PHALA_CLOUD_API_KEY (a phak_... key from the "
            "Phala Cloud dashboard), in the environment or a .env file"
        )
    return key


def _base_url(base_url: str) -> str:
    url = httpx.URL(base_url.strip().rstrip("/"))
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(
            f"invalid API base URL {safe_url(url)!r}: set PHALA_CLOUD_API_PREFIX to an http(s) "
            "URL up to and including /api/v1, e.g. https://cloud-api.phala.com/api/v1"
        )
    return str(url)


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
        """Check the configuration; nothing is sent until a listing starts.

        ``sleep`` (retry waits), ``clock`` (monotonic seconds, for the retry budget), ``now``
        (wall clock, for HTTP-date ``Retry-After``) and ``jitter`` (uniform in [0, 1)) are
        injectable for tests.

        Raises :class:`~sync.errors.UnknownVersionError` for an unknown ``version`` and
        :class:`~sync.errors.ConfigError` for a missing key or another bad setting.
        """
        self._api_version = get_version(version)
        self.version = version
        key = _key_text(api_key)
        self.base_url = _base_url(base_url)
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ConfigError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, got {page_size}")
        if concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, got {concurrency}")
        if not timeout > 0:
            raise ConfigError(f"timeout must be a positive number of seconds, got {timeout}")
        if validation_policy not in ("strict", "quarantine"):
            raise ConfigError(
                f"validation_policy must be 'strict' or 'quarantine', got {validation_policy!r}"
            )
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
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            auth=_ApiKeyAuth(key),
            headers={
                "X-Phala-Version": version,
                "Accept": "application/json",
                "User-Agent": user_agent(),
            },
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            follow_redirects=False,
            transport=transport,
        )
        self._listings: dict[Endpoint, ListingStats | None] = {}
        self._open_listings: weakref.WeakSet[AsyncGenerator[object, None]] = weakref.WeakSet()
        self._log_filter = _RedactingFilter(self._secrets)
        for name in (*_HTTP_LOGGERS, __name__):
            logging.getLogger(name).addFilter(self._log_filter)

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
            for name in (*_HTTP_LOGGERS, __name__):
                logging.getLogger(name).removeFilter(self._log_filter)

    def last_listing(self, endpoint: Endpoint) -> ListingStats | None:
        """What the latest listing of ``endpoint`` saw; ``None`` before its page 1 arrived."""
        return self._listings.get(endpoint)

    def cvm_pages(self, known: Known | None = None) -> AsyncGenerator[Page[CvmBundle], None]:
        """All pages of ``GET /cvms/paginated``, validated, in the order they arrive.

        Items whose bytes hash to their entry in ``known`` are not validated (``Page.unchanged``).
        """
        listing = self._listing("cvms", functools.partial(parse_cvm_page, known=known))
        self._open_listings.add(listing)
        return listing

    def app_pages(self, known: Known | None = None) -> AsyncGenerator[Page[AppBundle], None]:
        """All pages of ``GET /apps``, as :meth:`cvm_pages`."""
        listing = self._listing("apps", functools.partial(parse_app_page, known=known))
        self._open_listings.add(listing)
        return listing

    async def _listing(
        self, endpoint: Endpoint, parse: _PageParser[_ItemT]
    ) -> AsyncGenerator[Page[_ItemT], None]:
        self._listings[endpoint] = None
        first = await self._fetch_page(endpoint, 1, parse)
        stats = ListingStats(
            endpoint=endpoint,
            version=self.version,
            page_size=self.page_size,
            planned_pages=max(1, first.pages),
            first_total=first.total,
            min_total=first.total,
            max_total=first.total,
        )
        self._listings[endpoint] = stats = self._count(stats, first, first)
        yield first

        pending: dict[asyncio.Task[Page[_ItemT]], int] = {}
        next_no = 2

        def fill() -> None:
            nonlocal next_no
            while next_no <= stats.planned_pages and len(pending) < self.concurrency:
                task = asyncio.create_task(
                    self._fetch_page(endpoint, next_no, parse),
                    name=f"phala-sync GET {endpoint} page {next_no}",
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
                    page = task.result()
                    self._listings[endpoint] = stats = self._count(stats, first, page)
                    yield page
                    fill()
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        self._listings[endpoint] = replace(stats, finished=True)
        logger.debug(
            "%s listing finished: %d pages, %d items, %d quarantined, total %d..%d%s",
            endpoint,
            stats.pages_fetched,
            stats.items,
            stats.quarantined,
            stats.min_total,
            stats.max_total,
            " (the fleet changed during the listing)" if stats.fleet_changed else "",
        )

    @staticmethod
    def _count(stats: ListingStats, first: Page[_ItemT], page: Page[_ItemT]) -> ListingStats:
        changed = page.total != first.total or page.pages != first.pages
        if changed and not stats.fleet_changed:
            logger.warning(
                "%s page %d announces %d items in %d pages, page 1 announced %d in %d: the fleet "
                "changed during the listing; fetching the %d planned pages",
                page.endpoint,
                page.number,
                page.total,
                page.pages,
                first.total,
                first.pages,
                stats.planned_pages,
            )
        return replace(
            stats,
            min_total=min(stats.min_total, page.total),
            max_total=max(stats.max_total, page.total),
            pages_fetched=stats.pages_fetched + 1,
            items=stats.items + len(page.items),
            quarantined=stats.quarantined + len(page.quarantined),
            fleet_changed=stats.fleet_changed or changed,
        )

    async def _fetch_page(
        self, endpoint: Endpoint, page_no: int, parse: _PageParser[_ItemT]
    ) -> Page[_ItemT]:
        """One page, retried per the policy; raises the last error when it gives up."""
        path = ENDPOINT_PATHS[endpoint]
        params = {"page": page_no, "page_size": self.page_size}
        url = safe_url(self._http.build_request("GET", path, params=params).url)
        policy = self.retry
        start = self._clock()
        attempts = 0
        body_failures = 0
        while True:
            attempts += 1
            attempt_start = self._clock()
            retry_after: float | None = None
            cause: BaseException | None = None
            error: PhalaSyncError
            try:
                response = await self._http.get(path, params=params)
            except _TRANSIENT_TRANSPORT_ERRORS as exc:
                reason = self._describe_exception(exc)
                error = ApiTransportError(reason, url=url, version=self.version)
                cause = exc
            except httpx.TransportError as exc:
                reason = self._describe_exception(exc)
                raise ApiTransportError(reason, url=url, version=self.version) from exc
            else:
                if response.is_success:
                    parse_start = time.perf_counter()
                    try:
                        page = parse(
                            self._api_version,
                            page_no,
                            response.content,
                            policy=self.validation_policy,
                            url=url,
                        )
                    except InvalidEnvelopeError as exc:
                        # The message quotes the body, which a server may have echoed the key in.
                        clean = InvalidEnvelopeError(redact(str(exc), self._secrets))
                        body_failures += 1
                        if body_failures > policy.body_retries:
                            raise clean from None
                        error, reason = clean, "invalid body (not JSON or bad envelope)"
                    except InvalidItemError as exc:
                        raise InvalidItemError(redact(str(exc), self._secrets)) from None
                    else:
                        self.parse_seconds += time.perf_counter() - parse_start
                        if page.quarantined:
                            page.quarantined[:] = [
                                replace(q, error=redact(q.error, self._secrets))
                                for q in page.quarantined
                            ]
                        logger.debug(
                            "GET %s: %d items, %d quarantined, %d of %d pages, %.3fs",
                            url,
                            len(page.items),
                            len(page.quarantined),
                            page.number,
                            page.pages,
                            self._clock() - attempt_start,
                        )
                        return page
                else:
                    error = error_from_response(
                        response,
                        url=url,
                        version=self.version,
                        now=self._now(),
                        secrets=self._secrets,
                    )
                    if response.status_code not in policy.retry_statuses:
                        raise error
                    reason = f"HTTP {response.status_code}"
                    retry_after = parse_retry_after(
                        response.headers.get("Retry-After"), now=self._now()
                    )
            elapsed = self._clock() - start
            delay = policy.next_delay(
                attempts, elapsed=elapsed, retry_after=retry_after, jitter=self._jitter()
            )
            if delay is None:
                note = f"gave up after {attempts} attempt(s) in {elapsed:.1f}s"
                if retry_after is not None and attempts < policy.max_attempts:
                    note += f" (the server asked to wait {retry_after:.1f}s, beyond the budget)"
                logger.warning("GET %s: %s; %s", url, reason, note)
                error.add_note(note)
                raise error from cause
            logger.warning(
                "GET %s: %s (attempt %d of %d); retrying in %.2fs",
                url,
                reason,
                attempts,
                policy.max_attempts,
                delay,
            )
            await self._sleep(delay)

    def _describe_exception(self, exc: Exception) -> str:
        detail = str(exc).strip()
        message = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        return redact(message, self._secrets)
