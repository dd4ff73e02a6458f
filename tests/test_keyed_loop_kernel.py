"""The keyed process operator's compiled per-record loop (actorflow/operators/_keyed_loop.c) does what
its Python loops do: the same results, timestamps, output marks and timers fired in the same order,
and when the user's code raises, the same exception with the operator left in the same state (what
was collected, the watermark passed, the current key); records sent to dead letters go there the same
way (tests/test_compiled.py checks that the operator takes the loop when it is built and wanted)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from operator import itemgetter
from types import ModuleType
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actorflow import Collector, Context, KeyedProcessFunction, OutputTag
from actorflow.operators import process as process_module
from actorflow.operators.base import OperatorContext
from actorflow.operators.failures import FailedRecord
from actorflow.operators.process import KeyedProcessOperator, _MarkedOutput, _StampedAppend
from actorflow.operators.side_outputs import SideOutputs
from actorflow.runtime.messages import MIN_WATERMARK, Batch

keyed_loop: ModuleType | None
try:
    from actorflow.operators import _keyed_loop as keyed_loop
except ImportError:
    keyed_loop = None

needs_compiled = pytest.mark.skipif(
    keyed_loop is None,
    reason="actorflow.operators._keyed_loop is not built (no C compiler at install?): "
    "only the Python loops were tested; `pip install -e .` builds it",
)

DEAD: OutputTag[FailedRecord[Any]] = OutputTag("dead")


class Boom(Exception):
    """What the test's function raises, on a record or in a timer."""


class Recorder(KeyedProcessFunction[dict[str, Any], Any]):
    """Emits and logs what it sees per record and per timer; sets and deletes event-time timers
    (timers that come due at later marks, or at once); raises where the records say so."""

    def __init__(self, timer_boom: int | None) -> None:
        self.trace: list[Any] = []
        self.timer_boom = timer_boom

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        timers = ctx.timer_service()
        seen = ("record", ctx.current_key, value["n"], ctx.timestamp, timers.current_watermark())
        self.trace.append(seen)
        out.collect(seen)
        if value["at"] is not None:
            timers.register_event_time_timer(value["at"])
        if value["delete"] is not None:
            timers.delete_event_time_timer(value["delete"])
        if value["boom"]:  # after a result: what was collected before the raise stays
            raise Boom(value["n"])

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        watermark = ctx.timer_service().current_watermark()
        seen = ("timer", ctx.current_key, timestamp, ctx.timestamp, ctx.time_domain, watermark)
        self.trace.append(seen)
        out.collect(seen)
        if timestamp == self.timer_boom:
            raise Boom(f"timer {timestamp}")
        if timestamp % 4 == 0:  # a timer that sets another, due already or later
            ctx.timer_service().register_event_time_timer(timestamp + 1 + timestamp % 3)


Batches = list[tuple[list[dict[str, Any]], list[int] | None, list[tuple[int, int]]]]


@st.composite
def batches(draw: st.DrawFn) -> Batches:
    result = []
    n = 0
    for _ in range(draw(st.integers(1, 5))):
        count = draw(st.integers(0, 10))
        values = []
        for _ in range(count):
            value: dict[str, Any] = {
                "n": n,
                "at": draw(st.none() | st.integers(0, 60)),
                "delete": draw(st.none() | st.integers(0, 60)),
                "boom": draw(st.integers(0, 15)) == 0,
            }
            if draw(st.integers(0, 30)):  # rarely none: the key selector raises KeyError
                value["k"] = draw(st.integers(0, 3))
            values.append(value)
            n += 1
        timestamps = draw(st.none() | st.lists(st.integers(0, 60), min_size=count, max_size=count))
        # Positions may repeat (two marks before one record) and reach past the last record.
        positions = sorted(draw(st.lists(st.integers(0, count + 2), max_size=6)))
        marks = [(position, draw(st.integers(0, 70))) for position in positions]
        result.append((values, timestamps, marks))
    return result


def _collected(operator: KeyedProcessOperator) -> Any:
    """What the operator's collector holds (after a batch, or where an exception stopped it)."""
    collect: Any = operator._out.collect
    if isinstance(collect, _MarkedOutput):
        return ("marked", collect.values, collect.timestamps, collect.marks, collect.pending)
    if isinstance(collect, _StampedAppend):
        return ("stamped", collect.values, collect.timestamps)
    return ("plain", collect.__self__)


def _observed(operator: KeyedProcessOperator) -> dict[str, Any]:
    """Everything observable of the operator between batches."""
    side = operator.side_outputs.take(DEAD, None) if DEAD in operator.side_outputs.tags else None
    return {
        "current": operator.backend.keys.current,
        "watermark": operator.timers.watermark,
        "timestamp": operator._ctx.timestamp,
        "time_domain": operator._ctx.time_domain,
        "timers": operator.event_timers.snapshot(),
        "next_time": operator.event_timers.next_time,
        "collected": _collected(operator),
        "dead": None
        if side is None
        else [(f.value["n"], type(f.error), f.error.args, f.operator) for f in side.values],
        "dead_timestamps": None if side is None else side.timestamps,
        "dead_count": getattr(operator, "dead_letter_count", None),
        "unconsumed": operator.side_outputs.unconsumed,
    }


@contextmanager
def loop(compiled: ModuleType | None) -> Iterator[None]:
    """The operator runs ``compiled`` (the C loop) or, with None, its Python loops."""
    with mock.patch.object(process_module, "_compiled", compiled):
        yield


def _by_call(value: dict[str, Any]) -> Any:
    return value["k"]


#: Key selectors: key_by("k") (read without a call in C), a function, a getter of a tuple key.
SELECTORS = [itemgetter("k"), _by_call, itemgetter("k", "n")]


def _run(
    batches: Batches,
    errors: str,
    timer_boom: int | None,
    compiled: ModuleType | None,
    key_of: Callable[[Any], Any] = SELECTORS[0],
) -> list[Any]:
    function = Recorder(timer_boom)
    operator = KeyedProcessOperator("op", function, key_of, DEAD if errors != "fail" else None)
    operator.open(OperatorContext("op"))
    operator.side_outputs = SideOutputs([DEAD] if errors == "dead letters" else [])
    seen: list[Any] = []
    with loop(compiled):
        for values, timestamps, marks in batches:
            try:
                out = operator.process(Batch(values, timestamps, marks or None))
            except (Boom, KeyError) as error:
                seen.append(("raised", type(error), error.args, getattr(error, "__notes__", None)))
            else:
                seen.append(("batch", out.values, out.timestamps, out.marks))
            seen.append(_observed(operator))
    seen.append(function.trace)
    return seen


@needs_compiled
@settings(max_examples=400, deadline=None)
@given(
    batches(),
    st.sampled_from(["fail", "dead letters", "unconsumed dead letters"]),
    st.none() | st.integers(0, 60),
    st.sampled_from(SELECTORS),
)
def test_the_compiled_loop_does_what_the_python_loops_do(
    batches: Batches, errors: str, timer_boom: int | None, key_of: Callable[[Any], Any]
) -> None:
    compiled = _run(batches, errors, timer_boom, keyed_loop, key_of)
    assert compiled == _run(batches, errors, timer_boom, None, key_of)


@needs_compiled
def test_the_compiled_loop_stops_where_the_function_raises() -> None:
    """A record that raises ends the batch there: its key is current, its results are kept, the
    records after it are not processed, and the marks before it were passed."""
    values = [{"n": n, "k": n % 2, "at": None, "delete": None, "boom": n == 2} for n in range(4)]
    for compiled in (keyed_loop, None):
        seen = _run([(values, [10, 11, 12, 13], [(1, 5), (2, 6), (4, 9)])], "fail", None, compiled)
        assert seen[0][:2] == ("raised", Boom)
        assert seen[1]["current"] == 0 and seen[1]["watermark"] == 6 and seen[1]["timestamp"] == 12
        assert seen[1]["collected"][1] == [
            ("record", k, n, 10 + n, w) for k, n, w in [(0, 0, MIN_WATERMARK), (1, 1, 5), (0, 2, 6)]
        ]


class Plain:
    """An object without slots: its attributes are stored by name."""


class Slotted:
    __slots__ = ("current", "pending", "timestamp", "watermark")


class Watched:
    """``current`` and ``timestamp`` as properties that log every store."""

    def __init__(self) -> None:
        self.log: list[Any] = []

    @property
    def current(self) -> Any:
        return self.log[-1][1]

    @current.setter
    def current(self, value: Any) -> None:
        self.log.append(("current", value))

    @property
    def timestamp(self) -> Any:
        return None

    @timestamp.setter
    def timestamp(self, value: Any) -> None:
        self.log.append(("timestamp", value))


class Queue:
    __slots__ = ("next_time",)

    def __init__(self, next_time: Any) -> None:
        self.next_time = next_time


def _calls() -> tuple[list[Any], Any]:
    calls: list[Any] = []

    def process(value: Any, ctx: Any, out: Any) -> None:
        calls.append(("process", value, getattr(ctx, "timestamp", "?")))

    return calls, process


@needs_compiled
@pytest.mark.parametrize("kind", [Plain, Slotted, Watched])
def test_the_compiled_loop_sets_attributes_of_any_kind_of_object(kind: type) -> None:
    assert keyed_loop is not None
    calls, process = _calls()
    keys, ctx = kind(), kind()
    keyed_loop.run([1, 2], [7, 8], lambda v: -v, process, ctx, None, keys)
    if isinstance(ctx, Watched):
        assert ctx.log == [("timestamp", 7), ("timestamp", 8)]
        assert keys.log == [("current", -1), ("current", -2)]
    else:
        assert calls == [("process", 1, 7), ("process", 2, 8)]
        assert (keys.current, ctx.timestamp) == (-2, 8)


@needs_compiled
def test_the_compiled_loop_passes_marks_in_order_and_advances_when_timers_are_due() -> None:
    assert keyed_loop is not None
    calls, process = _calls()
    timers, output, keys, ctx = Slotted(), Slotted(), Slotted(), Plain()
    queue = Queue(6)

    def advance(watermark: int, out: Any) -> None:
        calls.append(("advance", watermark, timers.watermark))
        queue.next_time = None
        out.pending = watermark

    marks = [[0, 3], (1, 4), (1, 6), (2, 7), (9, 8)]  # any pairs; the last after the end
    keyed_loop.run_marked(
        ["a", "b"], None, marks, str, process, ctx, None, keys, timers, queue, output, advance
    )
    assert calls == [("process", "a", None), ("advance", 6, 6), ("process", "b", None)]
    assert (timers.watermark, output.pending, keys.current) == (8, 8, "b")


@needs_compiled
def test_the_compiled_loop_calls_any_callable() -> None:
    assert keyed_loop is not None
    seen: list[Any] = []

    class Call:
        def __call__(self, value: Any, ctx: Any, out: Any) -> None:
            seen.append((value, out))

    keyed_loop.run((1, 2), None, abs, Call(), Plain(), "out", Plain())
    keyed_loop.run([3], None, abs, Call().__call__, Plain(), "out", Plain())
    assert seen == [(1, "out"), (2, "out"), (3, "out")]


@needs_compiled
def test_the_compiled_loop_rejects_what_is_not_a_batch() -> None:
    assert keyed_loop is not None
    calls, process = _calls()
    keys, ctx, timers, output = Plain(), Plain(), Plain(), Plain()
    with pytest.raises(TypeError):
        keyed_loop.run([1], None, abs, process, ctx, None)  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        keyed_loop.run([1, 2], [1], abs, process, ctx, None, keys)
    with pytest.raises(TypeError):
        keyed_loop.run(5, None, abs, process, ctx, None, keys)  # type: ignore[arg-type]
    for bad in ([(0, 1, 2)], [5], [("x", 1)]):
        with pytest.raises((TypeError, ValueError)):
            keyed_loop.run_marked(
                [1], None, bad, abs, process, ctx, None, keys, timers, Queue(None), output, print
            )
    assert calls == []


@needs_compiled
def test_the_compiled_loop_ends_when_the_function_shortens_the_batch() -> None:
    assert keyed_loop is not None
    values = [1, 2, 3, 4]
    seen: list[Any] = []

    def process(value: Any, ctx: Any, out: Any) -> None:
        seen.append(value)
        values.clear()

    keyed_loop.run(values, [1, 2, 3, 4], abs, process, Plain(), None, Plain())
    assert seen == [1]
