"""The listed endpoints, each declared once: ``GET /cvms/paginated`` and ``GET /apps``.

An :class:`EndpointSpec` says everything the code needs about one list endpoint: its name and
path, the entity type it lists, how a version reads its pages (envelope, items, normalizer, the
key of a raw item), the rows an item stages, and the ledger columns of its listing. The code that
handles endpoints reads the registry, never a name:

- :class:`~sync.api.client.PhalaClient` (``pages(spec)``) requests ``path`` and parses each page
  with :func:`sync.api.pages.parse_page`, which reads ``models(version)``, ``label`` and ``name``;
- :func:`sync.listing.read_listing` keys what a pass showed by ``entity_type``;
- :meth:`sync.store.staging.Stager.stage` writes ``listed``, ``extra`` and ``references``;
- :mod:`sync.store.apply` names the endpoint of a refused item (:func:`source_endpoint`),
  :mod:`sync.store.membership` reads ``complete_column``, and :mod:`sync.run` reads every listing
  in registry order and fills the ledger columns.

Adding a listed endpoint is one declaration here plus its models in each version module (and, for
a new entity type, its record, tables and :class:`~sync.store.specs.EntitySpec`).
``tests/sync/test_endpoints.py`` declares a throwaway endpoint and syncs it end to end.

This module holds declarations only: it imports the records and the versions, nothing of
:mod:`sync.api` or :mod:`sync.store`, so both sides read it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, Protocol, TypeVar

from pydantic import TypeAdapter

from sync.records import (
    APP_MEMBERS,
    REFERENCE_TYPES,
    AppBundle,
    CvmBundle,
    EntityType,
    Record,
)
from sync.versions import ApiVersion
from sync.versions.common import AppPageEnvelope, CvmPageEnvelope

__all__ = [
    "APPS",
    "CVMS",
    "EndpointSpec",
    "ListModels",
    "get_endpoint",
    "listed_endpoints",
    "listing_of",
    "source_endpoint",
]

BundleT = TypeVar("BundleT")


class PageEnvelope(Protocol):
    """What every list envelope carries besides its items and page count."""

    @property
    def total(self) -> int: ...
    @property
    def page_size(self) -> int: ...


EnvelopeT = TypeVar("EnvelopeT", bound=PageEnvelope)


@dataclass(frozen=True, slots=True)
class ListModels(Generic[EnvelopeT, BundleT]):
    """How one API version reads the pages of one endpoint.

    ``envelope`` validates a decoded page with its items left as they are; ``contents`` gives a
    valid envelope's raw items and page count; ``item`` validates one item and ``normalize`` maps
    it and its raw bytes to a bundle of canonical records; ``entity_id`` reads the key from a raw
    item that may have failed validation, or returns None.
    """

    envelope: TypeAdapter[EnvelopeT]
    contents: Callable[[EnvelopeT], tuple[list[Any], int]]
    item: TypeAdapter[Any]
    normalize: Callable[[Any, bytes], BundleT]
    entity_id: Callable[[object], str | None]


def _no_references(bundle: object) -> tuple[Record | None, ...]:
    return ()


def _no_extra(bundle: object) -> dict[str, Any] | None:
    return None


@dataclass(frozen=True, slots=True)
class EndpointSpec(Generic[BundleT]):
    """One listed endpoint; ``BundleT`` is what one of its items normalizes into."""

    #: Names the endpoint wherever it is recorded or logged: ``Page.endpoint``,
    #: ``Rejection.endpoint`` (``quarantined_items.endpoint``), ``ListingResult.endpoint``.
    name: str
    #: The request path under the API base URL.
    path: str
    #: The entity type it lists: its memberships, the deletions its complete listing infers.
    entity_type: EntityType
    #: One item in messages (``CVM <key>``), and in the run summary (``CVM listing complete``).
    label: str
    #: Its items in progress lines and the run summary (``300 CVMs``).
    noun: str
    #: How a version reads its pages.
    models: Callable[[ApiVersion], ListModels[Any, BundleT]]
    #: The listed record of an item, staged by ``listed_row`` (its ``key`` is the item's key).
    listed: Callable[[BundleT], Record]
    #: The ``sync_runs`` column that says a run's listing of it was complete.
    complete_column: str
    #: The ``sync_runs`` column that keeps the total its pages announced, if any.
    total_column: str | None = None
    #: Pseudo-fields staged with the listed record (an app's member CVMs), or None.
    extra: Callable[[BundleT], dict[str, Any] | None] = _no_extra
    #: The records an item refers to, staged by ``reference_row`` once per run (None: absent).
    references: Callable[[BundleT], tuple[Record | None, ...]] = _no_references
    #: The entity types of ``references``: a refused one names this endpoint.
    reference_types: tuple[EntityType, ...] = ()


def _cvm_models(version: ApiVersion) -> ListModels[CvmPageEnvelope, CvmBundle]:
    return ListModels(
        version.cvm_envelope,
        lambda envelope: (envelope.items, envelope.pages),
        version.cvm_item,
        version.normalize_cvm,
        version.cvm_entity_id,
    )


def _app_models(version: ApiVersion) -> ListModels[AppPageEnvelope, AppBundle]:
    return ListModels(
        version.app_envelope,
        lambda envelope: (envelope.dstack_apps, envelope.total_pages),
        version.app_item,
        version.normalize_app,
        version.app_entity_id,
    )


def _app_members(bundle: AppBundle) -> dict[str, Any] | None:
    """An app's member CVMs travel as a pseudo-field (a minimal app does not show them)."""
    members = bundle.member_vm_uuids
    return {APP_MEMBERS: list(members)} if isinstance(members, tuple) else None


CVMS: Final[EndpointSpec[CvmBundle]] = EndpointSpec(
    name="cvms",
    path="/cvms/paginated",
    entity_type="cvm",
    label="CVM",
    noun="CVMs",
    models=_cvm_models,
    listed=lambda bundle: bundle.cvm,
    complete_column="listing_complete",
    total_column="api_total",
    references=lambda bundle: (bundle.node, bundle.workspace, bundle.creator),
    reference_types=REFERENCE_TYPES,
)

APPS: Final[EndpointSpec[AppBundle]] = EndpointSpec(
    name="apps",
    path="/apps",
    entity_type="app",
    label="app",
    noun="apps",
    models=_app_models,
    listed=lambda bundle: bundle.app,
    complete_column="apps_listing_complete",
    extra=_app_members,
)

#: Every listed endpoint by name, in the order a run reads them.
_REGISTRY: Final[dict[str, EndpointSpec[Any]]] = {spec.name: spec for spec in (CVMS, APPS)}


def listed_endpoints() -> tuple[EndpointSpec[Any], ...]:
    """Every listed endpoint, in the order a run reads them."""
    return tuple(_REGISTRY.values())


def get_endpoint(name: str) -> EndpointSpec[Any]:
    """The endpoint named ``name`` (``Page.endpoint``); ``KeyError`` for an unknown name."""
    return _REGISTRY[name]


def listing_of(entity_type: EntityType) -> EndpointSpec[Any]:
    """The endpoint that lists ``entity_type``; ``KeyError`` for a type no endpoint lists."""
    for spec in _REGISTRY.values():
        if spec.entity_type == entity_type:
            return spec
    raise KeyError(entity_type)


def source_endpoint(entity_type: EntityType) -> str:
    """The name of the endpoint whose items carry ``entity_type``: listed, or referred to."""
    for spec in _REGISTRY.values():
        if entity_type == spec.entity_type or entity_type in spec.reference_types:
            return spec.name
    raise KeyError(entity_type)
