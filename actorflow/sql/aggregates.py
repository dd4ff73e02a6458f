"""Aggregate calls of a query: accumulators, the group aggregation's changelog, a window's row.

Each aggregate call (``COUNT(*)``, ``COUNT(x)``, ``SUM``, ``AVG``, ``MIN``, ``MAX``) is one slot of
an accumulator list; :class:`Accumulate` generates one function that reads every argument of a
record and updates each slot, the window operator's aggregate function and the group aggregation's
state alike.

>>> from actorflow.sql.expressions import compile_expression
>>> from actorflow.sql.types import BIGINT
>>> columns = {"n": BIGINT}
>>> calls = [exp.Count(this=exp.Star()), exp.Sum(this=exp.column("n"))]
>>> accumulate = Accumulate([Aggregate.of(c, columns, {}, lambda node: compile_expression(node, columns))
...                          for c in calls])
>>> acc = accumulate.create_accumulator()
>>> accumulate.get_result(accumulate.add({"n": 4}, accumulate.add({"n": 3}, acc)))
[2, 7]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlglot import exp

from actorflow.operators.base import Collector
from actorflow.operators.process import Context, KeyedProcessFunction, RuntimeContext
from actorflow.operators.windows.functions import ProcessWindowFunction
from actorflow.runtime.messages import MAX_WATERMARK
from actorflow.sql.accessors import error_at
from actorflow.sql.relation import CHANGE, RawScan
from actorflow.sql.types import SqlType
from actorflow.state.descriptors import AggregateFunction, ValueStateDescriptor
from actorflow.state.keyed import ValueState

__all__ = [
    "Accumulate",
    "Aggregate",
    "Aggregation",
    "GroupAggregate",
    "Results",
    "WindowRow",
    "average",
    "has_aggregates",
    "replace_aggregates",
]


def has_aggregates(items: list[exp.Expression]) -> bool:
    """Whether a select list calls an aggregate."""
    return any(item.find(exp.AggFunc) is not None for item in items)


def replace_aggregates(node: exp.Expression, calls: list[exp.AggFunc]) -> exp.Expression:
    """``node`` with each aggregate call replaced by a column ``$a<i>`` (the i-th of ``calls``,
    equal calls shared)."""

    def swap(found: exp.Expression) -> exp.Expression:
        if isinstance(found, exp.AggFunc):
            for index, call in enumerate(calls):
                if call == found:
                    return exp.column(f"$a{index}")
            calls.append(found)
            return exp.column(f"$a{len(calls) - 1}")
        return found

    return node.transform(swap)


@dataclass
class Aggregation:
    """What a query's aggregate calls make (see :meth:`Planner.aggregation`)."""

    aggregates: list[Aggregate]
    #: The select list and HAVING over the group's columns and ``$a<i>``.
    items: list[exp.Expression]
    having: exp.Expression | None
    #: ``{"$a<i>": type}``.
    columns: dict[str, SqlType]


@dataclass
class Aggregate:
    """One aggregate call: its kind, its argument (None for ``COUNT(*)``), its result type."""

    kind: str
    #: The argument compiled over the relation's records (for a raw relation: not wrapped for
    #: missing fields, the generated ``add`` as a whole is).
    argument: Any
    type: SqlType
    #: ``COUNT(DISTINCT x)``, ``SUM(DISTINCT x)``, ``AVG(DISTINCT x)``: over the distinct non-NULL
    #: values (never for MIN and MAX, which are the same either way).
    distinct: bool = False

    @staticmethod
    def of(
        call: exp.AggFunc,
        columns: dict[str, SqlType],
        functions: dict[str, Any],
        compile: Callable[[exp.Expression], Any],
    ) -> Aggregate:
        from actorflow.sql.types import BIGINT, DOUBLE

        kind = call.key.lower()
        where: exp.Expression = call  # type: ignore[assignment]
        if kind not in ("count", "sum", "avg", "min", "max"):
            raise error_at(where, f"aggregate {call.sql()!r} is not supported yet")
        argument_node = call.this
        distinct = False
        if isinstance(argument_node, exp.Distinct):
            arguments = argument_node.expressions
            if len(arguments) != 1:
                message = f"{kind.upper()}(DISTINCT ...) of several columns is not supported yet"
                raise error_at(where, message)
            argument_node = arguments[0]
            # MIN and MAX of the distinct values are those of all of them.
            distinct = kind not in ("min", "max")
        if kind == "count" and (argument_node is None or isinstance(argument_node, exp.Star)):
            return Aggregate("count_star", None, BIGINT.not_null())
        compiled = compile(argument_node)
        if kind == "count":
            return Aggregate("count", compiled, BIGINT.not_null(), distinct)
        if kind in ("sum", "avg") and not compiled.type.is_numeric:
            raise error_at(where, f"{kind.upper()} needs a number, not {compiled.type}")
        result = compiled.type.nullable_()
        if kind == "sum" and compiled.type.is_integer:
            result = BIGINT.nullable_()
        if kind == "sum" and not compiled.type.is_integer:
            result = DOUBLE.nullable_()
        return Aggregate(kind, compiled, result, distinct)


class Accumulate(AggregateFunction[dict[str, Any], list[Any], list[Any]]):
    """One slot per aggregate call (AVG: a [sum, count] pair; a DISTINCT call: ``[the set of
    values seen, the slot over them]``). Append-only: rows are only added (see
    :class:`actorflow.sql.changelog.RetractAccumulate` for inputs that retract)."""

    def __init__(self, aggregates: list[Aggregate], raw: RawScan | None = None) -> None:
        self.aggregates = aggregates
        self.raw = raw
        #: The per-record update, generated: the window operator calls it straight.
        self.add = self._generate()  # type: ignore[method-assign, assignment]
        #: The accumulator of no rows when every slot is a number or NULL (no AVG, no DISTINCT):
        #: a new accumulator is its copy (one per window, so this is on the hot path).
        self._flat = (
            [_initial(a.kind) for a in aggregates]
            if not any(a.distinct or a.kind == "avg" for a in aggregates)
            else None
        )
        self._bind_create()

    def _bind_create(self) -> None:
        """A flat accumulator is made by the template's own ``copy`` (no Python call per window)."""
        if self._flat is not None:
            self.create_accumulator = self._flat.copy  # type: ignore[method-assign]

    def create_accumulator(self) -> list[Any]:
        if self._flat is not None:
            return self._flat.copy()
        return [[set(), _initial(a.kind)] if a.distinct else _initial(a.kind) for a in self.aggregates]

    def add(self, value: dict[str, Any], accumulator: list[Any]) -> list[Any]:
        """Replaced on each instance by the generated update (see ``_generate``)."""
        self.add = self._generate()  # type: ignore[method-assign, assignment]
        return self.add(value, accumulator)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["add"]  # generated code: made again where it is unpickled
        state.pop("create_accumulator", None)  # bound again there too
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.add = self._generate()  # type: ignore[method-assign, assignment]
        self._bind_create()

    def _generate(self) -> Callable[[dict[str, Any], list[Any]], list[Any]]:
        """One function that reads every argument of a record, then updates each slot: the
        accumulator changes only once every argument was read (a raw record that lacks a field
        is read again through the table's reader: NULL)."""
        namespace: dict[str, Any] = {}
        reads, updates = [], []
        for index, aggregate in enumerate(self.aggregates):
            kind = aggregate.kind
            if kind == "count_star":
                updates.append(f"acc[{index}] += 1")
                continue
            namespace.update(aggregate.argument.namespace)
            reads.append(f"v{index} = {aggregate.argument.source}")
            slot = "d[1]" if aggregate.distinct else f"acc[{index}]"
            update = {
                "count": f"{slot} += 1",
                "sum": f"c = {slot}; {slot} = v{index} if c is None else c + v{index}",
                "avg": f"c = {slot}; c[0] += v{index}; c[1] += 1",
                "min": f"c = {slot}\n        if c is None or v{index} < c: {slot} = v{index}",
                "max": f"c = {slot}\n        if c is None or v{index} > c: {slot} = v{index}",
            }[kind]
            if aggregate.distinct:  # the slot sees each value once
                update = (f"d = acc[{index}]\n        if v{index} not in d[0]:\n"
                          f"            d[0].add(v{index}); {update}")  # fmt: skip
            updates.append(f"if v{index} is not None:\n        {update}")
        raw = self.raw
        lines = ["def add(row, acc):"]
        if raw is not None and reads:
            namespace["_read"] = raw.read
            if raw.text_stamps:
                lines += ["    row = _read(row)", *(f"    {read}" for read in reads)]
            else:
                lines += ["    try:", *(f"        {read}" for read in reads), "    except KeyError:",
                          "        row = _read(row)", *(f"        {read}" for read in reads)]  # fmt: skip
        else:
            lines += [f"    {read}" for read in reads]
        lines += [f"    {update}" for update in updates] + ["    return acc"]
        exec(compile("\n".join(lines) + "\n", "<sql aggregate>", "exec"), namespace)
        return namespace["add"]  # type: ignore[no-any-return]

    def get_result(self, accumulator: list[Any]) -> list[Any]:
        if self._flat is not None:  # plain slots are their results (read at once, not kept)
            return accumulator
        result = list(accumulator)
        for index, aggregate in enumerate(self.aggregates):
            value = accumulator[index]
            if aggregate.distinct:
                value = result[index] = value[1]
            if aggregate.kind == "avg":
                result[index] = average(value[0], value[1], aggregate.type.is_integer)
        return result

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        merged = []
        for aggregate, left, right in zip(self.aggregates, a, b, strict=True):
            kind = aggregate.kind
            if aggregate.distinct:  # the slot again, over the union of the values
                seen = left[0] | right[0]
                merged.append([seen, _of_values(kind, seen)])
            elif kind in ("count", "count_star"):
                merged.append(left + right)
            elif kind == "avg":
                merged.append([left[0] + right[0], left[1] + right[1]])
            elif left is None or right is None:
                merged.append(right if left is None else left)
            elif kind == "sum":
                merged.append(left + right)
            else:
                merged.append(min(left, right) if kind == "min" else max(left, right))
        return merged


def average(total: Any, count: int, integer: bool) -> Any:
    """AVG of ``count`` values summing to ``total`` (NULL of none; Flink: an integer average
    truncates).

    >>> average(7, 2, True), average(7.0, 2, False), average(0, 0, True)
    (3, 3.5, None)
    """
    if not count:
        return None
    return int(total / count) if integer else total / count


def _initial(kind: str) -> Any:
    """A slot of no rows."""
    if kind == "avg":
        return [0, 0]
    return 0 if kind.startswith("count") else None


def _of_values(kind: str, values: set[Any]) -> Any:
    """The slot of a DISTINCT call over ``values`` (each once)."""
    if kind == "count":
        return len(values)
    if kind == "avg":
        return [sum(values), len(values)]
    return sum(values) if values else None


class Results(Protocol):
    """What a group aggregation needs of its accumulators: :class:`Accumulate`, or
    :class:`actorflow.sql.changelog.RetractAccumulate` over an updating input."""

    def create_accumulator(self) -> list[Any]: ...

    def add(self, value: dict[str, Any], accumulator: list[Any]) -> list[Any]: ...

    def get_result(self, accumulator: list[Any]) -> list[Any]: ...


class GroupAggregate(KeyedProcessFunction[dict[str, Any], dict[str, Any]]):
    """Per group: the accumulators, and the result row last emitted (see
    :meth:`Planner._group_aggregate`). Its input is append-only
    (:class:`actorflow.sql.changelog.RetractGroupAggregate` takes updating ones)."""

    def __init__(
        self,
        accumulate: Results,
        keys: list[str],
        project: Callable[[dict[str, Any]], dict[str, Any]],
        keep: Callable[[dict[str, Any]], bool] | None,
        batch: bool,
    ) -> None:
        self.accumulate = accumulate
        self.keys = keys
        self.project = project
        self.keep = keep
        self.batch = batch

    def open(self, ctx: RuntimeContext) -> None:
        self.state: ValueState[list[Any] | None] = ctx.get_state(ValueStateDescriptor("accumulators"))
        self.emitted: ValueState[dict[str, Any] | None] = ctx.get_state(ValueStateDescriptor("emitted"))

    def _result(self, key: Any, accumulators: list[Any]) -> dict[str, Any] | None:
        row: dict[str, Any] = {}
        if len(self.keys) == 1:
            row[self.keys[0]] = key
        elif self.keys:
            row.update(zip(self.keys, key, strict=True))
        for index, value in enumerate(self.accumulate.get_result(accumulators)):
            row[f"$a{index}"] = value
        if self.keep is not None and not self.keep(row):
            return None
        return self.project(row)

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        accumulators = self.state.value()
        if accumulators is None:
            accumulators = self.accumulate.create_accumulator()
            if self.batch:
                ctx.timer_service().register_event_time_timer(MAX_WATERMARK)
        self.accumulate.add(value, accumulators)
        self.state.update(accumulators)
        if self.batch:
            return
        self._emit(self.emitted.value(), self._result(ctx.current_key, accumulators), out)

    def _emit(self, old: dict[str, Any] | None, new: dict[str, Any] | None, out: Collector) -> None:
        """The changes from the group's result row ``old`` to ``new`` (None: no row): ``+I``,
        ``-U`` and ``+U``, or ``-D``; none when it stays the same."""
        if old is not None and new == old:
            return
        if old is not None:
            out.collect({**old, CHANGE: "-U" if new is not None else "-D"})
        if new is not None:
            out.collect({**new, CHANGE: "+I" if old is None else "+U"})
            self.emitted.update(new)
        else:
            self.emitted.clear()

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        accumulators = self.state.value()
        if accumulators is not None:
            row = self._result(ctx.current_key, accumulators)
            if row is not None:
                out.collect(row)


class WindowRow(ProcessWindowFunction[list[Any], dict[str, Any], Any]):
    """The result row of one window: its group keys, ``window_start/end/time`` and the aggregates
    (``$a<i>``), built by one generated function, go through ``calc`` (HAVING and the select list
    as one generated function: the output row, or None when HAVING drops the window).

    >>> from types import SimpleNamespace
    >>> rows = []
    >>> window_row = WindowRow(["card"], 2, lambda row: row)
    >>> window_row.process("c1", SimpleNamespace(window=SimpleNamespace(start=0, end=10)), [[3, 7]],
    ...                    SimpleNamespace(collect=rows.append))
    >>> rows
    [{'window_start': 0, 'window_end': 10, 'window_time': 9, 'card': 'c1', '$a0': 3, '$a1': 7}]
    """

    def __init__(
        self,
        keys: list[str],
        aggregates: int,
        calc: Callable[[dict[str, Any]], dict[str, Any] | None],
        renames: list[tuple[str, str]] | None = None,
    ) -> None:
        self.keys = keys
        self.aggregates = aggregates
        self.calc = calc
        #: When the select list only names columns (``[(output name, column)]``, no HAVING): the
        #: output row is built directly, without the row of every column and ``calc``.
        self.renames = renames
        #: The whole of :meth:`process`, generated: the window operator calls it straight.
        self.process = self._generate()  # type: ignore[method-assign, assignment]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["process"]  # generated code: made again where it is unpickled
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.process = self._generate()  # type: ignore[method-assign, assignment]

    def _generate(self) -> Callable[[Any, Any, list[list[Any]], Any], None]:
        """``process(key, context, elements, out)`` as one function: the row of the window's
        group keys, bounds and aggregates, through ``calc``, to ``out`` unless HAVING dropped it."""
        sources = {"window_start": "window.start", "window_end": "end", "window_time": "end - 1"}
        if len(self.keys) == 1:
            sources[self.keys[0]] = "key"
        else:
            sources.update({name: f"key[{index}]" for index, name in enumerate(self.keys)})
        sources.update({f"$a{index}": f"acc[{index}]" for index in range(self.aggregates)})
        head = (
            "def process(key, context, elements, out):\n"
            "    window = context.window\n"
            "    end = window.end\n"
            "    acc = elements[0]\n"
        )
        if self.renames is not None:
            entries = [f"{name!r}: {sources[column]}" for name, column in self.renames]
            source = head + f"    out.collect({{{', '.join(entries)}}})\n"
        else:
            entries = [f"{column!r}: {value}" for column, value in sources.items()]
            source = head + (
                f"    result = _calc({{{', '.join(entries)}}})\n"
                "    if result is not None:\n"
                "        out.collect(result)\n"
            )
        namespace: dict[str, Any] = {"_calc": self.calc}
        exec(compile(source, "<sql window row>", "exec"), namespace)  # code built from column names
        return namespace["process"]  # type: ignore[no-any-return]

    def process(self, key: Any, context: Any, elements: list[list[Any]], out: Any) -> None:
        """Replaced on each instance by the generated function (see ``_generate``)."""
        self.process = self._generate()  # type: ignore[method-assign, assignment]
        self.process(key, context, elements, out)
