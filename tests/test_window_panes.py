"""The tumbling path's panes agree with the general path.

On the heap, without lateness and with full snapshots, the tumbling fast path holds its open
windows in panes (``{max timestamp: {key: contents}}``, one timer per pane); whatever reads the
state (:attr:`WindowOperator.windows`, :attr:`WindowOperator.event_timers`, a snapshot) puts them
back in the general layout first, and the next batch gathers them again. These tests run the panes
with nobody looking, with the state read after random batches, and through a snapshot and restore,
against the general path of the default trigger (sliding windows whose slide is their size): the
same results, timestamps, watermarks, late records, snapshots and state.
"""

from __future__ import annotations

import copy
import pickle
from operator import itemgetter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from actorflow.operators.base import Collector, OperatorContext
from actorflow.operators.side_outputs import SideOutputs
from actorflow.operators.windows import SlidingEventTimeWindows, TumblingEventTimeWindows
from actorflow.operators.windows.assigners import TimeWindow
from actorflow.operators.windows.functions import (
    AggregateContents,
    ProcessWindowFunction,
    ReduceContents,
    WindowContents,
    WindowContext,
)
from actorflow.operators.windows.operator import WindowOperator
from actorflow.runtime.messages import MAX_WATERMARK, Batch
from tests.state_backends import chosen, operator_context
from tests.test_q2_tumbling_runs import LATE, Batches, _punctuated, _sum
from tests.test_window_paths import SumCount

ON_HEAP = chosen() is None


class Labelled(ProcessWindowFunction[tuple[int, int], dict[str, Any], Any]):
    """A window function after the aggregate, as Q2's."""

    def process(
        self, key: Any, context: WindowContext, elements: list[tuple[int, int]], out: Collector
    ) -> None:
        out.collect({"key": key, "start": context.window.start, "result": elements[0]})


def _contents(kind: str) -> WindowContents:
    if kind == "aggregate":
        return AggregateContents(SumCount())
    if kind == "process":
        return AggregateContents(SumCount(), Labelled())
    return ReduceContents(_sum)


def _operator(assigner: Any, kind: str, lateness: int = 0) -> WindowOperator:
    op = WindowOperator("w", itemgetter("k"), assigner, _contents(kind), None, lateness, LATE)
    op.open(operator_context("w"))
    op.side_outputs = SideOutputs([LATE])
    return op


def _feed(op: WindowOperator, batches: Batches, peek: set[int]) -> list[Any]:
    """Each batch's output (and the side output), reading the state after the batches in ``peek``."""
    outputs: list[Any] = []
    for number, (values, timestamps, marks) in enumerate(batches):
        out = op.process(Batch(values, timestamps, marks))
        side = op.side_outputs.take(LATE, None)
        outputs.append((out.values, out.timestamps, out.marks, side.values if side is not None else []))
        if number in peek:
            outputs.append((op.state_size(), len(op.event_timers), _layout(op)))
    return outputs


def _layout(op: WindowOperator) -> Any:
    return {key: dict(per_key) for key, per_key in op.windows.items()}, op.event_timers.snapshot()


def _pair(kind: str) -> tuple[WindowOperator, WindowOperator]:
    fast = _operator(TumblingEventTimeWindows.of(10), kind)
    general = _operator(SlidingEventTimeWindows.of(10, 10), kind)
    assert fast._tumbling and not general._tumbling
    return fast, general


kinds = st.sampled_from(["aggregate", "process", "reduce"])
END: Batches = [([], [], [(0, MAX_WATERMARK)])]


@settings(max_examples=150, deadline=None)
@given(batches=_punctuated(), kind=kinds, peeks=st.sets(st.integers(0, 5)))
def test_the_panes_agree_with_the_general_path(batches: Batches, kind: str, peeks: set[int]) -> None:
    fast, general = _pair(kind)
    expected = _feed(general, [*batches, *END], peeks)
    assert _feed(fast, [*batches, *END], peeks) == expected
    assert fast.late_records == general.late_records
    assert fast.state_size() == general.state_size() == 0


@settings(max_examples=100, deadline=None)
@given(batches=_punctuated(), kind=kinds, cut=st.integers(0, 5))
def test_a_snapshot_of_the_panes_is_the_general_paths(batches: Batches, kind: str, cut: int) -> None:
    """The same snapshot as the general path's after ``cut`` batches, and the same results after
    both restore it into a new operator."""
    fast, general = _pair(kind)
    assert _feed(fast, batches[:cut], set()) == _feed(general, batches[:cut], set())
    state = fast.snapshot_state()
    assert state == general.snapshot_state()
    fast_again, general_again = _pair(kind)
    if state is not None:
        fast_again.restore_state([pickle.loads(pickle.dumps(state))])
        general_again.restore_state([pickle.loads(pickle.dumps(state))])
    rest = [*batches[cut:], *END]
    assert _feed(fast_again, rest, set()) == _feed(general_again, rest, set())
    assert fast_again.state_size() == general_again.state_size() == 0


def test_the_panes_hold_the_windows_on_the_heap_only() -> None:
    op = _operator(TumblingEventTimeWindows.of(10), "aggregate")
    op.process(Batch([{"k": "a", "v": 1}, {"k": "b", "v": 2}, {"k": "a", "v": 3}], [1, 2, 15], [(3, 0)]))
    assert (op._panes is not None) is ON_HEAP
    if ON_HEAP:
        assert op._panes == {9: {"a": [1, 1], "b": [2, 1]}, 19: {"a": [3, 1]}}
        assert len(op._event_timers) == 2  # one timer per pane
    # Reading the state puts the panes back: a timer per window.
    assert op.windows["a"] == {TimeWindow(0, 10): [1, 1], TimeWindow(10, 20): [3, 1]}
    assert op.event_timers.snapshot() == [
        (9, [("a", TimeWindow(0, 10)), ("b", TimeWindow(0, 10))]),
        (19, [("a", TimeWindow(10, 20))]),
    ]
    assert op._panes is None
    out = op.process(Batch([{"k": "b", "v": 4}], [16], [(1, 9)]))
    assert out.values == [(1, 1), (2, 1)] and out.timestamps == [9, 9]
    assert (op._panes is not None) is ON_HEAP


def test_no_panes_with_lateness_or_incremental_snapshots() -> None:
    late = _operator(TumblingEventTimeWindows.of(10), "reduce", lateness=5)
    incremental = WindowOperator("w", itemgetter("k"), TumblingEventTimeWindows.of(10), _contents("reduce"))
    incremental.open(operator_context("w", incremental=True))
    for op in (late, incremental):
        op.process(Batch([{"k": "a", "v": 1}], [1], [(1, 0)]))
        assert op._panes is None and op.state_size() == 1


def test_a_layout_the_panes_cannot_hold_stays_as_it_is() -> None:
    """A snapshot of windows with allowed lateness (a cleanup timer after the max timestamp),
    restored without lateness: the general tumbling path keeps it."""
    late = _operator(TumblingEventTimeWindows.of(10), "aggregate", lateness=5)
    late.process(Batch([{"k": "a", "v": 1}], [1], [(1, 0)]))
    state = late.snapshot_state()
    op = _operator(TumblingEventTimeWindows.of(10), "aggregate")
    op.restore_state([state])
    out = op.process(Batch([{"k": "a", "v": 2}], [3], [(1, 9)]))
    assert op._panes is None and not op._pane_capable
    assert out.values == [(3, 2)]
    assert op.event_timers.snapshot() == [(14, [("a", TimeWindow(0, 10))])]


def test_a_copy_of_an_operator_holding_panes_goes_on_alone() -> None:
    """On the heap whatever the chosen backend (a RocksDB store is not copied)."""
    op = WindowOperator("w", itemgetter("k"), TumblingEventTimeWindows.of(10), _contents("aggregate"))
    op.open(OperatorContext("w"))
    assert op._pane_capable
    op.process(Batch([{"k": "a", "v": 1}, {"k": "b", "v": 2}], [1, 12], [(2, 0)]))
    twin = copy.deepcopy(op)
    timers = [(9, [("a", TimeWindow(0, 10))]), (19, [("b", TimeWindow(10, 20))])]
    assert twin.event_timers.snapshot() == op.event_timers.snapshot() == timers
    rest = Batch([{"k": "a", "v": 3}], [5], [(1, 25)])
    assert twin.process(rest).values == op.process(rest).values == [(4, 2), (2, 1)]
    assert twin.state_size() == op.state_size() == 0
