"""The benchmark's tables (Markdown, so they paste into docs/performance.md) and target checks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

#: Issue 21's targets: ratio = wall seconds of ``phala-sync sync`` / the floor's seconds. Without
#: latency they hold from 100,000 CVMs on (at 10,000 the fixed costs of a run dominate).
RATIO_TARGETS = {"first": 6.0, "resync_unchanged": 1.7, "resync_1pct": 2.0}
RATIO_TARGETS_FROM = 100_000
#: With a latency per request (a distant API), at any size: the floor reads at the same concurrency.
LATENCY_RATIO_TARGETS = {"first": 1.5, "resync_unchanged": 1.15, "resync_1pct": 1.25}
RSS_100K_MIB = 250.0
RSS_FACTOR = 1.3
SCENARIO_LABELS = {
    "first": "first sync",
    "resync_unchanged": "unchanged resync",
    "resync_1pct": "1%-mutated resync",
}


def ratio_target(run: dict[str, Any]) -> float | None:
    """The ratio a run of PostgreSQL or SQLite against the Prefect server must stay under."""
    if run["mode"] != "server":
        return None
    if run.get("latency_ms"):
        return LATENCY_RATIO_TARGETS.get(run["scenario"])
    return RATIO_TARGETS.get(run["scenario"]) if run["size"] >= RATIO_TARGETS_FROM else None


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(str(c) for c in row) + " |" for row in rows)
    return "\n".join(lines)


def _runs(results: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for fleet in results.get("fleets", []):
        yield from fleet["runs"]


def _load(run: dict[str, Any]) -> str:
    return f"{run['loadavg_start'][0]} → {run['loadavg_end'][0]}"


def _verdict(met: bool | None) -> str:
    return "n/a" if met is None else ("met" if met else "NOT met")


def _counts(run: dict[str, Any]) -> str:
    if run.get("error"):
        return f"failed: {run['error'][:160]}"
    counts = (run.get("summary") or {}).get("counts") or {}
    parts = []
    for entity in ("cvm", "app"):
        c = counts.get(entity) or {}
        shown = ", ".join(f"{k} {v:,}" for k, v in c.items() if v and k != "seen")
        if c:
            parts.append(f"{entity}: seen {c.get('seen', 0):,}" + (f" ({shown})" if shown else ""))
    return "; ".join(parts) or "-"


def runs_table(results: dict[str, Any]) -> str:
    rows = []
    for run in _runs(results):
        target = ratio_target(run)
        ratio = run.get("ratio")
        met = None if target is None or ratio is None or run["error"] else ratio <= target
        rows.append(
            [
                f"{run['size']:,}",
                run.get("latency_ms", 0),
                run["db"],
                run["mode"],
                run["scenario"],
                f"{run['wall_s']:.2f}",
                f"{run['floor_s']:.2f}" if run.get("floor_s") else "-",
                f"{ratio:.2f}x" if ratio is not None and not run["error"] else "failed",
                f"<= {target}x" if target else "-",
                _verdict(met) if target else "-",
                f"{run['cpu_s']:.1f}",
                f"{run.get('cpu_s_simulator', 0):.1f} / {run.get('cpu_s_prefect_server', 0):.1f}",
                f"{run['peak_rss_mib']:.0f}",
                f"{run.get('sampled_own_hwm_mib', 0):.0f} / "
                f"{run.get('sampled_group_rss_peak_mib', 0):.0f}",
                _load(run),
            ]
        )
    header = [
        "CVMs",
        "ms/request",
        "db",
        "Prefect",
        "scenario",
        "wall s",
        "floor s",
        "ratio",
        "target",
        "verdict",
        "CPU s (sync)",
        "CPU s sim / server",
        "peak RSS MiB",
        "sampled RSS MiB own / group",
        "load 1m start → end",
    ]
    return md_table(header, rows)


def counts_table(results: dict[str, Any]) -> str:
    rows = [
        [f"{run['size']:,}", run["db"], run["mode"], run["scenario"], _counts(run)]
        for run in _runs(results)
    ]
    extra = [
        [
            f"{run['size']:,}",
            run["db"],
            run["mode"],
            run["scenario"],
            "evolve ground truth: "
            + ", ".join(f"{k} {v:,}" for k, v in run["expected_changes"].items()),
        ]
        for run in _runs(results)
        if run.get("expected_changes")
    ]
    return md_table(["CVMs", "db", "Prefect", "scenario", "the run's summary"], rows + extra)


def floor_table(results: dict[str, Any]) -> str:
    rows = []
    for fleet in results.get("fleets", []):
        runs = fleet["floor"]["runs"]
        if not runs:
            continue
        eps = runs[0]["endpoints"]
        cvms, apps = eps.get("/cvms/paginated", {}), eps.get("/apps", {})
        mb = (cvms.get("bytes", 0) + apps.get("bytes", 0)) / 1e6
        rows.append(
            [
                f"{fleet['size']:,}",
                f"{fleet.get('latency_ms', 0)} / {fleet.get('floor_concurrency', 1)}",
                ", ".join(f"{r['seconds']:.2f}" for r in runs),
                f"{fleet['floor']['best_s']:.2f}",
                f"{cvms.get('pages', 0):,} / {apps.get('pages', 0):,}",
                f"{cvms.get('items', 0):,} / {apps.get('items', 0):,}",
                f"{mb:,.0f}",
                ", ".join(f"{r['cpu_s']:.2f}" for r in runs),
                ", ".join(f"{r['loadavg_1m'][0]} → {r['loadavg_1m'][1]}" for r in runs),
            ]
        )
    header = [
        "CVMs",
        "ms/request / in flight",
        "floor runs s",
        "best s",
        "pages CVMs / apps",
        "items CVMs / apps",
        "MB of JSON",
        "floor CPU s",
        "load 1m start → end",
    ]
    return md_table(header, rows)


def _stage_rows(fleet: dict[str, Any], fixed: dict[str, Any]) -> list[list[Any]]:
    size, best = fleet["size"], fleet["floor"].get("best_s")
    rows: list[list[Any]] = []
    if not best:
        return rows

    def row(stage: str, seconds: float | None, how: str) -> None:
        if seconds is not None:
            rows.append([f"{size:,}", stage, f"{seconds:.2f}", f"{seconds / best:.2f}x", how])

    latency, in_flight = fleet.get("latency_ms", 0), fleet.get("floor_concurrency", 1)
    at = f", {latency} ms per request, {in_flight} in flight" if latency else ""
    row(f"floor: GET + json.loads, both endpoints{at}", best, "wall, best of 3, own process")
    sc = fleet.get("stage_costs") or {}
    eps: dict[str, dict[str, float]] = sc.get("endpoints") or {}
    if eps:
        per_page = "CPU, best of 3 per page"
        total = {k: sum(float(e.get(k, 0)) for e in eps.values()) for k in eps["cvms"]}
        row("GET only (bodies received, not decoded)", total["http_get"], "wall, one pass")
        row("json.loads", total["json_loads"], per_page)
        row("orjson.loads", total["orjson_loads"], per_page)
        row("parse_page (CVM pages)", eps["cvms"].get("parse_page"), per_page)
        row("parse_page (app pages)", eps.get("apps", {}).get("parse_page"), per_page)
        row("parse_page, both endpoints", total["parse_page"], per_page)
    elif sc.get("error"):
        rows.append([f"{size:,}", "stage costs", "-", "-", f"failed: {sc['error'][:120]}"])
    for name, entry in fixed.items():
        if "wall_s" in entry:
            row(f"fixed: `{name}`", entry["wall_s"], "wall, best of 3, own process")
    for run in fleet["runs"]:
        if run["db"] == fleet["runs"][0]["db"] and run["mode"] == "server":
            row(f"`phala-sync sync`: {run['scenario']} ({run['db']})", run["wall_s"], "wall")
    return rows


def stages_table(results: dict[str, Any]) -> str:
    """Where the time goes: each stage's cost against the floor of the same fleet."""
    fixed = results.get("fixed_costs") or {}
    rows = [row for fleet in results.get("fleets", []) for row in _stage_rows(fleet, fixed)]
    return md_table(["CVMs", "stage", "s", "x floor", "how"], rows)


#: Stages the sync reports as parts of another (``sync.run.TIMINGS``: ``parse`` and ``stage``
#: are the CPU-bound parts of ``fetch``, ``ahead`` the apply ahead's writing during it, ``levels``
#: a part of ``apply``); the rest of the wall time is outside them all.
NESTED_TIMINGS = frozenset({"parse", "stage", "ahead", "levels"})


def timings_table(results: dict[str, Any]) -> str | None:
    """The sync's own per-stage seconds (its summary's ``timings``), when it reports them."""
    timed = [
        run
        for run in _runs(results)
        if isinstance(run.get("timings"), dict) and run["timings"] and run["wall_s"]
    ]
    if not timed:
        return None
    stages: list[str] = []
    for run in timed:
        stages.extend(k for k in run["timings"] if k not in stages)

    def cell(seconds: Any, wall: float) -> str:
        if not isinstance(seconds, int | float) or isinstance(seconds, bool):
            return "-"
        return f"{seconds:.2f} ({100 * seconds / wall:.0f}%)"

    rows = []
    for run in timed:
        t, wall = run["timings"], run["wall_s"]
        outside = wall - sum(
            float(v)
            for k, v in t.items()
            if k not in NESTED_TIMINGS and isinstance(v, int | float) and not isinstance(v, bool)
        )
        rows.append(
            [
                f"{run['size']:,}",
                run.get("latency_ms", 0),
                f"{run['db']}/{run['mode']}",
                run["scenario"],
                f"{wall:.2f}",
                *(cell(t.get(k), wall) for k in stages),
                cell(outside, wall),
            ]
        )
    rest = "rest of wall (" + " - ".join(["wall", *(k for k in stages if k not in NESTED_TIMINGS)])
    header = [
        "CVMs",
        "ms/request",
        "db/Prefect",
        "scenario",
        "wall s",
        *(f"{k} s" for k in stages),
        rest + ")",
    ]
    return md_table(header, rows)


# ------------------------------------------------------------------------------ targets
def _find(
    results: dict[str, Any], size: int, scenario: str, db: str, latency_ms: int = 0
) -> dict[str, Any] | None:
    for run in _runs(results):
        key = (run["size"], run.get("latency_ms", 0), run["scenario"], run["db"], run["mode"])
        if key == (size, latency_ms, scenario, db, "server"):
            return run
    return None


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with its measured value, on the primary database against the Prefect server."""
    fleets = results.get("fleets", [])
    sizes = sorted(f["size"] for f in fleets if not f.get("latency_ms"))
    dbs = {run["db"] for run in _runs(results)}
    db = "postgres" if "postgres" in dbs else "sqlite"
    out: list[dict[str, Any]] = []
    at = [(0, size) for size in sizes] + sorted(
        (f["latency_ms"], f["size"]) for f in fleets if f.get("latency_ms")
    )
    for latency_ms, size in at:
        for scenario, label in SCENARIO_LABELS.items():
            run = _find(results, size, scenario, db, latency_ms)
            bound = ratio_target(run) if run else None
            if run is None or bound is None:
                continue
            ok = not run["error"] and run["ratio"] is not None
            where = f"{latency_ms} ms per request, " if latency_ms else ""
            out.append(
                {
                    "target": f"{label}, {where}{size:,} CVMs ({db}, Prefect server)",
                    "measured": (
                        f"{run['wall_s']:.1f} s / floor {run['floor_s']:.2f} s "
                        f"= {run['ratio']:.2f}x"
                        if ok
                        else f"failed: {run['error']}"
                    ),
                    "threshold": f"<= {bound}x",
                    "met": ok and run["ratio"] <= bound,
                    "load": _load(run),
                }
            )
    firsts = {size: _find(results, size, "first", db) for size in sizes}
    big = firsts.get(100_000)
    out.append(
        {
            "target": f"peak RSS of `phala-sync sync`, 100,000 CVMs first sync ({db})",
            "measured": f"{big['peak_rss_mib']:.0f} MiB" if big else "not measured (no 100k run)",
            "threshold": f"<= {RSS_100K_MIB:.0f} MiB",
            "met": big["peak_rss_mib"] <= RSS_100K_MIB if big else None,
            "load": _load(big) if big else "-",
        }
    )
    small = firsts.get(10_000)
    for size, label in ((100_000, ""), (200_000, " (flat)")):
        run = firsts.get(size)
        measured = "not measured"
        met = None
        if run and small:
            factor = run["peak_rss_mib"] / small["peak_rss_mib"]
            measured = (
                f"{run['peak_rss_mib']:.0f} MiB / {small['peak_rss_mib']:.0f} MiB = {factor:.2f}x"
            )
            met = factor <= RSS_FACTOR
        out.append(
            {
                "target": f"peak RSS {size:,} vs 10,000 CVMs, first sync{label} ({db})",
                "measured": measured,
                "threshold": f"<= {RSS_FACTOR}x",
                "met": met,
                "load": f"{_load(run)} / {_load(small)}" if run and small else "-",
            }
        )
    return out


def targets_table(rows: list[dict[str, Any]], date: str) -> str:
    return md_table(
        ["target", "measured", "target value", "verdict", "load 1m start → end", "date"],
        [
            [r["target"], r["measured"], r["threshold"], _verdict(r["met"]), r["load"], date]
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
