"""``fleet_levels``: each target's live CVMs summed per group, kept up to date by every run.

The daily views (``fleet_daily``, ``fleet_daily_usage``) read this table instead of expanding
every CVM state into days. A run that changed the CVM history calls :func:`follow_run` inside
its apply transaction: for each target whose history changed it sums the open history rows per
group (status, region, workspace, instance type), closes the open levels that no longer hold
(``valid_to`` = the run's time, the same instant as the history rows it wrote) and opens the
new ones. A failed run rolls all of it back with the rest of its apply.

The figures equal the history's by construction: a level changes exactly when a run changes one
of its CVMs, and the history changes only at runs. ``migrations/versions/0005`` fills the table
for a database that predates it, from the whole history at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Float,
    MetaData,
    Numeric,
    String,
    Table,
    and_,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    literal_column,
    select,
    union,
    update,
)

from models import Cvm, CvmHistory, FleetLevel, Node, UTCDateTime, table_of
from sync.records import EntityType
from sync.store.bulk import analyze

__all__ = ["GROUP", "STORAGE_USD_PER_GB_HOUR", "follow_run", "refresh"]

_H = table_of(CvmHistory)
_N = table_of(Node)
_L = table_of(FleetLevel)
_CVMS = table_of(Cvm)

#: A level's group: its CVMs share these.
GROUP: Final = ("status", "region", "workspace_id", "instance_type")
#: A level's figures: the sums over its CVMs.
_FIGURES: Final = (
    "cvms", "vcpus", "memory_mb", "disk_gb", "gpus",
    "compute_rate", "compute_unknown", "storage_rate", "storage_unknown",
)  # fmt: skip
#: Phala's public storage price, USD per GB-hour, billed while a CVM exists (running or not);
#: the rate of a CVM whose payload sends no ``hourly_rate.disk`` (docs/schema.md).
STORAGE_USD_PER_GB_HOUR: Final = "0.000139"
_INT64: Final = ("-9223372036854775808", "9223372036854775807")
_NULL_TEXT: Final = "\x1e"  # stands for NULL in comparisons of group columns (PostgreSQL)


def _price(column: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    """A decimal-text price column as a number; NULL where it is not a plain decimal.

    The rule of the views of migration 0003 (their ``price``), so that a level's rate is the sum
    of what ``cvm_daily_usage`` prices each CVM at.
    """
    if dialect == "postgresql":
        is_decimal: ColumnElement[bool] = column.regexp_match(r"^[0-9]{1,12}(\.[0-9]+)?$")
        return case((is_decimal, cast(column, Numeric())))
    glob = column.op("GLOB", is_comparison=True)
    is_decimal = and_(
        column != "",
        ~glob("*[^0-9.]*"),
        ~glob("*.*.*"),
        ~glob(".*"),
        ~glob("*."),
        func.length(column) <= 40,
    )
    return case((is_decimal, cast(column, Float())))


def _rates(dialect: str) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """Each CVM state's compute and storage rate, USD per hour (NULL where unknown)."""
    compute = func.coalesce(
        _price(_H.c.hourly_rate_compute, dialect),
        case((_H.c.billing_period == "hourly", _price(_H.c.compute_billing_price, dialect))),
    )
    storage = func.coalesce(
        _price(_H.c.hourly_rate_disk, dialect),
        _H.c.disk_gb * literal_column(STORAGE_USD_PER_GB_HOUR),
    )
    return compute, storage


def _sum(column: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    """The sum of the known values; NULL when none is known or the sum is beyond 64 bits (absurd
    values the API sent, which the run stores): never an overflow. PostgreSQL sums BIGINT as
    NUMERIC; SQLite's SUM raises on a 64-bit overflow, its TOTAL does not (a float, exact below
    2**53)."""
    total = func.sum(column) if dialect == "postgresql" else func.total(column)
    in_range = total.between(literal_column(_INT64[0]), literal_column(_INT64[1]))
    return case((and_(func.count(column) > 0, in_range), total))


def _same(a: ColumnElement[Any], b: ColumnElement[Any], dialect: str) -> ColumnElement[bool]:
    """``a`` equals ``b``, NULL equal to NULL, in a form PostgreSQL can hash-join on."""
    if dialect != "postgresql":
        return a.is_not_distinct_from(b)
    if isinstance(a.type, String):
        return func.coalesce(a, _NULL_TEXT) == func.coalesce(b, _NULL_TEXT)
    return func.coalesce(a, -1) == func.coalesce(b, -1)


def _scratch(name: str, *, figures: bool) -> Table:
    """A temporary table (dropped at the end, or at commit): groups, with their figures or not."""
    columns = [Column("target", String, nullable=False)]
    columns += [Column(c, String) for c in GROUP]
    if figures:
        columns += [Column(c, _L.c[c].type) for c in _FIGURES]
    return Table(name, MetaData(), *columns, prefixes=["TEMPORARY"], postgresql_on_commit="DROP")


def _matches(a: Table, b: Table, columns: Sequence[str], dialect: str) -> ColumnElement[bool]:
    return and_(a.c.target == b.c.target, *(_same(a.c[c], b.c[c], dialect) for c in columns))


def refresh(
    conn: Connection, targets: Iterable[str], now: datetime, *, everything: bool = True
) -> int:
    """Bring the open levels of ``targets`` in line with their open history rows, as of ``now``.

    With ``everything`` false, only the groups of the CVM states opened or closed at ``now`` are
    summed again (the others cannot have changed): a run that changed 1% of a fleet sums about
    that 1%. Returns how many levels were opened (a level that still holds stays open as it is).
    """
    names = sorted(set(targets))
    if not names:
        return 0
    dialect = conn.dialect.name
    compute, storage = _rates(dialect)
    joined = _H.outerjoin(_N, _N.c.node_id == _H.c.node_id)
    group = [_H.c.target, _H.c.status, _N.c.region, _H.c.workspace_id, _H.c.instance_type]
    summed = select(
        *group,
        func.count().label("cvms"),
        *(_sum(_H.c[name], dialect) for name in ("vcpu", "memory_mb", "disk_gb", "gpus")),
        func.coalesce(func.sum(compute), 0),
        func.sum(case((compute.is_(None), 1), else_=0)),
        func.coalesce(func.sum(storage), 0),
        func.sum(case((storage.is_(None), 1), else_=0)),
    ).select_from(joined)
    summed = summed.where(_H.c.valid_to.is_(None), _H.c.target.in_(names))
    scratch = _scratch("fleet_levels_now", figures=True)
    changed = _scratch("fleet_levels_changed", figures=False)
    made = [scratch] if everything else [scratch, changed]
    for table in made:
        table.create(conn)
    try:
        if not everything:
            at_now = [select(*group).select_from(joined).where(_H.c.target.in_(names), when)
                      for when in (_H.c.valid_from == now, _H.c.valid_to == now)]  # fmt: skip
            conn.execute(insert(changed).from_select(["target", *GROUP], union(*at_now)))
            in_changed = exists().where(
                changed.c.target == _H.c.target,
                *(
                    _same(changed.c[c], col, dialect)
                    for c, col in zip(GROUP, group[1:], strict=True)
                ),
            )
            summed = summed.where(in_changed)
        conn.execute(
            insert(scratch).from_select([c.name for c in scratch.c], summed.group_by(*group))
        )
        empty = [
            t
            for t in names
            if not conn.scalar(
                select(exists().where(_CVMS.c.target == t, _CVMS.c.deleted_at.is_(None)))
            )
        ]
        if empty:  # a target without live CVMs: one level of zeros, so its days stay present
            zeros = dict.fromkeys(_FIGURES, 0)
            conn.execute(insert(scratch), [{"target": t, **zeros} for t in empty])
        # A full refresh with no level open anywhere (a first sync) closes nothing and opens
        # every sum: no test against the open levels at all. Such a test planned with the
        # statistics of an empty table probes the rows the insert is adding (2.9 s instead of
        # 0.3 s at 20k CVMs; 1.6-1.8 s after an ANALYZE of the new schema).
        some_open = not everything or bool(
            conn.scalar(select(exists().where(_L.c.valid_to.is_(None))))
        )
        if everything and some_open:
            # Fresh statistics: with those of an earlier transaction the planner took the open
            # levels for one row and tested each against each new sum, a nested loop (1.7 s of a
            # second target's 5,000-CVM first sync, growing with the product of the two).
            analyze(conn, _L)
        columns = ("target", *GROUP, *_FIGURES)
        held = exists().where(_matches(_L, scratch, columns[1:], dialect))
        open_ = and_(_L.c.target.in_(names), _L.c.valid_to.is_(None), ~held)
        if everything:
            if some_open:
                conn.execute(update(_L).where(open_).values(valid_to=now))
        else:  # the open levels of the changed groups (a join, not a test per open level)
            stale = union(
                select(_L.c.level_id)
                .select_from(_L.join(changed, _matches(changed, _L, GROUP, dialect)))
                .where(open_),
                select(_L.c.level_id).where(open_, _L.c.cvms == 0),
            )
            ids = list(conn.scalars(stale))
            for start in range(0, len(ids), 1000):
                chunk = ids[start : start + 1000]
                conn.execute(update(_L).where(_L.c.level_id.in_(chunk)).values(valid_to=now))
        fresh = select(*(scratch.c[c] for c in columns), literal(now, UTCDateTime()).label("at"))
        if some_open:
            fresh = fresh.where(
                ~exists().where(
                    _L.c.valid_to.is_(None), _matches(_L, scratch, columns[1:], dialect)
                )
            )
        opened = conn.execute(insert(_L).from_select([*columns, "valid_from"], fresh)).rowcount
    finally:
        for table in made:
            table.drop(conn)
    return int(opened or 0)


def follow_run(
    conn: Connection, *, target: str, now: datetime, counts: Mapping[EntityType, Any]
) -> int:
    """After a run's apply at ``now``: refresh the levels of every target whose history changed.

    Those are the owners of the CVM states the run opened or closed (ownership can move between
    targets, and a run of one target can change a CVM that another owns), and ``target`` itself.
    Only the groups of those states are summed again, unless a target has no level yet (its first
    run) or a node changed (its region may have, and with it its CVMs' groups): then every group
    of every target. A run that changed nothing costs one indexed lookup. Returns how many levels
    were opened.
    """
    touched = set(conn.scalars(select(_H.c.target).where(_H.c.valid_from == now).distinct()))
    cvm, node = counts.get("cvm"), counts.get("node")
    if cvm is not None and cvm.deleted:
        closed = select(_H.c.target).where(_H.c.valid_to == now).distinct()
        touched.update(conn.scalars(closed))
    if node is not None and (node.updated or node.restored or node.deleted):
        opened = select(_L.c.target).where(_L.c.valid_to.is_(None)).distinct()
        return refresh(conn, {target, *touched, *conn.scalars(opened)}, now)
    with_levels = select(_L.c.target).where(
        _L.c.target.in_(sorted({target, *touched})), _L.c.valid_to.is_(None)
    )
    missing = {target, *touched} - set(conn.scalars(with_levels.distinct()))
    if missing:
        return refresh(conn, {target, *touched}, now)
    return refresh(conn, touched, now, everything=False) if touched else 0
