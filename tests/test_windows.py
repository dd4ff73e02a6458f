"""Keyed windows: assigners, triggers, allowed lateness, window functions, state cleanup, Q2.

Event-time results are checked against a brute-force reference written plainly here: it walks the
records in source order with the watermark a punctuated strategy gives before each record
(``max(ts so far) - lag``) and applies Flink's rules (a window fires once the watermark passes its
``max_timestamp``, a record within the allowed lateness fires it again, a record past it is dropped).
"""

from __future__ import annotations

import asyncio
import copy
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actorflow import (
    MAX_WATERMARK,
    MIN_WATERMARK,
    AggregateFunction,
    Collector,
    ContinuousEventTimeTrigger,
    CountTrigger,
    EventTimeTrigger,
    Flow,
    GlobalWindows,
    ManualClock,
    OutputTag,
    PlanError,
    ProcessWindowFunction,
    PurgingTrigger,
    PushSource,
    SlidingEventTimeWindows,
    SlidingProcessingTimeWindows,
    TimeWindow,
    Trigger,
    TumblingEventTimeWindows,
    TumblingProcessingTimeWindows,
    WatermarkStrategy,
    WindowAssigner,
    WindowContext,
)
from actorflow.operators.windows.functions import AggregateContents
from actorflow.operators.windows.operator import WindowOperator
from actorflow.runtime.messages import Batch
from actorflow.state.keygroups import key_group, operator_index
from benchmarks import baseline
from benchmarks.generate import write
from benchmarks.results import compare
from tests.state_backends import operator_context

Record = dict[str, Any]
Result = tuple[Any, int, int, int, int]  # key, window start, window end, sum, count


# -- window functions that all give (key, start, end, sum of v, count) ------------------------------


class SumCount(AggregateFunction[Record, tuple[int, int], tuple[int, int]]):
    def create_accumulator(self) -> tuple[int, int]:
        return (0, 0)

    def add(self, value: Record, accumulator: tuple[int, int]) -> tuple[int, int]:
        return (accumulator[0] + value["v"], accumulator[1] + 1)

    def get_result(self, accumulator: tuple[int, int]) -> tuple[int, int]:
        return accumulator


class WithWindow(ProcessWindowFunction[tuple[int, int], Result, Any]):
    """Adds the key and the window to an aggregated (sum, count)."""

    def process(self, key: Any, context: WindowContext, elements: list[Any], out: Collector) -> None:
        assert len(elements) == 1
        total, count = elements[0]
        out.collect((key, context.window.start, context.window.end, total, count))


class ReducedWithWindow(ProcessWindowFunction[Record, Result, Any]):
    def process(self, key: Any, context: WindowContext, elements: list[Record], out: Collector) -> None:
        assert len(elements) == 1
        out.collect((key, context.window.start, context.window.end, elements[0]["v"], elements[0]["n"]))


class SumAll(ProcessWindowFunction[Record, Result, Any]):
    """Sees every element; checks the context's watermark is past the window (event time)."""

    def process(self, key: Any, context: WindowContext, elements: list[Record], out: Collector) -> None:
        assert context.current_watermark() >= context.window.max_timestamp
        total = sum(e["v"] for e in elements)
        out.collect((key, context.window.start, context.window.end, total, len(elements)))


def add_records(a: Record, b: Record) -> Record:
    return {"k": a["k"], "v": a["v"] + b["v"], "n": a["n"] + b["n"], "ts": max(a["ts"], b["ts"])}


FUNCTIONS = ["reduce", "aggregate", "process"]


def windowed(
    flow: Flow, records: list[Record], assigner: WindowAssigner, how: str, lateness: int, lag: int
) -> Any:
    stream = (
        flow.from_iterable(records, watermarks=WatermarkStrategy.punctuated("ts", lag_ms=lag))
        .key_by("k")
        .window(assigner)
        .allowed_lateness(lateness)
    )
    if how == "reduce":
        return stream.reduce(add_records, ReducedWithWindow())
    if how == "aggregate":
        return stream.aggregate(SumCount(), WithWindow())
    return stream.process(SumAll())


def run_windows(
    records: list[Record],
    assigner: WindowAssigner,
    *,
    how: str = "aggregate",
    lateness: int = 0,
    lag: int = 0,
    parallelism: int = 1,
    batch_size: int = 3,
) -> list[Result]:
    flow = Flow(parallelism=parallelism, batch_size=batch_size)
    out = windowed(flow, records, assigner, how, lateness, lag).collect()
    flow.execute()
    return list(out.values)


# -- the reference -------------------------------------------------------------------------------


def windows_of(ts: int, size: int, slide: int) -> list[tuple[int, int]]:
    """Every [start, start + size) with start a multiple of ``slide`` that holds ``ts``."""
    return [(s, s + size) for s in range(ts - size + 1, ts + 1) if s % slide == 0]


def reference(
    records: list[Record], size: int, slide: int, lag: int, lateness: int
) -> tuple[Counter[Result], int]:
    """(all window emissions, late records) by Flink's rules, one record at a time."""
    contents: dict[tuple[Any, int, int], list[int]] = {}
    fired: set[tuple[Any, int, int]] = set()
    emitted: Counter[Result] = Counter()
    late = 0
    watermark = MIN_WATERMARK

    def advance(to: int) -> None:
        for scope, values in sorted(contents.items(), key=lambda item: item[0][2]):
            if scope not in fired and scope[2] - 1 <= to:
                fired.add(scope)
                emitted[(*scope, sum(values), len(values))] += 1

    for record in records:
        accepted = False
        for start, end in windows_of(record["ts"], size, slide):
            if end - 1 + lateness <= watermark:
                continue
            accepted = True
            scope = (record["k"], start, end)
            contents.setdefault(scope, []).append(record["v"])
            if end - 1 <= watermark:  # already fired: fires again with the update
                fired.add(scope)
                values = contents[scope]
                emitted[(*scope, sum(values), len(values))] += 1
        if not accepted:
            late += 1
        new_watermark = max(watermark, record["ts"] - lag)
        if new_watermark > watermark:
            watermark = new_watermark
            advance(watermark)
    advance(MAX_WATERMARK)
    return emitted, late


def stream_of(data: st.DataObject, max_size: int = 40) -> list[Record]:
    n = data.draw(st.integers(0, max_size), label="n")
    return [
        {
            "k": data.draw(st.sampled_from("abcdefg")),
            "v": data.draw(st.integers(-5, 20)),
            "n": 1,
            "ts": data.draw(st.integers(0, 120)),
        }
        for _ in range(n)
    ]


@pytest.mark.parametrize("parallelism", [1, 3])
@settings(max_examples=25, deadline=None, derandomize=True)
@given(data=st.data())
def test_tumbling_event_time_windows_match_the_reference(parallelism: int, data: st.DataObject) -> None:
    records = stream_of(data)
    size = data.draw(st.sampled_from([1, 7, 10, 25]), label="size")
    lag = data.draw(st.integers(0, 30), label="lag")
    lateness = data.draw(st.sampled_from([0, 0, 5, 20]), label="lateness")
    how = data.draw(st.sampled_from(FUNCTIONS), label="how")
    batch_size = data.draw(st.integers(1, 6), label="batch_size")
    expected, _ = reference(records, size, size, lag, lateness)
    got = run_windows(
        records,
        TumblingEventTimeWindows.of(size),
        how=how,
        lateness=lateness,
        lag=lag,
        parallelism=parallelism,
        batch_size=batch_size,
    )
    assert Counter(got) == expected


@pytest.mark.parametrize("parallelism", [1, 3])
@settings(max_examples=25, deadline=None, derandomize=True)
@given(data=st.data())
def test_sliding_event_time_windows_match_the_reference(parallelism: int, data: st.DataObject) -> None:
    records = stream_of(data)
    slide = data.draw(st.sampled_from([1, 5, 10]), label="slide")
    size = slide * data.draw(st.integers(1, 4), label="slides per window")
    lag = data.draw(st.integers(0, 30), label="lag")
    lateness = data.draw(st.sampled_from([0, 0, 7]), label="lateness")
    how = data.draw(st.sampled_from(FUNCTIONS), label="how")
    expected, _ = reference(records, size, slide, lag, lateness)
    got = run_windows(
        records,
        SlidingEventTimeWindows.of(size, slide),
        how=how,
        lateness=lateness,
        lag=lag,
        parallelism=parallelism,
        batch_size=data.draw(st.integers(1, 6), label="batch_size"),
    )
    assert Counter(got) == expected


def test_current_watermark_is_called_in_window_and_trigger_contexts_and_the_old_form_still_reads() -> None:
    # One form, as a timer service's: current_watermark(). The 0.1 form (a number, no call) reads
    # the same value for a release.
    seen: list[tuple[str, int, int]] = []

    class Reads(ProcessWindowFunction[Record, Any, Any]):
        def process(self, key: Any, context: WindowContext, elements: list[Record], out: Collector) -> None:
            seen.append(("window", context.current_watermark(), context.current_watermark + 0))
            out.collect(key)

    class ReadingTrigger(EventTimeTrigger):
        def on_element(self, element: Any, timestamp: int | None, window: TimeWindow, ctx: Any) -> Any:
            seen.append(("trigger", ctx.current_watermark(), ctx.current_watermark + 0))
            return super().on_element(element, timestamp, window, ctx)

    flow = Flow()
    records = [{"k": 1, "v": 1, "ts": ts} for ts in (5, 15, 25)]
    fired = (
        flow.from_iterable(records, watermarks=WatermarkStrategy.punctuated("ts"))
        .key_by("k")
        .window(TumblingEventTimeWindows.of(10))
        .trigger(ReadingTrigger())
        .process(Reads())
        .collect()
    )
    flow.execute()
    assert fired.values == [1, 1, 1]
    assert seen == [
        ("trigger", MIN_WATERMARK, MIN_WATERMARK),  # before the first mark
        ("trigger", 5, 5),
        ("window", 15, 15),  # [0, 10) fires when the watermark passes 9
        ("trigger", 15, 15),
        ("window", 25, 25),
        ("window", MAX_WATERMARK, MAX_WATERMARK),
    ]


def test_the_reference_itself_on_a_hand_checked_stream() -> None:
    # Guard the reference: size 10, lag 0, lateness 5.
    records = [
        {"k": "a", "v": 1, "n": 1, "ts": 3},
        {"k": "a", "v": 2, "n": 1, "ts": 12},  # watermark 12: [0, 10) fires with 1
        {"k": "a", "v": 4, "n": 1, "ts": 5},  # 9 + 5 > 12: fires again with 1 + 4
        {"k": "a", "v": 8, "n": 1, "ts": 30},  # watermark 30
        {"k": "a", "v": 16, "n": 1, "ts": 6},  # 9 + 5 <= 30: late
    ]
    expected = Counter(
        {("a", 0, 10, 1, 1): 1, ("a", 0, 10, 5, 2): 1, ("a", 10, 20, 2, 1): 1, ("a", 30, 40, 8, 1): 1}
    )
    assert reference(records, 10, 10, 0, 5) == (expected, 1)
    for how in FUNCTIONS:
        assert (
            Counter(run_windows(records, TumblingEventTimeWindows.of(10), how=how, lateness=5)) == expected
        )


# -- assigners ------------------------------------------------------------------------------------


def test_assigners_align_windows_to_the_epoch_plus_offset() -> None:
    assert TumblingEventTimeWindows.of(10).assign(None, 23) == [TimeWindow(20, 30)]
    assert TumblingEventTimeWindows.of(10, offset=3).assign(None, 22) == [TimeWindow(13, 23)]
    assert TumblingEventTimeWindows.of(10).assign(None, -1) == [TimeWindow(-10, 0)]
    assert SlidingEventTimeWindows.of(10, 5).assign(None, 23) == [TimeWindow(20, 30), TimeWindow(15, 25)]
    assert SlidingEventTimeWindows.of(10, 5, offset=1).assign(None, 23) == [
        TimeWindow(21, 31),
        TimeWindow(16, 26),
    ]
    assert TumblingProcessingTimeWindows.of(100).assign(None, 1_050) == [TimeWindow(1_000, 1_100)]
    assert len(SlidingProcessingTimeWindows.of(100, 25).assign(None, 1_050)) == 4
    assert TimeWindow(20, 30).max_timestamp == 29
    assert {TimeWindow(1, 2): 0} == {TimeWindow(1, 2): 0}
    assert TumblingEventTimeWindows.of(10).is_event_time
    assert not TumblingProcessingTimeWindows.of(10).is_event_time


@pytest.mark.parametrize(
    "make",
    [
        lambda: TumblingEventTimeWindows.of(0),
        lambda: TumblingEventTimeWindows.of(10, offset=10),
        lambda: SlidingEventTimeWindows.of(10, 0),
        lambda: CountTrigger.of(0),
    ],
)
def test_bad_window_parameters_are_rejected(make: Callable[[], object]) -> None:
    with pytest.raises(PlanError):
        make()


def test_window_and_allowed_lateness_reject_bad_arguments() -> None:
    keyed = Flow().from_iterable([1]).key_by(lambda n: n)
    with pytest.raises(PlanError):
        keyed.window(CountTrigger.of(1))  # type: ignore[arg-type]
    with pytest.raises(PlanError):
        keyed.window(TumblingEventTimeWindows.of(10)).allowed_lateness(-1)


# -- triggers ---------------------------------------------------------------------------------------


class Elements(ProcessWindowFunction[Any, tuple[Any, list[Any]], Any]):
    def process(self, key: Any, context: WindowContext, elements: list[Any], out: Collector) -> None:
        out.collect((key, [e[1] for e in elements]))


def count_windows(trigger: Any, parallelism: int) -> list[tuple[Any, list[Any]]]:
    records = [("a", i) for i in range(7)] + [("b", i) for i in range(4)]
    flow = Flow(parallelism=parallelism, batch_size=2)
    out = (
        flow.from_iterable(records)
        .key_by(lambda r: r[0])
        .window(GlobalWindows.create())
        .trigger(trigger)
        .process(Elements())
        .collect()
    )
    flow.execute()
    return sorted(out.values)


@pytest.mark.parametrize("parallelism", [1, 3])
def test_count_trigger_fires_every_n_records_of_a_key_and_keeps_the_contents(parallelism: int) -> None:
    assert count_windows(CountTrigger.of(3), parallelism) == [
        ("a", [0, 1, 2]),
        ("a", [0, 1, 2, 3, 4, 5]),
        ("b", [0, 1, 2]),
    ]


@pytest.mark.parametrize("parallelism", [1, 3])
def test_purging_trigger_drops_the_contents_after_each_firing(parallelism: int) -> None:
    assert count_windows(PurgingTrigger.of(CountTrigger.of(3)), parallelism) == [
        ("a", [0, 1, 2]),
        ("a", [3, 4, 5]),
        ("b", [0, 1, 2]),
    ]


def test_global_windows_never_fire_by_default() -> None:
    flow = Flow()
    out = (
        flow.from_iterable([1, 2]).key_by(lambda n: n).window(GlobalWindows.create()).reduce(max).collect()
    )
    flow.execute()
    assert out.values == []


def test_a_count_trigger_on_event_time_windows_fires_early_and_at_the_end() -> None:
    records = [{"k": "a", "v": v, "n": 1, "ts": ts} for v, ts in [(1, 1), (2, 2), (4, 3), (8, 20)]]
    flow = Flow(batch_size=2)
    out = (
        flow.from_iterable(records, watermarks=WatermarkStrategy.punctuated("ts"))
        .key_by("k")
        .window(TumblingEventTimeWindows.of(10))
        .trigger(CountTrigger.of(2))
        .aggregate(SumCount())
        .collect()
    )
    flow.execute()
    # The count trigger replaces the event-time trigger: [0, 10) fires after 2 records only.
    assert out.values == [(3, 2)]


# -- the operator directly: timestamps, cleanup, lateness counts, processing time -------------------


def operator(
    assigner: WindowAssigner,
    lateness: int = 0,
    clock: ManualClock | None = None,
    trigger: Trigger | None = None,
) -> WindowOperator:
    op = WindowOperator("w", lambda r: r["k"], assigner, AggregateContents(SumCount()), trigger, lateness)
    op.open(operator_context("w", clock=clock or ManualClock(0)))
    return op


def rec(k: str, v: int) -> Record:
    return {"k": k, "v": v}


def test_results_are_stamped_with_the_window_max_timestamp_and_state_is_cleaned_up() -> None:
    op = operator(SlidingEventTimeWindows.of(10, 5), lateness=4)
    out = op.process(Batch([rec("a", 1), rec("b", 2), rec("a", 4)], [3, 7, 12], [(2, 9)]))
    # Watermark 9 passed [-5, 5) (a:1) and [0, 10) (a:1, b:2).
    assert sorted(zip(out.values, out.timestamps or [], strict=True)) == [
        ((1, 1), 4),
        ((1, 1), 9),
        ((2, 1), 9),
    ]
    assert out.marks == [(3, 9)]
    assert op.state_size() > 0
    # Late within the lateness (9 + 4 > 10): [0, 10) fires again with the update; [5, 15) is on time.
    out = op.process(Batch([rec("a", 8)], [8], [(1, 10)]))
    assert list(zip(out.values, out.timestamps or [], strict=True)) == [((9, 2), 9)]
    # Watermark 13 cleans up [0, 10) (13 = 9 + 4). ts 0 then has no window left: late, dropped.
    # ts 6 is too late for [0, 10) but on time for [5, 15): accepted, not counted.
    out = op.process(Batch([rec("a", 16), rec("b", 6)], [0, 6], [(0, 13)]))
    assert out.values == []
    assert op.late_records == 1
    out = op.process(Batch([], [], [(0, MAX_WATERMARK)]))
    assert sorted(zip(out.values, out.timestamps or [], strict=True)) == [
        ((4, 1), 19),
        ((8, 2), 14),
        ((12, 2), 14),
    ]
    assert op.state_size() == 0
    assert len(op.event_timers) == 0
    assert op.windows == {}
    assert op.trigger_state == {}


def test_processing_time_windows_on_the_operator_use_the_clock() -> None:
    clock = ManualClock(1_000)
    op = operator(TumblingProcessingTimeWindows.of(100), clock=clock)
    assert op.process(Batch([rec("a", 1), rec("b", 2)], None)).values == []
    clock.set(1_050)
    op.process(Batch([rec("a", 4)], None))
    assert op.next_processing_time() == 1_099
    assert op.on_processing_time(1_098) is None
    out = op.on_processing_time(1_099)
    assert out is not None
    assert sorted(zip(out.values, out.timestamps or [], strict=True)) == [((2, 1), 1_099), ((5, 2), 1_099)]
    assert op.state_size() == 0
    assert op.next_processing_time() is None
    assert op.late_records == 0


# -- processing time in a running flow --------------------------------------------------------------


class Recorder:
    """A sink callback that keeps what it gets and lets a test wait until it has ``n`` items."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = asyncio.Event()

    def __call__(self, item: Any) -> None:
        self.items.append(item)
        self._changed.set()

    async def wait_for(self, n: int, running: asyncio.Task[None]) -> list[Any]:
        async with asyncio.timeout(10):  # a guard against a hang, not a synchronisation
            while len(self.items) < n:
                self._changed.clear()
                changed = asyncio.ensure_future(self._changed.wait())
                await asyncio.wait((changed, running), return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                if running.done() and len(self.items) < n:
                    running.result()
                    raise AssertionError(f"the flow ended with {self.items}")
        return self.items


class Totals(ProcessWindowFunction[Record, tuple[Any, int, list[int]], Any]):
    def process(self, key: Any, context: WindowContext, elements: list[Record], out: Collector) -> None:
        out.collect((key, context.window.start, sorted(e["v"] for e in elements)))


async def test_processing_time_windows_fire_when_the_clock_passes_their_end(parallelism: int) -> None:
    clock = ManualClock(1_000)
    source = PushSource()
    recorder = Recorder()
    flow = Flow(parallelism=parallelism, clock=clock)
    (
        flow.from_source(source)
        .key_by(lambda r: r["k"])
        .window(TumblingProcessingTimeWindows.of(100))
        .process(Totals())
        .sink_to_callback(recorder)
    )
    running = asyncio.create_task(flow.run())
    # While records are sent the clock stays inside one window, so wherever they are processed,
    # they land in that window; then the clock moves to the window's last millisecond.
    for record in (rec("a", 1), rec("a", 2), rec("b", 3)):
        await source.send(record)
    clock.set(1_099)
    assert sorted(await recorder.wait_for(2, running)) == [("a", 1_000, [1, 2]), ("b", 1_000, [3])]
    clock.set(1_150)
    for record in (rec("a", 4), rec("c", 5)):
        await source.send(record)
    clock.set(1_199)  # still in [1_100, 1_200), and its last millisecond: it fires
    items = await recorder.wait_for(4, running)
    assert sorted(items[2:]) == [("a", 1_100, [4]), ("c", 1_100, [5])]
    source.close()
    await running
    assert len(recorder.items) == 4


# -- Q2 of BENCHMARK.md through the window API --------------------------------------------------------


class CountCents(AggregateFunction[Record, tuple[int, int], tuple[int, int]]):
    def create_accumulator(self) -> tuple[int, int]:
        return (0, 0)

    def add(self, value: Record, accumulator: tuple[int, int]) -> tuple[int, int]:
        return (accumulator[0] + 1, accumulator[1] + round(value["amount"] * 100))

    def get_result(self, accumulator: tuple[int, int]) -> tuple[int, int]:
        return accumulator


class Q2Window(ProcessWindowFunction[tuple[int, int], Record, Any]):
    def process(self, key: Any, context: WindowContext, elements: list[Any], out: Collector) -> None:
        count, cents = elements[0]
        window = context.window
        out.collect(
            {
                "card_id": key,
                "window_start": window.start,
                "window_end": window.end,
                "count": count,
                "sum_cents": cents,
            }
        )


@pytest.mark.parametrize("seed", [3, 17])
@pytest.mark.parametrize(("parallelism", "batch_size"), [(1, 1024), (1, 7), (3, 64)])
def test_q2_with_the_window_api_matches_the_baseline(
    tmp_path: Path, seed: int, parallelism: int, batch_size: int
) -> None:
    data = tmp_path / "tx.jsonl"
    write(5_000, seed, str(data), cards=200)
    expected = tmp_path / "baseline.jsonl"
    baseline.run("q2", str(data), str(expected))
    flow = Flow(parallelism=parallelism, batch_size=batch_size)
    late_tag: OutputTag[Record] = OutputTag("late")
    windows = (
        flow.from_json_lines(data, watermarks=WatermarkStrategy.punctuated("ts", lag_ms=2_000))
        .key_by("card_id")
        .window(TumblingEventTimeWindows.of(10_000))
        .side_output_late_data(late_tag)
        .aggregate(CountCents(), Q2Window())
    )
    out = windows.collect()
    late_records = windows.get_side_output(late_tag).collect()
    flow.execute()
    late = len(late_records.values)
    assert late > 0  # the data has late records: the comparison below covers them
    actual = tmp_path / "windows.jsonl"
    lines = [orjson.dumps(value) for value in out.values] + [orjson.dumps({"late": late})]
    actual.write_bytes(b"\n".join(lines) + b"\n")
    assert compare("q2", str(expected), str(actual)) is None


@pytest.mark.parametrize("trigger", [None, CountTrigger.of(2)], ids=["default", "count"])
def test_a_snapshot_restored_on_two_instances_gives_the_same_results(trigger: Trigger | None) -> None:
    def make(index: int = 0, parallelism: int = 1) -> WindowOperator:
        op = operator(SlidingEventTimeWindows.of(20, 10), lateness=5, trigger=copy.deepcopy(trigger))
        op.open(operator_context("w", index=index, parallelism=parallelism))
        return op

    whole = make()
    records = [rec(k, v) for v, k in enumerate("abcdefgabcabc")]
    whole.process(Batch(records, [(i * 7) % 40 for i in range(len(records))], [(6, 15)]))
    groups = whole.snapshot()
    kept = copy.deepcopy(groups)
    size_before = whole.state_size()
    assert size_before > 0
    rest = [rec("a", 1), rec("b", 2), rec("g", 3), rec("c", 4), rec("a", 5)]
    rest_ts = [31, 25, 12, 16, 29]
    expected = whole.process(Batch(rest, rest_ts, [(len(rest), MAX_WATERMARK)]))
    assert groups == kept  # later updates do not reach the snapshot

    got: Counter[Any] = Counter()
    restored = 0
    max_parallelism = whole.context.max_parallelism
    for index in range(2):
        half = make(index, 2)
        half.restore(groups, half.context.key_groups)
        half.watermark = 15  # not in the snapshot: the inputs bring it back
        restored += half.state_size()
        mine = [
            (r, ts)
            for r, ts in zip(rest, rest_ts, strict=True)
            if operator_index(key_group(r["k"], max_parallelism), max_parallelism, 2) == index
        ]
        out = half.process(
            Batch([r for r, _ in mine], [ts for _, ts in mine], [(len(mine), MAX_WATERMARK)])
        )
        got.update(zip(out.values, out.timestamps or [], strict=True))
    assert restored == size_before
    assert got == Counter(zip(expected.values, expected.timestamps or [], strict=True))
    assert expected.values


@settings(max_examples=60, deadline=None, derandomize=True)
@given(data=st.data())
def test_the_operator_counts_late_records_as_the_reference_does(data: st.DataObject) -> None:
    records = stream_of(data)
    slide = data.draw(st.sampled_from([5, 10]), label="slide")
    size = slide * data.draw(st.integers(1, 3), label="slides per window")
    lag = data.draw(st.integers(0, 30), label="lag")
    lateness = data.draw(st.sampled_from([0, 5, 20]), label="lateness")
    expected, late = reference(records, size, slide, lag, lateness)
    op = operator(SlidingEventTimeWindows.of(size, slide), lateness=lateness)
    # The punctuated watermark by hand: a mark after each record that moves it, batches cut anywhere.
    got: Counter[Any] = Counter()
    position = 0
    watermark = MIN_WATERMARK
    while position < len(records):
        chunk = records[position : position + data.draw(st.integers(1, 5), label="batch")]
        marks: list[tuple[int, int]] = []
        for index, record in enumerate(chunk):
            if record["ts"] - lag > watermark:
                watermark = record["ts"] - lag
                marks.append((index + 1, watermark))
        out = op.process(Batch(chunk, [r["ts"] for r in chunk], marks))
        got.update(zip(out.values, out.timestamps or [], strict=True))
        position += len(chunk)
    out = op.process(Batch([], [], [(0, MAX_WATERMARK)]))
    got.update(zip(out.values, out.timestamps or [], strict=True))
    assert op.late_records == late
    # This operator emits (sum, count) stamped with the window's max timestamp.
    projected: Counter[Any] = Counter()
    for (_, _, end, total, count), n in expected.items():
        projected[((total, count), end - 1)] += n
    assert got == projected
    assert op.state_size() == 0
    assert len(op.event_timers) == 0


# -- window_all -----------------------------------------------------------------------------------------


async def test_window_all_counts_the_whole_stream_per_window(parallelism: int) -> None:
    records = [{"k": f"k{i % 5}", "ts": i} for i in range(100)]

    class Whole(ProcessWindowFunction[Record, tuple[Any, int, int], Any]):
        def process(self, key: Any, context: WindowContext, elements: list[Any], out: Collector) -> None:
            out.collect((key, context.window.start, len(elements)))

    flow = Flow(parallelism=parallelism, batch_size=16)
    out = (
        flow.from_iterable(records, watermarks=WatermarkStrategy.punctuated("ts"))
        .window_all(TumblingEventTimeWindows.of(25))
        .process(Whole())
        .collect()
    )
    lines = flow.plan().describe().splitlines()
    (window_chain,) = [line for line in lines if line.split("]")[0].find("window") >= 0]
    assert "] x1" in window_chain  # one instance, whatever the flow's parallelism
    await flow.run()
    assert sorted(out.values) == [(None, start, 25) for start in (0, 25, 50, 75)]


def test_window_all_refuses_more_than_one_instance() -> None:
    stream = Flow().from_iterable([1]).window_all(TumblingEventTimeWindows.of(10))
    with pytest.raises(PlanError, match="parallelism is 1"):
        stream.reduce(lambda a, b: a + b, parallelism=2)


# -- continuous (early) firing --------------------------------------------------------------------------


async def test_continuous_trigger_fires_early_results_then_the_final_one(parallelism: int) -> None:
    # One key, one 100 ms window, a record every 10 ms: early sums every 30 ms of event time.
    records = [{"k": "a", "ts": ts, "v": 1} for ts in range(0, 100, 10)]
    flow = Flow(parallelism=parallelism, batch_size=4)
    out = (
        flow.from_iterable(records, watermarks=WatermarkStrategy.punctuated("ts"))
        .key_by("k")
        .window(TumblingEventTimeWindows.of(100))
        .trigger(ContinuousEventTimeTrigger.of(30))
        .reduce(lambda a, b: {"k": a["k"], "ts": b["ts"], "v": a["v"] + b["v"]})
        .map(lambda r: r["v"])
        .collect()
    )
    await flow.run()
    # Fired when the watermark reached 30, 60 and 90 (records with ts <= watermark are in), then at
    # the window's end, 99.
    assert out.values == [4, 7, 10, 10]


def test_continuous_trigger_needs_a_positive_interval() -> None:
    with pytest.raises(PlanError):
        ContinuousEventTimeTrigger.of(0)
