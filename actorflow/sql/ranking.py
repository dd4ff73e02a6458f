"""``ROW_NUMBER`` (deduplication, Top-N, window Top-N), ``ORDER BY`` and ``LIMIT``, as Flink's.

A ranking is a query over a subquery that numbers its rows, filtered on the number::

    SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY o DESC) AS rn FROM t)
    WHERE rn <= 3

It plans to one keyed operator per case, with the outer select list compiled into it:

- **deduplication**, ordered by the time attribute with ``rn = 1``: ``ASC`` keeps each key's first
  row (append-only: emitted once the watermark passes it, keeping the time attribute); ``DESC``
  its last (an updating result: ``+I``, then ``-U``/``+U`` for each later row);
- **window Top-N**, partitioned by ``window_start, window_end`` (a window aggregation's or a
  windowing table function's rows): a window's top rows, once, when the watermark passes its end;
- **Top-N** otherwise: an updating result, each key's top ``N`` rows kept in a sorted list. Without
  ``rn`` in the select list a row entering the top N is ``+I`` and the row it pushes out ``-D``;
  with ``rn`` each rank whose row changed is ``-U`` (old row) ``+U`` (new row), as Flink emits.

``ORDER BY`` in a streaming query starts with the time attribute ascending (rows sorted as the
watermark passes them), or has a ``LIMIT`` (a global Top-N); ``LIMIT`` alone passes the first
rows. With ``SET 'execution.runtime-mode' = 'batch'`` any ``ORDER BY`` sorts the bounded input at
its end, and rankings give their final rows.

>>> from actorflow.sql.dialect import parse
>>> has_over(parse("SELECT ROW_NUMBER() OVER (ORDER BY ts) FROM t")[0])
True
>>> rank_range(parse("SELECT * FROM t WHERE rn BETWEEN 2 AND 5")[0].args["where"].this, "rn")
(2, 5)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from sqlglot import exp

from actorflow.operators.process import KeyedProcessFunction
from actorflow.sql.accessors import error_at, from_clause
from actorflow.sql.expressions import compile_projection
from actorflow.sql.over import plan_over, window_of
from actorflow.sql.relation import Relation, getter, named_items, no_key, tuple_getter
from actorflow.sql.sorting import (
    Deduplicate,
    Limit,
    RankKey,
    Row,
    SortAll,
    TemporalSort,
    TopN,
    WindowTopN,
    sort_key,
)
from actorflow.sql.types import BIGINT

if TYPE_CHECKING:
    from actorflow.sql.planner import Planner
    from actorflow.sql.types import SqlType

__all__ = ["has_over", "plan_order", "plan_over", "plan_ranked", "rank_range"]


def has_over(select: exp.Expression) -> bool:
    """Whether ``select``'s list calls a function ``OVER (...)``."""
    return any(item.find(exp.Window) is not None for item in select.expressions)


def _batch(planner: Planner) -> bool:
    return str(planner.catalog.options.get("execution.runtime-mode", "streaming")).lower() == "batch"


def _order_keys(keys: list[tuple[str, exp.Ordered]], columns: dict[str, SqlType]) -> list[RankKey]:
    """The :class:`RankKey` of each ``ORDER BY`` key, on the column ``name`` of the rows."""
    found = []
    for name, ordered in keys:
        descending = bool(ordered.args.get("desc"))
        nulls_first = ordered.args.get("nulls_first")
        nulls_first = None if nulls_first is None else bool(nulls_first)
        kind = columns[name]
        found.append(RankKey(name, descending, nulls_first, kind.is_numeric or kind.is_timestamp))
    return found


# -- ROW_NUMBER: deduplication and Top-N ----------------------------------------------------------


def rank_range(condition: exp.Expression, rank: str) -> tuple[int, int | None]:
    """The ranks ``(first, last)`` a ``WHERE`` on the rank column ``rank`` keeps (``last`` None:
    no upper bound). Raises :class:`SqlError` for a condition on anything else."""
    low, high = 1, None

    def bound(node: exp.Expression) -> int:
        if isinstance(node, exp.Literal) and not node.is_string and node.name.lstrip("-").isdigit():
            return int(node.name)
        raise error_at(node, f"a rank is compared with a whole number, not {node.sql()!r}")

    def is_rank(node: exp.Expression) -> bool:
        return isinstance(node, exp.Column) and node.name == rank

    parts = list(condition.flatten()) if isinstance(condition, exp.And) else [condition]
    for found in parts:
        part: exp.Expression = found.unnest()  # type: ignore[assignment]
        if isinstance(part, exp.Between) and is_rank(part.this):
            low, high = max(low, bound(part.args["low"])), _min(high, bound(part.args["high"]))
            continue
        flips: dict[type[exp.Expression], type[exp.Expression]] = {
            exp.LT: exp.GT, exp.LTE: exp.GTE, exp.GT: exp.LT, exp.GTE: exp.LTE, exp.EQ: exp.EQ
        }  # fmt: skip
        kind: type[exp.Expression] = type(part)
        if kind in flips and is_rank(part.expression) and not is_rank(part.this):
            kind, value = flips[kind], bound(part.this)
        elif kind in flips and is_rank(part.this):
            value = bound(part.expression)
        else:
            raise error_at(
                part,
                f"a condition on the rank compares it with a whole number ({rank} <= n, {rank} < n, "
                f"{rank} = n, {rank} BETWEEN m AND n), joined to the others by AND",
            )
        if kind is exp.LT:
            high = _min(high, value - 1)
        elif kind is exp.LTE:
            high = _min(high, value)
        elif kind is exp.GT:
            low = max(low, value + 1)
        elif kind is exp.GTE:
            low = max(low, value)
        else:
            low, high = max(low, value), _min(high, value)
    return low, high


def split_rank(condition: exp.Expression, rank: str) -> tuple[exp.Expression | None, exp.Expression | None]:
    """``condition`` cut into its conjuncts on the rank column ``rank`` and the others (each None
    when there are none).

    >>> from actorflow.sql.dialect import parse
    >>> where = parse("SELECT * FROM t WHERE rn <= 3 AND n > 1")[0].args["where"].this
    >>> [part.sql() for part in split_rank(where, "rn")]
    ['rn <= 3', 'n > 1']
    """
    parts = list(condition.flatten()) if isinstance(condition, exp.And) else [condition]
    ranked = [p for p in parts if any(c.name == rank for c in p.find_all(exp.Column))]
    others = [p for p in parts if not any(c.name == rank for c in p.find_all(exp.Column))]
    return (cast(exp.Expression, exp.and_(*ranked)) if ranked else None), (
        cast(exp.Expression, exp.and_(*others)) if others else None
    )


def _min(a: int | None, b: int) -> int:
    return b if a is None else min(a, b)


def _rank_call(select: exp.Select) -> tuple[exp.Select, exp.Alias] | None:
    """The subquery of ``select`` and its ``ROW_NUMBER() OVER (...) AS rn`` item, if it has one."""
    source = from_clause(select)
    if source is None or not isinstance(source.this, exp.Subquery):
        return None
    inner = source.this.this
    if not isinstance(inner, exp.Select):
        return None
    for item in inner.expressions:
        window = item.this if isinstance(item, exp.Alias) else None
        if isinstance(window, exp.Window) and isinstance(window.this, exp.RowNumber):
            return inner, item
    return None


def plan_ranked(planner: Planner, select: exp.Select) -> Relation | None:
    """Deduplication or Top-N: ``SELECT ... FROM (SELECT ..., ROW_NUMBER() OVER (PARTITION BY
    ... ORDER BY ...) AS rn FROM t) WHERE rn <= n``; None when ``select`` is not one. Raises
    :class:`SqlError` for a ranking it cannot run (no upper bound on the rank, a condition on
    something else).

    >>> from actorflow import Flow
    >>> from actorflow.sql.dialect import parse
    >>> from actorflow.sql.planner import Planner
    >>> flow = Flow("doc")
    >>> _ = flow.sql("CREATE TABLE t (k STRING, n BIGINT) WITH ('connector' = 'jsonlines', 'path' = 'n')")
    >>> planner = Planner(flow, flow._sql_session.catalog)
    >>> top = parse("SELECT k, n FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY n DESC) "
    ...             "AS rn FROM t) WHERE rn <= 2")[0]
    >>> relation = plan_ranked(planner, top)
    >>> list(relation.columns), relation.changelog
    (['k', 'n'], True)
    >>> plan_ranked(planner, parse("SELECT k FROM t")[0]) is None
    True
    """
    found = _rank_call(select)
    if found is None:
        return None
    inner, item = found
    rank = item.alias
    where = select.args.get("where")
    ranked, others = split_rank(where.this, rank) if where is not None else (None, None)
    if where is None or ranked is None:
        return None  # planned as usual: plan_over refuses the ROW_NUMBER
    first, last = rank_range(ranked, rank)
    if last is None:
        raise error_at(where, f"ROW_NUMBER needs an upper bound on its rank (WHERE {rank} <= n)")
    plain = others is None and not any(
        select.args.get(clause) for clause in ("group", "having", "joins", "distinct", "windows", "qualify")
    )
    if plain and not has_over(select) and not any(node.find(exp.AggFunc) for node in select.expressions):
        return _plan_ranking(planner, inner, item, select.expressions, first, last)
    # The rest of the query (a condition on other columns, GROUP BY, a join...) runs over the
    # ranking's rows as over a table: Flink's Calc after its Rank.
    rest = select.copy()
    outside = [
        c for c in rest.find_all(exp.Column) if c.name == rank and c.find_ancestor(exp.Where) is None
    ]
    star = any(isinstance(node, exp.Star) or node.is_star for node in select.expressions)
    items: list[exp.Expression] = [exp.Star()]
    relation = _plan_ranking(planner, inner, item, items, first, last, numbered=bool(outside) or star)
    source = from_clause(rest)
    assert source is not None
    table = planner.bind(relation, "ranked")
    alias = source.this.args.get("alias")
    if alias is not None:
        table.set("alias", alias.copy())
    source.set("this", table)
    rest.set("where", exp.Where(this=others) if others is not None else None)
    return planner.query(rest)


def _plan_ranking(
    planner: Planner,
    inner: exp.Select,
    item: exp.Alias,
    items: list[exp.Expression],
    first: int,
    last: int,
    *,
    numbered: bool | None = None,
) -> Relation:
    """The ranking of ``inner`` by its ``ROW_NUMBER`` ``item``, ranks ``first`` to ``last``, with
    the select list ``items`` (``numbered``: whether ``*`` takes the rank column; by default
    whether ``items`` name it)."""
    rank = item.alias
    window = window_of(item.this, inner)
    if window.args.get("spec") is not None:
        raise error_at(window, "ROW_NUMBER() OVER (...) takes no frame")
    order = window.args.get("order")
    if order is None:
        raise error_at(window, "ROW_NUMBER() OVER (...) needs an ORDER BY")
    partition = list(window.args.get("partition_by") or [])
    others = [node for node in inner.expressions if node is not item]
    if any(node.find(exp.Window) for node in others):
        raise error_at(inner, "ROW_NUMBER with other OVER calls in one select is not supported yet")
    # The subquery without its ROW_NUMBER, plus hidden copies of the keys it ranks on.
    body = inner.copy()
    body.set("windows", None)
    hidden_partition = [f"$p{index}" for index in range(len(partition))]
    hidden_order = [f"$s{index}" for index in range(len(order.expressions))]
    body.set(
        "expressions",
        [node.copy() for node in others]
        + [exp.alias_(node.copy(), name) for node, name in zip(partition, hidden_partition, strict=True)]
        + [
            exp.alias_(ordered.this.copy(), name)
            for ordered, name in zip(order.expressions, hidden_order, strict=True)
        ],
    )
    relation = planner.query(body)
    columns = dict(relation.columns)
    keys = _order_keys(list(zip(hidden_order, order.expressions, strict=True)), columns)
    visible = {name: kind for name, kind in columns.items() if not name.startswith("$")}
    if numbered is not False:
        visible[rank] = BIGINT.not_null()
    named = named_items(items, visible)
    project, output = compile_projection(named, {**columns, rank: BIGINT.not_null()},
                                         functions=planner.catalog.functions)  # fmt: skip
    numbered = any(column.name == rank for _, node in named for column in node.find_all(exp.Column))
    batch = _batch(planner)
    key_of = _key_getter(hidden_partition)
    rank_name = rank if numbered else None
    names_partition = [node.name if isinstance(node, exp.Column) else "" for node in partition]
    base_rowtime = relation.rowtime
    if relation.changelog and (
        ("window_start" in names_partition and "window_end" in names_partition)
        or (first == last == 1 and base_rowtime is not None)
    ):
        raise error_at(item, "a window Top-N or deduplication of an updating result is not supported yet")
    if "window_start" in names_partition and "window_end" in names_partition:
        end = hidden_partition[names_partition.index("window_end")]
        function: KeyedProcessFunction[Row, Row] = WindowTopN(
            sort_key(keys), first, last, end, project, rank_name
        )
        stream = relation.stream.key_by(key_of).process(function, name=planner.node_name("window-top-n"))
        rowtime = _output_name(named, "window_time")
        return Relation(stream, output, rowtime)
    time_ordered = (
        len(order.expressions) == 1
        and isinstance(order.expressions[0].this, exp.Column)
        and base_rowtime is not None
        and base_rowtime in (order.expressions[0].this.name, hidden_order[0])
    )
    if time_ordered and first == 1 and last == 1:
        keep_last = keys[0].descending
        rowtime = None if keep_last or batch else _output_name(named, base_rowtime or "")
        function = Deduplicate(hidden_order[0], keep_last, project, rank_name, batch)
        stream = relation.stream.key_by(key_of).process(function, name=planner.node_name("deduplicate"))
        return Relation(stream, output, rowtime, changelog=keep_last and not batch)
    function = TopN(sort_key(keys), first, last, project, rank_name, batch, relation.changelog)
    stream = relation.stream.key_by(key_of).process(function, name=planner.node_name("top-n"))
    return Relation(stream, output, None, changelog=not batch)


def _key_getter(names: list[str]) -> Callable[[Row], Any]:
    if not names:
        return no_key
    return getter(names[0]) if len(names) == 1 else tuple_getter(names)


def _output_name(named: list[tuple[str, exp.Expression]], column: str) -> str | None:
    """The output name of the select item that is ``column`` as it is, if any."""
    for name, node in named:
        if isinstance(node, exp.Column) and node.name == column:
            return name
    return None


# -- ORDER BY and LIMIT -----------------------------------------------------------------------------


def _limit_of(select: exp.Select) -> tuple[int | None, int]:
    """``(LIMIT n or FETCH FIRST n, OFFSET m)``: None for no limit, 0 for no offset."""

    def number(node: exp.Expression | None, what: str) -> int:
        if isinstance(node, exp.Literal) and not node.is_string and node.name.isdigit():
            return int(node.name)
        raise error_at(node or select, f"{what} takes a whole number")

    limit = select.args.get("limit")
    count = None
    if isinstance(limit, exp.Limit):
        count = number(limit.expression, "LIMIT")
    elif isinstance(limit, exp.Fetch):
        count = number(limit.args.get("count"), "FETCH FIRST")
    offset = select.args.get("offset")
    return count, number(offset.expression, "OFFSET") if offset is not None else 0


def plan_order(planner: Planner, select: exp.Select | exp.Union) -> Relation:
    """``ORDER BY`` and ``LIMIT`` over the rest of ``select`` (the keys name its output
    columns): a sort as the watermark passes (the time attribute ascending first), a global
    Top-N (``ORDER BY x LIMIT n``), the first rows (``LIMIT n``), or in batch mode a sort at the
    end of the input.

    >>> from actorflow import Flow
    >>> from actorflow.sql.dialect import parse
    >>> from actorflow.sql.planner import Planner
    >>> flow = Flow("doc")
    >>> _ = flow.sql("CREATE TABLE t (n BIGINT, ts BIGINT, rowtime AS TO_TIMESTAMP_LTZ(ts, 3), "
    ...              "WATERMARK FOR rowtime AS rowtime) WITH ('connector' = 'jsonlines', 'path' = 'n')")
    >>> planner = Planner(flow, flow._sql_session.catalog)
    >>> plan_order(planner, parse("SELECT n, rowtime FROM t ORDER BY rowtime, n")[0]).rowtime
    'rowtime'
    >>> plan_order(planner, parse("SELECT n FROM t ORDER BY n DESC LIMIT 3")[0]).changelog
    True
    """
    if isinstance(select, exp.Union):  # (a UNION ALL b) ORDER BY ... LIMIT ...: over its rows
        union = select.copy()
        wrapped = exp.select("*").from_(exp.Subquery(this=union))
        for clause in ("order", "limit", "offset"):
            wrapped.set(clause, union.args.get(clause))
            union.set(clause, None)
        select = wrapped
    order = select.args.get("order")
    count, offset = _limit_of(select)
    body = select.copy()
    for clause in ("order", "limit", "offset"):
        body.set(clause, None)
    # A key the select list leaves out rides along as a hidden column, dropped at the end.
    named = {node.alias_or_name for node in select.expressions}
    star = any(isinstance(node, exp.Star) or node.is_star for node in select.expressions)
    hidden: dict[str, str] = {}
    for index, ordered in enumerate(order.expressions if order is not None else []):
        node = ordered.this
        if isinstance(node, exp.Column) and node.name not in named and not star:
            hidden[node.name] = f"$s{index}"
            body.append("expressions", exp.alias_(node.copy(), hidden[node.name]))
    relation = planner.rows(planner.query(body))
    if relation.changelog and (count is None or order is None or _batch(planner)):
        raise error_at(
            order or select,
            "over an updating result, ORDER BY goes with a LIMIT (a Top-N) in a streaming query",
        )
    columns = relation.columns
    orders = []
    for ordered in order.expressions if order is not None else []:
        node = ordered.this
        column = hidden.get(node.name, node.name) if isinstance(node, exp.Column) else ""
        if column not in columns:
            raise error_at(ordered, f"ORDER BY takes the query's columns, not {node.sql()!r}")
        orders.append((column, ordered))
    keys = _order_keys(orders, columns)
    batch = _batch(planner)
    last = None if count is None else offset + count
    name = planner.node_name
    if batch and keys:
        function: KeyedProcessFunction[Row, Row] = SortAll(sort_key(keys), offset, last)
        stream = relation.stream.key_by(no_key).process(function, name=name("sort"))
        return _visible(planner, hidden, Relation(stream, relation.columns, None))
    if not keys:
        stream = relation.stream.key_by(no_key).process(Limit(offset, last), name=name("limit"))
        return _visible(planner, hidden, Relation(stream, relation.columns, relation.rowtime))
    assert order is not None
    head = keys[0]
    time_first = head.column == relation.rowtime and not head.descending
    if relation.rowtime is not None and time_first and not relation.changelog:
        function = TemporalSort(relation.rowtime, sort_key(keys[1:]) if keys[1:] else None, offset, last)
        stream = relation.stream.key_by(no_key).process(function, name=name("sort"))
        return _visible(planner, hidden, Relation(stream, relation.columns, relation.rowtime))
    if last is None:
        shown = {column: name for name, column in hidden.items()}.get(
            relation.rowtime or "", relation.rowtime
        )
        raise error_at(
            order,
            "ORDER BY in a streaming query must start with the time attribute ascending "
            f"({shown or 'none selected'}), or have a LIMIT (or SET "
            "'execution.runtime-mode' = 'batch')",
        )
    function = TopN(sort_key(keys), offset + 1, last, None, None, False, relation.changelog)
    stream = relation.stream.key_by(no_key).process(function, name=name("top-n"))
    return _visible(planner, hidden, Relation(stream, relation.columns, None, changelog=True))


def _visible(planner: Planner, hidden: dict[str, str], relation: Relation) -> Relation:
    """``relation`` without the ``hidden`` columns."""
    if not hidden:
        return relation
    drop = set(hidden.values())
    columns = {name: kind for name, kind in relation.columns.items() if name not in drop}
    stream = relation.stream.map(
        lambda row: {name: value for name, value in row.items() if name not in drop},
        name=planner.node_name("columns"),
    )
    rowtime = relation.rowtime if relation.rowtime not in drop else None
    return Relation(stream, columns, rowtime, changelog=relation.changelog)
