"""The run's summary as Prefect artifacts: counts, the changes, the fleet, and the report's link.

Artifacts are keyed per target (``phala-sync-<target>-counts``, ``-changes``, ``-fleet``,
``-report``), so the Prefect UI shows each target's latest run and keeps the earlier ones as
versions. They hold counts, entity ids and changed field values from the ledger, the change events
and the BI views: no API key and no database URL. The one link is the ``file://`` path of the
report written to ``PHALA_SYNC_REPORT_DIR``, when that is set.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from sqlalchemy import Engine

from sync.present import (
    COUNT_FIELDS,
    change_line,
    change_tally,
    count_rows,
    sort_changes,
)
from sync.records import ENTITY_TYPES
from sync.report.fleet_change import FleetChange, fleet_change
from sync.store import queries

#: Change events listed in the markdown artifact (the tally above the list counts them all).
MAX_LISTED_CHANGES = 100


def target_slug(target: str) -> str:
    """The target's name in lower-case letters, digits and dashes (for keys and file names)."""
    return re.sub(r"[^a-z0-9]+", "-", target.lower()).strip("-") or "target"


def artifact_key(target: str, kind: str) -> str:
    """A valid artifact key (lower-case letters, digits, dashes) for one target."""
    return f"phala-sync-{target_slug(target)}-{kind}"


def counts_table(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The counts artifact's rows: one per entity type, plus the run's quarantined items."""
    rows = count_rows(summary)
    rows.append(
        {"entity": "quarantined items", **dict.fromkeys(COUNT_FIELDS, None)}
        | {"seen": int(summary.get("quarantined") or 0)}
    )
    return rows


def _md(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _md_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> list[str]:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out.extend(
        "| " + " | ".join(_md("" if r.get(c) is None else r.get(c)) for c in columns) + " |"
        for r in rows
    )
    return out


def changes_markdown(
    summary: Mapping[str, Any],
    changes: Sequence[Mapping[str, Any]],
    *,
    tally: Sequence[Mapping[str, Any]] | None = None,
) -> str:
    """A markdown page: the run's headline, its counts, a tally of the changes and a list.

    ``changes`` may be the first of the run's changes only, when ``tally`` counts them all.
    """
    if tally is None:
        tally = change_tally(changes)
    kinds = ["entity", "created", "updated", "deleted", "restored"]
    total = sum(int(row[k]) for row in tally for k in kinds[1:])
    lines = [
        f"# Run {summary['run_id']} of target `{_md(summary['target'])}`: {summary['status']}",
        "",
        f"API version {summary['api_version']}; started {summary['started_at']}, "
        f"finished {summary['finished_at']}; quarantined items: {summary.get('quarantined', 0)}; "
        f"CVM listing complete: {summary.get('listing_complete')}; "
        f"app listing complete: {summary.get('apps_listing_complete')}.",
        "",
        "## Counts",
        "",
        *_md_table(count_rows(summary), ["entity", *COUNT_FIELDS]),
        "",
        f"## Changes ({total})",
        "",
    ]
    if not total:
        lines.append("Nothing changed.")
        return "\n".join(lines)
    lines.extend(_md_table(tally, kinds))
    lines.append("")
    listed = sort_changes(changes)[:MAX_LISTED_CHANGES]
    lines.extend(f"- {_md(change_line(c))}" for c in listed)
    if total > len(listed):
        lines.append(
            f"- ... and {total - len(listed)} more: `phala-sync changes --run {summary['run_id']}`"
        )
    return "\n".join(lines)


def _tally_rows(counts: Mapping[tuple[str, str], int]) -> list[dict[str, Any]]:
    kinds = ("created", "updated", "deleted", "restored")
    present = {entity for entity, _ in counts}
    return [
        {"entity": e, **{k: counts.get((e, k), 0) for k in kinds}}
        for e in ENTITY_TYPES
        if e in present
    ]


async def publish_summary(engine: Engine, summary: Mapping[str, Any]) -> None:
    """Create the counts table and changes page artifacts of one succeeded run.

    Counted and listed in SQL (a tally and the first changes), so memory does not grow with the
    number of changes a run made.
    """
    run_id = int(summary["run_id"])
    target = str(summary["target"])
    counts = await asyncio.to_thread(queries.change_counts, engine, run_id)
    changes = await asyncio.to_thread(
        queries.first_changes, engine, run_id, ENTITY_TYPES, MAX_LISTED_CHANGES
    )
    await acreate_table_artifact(
        counts_table(summary),
        key=artifact_key(target, "counts"),
        description=f"phala-sync run {run_id} (target {target!r}): counts per entity type",
    )
    await acreate_markdown_artifact(
        changes_markdown(summary, changes, tally=_tally_rows(counts)),
        key=artifact_key(target, "changes"),
        description=f"phala-sync run {run_id} (target {target!r}): what changed",
    )


async def publish_fleet_change(engine: Engine, summary: Mapping[str, Any]) -> FleetChange:
    """A table artifact: the fleet by status and region now and at the previous successful run.

    Two ``GROUP BY`` queries over the BI views (:mod:`sync.report.fleet_change`).
    """
    run_id = int(summary["run_id"])
    target = str(summary["target"])
    change = await asyncio.to_thread(fleet_change, engine, target, run_id)
    before = (
        f"the previous successful run ({change.previous_run_id})"
        if change.previous_run_id is not None
        else "nothing (the target's first successful run)"
    )
    await acreate_table_artifact(
        list(change.rows),
        key=artifact_key(target, "fleet"),
        description=(
            f"phala-sync run {run_id} (target {target!r}): live CVMs by status and region, "
            f"now and at {before}, with the differences"
        ),
    )
    return change


def report_markdown(summary: Mapping[str, Any], path: Path) -> str:
    """The markdown artifact that links the report written after a run."""
    return "\n".join(
        [
            f"# Fleet report of target `{_md(summary['target'])}`",
            "",
            f"Written after run {summary['run_id']} ({summary['finished_at']}): "
            f"[{_md(path.name)}]({path.as_uri()})",
            "",
            f"On the machine that ran the flow: `{_md(path)}`. One HTML file, readable offline; "
            "`phala-sync report` writes the same page on demand.",
        ]
    )


async def publish_report_link(summary: Mapping[str, Any], path: Path) -> None:
    """A markdown artifact linking the report file of this run."""
    target = str(summary["target"])
    await acreate_markdown_artifact(
        report_markdown(summary, path),
        key=artifact_key(target, "report"),
        description=f"phala-sync run {summary['run_id']} (target {target!r}): the fleet report",
    )
