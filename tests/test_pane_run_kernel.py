"""The tumbling window operator's compiled pane run (actorflow/operators/windows/_pane_run.c) does
what its Python loop (WindowOperator._pane_run) does: the same results, timestamps and output marks,
the same late records, timers, watermark and panes, and when the user's code raises (the key
selector, the aggregate's create or add), the same exception with the panes left in the same state.
Records of any kind, timestamps that are floats or ints past 64 bits, go through it as through the
Python loop (tests/test_compiled.py checks that the operator takes it when it is built and wanted)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from operator import itemgetter
from types import ModuleType
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actorflow.operators.base import OperatorContext
from actorflow.operators.side_outputs import OutputTag, SideOutputs
from actorflow.operators.windows import TumblingEventTimeWindows
from actorflow.operators.windows import operator as operator_module
from actorflow.operators.windows.functions import (
    EMPTY,
    AggregateContents,
    AggregateFunction,
    ReduceContents,
    WindowContents,
)
from actorflow.operators.windows.operator import WindowOperator
from actorflow.runtime.messages import MAX_WATERMARK, Batch

pane_run: ModuleType | None
try:
    from actorflow.operators.windows import _pane_run as pane_run
except ImportError:
    pane_run = None

needs_compiled = pytest.mark.skipif(
    pane_run is None,
    reason="actorflow.operators.windows._pane_run is not built (no C compiler at install?): "
    "only the Python loop was tested; `pip install -e .` builds it",
)

LATE: OutputTag[Any] = OutputTag("late")


class Boom(Exception):
    """What the test's functions raise."""


class Record(dict[str, Any]):
    """A dict of another type: its items are read through its own ``__getitem__``."""

    def __getitem__(self, name: str) -> Any:
        value = super().__getitem__(name)
        return ("sub", value) if name == "k" else value


class Counting(AggregateFunction[Any, Any, Any]):
    """Sums and counts, in place (a list) or not (a tuple); raises on a record that says so, and
    at its ``create_boom``-th accumulator."""

    def __init__(self, in_place: bool, create_boom: int | None) -> None:
        self.in_place = in_place
        self.create_boom = create_boom
        self.created = 0

    def create_accumulator(self) -> Any:
        self.created += 1
        if self.created == self.create_boom:
            raise Boom("create", self.created)
        return [0, 0] if self.in_place else (0, 0)

    def add(self, value: Any, accumulator: Any) -> Any:
        if value["boom"]:
            raise Boom("add", value["n"])
        if not self.in_place:
            return (accumulator[0] + value["v"], accumulator[1] + 1)
        accumulator[0] += value["v"]
        accumulator[1] += 1
        return accumulator

    def get_result(self, accumulator: Any) -> Any:
        return tuple(accumulator)


def _sum(a: Any, b: Any) -> Any:
    if b["boom"]:
        raise Boom("reduce", b["n"])
    return {**a, "v": a["v"] + b["v"]}


def _by_call(value: Any) -> Any:
    if value.get("bad"):
        raise Boom("key", value["n"])
    return value["k"]


#: Key selectors: key_by("k") (read without a call in C), a function that may raise.
SELECTORS: list[Callable[[Any], Any]] = [itemgetter("k"), _by_call]

Batches = list[tuple[list[Any], list[Any], list[tuple[int, Any]]]]


@st.composite
def batches(draw: st.DrawFn) -> Batches:
    """Batches with rising watermarks, and timestamps that jump back by up to three windows (new
    panes behind the earliest timer, records late or perhaps late); now and then a float or a
    big timestamp, a record that is not a plain dict, one without a key or with a raising one."""
    result: Batches = []
    n = 0
    highest = 0
    watermark = 0
    lag = draw(st.integers(0, 12))
    for _ in range(draw(st.integers(1, 5))):
        count = draw(st.integers(0, 30))
        values: list[Any] = []
        timestamps: list[Any] = []
        marks: list[tuple[int, Any]] = []
        if draw(st.booleans()) and count == 0:
            marks.append((0, watermark))
        for position in range(1, count + 1):
            timestamp: Any = draw(st.integers(max(0, highest - 30), highest + 7))
            kind = draw(st.integers(0, 40))
            value: dict[str, Any] = {"n": n, "v": draw(st.integers(1, 9)), "boom": kind == 0}
            if kind != 1:  # rarely no key: itemgetter raises KeyError
                value["k"] = draw(st.sampled_from("abcd"))
            if kind == 2:
                value["bad"] = True
            values.append(Record(value) if kind == 3 else value)
            if kind == 4:
                timestamp += 0.5  # a float: the Python loop's arithmetic
            elif kind == 5:
                timestamp = 2**64 + timestamp  # past 64 bits: never fires, never late
            timestamps.append(timestamp)
            n += 1
            if kind not in (4, 5):
                highest = max(highest, timestamp)
            if highest - lag > watermark and draw(st.integers(0, 4)) > 0:
                watermark = highest - lag
                marks.append((position, watermark))
                if draw(st.integers(0, 9)) == 0:  # a second mark at the same position
                    watermark += draw(st.integers(0, 3))
                    marks.append((position, watermark))
        result.append((values, timestamps, marks))
    result.append(([], [], [(0, MAX_WATERMARK)]))
    return result


@contextmanager
def loop(compiled: ModuleType | None) -> Iterator[None]:
    """The operator runs ``compiled`` (the C run) or, with None, its Python loop alone."""
    with mock.patch.object(operator_module, "_compiled", compiled):
        yield


def _contents(kind: str, create_boom: int | None) -> WindowContents:
    if kind == "reduce":
        return ReduceContents(_sum)
    return AggregateContents(Counting(kind == "in place", create_boom))


def _observed(op: WindowOperator) -> Any:
    """What the operator holds between batches, read without moving its panes."""
    side = op.side_outputs.take(LATE, None)
    return (
        copy.deepcopy(op._panes),
        op._event_timers.snapshot(),
        op._event_timers.next_time,
        op.watermark,
        op.late_records,
        None if side is None else (side.values, side.timestamps),
    )


def _run(
    batches: Batches, kind: str, create_boom: int | None, key_of: Callable[[Any], Any], compiled: Any
) -> list[Any]:
    op = WindowOperator(
        "w", key_of, TumblingEventTimeWindows.of(10), _contents(kind, create_boom), None, 0, LATE
    )
    op.open(OperatorContext("w"))  # on the heap: the panes
    op.side_outputs = SideOutputs([LATE])
    seen: list[Any] = []
    with loop(compiled):
        for values, timestamps, marks in batches:
            try:
                out = op.process(Batch(values, timestamps, marks or None))
            except (Boom, KeyError) as error:
                seen.append(("raised", type(error), error.args))
            else:
                seen.append(("batch", out.values, out.timestamps, out.marks))
            seen.append(_observed(op))
    return seen


@needs_compiled
@settings(max_examples=400, deadline=None)
@given(
    batches(),
    st.sampled_from(["in place", "tuple", "reduce"]),
    st.none() | st.integers(1, 12),
    st.sampled_from(SELECTORS),
)
def test_the_compiled_run_does_what_the_python_loop_does(
    batches: Batches, kind: str, create_boom: int | None, key_of: Callable[[Any], Any]
) -> None:
    compiled = _run(batches, kind, create_boom, key_of, pane_run)
    assert compiled == _run(batches, kind, create_boom, key_of, None)


def _kernel_args(values: list[Any], timestamps: list[Any], panes: dict[int, Any], highest: int) -> Any:
    function = Counting(True, None)
    return (values, timestamps, 0, len(values), itemgetter("k"), function.create_accumulator,
            function.add, EMPTY, panes, 10, 0, highest)  # fmt: skip


@needs_compiled
def test_the_compiled_run_hands_back_what_it_leaves_before_taking_its_key() -> None:
    """It stops at a record of a new pane, one perhaps late, one whose timestamp is not a 64-bit
    int: the key selector has not seen it."""
    assert pane_run is not None
    seen: list[Any] = []

    def key_of(value: Any) -> Any:
        seen.append(value["n"])
        return value["k"]

    values = [{"n": n, "k": "a", "v": 1, "boom": False} for n in range(3)]
    for stop_at, highest in ((25, 0), (3, 9), (2**63, 0), (4.0, 0)):
        seen.clear()
        panes: dict[int, Any] = {9: {}}
        args = list(_kernel_args(values, [1, 2, stop_at], panes, highest))
        args[4] = key_of
        stopped = pane_run.run(*args)
        if highest >= 9:  # the first record's window is perhaps late
            assert (stopped, seen, panes) == (0, [], {9: {}})
        else:
            assert (stopped, seen, panes) == (2, [0, 1], {9: {"a": [2, 2]}})


@needs_compiled
@pytest.mark.parametrize(
    "timestamp",
    [0, 1, -1, 2**30 - 1, 2**30, -(2**30) - 1, 2**60, -(2**60), 1_733_000_000_123, 2**63 - 1, -(2**63) + 1],
)
def test_the_compiled_run_reads_every_64_bit_timestamp(timestamp: int) -> None:
    """Windows of one millisecond: the record finds the pane of its own timestamp, of whatever
    size (one digit, two, more), or none."""
    assert pane_run is not None
    values = [{"k": "a", "v": 1, "boom": False}]
    args = list(_kernel_args(values, [timestamp], {timestamp: {}}, -(2**63)))
    args[9] = 1
    assert pane_run.run(*args) == 1 and args[8] == {timestamp: {"a": [1, 1]}}
    args[8] = {timestamp + 1: {}, timestamp - 1: {}}
    assert pane_run.run(*args) == 0


@needs_compiled
def test_the_compiled_run_leaves_the_panes_as_the_python_loop_where_add_raises() -> None:
    assert pane_run is not None
    values = [{"n": n, "k": "ab"[n % 2], "v": 1, "boom": n == 3} for n in range(5)]
    panes: dict[int, Any] = {9: {"b": [5, 1]}}
    with pytest.raises(Boom, match="add"):
        pane_run.run(*_kernel_args(values, [1, 2, 3, 4, 5], panes, 0))
    assert panes == {9: {"a": [2, 2], "b": [6, 2]}}


@needs_compiled
def test_the_compiled_run_rejects_what_the_operator_never_passes() -> None:
    assert pane_run is not None
    with pytest.raises(TypeError):
        pane_run.run([], [], 0, 0)  # type: ignore[call-arg]
    args = _kernel_args([], [], {}, 0)
    with pytest.raises(TypeError):
        pane_run.run((), *args[1:])
    for position, bad in ((9, 0), (9, 2**64), (10, 1.5), (11, 2**70)):
        with pytest.raises(ValueError):
            pane_run.run(*args[:position], bad, *args[position + 1 :])


@needs_compiled
def test_the_compiled_run_ends_when_the_function_shortens_the_batch() -> None:
    assert pane_run is not None
    values = [{"n": n, "k": "a", "v": 1, "boom": False} for n in range(4)]
    args = list(_kernel_args(values, [1, 2, 3, 4], {9: {}}, 0))

    def add(value: Any, accumulator: Any) -> Any:
        values.clear()
        return accumulator

    args[6] = add
    assert pane_run.run(*args) == 1
