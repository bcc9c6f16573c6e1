"""Validated pages: the unit the client yields and the store stages.

``parse_cvm_page`` / ``parse_app_page`` turn the raw bytes of one response into a :class:`Page` of
canonical bundles under a validation policy:

- the envelope (``items``/``dstack_apps``, ``total``, ``page``, ``page_size``, ``pages``/
  ``total_pages``) must be valid, else :class:`~sync.errors.InvalidEnvelopeError`, whatever the policy;
- ``strict``: the first invalid item raises :class:`~sync.errors.InvalidItemError` naming the
  version, endpoint, page, item index and field path;
- ``quarantine``: an invalid item becomes a :class:`QuarantinedItem` (raw JSON + error) and the
  rest of the page proceeds. The run-level share check lives with the run, not here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from sync.records import AppBundle, CvmBundle

Endpoint = Literal["cvms", "apps"]
ENDPOINT_PATHS: dict[Endpoint, str] = {"cvms": "/cvms/paginated", "apps": "/apps"}

ItemT = TypeVar("ItemT", CvmBundle, AppBundle)


@dataclass(frozen=True, slots=True)
class QuarantinedItem:
    """An item that failed validation, kept with its raw JSON and the reason."""

    endpoint: Endpoint
    page: int
    index: int
    entity_id: str | None  # normalized VM UUID or app_id when the raw item still shows it
    raw: bytes
    error: str


@dataclass(frozen=True, slots=True)
class Page(Generic[ItemT]):
    """One validated page of one endpoint."""

    endpoint: Endpoint
    version: str
    number: int
    page_size: int
    total: int
    pages: int
    items: list[ItemT] = field(default_factory=list)
    quarantined: list[QuarantinedItem] = field(default_factory=list)
