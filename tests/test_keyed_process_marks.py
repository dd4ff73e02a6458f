"""The keyed process operator's loop over a batch with watermarks: the fast loop (each record zipped
with the watermark due before it) and the loop that walks the marks in order agree on everything a
function sees and emits, for any batches, marks and timers. Both are Python here: the compiled loop
is checked against them in test_keyed_loop_kernel.py."""

from __future__ import annotations

from operator import itemgetter
from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from actorflow import Collector, Context, KeyedProcessFunction
from actorflow.operators import process
from actorflow.operators.base import OperatorContext
from actorflow.operators.process import (
    KeyedProcessOperator,
    _first_after,
    _MarkedOutput,
    _watermarks_before,
)
from actorflow.runtime.messages import Batch


class Timers(KeyedProcessFunction[dict[str, int], Any]):
    """Emits what it sees per record and per timer; sets, deletes and re-sets event-time timers."""

    def process_element(self, value: dict[str, int], ctx: Context, out: Collector) -> None:
        timers = ctx.timer_service()
        n = value["n"]
        out.collect(("record", ctx.current_key, n, ctx.timestamp, timers.current_watermark()))
        if n % 3:
            timers.register_event_time_timer(value["at"])
        elif n % 5 == 0:
            timers.delete_event_time_timer(value["at"])

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        watermark = ctx.timer_service().current_watermark()
        out.collect(("timer", ctx.current_key, timestamp, ctx.timestamp, watermark))
        if timestamp % 4 == 0:  # a timer that sets another, due already or later
            ctx.timer_service().register_event_time_timer(timestamp + 1 + timestamp % 3)


class InOrder(KeyedProcessOperator):
    """Always the loop that walks the marks in order."""

    def _process_marked(
        self,
        values: list[Any],
        timestamps: list[Any] | None,
        marks: list[tuple[int, int]],
        output: _MarkedOutput,
    ) -> None:
        self._process_in_order(values, timestamps, marks, output)


@st.composite
def batches(draw: st.DrawFn) -> list[tuple[list[dict[str, int]], list[int] | None, list[tuple[int, int]]]]:
    result = []
    n = 0
    for _ in range(draw(st.integers(1, 4))):
        count = draw(st.integers(0, 8))
        values = []
        for _ in range(count):
            values.append({"k": draw(st.integers(0, 3)), "n": n, "at": draw(st.integers(0, 60))})
            n += 1
        stamped = draw(st.booleans())
        timestamps = [draw(st.integers(0, 60)) for _ in values] if stamped else None
        # Positions may repeat (two marks before one record) and reach past the last record.
        positions = sorted(draw(st.lists(st.integers(0, count + 1), max_size=6)))
        marks = [(position, draw(st.integers(0, 70))) for position in positions]
        result.append((values, timestamps, marks))
    return result


def _run(operator: KeyedProcessOperator, batches: list[Any]) -> list[Any]:
    operator.open(OperatorContext("op"))
    seen = []
    for values, timestamps, marks in batches:
        out = operator.process(Batch(values, timestamps, marks or None))
        seen.append((out.values, out.timestamps, out.marks))
    return seen


@settings(max_examples=300, deadline=None)
@given(batches())
def test_the_fast_loop_and_the_loop_in_order_agree(batches: list[Any]) -> None:
    key_of = itemgetter("k")
    with mock.patch.object(process, "_compiled", None):
        fast = _run(KeyedProcessOperator("op", Timers(), key_of), batches)
        in_order = _run(InOrder("op", Timers(), key_of), batches)
    assert fast == in_order


def test_watermarks_before_each_record() -> None:
    assert _watermarks_before([], 2) == [None, None]
    assert _watermarks_before([(0, 1), (2, 3), (2, 4)], 2) == [1, None]  # past the last: left out
    assert _watermarks_before([(0, 1), (0, 2)], 2) is None


@given(st.lists(st.integers(0, 6)).map(sorted), st.integers(0, 6))
def test_the_marks_after_the_last_record_are_a_tail(positions: list[int], count: int) -> None:
    marks = [(position, index) for index, position in enumerate(positions)]
    first = _first_after(marks, count)
    assert marks[first:] == [mark for mark in marks if mark[0] >= count]
