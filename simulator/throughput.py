"""How fast the simulator serves: ``python -m simulator.throughput --cvms 100000``.

Starts the simulator in a child process, pages through every CVM with a plain ``httpx.Client``
over loopback (one connection, sequential pages, bodies received but not decoded), and prints
pages/s, CVMs/s and MB/s per pass,
plus the server's CPU seconds (from ``/proc``) so the rate per server core is visible even when
client and server share the machine's cores. Pass 1 renders items (unless ``--prewarm``); later
passes are served from the page cache.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import click
import httpx
import orjson

from simulator.serve import SimulatorProcess

_KEY = "bench-key"


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def run_pass(base_url: str, version: str, page_size: int, pid: int) -> dict[str, float]:
    headers = {"X-API-Key": _KEY, "X-Phala-Version": version}
    pages = items = nbytes = 0
    cpu0 = _cpu_seconds(pid)
    start = time.perf_counter()
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
        # The envelope's total says how many items each page holds: the client only receives
        # bytes (decoding them would measure the client, not the server). Page 1 is decoded once
        # to check it.
        first = client.get("/cvms/paginated", params={"page": 1, "page_size": page_size})
        first.raise_for_status()
        total = orjson.loads(first.content)["total"]
        for page in range(1, -(-total // page_size) + 1):
            r = client.get("/cvms/paginated", params={"page": page, "page_size": page_size})
            r.raise_for_status()
            pages += 1
            items += min(page_size, total - (page - 1) * page_size)
            nbytes += len(r.content)
    elapsed = time.perf_counter() - start
    server_cpu = _cpu_seconds(pid) - cpu0
    return {
        "pages": pages,
        "cvms": items,
        "seconds": round(elapsed, 3),
        "pages_per_s": round(pages / elapsed, 1),
        "cvms_per_s": round(items / elapsed),
        "mb_per_s": round(nbytes / elapsed / 1e6, 1),
        "server_cpu_s": round(server_cpu, 3),
        "cvms_per_server_cpu_s": round(items / server_cpu) if server_cpu else 0,
        "avg_item_bytes": round(nbytes / items) if items else 0,
    }


@click.command()
@click.option("--cvms", type=int, default=100_000, show_default=True)
@click.option("--page-size", type=click.IntRange(1, 100), default=100, show_default=True)
@click.option("--version", "versions", multiple=True, default=["2026-01-21", "2025-10-28"])
@click.option("--passes", type=click.IntRange(1), default=2, show_default=True)
@click.option("--prewarm/--no-prewarm", default=False, show_default=True)
def main(cvms: int, page_size: int, versions: tuple[str, ...], passes: int, prewarm: bool) -> None:
    """Measure the simulator's serving rate over loopback."""
    started = time.perf_counter()
    with SimulatorProcess(api_key=_KEY, cvms=cvms, prewarm=prewarm) as proc:
        assert proc.process is not None
        click.echo(f"started {cvms} CVMs in {time.perf_counter() - started:.1f} s")
        for version in versions:
            for n in range(1, passes + 1):
                result = run_pass(proc.base_url, version, page_size, proc.process.pid)
                click.echo(orjson.dumps({"version": version, "pass": n, **result}).decode())


if __name__ == "__main__":
    main()
