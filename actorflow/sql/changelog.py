"""Updating results (changelogs): aggregates that retract, and what a change row is.

A changelog is a stream of rows that each carry their change under ``row[CHANGE]``, as Flink's
RowKind: ``+I`` (insert), ``-U`` (the row before an update), ``+U`` (the row after it), ``-D``
(delete). A filter or a select list over a changelog keeps each row's change
(:func:`actorflow.sql.connectors.keep_change`); a ``GROUP BY`` over one adds ``+I``/``+U`` rows
and retracts ``-U``/``-D`` rows (:class:`RetractGroupAggregate`, on :class:`RetractAccumulate`'s
retractable accumulators, Flink's ``retract`` method of an aggregate function).
:class:`Changelog` applies a changelog to the rows it leaves, as a sink in retract mode would.

>>> log = Changelog()
>>> log.apply([{"n": 1, CHANGE: "+I"}, {"n": 1, CHANGE: "-U"}, {"n": 2, CHANGE: "+U"}])
>>> log.rows()
[{'n': 2}]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from sortedcontainers import SortedDict

from actorflow.operators.base import Collector
from actorflow.operators.process import Context
from actorflow.runtime.messages import MAX_WATERMARK
from actorflow.sql.aggregates import Aggregate, GroupAggregate, average
from actorflow.sql.relation import CHANGE, RawScan, tolerant

__all__ = ["RETRACTIONS", "Changelog", "RetractAccumulate", "RetractGroupAggregate"]

#: The changes that take a row away (the others add one).
RETRACTIONS = frozenset(("-U", "-D"))

_Slot = Callable[[list[Any], int, Any], None]


class RetractAccumulate:
    """Accumulators rows can be taken out of again: slot 0 counts the rows in the group, then one
    slot per aggregate call. ``COUNT`` and ``COUNT(*)`` count up and down; ``SUM`` and ``AVG``
    keep ``[sum, count of non-NULL values]`` (NULL again when the count is back to 0); ``MIN`` and
    ``MAX`` a sorted multiset of the values (value -> count); a DISTINCT call ``[value -> count,
    its slot]``, the slot changing when a value comes the first time or goes the last.

    A retraction of a row the accumulator never had is ignored (as Flink ignores it).

    >>> from sqlglot import exp
    >>> from actorflow.sql.expressions import compile_expression
    >>> from actorflow.sql.types import BIGINT
    >>> columns = {"n": BIGINT}
    >>> calls = [exp.Max(this=exp.column("n")), exp.Sum(this=exp.column("n"))]
    >>> accumulate = RetractAccumulate(
    ...     [Aggregate.of(c, columns, {}, lambda node: compile_expression(node, columns)) for c in calls]
    ... )
    >>> acc = accumulate.add({"n": 7}, accumulate.add({"n": 3}, accumulate.create_accumulator()))
    >>> accumulate.get_result(accumulate.retract({"n": 7}, acc)), acc[0]
    ([3, 3], 1)
    """

    def __init__(self, aggregates: list[Aggregate], raw: RawScan | None = None) -> None:
        self.aggregates = aggregates
        self.raw = raw
        self._reads: list[Callable[[dict[str, Any]], Any] | None] = []
        self._adds: list[_Slot] = []
        self._retracts: list[_Slot] = []
        for aggregate in aggregates:
            read = None
            if aggregate.argument is not None:
                read = aggregate.argument.function
                if raw is not None:
                    read = tolerant(read, raw)
            self._reads.append(read)
            add, retract = _SLOTS[aggregate.kind]
            if aggregate.distinct:
                add, retract = _distinct(add, retract)
            self._adds.append(add)
            self._retracts.append(retract)

    def create_accumulator(self) -> list[Any]:
        accumulator: list[Any] = [0]
        for aggregate in self.aggregates:
            slot = _initial(aggregate.kind)
            accumulator.append([{}, slot] if aggregate.distinct else slot)
        return accumulator

    def add(self, value: dict[str, Any], accumulator: list[Any]) -> list[Any]:
        """``accumulator`` with row ``value`` added."""
        return self._apply(value, accumulator, self._adds, 1)

    def retract(self, value: dict[str, Any], accumulator: list[Any]) -> list[Any]:
        """``accumulator`` with row ``value`` taken out."""
        return self._apply(value, accumulator, self._retracts, -1)

    def _apply(
        self, value: dict[str, Any], accumulator: list[Any], slots: list[_Slot], sign: int
    ) -> list[Any]:
        values = [read(value) if read is not None else True for read in self._reads]
        accumulator[0] += sign
        for index, (update, argument) in enumerate(zip(slots, values, strict=True), 1):
            if argument is not None:
                update(accumulator, index, argument)
        return accumulator

    def get_result(self, accumulator: list[Any]) -> list[Any]:
        """The value of each aggregate call (not the row count)."""
        result = []
        for aggregate, slot in zip(self.aggregates, accumulator[1:], strict=True):
            if aggregate.distinct:
                slot = slot[1]
            kind = aggregate.kind
            if kind in ("sum", "avg"):
                total, count = slot
                if kind == "avg":
                    result.append(average(total, count, aggregate.type.is_integer))
                else:
                    result.append(total if count else None)
            elif kind in ("min", "max"):
                result.append(None if not slot else slot.peekitem(0 if kind == "min" else -1)[0])
            else:
                result.append(slot)
        return result


def _initial(kind: str) -> Any:
    if kind in ("sum", "avg"):
        return [0, 0]
    if kind in ("min", "max"):
        return SortedDict()
    return 0


def _count_add(acc: list[Any], index: int, value: Any) -> None:
    acc[index] += 1


def _count_retract(acc: list[Any], index: int, value: Any) -> None:
    acc[index] -= 1


def _sum_add(acc: list[Any], index: int, value: Any) -> None:
    slot = acc[index]
    slot[0] += value
    slot[1] += 1


def _sum_retract(acc: list[Any], index: int, value: Any) -> None:
    slot = acc[index]
    slot[1] -= 1
    # Back to no values: start again from 0, not from what float rounding left.
    slot[0] = slot[0] - value if slot[1] else 0


def _multiset_add(acc: list[Any], index: int, value: Any) -> None:
    values = acc[index]
    values[value] = values.get(value, 0) + 1


def _multiset_retract(acc: list[Any], index: int, value: Any) -> None:
    values = acc[index]
    count = values.get(value)
    if count == 1:
        del values[value]
    elif count:
        values[value] = count - 1


def _distinct(add: _Slot, retract: _Slot) -> tuple[_Slot, _Slot]:
    """The updates of a DISTINCT call's slot ``[value -> count, the slot]``: the slot sees a
    value when its count goes from 0 to 1, and loses it when it goes back to 0."""

    def distinct_add(acc: list[Any], index: int, value: Any) -> None:
        holder = acc[index]
        seen = holder[0]
        count = seen.get(value, 0)
        seen[value] = count + 1
        if not count:
            add(holder, 1, value)

    def distinct_retract(acc: list[Any], index: int, value: Any) -> None:
        holder = acc[index]
        seen = holder[0]
        count = seen.get(value)
        if count == 1:
            del seen[value]
            retract(holder, 1, value)
        elif count:
            seen[value] = count - 1

    return distinct_add, distinct_retract


_SLOTS: dict[str, tuple[_Slot, _Slot]] = {
    "count_star": (_count_add, _count_retract),
    "count": (_count_add, _count_retract),
    "sum": (_sum_add, _sum_retract),
    "avg": (_sum_add, _sum_retract),
    "min": (_multiset_add, _multiset_retract),
    "max": (_multiset_add, _multiset_retract),
}


class RetractGroupAggregate(GroupAggregate):
    """A ``GROUP BY`` over an updating input: ``+I``/``+U`` rows are added to their group,
    ``-U``/``-D`` rows taken out; the group's result row changes as in :class:`GroupAggregate`,
    and the group is deleted (``-D`` of its last row, its state cleared) when its last row is
    taken out. In batch mode only the final rows, at the end of the input."""

    accumulate: RetractAccumulate

    def __init__(
        self,
        accumulate: RetractAccumulate,
        keys: list[str],
        project: Callable[[dict[str, Any]], dict[str, Any]],
        keep: Callable[[dict[str, Any]], bool] | None,
        batch: bool,
    ) -> None:
        super().__init__(accumulate, keys, project, keep, batch)

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        retract = value[CHANGE] in RETRACTIONS
        accumulators = self.state.value()
        if accumulators is None:
            if retract:  # nothing to take it out of
                return
            accumulators = self.accumulate.create_accumulator()
            if self.batch:
                ctx.timer_service().register_event_time_timer(MAX_WATERMARK)
        if retract:
            self.accumulate.retract(value, accumulators)
        else:
            self.accumulate.add(value, accumulators)
        if self.batch:  # the state stays (its timer too): the end of the input reads it
            self.state.update(accumulators)
            return
        old = self.emitted.value()
        if accumulators[0] <= 0:  # the group's last row went
            self.state.clear()
            self._emit(old, None, out)
            return
        self.state.update(accumulators)
        self._emit(old, self._result(ctx.current_key, accumulators), out)

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        accumulators = self.state.value()
        if accumulators is not None and accumulators[0] > 0:
            row = self._result(ctx.current_key, accumulators)
            if row is not None:
                out.collect(row)


class Changelog:
    """The rows a changelog leaves: ``+I``/``+U`` add a row, ``-U``/``-D`` take one out (a bag:
    equal rows count), as a sink in retract mode applies them. Rows without a change are
    inserts.

    Raises ``ValueError`` on a retraction of a row that is not there (a changelog that does not
    add up).

    >>> log = Changelog()
    >>> log.apply([{"k": "a", CHANGE: "+I"}, {"k": "a", CHANGE: "-D"}])
    >>> log.rows()
    []
    """

    def __init__(self) -> None:
        self._rows: Counter[tuple[tuple[str, Any], ...]] = Counter()

    def apply(self, rows: Iterable[dict[str, Any]]) -> None:
        """Apply each change of ``rows`` in order."""
        live = self._rows
        for row in rows:
            change = row.get(CHANGE, "+I")
            key = tuple((name, value) for name, value in row.items() if name != CHANGE)
            if change in RETRACTIONS:
                if not live[key]:
                    raise ValueError(f"{change} of a row that is not there: {dict(key)}")
                live[key] -= 1
            else:
                live[key] += 1

    def rows(self) -> list[dict[str, Any]]:
        """The rows left, each as often as it is there."""
        return [dict(key) for key, count in self._rows.items() for _ in range(count)]
