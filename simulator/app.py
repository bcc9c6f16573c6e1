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

A list request goes through one layer per concern: the API key (:func:`_check_api_key`), the
version (:func:`_negotiate_shape`), the paging (:class:`~simulator.paging.PageRequest`), the
faults (:func:`_answer_page`) and the rendering (:func:`_render_page`). An admin request goes
through the admin token (:func:`_check_admin_token`), then its handler, which returns the JSON
body of the 200 answer.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from time import time
from typing import Any, Final, Literal

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
from simulator.paging import PageRequest, PagingError
from simulator.shapes import DEFAULT_VERSION, SUPPORTED_VERSIONS, Shape, shape_of

API_PREFIX: Final = "/api/v1"

Endpoint = Literal["cvms", "apps"]
Handler = Callable[[Request], Awaitable[Response]]


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


#: An admin endpoint: the JSON body of its 200 answer (``ValueError`` for a bad request: 422).
AdminHandler = Callable[[Simulator, Request], Awaitable[Any]]


# ------------------------------------------------------------------ answers


def _json_bytes(body: bytes, request_id: str, status: int = 200) -> Response:
    """A JSON answer from already encoded bytes."""
    return Response(
        body,
        status_code=status,
        media_type="application/json",
        headers={"x-request-id": request_id},
    )


def _json(status: int, body: Any, request_id: str) -> Response:
    return _json_bytes(orjson.dumps(body), request_id, status)


class _Refused(Exception):
    """A request refused before it reaches the fleet: the status and JSON body of the answer."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def _unknown_version(version: str, request_id: str) -> JsonDict:
    """The server's structured 400 body for an unsupported ``X-Phala-Version``."""
    known = ", ".join(SUPPORTED_VERSIONS)
    return {
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
        "links": [{"label": "API versioning", "url": "https://docs.phala.network/phala-cloud/api"}],
    }


_GATEWAY_PAGES: Final = {
    "502": "502 Bad Gateway",
    "503": "503 Service Temporarily Unavailable",
    "504": "504 Gateway Time-out",
}


def _fault_error(rule: FaultRule, request_id: str) -> Response:
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
    """The answer of a damaged-body fault (``drop``, ``truncated``, ``malformed``)."""
    cut = len(body) // 2 if rule.bytes is None else min(rule.bytes, len(body))
    if rule.kind == "drop":
        return _DroppedResponse(body, cut, request_id)
    # truncated: the body stops short; malformed: a trailing comma, which no JSON parser accepts
    body = body[:cut] if rule.kind == "truncated" else body[:-1] + b",}"
    return _json_bytes(body, request_id)


# ------------------------------------------------------------------ the list endpoints


def _check_api_key(sim: Simulator, request: Request) -> None:
    """Refuse (401) a request without the simulator's API key in ``X-API-Key``."""
    key = request.headers.get("x-api-key")
    if not key:
        raise _Refused(401, {"detail": "Not authenticated: send your API key as X-API-Key"})
    if not hmac.compare_digest(key.encode(), sim.api_key.encode()):
        raise _Refused(401, {"detail": "Invalid API key"})


def _negotiate_shape(request: Request, request_id: str) -> Shape:
    """The payload shape of the ``X-Phala-Version`` asked for (400 for an unknown version)."""
    version = request.headers.get("x-phala-version", DEFAULT_VERSION)
    try:
        return shape_of(version)
    except KeyError:
        raise _Refused(400, _unknown_version(version, request_id)) from None


async def _serve_list(sim: Simulator, request: Request, endpoint: Endpoint) -> Response:
    """``GET`` one page of a list endpoint: key, version and paging checked, then answered."""
    rid = sim.request_id()
    try:
        _check_api_key(sim, request)
        shape = _negotiate_shape(request, rid)
        paging = PageRequest.from_query(request.query_params, endpoint)
    except _Refused as refused:
        return _json(refused.status, refused.body, rid)
    except PagingError as bad:
        return _json(422, {"detail": bad.errors}, rid)
    return await _answer_page(sim, endpoint, shape, paging, rid)


async def _answer_page(
    sim: Simulator, endpoint: Endpoint, shape: Shape, paging: PageRequest, rid: str
) -> Response:
    """The page as the faults let it through: delayed, replaced by an error, or damaged."""
    decision = sim.faults.decide(endpoint, paging.page, paging.page_size)
    if decision.delay_ms:
        await asyncio.sleep(decision.delay_ms / 1000)
    rule = decision.response
    if rule is not None and rule.kind in STATUS_KINDS:
        return _fault_error(rule, rid)
    body = _render_page(sim, endpoint, shape, paging, decision)
    if rule is not None:
        return _damaged(rule, body, rid)
    return _json_bytes(body, rid)


def _render_page(
    sim: Simulator, endpoint: Endpoint, shape: Shape, paging: PageRequest, decision: Decision
) -> bytes:
    """The page's bytes (its drifting items altered), then the page drift the decision fired."""
    picker = sim.faults.picker(decision, shape)
    fleet = sim.fleet
    with fleet.lock:  # the page and the drift after it, with nothing in between
        if endpoint == "cvms":
            body, _ = fleet.cvm_page(shape, paging.page, paging.page_size, picker)
        else:
            body, _ = fleet.app_page(shape, paging.page, paging.page_size, picker)
        _drift_after(sim, endpoint, paging, decision)
    return body


def _drift_after(
    sim: Simulator, endpoint: Endpoint, paging: PageRequest, decision: Decision
) -> None:
    """Apply the decision's page-drift rules to the fleet, once this page is rendered."""
    for index, rule in decision.page_drifts:
        sim.fleet.page_drift(
            endpoint,
            insert=rule.insert,
            delete=rule.delete,
            offset=paging.end,
            seed=sim.faults.seed * 1_000_003 + index * 1009 + rule.fired,
        )


# ------------------------------------------------------------------ the admin endpoints


def _check_admin_token(sim: Simulator, request: Request) -> None:
    """Refuse an admin request: 403 while admin is disabled or for a wrong token, 401 without."""
    if sim.admin_token is None:
        detail = "admin endpoints are disabled: start the simulator with an admin token"
        raise _Refused(403, {"detail": detail})
    token = request.headers.get("x-admin-token")
    if not token:
        raise _Refused(401, {"detail": "Not authenticated: send X-Admin-Token"})
    if not hmac.compare_digest(token.encode(), sim.admin_token.encode()):
        raise _Refused(403, {"detail": "Invalid admin token"})


async def _serve_admin(sim: Simulator, request: Request, handler: AdminHandler) -> Response:
    """An admin request: the token checked, then the handler's body (422 for a bad request)."""
    rid = sim.request_id()
    try:
        _check_admin_token(sim, request)
    except _Refused as refused:
        return _json(refused.status, refused.body, rid)
    try:
        body = await handler(sim, request)
    except (ValueError, FaultSpecError, orjson.JSONDecodeError) as exc:
        return _json(422, {"detail": str(exc)}, rid)
    return _json(200, body, rid)


async def _body_of(request: Request) -> Any:
    """The request's JSON body (an empty body: ``{}``)."""
    raw = await request.body()
    return orjson.loads(raw) if raw.strip() else {}


def _evolve_arguments(body: Any) -> tuple[Any, int | None, int | None]:
    """The ``counts``, ``seed`` and ``total`` of an evolve body, checked."""
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
    return counts, seed, total


async def _evolve(sim: Simulator, request: Request) -> JsonDict:
    """``POST /admin/evolve``: one evolve step and its ground truth."""
    counts, seed, total = _evolve_arguments(await _body_of(request))
    changes = sim.fleet.evolve(counts, seed=seed, total=total)
    return {"step": sim.fleet.step_count - 1, "changes": changes}


async def _changes(sim: Simulator, request: Request) -> list[list[JsonDict]]:
    """``GET /admin/changes?since=``: the ground truth of every step from ``since`` on."""
    raw = request.query_params.get("since", "0").strip()
    if not raw.isdigit():
        raise ValueError(f"since must be a step index (0 or more), not {raw!r}")
    return sim.fleet.changes(int(raw))


async def _snapshot(sim: Simulator, request: Request) -> JsonDict:
    """``GET /admin/snapshot``: the visible fleet as canonical records."""
    return sim.fleet.snapshot()


async def _state(sim: Simulator, request: Request) -> JsonDict:
    """``GET /admin/state``: the fleet's size, seed and evolution so far."""
    f = sim.fleet
    return {
        "seed": f.seed,
        "cvms": f.cvm_count,
        "apps": f.app_count,
        "steps": f.step_count,
        "generation": f.generation,
        "versions": list(SUPPORTED_VERSIONS),
    }


def _faults_body(body: Any) -> dict[str, Any]:
    """A faults body, checked: ``{"faults": [rule, ...], "seed": int}`` or a bare rule list."""
    if isinstance(body, list):
        body = {"faults": body}
    if not isinstance(body, dict) or not isinstance(body.get("faults", []), list):
        raise ValueError('the faults body is {"faults": [rule, ...], "seed": int}')
    return body


async def _fault_rules(sim: Simulator, request: Request) -> JsonDict:
    """``/admin/faults``: GET shows the rules, PUT replaces them, POST adds, DELETE clears."""
    if request.method == "DELETE":
        sim.faults.set([])
    elif request.method in ("PUT", "POST"):
        body = _faults_body(await _body_of(request))
        rules = body.get("faults", [])
        if request.method == "PUT":
            seed = body.get("seed")
            if seed is not None and not isinstance(seed, int):
                raise ValueError(f"seed must be an integer, not {seed!r}")
            sim.faults.set(rules, seed)
        else:
            sim.faults.add(rules)
    return sim.faults.describe()


# ------------------------------------------------------------------ routing


def _routes(sim: Simulator) -> list[Route]:
    """Every endpoint, bound to ``sim``."""

    def listing(endpoint: Endpoint) -> Handler:
        async def serve(request: Request) -> Response:
            return await _serve_list(sim, request, endpoint)

        return serve

    def admin(handler: AdminHandler) -> Handler:
        async def serve(request: Request) -> Response:
            return await _serve_admin(sim, request, handler)

        return serve

    return [
        Route(f"{API_PREFIX}/cvms/paginated", listing("cvms"), methods=["GET"]),
        Route(f"{API_PREFIX}/apps", listing("apps"), methods=["GET"]),
        Route("/admin/evolve", admin(_evolve), methods=["POST"]),
        Route("/admin/changes", admin(_changes), methods=["GET"]),
        Route("/admin/snapshot", admin(_snapshot), methods=["GET"]),
        Route("/admin/state", admin(_state), methods=["GET"]),
        Route("/admin/faults", admin(_fault_rules), methods=["GET", "PUT", "POST", "DELETE"]),
    ]


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
    app = Starlette(routes=_routes(sim))
    app.state.simulator = sim
    return app


def simulator_of(app: Starlette) -> Simulator:
    """The :class:`Simulator` behind an app made by :func:`create_app`."""
    sim = app.state.simulator
    assert isinstance(sim, Simulator)
    return sim
