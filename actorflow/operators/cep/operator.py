"""The keyed operator that runs a pattern over each key's events.

**Event time.** Events wait in one heap per operator instance, ordered by timestamp and arrival,
until the watermark passes them; then each goes through its key's automaton
(:class:`~actorflow.operators.cep.nfa.NFA`), so a key sees its events in timestamp order, equal
timestamps in arrival order. An event at or behind the watermark when it arrives is late: it goes to
the ``late`` side output if there is one, else it is dropped and counted (``late_events``). Partial
matches time out when the watermark reaches ``first event + within`` (a second heap of due times).
**Processing time**: without event timestamps, events go through as they arrive and ``within``
counts on the clock.

**State.** Per key: its partial matches (:class:`~actorflow.operators.cep.nfa.NFAState`) and its
waiting events; a key with neither keeps nothing, and an event that neither continues a partial
match nor begins one costs no state at all. A snapshot writes, per key, ``(NFAState or None,
[(ts, seq, event), ...])``, with the instance's key groups, so a restore (at any parallelism)
takes the keys it owns and rebuilds both heaps; in incremental mode (partition tasks) only the keys
touched since the previous snapshot, a key without state as None.
"""

from __future__ import annotations

import heapq
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from actorflow.operators.base import Collector, Operator, OperatorContext
from actorflow.operators.cep.nfa import NFA, Match, NFAState
from actorflow.operators.failures import FailedRecord, route_failure
from actorflow.operators.process import RuntimeContext
from actorflow.operators.side_outputs import OutputTag
from actorflow.operators.snapshots import incremental_changes
from actorflow.runtime.messages import MIN_WATERMARK, Batch
from actorflow.state.keygroups import KeyGroupFilter

__all__ = ["PatternContext", "PatternOperator", "PatternProcessFunction"]

IN = TypeVar("IN")
OUT = TypeVar("OUT")

Events = dict[str, list[Any]]
#: ``handler(match, ctx, out)``.
Handler = Callable[[Events, "PatternContext", Collector], None]


class PatternContext:
    """What a :class:`PatternProcessFunction` (or a timeout handler) sees besides the match."""

    __slots__ = ("_operator", "current_key", "timestamp")

    def __init__(self, operator: PatternOperator) -> None:
        self._operator = operator
        #: The time of the match: its last event's (event time), or the clock's; for a timed-out
        #: partial match, when it timed out.
        self.timestamp: int | None = None
        #: The key the match belongs to.
        self.current_key: Any = None

    def output(self, tag: OutputTag[Any], value: Any) -> None:
        """Send ``value`` to the side output ``tag``."""
        self._operator.emit_side(tag, value, self.timestamp)


class PatternProcessFunction(ABC, Generic[IN, OUT]):
    """Turns matches into results, with a context (Flink's ``PatternProcessFunction``)."""

    def open(self, ctx: RuntimeContext) -> None:
        """Called once per instance before the first match."""

    @abstractmethod
    def process_match(self, match: dict[str, list[IN]], ctx: PatternContext, out: Collector) -> None:
        """One match: each stage's events in order; emit results with ``out.collect``."""

    def process_timed_out_match(
        self, match: dict[str, list[IN]], ctx: PatternContext, out: Collector
    ) -> None:
        """A partial match that timed out (only with ``timed_out=True``). Default: nothing."""


class PatternOperator(Operator):
    """Runs ``nfa`` per key of ``key_of`` and hands each match to ``on_match(match, ctx, out)``,
    each timed-out partial match to ``on_timeout``; see the module for time and state."""

    has_processing_timers = True

    def __init__(
        self,
        name: str,
        nfa: NFA,
        key_of: Callable[[Any], Hashable],
        on_match: Handler,
        on_timeout: Handler | None = None,
        *,
        late: OutputTag[Any] | None = None,
        errors: OutputTag[FailedRecord[Any]] | None = None,
        opened: Callable[[RuntimeContext], None] | None = None,
    ) -> None:
        super().__init__(name)
        self.nfa = nfa
        self.key_of = key_of
        self.on_match = on_match
        self.on_timeout = on_timeout
        self.late = late
        self.errors = errors
        self.opened = opened
        #: Late events dropped (without a ``late`` output), since this instance opened.
        self.late_events = 0
        if errors is not None:
            self.dead_letter_count = 0

    def open(self, context: OperatorContext) -> None:
        super().open(context)
        #: Per key with partial matches: its automaton state.
        self.states: dict[Hashable, NFAState] = {}
        #: Events waiting for the watermark: ``(ts, seq, key, event)``.
        self.waiting: list[tuple[int, int, Hashable, Any]] = []
        #: Due times of partial matches: ``(due, key)``, and each key's current one (entries that
        #: differ from it are stale and skipped).
        self.timeouts: list[tuple[int, Hashable]] = []
        self._due: dict[Hashable, int] = {}
        self.watermark = MIN_WATERMARK
        self.processing = False
        self._seq = 0
        #: Keys whose state changed since the last snapshot (incremental snapshots only).
        self.changed: set[Hashable] | None = set() if context.incremental else None
        self._ctx = PatternContext(self)
        self._values: list[Any] = []
        self._times: list[Any] = []
        self._out = Collector(self._collect)
        if self.opened is not None:
            self.opened(RuntimeContext(context, None))

    def _collect(self, value: Any) -> None:
        self._values.append(value)
        self._times.append(self._ctx.timestamp)

    # -- records and time --------------------------------------------------------------------

    def process(self, batch: Batch) -> Batch | None:
        self._values, self._times = [], []
        values = batch.values
        timestamps = batch.timestamps
        marks = batch.marks
        if timestamps is None:  # no event time: as they come (and watermarks, such as the last)
            if values:
                self.processing = True
                now = self.context.clock.now()
                for value in values:
                    self._step(self.key_of(value), value, now)
            for _, mark in marks or ():
                if mark > self.watermark:
                    self.watermark = mark
                    self._release(mark)
            return self._output(marks)
        key_of = self.key_of
        waiting = self.waiting
        push = heapq.heappush
        changed = self.changed
        late = self.late
        watermark = self.watermark
        seq = self._seq
        start = 0
        # The watermark moves mark by mark (it decides what is late), the waiting events are
        # released once, at the batch's last mark: an event not late when it came is after every
        # event an earlier mark passed, so the order is the same as releasing at each mark.
        for end, mark in [*(marks or ()), (len(values), None)]:
            for position in range(start, end):
                ts = timestamps[position]
                value = values[position]
                if ts <= watermark:
                    if late is not None:
                        self.emit_side(late, value, ts)
                    else:
                        self.late_events += 1
                    continue
                key = key_of(value)
                push(waiting, (ts, seq, key, value))
                seq += 1
                if changed is not None:
                    changed.add(key)
            start = end
            if mark is not None and mark > watermark:
                watermark = mark
        self._seq = seq
        if watermark > self.watermark:
            self.watermark = watermark
            self._release(watermark)
        return self._output(marks)

    def _output(self, marks: list[tuple[int, int]] | None) -> Batch | None:
        """This batch's results, with the batch's last watermark after them."""
        values, times = self._values, self._times
        if not values and not marks:
            return None
        return Batch(
            values,
            None if self.processing else times,
            [(len(values), marks[-1][1])] if marks else None,
        )

    def _release(self, watermark: int) -> None:
        """Every waiting event and timeout the watermark passed, in time order (a timeout due at
        an event's time first, as a partial match times out before that event could extend it)."""
        waiting = self.waiting
        timeouts = self.timeouts
        pop = heapq.heappop
        states = self.states
        begins = self.nfa.begin_condition
        fast = begins is not None and self.changed is None
        step = self._step
        while waiting and waiting[0][0] <= watermark:
            if timeouts and timeouts[0][0] <= waiting[0][0]:
                self._expire(waiting[0][0])
            ts, _, key, value = pop(waiting)
            if fast and key not in states:
                # The common case: nothing to continue and (the first stage's own condition, called
                # directly) nothing begun: no state. If it raises, _step raises or routes it.
                try:
                    if not begins(value):  # type: ignore[misc]
                        continue
                except Exception:
                    pass
            step(key, value, ts)
        self._expire(watermark)

    def _step(self, key: Hashable, value: Any, ts: int) -> None:
        """One event of ``key`` through its automaton."""
        nfa = self.nfa
        state = self.states.get(key)
        try:
            if state is None:
                if not nfa.may_begin(value, None):  # type: ignore[arg-type]
                    return  # nothing to continue, nothing begun: no state
                state = NFAState()
            elif self.errors is not None:  # time on its own: what times out is reported anyway
                self._hand_over(key, *nfa.advance(state, ts), ts)
            matches, timed_out = nfa.process(state, value, ts)
        except Exception as error:
            if self.errors is None:
                raise
            route_failure(self, self.errors, value, error, ts)  # the partial matches stay
            return
        finally:
            if self.changed is not None:
                self.changed.add(key)
        if matches or timed_out:
            self._hand_over(key, matches, timed_out, ts)
        self._settle(key, state)

    def _settle(self, key: Hashable, state: NFAState) -> None:
        """Keep ``key``'s state while it has partial matches (and note when the first times out);
        forget it once it has none."""
        if not state.partials:
            self.states.pop(key, None)
            self._due.pop(key, None)
            return
        self.states[key] = state
        due = self.nfa.next_timeout(state)
        if due is not None and self._due.get(key) != due:
            self._due[key] = due
            heapq.heappush(self.timeouts, (due, key))

    def _expire(self, now: int) -> None:
        """Time out what is due at ``now``."""
        timeouts = self.timeouts
        pop = heapq.heappop
        while timeouts and timeouts[0][0] <= now:
            due, key = pop(timeouts)
            state = self.states.get(key)
            if state is None or self._due.get(key) != due:
                continue  # a stale entry: the key moved on since
            del self._due[key]
            if self.changed is not None:
                self.changed.add(key)
            self._hand_over(key, *self.nfa.advance(state, due), due)
            self._settle(key, state)

    def _hand_over(self, key: Hashable, matches: list[Match], timed_out: list[Match], ts: int) -> None:
        ctx = self._ctx
        ctx.timestamp = ts
        ctx.current_key = key
        if timed_out and self.on_timeout is not None:
            for match in timed_out:
                self.on_timeout(match.events, ctx, self._out)
        for match in matches:
            self.on_match(match.events, ctx, self._out)

    def next_processing_time(self) -> int | None:
        if not self.processing or not self.timeouts:
            return None
        return self.timeouts[0][0]

    def on_processing_time(self, now: int) -> Batch | None:
        self._values, self._times = [], []
        self._expire(now)
        return self._output(None)

    def finish(self) -> Batch | None:
        return None

    # -- checkpoints -------------------------------------------------------------------------

    def _entries(self, keys: set[Hashable] | None) -> dict[Hashable, Any]:
        """``{key: (NFAState or None, [(ts, seq, event), ...])}`` of ``keys`` (None: every key
        with state), a key without state as None."""
        events: dict[Hashable, list[tuple[int, int, Any]]] = {}
        for ts, seq, key, value in self.waiting:
            if keys is None or key in keys:
                events.setdefault(key, []).append((ts, seq, value))
        wanted = set(self.states) | set(events) if keys is None else keys
        entries: dict[Hashable, Any] = {}
        for key in wanted:
            state = self.states.get(key)
            mine = events.get(key)
            entries[key] = None if state is None and not mine else (state, sorted(mine or []))
        return entries

    def snapshot_state(self) -> Any:
        if self.changed is not None:
            changes = self._entries(self.changed)
            self.changed = set()
            return {"changes": changes}
        groups = self.context.key_groups
        return {"key_groups": (groups.start, groups.stop), "keys": self._entries(None)}

    def restore_state(self, states: list[Any]) -> None:
        changes = incremental_changes(self.name, states)
        entries: dict[Hashable, Any] = {}
        if changes is not None:
            for part in changes:
                entries.update(part)
        else:
            owned = self.context.key_groups
            for state in states:
                keep = KeyGroupFilter(range(*state["key_groups"]), owned, self.context.max_parallelism)
                if keep.takes_none:
                    continue
                for key, entry in state["keys"].items():
                    if keep.takes_all or keep(key):
                        entries[key] = entry
        waiting = []
        for key, entry in entries.items():
            if entry is None:
                continue
            state, events = entry
            if state is not None:
                self.states[key] = state
                self._settle(key, state)
            waiting += [(ts, seq, key, value) for ts, seq, value in events]
        # Renumber: instances restored together may have used the same sequence numbers.
        waiting.sort(key=lambda item: (item[0], item[1]))
        self.waiting = [(ts, n, key, value) for n, (ts, _, key, value) in enumerate(waiting)]
        self._seq = len(waiting)
