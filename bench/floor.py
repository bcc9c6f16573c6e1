"""The floor: fetch and ``json.loads`` every page of both endpoints, one after another.

``python bench/floor.py BASE_URL PAGE_SIZE API_VERSION`` (the API key in ``PHALA_CLOUD_API_KEY``)
pages through ``GET /cvms/paginated`` and then ``GET /apps`` with a plain sync ``httpx.Client``
(one connection, one request at a time), decodes each body with the stdlib ``json.loads`` and
drops it before the next. It prints one JSON line: the seconds of the loop (``perf_counter``,
client set-up included, interpreter start-up and imports excluded), this process's CPU seconds
over the loop, and what it received. Run by ``bench/run.py`` in a process of its own, so that
nothing else shares its interpreter.
"""

from __future__ import annotations

import json
import os
import sys
import time

import httpx

#: Each endpoint's path, the envelope's page-count field and its list field.
ENDPOINTS = (("/cvms/paginated", "pages", "items"), ("/apps", "total_pages", "dstack_apps"))


def main(argv: list[str]) -> None:
    base_url, page_size, version = argv[0], int(argv[1]), argv[2]
    headers = {
        "X-API-Key": os.environ["PHALA_CLOUD_API_KEY"],
        "X-Phala-Version": version,
        "Accept": "application/json",
    }
    counts: dict[str, dict[str, int]] = {}
    load = os.getloadavg()[0]
    cpu0 = time.process_time()
    start = time.perf_counter()
    with httpx.Client(base_url=base_url, headers=headers, timeout=120) as client:
        for path, pages_field, items_field in ENDPOINTS:
            page, planned, items, nbytes = 1, 1, 0, 0
            while page <= planned:
                response = client.get(path, params={"page": page, "page_size": page_size})
                response.raise_for_status()
                body = response.content
                data = json.loads(body)
                if page == 1:
                    planned = max(1, int(data[pages_field]))
                items += len(data[items_field])
                nbytes += len(body)
                del data, body, response
                page += 1
            counts[path] = {"pages": planned, "items": items, "bytes": nbytes}
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    result = {
        "seconds": round(seconds, 3),
        "cpu_s": round(cpu, 3),
        "endpoints": counts,
        "loadavg_1m": [round(load, 2), round(os.getloadavg()[0], 2)],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
