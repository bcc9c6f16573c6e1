"""Tables, JSON, summaries and progress lines: pure functions, tested on plain values."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import orjson

from sync.present import (
    change_line,
    change_tally,
    count_rows,
    sort_changes,
    summary_text,
    table,
    to_json,
)
from sync.progress import TerminalProgress, ThrottledLog, describe, listening, notify

SUMMARY = {
    "run_id": 7,
    "target": "acme",
    "api_version": "2026-01-21",
    "status": "succeeded",
    "started_at": "2026-04-15T12:00:00+00:00",
    "finished_at": "2026-04-15T12:00:02.500000+00:00",
    "counts": {
        "node": {
            "seen": 3,
            "created": 0,
            "updated": 1,
            "deleted": 0,
            "restored": 0,
            "unchanged": 2,
        },
        "cvm": {
            "seen": 10,
            "created": 2,
            "updated": 3,
            "deleted": 1,
            "restored": 1,
            "unchanged": 4,
        },
        "app": {"seen": 5, "created": 1, "updated": 0, "deleted": 0, "restored": 0, "unchanged": 4},
    },
    "quarantined": 2,
    "listing_complete": False,
    "apps_listing_complete": True,
    "api_total": 11,
}


def test_table_aligns_text_left_and_numbers_right() -> None:
    rows = [{"name": "a", "n": 5, "ok": True}, {"name": "longer", "n": 123, "ok": None}]
    assert table(rows).splitlines() == [
        "name      n  ok",
        "------  ---  ---",
        "a         5  yes",
        "longer  123  -",
    ]
    assert table([], ["a"]).splitlines() == ["a", "-"]
    assert table([]) == "(nothing)"


def test_table_cuts_long_cells_and_flattens_newlines() -> None:
    text = table([{"error": "x" * 100 + "\nsecond line"}])
    assert "\n" not in text.splitlines()[2]
    assert text.splitlines()[2].endswith("…")
    assert len(text.splitlines()[2]) == 40


def test_to_json_handles_datetimes() -> None:
    when = datetime(2026, 4, 15, 12, tzinfo=UTC)
    assert orjson.loads(to_json({"at": when})) == {"at": "2026-04-15T12:00:00+00:00"}


def test_count_rows_puts_listed_entities_first() -> None:
    rows = count_rows(SUMMARY)
    assert [r["entity"] for r in rows] == ["cvm", "app", "node"]
    assert rows[0] == {
        "entity": "cvm", "seen": 10, "created": 2, "updated": 3, "deleted": 1, "restored": 1,
        "unchanged": 4,
    }  # fmt: skip


def test_summary_text() -> None:
    text = summary_text(SUMMARY)
    assert text.startswith("Run 7 succeeded in 2.5 s (target 'acme', API version 2026-01-21)")
    assert "quarantined items: 2; CVM listing complete: no; app listing complete: yes" in text
    assert "an incomplete listing infers no deletions" in text
    cvm_line = next(line for line in text.splitlines() if line.startswith("cvm"))
    assert cvm_line.split() == ["cvm", "10", "2", "3", "1", "1", "4"]


CHANGES = [
    {"entity_type": "app", "entity_id": "a1", "change_type": "created",
     "changes": {"name": {"old": None, "new": "web"}}},
    {"entity_type": "cvm", "entity_id": "c2", "change_type": "updated",
     "changes": {"vcpu": {"old": 2, "new": 4}, "status": {"old": "running", "new": "stopped"},
                 "members": {"old": ["x", "y"], "new": ["x"]}}},
    {"entity_type": "cvm", "entity_id": "c1", "change_type": "deleted", "changes": {}},
]  # fmt: skip


def test_change_tally_and_order() -> None:
    assert change_tally(CHANGES) == [
        {"entity": "cvm", "created": 0, "updated": 1, "deleted": 1, "restored": 0},
        {"entity": "app", "created": 1, "updated": 0, "deleted": 0, "restored": 0},
    ]
    assert [c["entity_id"] for c in sort_changes(CHANGES)] == ["c1", "c2", "a1"]


def test_change_line() -> None:
    assert change_line(CHANGES[0]) == "created app a1 (web)"
    assert change_line(CHANGES[2]) == "deleted cvm c1"
    assert change_line(CHANGES[1]) == (
        "updated cvm c2: vcpu 2 -> 4, status running -> stopped, members [2 items] -> [1 item]"
    )
    assert change_line(CHANGES[1], max_fields=1) == "updated cvm c2: vcpu 2 -> 4 (+2 more)"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_throttled_log_writes_first_last_and_every_few_seconds() -> None:
    lines: list[str] = []
    clock = Clock()
    log = ThrottledLog(lines.append, every=5.0, clock=clock)
    for page in range(1, 11):
        clock.now = page * 1.0
        log("cvms", page, 10, page * 100)
    assert lines == [
        "cvms: page 1 of 10, 100 CVMs",
        "cvms: page 6 of 10, 600 CVMs",
        "cvms: page 10 of 10, 1000 CVMs",
    ]
    log("apps", 1, 2, 50)
    assert lines[-1] == "apps: page 1 of 2, 50 apps"


def test_terminal_progress_redraws_one_line_and_ends_it() -> None:
    out = io.StringIO()
    clock = Clock()
    with TerminalProgress(out, fps=10, clock=clock) as bar:
        bar("cvms", 1, 3, 100)
        bar("cvms", 2, 3, 200)  # within 0.1 s of the last draw: skipped
        clock.now = 1.0
        bar("cvms", 3, 3, 300)
        bar("apps", 1, 1, 40)
    text = out.getvalue()
    assert "page 2 of 3" not in text
    frames = text.split("\r\x1b[K")[1:]
    assert frames[-1] == "cvms: page 3 of 3, 300 CVMs  apps: page 1 of 1, 40 apps\n"
    assert len(frames) == 3


def test_terminal_progress_prints_nothing_without_pages() -> None:
    out = io.StringIO()
    with TerminalProgress(out):
        pass
    assert out.getvalue() == ""


def test_listening_routes_notify_to_the_callback_only_inside() -> None:
    seen: list[tuple[str, int, int, int]] = []
    notify("cvms", 1, 1, 1)
    with listening(lambda *args: seen.append(args)):
        notify("cvms", 1, 2, 30)
    notify("cvms", 2, 2, 60)
    assert seen == [("cvms", 1, 2, 30)]
    assert describe("cvms", 3, 1, 5) == "cvms: page 3 of 3, 5 CVMs"
