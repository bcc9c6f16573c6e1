"""The floor: fetch and ``json.loads`` every page of both endpoints, one after another.

``python bench/floor.py BASE_URL PAGE_SIZE API_VERSION [CONCURRENCY]`` (the API key in
``PHALA_CLOUD_API_KEY``) pages through ``GET /cvms/paginated`` and then ``GET /apps`` with a plain
sync ``httpx.Client``, decodes each body with the stdlib ``json.loads`` and drops it. With
``CONCURRENCY`` 1 (the default) one request at a time on one connection; with more, as the
product pages a distant API: page 1 alone (it tells the page count), then the other pages with
``CONCURRENCY`` requests in flight (threads sharing the client, each decoding its own page).
It prints one JSON line: the seconds of the loop (``perf_counter``, client set-up included,
interpreter start-up and imports excluded), this process's CPU seconds over the loop, and what it
received. Run by ``bench/run.py`` in a process of its own, so that nothing else shares its
interpreter.
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import httpx

#: Each endpoint's path, the envelope's page-count field and its list field.
ENDPOINTS = (("/cvms/paginated", "pages", "items"), ("/apps", "total_pages", "dstack_apps"))


def _page(client: httpx.Client, path: str, page: int, page_size: int) -> tuple[Any, int]:
    """One page: its decoded body and its size in bytes."""
    response = client.get(path, params={"page": page, "page_size": page_size})
    response.raise_for_status()
    return json.loads(response.content), len(response.content)


def main(argv: list[str]) -> None:
    base_url, page_size, version = argv[0], int(argv[1]), argv[2]
    concurrency = int(argv[3]) if len(argv) > 3 else 1
    headers = {
        "X-API-Key": os.environ["PHALA_CLOUD_API_KEY"],
        "X-Phala-Version": version,
        "Accept": "application/json",
    }
    counts: dict[str, dict[str, int]] = {}
    load = os.getloadavg()[0]
    cpu0 = time.process_time()
    start = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with (
        httpx.Client(base_url=base_url, headers=headers, timeout=120, limits=limits) as client,
        ThreadPoolExecutor(max_workers=concurrency) as pool,
    ):
        for path, pages_field, items_field in ENDPOINTS:
            data, nbytes = _page(client, path, 1, page_size)
            planned = max(1, int(data[pages_field]))
            items = len(data[items_field])
            del data
            if concurrency == 1:
                rest = (_page(client, path, page, page_size) for page in range(2, planned + 1))
            else:  # map keeps CONCURRENCY requests in flight; results come back in page order
                rest = pool.map(
                    partial(_page, client, path, page_size=page_size), range(2, planned + 1)
                )
            for data, size in rest:
                items += len(data[items_field])
                nbytes += size
                del data
            counts[path] = {"pages": planned, "items": items, "bytes": nbytes}
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    result = {
        "seconds": round(seconds, 3),
        "concurrency": concurrency,
        "cpu_s": round(cpu, 3),
        "endpoints": counts,
        "loadavg_1m": [round(load, 2), round(os.getloadavg()[0], 2)],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
