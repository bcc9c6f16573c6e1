"""tools/deps_check.py: the drift of a pin, judged from a list of releases (no index needed)."""

from __future__ import annotations

from packaging.requirements import Requirement
from packaging.version import Version

from tools.deps_check import distance, drift, render, requirements


def versions(*texts: str) -> list[Version]:
    return sorted((Version(t) for t in texts), reverse=True)


def test_a_pin_that_keeps_out_the_newest_release_is_held_back() -> None:
    row = drift(Requirement("fastapi>=0.139,<0.151"), versions("0.165.0", "0.150.0", "0.139.0"))
    assert row.allowed == Version("0.150.0")
    assert row.newest == Version("0.165.0")
    assert row.held_back
    assert "pin keeps out 0.165.0 (minor behind)" in row.verdict()


def test_a_pin_that_allows_the_newest_release_is_not_held_back() -> None:
    row = drift(Requirement("prefect>=3.9.1,<4"), versions("3.9.1", "3.9.0", "3.8.8"))
    assert row.allowed == row.newest == Version("3.9.1")
    assert not row.held_back


def test_a_package_the_index_does_not_know() -> None:
    row = drift(Requirement("no-such-package-here>=1"), [])
    assert row.newest is None
    assert not row.held_back
    assert row.verdict() == "not found on the index"


def test_distance_names_the_first_segment_that_differs() -> None:
    assert distance(Version("2.0.58"), Version("2.1.9")) == "minor"
    assert distance(Version("1.9"), Version("2.0")) == "major"
    assert distance(Version("3.9.0"), Version("3.9.1")) == "patch"
    assert distance(Version("3.9.1"), Version("3.9.1")) == "-"
    assert distance(None, Version("1.0")) == "?"


def test_requirements_are_read_from_pyproject() -> None:
    names = [r.name for r in requirements()]
    assert "prefect" in names
    assert "sqlalchemy" in names
    assert "pytest" in names  # the dev extra too


def test_render_lines_up_one_row_per_requirement() -> None:
    rows = [drift(Requirement("a>=1"), versions("1.0")), drift(Requirement("bb<2"), [])]
    lines = render(rows).splitlines()
    assert len(lines) == 3
    assert lines[1].startswith("a ")
    assert "not found on the index" in lines[2]
