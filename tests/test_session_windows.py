"""Session windows: merging assigners, merged contents, merged trigger state, lateness, cleanup.

Each test names one behaviour of Flink's session windows and checks it on hand-computed streams;
``tests/test_window_properties.py`` checks random streams against a brute-force reference.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from typing import Any

import pytest

from actorflow import (
    MAX_WATERMARK,
    AggregateFunction,
    Collector,
    ContinuousEventTimeTrigger,
    CountTrigger,
    EventTimeSessionWindows,
    Flow,
    ManualClock,
    MergingWindowAssigner,
    OutputTag,
    PlanError,
    ProcessingTimeSessionWindows,
    ProcessWindowFunction,
    PurgingTrigger,
    StateError,
    TimeWindow,
    Trigger,
    TriggerContext,
    TriggerResult,
    WatermarkStrategy,
    WindowAssigner,
    WindowContext,
)
from actorflow.operators.windows.assigners import merge_time_windows
from actorflow.operators.windows.functions import EMPTY, AggregateContents, ProcessContents, ReduceContents
from actorflow.operators.windows.operator import WindowOperator
from actorflow.runtime.messages import Batch
from actorflow.state.keygroups import key_group, operator_index
from tests.state_backends import operator_context

Record = dict[str, Any]


def rec(k: str, v: int, ts: int = 0, gap: int = 10) -> Record:
    return {"k": k, "v": v, "ts": ts, "gap": gap}


class Elements(ProcessWindowFunction[Record, tuple[Any, int, int, list[int]], Any]):
    """(key, start, end, values in the order the window holds them)."""

    def process(self, key: Any, context: WindowContext, elements: list[Record], out: Collector) -> None:
        out.collect((key, context.window.start, context.window.end, [e["v"] for e in elements]))


class Sum(AggregateFunction[Record, int, int]):
    def create_accumulator(self) -> int:
        return 0

    def add(self, value: Record, accumulator: int) -> int:
        return accumulator + value["v"]

    def get_result(self, accumulator: int) -> int:
        return accumulator

    def merge(self, a: int, b: int) -> int:
        return a + b


class SumWithoutMerge(AggregateFunction[Record, int, int]):
    def create_accumulator(self) -> int:
        return 0

    def add(self, value: Record, accumulator: int) -> int:
        return accumulator + value["v"]

    def get_result(self, accumulator: int) -> int:
        return accumulator


class WithWindow(ProcessWindowFunction[int, tuple[Any, int, int, int], Any]):
    def process(self, key: Any, context: WindowContext, elements: list[int], out: Collector) -> None:
        out.collect((key, context.window.start, context.window.end, elements[0]))


def add_v(a: Record, b: Record) -> Record:
    return {**a, "v": a["v"] + b["v"]}


def run_sessions(
    records: list[Record],
    assigner: WindowAssigner,
    how: str,
    *,
    lag: int = 0,
    lateness: int = 0,
    trigger: Trigger | None = None,
    parallelism: int = 1,
    batch_size: int = 2,
) -> list[Any]:
    flow = Flow(parallelism=parallelism, batch_size=batch_size)
    windowed = (
        flow.from_iterable(records, watermarks=WatermarkStrategy.punctuated("ts", lag_ms=lag))
        .key_by("k")
        .window(assigner)
        .allowed_lateness(lateness)
    )
    if trigger is not None:
        windowed = windowed.trigger(trigger)
    if how == "process":
        stream = windowed.process(Elements())
    elif how == "aggregate":
        stream = windowed.aggregate(Sum(), WithWindow())
    else:
        stream = windowed.reduce(add_v).map(lambda r: (r["k"], r["v"]))
    out = stream.collect()
    flow.execute()
    return list(out.values)


# -- the assigners ----------------------------------------------------------------------------------


def test_a_record_opens_a_window_of_the_gap_from_its_timestamp() -> None:
    assert EventTimeSessionWindows.with_gap(10).assign(None, 7) == [TimeWindow(7, 17)]
    dynamic = EventTimeSessionWindows.with_dynamic_gap(lambda r: r["gap"])
    assert dynamic.assign(rec("a", 0, gap=3), 7) == [TimeWindow(7, 10)]
    assert ProcessingTimeSessionWindows.with_gap(5).assign(None, 1_000) == [TimeWindow(1_000, 1_005)]
    assert EventTimeSessionWindows.with_gap(10).is_event_time
    assert not ProcessingTimeSessionWindows.with_gap(10).is_event_time
    assert isinstance(ProcessingTimeSessionWindows.with_dynamic_gap(len), MergingWindowAssigner)
    assert repr(EventTimeSessionWindows.with_gap(10)) == "EventTimeSessionWindows.with_gap(10)"


@pytest.mark.parametrize(
    "make",
    [
        lambda: EventTimeSessionWindows.with_gap(0),
        lambda: ProcessingTimeSessionWindows.with_gap(-5),
    ],
)
def test_a_gap_must_be_positive(make: Callable[[], object]) -> None:
    with pytest.raises(PlanError, match="gap must be positive"):
        make()


def test_a_dynamic_gap_that_is_not_positive_fails_the_job() -> None:
    records = [rec("a", 1, ts=1, gap=5), rec("a", 2, ts=2, gap=0)]
    with pytest.raises(ValueError, match="gap must be positive, got 0"):
        run_sessions(records, EventTimeSessionWindows.with_dynamic_gap(lambda r: r["gap"]), "process")


def test_windows_that_overlap_or_touch_merge_and_others_do_not() -> None:
    windows = [TimeWindow(20, 30), TimeWindow(0, 10), TimeWindow(10, 15), TimeWindow(31, 40)]
    assert merge_time_windows(windows) == [
        (TimeWindow(0, 15), [TimeWindow(0, 10), TimeWindow(10, 15)]),
    ]
    # A window inside another merges into it; equal windows merge too.
    assert merge_time_windows([TimeWindow(0, 10), TimeWindow(2, 5), TimeWindow(2, 5)]) == [
        (TimeWindow(0, 10), [TimeWindow(0, 10), TimeWindow(2, 5), TimeWindow(2, 5)]),
    ]
    # A chain of windows that each touch the next becomes one.
    assert merge_time_windows([TimeWindow(0, 5), TimeWindow(5, 9), TimeWindow(8, 20)]) == [
        (TimeWindow(0, 20), [TimeWindow(0, 5), TimeWindow(5, 9), TimeWindow(8, 20)]),
    ]
    assert merge_time_windows([]) == []


# -- sessions in a flow: every window function merges ------------------------------------------------

SESSIONS = [
    rec("a", 1, ts=0),  # [0, 10)
    rec("b", 100, ts=3),  # b: [3, 13)
    rec("a", 2, ts=25),  # a: [25, 35), a session of its own
    rec("a", 4, ts=12),  # a: [12, 22) touches neither [0, 10) nor [25, 35)
    rec("a", 8, ts=10),  # a: [10, 20) touches [0, 10) and [12, 22): [0, 22)
    rec("a", 16, ts=22),  # a: [22, 32) touches [0, 22) and [25, 35): [0, 35)
    rec("b", 200, ts=50),  # b: [50, 60)
]


@pytest.mark.parametrize("parallelism", [1, 3])
def test_process_window_function_sees_the_elements_of_merged_windows(parallelism: int) -> None:
    got = run_sessions(
        SESSIONS, EventTimeSessionWindows.with_gap(10), "process", lag=100, parallelism=parallelism
    )
    # Merged contents are concatenated earlier window first, the new record last.
    assert sorted(got) == [("a", 0, 35, [1, 4, 8, 2, 16]), ("b", 3, 13, [100]), ("b", 50, 60, [200])]


@pytest.mark.parametrize("parallelism", [1, 3])
def test_aggregate_merges_accumulators_and_reduce_reduces_merged_values(parallelism: int) -> None:
    sessions = EventTimeSessionWindows.with_gap(10)
    got = run_sessions(SESSIONS, sessions, "aggregate", lag=100, parallelism=parallelism)
    assert sorted(got) == [("a", 0, 35, 31), ("b", 3, 13, 100), ("b", 50, 60, 200)]
    got = run_sessions(SESSIONS, sessions, "reduce", lag=100, parallelism=parallelism)
    assert sorted(got) == [("a", 31), ("b", 100), ("b", 200)]


def test_sessions_fire_when_the_watermark_passes_their_end() -> None:
    # Lag 0: a session fires as soon as a later record moves the watermark past its last millisecond.
    records = [rec("a", 1, ts=0), rec("a", 2, ts=5), rec("a", 4, ts=20), rec("a", 8, ts=26)]
    got = run_sessions(records, EventTimeSessionWindows.with_gap(10), "process")
    # ts 20 opens [20, 30), apart from [0, 15), and moves the watermark past 14: [0, 15) fires.
    assert got == [("a", 0, 15, [1, 2]), ("a", 20, 36, [4, 8])]


def test_dynamic_gaps_decide_which_records_share_a_session() -> None:
    records = [rec("a", 1, ts=0, gap=30), rec("a", 2, ts=25, gap=1), rec("a", 4, ts=40, gap=5)]
    got = run_sessions(
        records, EventTimeSessionWindows.with_dynamic_gap(lambda r: r["gap"]), "process", lag=50
    )
    # [0, 30) holds ts 25 ([25, 26) lies inside it); [40, 45) is apart.
    assert got == [("a", 0, 30, [1, 2]), ("a", 40, 45, [4])]


def test_an_aggregate_that_cannot_merge_is_refused_when_the_flow_is_built() -> None:
    windowed = Flow().from_iterable([rec("a", 1)]).key_by("k").window(EventTimeSessionWindows.with_gap(5))
    with pytest.raises(PlanError, match="AggregateFunction needs a merge"):
        windowed.aggregate(SumWithoutMerge())


class EveryRecord(Trigger):
    """A user trigger that never said it can merge."""

    def on_element(
        self, element: Any, timestamp: int | None, window: TimeWindow, ctx: TriggerContext
    ) -> TriggerResult:
        return TriggerResult.FIRE


def test_a_trigger_that_cannot_merge_is_refused_when_the_flow_is_built() -> None:
    windowed = (
        Flow()
        .from_iterable([rec("a", 1)])
        .key_by("k")
        .window(EventTimeSessionWindows.with_gap(5))
        .trigger(PurgingTrigger.of(EveryRecord()))
    )
    with pytest.raises(PlanError, match="cannot merge them"):
        windowed.process(Elements())
    with pytest.raises(PlanError, match="cannot merge them"):
        WindowOperator(
            "w",
            lambda r: r["k"],
            EventTimeSessionWindows.with_gap(5),
            ProcessContents(Elements()),
            EveryRecord(),
        )


# -- triggers merge their state ---------------------------------------------------------------------


def test_count_trigger_adds_the_counts_of_merged_windows() -> None:
    # Count 3: [0, 10) holds 1 record, [20, 30) holds 1; ts 10 merges them into one window with
    # 1 + 1 counted, plus itself: 3, it fires. Then 2 more records do not reach 3 again.
    records = [
        rec("a", 1, ts=0),
        rec("a", 2, ts=20),
        rec("a", 4, ts=10),
        rec("a", 8, ts=12),
        rec("a", 16, ts=13),
    ]
    got = run_sessions(
        records, EventTimeSessionWindows.with_gap(10), "process", trigger=CountTrigger.of(3), lag=100
    )
    assert got == [("a", 0, 30, [1, 2, 4])]


def test_purging_count_trigger_keeps_the_session_in_the_set_after_a_purge() -> None:
    # After a purge the session [0, 16) stays (empty): ts 15 extends it and counts from 0 again.
    records = [rec("a", v, ts=ts) for v, ts in [(1, 0), (2, 5), (4, 6), (8, 15), (16, 20), (32, 21)]]
    trigger = PurgingTrigger.of(CountTrigger.of(3))
    got = run_sessions(records, EventTimeSessionWindows.with_gap(10), "process", trigger=trigger, lag=100)
    assert got == [("a", 0, 16, [1, 2, 4]), ("a", 0, 31, [8, 16, 32])]


def test_continuous_trigger_keeps_the_earliest_early_firing_of_merged_windows() -> None:
    op = session_operator(EventTimeSessionWindows.with_gap(10), trigger=ContinuousEventTimeTrigger.of(10))
    # [0, 10) plans an early firing at 10, [20, 30) one at 30; ts 10 merges both into [0, 30).
    op.process(Batch([rec("a", 1), rec("a", 2)], [0, 20], None))
    op.process(Batch([rec("a", 4)], [10], None))
    merged = ("a", TimeWindow(0, 30))
    assert op.trigger_state == {merged: {"next": 10}}
    assert op.event_timers.snapshot() == [(10, [merged]), (29, [merged])]
    out = op.process(Batch([], [], [(0, 15)]))
    assert list(zip(out.values, out.timestamps or [], strict=True)) == [(7, 29)]  # the early firing


# -- allowed lateness -------------------------------------------------------------------------------


def test_a_late_record_that_merges_into_a_fired_session_fires_it_again() -> None:
    records = [
        rec("a", 1, ts=0),
        rec("a", 2, ts=5),  # [0, 15)
        rec("a", 100, ts=40),  # watermark 40: [0, 15) fired with 3
        rec("a", 4, ts=16),  # [16, 26) touches nothing: late (25 <= 40) but inside the lateness: fires
        rec("a", 8, ts=10),  # [10, 20) merges [0, 15) and [16, 26) into [0, 26): fires with all
        rec("a", 16, ts=100),  # watermark 100: [40, 50) fires; [0, 26) is cleaned up at 25 + 30
        rec("a", 32, ts=20),  # [20, 30) is past the lateness (29 + 30 <= 100): dropped
    ]
    got = run_sessions(records, EventTimeSessionWindows.with_gap(10), "process", lateness=30)
    assert got == [
        ("a", 0, 15, [1, 2]),
        ("a", 16, 26, [4]),
        ("a", 0, 26, [1, 2, 4, 8]),
        ("a", 40, 50, [100]),
        ("a", 100, 110, [16]),
    ]


def test_a_late_record_that_extends_a_fired_session_past_the_watermark_waits_for_it() -> None:
    records = [
        rec("a", 1, ts=0),  # [0, 10)
        rec("a", 2, ts=15),  # watermark 15: [0, 10) fired with 1
        rec("a", 4, ts=8),  # [8, 18) merges [0, 10) and [15, 25): [0, 25) ends after 15: waits
        rec("a", 8, ts=30),  # watermark 30: [0, 25) fires with everything
    ]
    got = run_sessions(records, EventTimeSessionWindows.with_gap(10), "process", lateness=10)
    assert got == [("a", 0, 10, [1]), ("a", 0, 25, [1, 2, 4]), ("a", 30, 40, [8])]


def test_a_late_record_still_joins_a_live_session_it_touches() -> None:
    # Flink merges before checking lateness: [2, 12) is past the watermark (11 <= 20), but it touches
    # [12, 22), which is still open, so the record is not dropped.
    # ts 0's window [0, 10) is late too, and joins [2, 30) the same way.
    records = [rec("a", 1, ts=12), rec("a", 2, ts=20), rec("a", 4, ts=2), rec("a", 8, ts=0)]
    late_tag: OutputTag[Record] = OutputTag("late")
    flow = Flow()
    sessions = (
        flow.from_iterable(records, watermarks=WatermarkStrategy.punctuated("ts"))
        .key_by("k")
        .window(EventTimeSessionWindows.with_gap(10))
        .side_output_late_data(late_tag)
        .process(Elements())
    )
    out = sessions.collect()
    late = sessions.get_side_output(late_tag).collect()
    flow.execute()
    assert out.values == [("a", 0, 30, [1, 2, 4, 8])]
    assert late.values == []


# -- the operator directly: timers, cleanup, processing time, snapshots -------------------------------


def session_operator(
    assigner: WindowAssigner,
    lateness: int = 0,
    clock: ManualClock | None = None,
    trigger: Trigger | None = None,
) -> WindowOperator:
    op = WindowOperator("w", lambda r: r["k"], assigner, AggregateContents(Sum()), trigger, lateness)
    op.open(operator_context("w", clock=clock or ManualClock(0)))
    return op


def test_merged_windows_leave_no_timers_or_state_behind() -> None:
    op = session_operator(EventTimeSessionWindows.with_gap(10), lateness=5, trigger=CountTrigger.of(100))
    records = [rec("a", 1), rec("a", 2), rec("b", 4), rec("a", 8)]
    op.process(Batch(records, [0, 30, 0, 15], None))
    # a: [0, 10) and [30, 40), then [15, 25) merges neither... it touches nothing: three windows.
    assert sorted(op.windows["a"]) == [TimeWindow(0, 10), TimeWindow(15, 25), TimeWindow(30, 40)]
    op.process(Batch([rec("a", 16)], [9], None))  # [9, 19) merges [0, 10) and [15, 25)
    assert sorted(op.windows["a"]) == [TimeWindow(0, 25), TimeWindow(30, 40)]
    assert op.windows["a"][TimeWindow(0, 25)] == 1 + 8 + 16
    assert op.trigger_state[("a", TimeWindow(0, 25))] == {"count": 3}
    assert ("a", TimeWindow(0, 10)) not in op.trigger_state
    # Cleanup timers only for live windows: [0, 25) at 29, [30, 40) at 44, b's [0, 10) at 14.
    assert sorted(op.event_timers.snapshot()) == [
        (14, [("b", TimeWindow(0, 10))]),
        (29, [("a", TimeWindow(0, 25))]),
        (44, [("a", TimeWindow(30, 40))]),
    ]
    out = op.process(Batch([], [], [(0, MAX_WATERMARK)]))
    assert out.values == []  # the count trigger never fired; cleanup drops everything
    assert op.state_size() == 0
    assert len(op.event_timers) == 0


def test_the_default_trigger_moves_its_timer_to_the_merged_window() -> None:
    op = session_operator(EventTimeSessionWindows.with_gap(10))
    op.process(Batch([rec("a", 1), rec("a", 2)], [0, 20], None))
    assert sorted(op.event_timers.snapshot()) == [
        (9, [("a", TimeWindow(0, 10))]),
        (29, [("a", TimeWindow(20, 30))]),
    ]
    op.process(Batch([rec("a", 4)], [10], None))
    assert op.event_timers.snapshot() == [(29, [("a", TimeWindow(0, 30))])]
    out = op.process(Batch([], [], [(0, 28)]))
    assert out.values == []
    out = op.process(Batch([], [], [(0, 29)]))
    assert list(zip(out.values, out.timestamps or [], strict=True)) == [(7, 29)]
    assert op.state_size() == 0


class Extend(MergingWindowAssigner):
    """A broken merging assigner: it merges every window of a key into one that ends at 0."""

    def assign(self, element: Any, timestamp: int) -> list[TimeWindow]:
        return [TimeWindow(timestamp, timestamp + 10)]

    def merge_windows(self, windows: Any) -> list[tuple[TimeWindow, list[TimeWindow]]]:
        windows = list(windows)
        return [(TimeWindow(-100, 0), windows)] if len(windows) > 1 else []

    def default_trigger(self) -> Trigger:
        return EventTimeSessionWindows.with_gap(1).default_trigger()


def test_a_merge_that_would_end_before_the_watermark_is_an_error() -> None:
    op = session_operator(Extend())
    op.process(Batch([rec("a", 1)], [50], [(1, 50)]))
    with pytest.raises(StateError, match="must not make an event-time window end earlier"):
        op.process(Batch([rec("a", 2)], [55], None))


def test_processing_time_sessions_merge_while_records_keep_coming() -> None:
    clock = ManualClock(1_000)
    op = session_operator(ProcessingTimeSessionWindows.with_gap(100), clock=clock)
    op.process(Batch([rec("a", 1), rec("b", 2)], None))
    clock.set(1_080)
    op.process(Batch([rec("a", 4)], None))  # [1_080, 1_180) merges with [1_000, 1_100)
    assert op.next_processing_time() == 1_099  # b's session
    out = op.on_processing_time(1_099)
    assert out is not None and list(zip(out.values, out.timestamps or [], strict=True)) == [(2, 1_099)]
    assert op.on_processing_time(1_178) is None
    out = op.on_processing_time(1_179)
    assert out is not None and list(zip(out.values, out.timestamps or [], strict=True)) == [(5, 1_179)]
    assert op.state_size() == 0
    assert op.next_processing_time() is None


def test_dynamic_processing_time_gaps() -> None:
    clock = ManualClock(0)
    op = session_operator(ProcessingTimeSessionWindows.with_dynamic_gap(lambda r: r["gap"]), clock=clock)
    op.process(Batch([rec("a", 1, gap=50), rec("a", 2, gap=5)], None))
    assert sorted(op.windows["a"]) == [TimeWindow(0, 50)]
    out = op.on_processing_time(49)
    assert out is not None and out.values == [3]


def test_a_session_snapshot_restored_on_two_instances_gives_the_same_results() -> None:
    def make(index: int = 0, parallelism: int = 1) -> WindowOperator:
        op = WindowOperator(
            "w",
            lambda r: r["k"],
            EventTimeSessionWindows.with_gap(10),
            ReduceContents(add_v),
            PurgingTrigger.of(CountTrigger.of(2)),
            20,
        )
        op.open(operator_context("w", index=index, parallelism=parallelism))
        return op

    whole = make()
    records = [rec(k, v) for v, k in enumerate("abcdeabcab")]
    timestamps = [(i * 13) % 50 for i in range(len(records))]
    whole.process(Batch(records, timestamps, [(5, 20)]))
    groups = whole.snapshot()
    # a's [0, 14) was purged: an empty window that stays in the merging set, and in the snapshot.
    assert any(
        contents is EMPTY
        for part in groups.values()
        for windows in part["windows"].values()
        for contents in windows.values()
    )
    kept = copy.deepcopy(groups)
    rest = [rec("a", 100), rec("b", 200), rec("e", 300), rec("c", 400), rec("a", 500)]
    rest_ts = [31, 25, 12, 45, 29]
    expected = whole.process(Batch(rest, rest_ts, [(len(rest), MAX_WATERMARK)]))
    assert groups == kept
    assert expected.values

    got: list[Any] = []
    max_parallelism = whole.context.max_parallelism
    for index in range(2):
        half = make(index, 2)
        half.restore(groups, half.context.key_groups)
        half.watermark = 20
        mine = [
            (r, ts)
            for r, ts in zip(rest, rest_ts, strict=True)
            if operator_index(key_group(r["k"], max_parallelism), max_parallelism, 2) == index
        ]
        out = half.process(
            Batch([r for r, _ in mine], [ts for _, ts in mine], [(len(mine), MAX_WATERMARK)])
        )
        got.extend(zip([v["v"] for v in out.values], out.timestamps or [], strict=True))
    assert sorted(got) == sorted(
        zip([v["v"] for v in expected.values], expected.timestamps or [], strict=True)
    )


def test_checkpoint_state_of_sessions_survives_pickling_and_a_new_parallelism() -> None:
    def make(index: int = 0, parallelism: int = 1) -> WindowOperator:
        op = WindowOperator(
            "w", lambda r: r["k"], EventTimeSessionWindows.with_gap(10), ProcessContents(Elements())
        )
        op.open(operator_context("w", index=index, parallelism=parallelism))
        return op

    empty = make()
    assert empty.snapshot_state() is None
    whole = make()
    records = [rec(k, v) for v, k in enumerate("abcabcab")]
    whole.process(Batch(records, [0, 3, 6, 12, 15, 30, 35, 50], None))
    state = pickle.loads(pickle.dumps(whole.snapshot_state()))
    expected = whole.process(Batch([rec("a", 100)], [20], [(1, MAX_WATERMARK)]))
    got: list[Any] = []
    for index in range(2):
        half = make(index, 2)
        half.restore_state([state])
        max_parallelism = half.context.max_parallelism
        owns_a = operator_index(key_group("a", max_parallelism), max_parallelism, 2) == index
        mine = [rec("a", 100)] if owns_a else []
        out = half.process(Batch(mine, [20] * len(mine), [(len(mine), MAX_WATERMARK)]))
        got.extend(out.values)
    assert sorted(got) == sorted(expected.values)
    assert ("a", 12, 30, [3, 100]) in got  # the restored [12, 22) merged with the new [20, 30)
