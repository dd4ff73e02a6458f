"""The tumbling fast path cuts a batch at the watermarks that fire a timer, not at every watermark.

Punctuated watermarks come after almost every record; the fast path handles the records between two
watermarks that fire something in one loop, looks a record's watermark up only when its window may
be late, stops a run early when a record opens a window that fires before every other, and sets a
run's timers at its end. These tests feed it such batches (a watermark after most records, records
far out of order, windows opened behind the earliest timer, late records between watermarks) and
check it against the general path of the default trigger (sliding windows whose slide is their
size), which passes every watermark as it comes: same results, timestamps, watermarks, late records
and state, with and without allowed lateness, with plain and indexed timer queues.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from actorflow import OutputTag
from actorflow.operators.side_outputs import SideOutputs
from actorflow.operators.windows import SlidingEventTimeWindows, TumblingEventTimeWindows
from actorflow.operators.windows.functions import AggregateContents, ReduceContents, WindowContents
from actorflow.operators.windows.operator import WindowOperator
from actorflow.runtime.messages import MAX_WATERMARK, Batch
from actorflow.time.timers import IndexedTimerQueue, TimerQueue
from tests.state_backends import operator_context
from tests.test_window_paths import SumCount  # updates its accumulator in place, as Q2's does

LATE: OutputTag[dict[str, Any]] = OutputTag("late")

Batches = list[tuple[list[dict[str, Any]], list[int], list[tuple[int, int]]]]


def _sum(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {"k": a["k"], "v": a["v"] + b["v"]}


@st.composite
def _punctuated(draw: st.DrawFn) -> Batches:
    """Batches with a watermark (``highest - lag``) after most records that raise the highest
    timestamp, and sometimes more than one at a position; timestamps jump back by up to three
    windows (so records open windows behind the earliest timer, or are late)."""
    batches: Batches = []
    highest = 0
    watermark = 0
    lag = draw(st.integers(0, 12))
    for _ in range(draw(st.integers(1, 5))):
        size = draw(st.integers(0, 40))
        timestamps = [draw(st.integers(max(0, highest - 30), highest + 7)) for _ in range(size)]
        values = [{"k": draw(st.sampled_from("abcd")), "v": draw(st.integers(1, 9))} for _ in range(size)]
        marks: list[tuple[int, int]] = []
        if draw(st.booleans()) and size == 0:
            marks.append((0, watermark))
        for position, timestamp in enumerate(timestamps, 1):
            highest = max(highest, timestamp)
            if highest - lag > watermark and draw(st.integers(0, 4)) > 0:
                watermark = highest - lag
                marks.append((position, watermark))
                if draw(st.integers(0, 9)) == 0:  # a second mark at the same position
                    watermark += draw(st.integers(0, 3))
                    marks.append((position, watermark))
        batches.append((values, timestamps, marks))
    return batches


def _run(op: WindowOperator, batches: Batches, incremental: bool) -> tuple[Any, ...]:
    op.open(operator_context("w", incremental=incremental))
    op.side_outputs = SideOutputs([LATE])
    outputs = []
    for values, timestamps, marks in [*batches, ([], [], [(0, MAX_WATERMARK)])]:
        out = op.process(Batch(values, timestamps, marks))
        # The state and timers after each batch too: what a checkpoint would hold.
        outputs.append((out.values, out.timestamps, out.marks, op.state_size(), len(op.event_timers)))
    side = op.side_outputs.take(LATE, None)
    return outputs, op.late_records, side.values if side is not None else [], op.state_size()


@settings(max_examples=200, deadline=None)
@given(
    batches=_punctuated(),
    lateness=st.sampled_from([0, 4, 10, 25]),
    aggregate=st.booleans(),
    incremental=st.booleans(),
)
def test_the_fast_path_cut_at_due_watermarks_agrees_with_the_general_path(
    batches: Batches, lateness: int, aggregate: bool, incremental: bool
) -> None:
    def operator(assigner: Any) -> WindowOperator:
        contents: WindowContents = AggregateContents(SumCount()) if aggregate else ReduceContents(_sum)
        return WindowOperator("w", itemgetter("k"), assigner, contents, None, lateness, LATE)

    fast = operator(TumblingEventTimeWindows.of(10))
    general = operator(SlidingEventTimeWindows.of(10, 10))
    assert fast._tumbling and not general._tumbling
    expected = _run(general, batches, incremental)
    assert _run(fast, batches, incremental) == expected
    assert isinstance(fast.event_timers, IndexedTimerQueue) is incremental
    assert expected[3] == 0


def test_a_window_opened_behind_the_earliest_timer_fires_at_the_next_watermark() -> None:
    """The run stops after the record that opens window [0, 10) (its timer, 9, comes before the
    earliest one, 19): the watermark 9 right after it fires that window."""
    op = WindowOperator("w", itemgetter("k"), TumblingEventTimeWindows.of(10), ReduceContents(_sum))
    op.open(operator_context("w"))
    first = op.process(Batch([{"k": "a", "v": 1}], [15], [(1, 5)]))
    assert first.values == [] and first.marks == [(0, 5)]
    out = op.process(
        Batch([{"k": "b", "v": 2}, {"k": "a", "v": 3}], [3, 16], [(1, 9), (2, 12)]),
    )
    assert out.values == [{"k": "b", "v": 2}]
    assert out.timestamps == [9]
    assert out.marks == [(1, 12)]  # 9 fired [0, 10), then 12 (no result since) replaced it


def test_a_late_record_between_watermarks_sees_the_watermark_before_it() -> None:
    """Both records fall in [0, 10): the first is on time (the watermark before it is 5), the
    second is late (9 came before it), and dropped: the run's lateness check is per record."""
    op = WindowOperator("w", itemgetter("k"), TumblingEventTimeWindows.of(10), ReduceContents(_sum))
    op.open(operator_context("w"))
    op.process(Batch([{"k": "a", "v": 1}], [15], [(1, 5)]))
    out = op.process(Batch([{"k": "a", "v": 2}, {"k": "a", "v": 3}], [4, 6], [(1, 9)]))
    assert out.values == [{"k": "a", "v": 2}] and op.late_records == 1


def test_add_keys_registers_as_add_does() -> None:
    plain, indexed = TimerQueue(), IndexedTimerQueue()
    for queue in (plain, indexed):
        queue.add(20, "b")
        queue.add_keys(20, ["a", "b", "c"])
        queue.add_keys(10, [])
        queue.add_keys(5, ["d"])
    assert plain.snapshot() == indexed.snapshot() == [(5, ["d"]), (20, ["b", "a", "c"])]
    assert plain.next_time == indexed.next_time == 5
    assert indexed.timers_of("a") == [(20, "a", 1)]


def test_pop_time_takes_a_time_at_a_time() -> None:
    for queue in (TimerQueue(), IndexedTimerQueue()):
        queue.add_all([(20, "a"), (10, "b"), (10, "c"), (30, "d")])
        assert queue.pop_time(25) == (10, {"b": None, "c": None})
        assert queue.pop_time(25) == (20, {"a": None})
        assert queue.pop_time(25) is None
        assert queue.next_time == 30 and len(queue) == 1
    assert indexed_after_pop() == []


def indexed_after_pop() -> list[Any]:
    queue = IndexedTimerQueue()
    queue.add(10, "a")
    queue.pop_time(10)
    return queue.timers_of("a")


def test_a_late_windows_cleanup_fires_at_the_first_watermark_past_it() -> None:
    """A record inside the allowed lateness opens [0, 10), which fires at once; its cleanup timer
    (14) comes before every other (29), so the next watermark (16) clears it, in this batch."""
    op = WindowOperator(
        "w", itemgetter("k"), TumblingEventTimeWindows.of(10), ReduceContents(_sum), allowed_lateness=5
    )
    op.open(operator_context("w"))
    op.process(Batch([{"k": "a", "v": 1}], [25], [(1, 12)]))
    out = op.process(Batch([{"k": "b", "v": 2}], [5], [(1, 16)]))
    assert out.values == [{"k": "b", "v": 2}] and out.timestamps == [9]
    assert op.state_size() == 1 and op.event_timers.snapshot() == [
        (29, [("a", (20, 30))]),
        (34, [("a", (20, 30))]),
    ]


def test_a_batchs_last_record_opening_the_earliest_window_fires_at_the_mark_after_it() -> None:
    """The only record of the second batch opens [0, 10), before the open [10, 20): the run stops
    after it, at the end of the records, and the mark after it (10) must still fire the window."""
    op = WindowOperator("w", itemgetter("k"), TumblingEventTimeWindows.of(10), ReduceContents(_sum))
    op.open(operator_context("w"))
    op.process(Batch([{"k": "a", "v": 1}], [12], [(1, 5)]))
    out = op.process(Batch([{"k": "b", "v": 2}], [8], [(1, 10)]))
    assert out.values == [{"k": "b", "v": 2}] and out.timestamps == [9] and out.marks == [(1, 10)]
