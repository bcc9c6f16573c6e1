"""phala-sync: keeps a SQL history of a Phala Cloud fleet.

The pieces, from the edge inwards: :class:`~sync.settings.Settings` (configuration),
:class:`~sync.api.client.PhalaClient` (paged, validated API listings), :func:`~sync.run.run_sync`
(one atomic run into the store) and :mod:`sync.store.queries` (the read side). Nothing here
imports Prefect; the flows in ``flows/`` wrap these functions.

The names below are imported when first used, so that importing one module of the package (the
command line's, say) does not import them all: ``phala-sync sync`` sends its first requests
before SQLAlchemy's ORM, Alembic and the run are imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sync.api.client import PhalaClient
    from sync.errors import PhalaSyncError
    from sync.records import UNKNOWN
    from sync.run import RunSummary, run_sync
    from sync.settings import Settings
    from sync.versions import KNOWN_VERSIONS, get_version

#: Each public name and the module it comes from.
_HOMES = {
    "KNOWN_VERSIONS": "sync.versions",
    "UNKNOWN": "sync.records",
    "PhalaClient": "sync.api.client",
    "PhalaSyncError": "sync.errors",
    "RunSummary": "sync.run",
    "Settings": "sync.settings",
    "get_version": "sync.versions",
    "run_sync": "sync.run",
}

__all__ = [
    "KNOWN_VERSIONS",
    "UNKNOWN",
    "PhalaClient",
    "PhalaSyncError",
    "RunSummary",
    "Settings",
    "get_version",
    "run_sync",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'sync' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
