"""The simulator's ASGI app: the two list endpoints as the server answers them, plus admin.

Public endpoints (``X-API-Key`` required, ``X-Phala-Version`` optional, default 2026-01-21):

- ``GET /api/v1/cvms/paginated?page=&page_size=`` (page_size default 30, 1..100)
- ``GET /api/v1/apps?page=&page_size=`` (page_size default 20, 1..100)

Errors as the server shapes them: 401 ``{"detail": "..."}``; an unknown version 400 with the
structured ``{"error_code", "message", "request_id", "details", "suggestions", "links"}`` body;
a bad ``page``/``page_size`` 422 with FastAPI's ``{"detail": [{"type", "loc", "msg", "input",
"ctx"}]}``. Every answer carries ``X-Request-ID``.

Admin endpoints (``X-Admin-Token`` required; 401 without it, 403 when wrong or when the simulator
was started without an admin token): ``POST /admin/evolve``, ``GET /admin/changes?since=``,
``GET /admin/snapshot``, ``GET /admin/state`` and ``GET|PUT|POST|DELETE /admin/faults``.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import os
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from time import time
from typing import Any, Final

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from simulator.evolve import KINDS
from simulator.faults import STATUS_KINDS, Decision, FaultRule, Faults, FaultSpecError
from simulator.fleet import Fleet
from simulator.model import JsonDict
from simulator.versions import DEFAULT_VERSION, SUPPORTED_VERSIONS, Shape, shape_of

API_PREFIX: Final = "/api/v1"
PAGE_SIZE_DEFAULTS: Final = {"cvms": 30, "apps": 20}
MAX_PAGE_SIZE: Final = 100
_INT = re.compile(r"[+-]?\d+")


class SimulatedDisconnect(Exception):
    """Raised inside a response body to abort the connection mid-body (the ``drop`` fault)."""


@dataclass(slots=True)
class Simulator:
    """Everything the app serves from: the fleet, the faults and the credentials."""

    fleet: Fleet
    api_key: str
    admin_token: str | None = None
    faults: Faults = field(default_factory=Faults)
    _ids: Iterator[int] = field(default_factory=itertools.count)
    _prefix: str = field(default_factory=lambda: os.urandom(4).hex())

    def request_id(self) -> str:
        return f"req_{self._prefix}{next(self._ids):08x}"


def _json(status: int, body: Any, request_id: str) -> Response:
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={"x-request-id": request_id},
    )


def _query_int(
    params: Mapping[str, str], name: str, default: int, maximum: int | None
) -> tuple[int, JsonDict | None]:
    """One integer query parameter, validated like FastAPI (pydantic v2) does."""
    raw = params.get(name)
    if raw is None:
        return default, None
    loc = ["query", name]
    if not _INT.fullmatch(raw.strip()):
        return default, {
            "type": "int_parsing",
            "loc": loc,
            "msg": "Input should be a valid integer, unable to parse string as an integer",
            "input": raw,
        }
    value = int(raw)
    if value < 1:
        return default, {
            "type": "greater_than_equal",
            "loc": loc,
            "msg": "Input should be greater than or equal to 1",
            "input": raw,
            "ctx": {"ge": 1},
        }
    if maximum is not None and value > maximum:
        return default, {
            "type": "less_than_equal",
            "loc": loc,
            "msg": f"Input should be less than or equal to {maximum}",
            "input": raw,
            "ctx": {"le": maximum},
        }
    return value, None


def _unknown_version(version: str, request_id: str) -> Response:
    known = ", ".join(SUPPORTED_VERSIONS)
    return _json(
        400,
        {
            "error_code": "ERR-01-004",
            "message": f"Unsupported API version: {version}",
            "request_id": request_id,
            "details": [
                {
                    "field": "X-Phala-Version",
                    "value": version,
                    "message": f"Supported versions: {known}",
                }
            ],
            "suggestions": [f"Set the X-Phala-Version header to one of: {known}"],
            "links": [
                {"label": "API versioning", "url": "https://docs.phala.network/phala-cloud/api"}
            ],
        },
        request_id,
    )


_GATEWAY_PAGES: Final = {
    "502": "502 Bad Gateway",
    "503": "503 Service Temporarily Unavailable",
    "504": "504 Gateway Time-out",
}


def _error(rule: FaultRule, request_id: str) -> Response:
    """The answer of an error-status fault, shaped like what sends it in production."""
    headers = {"x-request-id": request_id}
    if rule.retry_after is not None:
        if rule.retry_after.startswith("date:"):
            headers["retry-after"] = formatdate(time() + int(rule.retry_after[5:]), usegmt=True)
        else:
            headers["retry-after"] = rule.retry_after
    status = int(rule.kind)
    if rule.kind == "429":
        body = orjson.dumps({"detail": "Rate limit exceeded, please retry later"})
        return Response(body, 429, headers=headers, media_type="application/json")
    if rule.kind == "500":  # an unhandled exception in the app: Starlette's plain answer
        return Response(b"Internal Server Error", 500, headers=headers, media_type="text/plain")
    title = _GATEWAY_PAGES[rule.kind]  # the reverse proxy in front of the app answers
    html = f"<html><head><title>{title}</title></head><body><center><h1>{title}</h1></center>"
    html += "<hr><center>nginx</center></body></html>\n"
    return Response(html.encode(), status, headers=headers, media_type="text/html")


class _DroppedResponse(Response):
    """Sends the headers (with the full Content-Length) and part of the body, then aborts."""

    def __init__(self, body: bytes, sent: int, request_id: str) -> None:
        super().__init__(body, media_type="application/json", headers={"x-request-id": request_id})
        self.sent = sent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send(
            {"type": "http.response.body", "body": self.body[: self.sent], "more_body": True}
        )
        raise SimulatedDisconnect(
            f"simulated connection drop after {self.sent} of {len(self.body)} bytes"
        )


def _damaged(rule: FaultRule, body: bytes, request_id: str) -> Response:
    cut = len(body) // 2 if rule.bytes is None else min(rule.bytes, len(body))
    if rule.kind == "drop":
        return _DroppedResponse(body, cut, request_id)
    # truncated: the body stops short; malformed: a trailing comma, which no JSON parser accepts
    body = body[:cut] if rule.kind == "truncated" else body[:-1] + b",}"
    return Response(body, media_type="application/json", headers={"x-request-id": request_id})


def create_app(
    fleet: Fleet | None = None,
    *,
    api_key: str,
    cvms: int = 1000,
    seed: int = 0,
    admin_token: str | None = None,
    faults: Iterable[str | Mapping[str, Any] | FaultRule] = (),
    fault_seed: int = 0,
) -> Starlette:
    """The simulator app over ``fleet`` (or a new ``Fleet(cvms, seed)``).

    The :class:`Simulator` it serves from is ``app.state.simulator``.
    """
    if not api_key:
        raise ValueError("the simulator needs a non-empty API key")
    sim = Simulator(
        fleet=fleet if fleet is not None else Fleet(cvms, seed),
        api_key=api_key,
        admin_token=admin_token,
        faults=Faults(faults, fault_seed),
    )

    async def list_endpoint(request: Request, endpoint: str) -> Response:
        rid = sim.request_id()
        key = request.headers.get("x-api-key")
        if not key:
            return _json(401, {"detail": "Not authenticated: send your API key as X-API-Key"}, rid)
        if not hmac.compare_digest(key.encode(), sim.api_key.encode()):
            return _json(401, {"detail": "Invalid API key"}, rid)
        version = request.headers.get("x-phala-version", DEFAULT_VERSION)
        try:
            shape = shape_of(version)
        except KeyError:
            return _unknown_version(version, rid)
        params = request.query_params
        page, page_err = _query_int(params, "page", 1, None)
        size, size_err = _query_int(params, "page_size", PAGE_SIZE_DEFAULTS[endpoint], 100)
        errors = [e for e in (page_err, size_err) if e is not None]
        if errors:
            return _json(422, {"detail": errors}, rid)
        decision = sim.faults.decide(endpoint, page, size)
        if decision.delay_ms:
            await asyncio.sleep(decision.delay_ms / 1000)
        rule = decision.response
        if rule is not None and rule.kind in STATUS_KINDS:
            return _error(rule, rid)
        body = _render(endpoint, shape, page, size, decision)
        if rule is not None:
            return _damaged(rule, body, rid)
        return Response(body, media_type="application/json", headers={"x-request-id": rid})

    def _render(endpoint: str, shape: Shape, page: int, size: int, decision: Decision) -> bytes:
        picker = sim.faults.picker(decision, shape)
        with sim.fleet.lock:  # the page and the drift after it, with nothing in between
            if endpoint == "cvms":
                body, _ = sim.fleet.cvm_page(shape, page, size, picker)
            else:
                body, _ = sim.fleet.app_page(shape, page, size, picker)
            for index, rule in decision.page_drifts:
                sim.fleet.page_drift(
                    endpoint,
                    insert=rule.insert,
                    delete=rule.delete,
                    offset=page * size,
                    seed=sim.faults.seed * 1_000_003 + index * 1009 + rule.fired,
                )
        return body

    async def cvms_endpoint(request: Request) -> Response:
        return await list_endpoint(request, "cvms")

    async def apps_endpoint(request: Request) -> Response:
        return await list_endpoint(request, "apps")

    Handler = Callable[[Request], Awaitable[Response]]

    def admin(handler: Callable[[Request, str], Awaitable[Response]]) -> Handler:
        async def guarded(request: Request) -> Response:
            rid = sim.request_id()
            token = request.headers.get("x-admin-token")
            if sim.admin_token is None:
                detail = "admin endpoints are disabled: start the simulator with an admin token"
                return _json(403, {"detail": detail}, rid)
            if not token:
                return _json(401, {"detail": "Not authenticated: send X-Admin-Token"}, rid)
            if not hmac.compare_digest(token.encode(), sim.admin_token.encode()):
                return _json(403, {"detail": "Invalid admin token"}, rid)
            try:
                return await handler(request, rid)
            except (ValueError, FaultSpecError, orjson.JSONDecodeError) as exc:
                return _json(422, {"detail": str(exc)}, rid)

        return guarded

    async def body_of(request: Request) -> Any:
        raw = await request.body()
        return orjson.loads(raw) if raw.strip() else {}

    async def evolve(request: Request, rid: str) -> Response:
        body = await body_of(request)
        if not isinstance(body, dict):
            raise ValueError("the evolve body is a JSON object: {counts} or {seed, total}")
        unknown = set(body) - {"counts", "seed", "total"}
        if unknown:
            raise ValueError(f"unknown evolve keys {sorted(unknown)}; use counts, seed, total")
        counts = body.get("counts")
        if counts is not None and not isinstance(counts, dict):
            raise ValueError(f"counts maps change kinds ({', '.join(KINDS)}) to numbers")
        seed, total = body.get("seed"), body.get("total")
        for name, value in (("seed", seed), ("total", total)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"{name} must be an integer, not {value!r}")
        changes = sim.fleet.evolve(counts, seed=seed, total=total)
        return _json(200, {"step": sim.fleet.step_count - 1, "changes": changes}, rid)

    async def changes(request: Request, rid: str) -> Response:
        raw = request.query_params.get("since", "0").strip()
        if not raw.isdigit():
            raise ValueError(f"since must be a step index (0 or more), not {raw!r}")
        return _json(200, sim.fleet.changes(int(raw)), rid)

    async def snapshot(request: Request, rid: str) -> Response:
        return _json(200, sim.fleet.snapshot(), rid)

    async def state(request: Request, rid: str) -> Response:
        f = sim.fleet
        body = {
            "seed": f.seed,
            "cvms": f.cvm_count,
            "apps": f.app_count,
            "steps": f.step_count,
            "generation": f.generation,
            "versions": list(SUPPORTED_VERSIONS),
        }
        return _json(200, body, rid)

    async def fault_rules(request: Request, rid: str) -> Response:
        if request.method == "DELETE":
            sim.faults.set([])
        elif request.method in ("PUT", "POST"):
            body = await body_of(request)
            if isinstance(body, list):
                body = {"faults": body}
            if not isinstance(body, dict) or not isinstance(body.get("faults", []), list):
                raise ValueError('the faults body is {"faults": [rule, ...], "seed": int}')
            rules = body.get("faults", [])
            if request.method == "PUT":
                seed = body.get("seed")
                if seed is not None and not isinstance(seed, int):
                    raise ValueError(f"seed must be an integer, not {seed!r}")
                sim.faults.set(rules, seed)
            else:
                sim.faults.add(rules)
        return _json(200, sim.faults.describe(), rid)

    routes = [
        Route(f"{API_PREFIX}/cvms/paginated", cvms_endpoint, methods=["GET"]),
        Route(f"{API_PREFIX}/apps", apps_endpoint, methods=["GET"]),
        Route("/admin/evolve", admin(evolve), methods=["POST"]),
        Route("/admin/changes", admin(changes), methods=["GET"]),
        Route("/admin/snapshot", admin(snapshot), methods=["GET"]),
        Route("/admin/state", admin(state), methods=["GET"]),
        Route("/admin/faults", admin(fault_rules), methods=["GET", "PUT", "POST", "DELETE"]),
    ]
    app = Starlette(routes=routes)
    app.state.simulator = sim
    return app


def simulator_of(app: Starlette) -> Simulator:
    """The :class:`Simulator` behind an app made by :func:`create_app`."""
    sim = app.state.simulator
    assert isinstance(sim, Simulator)
    return sim
