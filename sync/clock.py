"""The run's clock: what a sync records as "now" (ledger times, history validity, events).

It is the wall clock in UTC. Tests, the demo and benchmarks that need runs spread over days set
another clock for the whole process with :func:`use_clock`; nothing else in ``sync`` reads
``datetime.now`` for a value it stores. (The API client keeps the wall clock: it only measures
``Retry-After`` waits.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]


def wall_clock() -> datetime:
    return datetime.now(UTC)


_clock: Clock = wall_clock


def now() -> datetime:
    """The current time of the run's clock (timezone-aware, UTC)."""
    value = _clock()
    if value.tzinfo is None:
        raise ValueError("the run's clock must return timezone-aware datetimes")
    return value


@contextlib.contextmanager
def use_clock(clock: Clock) -> Iterator[None]:
    """Make ``clock`` the run's clock for this process until the block ends.

    Process-wide on purpose: a flow run in this process reads it from whichever thread Prefect
    runs its tasks on.
    """
    global _clock
    previous, _clock = _clock, clock
    try:
        yield
    finally:
        _clock = previous


class SteppingClock:
    """A clock that starts at ``start`` and advances by ``step`` each time it is read.

    Runs recorded with it are ordered and apart: a run's timestamps come from a handful of reads.
    """

    def __init__(self, start: datetime, step: float = 1.0) -> None:
        if start.tzinfo is None:
            raise ValueError("SteppingClock needs a timezone-aware start")
        self._at = start
        self._step = timedelta(seconds=step)

    def __call__(self) -> datetime:
        value = self._at
        self._at += self._step
        return value

    def jump(self, to: datetime) -> None:
        """Continue from ``to`` (which must not be earlier than the clock's time)."""
        if to < self._at:
            raise ValueError(f"the clock cannot go back from {self._at} to {to}")
        self._at = to
