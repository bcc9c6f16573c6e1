"""The project's normalizer reads the simulator's pages as the fleet's canonical records.

The simulator's ground truth is written in canonical terms; this checks that those terms are what
``sync.api.pages`` + ``sync.versions`` make of the served JSON, field by field, in every version.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

versions_module = pytest.importorskip("sync.versions")

from simulator import Fleet  # noqa: E402
from sync.api.pages import parse_page  # noqa: E402
from sync.endpoints import get_endpoint  # noqa: E402
from sync.records import UNKNOWN  # noqa: E402

from .conftest import VERSIONS, Caller  # noqa: E402


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value


def _known(record: Any) -> dict[str, Any]:
    return {k: _json_value(v) for k, v in record.known_fields().items() if v is not UNKNOWN}


def _parsed_items(caller: Caller, endpoint: str, version: str, pages: int) -> Iterator[Any]:
    """The items of pages 1 to ``pages`` (of 100) as ``sync.api.pages`` parses them, strictly."""
    api = versions_module.get_version(version)
    spec = get_endpoint(endpoint)
    for page_no in range(1, pages + 1):
        body = caller.get(endpoint, version=version, page=page_no, page_size=100).content
        yield from parse_page(
            spec, api, page_no, body, policy="strict", url=f"http://sim/{endpoint}"
        ).items


@pytest.mark.parametrize("version", VERSIONS)
def test_normalized_pages_are_the_fleet_records(make_caller: Any, version: str) -> None:
    fleet = Fleet(300, seed=13)
    fleet.evolve(seed=1, total=20)
    fleet.evolve(seed=2, total=20)
    caller: Caller = make_caller(fleet)
    snap = fleet.snapshot()
    cvms_seen = 0
    for bundle in _parsed_items(caller, "cvms", version, pages=4):
        record = snap["cvms"][bundle.cvm.vm_uuid]
        known = _known(bundle.cvm)
        assert len(known) >= 15
        assert known == {k: record[k] for k in known}, bundle.cvm.vm_uuid
        if bundle.node is not None:
            node = _known(bundle.node)
            assert node == {k: snap["nodes"][str(bundle.node.node_id)][k] for k in node}
        if bundle.workspace is not None:
            ws = _known(bundle.workspace)
            expected = snap["workspaces"][bundle.workspace.workspace_id]
            assert ws == {k: expected[k] for k in ws}
        if bundle.creator is not None:
            user = _known(bundle.creator)
            assert user == {k: snap["creators"][bundle.creator.creator_id][k] for k in user}
        cvms_seen += 1
    assert cvms_seen == fleet.cvm_count
    apps_seen = 0
    for app in _parsed_items(caller, "apps", version, pages=9):
        record = snap["apps"][app.app.app_id]
        known = _known(app.app)
        assert known == {k: record[k] for k in known}, app.app.app_id
        apps_seen += 1
    assert apps_seen == fleet.app_count
