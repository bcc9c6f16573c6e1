"""The simulated fleet: seeded state, offset paging over it, cached rendering, and evolution.

:class:`Fleet` is thread-safe (one re-entrant lock), so a test thread may evolve it while a
uvicorn thread serves it. Listing order is newest first by creation sequence, for CVMs and apps
alike, and offset paging applies to it: a CVM created while a client pages through pushes every
later item one place down, one deleted from an earlier page pulls them one place up.

Rendering is cached twice: each CVM's (and app's) item bytes per shape, dropped when that entity
changes, and each page's bytes per (endpoint, shape, page, page_size), dropped on any change.
"""

from __future__ import annotations

import bisect
import random
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

import orjson

from simulator import render
from simulator.evolve import DEFAULT_TOTAL, KINDS, Step, default_mix, parse_counts, record_of
from simulator.generate import (
    ADJECTIVES,
    EPOCH,
    INSTANCE_TYPES,
    NOUNS,
    STEP_DURATION,
    build_fleet,
    hex_id,
)
from simulator.model import App, Creator, Cvm, JsonDict, Node, Workspace, iso
from simulator.paging import PageRequest
from simulator.shapes import SHAPES, Shape

MAX_FLEET_SIZE: Final = 200_000

#: What a listing holds: CVMs or apps.
E = TypeVar("E", Cvm, App)
#: A cached page: endpoint, shape, page, page size.
PageKey = tuple[str, Shape, int, int]

#: Alters one item of a page: given its entity and clean dict, changes the dict in place.
ItemAlter = Callable[[Cvm | App, JsonDict], None]
#: Chooses which items of a page to alter: the alteration for an entity, or None to leave it.
ItemPicker = Callable[[Cvm | App], ItemAlter | None]


class Fleet:
    """A seeded synthetic Phala Cloud fleet of ``size`` CVMs (0 to 200,000).

    The same ``(size, seed)`` gives the same fleet, and the same sequence of evolve calls (with
    their seeds) gives the same changes.
    """

    def __init__(self, size: int = 1000, seed: int = 0) -> None:
        if not 0 <= size <= MAX_FLEET_SIZE:
            raise ValueError(f"a fleet has 0 to {MAX_FLEET_SIZE} CVMs, not {size}")
        self.seed = seed
        self.lock = threading.RLock()
        self._factory, apps, cvms = build_fleet(seed, size)
        self.salt = self._factory.salt
        self.clock: datetime = EPOCH
        self.generation = 0
        self._live: list[Cvm] = cvms  # creation order
        self._live_seqs: list[int] = [c.seq for c in cvms]
        self._deleted: dict[int, tuple[int, Cvm]] = {}  # seq -> (step it was deleted in, CVM)
        self._apps: list[App] = apps  # creation order
        self._next_seq = len(cvms) + 1
        self._refs: dict[Node | Workspace | Creator, int] = {}
        self._frags: dict[Shape, dict[Cvm, bytes]] = {s: {} for s in SHAPES}
        self._basic_frags: dict[Cvm, bytes] = {}
        self._app_frags: dict[Shape, dict[App, bytes]] = {s: {} for s in SHAPES}
        self._pages: dict[PageKey, bytes] = {}
        self._steps: list[list[JsonDict]] = []
        self._tick = 0
        for c in cvms:
            self._ref(c, 1)
            c.published = True
        for e in self._refs:
            e.published = True
        for a in apps:
            a.published = True

    # ------------------------------------------------------------------ reading

    @property
    def cvm_count(self) -> int:
        return len(self._live)

    @property
    def app_count(self) -> int:
        return len(self._apps)

    def vm_uuids(self) -> list[str]:
        """The live CVMs' normalized VM UUIDs, in listing order (newest first)."""
        with self.lock:
            return [c.key for c in reversed(self._live)]

    def app_ids(self) -> list[str]:
        with self.lock:
            return [a.app_id for a in reversed(self._apps)]

    def cvms(self) -> list[Cvm]:
        """The live CVM objects, newest first (read-only use)."""
        with self.lock:
            return self._live[::-1]

    def apps(self) -> list[App]:
        with self.lock:
            return self._apps[::-1]

    def snapshot(self) -> JsonDict:
        """The visible fleet as canonical records, keyed by entity type then entity id."""
        with self.lock:
            refs = [e for e, n in self._refs.items() if n > 0]
            return {
                "cvms": {c.key: record_of(c) for c in reversed(self._live)},
                "apps": {a.app_id: record_of(a) for a in reversed(self._apps)},
                "nodes": {str(n.id): record_of(n) for n in refs if isinstance(n, Node)},
                "workspaces": {w.id: record_of(w) for w in refs if isinstance(w, Workspace)},
                "creators": {u.id: record_of(u) for u in refs if isinstance(u, Creator)},
            }

    def changes(self, since: int = 0) -> list[list[JsonDict]]:
        """The ground truth: the net changes of every step from ``since`` on (a copy)."""
        with self.lock:
            return orjson.loads(orjson.dumps(self._steps[since:]))  # type: ignore[no-any-return]

    @property
    def step_count(self) -> int:
        return len(self._steps)

    # ------------------------------------------------------------------ rendering

    def cvm_fragment(self, cvm: Cvm, shape: Shape) -> bytes:
        cache = self._frags[shape]
        frag = cache.get(cvm)
        if frag is None:
            frag = cache[cvm] = orjson.dumps(render.cvm_item(cvm, shape, self.salt))
        return frag

    def _member_fragment(self, shape: Shape) -> Callable[[Cvm], orjson.Fragment]:
        if shape == "current":
            return lambda c: orjson.Fragment(self.cvm_fragment(c, "current"))

        def basic(c: Cvm) -> orjson.Fragment:
            frag = self._basic_frags.get(c)
            if frag is None:
                frag = self._basic_frags[c] = orjson.dumps(render.cvm_basic(c))
            return orjson.Fragment(frag)

        return basic

    def app_fragment(self, app: App, shape: Shape) -> bytes:
        cache = self._app_frags[shape]
        frag = cache.get(app)
        if frag is None:
            item = render.app_item(app, shape, self._member_fragment(shape))
            frag = cache[app] = orjson.dumps(item)
        return frag

    def cvm_page(
        self, shape: Shape, page: int, page_size: int, picker: ItemPicker | None = None
    ) -> tuple[bytes, list[Cvm]]:
        """One ``/cvms/paginated`` page's bytes and the CVMs on it.

        Without a ``picker`` the bytes come from (and go to) the page cache; with one, each item
        the picker chooses is rendered afresh and altered (schema drift), the rest are cached.
        """
        with self.lock:
            return self._page(
                ("cvms", shape, page, page_size),
                self._live,
                lambda c: self.cvm_fragment(c, shape),
                lambda c: render.cvm_item(c, shape, self.salt),
                render.cvm_envelope,
                picker,
            )

    def app_page(
        self, shape: Shape, page: int, page_size: int, picker: ItemPicker | None = None
    ) -> tuple[bytes, list[App]]:
        """One ``/apps`` page's bytes and the apps on it (see :meth:`cvm_page`)."""
        with self.lock:
            return self._page(
                ("apps", shape, page, page_size),
                self._apps,
                lambda a: self.app_fragment(a, shape),
                lambda a: render.app_item(a, shape, self._member_fragment(shape)),
                render.app_envelope,
                picker,
            )

    def _page(
        self,
        key: PageKey,
        listing: list[E],
        fragment: Callable[[E], bytes],
        fresh: Callable[[E], JsonDict],
        envelope: Callable[[list[Any], int, int, int], bytes],
        picker: ItemPicker | None,
    ) -> tuple[bytes, list[E]]:
        """One page of ``listing`` (``key`` = endpoint, shape, page, page size) and its entities.

        ``fragment`` gives an entity's cached item bytes, ``fresh`` a new item dict for the picker
        to alter, ``envelope`` wraps the items.
        """
        _, _, page, page_size = key
        items = PageRequest(page, page_size).slice(listing)
        if picker is None and (body := self._pages.get(key)) is not None:
            return body, items
        out: list[Any] = []
        for entity in items:
            alter = picker(entity) if picker else None
            if alter is None:
                out.append(orjson.Fragment(fragment(entity)))
            else:
                d = fresh(entity)
                alter(entity, d)
                out.append(d)
        body = envelope(out, len(listing), page, page_size)
        if picker is None:
            self._pages[key] = body
        return body, items

    def warm(self, shapes: tuple[Shape, ...] = SHAPES) -> None:
        """Render every item fragment now (a server can do this before it listens)."""
        with self.lock:
            for shape in shapes:
                for c in self._live:
                    self.cvm_fragment(c, shape)
                for a in self._apps:
                    self.app_fragment(a, shape)

    # ------------------------------------------------------------------ evolving

    def evolve(
        self,
        counts: dict[str, int] | None = None,
        *,
        seed: int | None = None,
        total: int | None = None,
    ) -> list[JsonDict]:
        """Apply one step of changes and return its ground truth (also kept for :meth:`changes`).

        ``counts`` maps kinds (:data:`~.evolve.KINDS`) to how many of each; without it, ``total``
        changes (default 10) are drawn from the default mix. ``seed`` (default: the step's index)
        drives every choice. A kind with nothing to act on (``restore`` with nothing deleted) is
        skipped.
        """
        plan = parse_counts(counts) if counts is not None else None
        if total is not None and (isinstance(total, bool) or total < 0):
            raise ValueError(f"total must be a non-negative integer, not {total!r}")
        with self.lock:
            rng = random.Random(len(self._steps) if seed is None else seed)
            if plan is None:
                plan = default_mix(rng, DEFAULT_TOTAL if total is None else total)
            step = self._begin(rng)
            ops: dict[str, Callable[[random.Random, Step], None]] = {
                "create": self._op_create,
                "delete": self._op_delete,
                "restart": self._op_restart,
                "resize": self._op_resize,
                "move": self._op_move,
                "rename": self._op_rename,
                "rename_workspace": self._op_rename_workspace,
                "restore": self._op_restore,
            }
            for kind in KINDS:  # a fixed order, so a plan means the same whatever its key order
                for _ in range(plan.get(kind, 0)):
                    ops[kind](rng, step)
            return self._end(step)

    def page_drift(
        self, endpoint: str, *, insert: int, delete: int, offset: int, seed: int
    ) -> list[JsonDict]:
        """Insert ``insert`` items at the top and delete ``delete`` among the first ``offset``.

        What a server does to a client paging through (a step of the ground truth). ``apps``
        endpoint: inserts new apps (each with one CVM); apps are never deleted.
        """
        with self.lock:
            rng = random.Random(seed)
            step = self._begin(rng)
            if endpoint == "cvms" and delete:  # first, so that only served items go
                n = len(self._live)
                served = range(min(offset, n))
                chosen = [
                    self._live[n - 1 - p] for p in rng.sample(served, min(delete, len(served)))
                ]
                for c in chosen:
                    self._remove(c, step)
            for _ in range(insert):
                self._op_create(rng, step, new_app=endpoint == "apps")
            return self._end(step)

    def _begin(self, rng: random.Random) -> Step:
        self.clock += STEP_DURATION
        self._factory.rng = rng
        self._tick = 0
        return Step(lambda e: self._refs.get(e, 0) > 0)

    def _end(self, step: Step) -> list[JsonDict]:
        changes = step.finish()
        self._steps.append(changes)
        self._pages.clear()
        self.generation += 1
        return orjson.loads(orjson.dumps(changes))  # type: ignore[no-any-return]

    def _now(self) -> datetime:
        self._tick += 1
        return self.clock + timedelta(seconds=self._tick)

    def _ref(self, c: Cvm, delta: int) -> None:
        for e in (c.node, c.workspace, c.creator):
            if e is not None:
                self._refs[e] = self._refs.get(e, 0) + delta

    def _invalidate(self, c: Cvm) -> None:
        for shape in SHAPES:
            self._frags[shape].pop(c, None)
            self._app_frags[shape].pop(c.app, None)
        self._basic_frags.pop(c, None)

    def _insert(self, c: Cvm, step: Step) -> None:
        step.touch_cvm(c)
        i = bisect.bisect_left(self._live_seqs, c.seq)
        self._live.insert(i, c)
        self._live_seqs.insert(i, c.seq)
        bisect.insort(c.app.members, c, key=lambda m: m.seq)
        self._ref(c, 1)
        c.live = True
        self._deleted.pop(c.seq, None)
        self._invalidate(c)

    def _remove(self, c: Cvm, step: Step) -> None:
        step.touch_cvm(c)
        i = bisect.bisect_left(self._live_seqs, c.seq)
        del self._live[i]
        del self._live_seqs[i]
        c.app.members.remove(c)
        self._ref(c, -1)
        c.live = False
        self._deleted[c.seq] = (len(self._steps), c)
        self._invalidate(c)

    def _pick(self, rng: random.Random, ok: Callable[[Cvm], bool] = lambda c: True) -> Cvm | None:
        for _ in range(50):
            if not self._live:
                return None
            c = self._live[rng.randrange(len(self._live))]
            if ok(c):
                return c
        return None

    def _changing(self, c: Cvm, step: Step) -> None:
        step.touch_cvm(c)
        self._invalidate(c)
        c.updated_iso = iso(self._now())

    def _op_create(self, rng: random.Random, step: Step, *, new_app: bool = False) -> None:
        full = [a for a in self._apps[-200:] if not a.minimal] if not new_app else []
        if full and rng.random() < 0.5:
            app = rng.choice(full)
            step.touch(app)
        else:
            app = self._factory.new_app(self._now())
            step.touch_new(app)
            self._apps.append(app)
        c = self._factory.new_cvm(app, self._now(), self._next_seq)
        self._next_seq += 1
        step.touch_new(c)
        self._insert(c, step)

    def _op_delete(self, rng: random.Random, step: Step) -> None:
        c = self._pick(rng)
        if c is not None:
            self._remove(c, step)

    def _op_restore(self, rng: random.Random, step: Step) -> None:
        # Only CVMs deleted by an earlier step: one deleted and restored in the same step nets out.
        earlier = [c for deleted_in, c in self._deleted.values() if deleted_in < len(self._steps)]
        if earlier:
            self._insert(rng.choice(earlier), step)

    def _op_restart(self, rng: random.Random, step: Step) -> None:
        c = self._pick(rng)
        if c is not None:
            self._changing(c, step)
            c.instance_id = hex_id(rng, 20)
            c.status = "running"
            c.in_progress = False
            c.boot_error = None
            c.uptime = "0d 0h 1m"

    def _op_resize(self, rng: random.Random, step: Step) -> None:
        c = self._pick(rng)
        if c is None:
            return
        sizes = [t for t in INSTANCE_TYPES if t[0] is not None and t[0] != c.instance_type]
        itype, vcpu, mem, disk, gpus, price, _ = rng.choice(sizes)
        self._changing(c, step)
        c.instance_type, c.vcpu, c.memory_mb, c.disk_gb, c.gpus, c.price = (
            itype,
            vcpu,
            mem,
            disk,
            gpus,
            price,
        )

    def _op_move(self, rng: random.Random, step: Step) -> None:
        nodes = self._factory.nodes
        c = self._pick(rng, lambda c: c.node is not None)
        if c is None or len(nodes) < 2:
            return
        target = rng.choice([n for n in nodes if n is not c.node])
        self._changing(c, step)
        step.touch(target)
        self._ref(c, -1)
        c.node = target
        self._ref(c, 1)

    def _op_rename(self, rng: random.Random, step: Step) -> None:
        c = self._pick(rng)
        if c is not None:
            self._changing(c, step)
            c.name = f"{rng.choice(ADJECTIVES)}-{rng.choice(NOUNS)}-{rng.randrange(10_000)}"

    def _op_rename_workspace(self, rng: random.Random, step: Step) -> None:
        c = self._pick(rng, lambda c: c.workspace is not None)
        if c is None or c.workspace is None:
            return
        ws = c.workspace
        step.touch(ws)
        for a in self._apps:
            if a.workspace is ws:
                step.touch(a)
                for shape in SHAPES:
                    self._app_frags[shape].pop(a, None)
        for m in self._live:
            if m.workspace is ws:
                self._invalidate(m)
        ws.name = (
            f"{rng.choice(ADJECTIVES).title()} {rng.choice(NOUNS).title()} {rng.randrange(10_000)}"
        )
