"""Progress of a run's fetch stage: who listens, and how it is shown.

The fetch stage reports each staged page through an :data:`~sync.run.OnPage` callback. Two ways to
show it, both fed by the same callback:

- :class:`ThrottledLog` turns pages into plain log lines (at most one every few seconds, plus the
  last page of each listing): what a scheduled run, a container or a pipe gets;
- :class:`TerminalProgress` redraws one status line on a terminal.

The flow logs pages itself and also calls whatever :func:`listening` installed, so a caller in the
same process (the CLI) can show a terminal line without passing a callable as a flow parameter.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, TextIO

from sync.endpoints import get_endpoint

if TYPE_CHECKING:
    from sync.listing import OnPage

__all__ = ["TerminalProgress", "ThrottledLog", "describe", "listening", "notify"]

_listener: ContextVar[OnPage | None] = ContextVar("phala_sync_page_listener", default=None)


def describe(endpoint: str, pages: int, planned: int, items: int) -> str:
    """One line about a listing's progress, e.g. ``cvms: page 3 of 10, 300 CVMs``."""
    try:
        noun = get_endpoint(endpoint).noun
    except KeyError:
        noun = "items"
    return f"{endpoint}: page {pages} of {max(planned, pages)}, {items} {noun}"


@contextlib.contextmanager
def listening(callback: OnPage) -> Iterator[None]:
    """Within the block, :func:`notify` (and so a flow run in this context) calls ``callback``."""
    token = _listener.set(callback)
    try:
        yield
    finally:
        _listener.reset(token)


def notify(endpoint: str, pages: int, planned: int, items: int) -> None:
    """Pass one page's progress to the listener installed by :func:`listening`, if any."""
    callback = _listener.get()
    if callback is not None:
        callback(endpoint, pages, planned, items)


class ThrottledLog:
    """An :data:`~sync.run.OnPage` that writes at most one line every ``every`` seconds.

    The first page and the last planned page of each listing are always written, so a log shows
    where every listing started and ended even when it is fast.
    """

    def __init__(
        self,
        write: Callable[[str], None],
        *,
        every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self._every = every
        self._clock = clock
        self._last: float | None = None

    def __call__(self, endpoint: str, pages: int, planned: int, items: int) -> None:
        now = self._clock()
        due = self._last is None or now - self._last >= self._every
        if pages == 1 or pages >= planned or due:
            self._write(describe(endpoint, pages, planned, items))
            self._last = now


class TerminalProgress:
    """An :data:`~sync.run.OnPage` that redraws one line on a terminal (at most ``fps`` a second).

    Use as a context manager: leaving it ends the line so later output starts on a fresh one.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        fps: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._interval = 1.0 / fps
        self._clock = clock
        self._last: float | None = None
        self._shown = False
        self._done: list[str] = []

    def __call__(self, endpoint: str, pages: int, planned: int, items: int) -> None:
        now = self._clock()
        finished = pages >= planned
        if not finished and self._last is not None and now - self._last < self._interval:
            return
        self._last = now
        line = describe(endpoint, pages, planned, items)
        if finished and not any(d.startswith(f"{endpoint}:") for d in self._done):
            self._done.append(line)
        shown = "  ".join([d for d in self._done if not d.startswith(f"{endpoint}:")] + [line])
        self._stream.write(f"\r\x1b[K{shown}")
        self._stream.flush()
        self._shown = True

    def __enter__(self) -> TerminalProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._shown:
            self._stream.write("\n")
            self._stream.flush()
            self._shown = False
