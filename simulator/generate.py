"""Seeded construction of fleet entities: the initial fleet and the CVMs and apps evolve adds.

Everything comes from one :class:`random.Random`, so the same seed and size give the same fleet.
The mix (regions, instance types, statuses, replicas per app, nulls) is chosen to look like a real
fleet; see :data:`INSTANCE_TYPES` and :data:`STATUSES` for the weights.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Final, TypeVar

from simulator.model import App, Creator, Cvm, Kms, Node, OsImage, Profile, Workspace, iso

T = TypeVar("T")

#: The fleet's clock at generation time; evolve steps advance it by :data:`STEP_DURATION`.
EPOCH: Final = datetime(2026, 4, 15, 12, 0, 0, tzinfo=UTC)
STEP_DURATION: Final = timedelta(hours=1)
HISTORY: Final = timedelta(days=540)

REGIONS: Final = (
    "us-west-1",
    "us-east-1",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-1",
    "ap-northeast-1",
)

#: name, vcpu, memory MB, disk GB, gpus, hourly price, weight. ``None`` name: a custom size.
INSTANCE_TYPES: Final[tuple[tuple[str | None, int, int, int, int | None, str | None, int], ...]] = (
    ("tdx.small", 1, 2048, 20, 0, "0.058", 30),
    ("tdx.medium", 2, 4096, 40, 0, "0.116", 28),
    ("tdx.large", 4, 8192, 80, 0, "0.232", 18),
    ("tdx.xlarge", 8, 16384, 160, 0, "0.464", 8),
    ("tdx.2xlarge", 16, 32768, 320, 0, "0.928", 3),
    ("h200.small", 24, 196608, 1000, 1, "3.500", 2),
    ("h200.8x", 192, 1572864, 8000, 8, "28.000", 1),
    (None, 3, 3000, 25, None, None, 5),  # custom legacy sizes: odd MB (memory_in_gb not round)
    (None, 2, 1536, 10, None, None, 5),
)

#: status, in_progress, weight
STATUSES: Final = (
    ("running", False, 780),
    ("stopped", False, 90),
    ("exited", False, 30),
    ("error", False, 20),
    ("starting", True, 25),
    ("stopping", True, 10),
    ("restarting", True, 10),
    ("creating", True, 10),
    ("shutting_down", True, 5),
)

NODE_STATUSES: Final = (("ONLINE", 90), ("MAINTENANCE", 6), ("OFFLINE", 4))
BILLING_PERIODS: Final = (("hourly", 60), ("monthly", 25), ("skip", 10), (None, 5))
PROJECT_TYPES: Final = (("dstack", 70), ("webdemo", 15), ("redpill", 5), (None, 10))
OS_IMAGES: Final = (
    ("dstack-0.5.4", "0.5.4", False),
    ("dstack-0.5.3", "0.5.3", False),
    ("dstack-dev-0.5.3", "0.5.3", True),
    ("dstack-0.4.2", "0.4.2", False),
)
ADJECTIVES: Final = (
    "amber", "brisk", "cobalt", "dusty", "eager", "fuzzy", "gentle", "hidden", "ivory", "jolly",
    "keen", "lunar", "misty", "noble", "olive", "proud", "quiet", "rapid", "silent", "tidy",
)  # fmt: skip
NOUNS: Final = (
    "otter", "falcon", "harbor", "meadow", "comet", "lantern", "pixel", "canyon", "ember",
    "glacier", "orchard", "quasar", "raven", "summit", "tundra", "vertex", "willow", "zephyr",
    "beacon", "delta",
)  # fmt: skip
APP_KINDS: Final = (
    "api", "agent", "relay", "oracle", "indexer", "worker", "gateway", "llm", "bot", "vault",
)  # fmt: skip

B62: Final = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def hashid(prefix: str, n: int, salt: int) -> str:
    """A unique, opaque ``prefix_xxxxxxxx`` id for the integer ``n`` (a bijection on 40 bits)."""
    x = (n * 0x9E3779B1 + salt) % (1 << 40)
    out = []
    for _ in range(7):
        x, r = divmod(x, 62)
        out.append(B62[r])
    return f"{prefix}_{''.join(out)}"


def weighted(rng: random.Random, table: Sequence[tuple[T, int]]) -> T:
    total = sum(w for _, w in table)
    pick = rng.randrange(total)
    for value, w in table:
        pick -= w
        if pick < 0:
            return value
    raise AssertionError("unreachable")


def hex_id(rng: random.Random, nbytes: int) -> str:
    return rng.getrandbits(nbytes * 8).to_bytes(nbytes, "big").hex()


def uptime_text(rng: random.Random) -> str:
    return f"{rng.randrange(60)}d {rng.randrange(24)}h {rng.randrange(60)}m"


class Factory:
    """Makes fleet entities from one seeded random stream.

    Numbering is global (``next_*`` counters), so ids stay unique when evolve adds entities.
    """

    def __init__(self, seed: int, size: int) -> None:
        self.rng = random.Random(seed)
        self.salt = random.Random(seed ^ 0x5EED).getrandbits(32)
        rng = self.rng
        self.next_cvm = 1
        self.next_app = 1
        regions = REGIONS[: max(2, min(len(REGIONS), 2 + size // 2000))]
        n_nodes = max(3, min(600, -(-size // 400)))
        self.nodes = [
            Node(
                id=100 + i,
                name=f"{regions[i % len(regions)]}-tdx-{i // len(regions) + 1:03d}",
                region=regions[i % len(regions)],
                device_id=hex_id(rng, 32),
                ppid=hex_id(rng, 16),
                status=weighted(rng, NODE_STATUSES),
                version=rng.choice(("0.5.4", "0.5.3", "0.5.2")),
            )
            for i in range(n_nodes)
        ]
        self.kms = [
            Kms(
                id=hashid("kms", i + 1, self.salt),
                slug=slug,
                url=f"https://kms.{slug}.phala.network",
                version=version,
                kms_type=kms_type,
                chain_id=chain,
                contract_address=None if chain is None else "0x" + hex_id(rng, 20),
                gateway_app_id=None if chain is None else "0x" + hex_id(rng, 20),
                rpc_endpoint=None if chain is None else f"https://rpc.{slug}.example/v1",
            )
            for i, (slug, kms_type, chain, version) in enumerate(
                (
                    ("phala-prod", "phala", None, "v0.5.4"),
                    ("ethereum-mainnet", "ethereum", 1, "v0.5.3"),
                    ("base-mainnet", "base", 8453, "v0.5.3"),
                    ("legacy-prod", "legacy", None, "v0.3.6"),
                )
            )
        ]
        n_ws = max(2, size // 40)
        self.workspaces = [self._workspace(i) for i in range(n_ws)]
        n_users = max(3, size // 25)
        self.creators = [
            Creator(
                number=1000 + i,
                id=hashid("usr", 1000 + i, self.salt),
                username=f"{rng.choice(ADJECTIVES)}_{rng.choice(NOUNS)}{i}",
                avatar_url=None
                if rng.random() < 0.4
                else f"https://avatars.example/u/{1000 + i}.png",
            )
            for i in range(n_users)
        ]
        # Members of each workspace: every user has a home workspace, some a second one.
        self.members: dict[str, list[Creator]] = {w.id: [] for w in self.workspaces}
        for i, user in enumerate(self.creators):
            self.members[self.workspaces[i % n_ws].id].append(user)
            if rng.random() < 0.2:
                self.members[rng.choice(self.workspaces).id].append(user)

    def _workspace(self, i: int) -> Workspace:
        rng = self.rng
        name = f"{rng.choice(ADJECTIVES).title()} {rng.choice(NOUNS).title()} {i}"
        return Workspace(
            id=hashid("wks", i + 1, self.salt),
            name=name,
            slug=None if rng.random() < 0.05 else name.lower().replace(" ", "-"),
            avatar_url=None if rng.random() < 0.5 else f"https://avatars.example/w/{i + 1}.png",
        )

    def new_app(self, created_at: datetime) -> App:
        rng = self.rng
        seq = self.next_app
        self.next_app += 1
        ws = None if rng.random() < 0.01 else rng.choice(self.workspaces)
        kms_weights = ((self.kms[0], 60), (self.kms[1], 15), (self.kms[2], 15), (self.kms[3], 10))
        if rng.random() < 0.05:  # a minimal app: listed with its app_id only
            return App(
                seq=seq,
                app_id=hex_id(rng, 20),
                project_id=None,
                name=None,
                provision_type=None,
                icon_url=None,
                created_at=created_at,
                created_iso=iso(created_at),
                kms=None if rng.random() < 0.5 else self.kms[3],
                profile=None,
                workspace=ws,
                gateway_domain=None if rng.random() < 0.3 else "dstack-legacy.phala.network",
            )
        name = f"{rng.choice(ADJECTIVES)}-{rng.choice(NOUNS)}-{rng.choice(APP_KINDS)}"
        profile = None
        if rng.random() < 0.6:
            profile = Profile(
                display_name=name.replace("-", " ").title(),
                avatar_url=None if rng.random() < 0.5 else f"https://cdn.example/apps/{seq}.png",
                description=None
                if rng.random() < 0.3
                else f"The {name} service, deployed on dstack.",
                custom_domain=None if rng.random() < 0.8 else f"{name}.example.com",
            )
        return App(
            seq=seq,
            app_id=hex_id(rng, 20),
            project_id=hashid("prj", seq, self.salt),
            name=name,
            provision_type=rng.choice(("dstack", "dstack", "phala-cloud", None)),
            icon_url=None if rng.random() < 0.7 else f"https://cdn.example/icons/{seq}.svg",
            created_at=created_at,
            created_iso=iso(created_at),
            kms=weighted(rng, kms_weights),
            profile=profile,
            workspace=ws,
            gateway_domain=f"dstack-{rng.choice(REGIONS[:3])}.phala.network",
        )

    def replica_count(self) -> int:
        r = self.rng.random()
        if r < 0.55:
            return 1
        if r < 0.75:
            return 2
        if r < 0.87:
            return 3
        if r < 0.95:
            return self.rng.randint(4, 5)
        return self.rng.randint(6, 12)

    def new_cvm(self, app: App, created_at: datetime, seq: int) -> Cvm:
        rng = self.rng
        itype, vcpu, mem, disk, gpus, price, _ = weighted(rng, [(t, t[6]) for t in INSTANCE_TYPES])
        status, in_progress = weighted(rng, [((s, p), w) for s, p, w in STATUSES])
        ws = app.workspace
        members = self.members[ws.id] if ws is not None else self.creators
        creator = None if rng.random() < 0.03 else rng.choice(members)
        node = None if app.minimal and rng.random() < 0.3 else rng.choice(self.nodes)
        os_ = None
        if rng.random() > 0.03:
            os_name, os_version, is_dev = rng.choice(OS_IMAGES)
            os_ = OsImage(os_name, os_version, is_dev, hex_id(rng, 32))
        replica = len(app.members)
        base = app.name or f"{rng.choice(NOUNS)}-{rng.choice(APP_KINDS)}"
        return Cvm(
            seq=seq,
            vm_uuid=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            hashid=hashid("cvm", self._cvm_number(), self.salt),
            dashless=rng.random() < 0.3,
            name=base if replica == 0 else f"{base}-{replica + 1}",
            app=app,
            instance_id=None if status == "creating" else hex_id(rng, 20),
            status=status,
            in_progress=in_progress,
            listed=rng.random() < 0.15,
            instance_type=itype,
            vcpu=vcpu,
            memory_mb=mem,
            disk_gb=disk,
            gpus=gpus,
            price=price,
            billing_period=weighted(rng, BILLING_PERIODS),
            node=node,
            workspace=ws,
            creator=creator,
            project_type=weighted(rng, PROJECT_TYPES),
            os=os_,
            compose_hash=None if rng.random() < 0.02 else hex_id(rng, 32),
            public_logs=rng.random() < 0.7,
            public_sysinfo=rng.random() < 0.7,
            public_tcbinfo=rng.random() < 0.9,
            gateway_enabled=rng.random() < 0.85,
            secure_time=rng.random() < 0.2,
            storage_fs="zfs" if rng.random() < 0.8 else "ext4",
            created_at=created_at,
            created_iso=(created := iso(created_at)),
            updated_iso=created,
            uptime=uptime_text(rng) if status == "running" else "0m",
            boot_error="boot failed: guest agent did not respond" if status == "error" else None,
            variant=rng.getrandbits(16),
        )

    def _cvm_number(self) -> int:
        n = self.next_cvm
        self.next_cvm += 1
        return n


def build_fleet(seed: int, size: int) -> tuple[Factory, list[App], list[Cvm]]:
    """The initial fleet: ``size`` CVMs (in creation order) and the apps they belong to."""
    if size < 0:
        raise ValueError("a fleet cannot have a negative size")
    f = Factory(seed, size)
    rng = f.rng
    start = EPOCH - HISTORY
    span = HISTORY.total_seconds() - 3600
    planned: list[tuple[datetime, App]] = []
    apps: list[App] = []
    remaining = size
    app_times = sorted(start + timedelta(seconds=rng.randrange(int(span))) for _ in range(size))
    i = 0
    while remaining > 0:
        app = f.new_app(app_times[i])
        i += 1
        apps.append(app)
        for k in range(min(f.replica_count(), remaining)):
            delay = 0 if k == 0 else rng.randrange(30 * 86400)
            planned.append((min(app.created_at + timedelta(seconds=delay), EPOCH), app))
            remaining -= 1
    planned.sort(key=lambda p: (p[0], p[1].seq))
    cvms: list[Cvm] = []
    for seq, (created, app) in enumerate(planned, start=1):
        cvm = f.new_cvm(app, created, seq)
        app.members.append(cvm)
        cvms.append(cvm)
    return f, apps, cvms
