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

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sortedcontainers import SortedList
from sqlglot import exp

from actorflow.operators.base import Collector
from actorflow.operators.process import Context, KeyedProcessFunction, RuntimeContext
from actorflow.runtime.messages import MAX_WATERMARK
from actorflow.sql.accessors import error_at, from_clause
from actorflow.sql.expressions import compile_projection
from actorflow.sql.over import plan_over, window_of
from actorflow.sql.relation import CHANGE, Relation, named_items, no_key
from actorflow.sql.types import BIGINT
from actorflow.state.descriptors import ValueStateDescriptor
from actorflow.state.keyed import ValueState

if TYPE_CHECKING:
    from actorflow.sql.planner import Planner
    from actorflow.sql.types import SqlType

__all__ = [
    "Deduplicate",
    "Limit",
    "RankKey",
    "SortAll",
    "TemporalSort",
    "TopN",
    "WindowTopN",
    "has_over",
    "plan_order",
    "plan_over",
    "plan_ranked",
    "rank_range",
    "sort_key",
]

Row = dict[str, Any]
Project = Callable[[Row], Row]


def has_over(select: exp.Expression) -> bool:
    """Whether ``select``'s list calls a function ``OVER (...)``."""
    return any(item.find(exp.Window) is not None for item in select.expressions)


def _batch(planner: Planner) -> bool:
    return str(planner.catalog.options.get("execution.runtime-mode", "streaming")).lower() == "batch"


# -- sort keys ---------------------------------------------------------------------------------------


@functools.total_ordering
class _Descending:
    """A value that sorts the other way round (``DESC`` on a value that cannot be negated)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and self.value == other.value

    def __lt__(self, other: _Descending) -> bool:
        return bool(other.value < self.value)

    def __hash__(self) -> int:
        return hash(self.value)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Descending, (self.value,))


@dataclass(frozen=True)
class RankKey:
    """One ``ORDER BY`` key: a column of the rows, the direction, where NULLs go (Flink's
    default: first ascending, last descending), and whether its values are numbers."""

    column: str
    descending: bool = False
    nulls_first: bool = True
    numeric: bool = False


def sort_key(keys: list[RankKey]) -> Callable[[Row], tuple[Any, ...]]:
    """A function from a row to a tuple that sorts as ``ORDER BY keys`` does.

    >>> key = sort_key([RankKey("a", descending=True, nulls_first=False, numeric=True), RankKey("b")])
    >>> rows = [{"a": 1, "b": "x"}, {"a": None, "b": "y"}, {"a": 2, "b": "z"}, {"a": 1, "b": "w"}]
    >>> [row["b"] for row in sorted(rows, key=key)]
    ['z', 'w', 'x', 'y']
    """
    parts: list[Callable[[Row], Any]] = []
    for spec in keys:

        def part(
            row: Row, spec: RankKey = spec, null: tuple[int] = (0,) if spec.nulls_first else (2,)
        ) -> Any:
            value = row[spec.column]
            if value is None:
                return null
            if not spec.descending:
                return (1, value)
            return (1, -value if spec.numeric else _Descending(value))

        parts.append(part)
    if len(parts) == 1:
        only = parts[0]
        return lambda row: (only(row),)
    return lambda row: tuple(part(row) for part in parts)


def _order_keys(keys: list[tuple[str, exp.Ordered]], columns: dict[str, SqlType]) -> list[RankKey]:
    """The :class:`RankKey` of each ``ORDER BY`` key, on the column ``name`` of the rows."""
    found = []
    for name, ordered in keys:
        descending = bool(ordered.args.get("desc"))
        nulls_first = ordered.args.get("nulls_first")
        nulls_first = (not descending) if nulls_first is None else bool(nulls_first)
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
                part, f"the WHERE of a Top-N or deduplication takes only conditions on its rank ({rank})"
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
    ... ORDER BY ...) AS rn FROM t) WHERE rn <= n``; None when ``select`` is not one."""
    found = _rank_call(select)
    if found is None:
        return None
    inner, item = found
    rank = item.alias
    where = select.args.get("where")
    if where is None or not any(c.name == rank for c in where.this.find_all(exp.Column)):
        return None  # planned as usual: plan_over refuses the ROW_NUMBER
    for clause in ("group", "having", "joins", "distinct", "windows", "qualify"):
        if select.args.get(clause):
            raise error_at(select, "a query over a Top-N or deduplication is not supported yet")
    if has_over(select) or any(node.find(exp.AggFunc) for node in select.expressions):
        raise error_at(select, "a query over a Top-N or deduplication is not supported yet")
    first, last = rank_range(where.this, rank)
    if last is None:
        raise error_at(where, f"ROW_NUMBER needs an upper bound on its rank (WHERE {rank} <= n)")
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
    if relation.changelog:
        raise error_at(item, "a Top-N or deduplication of an updating result is not supported yet")
    columns = dict(relation.columns)
    keys = _order_keys(list(zip(hidden_order, order.expressions, strict=True)), columns)
    visible = {name: kind for name, kind in columns.items() if not name.startswith("$")}
    visible[rank] = BIGINT.not_null()
    named = named_items(select.expressions, visible)
    project, output = compile_projection(named, {**columns, rank: BIGINT.not_null()},
                                         functions=planner.catalog.functions)  # fmt: skip
    numbered = any(column.name == rank for _, node in named for column in node.find_all(exp.Column))
    batch = _batch(planner)
    key_of = _key_getter(hidden_partition)
    rank_name = rank if numbered else None
    names_partition = [node.name if isinstance(node, exp.Column) else "" for node in partition]
    base_rowtime = relation.rowtime
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
    function = TopN(sort_key(keys), first, last, project, rank_name, batch)
    stream = relation.stream.key_by(key_of).process(function, name=planner.node_name("top-n"))
    return Relation(stream, output, None, changelog=not batch)


def _key_getter(names: list[str]) -> Callable[[Row], Any]:
    from actorflow.sql.relation import getter, tuple_getter

    if not names:
        return no_key
    return getter(names[0]) if len(names) == 1 else tuple_getter(names)


def _output_name(named: list[tuple[str, exp.Expression]], column: str) -> str | None:
    """The output name of the select item that is ``column`` as it is, if any."""
    for name, node in named:
        if isinstance(node, exp.Column) and node.name == column:
            return name
    return None


class Deduplicate(KeyedProcessFunction[Row, Row]):
    """Per key, its first row by time (``keep_last`` False: the earliest row, emitted once the
    watermark passes it; a row at the watermark or before is late) or its last (each row as late
    as the one kept or later replaces it: ``+I``, then ``-U`` and ``+U``; Flink's rule, rows of one
    time: the last to come). In batch mode the last rows come out at the end of the input.

    >>> Deduplicate("rowtime", True, dict, None, False).keep_last
    True
    """

    def __init__(self, time: str, keep_last: bool, project: Project, rank: str | None, batch: bool) -> None:
        self.time = time
        self.keep_last = keep_last
        self.project = project
        self.rank = rank
        self.batch = batch

    def open(self, ctx: RuntimeContext) -> None:
        #: The row kept (its time, its output row); for keep-first, whether it was emitted.
        self.kept: ValueState[tuple[int, Row] | None] = ctx.get_state(ValueStateDescriptor("kept"))
        self.done: ValueState[bool | None] = ctx.get_state(ValueStateDescriptor("done"))

    def _output(self, row: Row) -> Row:
        return self.project({**row, self.rank: 1} if self.rank is not None else row)

    def process_element(self, value: Row, ctx: Context, out: Collector) -> None:
        time = value[self.time]
        if time is None:
            return
        kept = self.kept.value()
        timers = ctx.timer_service()
        if self.keep_last:
            if kept is not None and time < kept[0]:
                return
            row = self._output(value)
            self.kept.update((time, row))
            if self.batch:
                if kept is None:
                    timers.register_event_time_timer(MAX_WATERMARK)
            elif kept is None:
                out.collect({**row, CHANGE: "+I"})
            else:
                out.collect({**kept[1], CHANGE: "-U"})
                out.collect({**row, CHANGE: "+U"})
            return
        if self.done.value() or time <= timers.current_watermark():
            return
        if kept is not None:
            if time >= kept[0]:
                return
            timers.delete_event_time_timer(kept[0])
        self.kept.update((time, self._output(value)))
        timers.register_event_time_timer(time)

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        kept = self.kept.value()
        if kept is None:
            return
        out.collect(kept[1])
        if not self.keep_last:
            self.kept.clear()
            self.done.update(True)


class TopN(KeyedProcessFunction[Row, Row]):
    """Per key, its best ``last`` rows (by ``key``, ties in arrival order) in a sorted list, and the
    changes of the ranks ``first`` to ``last`` as rows arrive (see the module). A row that cannot
    enter is dropped at once, so a key holds at most ``last`` rows. In batch mode the final ranks
    come out at the end of the input, as plain rows.

    >>> top = TopN(sort_key([RankKey("n", descending=True, numeric=True)]), 1, 2, dict, "rn", False)
    >>> top.last
    2
    """

    def __init__(
        self,
        key: Callable[[Row], tuple[Any, ...]],
        first: int,
        last: int,
        project: Project | None,
        rank: str | None,
        batch: bool,
    ) -> None:
        self.key = key
        self.first = first
        self.last = last
        self.project = project
        self.rank = rank
        self.batch = batch

    def open(self, ctx: RuntimeContext) -> None:
        #: ``[next arrival number, SortedList of (sort key, arrival, row)]``.
        self.state: ValueState[list[Any] | None] = ctx.get_state(ValueStateDescriptor("top"))

    def _output(self, row: Row, rank: int) -> Row:
        if self.rank is not None:
            row = {**row, self.rank: rank}
        return self.project(row) if self.project is not None else row

    def process_element(self, value: Row, ctx: Context, out: Collector) -> None:
        state = self.state.value()
        if state is None:
            state = [0, SortedList()]
            self.state.update(state)
            if self.batch:
                ctx.timer_service().register_event_time_timer(MAX_WATERMARK)
        top: SortedList = state[1]
        key = self.key(value)
        last = self.last
        if len(top) >= last and not key < top[-1][0]:
            return  # not better than the worst of a full top: never ranked
        entry = (key, state[0], value)
        state[0] += 1
        top.add(entry)
        position = top.bisect_right(entry) - 1
        pushed = top.pop() if len(top) > last else None
        if self.batch:
            return
        first = self.first - 1  # ranks from 0 here
        if self.rank is None:
            # Without rank numbers: the row pushed out of the ranks, then the one that came in
            # (the new row, or with an offset the row it pushed down into the first rank).
            if pushed is not None:
                out.collect({**self._output(pushed[2], 0), CHANGE: "-D"})
            if len(top) > first:
                entering = top[max(position, first)][2]
                out.collect({**self._output(entering, 0), CHANGE: "+I"})
            return
        # With the rank: every rank from the new row's down changed its row (-U old, +U new);
        # a rank that had no row yet is +I.
        start = max(position, first)
        size = len(top)
        for index in range(start, size):
            new = top[index][2]
            old = top[index + 1][2] if index + 1 < size else (pushed[2] if pushed is not None else None)
            rank = index + 1
            if old is None:
                out.collect({**self._output(new, rank), CHANGE: "+I"})
            else:
                out.collect({**self._output(old, rank), CHANGE: "-U"})
                out.collect({**self._output(new, rank), CHANGE: "+U"})

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        state = self.state.value()
        if state is None:
            return
        for index, (_, _, row) in enumerate(state[1]):
            if index >= self.first - 1:
                out.collect(self._output(row, index + 1))


class WindowTopN(KeyedProcessFunction[Row, Row]):
    """Per window (and other partition keys): its best ``last`` rows, emitted with their ranks
    ``first`` to ``last`` when the watermark passes the window's end (append-only, then the
    window's state is gone). A row of a window the watermark has passed is late and dropped.

    >>> WindowTopN(sort_key([RankKey("n")]), 1, 3, "$p1", dict, None).end
    '$p1'
    """

    def __init__(
        self,
        key: Callable[[Row], tuple[Any, ...]],
        first: int,
        last: int,
        end: str,
        project: Project,
        rank: str | None,
    ) -> None:
        self.key = key
        self.first = first
        self.last = last
        self.end = end
        self.project = project
        self.rank = rank

    def open(self, ctx: RuntimeContext) -> None:
        self.state: ValueState[list[Any] | None] = ctx.get_state(ValueStateDescriptor("top"))

    def process_element(self, value: Row, ctx: Context, out: Collector) -> None:
        fires = value[self.end] - 1
        timers = ctx.timer_service()
        if fires <= timers.current_watermark():
            return
        state = self.state.value()
        if state is None:
            state = [0, SortedList()]
            self.state.update(state)
            timers.register_event_time_timer(fires)
        top: SortedList = state[1]
        key = self.key(value)
        if len(top) >= self.last and not key < top[-1][0]:
            return
        top.add((key, state[0], value))
        state[0] += 1
        if len(top) > self.last:
            top.pop()

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        state = self.state.value()
        self.state.clear()
        if state is None:
            return
        for index, (_, _, row) in enumerate(state[1]):
            if index >= self.first - 1:
                if self.rank is not None:
                    row = {**row, self.rank: index + 1}
                out.collect(self.project(row))


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


def plan_order(planner: Planner, select: exp.Select) -> Relation:
    """``ORDER BY`` and ``LIMIT`` over the rest of ``select`` (the keys name its output
    columns): a sort as the watermark passes (the time attribute ascending first), a global
    Top-N (``ORDER BY x LIMIT n``), the first rows (``LIMIT n``), or in batch mode a sort at the
    end of the input."""
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
    if relation.changelog:
        raise error_at(order or select, "ORDER BY or LIMIT over an updating result is not supported yet")
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
    if relation.rowtime is not None and head.column == relation.rowtime and not head.descending:
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
    function = TopN(sort_key(keys), offset + 1, last, None, None, False)
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


class Limit(KeyedProcessFunction[Row, Row]):
    """The rows after the first ``offset``, up to the ``last``-th (None: no end), as they come;
    then nothing (the stream goes on, as in Flink).

    >>> Limit(0, 3).last
    3
    """

    def __init__(self, offset: int, last: int | None) -> None:
        self.offset = offset
        self.last = last

    def open(self, ctx: RuntimeContext) -> None:
        self.seen: ValueState[int | None] = ctx.get_state(ValueStateDescriptor("seen"))

    def process_element(self, value: Row, ctx: Context, out: Collector) -> None:
        seen = self.seen.value() or 0
        if self.last is not None and seen >= self.last:
            return
        self.seen.update(seen + 1)
        if seen >= self.offset:
            out.collect(value)


class TemporalSort(KeyedProcessFunction[Row, Row]):
    """Rows in time order: each waits until the watermark passes its time, then the rows of that
    time come out sorted by the other keys (``then``); a row at the watermark or before is late
    and dropped. ``offset`` and ``last`` as for :class:`Limit`.

    >>> TemporalSort("rowtime", None, 0, None).time
    'rowtime'
    """

    def __init__(
        self, time: str, then: Callable[[Row], tuple[Any, ...]] | None, offset: int, last: int | None
    ) -> None:
        self.time = time
        self.then = then
        self.offset = offset
        self.last = last

    def open(self, ctx: RuntimeContext) -> None:
        self.pending: ValueState[dict[int, list[Row]] | None] = ctx.get_state(
            ValueStateDescriptor("pending")
        )
        self.emitted: ValueState[int | None] = ctx.get_state(ValueStateDescriptor("emitted"))

    def process_element(self, value: Row, ctx: Context, out: Collector) -> None:
        time = value[self.time]
        timers = ctx.timer_service()
        if time is None or time <= timers.current_watermark():
            return
        if self.last is not None and (self.emitted.value() or 0) >= self.last:
            return
        pending = self.pending.value()
        if pending is None:
            pending = {}
            self.pending.update(pending)
        rows = pending.get(time)
        if rows is None:
            pending[time] = [value]
            timers.register_event_time_timer(time)
        else:
            rows.append(value)

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        pending = self.pending.value()
        rows = pending.pop(timestamp, None) if pending is not None else None
        if not rows:
            return
        if self.then is not None:
            rows.sort(key=self.then)
        emitted = self.emitted.value() or 0
        for row in rows:
            if self.last is not None and emitted >= self.last:
                break
            if emitted >= self.offset:
                out.collect(row)
            emitted += 1
        self.emitted.update(emitted)


class SortAll(KeyedProcessFunction[Row, Row]):
    """Batch mode: every row, sorted at the end of the input (ties in arrival order), the rows
    from ``offset`` to ``last``.

    >>> SortAll(sort_key([RankKey("a")]), 0, 10).last
    10
    """

    def __init__(self, key: Callable[[Row], tuple[Any, ...]], offset: int, last: int | None) -> None:
        self.key = key
        self.offset = offset
        self.last = last

    def open(self, ctx: RuntimeContext) -> None:
        self.rows: ValueState[list[Row] | None] = ctx.get_state(ValueStateDescriptor("rows"))

    def process_element(self, value: Row, ctx: Context, out: Collector) -> None:
        rows = self.rows.value()
        if rows is None:
            rows = []
            self.rows.update(rows)
            ctx.timer_service().register_event_time_timer(MAX_WATERMARK)
        rows.append(value)

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        rows = self.rows.value() or []
        rows.sort(key=self.key)
        for row in rows[self.offset : self.last]:
            out.collect(row)
