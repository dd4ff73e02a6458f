"""``OVER`` aggregates: ``SUM(amount) OVER (PARTITION BY card_id ORDER BY rowtime ROWS BETWEEN 2
PRECEDING AND CURRENT ROW)``, as Flink's over aggregation.

Each row gets the aggregates of a frame that ends at it: the ``n`` rows before it (``ROWS``), the
rows of the ``INTERVAL`` before its timestamp (``RANGE``, both ends included), or every row so far
(``UNBOUNDED PRECEDING``). As in Flink the order is the time attribute ascending and the rows are
event-time ordered: a key's rows wait in keyed state until the watermark passes their timestamp, then
go through the frame in timestamp order (rows of one timestamp in arrival order, and together for
``RANGE``, whose frame takes them all). A row whose timestamp its key has already passed is late
and dropped. The result is append-only and keeps the time attribute.

>>> from actorflow.sql.dialect import parse
>>> over = parse("SELECT SUM(a) OVER (ORDER BY rowtime ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) FROM t")
>>> frame_of(over[0].expressions[0], over[0], "rowtime")
Frame(rows=True, preceding=2)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from actorflow.errors import PlanError
from actorflow.operators.base import Collector
from actorflow.operators.process import Context, KeyedProcessFunction, RuntimeContext
from actorflow.sql.accessors import error_at, interval_millis
from actorflow.sql.aggregates import Accumulate, Aggregate
from actorflow.sql.changelog import RetractAccumulate
from actorflow.sql.expressions import compile_projection
from actorflow.sql.relation import Relation, named_items
from actorflow.sql.sorting import hold_until_watermark, take_held
from actorflow.state.descriptors import ValueStateDescriptor
from actorflow.state.keyed import ValueState

if TYPE_CHECKING:
    from actorflow.sql.planner import Planner

__all__ = ["Frame", "OverAggregate", "frame_of", "plan_over", "window_of"]


@dataclass(frozen=True)
class Frame:
    """An OVER window's frame: ``ROWS`` (``preceding`` rows before the current one) or ``RANGE``
    (``preceding`` milliseconds before its timestamp); ``preceding`` None is ``UNBOUNDED``."""

    rows: bool
    preceding: int | None


def window_of(window: exp.Window, select: exp.Select) -> exp.Window:
    """The window of an ``OVER`` call: its own ``(...)``, or the select's ``WINDOW w AS (...)`` it
    names (``OVER w``)."""
    if window.args.get("partition_by") or window.args.get("order") or window.args.get("spec"):
        return window
    name = window.args.get("alias")
    if name is None:
        return window
    for named in select.args.get("windows") or []:
        if named.this.name == name.name:
            return named  # type: ignore[no-any-return]
    raise error_at(window, f"OVER {name.name}: no WINDOW {name.name} AS (...) in the query")


def order_check(window: exp.Window, rowtime: str | None) -> None:
    """Flink's rule: an OVER window is ordered by the time attribute ascending, and only by it."""
    order = window.args.get("order")
    keys = order.expressions if order is not None else []
    column = keys[0].this if len(keys) == 1 else None
    if (
        rowtime is None
        or not isinstance(column, exp.Column)
        or column.name != rowtime
        or keys[0].args.get("desc")
    ):
        raise error_at(
            order or window,
            f"OVER ... ORDER BY must be the time attribute ascending ({rowtime or 'the query has none'})",
        )


def frame_of(call: exp.Expression, select: exp.Select, rowtime: str | None) -> Frame:
    """The frame of the ``OVER`` call ``call`` (Flink's default without one: ``RANGE BETWEEN
    UNBOUNDED PRECEDING AND CURRENT ROW``). Raises :class:`SqlError` for a frame Flink refuses or
    actorflow does not run (an upper bound other than ``CURRENT ROW``)."""
    window = window_of(call.find(exp.Window) or call, select)  # type: ignore[arg-type]
    order_check(window, rowtime)
    spec = window.args.get("spec")
    if spec is None:
        return Frame(False, None)
    kind = str(spec.args.get("kind") or "").upper()
    end = spec.args.get("end")
    if str(end).upper() != "CURRENT ROW":
        raise error_at(spec, "an OVER window ends at the CURRENT ROW (Flink's only upper bound)")
    start = spec.args.get("start")
    side = str(spec.args.get("start_side") or "").upper()
    if str(start).upper() == "UNBOUNDED":
        return Frame(kind == "ROWS", None)
    if str(start).upper() == "CURRENT ROW":
        return Frame(kind == "ROWS", 0)
    if side != "PRECEDING":
        raise error_at(spec, "an OVER window starts PRECEDING the current row")
    if kind == "ROWS":
        if not (isinstance(start, exp.Literal) and not start.is_string and start.name.isdigit()):
            raise error_at(spec, "ROWS BETWEEN n PRECEDING takes a whole number of rows")
        return Frame(True, int(start.name))
    try:
        millis = interval_millis(start)
    except PlanError as error:
        raise error_at(spec, str(error)) from None
    return Frame(False, millis)


def plan_over(planner: Planner, select: exp.Select) -> Relation:
    """A select list with ``OVER`` aggregates (``COUNT``, ``SUM``, ``AVG``, ``MIN``, ``MAX``), all
    over one window: per key of its ``PARTITION BY``, a :class:`OverAggregate`. Raises
    :class:`SqlError` for what Flink refuses (an order other than the time attribute ascending,
    two windows, ``ROW_NUMBER`` outside a Top-N).

    >>> from actorflow import Flow
    >>> from actorflow.sql.dialect import parse
    >>> from actorflow.sql.planner import Planner
    >>> flow = Flow("doc")
    >>> _ = flow.sql("CREATE TABLE t (k STRING, n BIGINT, ts BIGINT, rowtime AS TO_TIMESTAMP_LTZ(ts, 3), "
    ...              "WATERMARK FOR rowtime AS rowtime) WITH ('connector' = 'jsonlines', 'path' = 'n')")
    >>> query = parse("SELECT k, rowtime, SUM(n) OVER (PARTITION BY k ORDER BY rowtime "
    ...               "ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS s FROM t")[0]
    >>> relation = plan_over(Planner(flow, flow._sql_session.catalog), query)
    >>> {name: str(kind) for name, kind in relation.columns.items()}, relation.rowtime
    ({'k': 'STRING', 'rowtime': 'TIMESTAMP_LTZ(3)', 's': 'BIGINT'}, 'rowtime')
    """
    for clause in ("group", "having", "distinct"):
        if select.args.get(clause):
            raise error_at(
                select, "OVER aggregates with GROUP BY, HAVING or DISTINCT are not supported yet"
            )
    calls = [window for item in select.expressions for window in item.find_all(exp.Window)]
    for call in calls:
        function = call.this
        if isinstance(function, exp.RowNumber):
            raise error_at(
                call,
                "ROW_NUMBER needs a filter on its rank (WHERE rn <= n) in an enclosing query: SELECT * "
                "FROM (SELECT *, ROW_NUMBER() OVER (...) AS rn FROM t) WHERE rn <= 3",
            )
        if not isinstance(function, exp.AggFunc):
            raise error_at(call, f"{function.sql()} OVER (...) is not supported yet")
    windows = [window_of(call, select) for call in calls]
    shapes = [
        tuple(str(window.args.get(part) or "") for part in ("partition_by", "order", "spec"))
        for window in windows
    ]
    if any(shape != shapes[0] for shape in shapes[1:]):
        raise error_at(calls[1], "all OVER aggregates of a query must use the same window")
    window = windows[0]
    base_select = select.copy()
    base_select.set("expressions", [exp.Star()])
    base_select.set("windows", None)
    base = planner.rows(planner.query(base_select))
    if base.changelog:
        raise error_at(select, "OVER aggregates of an updating result are not supported yet")
    frame = frame_of(calls[0], select, base.rowtime)
    assert base.rowtime is not None  # frame_of checked it
    keys = []
    for key in window.args.get("partition_by") or []:
        if not isinstance(key, exp.Column) or key.name not in base.columns:
            raise error_at(key, f"OVER (PARTITION BY ...) takes the query's columns, not {key.sql()!r}")
        keys.append(key.name)
    compile_argument = planner.compiler(base)
    functions = planner.catalog.functions
    aggregates: list[Aggregate] = []
    slots: dict[exp.Expression, str] = {}

    def swap(found: exp.Expression) -> exp.Expression:
        if isinstance(found, exp.Window):
            function = found.this
            name = slots.get(function)
            if name is None:
                aggregates.append(Aggregate.of(function, base.columns, functions, compile_argument))
                name = slots[function] = f"$o{len(aggregates) - 1}"
            return exp.column(name)
        return found

    items = [item.copy().transform(swap) for item in select.expressions]
    columns = dict(base.columns)
    columns.update({f"$o{index}": aggregate.type for index, aggregate in enumerate(aggregates)})
    named = named_items(items, columns)
    project, output = compile_projection(named, columns, functions=functions)
    rowtime = next(
        (name for name, node in named if isinstance(node, exp.Column) and node.name == base.rowtime), None
    )
    _, key_of = planner.key_of(base, keys)
    accumulate = Accumulate(aggregates) if frame.preceding is None else RetractAccumulate(aggregates)
    function = OverAggregate(accumulate, base.rowtime, frame, project)
    stream = base.stream.key_by(key_of).process(function, name=planner.node_name("over"))
    return Relation(stream, output, rowtime)


class OverAggregate(KeyedProcessFunction[dict[str, Any], dict[str, Any]]):
    """Per key: the rows waiting for the watermark (by timestamp), the last timestamp processed,
    and the frame: for ``UNBOUNDED`` its accumulators (``accumulate`` an :class:`Accumulate`),
    for a bounded frame its rows and accumulators a row is taken out of again when it leaves
    the frame (a :class:`RetractAccumulate`: sums subtract, MIN/MAX keep a sorted multiset), so
    each row costs the same whatever the size of the frame, as Flink's bounded over functions.

    >>> from actorflow.sql.aggregates import Aggregate
    >>> over = OverAggregate(Accumulate([]), "rowtime", Frame(True, 1), dict)
    >>> over.frame
    Frame(rows=True, preceding=1)
    """

    def __init__(
        self,
        accumulate: Accumulate | RetractAccumulate,
        rowtime: str,
        frame: Frame,
        project: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> None:
        self.accumulate = accumulate
        self.rowtime = rowtime
        self.frame = frame
        self.project = project
        self.names = [f"$o{index}" for index in range(len(accumulate.aggregates))]

    def open(self, ctx: RuntimeContext) -> None:
        self.pending: ValueState[dict[int, list[dict[str, Any]]] | None] = ctx.get_state(
            ValueStateDescriptor("pending")
        )
        self.last: ValueState[int | None] = ctx.get_state(ValueStateDescriptor("last"))
        #: UNBOUNDED: the accumulators; ROWS: a deque of rows; RANGE: a deque of (time, row).
        self.state: ValueState[Any] = ctx.get_state(ValueStateDescriptor("frame"))

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        time = value[self.rowtime]
        last = self.last.value()
        if time is None or (last is not None and time <= last):
            return  # late: its key's frame has moved past it (Flink drops it too)
        hold_until_watermark(self.pending, time, value, ctx.timer_service())

    def _emit(self, row: dict[str, Any], results: list[Any], out: Collector) -> None:
        full = dict(row)
        full.update(zip(self.names, results, strict=True))
        out.collect(self.project(full))

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        rows = take_held(self.pending, timestamp)
        if not rows:
            return
        self.last.update(timestamp)
        accumulate, frame = self.accumulate, self.frame
        add, result = accumulate.add, accumulate.get_result
        state = self.state.value()
        if frame.preceding is None:  # UNBOUNDED PRECEDING: one accumulator, rows added
            if state is None:
                state = accumulate.create_accumulator()
                self.state.update(state)
            if frame.rows:
                for row in rows:
                    self._emit(row, result(add(row, state)), out)
            else:
                for row in rows:
                    add(row, state)
                results = result(state)
                for row in rows:
                    self._emit(row, results, out)
            return
        # A bounded frame: its rows in a deque and accumulators that rows are taken out of
        # again as they leave it (counts and sums subtract, MIN/MAX keep a sorted multiset).
        if state is None:
            state = [accumulate.create_accumulator(), deque()]
            self.state.update(state)
        acc, members = state
        assert isinstance(accumulate, RetractAccumulate)
        retract = accumulate.retract
        if frame.rows:
            size = frame.preceding + 1
            for row in rows:
                members.append(row)
                add(row, acc)
                if len(members) > size:
                    retract(members.popleft(), acc)
                self._emit(row, result(acc), out)
            return
        for row in rows:
            members.append((timestamp, row))
            add(row, acc)
        limit = timestamp - frame.preceding
        while members[0][0] < limit:
            retract(members.popleft()[1], acc)
        results = result(acc)
        for row in rows:
            self._emit(row, results, out)
