"""Faults on demand: which requests fail, how, and what each fault does to a response.

A fault is a rule ``KIND[:key=value,...]`` (CLI) or the same as a JSON object (admin API)::

    503:page=2,times=2              page 2 answers 503 twice, then succeeds
    429:retry_after=date:3,times=1  the first request gets 429 with an HTTP-date Retry-After
    latency:ms=200,rate=0.3         30% of requests (deterministic, see below) wait 200 ms
    drift:what=missing,share=0.02   2% of items lose a required field
    page_drift:page=3,insert=5,delete=5,endpoint=cvms

Kinds: ``429 500 502 503 504`` (an error answer; ``retry_after`` = seconds, ``date[:SECONDS]`` or
``none``; 429 defaults to 1 s, the others to none), ``latency``/``timeout`` (wait ``ms`` before
answering; timeout defaults to 60 s, longer than the usual client timeouts), ``drop`` (send
``bytes`` of the body, default half, then abort the connection), ``malformed`` (a JSON syntax
error: a trailing comma), ``truncated`` (a complete HTTP answer whose body stops at ``bytes``),
``drift`` (``what`` = ``missing``/``wrong_type``/``enum``/``unknown`` on a ``share`` of items)
and ``page_drift`` (after the page is rendered, ``insert`` new items at the top and ``delete``
items from the pages before it; once unless ``times`` says otherwise).

Selectors, for every kind: ``endpoint`` (``cvms``/``apps``; default both), ``page``/``pages``
(``3``, ``2-4`` or ``2|5``), ``after`` (skip the first N matching requests), ``times`` (fire at
most N times) and ``rate`` (fire on that share of matching requests). A rate decision hashes the
fault seed, the rule's position, the page and how many times that page was asked for, so it does
not depend on how concurrent requests interleave. Drift picks items by hashing the seed and the
item's id: the same items drift on every retry, as a real server's bad records would.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

from simulator.fleet import ItemAlter, ItemPicker
from simulator.model import App, Cvm, JsonDict
from simulator.shapes import Shape

STATUS_KINDS: Final = ("429", "500", "502", "503", "504")
BODY_KINDS: Final = ("drop", "malformed", "truncated")
DELAY_KINDS: Final = ("latency", "timeout")
KINDS: Final = (*STATUS_KINDS, *BODY_KINDS, *DELAY_KINDS, "drift", "page_drift")
DRIFTS: Final = ("missing", "wrong_type", "enum", "unknown")
ENDPOINTS: Final = ("cvms", "apps")

_SELECTORS = ("endpoint", "page", "pages", "after", "times", "rate")
_PARAMS: Final[dict[str, tuple[str, ...]]] = {
    **dict.fromkeys(STATUS_KINDS, ("retry_after",)),
    "drop": ("bytes",),
    "truncated": ("bytes",),
    "malformed": (),
    "latency": ("ms",),
    "timeout": ("ms",),
    "drift": ("what", "share"),
    "page_drift": ("insert", "delete"),
}


class FaultSpecError(ValueError):
    """A fault rule that cannot be understood; the message says which part and why."""


def _int(key: str, value: Any, minimum: int = 0) -> int:
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        n = int(value)
    except (TypeError, ValueError):
        raise FaultSpecError(f"{key} must be an integer, not {value!r}") from None
    if n < minimum:
        raise FaultSpecError(f"{key} must be at least {minimum}, not {n}")
    return n


def _share(key: str, value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise FaultSpecError(f"{key} must be a number from 0 to 1, not {value!r}") from None
    if not 0.0 <= x <= 1.0:
        raise FaultSpecError(f"{key} must be from 0 to 1, not {x}")
    return x


def _pages(value: Any) -> frozenset[int]:
    if isinstance(value, int | str) and "-" in str(value):
        lo, _, hi = str(value).partition("-")
        return frozenset(range(_int("page", lo, 1), _int("page", hi, 1) + 1))
    if isinstance(value, str):
        return frozenset(_int("page", p, 1) for p in value.split("|"))
    if isinstance(value, list | tuple):
        return frozenset(_int("page", p, 1) for p in value)
    return frozenset({_int("page", value, 1)})


def _retry_after(value: Any) -> str | None:
    text = str(value).strip().lower()
    if text == "none":
        return None
    if text == "date":
        return "date:2"
    if text.startswith("date:"):
        _int("retry_after date seconds", text[5:])
        return text
    _int("retry_after", text)
    return text


@dataclass(slots=True)
class FaultRule:
    """One fault rule (see the module docstring); ``fired`` counts how often it applied."""

    kind: str
    endpoint: str | None = None
    pages: frozenset[int] | None = None
    after: int = 0
    times: int | None = None
    rate: float = 1.0
    retry_after: str | None = None
    ms: int = 0
    bytes: int | None = None
    what: str = "missing"
    share: float = 0.05
    insert: int = 0
    delete: int = 0
    matched: int = 0
    fired: int = 0

    @classmethod
    def parse(cls, spec: str | Mapping[str, Any]) -> FaultRule:
        """A rule from ``"KIND:key=value,..."`` or ``{"kind": KIND, key: value, ...}``."""
        if isinstance(spec, str):
            kind, _, rest = spec.strip().partition(":")
            options: dict[str, Any] = {}
            for part in filter(None, (p.strip() for p in rest.split(","))):
                key, eq, value = part.partition("=")
                if not eq:
                    raise FaultSpecError(f"fault {spec!r}: expected key=value, got {part!r}")
                options[key.strip()] = value.strip()
        else:
            options = dict(spec)
            kind = str(options.pop("kind", ""))
        return cls._build(kind.strip(), options)

    @classmethod
    def _build(cls, kind: str, options: dict[str, Any]) -> FaultRule:
        if kind not in KINDS:
            raise FaultSpecError(f"unknown fault kind {kind!r}; known kinds: {', '.join(KINDS)}")
        allowed = (*_SELECTORS, *_PARAMS[kind])
        for key in options:
            if key not in allowed:
                raise FaultSpecError(
                    f"fault {kind!r} takes no {key!r}; it takes: {', '.join(allowed)}"
                )
        rule = cls(kind=kind)
        if kind == "429":
            rule.retry_after = "1"
        if kind == "timeout":
            rule.ms = 60_000
        if kind == "latency":
            rule.ms = 100
        if kind == "page_drift":
            rule.times = 1
        for key, value in options.items():
            if key == "endpoint":
                if value not in ENDPOINTS:
                    raise FaultSpecError(f"endpoint must be cvms or apps, not {value!r}")
                rule.endpoint = str(value)
            elif key in ("page", "pages"):
                rule.pages = _pages(value)
            elif key in ("after", "ms", "insert", "delete"):
                setattr(rule, key, _int(key, value))
            elif key == "times":
                rule.times = _int(key, value, 1)
            elif key == "bytes":
                rule.bytes = _int(key, value)
            elif key in ("rate", "share"):
                setattr(rule, key, _share(key, value))
            elif key == "retry_after":
                rule.retry_after = _retry_after(value)
            elif key == "what":
                if value not in DRIFTS:
                    raise FaultSpecError(f"drift what must be one of {', '.join(DRIFTS)}")
                rule.what = str(value)
        if kind == "page_drift" and rule.endpoint == "apps" and rule.delete:
            raise FaultSpecError("page_drift on apps can only insert: apps are never deleted")
        return rule

    def to_json(self) -> JsonDict:
        out: JsonDict = {"kind": self.kind}
        if self.endpoint is not None:
            out["endpoint"] = self.endpoint
        if self.pages is not None:
            out["pages"] = sorted(self.pages)
        if self.after:
            out["after"] = self.after
        if self.times is not None:
            out["times"] = self.times
        if self.rate != 1.0:
            out["rate"] = self.rate
        for key in _PARAMS[self.kind]:
            out[key] = getattr(self, key)
        out["matched"] = self.matched
        out["fired"] = self.fired
        return out

    def matches(self, endpoint: str, page: int) -> bool:
        return (self.endpoint is None or self.endpoint == endpoint) and (
            self.pages is None or page in self.pages
        )


def _unit(*parts: object) -> float:
    """A deterministic number in [0, 1) from its inputs."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(slots=True)
class Decision:
    """What the faults do to one request."""

    delay_ms: int = 0
    response: FaultRule | None = None  # an error status or a damaged body
    drifts: list[tuple[int, FaultRule]] = field(default_factory=list)
    page_drifts: list[tuple[int, FaultRule]] = field(default_factory=list)


class Faults:
    """The active fault rules and their counters; thread-safe."""

    def __init__(self, rules: Iterable[str | Mapping[str, Any] | FaultRule] = (), seed: int = 0):
        self._lock = threading.Lock()
        self.seed = seed
        self.rules: list[FaultRule] = [self._rule(r) for r in rules]
        self._asked: dict[tuple[str, int, int], int] = {}

    @staticmethod
    def _rule(spec: str | Mapping[str, Any] | FaultRule) -> FaultRule:
        return spec if isinstance(spec, FaultRule) else FaultRule.parse(spec)

    def set(
        self, rules: Sequence[str | Mapping[str, Any] | FaultRule], seed: int | None = None
    ) -> None:
        """Replace every rule (and reset the counters)."""
        parsed = [self._rule(r) for r in rules]
        with self._lock:
            self.rules = parsed
            self._asked.clear()
            if seed is not None:
                self.seed = seed

    def add(self, rules: Sequence[str | Mapping[str, Any] | FaultRule]) -> None:
        parsed = [self._rule(r) for r in rules]
        with self._lock:
            self.rules.extend(parsed)

    def describe(self) -> JsonDict:
        with self._lock:
            return {"seed": self.seed, "faults": [r.to_json() for r in self.rules]}

    def decide(self, endpoint: str, page: int, page_size: int) -> Decision:
        """Which rules fire for this request (counting it)."""
        decision = Decision()
        with self._lock:
            if not self.rules:
                return decision
            key = (endpoint, page, page_size)
            attempt = self._asked[key] = self._asked.get(key, 0) + 1
            for index, rule in enumerate(self.rules):
                is_response = rule.kind in STATUS_KINDS or rule.kind in BODY_KINDS
                if is_response and decision.response is not None:
                    continue
                if not rule.matches(endpoint, page):
                    continue
                rule.matched += 1
                if rule.matched <= rule.after:
                    continue
                if rule.times is not None and rule.fired >= rule.times:
                    continue
                if rule.rate < 1.0 and _unit(self.seed, index, *key, attempt) >= rule.rate:
                    continue
                rule.fired += 1
                if is_response:
                    decision.response = rule
                elif rule.kind in DELAY_KINDS:
                    decision.delay_ms += rule.ms
                elif rule.kind == "drift":
                    decision.drifts.append((index, rule))
                else:
                    decision.page_drifts.append((index, rule))
        return decision

    def picker(self, decision: Decision, shape: Shape) -> ItemPicker | None:
        """The item picker that applies the decision's drift rules (None without drift)."""
        if not decision.drifts:
            return None
        seed = self.seed

        def pick(entity: Cvm | App) -> ItemAlter | None:
            ident = entity.key if isinstance(entity, Cvm) else entity.app_id
            for index, rule in decision.drifts:
                if _unit(seed, index, "drift", ident) < rule.share:
                    return partial(drift_item, what=rule.what, shape=shape)
            return None

        return pick


#: The field every drifted item gains under ``what=unknown`` (and nothing else does).
UNKNOWN_FIELD: Final = "x_simulator_new_field"
#: The enum value no known version has (``kms_type`` of current CVM items).
NEW_ENUM_VALUE: Final = "solana"


def drift_item(entity: Cvm | App, d: JsonDict, what: str, shape: Shape) -> None:
    """Damage one item dict in place the way a drifting server would."""
    if what == "unknown":
        d[UNKNOWN_FIELD] = {"introduced": "2026-07-01", "value": 42}
    elif isinstance(entity, Cvm):
        if what == "missing":
            del d["status"]  # required in both shapes
        elif what == "wrong_type":
            # Text no parser coerces back to an integer (a bare "4" would be, in lax mode).
            if shape == "legacy":
                d["vcpu"] = f"{entity.vcpu} vCPU"
            else:
                d["resource"]["vcpu"] = f"{entity.vcpu} vCPU"
        elif shape == "current":
            d["kms_type"] = NEW_ENUM_VALUE  # KmsType is an enum: schema-invalid
        else:
            # HostedCvm has no enum-typed field: a new billing period is schema-valid text.
            d["billing_period"] = "weekly"
    elif entity.minimal:
        if what == "missing":
            del d["app_id"]
        elif what == "wrong_type":
            d["app_id"] = int(entity.app_id[:8], 16)
        else:
            d["kms_type"] = NEW_ENUM_VALUE  # not null: no longer a minimal app
    elif what == "missing":
        del d["name"]
    elif what == "wrong_type":
        d["cvm_count"] = f"{len(entity.members)} CVMs"
    else:
        d["kms_type"] = NEW_ENUM_VALUE  # a plain string in the app schema
