"""How far each pin in pyproject.toml is from the newest release on the package index.

``make deps-check`` runs it. For every requirement of the project and its ``dev`` extra it prints
the installed version, the newest release the pin allows, the newest release on the index, and
what holds the difference back (the pin or nothing but an install that is behind). The index is
whatever pip is configured to use (``pip index versions --json``), so it answers for this machine.

Exit status: 0, or 1 with ``--strict`` when a pin keeps out the newest release of some package
(so the next drift is seen, not found). Pre-releases are left out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


@dataclass(frozen=True)
class Drift:
    name: str
    specifier: str
    installed: Version | None
    allowed: Version | None
    newest: Version | None

    @property
    def held_back(self) -> bool:
        """The pin keeps out the newest release."""
        return self.newest is not None and self.allowed != self.newest

    @property
    def behind(self) -> str:
        """How far the installed version is from the newest: ``major``, ``minor``, ``patch``."""
        return distance(self.installed, self.newest)

    def verdict(self) -> str:
        if self.newest is None:
            return "not found on the index"
        if self.held_back:
            return f"pin keeps out {self.newest} ({distance(self.allowed, self.newest)} behind)"
        if self.installed is None:
            return "not installed"
        if self.installed < self.newest:
            return f"pin allows {self.newest}; installed is {self.behind} behind (reinstall)"
        return "current"


def distance(have: Version | None, newest: Version | None) -> str:
    """The first release segment in which ``have`` trails ``newest`` (``-`` when it does not)."""
    if have is None or newest is None:
        return "?"
    if have >= newest:
        return "-"
    for label, a, b in zip(("major", "minor", "patch"), have.release, newest.release, strict=False):
        if a != b:
            return label
    return "patch"


def requirements(pyproject: Path = PYPROJECT) -> list[Requirement]:
    """The project's requirements and its ``dev`` extra's, in file order."""
    project = tomllib.loads(pyproject.read_text())["project"]
    lines: list[str] = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    return [Requirement(line) for line in lines]


def releases(name: str) -> list[Version]:
    """Final releases of ``name`` on the configured index, newest first (empty when unknown)."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", "--json", name],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        return []
    versions = []
    for text in json.loads(done.stdout).get("versions", []):
        try:
            version = Version(text)
        except InvalidVersion:
            continue
        if not version.is_prerelease and not version.is_devrelease:
            versions.append(version)
    return sorted(versions, reverse=True)


def installed(name: str) -> Version | None:
    try:
        return Version(metadata.version(name))
    except metadata.PackageNotFoundError:
        return None


def drift(requirement: Requirement, available: Sequence[Version]) -> Drift:
    allowed = [v for v in available if requirement.specifier.contains(v)]
    return Drift(
        name=requirement.name,
        specifier=str(requirement.specifier) or "(any)",
        installed=installed(requirement.name),
        allowed=allowed[0] if allowed else None,
        newest=available[0] if available else None,
    )


def render(rows: Iterable[Drift]) -> str:
    header = ("package", "pin", "installed", "newest allowed", "newest", "")
    table = [header] + [
        (
            d.name,
            d.specifier,
            str(d.installed or "-"),
            str(d.allowed or "-"),
            str(d.newest or "-"),
            d.verdict(),
        )
        for d in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when a pin keeps out a newest release"
    )
    args = parser.parse_args(argv)
    reqs = requirements()
    with ThreadPoolExecutor(max_workers=8) as pool:
        found = list(pool.map(lambda r: releases(r.name), reqs))
    rows = [drift(r, versions) for r, versions in zip(reqs, found, strict=True)]
    print(render(rows))
    held = [d for d in rows if d.held_back]
    print(f"\n{len(held)} of {len(rows)} pins keep out the newest release.")
    return 1 if (args.strict and held) else 0


if __name__ == "__main__":
    sys.exit(main())
