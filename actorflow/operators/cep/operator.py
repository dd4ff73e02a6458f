"""The keyed operator that runs a pattern: a process function over keyed state and timers.

Per key it keeps one value in keyed state: the key's :class:`~actorflow.operators.cep.nfa.NFAState`
(its partial matches) and the events that wait for the watermark. So the operator is checkpointed,
restored, rescaled by key group and moved between partition tasks like every keyed operator, and a
key with no partial match and nothing waiting keeps no state at all.

**Event time.** An event is buffered until the watermark passes its timestamp (an event-time timer
at that timestamp); the key's events then run through the automaton in timestamp order, equal
timestamps in arrival order. An event at or behind the watermark when it arrives is late: it goes
to the ``late`` side output if there is one, else it is dropped and counted (``late_events``).
Partial matches time out on timers at ``first event + within``. **Processing time**: without event
timestamps, events run through the automaton as they arrive and ``within`` counts on the clock.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from actorflow.operators.base import Collector
from actorflow.operators.cep.nfa import NFA, Match, NFAState
from actorflow.operators.process import Context, KeyedProcessFunction, RuntimeContext, TimeDomain
from actorflow.operators.side_outputs import OutputTag
from actorflow.state.descriptors import ValueStateDescriptor
from actorflow.state.keyed import ValueState

__all__ = ["CepFunction", "PatternContext", "PatternProcessFunction"]

IN = TypeVar("IN")
OUT = TypeVar("OUT")


class PatternContext:
    """What a :class:`PatternProcessFunction` sees besides the match."""

    __slots__ = ("_ctx", "timestamp")

    def __init__(self, ctx: Context, timestamp: int | None) -> None:
        self._ctx = ctx
        #: The time of the match: its last event's (event time), or the clock's.
        self.timestamp = timestamp

    @property
    def current_key(self) -> Any:
        return self._ctx.current_key

    def output(self, tag: OutputTag[Any], value: Any) -> None:
        """Send ``value`` to the side output ``tag``."""
        self._ctx.output(tag, value)


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
        """A partial match that timed out (only with ``timed_out=`` given). Default: nothing."""


class CepFunction(KeyedProcessFunction[Any, Any]):
    """Runs ``nfa`` per key and hands each match to ``on_match(match, ctx, out)`` and each timed
    out partial match to ``on_timeout`` (see the module)."""

    def __init__(
        self,
        nfa: NFA,
        on_match: Callable[[dict[str, list[Any]], PatternContext, Collector], None],
        on_timeout: Callable[[dict[str, list[Any]], PatternContext, Collector], None] | None = None,
        *,
        late: OutputTag[Any] | None = None,
        opened: Callable[[RuntimeContext], None] | None = None,
    ) -> None:
        self.nfa = nfa
        self.on_match = on_match
        self.on_timeout = on_timeout
        self.late = late
        self.opened = opened
        #: Late events dropped (without a ``late`` output), since this instance opened.
        self.late_events = 0

    def open(self, ctx: RuntimeContext) -> None:
        #: Where an event a condition raised on goes (the operator's dead letters), or None.
        self.failed = ctx.failed
        # [NFAState, {ts: [events in arrival order]}] per key.
        self.state: ValueState[list[Any] | None] = ctx.get_state(ValueStateDescriptor("pattern"))
        if self.opened is not None:
            self.opened(ctx)

    def process_element(self, value: Any, ctx: Context, out: Collector) -> None:
        ts = ctx.timestamp
        timers = ctx.timer_service()
        entry = self.state.value()
        if ts is None:  # processing time: in arrival order, now
            now = timers.current_processing_time()
            if entry is None:
                entry = [NFAState(), {}]
            self._run(entry[0], [value], now, ctx, out)
            self._keep(entry, ctx, processing=True)
            return
        if ts <= timers.current_watermark():
            if self.late is not None:
                ctx.output(self.late, value)
            else:
                self.late_events += 1
            return
        if entry is None:
            entry = [NFAState(), {}]
        waiting = entry[1].get(ts)
        if waiting is None:
            entry[1][ts] = [value]
            timers.register_event_time_timer(ts)
        else:
            waiting.append(value)
        self.state.update(entry)

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        entry = self.state.value()
        if entry is None:
            return
        nfa_state, waiting = entry
        processing = ctx.time_domain is TimeDomain.PROCESSING_TIME
        events = waiting.pop(timestamp, None) if not processing else None
        if events:
            self._run(nfa_state, events, timestamp, ctx, out)
        else:
            matches, timed_out = self.nfa.advance(nfa_state, timestamp)
            self._hand_over(matches, timed_out, timestamp, ctx, out)
        self._keep(entry, ctx, processing=processing)

    def _run(
        self, nfa_state: NFAState, events: Iterable[Any], ts: int, ctx: Context, out: Collector
    ) -> None:
        process = self.nfa.process
        failed = self.failed
        for event in events:
            if failed is None:
                matches, timed_out = process(nfa_state, event, ts)
            else:
                # Time first, on its own: what times out is reported even if the event fails.
                matches, timed_out = self.nfa.advance(nfa_state, ts)
                if matches or timed_out:
                    self._hand_over(matches, timed_out, ts, ctx, out)
                try:
                    matches, timed_out = process(nfa_state, event, ts)
                except Exception as error:  # the event leaves the partial matches as they were
                    failed(event, error, ts)
                    continue
            if matches or timed_out:
                self._hand_over(matches, timed_out, ts, ctx, out)

    def _hand_over(
        self, matches: list[Match], timed_out: list[Match], ts: int, ctx: Context, out: Collector
    ) -> None:
        pattern_ctx = PatternContext(ctx, ts)
        if timed_out and self.on_timeout is not None:
            for match in timed_out:
                self.on_timeout(match.events, pattern_ctx, out)
        for match in matches:
            self.on_match(match.events, pattern_ctx, out)

    def _keep(self, entry: list[Any], ctx: Context, *, processing: bool) -> None:
        """Store the key's entry, or clear it once it holds nothing; ask for its next timeout."""
        nfa_state, waiting = entry
        if not nfa_state.partials and not waiting:
            self.state.clear()
            return
        self.state.update(entry)
        due = self.nfa.next_timeout(nfa_state)
        if due is not None:
            timers = ctx.timer_service()
            if processing:
                timers.register_processing_time_timer(due)
            else:
                timers.register_event_time_timer(due)
