"""The operators of SQL joins: keyed co-process functions over two sides' rows.

Both sides are keyed by their equal-key columns, so the rows of both sides with equal keys meet in
one instance and share its keyed state. A joined row has both sides' columns, qualified by their
aliases (:class:`RowShape`); a row of an outer side without a partner is padded with NULLs. A key
with a NULL in it never matches (SQL's ``NULL = NULL`` is not true): its rows are kept out of
state, and an outer side's rows are emitted padded.

- :class:`RegularJoin`: both sides' rows kept in keyed state, per key a multiset (row -> count and
  the number of the other side's rows it matches); an updating result (``+I``, ``-D``; an inner
  join of two changelogs passes each input row's change on), or in batch mode the final rows at
  the end of the input.
- :class:`WindowJoin`: the rows of windowing table functions, joined per key and window when the
  watermark passes the window's end (``window_end - 1``); an append-only result.
- :class:`OuterIntervalJoin`: a LEFT/RIGHT/FULL interval join; the rows of an outer side that
  found no partner are emitted padded when the watermark passes their interval.

>>> shape = RowShape("a.", ["k", "x"], "b.", ["k"])
>>> shape.join({"k": 1, "x": 2}, None)
{'a.k': 1, 'a.x': 2, 'b.k': None}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actorflow.operators.base import Collector
from actorflow.operators.co_process import KeyedCoProcessFunction
from actorflow.operators.process import Context, RuntimeContext
from actorflow.runtime.messages import MAX_WATERMARK
from actorflow.sql.relation import CHANGE
from actorflow.state.descriptors import ValueStateDescriptor
from actorflow.state.keyed import ValueState

__all__ = ["OuterIntervalJoin", "RegularJoin", "RowShape", "WindowJoin", "has_null"]

#: A multiset entry of a regular join's state: [row, count, matches] (matches: how many of the
#: other side's rows, counted with their multiplicity, join this row).
Entry = list[Any]
#: A check of a joined row (an outer join's ON conditions other than the equal keys), or None.
Residual = Callable[[dict[str, Any]], bool] | None


def has_null(key: Any, parts: int) -> bool:
    """Whether a join key (one value, or a tuple of ``parts`` values) has a NULL in it.

    >>> has_null((1, None), 2), has_null(None, 1), has_null(3, 1)
    (True, True, False)
    """
    if parts == 1:
        return key is None
    return None in key


class RowShape:
    """How two sides' rows make a joined row: ``left_prefix + column`` for each left column, the
    same on the right (a prefix is empty for a side whose columns are qualified already)."""

    def __init__(self, left_prefix: str, left: list[str], right_prefix: str, right: list[str]) -> None:
        self.left = left
        self.right = right
        self.left_names = [left_prefix + name for name in left]
        self.right_names = [right_prefix + name for name in right]

    def join(self, left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
        """The joined row; a missing side (None) is all NULL."""
        if left is None:
            row = dict.fromkeys(self.left_names)
        else:
            row = dict(zip(self.left_names, map(left.get, self.left), strict=True))
        if right is None:
            row.update(dict.fromkeys(self.right_names))
        else:
            row.update(zip(self.right_names, map(right.get, self.right), strict=True))
        return row

    def identity(self, side: int, row: dict[str, Any]) -> Any:
        """What makes two rows of a side the same row in a multiset: their values."""
        values = tuple(map(row.get, self.right if side else self.left))
        try:
            hash(values)
        except TypeError:  # an ARRAY or MAP value
            return repr(values)
        return values


class RegularJoin(KeyedCoProcessFunction[dict[str, Any], dict[str, Any], dict[str, Any]]):
    """A join without time bounds (see the module docstring); ``outer`` says which sides keep
    their unmatched rows (LEFT: ``(True, False)``).

    Inputs may be changelogs: ``+I``/``+U`` add a row, ``-U``/``-D`` retract one. Flink's output
    changes: an inner join passes the input row's change on; with an outer side, ``+I`` and
    ``-D`` only, and a padded row is retracted (``-D``) before its first joined row and comes back
    (``+I``) after its last one is retracted. With ``batch`` only the final rows, at the end of
    the input, without changes. ``changelog=False`` (an inner join of two append-only inputs):
    plain rows."""

    def __init__(
        self,
        shape: RowShape,
        outer: tuple[bool, bool],
        residual: Residual,
        key_parts: int,
        *,
        changelog: bool,
        batch: bool,
    ) -> None:
        self.shape = shape
        self.outer = outer
        self.residual = residual
        self.key_parts = key_parts
        self.changelog = changelog
        self.batch = batch

    def open(self, ctx: RuntimeContext) -> None:
        self.sides: tuple[ValueState[dict[Any, Entry] | None], ValueState[dict[Any, Entry] | None]] = (
            ctx.get_state(ValueStateDescriptor("join.left")),
            ctx.get_state(ValueStateDescriptor("join.right")),
        )

    def process_element1(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        self._element(0, value, ctx, out)

    def process_element2(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        self._element(1, value, ctx, out)

    def _pair(self, side: int, row: dict[str, Any], other: dict[str, Any] | None) -> dict[str, Any]:
        return self.shape.join(row, other) if side == 0 else self.shape.join(other, row)

    def _emit(self, out: Collector, row: dict[str, Any], change: str, times: int = 1) -> None:
        if self.changelog:
            row[CHANGE] = change
        for _ in range(times):
            out.collect(dict(row) if times > 1 else row)

    def _element(self, side: int, row: dict[str, Any], ctx: Context, out: Collector) -> None:
        change = row.get(CHANGE, "+I")
        add = change in ("+I", "+U")
        null_key = has_null(ctx.current_key, self.key_parts)
        own_outer, other_outer = self.outer[side], self.outer[1 - side]
        if self.batch:
            if null_key and not own_outer:
                return
            self._count(side, row, add)
            ctx.timer_service().register_event_time_timer(MAX_WATERMARK)
            return
        if null_key:
            if own_outer:
                self._emit(out, self._pair(side, row, None), "+I" if add else "-D")
            return
        entries = self.sides[1 - side].value()
        matches: list[tuple[Entry, dict[str, Any]]] = []
        if entries:
            residual = self.residual
            for entry in entries.values():
                joined = self._pair(side, row, entry[0])
                if residual is None or residual(joined):
                    matches.append((entry, joined))
        plain = not own_outer and not other_outer
        if add:
            for entry, joined in matches:
                if other_outer:
                    if entry[2] == 0:
                        self._emit(out, self._pair(1 - side, entry[0], None), "-D", entry[1])
                    entry[2] += 1
                self._emit(out, joined, change if plain else "+I", entry[1])
            if not matches and own_outer:
                self._emit(out, self._pair(side, row, None), "+I")
            added = self._count(side, row, True)
            assert added is not None
            added[2] = sum(match[1] for match, _ in matches)
            return
        if self._count(side, row, False) is None:
            return  # a retraction of a row never added: nothing was emitted for it
        for entry, joined in matches:
            self._emit(out, joined, change if plain else "-D", entry[1])
            if other_outer:
                entry[2] -= 1
                if entry[2] == 0:
                    self._emit(out, self._pair(1 - side, entry[0], None), "+I", entry[1])
        if not matches and own_outer:
            self._emit(out, self._pair(side, row, None), "-D")

    def _count(self, side: int, row: dict[str, Any], add: bool) -> Entry | None:
        """Add one copy of ``row`` to its side's multiset (its entry), or take one away (the entry,
        or None when the row was not there)."""
        state = self.sides[side]
        entries = state.value()
        if entries is None:
            if not add:
                return None
            entries = {}
            state.update(entries)  # the live value: changed in place below
        identity = self.shape.identity(side, row)
        entry = entries.get(identity)
        if add:
            if entry is None:
                entry = entries[identity] = [{k: v for k, v in row.items() if k != CHANGE}, 0, 0]
            entry[1] += 1
            return entry
        if entry is None:
            return None
        entry[1] -= 1
        if entry[1] == 0:
            del entries[identity]
            if not entries:
                state.clear()
        return entry

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        """Batch mode, the end of the input: the key's final rows."""
        lefts, rights = (state.value() or {} for state in self.sides)
        for state in self.sides:
            state.clear()
        joinable = not has_null(ctx.current_key, self.key_parts)
        residual = self.residual
        matched: set[Any] = set()
        for left in lefts.values():
            found = False
            if joinable:
                for identity, right in rights.items():
                    joined = self.shape.join(left[0], right[0])
                    if residual is None or residual(joined):
                        found = True
                        matched.add(identity)
                        self._emit(out, joined, "+I", left[1] * right[1])
            if not found and self.outer[0]:
                self._emit(out, self.shape.join(left[0], None), "+I", left[1])
        if self.outer[1]:
            for identity, right in rights.items():
                if identity not in matched:
                    self._emit(out, self.shape.join(None, right[0]), "+I", right[1])


class WindowJoin(KeyedCoProcessFunction[dict[str, Any], dict[str, Any], dict[str, Any]]):
    """A window join: the rows of both sides of one key and window, joined when the watermark
    passes the window's end (an event-time timer at ``window_end - 1``, the window's
    ``window_time``); outer sides' unmatched rows padded. A row whose window has fired already
    is late and dropped, as the window operator drops it. ``ends`` are the two sides'
    ``window_end`` columns."""

    def __init__(
        self,
        shape: RowShape,
        outer: tuple[bool, bool],
        residual: Residual,
        key_parts: int,
        ends: tuple[str, str],
    ) -> None:
        self.shape = shape
        self.outer = outer
        self.residual = residual
        self.key_parts = key_parts
        self.ends = ends
        self.late_records = 0

    def open(self, ctx: RuntimeContext) -> None:
        self.sides: tuple[ValueState[list[Any] | None], ValueState[list[Any] | None]] = (
            ctx.get_state(ValueStateDescriptor("window_join.left")),
            ctx.get_state(ValueStateDescriptor("window_join.right")),
        )

    def process_element1(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        self._element(0, value, ctx)

    def process_element2(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        self._element(1, value, ctx)

    def _element(self, side: int, row: dict[str, Any], ctx: Context) -> None:
        fires = row[self.ends[side]] - 1
        timers = ctx.timer_service()
        if fires <= timers.current_watermark():
            self.late_records += 1
            return
        if not self.outer[side] and has_null(ctx.current_key, self.key_parts):
            return
        state = self.sides[side]
        rows = state.value()
        if rows is None:
            state.update([row])
        else:
            rows.append(row)
        timers.register_event_time_timer(fires)

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        lefts, rights = (state.value() or [] for state in self.sides)
        for state in self.sides:
            state.clear()
        joinable = not has_null(ctx.current_key, self.key_parts)
        join, residual, collect = self.shape.join, self.residual, out.collect
        matched = [False] * len(rights)
        for left in lefts:
            found = False
            if joinable:
                for index, right in enumerate(rights):
                    joined = join(left, right)
                    if residual is None or residual(joined):
                        found = matched[index] = True
                        collect(joined)
            if not found and self.outer[0]:
                collect(join(left, None))
        if self.outer[1]:
            for index, right in enumerate(rights):
                if not matched[index]:
                    collect(join(None, right))


class OuterIntervalJoin(KeyedCoProcessFunction[dict[str, Any], dict[str, Any], dict[str, Any]]):
    """An interval join with outer sides: left ``l`` and right ``r`` join when ``l + lower <= r
    <= l + upper`` (event timestamps, the rows' time attributes ``times``). Each side keeps a
    buffer ``{timestamp: [[row, matched], ...]}`` per key while the other side may still bring a
    partner (the cleanup times of :class:`~actorflow.operators.joins.IntervalJoinFunction`);
    an outer side's row that found none is emitted padded when it is cleaned up, or at once when
    no later row can join it. Rows are not dropped as late (as Flink's SQL interval join)."""

    def __init__(
        self,
        shape: RowShape,
        outer: tuple[bool, bool],
        residual: Residual,
        key_parts: int,
        bounds: tuple[int, int],
        times: tuple[str, str],
    ) -> None:
        self.shape = shape
        self.outer = outer
        self.residual = residual
        self.key_parts = key_parts
        self.lower, self.upper = bounds
        self.times = times

    def open(self, ctx: RuntimeContext) -> None:
        self.sides: tuple[ValueState[dict[int, list[Any]] | None], ...] = (
            ctx.get_state(ValueStateDescriptor("interval_join.left")),
            ctx.get_state(ValueStateDescriptor("interval_join.right")),
        )

    def process_element1(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        self._element(0, value, ctx, out)

    def process_element2(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        self._element(1, value, ctx, out)

    def _pair(self, side: int, row: dict[str, Any] | None, other: dict[str, Any] | None) -> dict[str, Any]:
        return self.shape.join(row, other) if side == 0 else self.shape.join(other, row)

    def _element(self, side: int, row: dict[str, Any], ctx: Context, out: Collector) -> None:
        timestamp = row[self.times[side]]
        if timestamp is None or has_null(ctx.current_key, self.key_parts):
            if self.outer[side]:  # joins nothing, now or later
                out.collect(self._pair(side, row, None))
            return
        timers = ctx.timer_service()
        watermark = timers.current_watermark()
        if side == 0:
            first, last = timestamp + self.lower, timestamp + self.upper
            cleanup = timestamp + self.upper + 1
        else:
            first, last = timestamp - self.upper, timestamp - self.lower
            cleanup = timestamp - self.lower + 1
        matched = False
        other = self.sides[1 - side].value()
        residual = self.residual
        for other_time, bucket in (other or {}).items():
            if not first <= other_time <= last:
                continue
            for entry in bucket:
                joined = self._pair(side, row, entry[0])
                if residual is None or residual(joined):
                    matched = entry[1] = True
                    out.collect(joined)
        if cleanup <= watermark:
            if self.outer[side] and not matched:
                out.collect(self._pair(side, row, None))
            return
        state = self.sides[side]
        buffer = state.value()
        if buffer is None:
            buffer = {}
            state.update(buffer)
        same = buffer.get(timestamp)
        if same is None:
            buffer[timestamp] = [[row, matched]]
            timers.register_event_time_timer(min(cleanup, MAX_WATERMARK))
        else:
            same.append([row, matched])

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        for side, state, bucket_time in (
            (0, self.sides[0], timestamp - self.upper - 1),
            (1, self.sides[1], timestamp + self.lower - 1),
        ):
            buffer = state.value()
            if buffer is None:
                continue
            if timestamp == MAX_WATERMARK:
                buckets = list(buffer.values())
                buffer.clear()
            else:
                bucket = buffer.pop(bucket_time, None)
                buckets = [bucket] if bucket is not None else []
            if self.outer[side]:
                for bucket in buckets:
                    for row, matched in bucket:
                        if not matched:
                            out.collect(self._pair(side, row, None))
            if not buffer:
                state.clear()
