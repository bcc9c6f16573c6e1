"""What each parsing stage costs on the same pages the sync receives, measured in-process.

``python bench/stagecost.py BASE_URL PAGE_SIZE API_VERSION [REPEATS]`` (the API key in
``PHALA_CLOUD_API_KEY``) pages through every listed endpoint (``sync.endpoints``) once with a
plain sync ``httpx.Client`` (the wall seconds of the requests, bodies received but not decoded,
are ``http_get``) and, for each page body as it arrives, times every stage ``REPEATS`` times
(default 3) in CPU seconds (``time.process_time``) and keeps the best:

- ``json_loads``: the stdlib ``json.loads`` (what the floor does);
- ``orjson_loads``: ``orjson.loads``;
- ``parse_page``: the product's ``sync.api.pages.parse_page`` (decode, envelope and item
  validation, normalization), policy ``strict``.

Each result is dropped before the next, so that nothing accumulates (kept pages make the cyclic
GC rescan them: see the reference notes). It prints one JSON line with the sums per endpoint.
Memory stays flat: one page body at a time.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from sync.api.pages import parse_page
from sync.endpoints import listed_endpoints
from sync.versions import get_version


def _best(
    fn: Callable[[], Any], repeats: int, size: Callable[[Any], int] = len
) -> tuple[float, int]:
    """The least CPU seconds of ``repeats`` calls, and ``size`` of the last call's result."""
    best, n = float("inf"), 0
    for _ in range(repeats):
        start = time.process_time()
        result = fn()
        elapsed = time.process_time() - start
        n = size(result)
        del result
        best = min(best, elapsed)
    return best, n


def main(argv: list[str]) -> None:
    base_url, page_size, version_name = argv[0], int(argv[1]), argv[2]
    repeats = int(argv[3]) if len(argv) > 3 else 3
    version = get_version(version_name)
    headers = {
        "X-API-Key": os.environ["PHALA_CLOUD_API_KEY"],
        "X-Phala-Version": version_name,
        "Accept": "application/json",
    }
    out: dict[str, Any] = {"repeats": repeats, "endpoints": {}}
    load0 = os.getloadavg()[0]
    with httpx.Client(base_url=base_url, headers=headers, timeout=120) as client:
        for spec in listed_endpoints():
            name, path = spec.name, spec.path
            sums = dict.fromkeys(("http_get", "json_loads", "orjson_loads", "parse_page"), 0.0)
            page, planned, items, nbytes = 1, 1, 0, 0
            while page <= planned:
                start = time.perf_counter()
                response = client.get(path, params={"page": page, "page_size": page_size})
                response.raise_for_status()
                body = response.content
                sums["http_get"] += time.perf_counter() - start
                number, url = page, f"{base_url}{path}?page={page}"
                if page == 1:  # the page count, read by the parser (outside the timings)
                    first = parse_page(spec, version, 1, body, policy="strict", url=url)
                    planned = max(1, first.pages)
                    del first
                nbytes += len(body)
                sums["json_loads"] += _best(lambda b=body: json.loads(b), repeats)[0]
                sums["orjson_loads"] += _best(lambda b=body: orjson.loads(b), repeats)[0]
                seconds, n = _best(
                    lambda b=body, n=number, u=url, s=spec: parse_page(
                        s, version, n, b, policy="strict", url=u
                    ),
                    repeats,
                    lambda parsed: len(parsed.items),
                )
                sums["parse_page"] += seconds
                items += n
                del body, response
                page += 1
            out["endpoints"][name] = {
                "pages": planned,
                "items": items,
                "bytes": nbytes,
                **{k: round(v, 3) for k, v in sums.items()},
            }
    out["loadavg_1m"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
