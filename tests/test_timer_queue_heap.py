"""The heap-backed timer queues against a plain model (a list of timers in registration order),
and the keyed process operator's inline watermarks against one mark per watermark."""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from actorflow.operators.base import OperatorContext
from actorflow.operators.process import KeyedProcessFunction, KeyedProcessOperator
from actorflow.runtime.messages import Batch
from actorflow.state.descriptors import ValueStateDescriptor
from actorflow.time.timers import IndexedTimerQueue, TimerQueue

times = st.integers(0, 30)
keys = st.sampled_from("abcd")
steps = st.lists(
    st.one_of(
        st.tuples(st.just("add"), times, keys),
        st.tuples(st.just("remove"), times, keys),
        st.tuples(st.just("pop_due"), times, keys),
        st.tuples(st.just("pop_time"), times, keys),
        st.tuples(st.just("add_all"), times, keys),
    ),
    max_size=80,
)


class Model:
    """Timers as a list of (time, key) in registration order."""

    def __init__(self) -> None:
        self.timers: list[tuple[int, str]] = []

    def add(self, time: int, key: str) -> bool:
        if (time, key) in self.timers:
            return False
        self.timers.append((time, key))
        return True

    def remove(self, time: int, key: str) -> bool:
        if (time, key) not in self.timers:
            return False
        self.timers.remove((time, key))
        return True

    def ordered(self) -> list[tuple[int, str]]:
        return sorted(self.timers, key=itemgetter(0))  # stable: registration order within a time

    def pop_due(self, limit: int) -> list[tuple[int, str]]:
        due = [timer for timer in self.ordered() if timer[0] <= limit]
        self.timers = [timer for timer in self.timers if timer[0] > limit]
        return due

    def next_time(self) -> int | None:
        return min((time for time, _ in self.timers), default=None)


@settings(max_examples=300, deadline=None)
@given(steps, st.booleans())
def test_queue_matches_the_model(steps: list[tuple[str, int, str]], indexed: bool) -> None:
    queue = IndexedTimerQueue() if indexed else TimerQueue()
    model = Model()
    for action, time, key in steps:
        if action == "add":
            assert queue.add(time, key) == model.add(time, key)
        elif action == "remove":
            assert queue.remove(time, key) == model.remove(time, key)
        elif action == "pop_due":
            assert list(queue.pop_due(time)) == model.pop_due(time)
        elif action == "pop_time":
            due = queue.pop_time(time)
            first = model.next_time()
            if first is None or first > time:
                assert due is None
            else:
                assert due == (first, {k: None for t, k in model.ordered() if t == first})
                model.timers = [timer for timer in model.timers if timer[0] != first]
        else:
            queue.add_all([(time, key), (time + 3, key)])
            model.add(time, key)
            model.add(time + 3, key)
        assert queue.next_time == model.next_time()
        assert len(queue) == len(model.timers)
        ordered = model.ordered()
        assert queue.export() == ([t for t, _ in ordered], [k for _, k in ordered])


def test_many_removed_times_do_not_pile_up() -> None:
    queue = TimerQueue()
    queue.add(0, "first")
    for time in range(1, 10_000):
        queue.add(time, "k")
        queue.remove(time, "k")
    assert len(queue._heap) < 200
    assert list(queue.pop_due(20_000)) == [(0, "first")]
    assert queue.next_time is None


class Alerts(KeyedProcessFunction[Any, Any]):
    """Emits on some records and on every timer, reading the watermark as it goes."""

    def open(self, ctx: Any) -> None:
        self.seen = ctx.get_state(ValueStateDescriptor("seen", default=0))

    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        key, time = value
        self.seen.update(self.seen.value() + 1)
        watermark = ctx.timer_service().current_watermark()
        if self.seen.value() % 3 == 0:
            out.collect(("record", key, time, watermark))
        ctx.timer_service().register_event_time_timer(time + 2)

    def on_timer(self, timestamp: int, ctx: Any, out: Any) -> None:
        out.collect(("timer", ctx.current_key, timestamp, ctx.timer_service().current_watermark()))


def run(batches: list[Batch]) -> list[Batch]:
    operator = KeyedProcessOperator("alerts", Alerts(), itemgetter(0))
    operator.open(OperatorContext("alerts"))
    return [operator.process(batch) for batch in batches]


def one_mark_each(batch: Batch) -> list[Batch]:
    """``batch`` cut so that each piece has at most one mark, at its end or start."""
    pieces = []
    start = 0
    for position, watermark in batch.marks or ():
        stamps = batch.timestamps
        pieces.append(Batch(batch.values[start:position], stamps and stamps[start:position]))
        pieces.append(Batch([], None, [(0, watermark)]))
        start = position
    stamps = batch.timestamps
    pieces.append(Batch(batch.values[start:], stamps and stamps[start:]))
    return pieces


def flatten(batches: list[Batch]) -> list[tuple[str, Any]]:
    """The batches' records and watermarks in stream order; of watermarks with no record between
    them, the last (an operator passes on only that one)."""
    events: list[tuple[str, Any]] = []
    for batch in batches:
        marks = list(batch.marks or ())
        for position, value in enumerate(batch.values):
            while marks and marks[0][0] == position:
                events.append(("mark", marks.pop(0)[1]))
            events.append(("value", value))
        events.extend(("mark", watermark) for _, watermark in marks)
    return [
        event
        for index, event in enumerate(events)
        if event[0] == "value" or index + 1 == len(events) or events[index + 1][0] == "value"
    ]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("xyz"), st.integers(0, 40), st.booleans()), max_size=60))
def test_inline_watermarks_match_one_at_a_time(records: list[tuple[str, int, bool]]) -> None:
    values = [(key, time) for key, time, _ in records]
    marks = []
    highest = -1
    for position, (_, time, marked) in enumerate(records):
        highest = max(highest, time)
        if marked:
            marks.append((position + 1, highest - 3))
    if marks and marks[-1][0] == len(values):
        marks.append((len(values), highest))  # two marks after the last record
    batch = Batch(values, [time for _, time in values], marks or None)
    whole = run([batch])
    assert flatten(whole) == flatten(run(one_mark_each(batch)))
    # every mark of the output sits where the records before it end
    for out in whole:
        positions = [position for position, _ in out.marks or ()]
        assert positions == sorted(set(positions))
        assert all(0 <= position <= len(out.values) for position in positions)
