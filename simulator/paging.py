"""Offset paging as the server does it: the query, its validation, the slice and the page count.

A :class:`PageRequest` is the ``page`` / ``page_size`` of one list request. Its query parameters
are validated the way FastAPI (pydantic v2) does, errors and all, and it cuts its items out of a
list kept in creation order, newest first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, TypeVar

from simulator.model import JsonDict

T = TypeVar("T")

#: The ``page_size`` each endpoint uses when the query leaves it out.
PAGE_SIZE_DEFAULTS: Final = {"cvms": 30, "apps": 20}
MAX_PAGE_SIZE: Final = 100
_INT = re.compile(r"[+-]?\d+")


class PagingError(ValueError):
    """A bad ``page`` or ``page_size``; ``errors`` are FastAPI's 422 ``detail`` entries."""

    def __init__(self, errors: list[JsonDict]) -> None:
        super().__init__(f"invalid paging: {errors}")
        self.errors = errors


def page_count(total: int, page_size: int) -> int:
    """How many pages of ``page_size`` hold ``total`` items."""
    return -(-total // page_size)


@dataclass(frozen=True, slots=True)
class PageRequest:
    """One page of a listing: its number (from 1) and size."""

    page: int
    page_size: int

    @classmethod
    def from_query(cls, params: Mapping[str, str], endpoint: str) -> PageRequest:
        """The page a request's query asks for (:class:`PagingError` for a bad one)."""
        page, page_error = _query_int(params, "page", 1, None)
        size, size_error = _query_int(
            params, "page_size", PAGE_SIZE_DEFAULTS[endpoint], MAX_PAGE_SIZE
        )
        errors = [e for e in (page_error, size_error) if e is not None]
        if errors:
            raise PagingError(errors)
        return cls(page, size)

    @property
    def end(self) -> int:
        """How many items this page and the pages before it hold (where the next page starts)."""
        return self.page * self.page_size

    def slice(self, items: list[T]) -> list[T]:
        """This page of ``items``, newest first; ``items`` are in creation order."""
        end = len(items) - (self.page - 1) * self.page_size
        if end <= 0:
            return []
        return items[max(0, end - self.page_size) : end][::-1]


def _query_int(
    params: Mapping[str, str], name: str, default: int, maximum: int | None
) -> tuple[int, JsonDict | None]:
    """One integer query parameter and its FastAPI validation error (None when valid)."""
    raw = params.get(name)
    if raw is None:
        return default, None
    loc = ["query", name]
    if not _INT.fullmatch(raw.strip()):
        return default, {
            "type": "int_parsing",
            "loc": loc,
            "msg": "Input should be a valid integer, unable to parse string as an integer",
            "input": raw,
        }
    value = int(raw)
    if value < 1:
        return default, {
            "type": "greater_than_equal",
            "loc": loc,
            "msg": "Input should be greater than or equal to 1",
            "input": raw,
            "ctx": {"ge": 1},
        }
    if maximum is not None and value > maximum:
        return default, {
            "type": "less_than_equal",
            "loc": loc,
            "msg": f"Input should be less than or equal to {maximum}",
            "input": raw,
            "ctx": {"le": maximum},
        }
    return value, None
