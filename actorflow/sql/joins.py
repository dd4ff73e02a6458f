"""Joins: the ``FROM a JOIN b ON ... JOIN c ON ...`` part of a query, planned on its own.

The joins of a query plan left-deep into one relation whose columns are qualified by the tables'
aliases (``a.card_id``); :meth:`Planner.bind` names it, and the rest of the query (``WHERE``,
``GROUP BY``, windows, the select list) is rewritten as a query of that name and planned as usual.
Each join's ``ON`` splits into equalities of the two sides' columns (the key both sides are
partitioned by), time bounds on the time attributes, and the rest (residual conditions: the
``WHERE`` of an inner join, a check of each pair in an outer join). By what they leave, joins are:

- **window joins**: both sides windowing table functions' rows, equal ``window_start`` and
  ``window_end``: joined per window when it fires, an append-only result;
- **interval joins**: both time bounds on the two sides' time attributes: rows kept while the
  other side's watermark may still bring a partner, an append-only result;
- **regular joins**: anything else with at least one equality: both sides kept whole, an updating
  result (an inner join of two append-only inputs is append-only).

Output names are Flink's: ``SELECT a.card_id, b.name`` gives ``card_id`` and ``name``; a name
given twice without an alias (``SELECT *`` of two tables with a ``card_id``) is made unique as
Calcite does: ``card_id``, ``card_id0``.

>>> from actorflow.sql.types import BIGINT
>>> _qualify(exp.column("n"), {"a.n": BIGINT, "b.m": BIGINT}).sql()
'a.n'
>>> _unique(["id", "x", "id", "id"], set())
['id', 'x', 'id0', 'id1']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from actorflow.operators.base import Collector
from actorflow.operators.joins import ProcessJoinFunction
from actorflow.sql.accessors import error_at, from_clause, interval_millis
from actorflow.sql.expressions import compile_filter
from actorflow.sql.join_operators import OuterIntervalJoin, RegularJoin, RowShape, WindowJoin, has_null
from actorflow.sql.nodes import TableFunction
from actorflow.sql.relation import Relation, getter, tuple_getter
from actorflow.sql.types import SqlType

if TYPE_CHECKING:
    from actorflow.sql.planner import Planner

__all__ = ["plan_join", "plan_joins"]

_NO_BOUND = 2**62


@dataclass
class _Input:
    """One side of a join: its rows (``prefix + column`` is a column's qualified name; a
    relation joined already has qualified columns and no prefix) and the aliases it covers."""

    relation: Relation
    prefix: str
    aliases: tuple[str, ...]

    @property
    def columns(self) -> dict[str, SqlType]:
        return {self.prefix + name: kind for name, kind in self.relation.columns.items()}

    def raw(self, qualified: str) -> str:
        """The column's name in this side's rows."""
        return qualified[len(self.prefix) :]

    @property
    def rowtime(self) -> str | None:
        rowtime = self.relation.rowtime
        return None if rowtime is None else self.prefix + rowtime


def plan_join(planner: Planner, select: exp.Select) -> Relation:
    """A query with joins: the joins planned by :func:`plan_joins` into a relation bound to a
    name, and the rest of the query over it (inner joins' residual ON conditions in its
    ``WHERE``).

    >>> from actorflow import Flow
    >>> from actorflow.sql.dialect import parse
    >>> from actorflow.sql.planner import Planner
    >>> flow = Flow("doc")
    >>> _ = flow.sql("CREATE TABLE t (k BIGINT, v STRING) WITH ('connector' = 'jsonlines', "
    ...              "'path' = 't.jsonl')")
    >>> planner = Planner(flow, flow._sql_session.catalog)
    >>> list(plan_join(planner, parse("SELECT * FROM t a JOIN t b ON a.k = b.k")[0]).columns)
    ['k', 'v', 'k0', 'v0']
    """
    relation, residual = plan_joins(planner, select)
    columns = relation.columns
    rewritten = select.copy()
    rewritten.set("joins", None)
    for key in ("from_", "from"):
        if isinstance(rewritten.args.get(key), exp.From):
            rewritten.set(key, exp.From(this=planner.bind(relation, "join")))
    conditions = residual
    where = select.args.get("where")
    if where is not None:
        conditions = [*conditions, where.this]
    if conditions:
        node = conditions[0]
        for more in conditions[1:]:
            node = exp.And(this=_parenthesised(node), expression=_parenthesised(more))
        rewritten.set("where", exp.Where(this=_flatten(_qualify(node, columns), columns)))
    for key in ("group", "having", "order", "qualify"):
        part = rewritten.args.get(key)
        if part is not None:
            rewritten.set(key, _flatten(_qualify(part, columns), columns))
    rewritten.set("expressions", _select_list(select.expressions, columns))
    return planner.query(rewritten)


def _select_list(items: list[exp.Expression], columns: dict[str, SqlType]) -> list[exp.Expression]:
    """The select list over the joined relation's flat column names: ``*`` and ``a.*`` expanded,
    each column without an alias named by its own name (made unique, see :func:`_unique`)."""
    expanded: list[tuple[exp.Expression, str | None]] = []  # (expression, implicit name)
    for item in items:
        star_of = None
        if isinstance(item, exp.Star):
            star_of = ""
        elif isinstance(item, exp.Column) and isinstance(item.this, exp.Star):
            star_of = item.table
            if not any(name.startswith(star_of + ".") for name in columns):
                raise error_at(item, f"{star_of}.*: no table {star_of!r} in the join")
        if star_of is not None:
            for name in columns:
                if name.rpartition(".")[2].startswith("$"):
                    continue
                if not star_of or name.startswith(star_of + "."):
                    expanded.append((exp.column(name, quoted=True), name.rpartition(".")[2]))
            continue
        node = _flatten(_qualify(item, columns), columns)
        if isinstance(item, exp.Alias):
            expanded.append((node, None))
        elif isinstance(item, exp.Column):
            expanded.append((node, item.name))
        else:
            expanded.append((node, None))
    taken = {node.alias for node, implicit in expanded if isinstance(node, exp.Alias)}
    names = iter(_unique([implicit for _, implicit in expanded if implicit is not None], taken))
    result: list[exp.Expression] = []
    for node, implicit in expanded:
        result.append(node if implicit is None else exp.alias_(node, next(names), quoted=True))  # type: ignore[arg-type]
    return result


def _unique(names: list[str], taken: set[str]) -> list[str]:
    """``names`` with each one given before (or in ``taken``) suffixed ``0``, ``1``, ... (the
    first free one), as Calcite names a join's clashing columns."""
    seen = set(taken)
    result = []
    for name in names:
        unique = name
        serial = 0
        while unique in seen:
            unique = f"{name}{serial}"
            serial += 1
        seen.add(unique)
        result.append(unique)
    return result


def _parenthesised(node: exp.Expression) -> exp.Expression:
    return exp.Paren(this=node) if isinstance(node, exp.Or) else node


def _flatten(node: exp.Expression, columns: dict[str, SqlType]) -> exp.Expression:
    """``node`` with each qualified column ``a.x`` of the joined relation as the flat name
    ``"a.x"`` (the joined relation's rows are keyed so)."""

    def swap(found: exp.Expression) -> exp.Expression:
        if isinstance(found, exp.Column) and found.table and not isinstance(found.this, exp.Star):
            name = f"{found.table}.{found.name}"
            if name in columns:
                flat = exp.column(name, quoted=True)
                table = found.args.get("table")
                flat.this.meta.update((table if table is not None else found.this).meta)
                return flat
        return found

    return node.transform(swap)


def plan_joins(planner: Planner, select: exp.Select) -> tuple[Relation, list[exp.Expression]]:
    """The relation of ``select``'s ``FROM a JOIN b ON ... [JOIN c ON ...]``, joined left-deep,
    with columns qualified by the tables' aliases (``a.card_id``), and the residual ``ON``
    conditions of its inner joins (qualified), for the query's ``WHERE``.

    >>> from actorflow import Flow
    >>> from actorflow.sql.dialect import parse
    >>> from actorflow.sql.planner import Planner
    >>> flow = Flow("doc")
    >>> _ = flow.sql("CREATE TABLE t (k BIGINT, v STRING) WITH ('connector' = 'jsonlines', "
    ...              "'path' = 't.jsonl')")
    >>> planner = Planner(flow, flow._sql_session.catalog)
    >>> query = parse("SELECT * FROM t a LEFT JOIN t b ON a.k = b.k AND b.v > a.v")[0]
    >>> relation, residual = plan_joins(planner, query)
    >>> list(relation.columns), relation.changelog, residual
    (['a.k', 'a.v', 'b.k', 'b.v'], True, [])
    """
    source = from_clause(select)
    assert source is not None
    first = _side(planner, source.this)
    joined = _Input(first[1], first[0] + ".", (first[0],))
    residuals: list[exp.Expression] = []
    for join in select.args["joins"]:
        alias, relation = _side(planner, join.this)
        if alias in joined.aliases:
            raise error_at(join, f"two sides of the JOIN are called {alias!r}: give one an alias")
        right = _Input(relation, alias + ".", (alias,))
        if residuals and (join.args.get("side") or "").upper() in ("RIGHT", "FULL"):
            # The rows this join pads would not pass them: they hold before it, not in WHERE.
            joined = _Input(_filter(planner, joined.relation, residuals), "", joined.aliases)
            residuals = []
        relation, residual = _join(planner, joined, right, join)
        joined = _Input(relation, "", (*joined.aliases, alias))
        residuals += residual
    return joined.relation, residuals


def _filter(planner: Planner, relation: Relation, conditions: list[exp.Expression]) -> Relation:
    """``relation``'s rows that pass ``conditions`` (qualified)."""
    keep = _check(planner, conditions, relation.columns)
    stream = relation.stream.filter(keep, name=planner.node_name("join-where"))
    return Relation(stream, relation.columns, relation.rowtime, changelog=relation.changelog)


def _side(planner: Planner, node: exp.Expression) -> tuple[str, Relation]:
    """The alias and whole-row relation of one side of a join."""
    if isinstance(node, exp.Table):
        if node.args.get("version") is not None:
            raise error_at(node, "a temporal join (FOR SYSTEM_TIME AS OF) is not supported yet")
        return node.alias_or_name, planner.rows(planner.table_relation(node))
    if isinstance(node, exp.Subquery):
        if not node.alias:
            raise error_at(node, "a subquery in a JOIN needs an alias: (SELECT ...) AS s")
        return node.alias, planner.rows(planner.query(node.this))
    if isinstance(node, TableFunction):  # TABLE(TUMBLE(...)) AS L: its rows, as a subquery's
        if not node.alias:
            raise error_at(node, "a table function in a JOIN needs an alias: TABLE(...) AS t")
        function = node.copy()
        function.set("alias", None)
        return node.alias, planner.rows(planner.query(exp.select("*").from_(function)))
    raise error_at(node, f"a JOIN of {node.sql()!r} is not supported yet: join tables, views or subqueries")


def _join(
    planner: Planner, left: _Input, right: _Input, join: exp.Join
) -> tuple[Relation, list[exp.Expression]]:
    """One join of ``left`` (a table, or the joins before) and ``right``: the joined relation
    and the residual conditions the query's WHERE takes (an inner join's)."""
    side = (join.args.get("side") or "").upper()
    kind = (join.args.get("kind") or "").upper()
    if kind == "CROSS" or (kind not in ("", "INNER", "OUTER")):
        raise error_at(join, f"{kind} JOIN is not supported yet: join ON equal keys")
    if join.args.get("using"):
        raise error_at(join, "JOIN ... USING is not supported yet: write ON a.k = b.k")
    outer = (side in ("LEFT", "FULL"), side in ("RIGHT", "FULL"))
    columns = {**left.columns, **right.columns}
    condition = join.args.get("on")
    if condition is None:
        raise error_at(
            join, "a regular join needs at least one equality of the two sides' columns (ON a.k = b.k)"
        )
    keys: list[tuple[str, str]] = []
    lower, upper = -_NO_BOUND, _NO_BOUND
    times: list[exp.Expression] = []
    residual: list[exp.Expression] = []
    for conjunct in _conjuncts(_qualify(condition, columns)):
        pair = _key_pair(conjunct, left, right)
        if pair is not None:
            keys.append(pair)
            continue
        bounds = _time_bounds(conjunct, left, right)
        if bounds is not None:
            lower, upper = max(lower, bounds[0]), min(upper, bounds[1])
            times.append(conjunct)
            continue
        residual.append(conjunct)
    window = _window_ends(keys, left, right)
    if window is not None:
        return _window_join(planner, left, right, keys, residual + times, outer, window, columns)
    if lower != -_NO_BOUND and upper != _NO_BOUND:
        if left.relation.changelog or right.relation.changelog:
            raise error_at(join, "an interval join of an updating result is not supported yet")
        if not keys:
            raise error_at(
                condition, "an interval join needs at least one equality of the two sides' columns"
            )
        if lower > upper:
            raise error_at(condition, "the join's time bounds leave no interval")
        return _interval_join(planner, left, right, keys, residual, outer, (lower, upper), columns)
    residual += times
    if not keys:
        raise error_at(condition, "a regular join needs at least one equality of the two sides' columns")
    return _regular_join(planner, left, right, keys, residual, outer, columns)


def _key_of(side: _Input, keys: list[str]) -> Any:
    names = [side.raw(name) for name in keys]
    return getter(names[0]) if len(names) == 1 else tuple_getter(names)


def _shape(left: _Input, right: _Input) -> RowShape:
    return RowShape(left.prefix, list(left.relation.columns), right.prefix, list(right.relation.columns))


def _check(planner: Planner, residual: list[exp.Expression], columns: dict[str, SqlType]) -> Any:
    """An outer join's residual conditions as one check of a joined row (None for none)."""
    if not residual:
        return None
    node = residual[0]
    for more in residual[1:]:
        node = exp.And(this=node, expression=more)
    return compile_filter(_flatten(node, columns), columns, functions=planner.catalog.functions)


def _outer_columns(columns: dict[str, SqlType], side: _Input, outer: bool) -> None:
    """A side whose rows may be padded with NULLs has nullable columns."""
    if outer:
        for name in side.columns:
            columns[name] = columns[name].nullable_()


def _regular_join(
    planner: Planner,
    left: _Input,
    right: _Input,
    keys: list[tuple[str, str]],
    residual: list[exp.Expression],
    outer: tuple[bool, bool],
    columns: dict[str, SqlType],
) -> tuple[Relation, list[exp.Expression]]:
    batch = planner.catalog.options.get("execution.runtime-mode", "streaming").lower() == "batch"
    inner = not any(outer)
    changelog = not batch and (any(outer) or left.relation.changelog or right.relation.changelog)
    check = None if inner else _check(planner, residual, columns)
    function = RegularJoin(_shape(left, right), outer, check, len(keys), changelog=changelog, batch=batch)
    stream = (
        left.relation.stream.connect(right.relation.stream)
        .key_by(_key_of(left, [k for k, _ in keys]), _key_of(right, [k for _, k in keys]))
        .process(function, name=planner.node_name("join"))
    )
    out = dict(columns)
    _outer_columns(out, left, outer[1])
    _outer_columns(out, right, outer[0])
    return Relation(stream, out, None, changelog=changelog), residual if inner else []


def _window_ends(keys: list[tuple[str, str]], left: _Input, right: _Input) -> tuple[str, str] | None:
    """The two sides' ``window_end`` columns when the join is a window join (both sides
    windowing table functions' rows with a time attribute, equal window_start and window_end),
    else None."""
    found: dict[str, tuple[str, str]] = {}
    for a, b in keys:
        name = left.raw(a).rpartition(".")[2]
        if name in ("window_start", "window_end") and right.raw(b) == name:
            found[name] = (a, b)
    if len(found) < 2:
        return None
    for side in (left, right):
        if side.rowtime is None or side.relation.changelog:
            return None
    return found["window_end"]


def _window_join(
    planner: Planner,
    left: _Input,
    right: _Input,
    keys: list[tuple[str, str]],
    residual: list[exp.Expression],
    outer: tuple[bool, bool],
    ends: tuple[str, str],
    columns: dict[str, SqlType],
) -> tuple[Relation, list[exp.Expression]]:
    inner = not any(outer)
    check = None if inner else _check(planner, residual, columns)
    function = WindowJoin(
        _shape(left, right), outer, check, len(keys), (left.raw(ends[0]), right.raw(ends[1]))
    )
    stream = (
        left.relation.stream.connect(right.relation.stream)
        .key_by(_key_of(left, [k for k, _ in keys]), _key_of(right, [k for _, k in keys]))
        .process(function, name=planner.node_name("window-join"))
    )
    out = dict(columns)
    _outer_columns(out, left, outer[1])
    _outer_columns(out, right, outer[0])
    # The result rows are stamped with their window's window_time: the time attribute of a side
    # that is never padded.
    rowtime = None
    for index in (0, 1):
        time = ends[index][: -len("window_end")] + "window_time"
        if not outer[1 - index] and time in out:
            rowtime = time
            break
    return Relation(stream, out, rowtime), residual if inner else []


def _interval_join(
    planner: Planner,
    left: _Input,
    right: _Input,
    keys: list[tuple[str, str]],
    residual: list[exp.Expression],
    outer: tuple[bool, bool],
    bounds: tuple[int, int],
    columns: dict[str, SqlType],
) -> tuple[Relation, list[exp.Expression]]:
    left_key = _key_of(left, [k for k, _ in keys])
    right_key = _key_of(right, [k for _, k in keys])
    parts = len(keys)
    out = dict(columns)
    if not any(outer):
        # NULL keys never match: those rows are dropped before the DataStream interval join
        # (which would pair None with None).
        left_rows = left.relation.stream.filter(
            lambda row: not has_null(left_key(row), parts), name=planner.node_name("join-keys")
        )
        right_rows = right.relation.stream.filter(
            lambda row: not has_null(right_key(row), parts), name=planner.node_name("join-keys")
        )
        stream = (
            left_rows.key_by(left_key)
            .interval_join(right_rows.key_by(right_key))
            .between(*bounds)
            .process(_JoinRows(_shape(left, right)), name=planner.node_name("interval-join"))
        )
        return Relation(stream, out), residual
    assert left.rowtime is not None and right.rowtime is not None
    function = OuterIntervalJoin(
        _shape(left, right),
        outer,
        _check(planner, residual, columns),
        parts,
        bounds,
        (left.raw(left.rowtime), right.raw(right.rowtime)),
    )
    stream = (
        left.relation.stream.connect(right.relation.stream)
        .key_by(left_key, right_key)
        .process(function, name=planner.node_name("interval-join"))
    )
    _outer_columns(out, left, outer[1])
    _outer_columns(out, right, outer[0])
    return Relation(stream, out), []


class _JoinRows(ProcessJoinFunction[dict[str, Any], dict[str, Any], dict[str, Any]]):
    """One joined row of the DataStream interval join: both sides' columns, qualified."""

    def __init__(self, shape: RowShape) -> None:
        self.shape = shape

    def process_element(
        self, left: dict[str, Any], right: dict[str, Any], ctx: Any, out: Collector
    ) -> None:
        out.collect(self.shape.join(left, right))


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
            if found.name in columns:
                return found  # a flat name already
            owners = [key.rpartition(".")[0] for key in columns if key.rpartition(".")[2] == found.name]
            if len(owners) > 1:
                raise error_at(
                    found, f"column {found.name!r} is ambiguous: qualify it ({', '.join(owners)})"
                )
            if owners:
                qualified = exp.column(found.name, table=owners[0])
                qualified.this.meta.update(found.this.meta)
                return qualified
        return found

    return node.copy().transform(swap)


def _which(column: exp.Expression, left: _Input, right: _Input) -> int | None:
    """0 for a column of the left side, 1 for one of the right, else None."""
    if not isinstance(column, exp.Column) or not column.table:
        return None
    name = f"{column.table}.{column.name}"
    if column.table in left.aliases and name in left.columns:
        return 0
    if column.table in right.aliases and name in right.columns:
        return 1
    return None


def _key_pair(node: exp.Expression, left: _Input, right: _Input) -> tuple[str, str] | None:
    """``(left column, right column)`` (qualified) of an equality of the two sides' columns."""
    if not isinstance(node, exp.EQ):
        return None
    a, b = node.this, node.expression
    sides = (_which(a, left, right), _which(b, left, right))
    if sides == (1, 0):
        a, b = b, a
    elif sides != (0, 1):
        return None
    return f"{a.table}.{a.name}", f"{b.table}.{b.name}"


def _time_point(node: exp.Expression, left: _Input, right: _Input) -> tuple[int, int] | None:
    """``(side, offset ms)`` of ``side.rowtime [+|- INTERVAL ...]``, else None."""
    offset = 0
    if isinstance(node, exp.Add | exp.Sub) and isinstance(node.expression, exp.Interval):
        offset = interval_millis(node.expression) * (1 if isinstance(node, exp.Add) else -1)
        node = node.this
    side = _which(node, left, right)
    if side is None or f"{node.args['table'].name}.{node.name}" != (left, right)[side].rowtime:
        return None
    return side, offset


def _time_bounds(node: exp.Expression, left: _Input, right: _Input) -> tuple[int, int] | None:
    """The ``(lower, upper)`` of ``right.ts - left.ts`` a time condition allows, else None."""
    if isinstance(node, exp.Between):
        low = _time_bounds(exp.GTE(this=node.this, expression=node.args["low"]), left, right)
        high = _time_bounds(exp.LTE(this=node.this, expression=node.args["high"]), left, right)
        if low is None or high is None:
            return None
        return max(low[0], high[0]), min(low[1], high[1])
    kinds: dict[type[exp.Expression], str] = {exp.GTE: ">=", exp.GT: ">", exp.LTE: "<=", exp.LT: "<"}
    kind = kinds.get(type(node))
    if kind is None:
        return None
    a = _time_point(node.this, left, right)
    b = _time_point(node.expression, left, right)
    if a is None or b is None or a[0] == b[0]:
        return None
    if a[0] == 1:  # right op left: flip to left op' right
        a, b = b, a
        kind = {">=": "<=", ">": "<", "<=": ">=", "<": ">"}[kind]
    # left.ts + a_off  kind  right.ts + b_off  =>  right.ts - left.ts  kind'  a_off - b_off
    d = a[1] - b[1]
    if kind == ">=":
        return -_NO_BOUND, d  # right - left <= d
    if kind == ">":
        return -_NO_BOUND, d - 1
    if kind == "<=":
        return d, _NO_BOUND
    return d + 1, _NO_BOUND
