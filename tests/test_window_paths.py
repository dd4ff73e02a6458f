"""The window operator's record paths agree: one shape of windows, three paths, the same output.

Tumbling windows of size 10 run on the tumbling fast path; sliding windows of size 10 sliding by
10 are the same windows on the general path of the default trigger; and a subclass of the default
trigger (which the operator must call) takes the path of called triggers. Fed the same batches,
they emit the same results, timestamps and watermarks (the fast path writes watermarks lazily), and
drop the same late records.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from actorflow import AggregateFunction, OutputTag
from actorflow.operators.side_outputs import SideOutputs
from actorflow.operators.windows import SlidingEventTimeWindows, TumblingEventTimeWindows
from actorflow.operators.windows.functions import AggregateContents, ReduceContents, WindowContents
from actorflow.operators.windows.operator import WindowOperator
from actorflow.operators.windows.triggers import EventTimeTrigger
from actorflow.runtime.messages import MAX_WATERMARK, Batch
from tests.state_backends import operator_context

LATE: OutputTag[dict[str, Any]] = OutputTag("late")


class SumCount(AggregateFunction[dict[str, Any], list[int], tuple[int, int]]):
    def create_accumulator(self) -> list[int]:
        return [0, 0]

    def add(self, value: dict[str, Any], accumulator: list[int]) -> list[int]:
        accumulator[0] += value["v"]
        accumulator[1] += 1
        return accumulator

    def get_result(self, accumulator: list[int]) -> tuple[int, int]:
        return (accumulator[0], accumulator[1])


class CalledEventTimeTrigger(EventTimeTrigger):
    """The default trigger's rules, but not its type: the operator calls it."""


def _sum(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {"k": a["k"], "v": a["v"] + b["v"]}


Run = tuple[list[tuple[list[Any], list[Any] | None, list[tuple[int, int]] | None]], int, list[Any], int]


def _run(
    op: WindowOperator, batches: list[tuple[list[dict[str, Any]], list[int], list[tuple[int, int]]]]
) -> Run:
    op.open(operator_context("w"))
    op.side_outputs = SideOutputs([LATE])
    outputs = []
    for values, timestamps, marks in [*batches, ([], [], [(0, MAX_WATERMARK)])]:
        out = op.process(Batch(values, timestamps, marks))
        outputs.append((out.values, out.timestamps, out.marks))
    side = op.side_outputs.take(LATE, None)
    return outputs, op.late_records, side.values if side is not None else [], op.state_size()


@st.composite
def _batches(draw: st.DrawFn) -> list[tuple[list[dict[str, Any]], list[int], list[tuple[int, int]]]]:
    batches = []
    highest = 0
    watermark = 0  # never goes back
    for _ in range(draw(st.integers(1, 6))):
        size = draw(st.integers(0, 6))
        timestamps = [draw(st.integers(max(0, highest - 25), highest + 8)) for _ in range(size)]
        values = [{"k": draw(st.sampled_from("abc")), "v": draw(st.integers(1, 9))} for _ in range(size)]
        marks: list[tuple[int, int]] = []
        for position in sorted(draw(st.lists(st.integers(0, size), max_size=4))):
            seen = max([highest, *timestamps[:position]])
            watermark = max(watermark, seen - draw(st.integers(0, 6)))  # may stand still
            marks.append((position, watermark))
        highest = max([highest, *timestamps])
        batches.append((values, timestamps, marks))
    return batches


@settings(max_examples=60, deadline=None)
@given(batches=_batches(), lateness=st.sampled_from([0, 3, 15]), aggregate=st.booleans())
def test_the_tumbling_fast_path_the_default_path_and_a_called_trigger_agree(
    batches: list[tuple[list[dict[str, Any]], list[int], list[tuple[int, int]]]],
    lateness: int,
    aggregate: bool,
) -> None:
    def operator(assigner: Any, trigger: Any = None) -> WindowOperator:
        contents: WindowContents = AggregateContents(SumCount()) if aggregate else ReduceContents(_sum)
        return WindowOperator("w", itemgetter("k"), assigner, contents, trigger, lateness, LATE)

    fast = operator(TumblingEventTimeWindows.of(10))
    default = operator(SlidingEventTimeWindows.of(10, 10))
    called = operator(TumblingEventTimeWindows.of(10), CalledEventTimeTrigger())
    assert fast._tumbling and not default._tumbling and not called._tumbling
    expected = _run(fast, batches)
    assert _run(default, batches) == expected
    assert _run(called, batches) == expected
    assert expected[3] == 0  # every window is cleaned up at the end
