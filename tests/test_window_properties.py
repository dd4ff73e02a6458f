"""Random out-of-order streams through tumbling, sliding and session windows, against a brute force.

Hypothesis draws records (key, value, timestamp, session gap) and, after any record, an explicit
watermark that trails the highest timestamp so far by a random amount (or runs ahead of it), so
records arrive late by any amount. The reference below walks the records in order with the
watermark each one meets and applies Flink's rules plainly, window by window:

- a record goes to each of its windows whose ``max_timestamp + allowed_lateness`` the watermark has
  not reached; a session record first merges with every session of its key it overlaps or touches
  (before the lateness check, as Flink);
- a window fires when the watermark reaches its ``max_timestamp``, and again at once for every record
  it takes after that (a late record within the lateness);
- a window is gone once the watermark reaches ``max_timestamp + allowed_lateness``;
- a record that no window took is late: counted and sent to the late-data side output.

Every flow runs at parallelism 1 and 3, with random batch sizes (watermarks land mid-batch).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actorflow import (
    MAX_WATERMARK,
    MIN_WATERMARK,
    AggregateFunction,
    Collector,
    Context,
    EventTimeSessionWindows,
    Flow,
    OutputTag,
    ProcessFunction,
    ProcessWindowFunction,
    SlidingEventTimeWindows,
    TumblingEventTimeWindows,
    WatermarkStrategy,
    WindowAssigner,
    WindowContext,
)
from actorflow.operators.side_outputs import SideOutputs
from actorflow.operators.windows.functions import AggregateContents
from actorflow.operators.windows.operator import WindowOperator
from actorflow.runtime.messages import Batch
from actorflow.time.watermarks import WatermarkGenerator
from tests.state_backends import operator_context

Record = dict[str, Any]
Result = tuple[Any, int, int, int, int]  # key, window start, window end, sum of v, count
LATE: OutputTag[Record] = OutputTag("late")


# -- the stream: records and explicit watermarks ----------------------------------------------------


@dataclass
class Scenario:
    records: list[Record]
    #: The watermark after each record, or None where it does not move.
    watermarks: list[int | None]


class ExplicitWatermarks(WatermarkGenerator):
    """Emits the scenario's watermark after each record that has one (the source is one instance,
    so it sees the records in order, batch after batch)."""

    def __init__(self, watermarks: list[int | None]) -> None:
        self._watermarks = watermarks
        self._next = 0

    def on_batch(self, timestamps: list[int]) -> list[tuple[int, int]]:
        marks = []
        for position in range(1, len(timestamps) + 1):
            watermark = self._watermarks[self._next]
            self._next += 1
            if watermark is not None:
                marks.append((position, watermark))
        return marks


def scenario(data: st.DataObject, max_records: int = 40) -> Scenario:
    n = data.draw(st.integers(0, max_records), label="n")
    records: list[Record] = []
    watermarks: list[int | None] = []
    highest = watermark = MIN_WATERMARK
    for index in range(n):
        ts = data.draw(st.integers(0, 150))
        records.append(
            {
                "id": index,
                "k": data.draw(st.sampled_from("abcd")),
                "v": data.draw(st.integers(-5, 20)),
                "ts": ts,
                "gap": data.draw(st.integers(1, 25)),
            }
        )
        highest = max(highest, ts)
        moved = None
        if data.draw(st.booleans()):
            candidate = highest - data.draw(st.integers(-10, 40), label="watermark delay")
            if candidate > watermark:
                watermark = moved = candidate
        watermarks.append(moved)
    return Scenario(records, watermarks)


# -- the reference ---------------------------------------------------------------------------------


@dataclass
class Window:
    start: int
    end: int
    values: list[int] = field(default_factory=list)
    #: Waiting for the watermark to reach its end (it has records it did not fire with).
    pending: bool = False


def reference(
    scenario: Scenario, kind: str, lateness: int, size: int = 10, slide: int = 10, gap: int | None = None
) -> tuple[Counter[Result], list[Record]]:
    """(every window firing, the records dropped as late) for ``kind`` tumbling/sliding/session;
    a session uses ``gap``, or each record's own ``gap`` when it is None."""
    windows: dict[Any, list[Window]] = {}
    emitted: Counter[Result] = Counter()
    late: list[Record] = []
    watermark = MIN_WATERMARK

    def fire(key: Any, window: Window) -> None:
        emitted[(key, window.start, window.end, sum(window.values), len(window.values))] += 1

    def advance(to: int) -> None:
        for key, mine in windows.items():
            for window in mine:
                if window.pending and window.end - 1 <= to:
                    fire(key, window)
                    window.pending = False
            mine[:] = [w for w in mine if w.end - 1 + lateness > to]

    for record, moved in zip(scenario.records, scenario.watermarks, strict=True):
        key, ts = record["k"], record["ts"]
        mine = windows.setdefault(key, [])
        targets: list[Window] = []
        if kind == "session":
            start, end = ts, ts + (record["gap"] if gap is None else gap)
            touching = [w for w in mine if w.start <= end and start <= w.end]
            if touching or end - 1 + lateness > watermark:
                touching.sort(key=lambda w: w.start)
                merged = Window(
                    min([start] + [w.start for w in touching]),
                    max([end] + [w.end for w in touching]),
                    [v for w in touching for v in w.values],
                )
                mine[:] = [w for w in mine if w not in touching] + [merged]
                targets.append(merged)
        else:
            for start in range(ts - size + 1, ts + 1):
                if start % slide or start + size - 1 + lateness <= watermark:
                    continue
                found = [w for w in mine if w.start == start]
                if not found:
                    found = [Window(start, start + size)]
                    mine.append(found[0])
                targets.append(found[0])
        for window in targets:
            window.values.append(record["v"])
            if window.end - 1 <= watermark:
                fire(key, window)  # the watermark has passed it: a late record fires it again
            else:
                window.pending = True
        if not targets:
            late.append(record)
        if moved is not None:
            watermark = moved
            advance(watermark)
    advance(MAX_WATERMARK)
    return emitted, late


def test_the_reference_on_a_hand_checked_session_stream() -> None:
    records = [
        {"id": 0, "k": "a", "v": 1, "ts": 0, "gap": 10},  # [0, 10)
        {"id": 1, "k": "a", "v": 2, "ts": 30, "gap": 10},  # watermark 30: [0, 10) fires
        {"id": 2, "k": "a", "v": 4, "ts": 5, "gap": 10},  # [5, 15) merges: [0, 15) fires again
        {"id": 3, "k": "a", "v": 8, "ts": 2, "gap": 2},  # inside [0, 15): fires again; watermark 50
        {"id": 4, "k": "a", "v": 16, "ts": 20, "gap": 5},  # [20, 25) is past 24 + 25 <= 50: late
    ]
    story = Scenario(records, [None, 30, None, 50, None])
    expected = Counter(
        {("a", 0, 10, 1, 1): 1, ("a", 0, 15, 5, 2): 1, ("a", 0, 15, 13, 3): 1, ("a", 30, 40, 2, 1): 1}
    )
    emitted, late = reference(story, "session", lateness=25)
    assert (emitted, [r["id"] for r in late]) == (expected, [4])
    assert run(story, EventTimeSessionWindows.with_dynamic_gap(itemgetter("gap")), "process", 25, 1, 2) == (
        expected,
        [(4, 20)],
    )


# -- the flow under test ----------------------------------------------------------------------------


class SumCount(AggregateFunction[Record, tuple[int, int], tuple[int, int]]):
    def create_accumulator(self) -> tuple[int, int]:
        return (0, 0)

    def add(self, value: Record, accumulator: tuple[int, int]) -> tuple[int, int]:
        return (accumulator[0] + value["v"], accumulator[1] + 1)

    def get_result(self, accumulator: tuple[int, int]) -> tuple[int, int]:
        return accumulator

    def merge(self, a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
        return (a[0] + b[0], a[1] + b[1])


class WithWindow(ProcessWindowFunction[Any, Result, Any]):
    """(key, start, end, sum, count) from one (sum, count) pair or from the elements themselves."""

    def __init__(self, elements: bool) -> None:
        self.elements = elements

    def process(self, key: Any, context: WindowContext, elements: list[Any], out: Collector) -> None:
        window = context.window
        if self.elements:
            total, count = sum(e["v"] for e in elements), len(elements)
        else:
            (single,) = elements
            total, count = (single["v"], single["n"]) if isinstance(single, dict) else single
        out.collect((key, window.start, window.end, total, count))


class Stamped(ProcessFunction[Record, tuple[int, int | None]]):
    """A late record's id and the timestamp it travels with."""

    def process_element(self, value: Record, ctx: Context, out: Collector) -> None:
        out.collect((value["id"], ctx.timestamp))


def add_records(a: Record, b: Record) -> Record:
    return {**a, "v": a["v"] + b["v"], "n": a["n"] + b["n"]}


def run(
    story: Scenario, assigner: WindowAssigner, how: str, lateness: int, parallelism: int, batch_size: int
) -> tuple[Counter[Result], list[tuple[int, int | None]]]:
    """(the window firings, the late side output as (id, timestamp)) of one flow run."""
    flow = Flow(parallelism=parallelism, batch_size=batch_size)
    strategy = WatermarkStrategy(itemgetter("ts"), lambda: ExplicitWatermarks(story.watermarks))
    windowed = (
        flow.from_iterable([{**r, "n": 1} for r in story.records], watermarks=strategy)
        .key_by("k")
        .window(assigner)
        .allowed_lateness(lateness)
        .side_output_late_data(LATE)
    )
    if how == "reduce":
        results = windowed.reduce(add_records, WithWindow(elements=False))
    elif how == "aggregate":
        results = windowed.aggregate(SumCount(), WithWindow(elements=False))
    else:
        results = windowed.process(WithWindow(elements=True))
    out = results.collect()
    late = results.get_side_output(LATE).process(Stamped()).collect()
    flow.execute()
    return Counter(out.values), sorted(late.values)


def check(data: st.DataObject, kind: str, assigner: WindowAssigner, parallelism: int, **shape: Any) -> None:
    story = scenario(data)
    lateness = data.draw(st.sampled_from([0, 0, 10, 40]), label="lateness")
    how = data.draw(st.sampled_from(["reduce", "aggregate", "process"]), label="how")
    batch_size = data.draw(st.integers(1, 6), label="batch_size")
    expected, late = reference(story, kind, lateness, **shape)
    emitted, late_out = run(story, assigner, how, lateness, parallelism, batch_size)
    assert emitted == expected
    assert late_out == [(r["id"], r["ts"]) for r in late]


PARALLELISM = pytest.mark.parametrize("parallelism", [1, 3], ids=["p1", "p3"])
SETTINGS = settings(max_examples=30, deadline=None, derandomize=True)


@PARALLELISM
@SETTINGS
@given(data=st.data())
def test_tumbling_windows_and_late_data_match_the_reference(parallelism: int, data: st.DataObject) -> None:
    size = data.draw(st.sampled_from([1, 7, 10, 25]), label="size")
    check(data, "tumbling", TumblingEventTimeWindows.of(size), parallelism, size=size, slide=size)


@PARALLELISM
@SETTINGS
@given(data=st.data())
def test_sliding_windows_and_late_data_match_the_reference(parallelism: int, data: st.DataObject) -> None:
    slide = data.draw(st.sampled_from([1, 5, 10]), label="slide")
    size = slide * data.draw(st.integers(1, 4), label="slides per window")
    check(data, "sliding", SlidingEventTimeWindows.of(size, slide), parallelism, size=size, slide=slide)


@PARALLELISM
@SETTINGS
@given(data=st.data())
def test_session_windows_and_late_data_match_the_reference(parallelism: int, data: st.DataObject) -> None:
    gap = data.draw(st.sampled_from([1, 5, 12]), label="gap")
    check(data, "session", EventTimeSessionWindows.with_gap(gap), parallelism, gap=gap)


@PARALLELISM
@SETTINGS
@given(data=st.data())
def test_dynamic_gap_sessions_and_late_data_match_the_reference(
    parallelism: int, data: st.DataObject
) -> None:
    check(data, "session", EventTimeSessionWindows.with_dynamic_gap(itemgetter("gap")), parallelism)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(data=st.data())
def test_the_session_operator_counts_late_records_and_cleans_up_as_the_reference(
    data: st.DataObject,
) -> None:
    # The operator fed directly, batches cut anywhere: late count, side output, results, no leftovers.
    story = scenario(data)
    lateness = data.draw(st.sampled_from([0, 5, 30]), label="lateness")
    expected, late = reference(story, "session", lateness)
    op = WindowOperator(
        "w",
        itemgetter("k"),
        EventTimeSessionWindows.with_dynamic_gap(itemgetter("gap")),
        AggregateContents(SumCount()),
        None,
        lateness,
        LATE,
    )
    op.open(operator_context("w"))
    op.side_outputs = SideOutputs([LATE])
    got: Counter[Any] = Counter()
    position = 0
    while position < len(story.records):
        end = position + data.draw(st.integers(1, 5), label="batch")
        chunk = story.records[position:end]
        marks = [
            (index + 1, watermark)
            for index, watermark in enumerate(story.watermarks[position:end])
            if watermark is not None
        ]
        out = op.process(Batch(chunk, [r["ts"] for r in chunk], marks))
        got.update(zip(out.values, out.timestamps or [], strict=True))
        position = end
    out = op.process(Batch([], [], [(0, MAX_WATERMARK)]))
    got.update(zip(out.values, out.timestamps or [], strict=True))
    assert op.late_records == len(late)
    side = op.side_outputs.take(LATE, None)
    side_values, side_timestamps = (side.values, side.timestamps) if side is not None else ([], [])
    assert side_values == late
    assert side_timestamps == [r["ts"] for r in late]
    projected: Counter[Any] = Counter()
    for (_, _, end_, total, count), n in expected.items():
        projected[((total, count), end_ - 1)] += n
    assert got == projected
    assert op.state_size() == 0
    assert len(op.event_timers) == 0
