"""The errors phala-sync raises, named for what the caller does next.

::

    PhalaSyncError                      base of everything below
    ├── ConfigError                     fatal: fix the settings and run again
    │   ├── UnknownVersionError         the pinned X-Phala-Version is not one we know
    │   └── DatabaseUrlError            the database URL cannot be used
    ├── ApiError                        the API answered with an error status
    │   ├── RetriableApiError           429 and 502/503/504 (and other 5xx): retried, then raised
    │   │   └── RateLimitedError        429, carries the Retry-After delay
    │   └── FatalApiError               other 4xx: never retried
    │       ├── AuthError               401/403: the key is missing, wrong or lacks rights
    │       └── NotFoundError           404 (a resource outside the caller's workspace)
    ├── ApiTransportError               timeout, refused or dropped connection: retried, then raised
    ├── SchemaDriftError                a response does not match the pinned version's schema
    │   ├── InvalidEnvelopeError        not JSON, or the page envelope itself is wrong: always fatal
    │   ├── InvalidItemError            one item is invalid under the ``strict`` policy
    │   └── TooManyInvalidItemsError    ``quarantine`` policy, above the allowed invalid share
    └── StoreError                      the database side
        ├── UnstorableItemError         the database refused items beyond what the policy allows
        ├── RunLockedError              another run holds the database's or the target's lock
        └── IncompatibleSchemaError     the database is not migrated to this code's head

``retriable`` on a class says whether a retry of the same request may succeed. Messages say what
happened, where (URL, page, version, record) and what to do; they never contain the API key.
"""

from __future__ import annotations

from typing import ClassVar


class PhalaSyncError(Exception):
    """Base class of every error phala-sync raises on purpose."""

    retriable: ClassVar[bool] = False


class ConfigError(PhalaSyncError):
    """Bad configuration: nothing will work until it is fixed."""


class UnknownVersionError(ConfigError):
    """The requested API version is not one this release knows."""

    def __init__(self, version: str, known: list[str]) -> None:
        self.version = version
        self.known = known
        super().__init__(
            f"unknown API version {version!r}: known versions are {', '.join(known)}; "
            "pin one of them with --api-version or PHALA_SYNC_API_VERSION"
        )


class DatabaseUrlError(ConfigError):
    """The database URL cannot be parsed or names an unsupported backend."""


class ApiError(PhalaSyncError):
    """An HTTP error answer from the API, with everything known about where it happened."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        url: str,
        version: str,
        request_id: str | None = None,
        error_code: str | None = None,
    ) -> None:
        self.status = status
        self.url = url
        self.version = version
        self.request_id = request_id
        self.error_code = error_code
        where = f"HTTP {status} from GET {url} (X-Phala-Version {version}"
        if request_id:
            where += f", request id {request_id}"
        where += ")"
        code = f" [{error_code}]" if error_code else ""
        super().__init__(f"{where}{code}: {message}")


class RetriableApiError(ApiError):
    """A server-side or rate-limit error: the same request may succeed later."""

    retriable = True


class RateLimitedError(RetriableApiError):
    """HTTP 429; ``retry_after`` is the server's requested delay in seconds, if it sent one."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)  # type: ignore[arg-type]


class FatalApiError(ApiError):
    """A client-side error (4xx other than 429): retrying the same request cannot help."""


class AuthError(FatalApiError):
    """401/403: the API key is missing, wrong or not allowed to list this workspace."""


class NotFoundError(FatalApiError):
    """404: the resource does not exist or is outside the caller's workspace."""


class ApiTransportError(PhalaSyncError):
    """The request did not get an HTTP answer: timeout, connection refused or dropped."""

    retriable = True

    def __init__(self, message: str, *, url: str, version: str) -> None:
        self.url = url
        self.version = version
        super().__init__(f"GET {url} (X-Phala-Version {version}) failed: {message}")


class SchemaDriftError(PhalaSyncError):
    """A response does not match the schema of the pinned API version."""


class InvalidEnvelopeError(SchemaDriftError):
    """The page is not JSON or its envelope (items, total, page, ...) is invalid."""


class InvalidItemError(SchemaDriftError):
    """An item failed validation under the ``strict`` validation policy."""


class TooManyInvalidItemsError(SchemaDriftError):
    """More items were quarantined than the configured share allows."""


class StoreError(PhalaSyncError):
    """The database could not be read or written as needed."""


class UnstorableItemError(StoreError):
    """The database refused an item's values under the ``strict`` policy (or too many of them)."""


class RunLockedError(StoreError):
    """Another sync run holds this database's run lock."""


class IncompatibleSchemaError(StoreError):
    """The database schema is not at this release's migration head."""
