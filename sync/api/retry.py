"""When and how long to wait before trying a request again.

:class:`RetryPolicy` is plain configuration plus pure arithmetic; the client owns the loop. The
rules, in the order they apply after a failed attempt:

1. Only retriable failures are retried: HTTP 429, 500, 502, 503, 504, timeouts and transport
   errors (refused, reset or dropped connections), and a 2xx body that is not JSON or whose page
   envelope is invalid (usually a body cut short), at most ``body_retries`` times.
2. At most ``max_attempts`` attempts in all (the first one included).
3. The wait is the server's ``Retry-After`` when it sent one (seconds or an HTTP date), else
   capped exponential backoff with full jitter: uniform in ``[0, min(max_delay, base * 2**(n-1)))``
   after the n-th failed attempt.
4. Everything, attempts and waits, stays within ``budget_seconds`` counted from the first attempt:
   a backoff wait is shortened to what is left of the budget; a ``Retry-After`` wait is never
   shortened (asking again sooner than the server said is pointless), so when it does not fit in
   what is left, the request gives up at once and the caller gets the 429/503 error, which carries
   ``retry_after``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

#: HTTP statuses for which the same request may succeed later.
RETRY_STATUSES: frozenset[int] = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard one request tries. The defaults give up within about a minute."""

    max_attempts: int = 6
    budget_seconds: float = 60.0
    base: float = 0.5
    max_delay: float = 15.0
    #: Extra attempts allowed for a 2xx body that is not JSON or has an invalid page envelope.
    body_retries: int = 2
    retry_statuses: frozenset[int] = RETRY_STATUSES

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.body_retries < 0:
            raise ValueError(f"body_retries must not be negative, got {self.body_retries}")
        for name in ("budget_seconds", "base", "max_delay"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")

    def backoff_cap(self, failed_attempts: int) -> float:
        """The upper bound of the jittered wait after ``failed_attempts`` failures (1-based)."""
        exponent = min(failed_attempts - 1, 62)  # 2**62 * base is beyond any max_delay
        return min(self.max_delay, self.base * 2.0**exponent)

    def next_delay(
        self,
        failed_attempts: int,
        *,
        elapsed: float,
        retry_after: float | None,
        jitter: float,
    ) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to give up now.

        ``failed_attempts`` counts the attempts made so far (all failed), ``elapsed`` is the time
        since the first attempt started, ``retry_after`` the server's requested wait if any, and
        ``jitter`` a uniform random number in ``[0, 1)``.
        """
        if failed_attempts >= self.max_attempts:
            return None
        remaining = self.budget_seconds - elapsed
        if remaining <= 0:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= remaining else None
        return min(jitter * self.backoff_cap(failed_attempts), remaining)


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """The wait a ``Retry-After`` header asks for, in seconds (never negative), or ``None``.

    Accepts delay-seconds (``"120"``; a decimal such as ``"1.5"`` is tolerated) and an HTTP date
    (``"Wed, 21 Oct 2015 07:28:00 GMT"``), measured from ``now``. Anything else is ignored.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT; "-0000" parses as naive
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
