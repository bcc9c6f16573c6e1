"""How results are shown, by the CLI and the flow's artifacts alike: tables, JSON, run summaries.

Pure functions over the plain dicts that :mod:`sync.store.queries` and :class:`sync.run.RunSummary`
produce; nothing here touches the database, the network or Prefect.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson

from sync.endpoints import listed_endpoints
from sync.records import ENTITY_TYPES

__all__ = [
    "COUNT_FIELDS",
    "change_line",
    "change_tally",
    "count_rows",
    "sort_changes",
    "summary_text",
    "table",
    "to_json",
]

#: The per-entity-type counts of a run, in the order they are shown.
COUNT_FIELDS = ("seen", "created", "updated", "deleted", "restored", "unchanged")
_MAX_CELL = 40


def _cell(value: Any, width: int = _MAX_CELL) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, (dict, list)):
        text = orjson.dumps(value).decode()
    else:
        text = str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A plain-text table: a header, a rule, one line per row; long cells are cut short."""
    cols = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    if not cols:
        return "(nothing)"
    cells = [[_cell(row.get(c)) for c in cols] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]

    def is_number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    numeric = [
        all(is_number(row.get(c)) or row.get(c) is None for row in rows)
        and any(is_number(row.get(c)) for row in rows)
        for c in cols
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(cols), line(["-" * w for w in widths])]
    out.extend(line(r) for r in cells)
    return "\n".join(out)


def to_json(value: Any) -> str:
    """Indented JSON; datetimes as ISO 8601, anything else unknown as its text."""
    return orjson.dumps(
        value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str
    ).decode()


def count_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per entity type with the run's counts (``RunSummary.to_dict()`` as input)."""
    counts: Mapping[str, Mapping[str, int]] = summary.get("counts") or {}
    order = [t for t in ENTITY_TYPES if t in counts] + sorted(set(counts) - set(ENTITY_TYPES))
    return [
        {"entity": entity, **{f: int(counts[entity].get(f, 0)) for f in COUNT_FIELDS}}
        for entity in order
    ]


def _duration(summary: Mapping[str, Any]) -> str:
    try:
        started = datetime.fromisoformat(str(summary["started_at"]))
        finished = datetime.fromisoformat(str(summary["finished_at"]))
    except (KeyError, ValueError):
        return ""
    return f" in {(finished - started).total_seconds():.1f} s"


def summary_text(summary: Mapping[str, Any]) -> str:
    """A run summary for people: a headline, the counts table and the listing verdicts."""
    head = (
        f"Run {summary.get('run_id')} {summary.get('status')}{_duration(summary)} "
        f"(target {summary.get('target')!r}, API version {summary.get('api_version')})"
    )
    lines = [head, "", table(count_rows(summary), ["entity", *COUNT_FIELDS]), ""]
    # Each listed endpoint's ledger columns (sync.endpoints): its verdict, then any API total.
    endpoints = listed_endpoints()
    verdicts = [summary.get(spec.complete_column) for spec in endpoints]
    parts = [f"quarantined items: {summary.get('quarantined', 0)}"]
    parts += [
        f"{spec.label} listing complete: {_cell(verdict)}"
        for spec, verdict in zip(endpoints, verdicts, strict=True)
    ]
    parts += [
        f"API total: {summary[spec.total_column]} {spec.noun}"
        for spec in endpoints
        if spec.total_column is not None and summary.get(spec.total_column) is not None
    ]
    lines.append("; ".join(parts))
    if any(verdict is False for verdict in verdicts):
        lines.append("an incomplete listing infers no deletions; see the run's log for why")
    return "\n".join(lines)


def change_tally(changes: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """How many changes of each kind per entity type, e.g. ``{entity, created, updated, ...}``."""
    tally: Counter[tuple[str, str]] = Counter(
        (str(c["entity_type"]), str(c["change_type"])) for c in changes
    )
    kinds = ("created", "updated", "deleted", "restored")
    entities = [t for t in ENTITY_TYPES if any(e == t for e, _ in tally)]
    return [{"entity": e, **{k: tally[(e, k)] for k in kinds}} for e in entities]


def _brief(value: Any) -> str:
    if isinstance(value, list):
        return f"[{len(value)} item{'s' if len(value) != 1 else ''}]"
    return _cell(value, 24)


def sort_changes(changes: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Changes in display order: CVMs first, then apps, nodes, workspaces, creators."""
    rank: dict[str, int] = {t: i for i, t in enumerate(ENTITY_TYPES)}
    return sorted(
        changes, key=lambda c: (rank.get(str(c["entity_type"]), len(rank)), str(c["entity_id"]))
    )


def change_line(change: Mapping[str, Any], *, max_fields: int = 4) -> str:
    """One change event as a line: ``updated cvm <id>: status running -> stopped, ...``."""
    head = f"{change['change_type']} {change['entity_type']} {change['entity_id']}"
    fields: Mapping[str, Mapping[str, Any]] = change.get("changes") or {}
    if change["change_type"] == "created":
        name = fields.get("name", {}).get("new")
        return f"{head}" + (f" ({_cell(name, 30)})" if name else "")
    if not fields:
        return head
    shown = [
        f"{name} {_brief(diff.get('old'))} -> {_brief(diff.get('new'))}"
        for name, diff in list(fields.items())[:max_fields]
    ]
    more = len(fields) - max_fields
    return f"{head}: {', '.join(shown)}" + (f" (+{more} more)" if more > 0 else "")
