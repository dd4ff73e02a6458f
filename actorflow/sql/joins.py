"""Joins of two tables: interval joins on their time attributes.

``FROM a JOIN b ON a.k = b.k AND a.rowtime BETWEEN b.rowtime - INTERVAL ... AND b.rowtime``: the
ON condition splits into equal keys, time bounds on the two time attributes, and the rest (a filter
on the joined rows). Columns of the joined rows are qualified by the tables' aliases (``a.card_id``).

>>> from actorflow.sql.types import BIGINT
>>> _qualify(exp.column("n"), {"a.n": BIGINT, "b.m": BIGINT}).sql()
'a.n'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlglot import exp

from actorflow.operators.base import Collector
from actorflow.operators.joins import ProcessJoinFunction
from actorflow.sql.accessors import error_at, from_clause, interval_millis
from actorflow.sql.expressions import compile_filter
from actorflow.sql.relation import Relation, getter, tuple_getter
from actorflow.sql.types import SqlType

if TYPE_CHECKING:
    from actorflow.sql.planner import Planner

__all__ = ["plan_join"]


def plan_join(planner: Planner, select: exp.Select) -> Relation:
    """``FROM a JOIN b ON a.k = b.k AND a.rowtime BETWEEN b.rowtime - INTERVAL ... AND
    b.rowtime [+ INTERVAL ...]``: an interval join of two append-only tables on their time
    attributes (both sides' rows kept while the other side's watermark may still bring a
    partner). Columns are qualified by the tables' aliases (``a.card_id``); an unqualified
    name that only one side has means that side's column. The result has no time attribute."""
    joins = select.args["joins"]
    join = joins[0]
    if len(joins) > 1 or join.args.get("side") or join.args.get("kind") not in (None, "INNER"):
        raise error_at(join, "one inner JOIN per query is supported for now")
    for unsupported in ("group", "windows", "distinct", "order", "limit", "qualify", "match", "having"):
        if select.args.get(unsupported):
            raise error_at(
                select.args[unsupported], f"{unsupported.upper()} with a JOIN is not supported yet"
            )
    source = from_clause(select)
    assert source is not None
    sides = []
    for node in (source.this, join.this):
        if not isinstance(node, exp.Table):
            raise error_at(node, "a JOIN joins tables (or views) here")
        relation = planner.rows(planner.table_relation(node))
        if relation.rowtime is None or relation.changelog:
            raise error_at(node, "an interval join needs two append-only tables with time attributes")
        sides.append((node.alias_or_name, relation))
    (left_alias, left), (right_alias, right) = sides
    if left_alias == right_alias:
        raise error_at(join, f"both sides of the JOIN are called {left_alias!r}: give one an alias")
    columns = {f"{left_alias}.{k}": v for k, v in left.columns.items()}
    columns.update({f"{right_alias}.{k}": v for k, v in right.columns.items()})
    condition = join.args.get("on")
    if condition is None:
        raise error_at(join, "a JOIN needs ON: equal keys and time bounds")
    keys: list[tuple[str, str]] = []
    lower, upper = -(2**62), 2**62
    residual: list[exp.Expression] = []
    aliases = (left_alias, right_alias)
    for conjunct in _conjuncts(_qualify(condition, columns)):
        pair = _key_pair(conjunct, aliases, left, right)
        if pair is not None:
            keys.append(pair)
            continue
        bounds = _time_bounds(conjunct, aliases, left.rowtime, right.rowtime)
        if bounds is not None:
            lower, upper = max(lower, bounds[0]), min(upper, bounds[1])
            continue
        residual.append(conjunct)
    if not keys:
        raise error_at(condition, "an interval join needs at least one equality of the two sides' columns")
    if lower == -(2**62) or upper == 2**62:
        raise error_at(
            condition,
            "an interval join needs both time bounds on the time attributes "
            f"({left_alias}.{left.rowtime} BETWEEN {right_alias}.{right.rowtime} - INTERVAL ... "
            "AND ...); "
            "a regular (unbounded) join is not supported yet",
        )
    if lower > upper:
        raise error_at(condition, "the join's time bounds leave no interval")
    left_keys, right_keys = [k for k, _ in keys], [k for _, k in keys]
    joined = (
        left.stream.key_by(tuple_getter(left_keys) if len(keys) > 1 else getter(left_keys[0]))
        .interval_join(
            right.stream.key_by(tuple_getter(right_keys) if len(keys) > 1 else getter(right_keys[0]))
        )
        .between(lower, upper)
        .process(_JoinRows(left_alias, right_alias), name=planner.node_name("interval-join"))
    )
    relation = Relation(joined, columns)
    where = select.args.get("where")
    conditions = residual + ([_qualify(where.this, columns)] if where is not None else [])
    if conditions:
        node = conditions[0]
        for more in conditions[1:]:
            node = exp.And(this=node, expression=more)
        keep = compile_filter(node, columns, functions=planner.catalog.functions)
        relation = Relation(relation.stream.filter(keep, name=planner.node_name("where")), columns)
    items = [
        _qualify(item, columns) if not isinstance(item, exp.Star) else item for item in select.expressions
    ]
    return planner.project(items, relation)


class _JoinRows(ProcessJoinFunction[dict[str, Any], dict[str, Any], dict[str, Any]]):
    """One joined row: both sides' columns, qualified by their aliases."""

    def __init__(self, left: str, right: str) -> None:
        self.left = left + "."
        self.right = right + "."

    def process_element(
        self, left: dict[str, Any], right: dict[str, Any], ctx: Any, out: Collector
    ) -> None:
        row = {self.left + k: v for k, v in left.items()}
        row.update({self.right + k: v for k, v in right.items()})
        out.collect(row)


def _conjuncts(node: exp.Expression) -> list[exp.Expression]:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.And):
        return _conjuncts(node.this) + _conjuncts(node.expression)
    return [node]


def _qualify(node: exp.Expression, columns: dict[str, SqlType]) -> exp.Expression:
    """``node`` with each unqualified column that exactly one side has qualified by that side."""

    def swap(found: exp.Expression) -> exp.Expression:
        if isinstance(found, exp.Column) and not found.table and not isinstance(found.this, exp.Star):
            owners = [key.rpartition(".")[0] for key in columns if key.rpartition(".")[2] == found.name]
            if len(owners) > 1:
                raise error_at(
                    found, f"column {found.name!r} is ambiguous: qualify it ({', '.join(owners)})"
                )
            if owners:
                return exp.column(found.name, table=owners[0])
        return found

    return node.copy().transform(swap)


def _side(column: exp.Expression, aliases: tuple[str, str]) -> int | None:
    if isinstance(column, exp.Column) and column.table in aliases:
        return aliases.index(column.table)
    return None


def _key_pair(
    node: exp.Expression, aliases: tuple[str, str], left: Relation, right: Relation
) -> tuple[str, str] | None:
    """``(left column, right column)`` of an equality of the two sides' columns, else None."""
    if not isinstance(node, exp.EQ):
        return None
    a, b = node.this, node.expression
    sides = (_side(a, aliases), _side(b, aliases))
    if sides == (1, 0):
        a, b = b, a
    elif sides != (0, 1):
        return None
    if a.name not in left.columns or b.name not in right.columns:
        return None
    return a.name, b.name


def _time_point(
    node: exp.Expression, aliases: tuple[str, str], rowtimes: tuple[str | None, str | None]
) -> tuple[int, int] | None:
    """``(side, offset ms)`` of ``side.rowtime [+|- INTERVAL ...]``, else None."""
    offset = 0
    if isinstance(node, exp.Add | exp.Sub) and isinstance(node.expression, exp.Interval):
        offset = interval_millis(node.expression) * (1 if isinstance(node, exp.Add) else -1)
        node = node.this
    side = _side(node, aliases)
    if side is None or node.name != rowtimes[side]:
        return None
    return side, offset


def _time_bounds(
    node: exp.Expression, aliases: tuple[str, str], left_rowtime: str | None, right_rowtime: str | None
) -> tuple[int, int] | None:
    """The ``(lower, upper)`` of ``right.ts - left.ts`` a time condition allows, else None."""
    rowtimes = (left_rowtime, right_rowtime)
    if isinstance(node, exp.Between):
        low = _time_bounds(exp.GTE(this=node.this, expression=node.args["low"]), aliases, *rowtimes)
        high = _time_bounds(exp.LTE(this=node.this, expression=node.args["high"]), aliases, *rowtimes)
        if low is None or high is None:
            return None
        return max(low[0], high[0]), min(low[1], high[1])
    kinds: dict[type[exp.Expression], str] = {exp.GTE: ">=", exp.GT: ">", exp.LTE: "<=", exp.LT: "<"}
    kind = kinds.get(type(node))
    if kind is None:
        return None
    a = _time_point(node.this, aliases, rowtimes)
    b = _time_point(node.expression, aliases, rowtimes)
    if a is None or b is None or a[0] == b[0]:
        return None
    if a[0] == 1:  # right op left: flip to left op' right
        a, b = b, a
        kind = {">=": "<=", ">": "<", "<=": ">=", "<": ">"}[kind]
    # left.ts + a_off  kind  right.ts + b_off  =>  right.ts - left.ts  kind'  a_off - b_off
    d = a[1] - b[1]
    if kind == ">=":
        return -(2**62), d  # right - left <= d
    if kind == ">":
        return -(2**62), d - 1
    if kind == "<=":
        return d, 2**62
    return d + 1, 2**62
