"""phala-sync: keeps a SQL history of a Phala Cloud fleet.

The pieces, from the edge inwards: :class:`~sync.settings.Settings` (configuration),
:class:`~sync.api.client.PhalaClient` (paged, validated API listings), :func:`~sync.run.run_sync`
(one atomic run into the store) and :mod:`sync.store.queries` (the read side). Nothing here
imports Prefect; the flows in ``flows/`` wrap these functions.
"""

from sync.api.client import PhalaClient
from sync.errors import PhalaSyncError
from sync.records import UNKNOWN
from sync.run import RunSummary, run_sync
from sync.settings import Settings
from sync.versions import KNOWN_VERSIONS, get_version

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
