"""The API versions this release knows, and what each one means for the two list endpoints.

A version string (the ``X-Phala-Version`` header) maps to one module of response models and its
mapper to the canonical records (:mod:`sync.records`). Several versions may share a module when
their list items have the same shape. What the modules share lives in :mod:`sync.versions.common`;
no version module imports another.

This registry is the one list of versions: the settings validator, the client and the simulator
(:mod:`simulator.shapes`, which renders each version in its module's ``SHAPE``) all ask it.
Adding a version whose list items have an existing shape is a line in ``_REGISTRY``; a new shape
is also a module that satisfies :class:`VersionModule` (and a renderer in the simulator).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from pydantic import TypeAdapter

from sync.errors import UnknownVersionError
from sync.records import AppBundle, CvmBundle
from sync.versions import v2025_10_28, v2026_01_21
from sync.versions.common import AppPageEnvelope, CvmPageEnvelope, ListShape

__all__ = [
    "DEFAULT_VERSION",
    "KNOWN_VERSIONS",
    "ApiVersion",
    "ListShape",
    "VersionModule",
    "get_version",
]


class VersionModule(Protocol):
    """What a version module provides (a module satisfies this protocol structurally)."""

    @property
    def SHAPE(self) -> ListShape: ...
    @property
    def CVM_ITEM(self) -> TypeAdapter[Any]: ...
    @property
    def APP_ITEM(self) -> TypeAdapter[Any]: ...
    @property
    def CVM_ENVELOPE(self) -> TypeAdapter[CvmPageEnvelope]: ...
    @property
    def APP_ENVELOPE(self) -> TypeAdapter[AppPageEnvelope]: ...

    def normalize_cvm(self, item: Any, raw: bytes, /) -> CvmBundle: ...
    def normalize_app(self, item: Any, raw: bytes, /) -> AppBundle: ...
    def cvm_entity_id(self, item: object, /) -> str | None: ...
    def app_entity_id(self, item: object, /) -> str | None: ...


@dataclass(frozen=True, slots=True)
class ApiVersion:
    """One API version: how to validate and normalize the items of its two list endpoints.

    Each listed endpoint picks its models from here (:attr:`sync.endpoints.EndpointSpec.models`).

    ``shape`` names the shape of its list items (its module's ``SHAPE``: the version that
    introduced it); ``cvm_item``/``app_item`` validate one decoded item;
    ``cvm_envelope``/``app_envelope`` validate a decoded page with its items left as they are;
    ``normalize_*`` map a validated item and its raw JSON bytes to a bundle of canonical records;
    ``*_entity_id`` read the entity key (normalized VM UUID, ``app_id``) from a raw item that may
    have failed validation, or return None.
    """

    name: str
    shape: ListShape
    cvm_item: TypeAdapter[Any]
    app_item: TypeAdapter[Any]
    cvm_envelope: TypeAdapter[CvmPageEnvelope]
    app_envelope: TypeAdapter[AppPageEnvelope]
    normalize_cvm: Callable[[Any, bytes], CvmBundle]
    normalize_app: Callable[[Any, bytes], AppBundle]
    cvm_entity_id: Callable[[object], str | None]
    app_entity_id: Callable[[object], str | None]

    @classmethod
    def from_module(cls, name: str, module: VersionModule) -> ApiVersion:
        return cls(
            name=name,
            shape=module.SHAPE,
            cvm_item=module.CVM_ITEM,
            app_item=module.APP_ITEM,
            cvm_envelope=module.CVM_ENVELOPE,
            app_envelope=module.APP_ENVELOPE,
            normalize_cvm=module.normalize_cvm,
            normalize_app=module.normalize_app,
            cvm_entity_id=module.cvm_entity_id,
            app_entity_id=module.app_entity_id,
        )

    def __repr__(self) -> str:
        return f"ApiVersion({self.name!r})"


_REGISTRY: Final[dict[str, ApiVersion]] = {
    name: ApiVersion.from_module(name, module)
    for name, module in (
        ("2025-10-28", v2025_10_28),
        ("2026-01-21", v2026_01_21),
        # Newer SDK versions; for the two list endpoints their items are those of 2026-01-21.
        ("2026-05-22", v2026_01_21),
        ("2026-06-23", v2026_01_21),
    )
}

#: Every version this release can sync, oldest first (ISO dates sort by date).
KNOWN_VERSIONS: Final[tuple[str, ...]] = tuple(sorted(_REGISTRY))
#: The version pinned when none is configured: the current one in the API documentation.
DEFAULT_VERSION: Final = "2026-01-21"


def get_version(name: str) -> ApiVersion:
    """The :class:`ApiVersion` named ``name``; :class:`UnknownVersionError` if there is none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownVersionError(name, list(KNOWN_VERSIONS)) from None
