"""The import direction of docs/architecture.md, read from the source (lazy imports too).

``flows`` -> ``sync`` -> ``models``; only ``sync/cli/`` reaches ``flows`` and the simulator; the
simulator, a tool beside the product, reads only the product's versions, records and errors.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> Iterator[str]:
    """Every module an ``import`` or ``from ... import`` in ``path`` names, at any depth."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def imports_under(folder: str, *, excluding: str | None = None) -> dict[str, set[str]]:
    """Module file (relative to the repository) -> the top-level-package imports it makes."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if excluding is not None and relative.startswith(excluding):
            continue
        found[relative] = set(imported_modules(path))
    assert found, f"no modules under {folder}"
    return found


def offending(imports: dict[str, set[str]], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    return {
        module: sorted(n for n in names if n.split(".")[0] in forbidden or n in forbidden)
        for module, names in imports.items()
        if any(n.split(".")[0] in forbidden or n in forbidden for n in names)
    }


@pytest.mark.parametrize(
    ("folder", "excluding", "forbidden"),
    [
        ("models", None, ("sync", "flows", "simulator")),
        ("sync", "sync/cli/", ("flows", "simulator")),
        ("flows", None, ("simulator",)),
        ("migrations", None, ("flows", "simulator")),  # env.py reads the settings
    ],
    ids=["models", "sync-outside-cli", "flows", "migrations"],
)
def test_imports_point_one_way(
    folder: str, excluding: str | None, forbidden: tuple[str, ...]
) -> None:
    assert offending(imports_under(folder, excluding=excluding), forbidden) == {}


def test_only_the_cli_reaches_flows_and_it_does() -> None:
    """The CLI's edge exists (so the test above is not vacuous for ``flows``)."""
    cli = imports_under("sync/cli")
    assert any(n.startswith("flows") for names in cli.values() for n in names)


def test_flows_do_not_reach_the_command_line() -> None:
    flows = imports_under("flows")
    assert {m: n for m, n in flows.items() if any(x.startswith("sync.cli") for x in n)} == {}


def test_the_simulator_reads_only_versions_records_and_errors_of_the_product() -> None:
    allowed = {"sync.versions", "sync.records", "sync.errors"}
    used = {
        name
        for names in imports_under("simulator").values()
        for name in names
        if name.split(".")[0] in ("sync", "flows", "models")
    }
    assert used, "the simulator reads the product's version registry"
    assert used <= allowed
