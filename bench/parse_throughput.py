"""Validation throughput of the per-version models: 100 pages of 100 CVMs through parse_page.

``python bench/parse_throughput.py``: pages are built from the golden items of each version
(tests/sync/golden) with fresh ids, then parsed (decode, validate, raw re-encode, normalize);
the best of 5 passes in CPU time is reported as CVMs/s.
"""

from __future__ import annotations

import copy
import time
import uuid
from pathlib import Path

import orjson

from sync.api.pages import parse_page
from sync.endpoints import CVMS
from sync.versions import get_version

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "sync" / "golden"
PAGES, PER_PAGE, PASSES = 100, 100, 5


def pages_for(version: str) -> list[bytes]:
    base = orjson.loads((GOLDEN / f"cvms_{version}.json").read_bytes())["items"]
    bodies, k = [], 0
    for page in range(PAGES):
        items = []
        for _ in range(PER_PAGE):
            item = copy.deepcopy(base[k % len(base)])
            vm = str(uuid.UUID(int=k + 1))
            if version == "2025-10-28":
                item["hosted"]["id"] = vm
            else:
                item["vm_uuid"], item["id"] = vm, f"cvm_{k:08x}"
            items.append(item)
            k += 1
        envelope = {"items": items, "total": PAGES * PER_PAGE, "page": page + 1}
        envelope.update(page_size=PER_PAGE, pages=PAGES)
        bodies.append(orjson.dumps(envelope))
    return bodies


def main() -> None:
    for name in ("2025-10-28", "2026-01-21"):
        version, bodies = get_version(name), pages_for(name)
        size = sum(len(b) for b in bodies) / (PAGES * PER_PAGE)
        best = 0.0
        for _ in range(PASSES):
            start = time.process_time()
            n = sum(
                len(parse_page(CVMS, version, i + 1, b, policy="strict", url="bench").items)
                for i, b in enumerate(bodies)
            )
            best = max(best, n / (time.process_time() - start))
        print(f"{name}: {best:,.0f} CVMs/s ({size:,.0f} bytes of JSON per CVM)")


if __name__ == "__main__":
    main()
