"""The benchmark's tables (Markdown, so they paste into docs/performance.md) and target checks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

#: Issue #6's targets.
FIRST_SYNC_CVMS_PER_S = 25_000
RESYNC_CVMS_PER_S = 40_000
LATENCY_FACTOR = 1.5
RSS_FACTOR = 1.3
FLOW_OVERHEAD_S = 2.0

STAGE_COLUMNS = (
    ("fetch_wait", "fetch wait"),
    ("validate", "validate"),
    ("normalize", "normalize"),
    ("write_staging", "write: staging"),
    ("listing_checks", "listing checks"),
    ("write_apply", "write: apply"),
    ("setup", "lock+ledger"),
    ("other", "other"),
)
HISTORY_TABLES = ("change_events",)


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(str(c) for c in row) + " |" for row in rows)
    return "\n".join(lines)


def _runs(results: dict[str, Any]) -> Iterable[tuple[dict[str, Any], dict[str, Any]]]:
    for child in results.get("fleets", []):
        for run in child["scenarios"]:
            yield child, run


def scenario_table(results: dict[str, Any]) -> str:
    rows = []
    for child, run in _runs(results):
        st = run["stages"]
        rows.append(
            [
                child["db"],
                f"{child['size']:,}",
                run["scenario"],
                f"{run['wall_s']:.2f}",
                "FAILED" if run.get("error") else f"{run['cvms_per_s']:,}",
                *(f"{st[key]:.2f}" for key, _ in STAGE_COLUMNS),
                f"{run['cpu_s']['client']:.1f}/{run['cpu_s']['simulator']:.1f}",
                run["rss_mb"]["peak_so_far"],
                run["loadavg"]["after"][0],
            ]
        )
    header = [
        "db",
        "CVMs",
        "scenario",
        "wall s",
        "CVMs/s",
        *(label for _, label in STAGE_COLUMNS),
        "CPU s client/sim",
        "peak RSS MB",
        "load 1m",
    ]
    return md_table(header, rows)


def busy_table(results: dict[str, Any]) -> str:
    keys = (
        "parse",
        "item_validation",
        "envelope_validation",
        "normalize",
        "decode_reencode_loop",
        "parse_hidden_behind_staging",
        "write_staging",
        "staging_rows_python",
        "staging_sql",
        "staging_txn_other",
        "write_apply",
        "apply_sql",
        "apply_python",
        "sql_total",
    )
    rows = [
        [
            child["db"],
            f"{child['size']:,}",
            run["scenario"],
            *(run["busy"].get(k, "") for k in keys),
        ]
        for child, run in _runs(results)
    ]
    return md_table(["db", "CVMs", "scenario", *keys], rows)


def _rows_text(rows: dict[str, dict[str, int]]) -> str:
    parts = []
    for table, entry in rows.items():
        verbs = ", ".join(f"{k} {v:,}" for k, v in entry.items() if k != "net" and v)
        parts.append(f"{table} {entry['net']:+,}" + (f" ({verbs})" if verbs else ""))
    return "; ".join(parts)


def rows_table(results: dict[str, Any]) -> str:
    rows = []
    for child, run in _runs(results):
        cvm = run["ledger"]["counts"].get("cvm", {})
        ledger = ", ".join(f"{k} {v:,}" for k, v in cvm.items() if v)
        if run.get("error"):
            ledger = f"failed: {run['error'][:120]}"
        rows.append(
            [child["db"], f"{child['size']:,}", run["scenario"], ledger, _rows_text(run["rows"])]
        )
    header = ["db", "CVMs", "scenario", "ledger (CVMs)", "rows per table: net (statements)"]
    return md_table(header, rows)


def sql_table(run: dict[str, Any], n: int = 8) -> str:
    rows = [
        [f"`{s['sql'][:110]}`", s["calls"], f"{s['seconds']:.2f}", f"{s['rows']:,}"]
        for s in run["sql_top"][:n]
    ]
    return md_table(["statement", "calls", "s", "rows"], rows)


# ------------------------------------------------------------------------------ targets
def _find(results: dict[str, Any], db: str, size: int, scenario: str) -> dict[str, Any] | None:
    for child, run in _runs(results):
        if child["db"] == db and child["size"] == size and run["scenario"] == scenario:
            return run
    return None


def _peak(results: dict[str, Any], db: str, size: int) -> float | None:
    for child in results.get("fleets", []):
        if child["db"] == db and child["size"] == size:
            return float(child["peak_rss_mb"])
    return None


def _rate(run: dict[str, Any]) -> str:
    if run.get("error"):
        return f"failed after {run['wall_s']:.0f} s: {run['error'][:100]}"
    return f"{run['cvms_per_s']:,} CVMs/s"


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue #6 with the measured value, for each database measured."""
    sizes = sorted({c["size"] for c in results.get("fleets", [])})
    dbs = sorted({c["db"] for c in results.get("fleets", [])}, reverse=True)  # postgres first
    out: list[dict[str, Any]] = []
    if not sizes:
        return out
    big, small = sizes[-1], sizes[0]
    for db in dbs:
        note = "" if big == 100_000 else f" (measured at {big:,}; the target is set at 100,000)"
        first = _find(results, db, big, "first")
        if first:
            out.append(
                {
                    "target": f"first full sync, {big:,} CVMs, no latency{note}",
                    "db": db,
                    "measured": _rate(first),
                    "threshold": f">= {FIRST_SYNC_CVMS_PER_S:,} CVMs/s",
                    "met": not first.get("error") and first["cvms_per_s"] >= FIRST_SYNC_CVMS_PER_S,
                    "load": first["loadavg"]["after"],
                }
            )
        resync = _find(results, db, big, "resync_unchanged")
        if resync:
            written = {
                t: e
                for t, e in resync["rows"].items()
                if (t.endswith("_history") or t in HISTORY_TABLES) and any(e.values())
            }
            ledger = resync["rows"].get("sync_runs", {}).get("net", 0)
            out.append(
                {
                    "target": f"unchanged resync, {big:,} CVMs{note}",
                    "db": db,
                    "measured": _rate(resync),
                    "threshold": f">= {RESYNC_CVMS_PER_S:,} CVMs/s",
                    "met": not resync.get("error") and resync["cvms_per_s"] >= RESYNC_CVMS_PER_S,
                    "load": resync["loadavg"]["after"],
                }
            )
            out.append(
                {
                    "target": "unchanged resync writes no history/change rows, one ledger row",
                    "db": db,
                    "measured": f"history/changes {written or 'none'}, sync_runs {ledger:+d}",
                    "threshold": "0 rows, +1 ledger row",
                    "met": not written and ledger == 1,
                    "load": resync["loadavg"]["after"],
                }
            )
        slow = _find(results, db, big, "first_latency")
        if first and slow:
            pages = sum(slow["pages"].values())
            floor = pages * slow["latency_ms"] / 1000 / 4
            reference = max(floor, first["wall_s"])
            bound = LATENCY_FACTOR * reference
            out.append(
                {
                    "target": f"first sync with {slow['latency_ms']} ms latency, {big:,} CVMs",
                    "db": db,
                    "measured": (
                        f"{slow['wall_s']:.1f} s = {slow['wall_s'] / reference:.2f}x of "
                        f"max({pages} pages x {slow['latency_ms']} ms / 4 = {floor:.1f} s, "
                        f"no-latency {first['wall_s']:.1f} s)"
                    ),
                    "threshold": f"<= {bound:.1f} s (1.5x)",
                    "met": not slow.get("error") and slow["wall_s"] <= bound,
                    "load": slow["loadavg"]["after"],
                }
            )
        p_big, p_small = _peak(results, db, big), _peak(results, db, small)
        if p_big and p_small and big != small:
            out.append(
                {
                    "target": f"peak RSS {big:,} vs {small:,} CVMs (own process each)",
                    "db": db,
                    "measured": f"{p_big:.0f} MB / {p_small:.0f} MB = {p_big / p_small:.2f}x",
                    "threshold": f"<= {RSS_FACTOR}x",
                    "met": p_big / p_small <= RSS_FACTOR,
                    "load": None,
                }
            )
    flow = results.get("flow_overhead")
    if flow is not None:
        if flow.get("measured"):
            out.append(
                {
                    "target": f"flow overhead over run_sync ({flow['db']}, {flow['size']:,} CVMs)",
                    "db": flow["db"],
                    "measured": f"{flow['overhead_s']:.2f} s per run",
                    "threshold": f"< {FLOW_OVERHEAD_S} s",
                    "met": flow["overhead_s"] < FLOW_OVERHEAD_S,
                    "load": flow["loadavg"],
                }
            )
        else:
            out.append(
                {
                    "target": "flow overhead over run_sync",
                    "db": "-",
                    "measured": f"not measured: {flow.get('reason')}",
                    "threshold": f"< {FLOW_OVERHEAD_S} s",
                    "met": None,
                    "load": None,
                }
            )
    return out


def targets_table(rows: list[dict[str, Any]], date: str) -> str:
    def verdict(met: bool | None) -> str:
        return "n/a" if met is None else ("met" if met else "NOT met")

    return md_table(
        ["target", "db", "measured", "target value", "verdict", "date", "load 1/5/15m"],
        [
            [
                r["target"],
                r["db"],
                r["measured"],
                r["threshold"],
                verdict(r["met"]),
                date,
                "/".join(map(str, r["load"])) if r["load"] else "-",
            ]
            for r in rows
        ],
    )


def profile_text(profile: dict[str, Any], n: int = 20) -> str:
    parts = []
    for name, prof in profile["profiles"].items():
        parts.append(
            f"### {profile['db']} {profile['size']:,} CVMs, {name} "
            f"({prof['wall_s_under_profiler']} s under cProfile), by own time"
        )
        parts.append(
            md_table(
                ["function", "calls", "own s", "cumulative s"],
                [
                    [f"`{r['function']}`", r["calls"], r["tottime"], r["cumtime"]]
                    for r in prof["by_tottime"][:n]
                ],
            )
        )
    return "\n\n".join(parts)
