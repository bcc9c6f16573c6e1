"""The API versions the simulator serves and the two payload shapes they map to.

``2025-10-28`` is the legacy shape (``HostedCvm`` items, ``CvmBasicInfo`` in apps); every later
version has the ``2026-01-21`` list shapes (``CVMInfo`` items) for the two list endpoints.
"""

from __future__ import annotations

from typing import Final, Literal

Shape = Literal["legacy", "current"]

SUPPORTED_VERSIONS: Final[tuple[str, ...]] = (
    "2025-10-28",
    "2026-01-21",
    "2026-05-22",
    "2026-06-23",
)
DEFAULT_VERSION: Final = "2026-01-21"
SHAPES: Final[tuple[Shape, ...]] = ("legacy", "current")


def shape_of(version: str) -> Shape:
    """The payload shape a supported version uses (``KeyError`` for an unsupported one)."""
    if version not in SUPPORTED_VERSIONS:
        raise KeyError(version)
    return "legacy" if version == "2025-10-28" else "current"
