"""The keyed operators of rankings and sorts (planned by :mod:`actorflow.sql.ranking`): sort keys,
:class:`Deduplicate`, :class:`TopN`, :class:`WindowTopN`, :class:`Limit`, :class:`TemporalSort` and
:class:`SortAll`. Each keeps its rows in keyed state (a key's top rows in a ``SortedList``) and
emits output rows, or changelog rows with ``row[CHANGE]``, with the query's select list applied.

>>> key = sort_key([RankKey("n", descending=True, numeric=True)])
>>> [row["n"] for row in sorted([{"n": 1}, {"n": None}, {"n": 3}], key=key)]
[3, 1, None]
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sortedcontainers import SortedList

from actorflow.operators.base import Collector
from actorflow.operators.process import Context, KeyedProcessFunction, RuntimeContext
from actorflow.runtime.messages import MAX_WATERMARK
from actorflow.sql.relation import CHANGE
from actorflow.state.descriptors import ValueStateDescriptor
from actorflow.state.keyed import ValueState

__all__ = [
    "Deduplicate",
    "Limit",
    "RankKey",
    "SortAll",
    "TemporalSort",
    "TopN",
    "WindowTopN",
    "sort_key",
]

Row = dict[str, Any]
Project = Callable[[Row], Row]


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
    """One ``ORDER BY`` key: a column of the rows, the direction, where NULLs go (None: Flink's
    default, first ascending and last descending), and whether its values are numbers."""

    column: str
    descending: bool = False
    nulls_first: bool | None = None
    numeric: bool = False

    @property
    def nulls_go_first(self) -> bool:
        return not self.descending if self.nulls_first is None else self.nulls_first


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
            row: Row, spec: RankKey = spec, null: tuple[int] = (0,) if spec.nulls_go_first else (2,)
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


# -- rankings --------------------------------------------------------------------------------------


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
    enter is dropped at once, so a key holds at most ``last`` rows. Over an updating input
    (``updating``: rows with ``row[CHANGE]``) a key holds all its rows, since a retracted row
    (``-U``, ``-D``) lets the next one in; each change of the ranks is the difference of the
    ranks before and after the row. In batch mode the final ranks come out at the end of the
    input, as plain rows.

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
        updating: bool = False,
    ) -> None:
        self.key = key
        self.first = first
        self.last = last
        self.project = project
        self.rank = rank
        self.batch = batch
        self.updating = updating

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
        if self.updating:
            self._change(value, state, out)
            return
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

    def _change(self, value: Row, state: list[Any], out: Collector) -> None:
        """One change of an updating input: the row added or taken out, then the ranks' changes."""
        top: SortedList = state[1]
        row = {name: field for name, field in value.items() if name != CHANGE}
        key = self.key(row)
        ranks = slice(self.first - 1, self.last)
        before = top[ranks]
        if value.get(CHANGE, "+I") in ("+I", "+U"):
            top.add((key, state[0], row))
            state[0] += 1
        else:
            index = top.bisect_left((key,))  # the first entry of this sort key
            while index < len(top) and top[index][0] == key:
                if top[index][2] == row:
                    del top[index]
                    break
                index += 1
            else:
                return  # a retraction of a row never seen: nothing ranked changes
        if self.batch:
            return
        after = top[ranks]
        if self.rank is None:  # the rows that left the ranks, then those that came in
            kept_before, kept_after = {e[1] for e in before}, {e[1] for e in after}
            for _, seq, old in before:
                if seq not in kept_after:
                    out.collect({**self._output(old, 0), CHANGE: "-D"})
            for _, seq, new in after:
                if seq not in kept_before:
                    out.collect({**self._output(new, 0), CHANGE: "+I"})
            return
        for index in range(max(len(before), len(after))):  # each rank whose row changed
            rank = self.first + index
            old_entry = before[index] if index < len(before) else None
            new_entry = after[index] if index < len(after) else None
            if new_entry is None:
                assert old_entry is not None
                out.collect({**self._output(old_entry[2], rank), CHANGE: "-D"})
            elif old_entry is None:
                out.collect({**self._output(new_entry[2], rank), CHANGE: "+I"})
            elif old_entry[1] != new_entry[1]:
                out.collect({**self._output(old_entry[2], rank), CHANGE: "-U"})
                out.collect({**self._output(new_entry[2], rank), CHANGE: "+U"})

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        state = self.state.value()
        if state is None:
            return
        for index, (_, _, row) in enumerate(state[1]):
            if index >= self.last:
                break
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


# -- sorts -----------------------------------------------------------------------------------------


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
        hold_until_watermark(self.pending, time, value, timers)

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        rows = take_held(self.pending, timestamp)
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


def hold_until_watermark(
    pending: ValueState[dict[int, list[Any]] | None], time: int, row: Any, timers: Any
) -> None:
    """Keep ``row`` among its key's rows of event time ``time`` (``pending``) until the watermark
    passes ``time``: one event-time timer per time, whose firing :func:`take_held` serves."""
    waiting = pending.value()
    if waiting is None:
        waiting = {}
        pending.update(waiting)
    rows = waiting.get(time)
    if rows is None:
        waiting[time] = [row]
        timers.register_event_time_timer(time)
    else:
        rows.append(row)


def take_held(pending: ValueState[dict[int, list[Any]] | None], time: int) -> list[Any] | None:
    """The rows :func:`hold_until_watermark` kept for ``time``, in arrival order (the state is
    cleared when none is left)."""
    waiting = pending.value()
    if waiting is None:
        return None
    rows = waiting.pop(time, None)
    if not waiting:
        pending.clear()
    return rows
