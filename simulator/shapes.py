"""The two payload shapes the simulator renders, and which one each API version it serves uses.

The versions are the sync's registry (:mod:`sync.versions`): the simulator serves every version
the registry knows, in the list shape of its module (:attr:`~sync.versions.ApiVersion.shape`).
``legacy`` renders the ``2025-10-28`` shape (``HostedCvm`` items, ``CvmBasicInfo`` in apps),
``current`` the ``2026-01-21`` shape (``CVMInfo`` items) of the two list endpoints.
"""

from __future__ import annotations

from typing import Final, Literal

from sync.errors import UnknownVersionError
from sync.versions import DEFAULT_VERSION, KNOWN_VERSIONS, ListShape, get_version

__all__ = ["DEFAULT_VERSION", "SHAPES", "SUPPORTED_VERSIONS", "Shape", "shape_of"]

Shape = Literal["legacy", "current"]

#: The versions served: the registry's (a version registered later is served too, see shape_of).
SUPPORTED_VERSIONS: Final[tuple[str, ...]] = KNOWN_VERSIONS
SHAPES: Final[tuple[Shape, ...]] = ("legacy", "current")
#: The renderer of each list shape.
_RENDERER: Final[dict[ListShape, Shape]] = {"2025-10-28": "legacy", "2026-01-21": "current"}


def shape_of(version: str) -> Shape:
    """The payload shape a supported version uses (``KeyError`` for an unsupported one)."""
    try:
        return _RENDERER[get_version(version).shape]
    except UnknownVersionError:
        raise KeyError(version) from None
