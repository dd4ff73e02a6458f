"""Incremental snapshots of keyed operators (``OperatorContext(incremental=True)``).

Each test drives an operator by hand through batches (with watermarks), processing-time firings and
incremental snapshots, then restores a fresh operator from the list of snapshots and checks that it
goes on exactly as an operator that was never interrupted (the same output, in the same order), and
that a snapshot holds the keys that changed since the previous one, no others.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from operator import itemgetter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actorflow import (
    MAX_WATERMARK,
    AggregateFunction,
    BroadcastContext,
    Collector,
    Context,
    CountTrigger,
    EventTimeSessionWindows,
    KeyedBroadcastProcessFunction,
    KeyedCoProcessFunction,
    KeyedProcessFunction,
    ListStateDescriptor,
    ManualClock,
    MapStateDescriptor,
    ProcessingTimeSessionWindows,
    PurgingTrigger,
    ReducingStateDescriptor,
    RuntimeContext,
    SlidingEventTimeWindows,
    StateError,
    StateTtl,
    TimeDomain,
    TumblingEventTimeWindows,
    TumblingProcessingTimeWindows,
    ValueStateDescriptor,
)
from actorflow.operators.base import Operator, OperatorContext
from actorflow.operators.broadcast import KeyedBroadcastProcessOperator
from actorflow.operators.co_process import KeyedCoProcessOperator
from actorflow.operators.joins import LEFT, RIGHT, IntervalJoinFunction, ProcessJoinFunction
from actorflow.operators.process import KeyedProcessOperator
from actorflow.operators.windows.functions import AggregateContents, ReduceContents
from actorflow.operators.windows.operator import WindowOperator
from actorflow.runtime.messages import Batch
from actorflow.time.timers import IndexedTimerQueue, TimerQueue
from tests.state_backends import operator_context

# -- a scenario: steps run on an operator that is never interrupted and on one that is ---------------

#: One step of a scenario: run it on an operator and its clock, return what it emitted.
Step = Callable[[Operator, ManualClock], Any]


class Snap:
    """Take an incremental snapshot (pickled, as a changelog would store it)."""


class Restore:
    """Replace the interrupted operator by a fresh one restored from every snapshot so far."""


def feed(
    values: list[Any], timestamps: list[int] | None = None, marks: Any = None, input: int = -1
) -> Step:
    batch = Batch(values, timestamps, marks)
    if input < 0:
        return lambda op, clock: outcome(op.process(batch))
    return lambda op, clock: outcome(op.process_input(batch, input))


def watermark(mark: int, input: int = -1) -> Step:
    return feed([], [], [(0, mark)], input)


def clock_to(now: int) -> Step:
    """Processing time moves to ``now``: the due processing-time timers fire."""

    def step(op: Operator, clock: ManualClock) -> Any:
        clock.set(now)
        return outcome(op.on_processing_time(now))

    return step


def outcome(batch: Batch | None) -> Any:
    return None if batch is None else (batch.values, batch.timestamps, batch.marks)


def pickled(state: Any) -> Any:
    return pickle.loads(pickle.dumps(state))


def resumes_exactly(make: Callable[[ManualClock], Operator], steps: list[Any]) -> list[dict[Any, Any]]:
    """Run ``steps`` on an operator never interrupted and on one snapshotted at every :class:`Snap`
    and replaced at every :class:`Restore` by one restored from all snapshots so far; assert every
    step after a restore emits the same on both. Return the snapshots' changes."""
    steady_clock, clock = ManualClock(0), ManualClock(0)
    steady, op = make(steady_clock), make(clock)
    snapshots: list[Any] = []
    restored = False
    emitted_after = 0
    for step in steps:
        if step is Snap:
            snapshots.append(pickled(op.snapshot_state()))
            steady.snapshot_state()  # taking snapshots changes nothing
        elif step is Restore:
            clock = ManualClock(clock.now())
            op = make(clock)
            op.restore_state(pickled(snapshots))
            restored = True
        else:
            expected = step(steady, steady_clock)
            got = step(op, clock)
            if restored:
                assert got == expected
                emitted_after += len(got[0]) if got else 0
    assert restored and emitted_after, "the scenario checks nothing"
    return [snapshot["changes"] for snapshot in snapshots]


def changes_of(op: Operator) -> dict[Any, Any]:
    """The changes of an incremental snapshot of ``op``, taken now."""
    state = op.snapshot_state()
    assert state is not None
    changes: dict[Any, Any] = state["changes"]
    return changes


def context(name: str, clock: ManualClock, *, incremental: bool = True) -> OperatorContext:
    return operator_context(name, clock=clock, checkpointing=True, incremental=incremental)


# -- keyed process functions: every kind of state, both kinds of timers, a cleared key ---------------


class Everything(KeyedProcessFunction[tuple[str, int], Any]):
    """Value, list, map and reducing state; an event-time timer per record and a processing-time
    timer per third record; a negative value clears the key (its state and its timers)."""

    def open(self, ctx: RuntimeContext) -> None:
        self.count = ctx.get_state(ValueStateDescriptor[int]("count", default=0))
        self.seen = ctx.get_list_state(ListStateDescriptor[int]("seen"))
        self.by_parity = ctx.get_map_state(MapStateDescriptor("by_parity"))
        self.total = ctx.get_reducing_state(ReducingStateDescriptor[int]("total", lambda a, b: a + b))
        self.timers = ctx.get_list_state(ListStateDescriptor[tuple[str, int]]("timers"))

    def process_element(self, value: tuple[str, int], ctx: Context, out: Collector) -> None:
        timers = ctx.timer_service()
        v = value[1]
        if v < 0:
            for domain, time in self.timers.get():
                if domain == "event":
                    timers.delete_event_time_timer(time)
                else:
                    timers.delete_processing_time_timer(time)
            for state in (self.count, self.seen, self.by_parity, self.total, self.timers):
                state.clear()
            out.collect((ctx.current_key, "cleared"))
            return
        self.count.update(self.count.value() + 1)
        self.seen.add(v)
        self.by_parity.put(v % 2, v)
        self.total.add(v)
        assert ctx.timestamp is not None
        timers.register_event_time_timer(ctx.timestamp + 5)
        self.timers.add(("event", ctx.timestamp + 5))
        if v % 3 == 0:
            timers.register_processing_time_timer(timers.current_processing_time() + 10)
            self.timers.add(("processing", timers.current_processing_time() + 10))
        out.collect((ctx.current_key, self.count.value(), self.total.get()))

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        self.timers.update(t for t in self.timers.get() if t[1] != timestamp)
        seen = self.seen.get()
        self.seen.update(seen[-2:])
        out.collect((ctx.current_key, ctx.time_domain, timestamp, seen, sorted(self.by_parity.items())))


def keyed(
    function: Callable[[], KeyedProcessFunction[Any, Any]], *, incremental: bool = True
) -> Callable[[ManualClock], KeyedProcessOperator]:
    """Operators of a fresh ``function()`` each (as deploy copies a function per instance)."""

    def make(clock: ManualClock) -> KeyedProcessOperator:
        op = KeyedProcessOperator("p", function(), itemgetter(0))
        op.open(context("p", clock, incremental=incremental))
        return op

    return make


def test_a_keyed_process_function_resumes_from_incremental_snapshots() -> None:
    changes = resumes_exactly(
        keyed(Everything),
        [
            feed([("a", 1), ("b", 3), ("a", 2), ("c", 6)], [1, 2, 3, 4], [(2, 1), (4, 3)]),
            clock_to(5),
            Snap,
            feed([("b", 4), ("d", 9)], [5, 7], [(1, 5)]),  # a's timer at 6 does not fire yet
            clock_to(12),  # b's and c's processing-time timers (at 10)
            Snap,
            feed([("c", -1), ("e", 12)], [8, 9], [(2, 8)]),  # c is cleared; a's timers fire
            Snap,
            Restore,
            feed([("a", 5), ("e", 3), ("b", 7)], [10, 11, 12], [(0, 8), (2, 10)]),
            clock_to(30),
            feed([("d", 2)], [14], [(1, MAX_WATERMARK)]),
        ],
    )
    first, second, third = changes
    assert sorted(first) == ["a", "b", "c"]
    assert first["b"] is not None and first["b"]["state"]["count"] == 1
    assert [time for time, _ in first["c"]["processing"]] == [10]
    # b (a record, a processing-time timer), c (a processing-time timer) and d (a record).
    assert sorted(second) == ["b", "c", "d"]
    # a (its event-time timers at 6 and 8 fired), c (cleared) and e (a record); b's timer at 7 fired.
    assert sorted(third) == ["a", "b", "c", "e"]
    assert third["c"] is None  # nothing left: a tombstone
    a = third["a"]
    assert a is not None and a["event"] == [] and a["state"]["seen"] == [1, 2]


def test_a_snapshot_holds_only_the_keys_that_changed() -> None:
    op = keyed(Everything)(ManualClock(0))
    keys = [f"k{n}" for n in range(1_000)]
    op.process(Batch([(key, 1) for key in keys], list(range(1_000)), [(1_000, -1)]))
    assert len(changes_of(op)) == 1_000
    assert op.snapshot_state() == {"changes": {}}
    op.process(Batch([("k5", 2), ("k7", 2), ("k5", 4), ("k900", 2)], [1_000] * 4, [(4, 0)]))
    changes = changes_of(op)
    assert sorted(changes) == ["k5", "k7", "k900"]
    assert changes["k5"]["state"]["seen"] == [1, 2, 4]


def test_timers_fired_by_a_watermark_alone_mark_their_keys() -> None:
    op = keyed(Everything)(ManualClock(0))
    op.process(Batch([(f"k{n}", 1) for n in range(1_000)], list(range(1_000)), None))
    op.snapshot_state()
    op.process(Batch([], [], [(0, 6)]))  # the timers at 5 and 6: k0 and k1
    assert sorted(changes_of(op)) == ["k0", "k1"]


def test_full_snapshots_are_unchanged_without_incremental() -> None:
    op = keyed(Everything, incremental=False)(ManualClock(0))
    assert not isinstance(op.event_timers, IndexedTimerQueue) and op.changed_keys is None
    op.process(Batch([("a", 3)], [1], [(1, 0)]))
    state = op.snapshot_state()
    assert sorted(state) == ["event", "key_groups", "processing", "state"]
    # A non-incremental operator takes incremental changes too (a task moving to checkpoints).
    source = keyed(Everything)(ManualClock(0))
    source.process(Batch([("a", 3)], [1], [(1, 0)]))
    restored = keyed(Everything, incremental=False)(ManualClock(0))
    restored.restore_state([pickled(source.snapshot_state())])
    assert restored.snapshot_state() == state


def test_a_restore_from_full_snapshots_marks_every_key_and_mixing_kinds_is_refused() -> None:
    full = keyed(Everything, incremental=False)(ManualClock(0))
    full.process(Batch([("a", 1), ("b", 3)], [1, 2], None))
    full_state = pickled(full.snapshot_state())
    op = keyed(Everything)(ManualClock(0))
    op.restore_state([full_state])
    changes = changes_of(op)
    assert sorted(changes) == ["a", "b"]
    assert op.snapshot_state() == {"changes": {}}
    with pytest.raises(StateError, match="not both"):
        keyed(Everything)(ManualClock(0)).restore_state([full_state, {"changes": changes}])


class Remember(KeyedProcessFunction[tuple[str, int], Any]):
    def open(self, ctx: RuntimeContext) -> None:
        self.last = ctx.get_state(ValueStateDescriptor[int]("last", ttl=StateTtl(100)))

    def process_element(self, value: tuple[str, int], ctx: Context, out: Collector) -> None:
        out.collect((ctx.current_key, self.last.value()))
        self.last.update(value[1])


def ttl_entry(last: tuple[int, int]) -> dict[str, Any]:
    return {"state": {"last": last}, "event": [], "processing": []}


def test_a_ttl_entry_carries_its_expiry_and_one_expired_at_the_snapshot_is_a_tombstone() -> None:
    clock = ManualClock(0)
    op = keyed(Remember)(clock)
    op.process(Batch([("a", 1), ("b", 2)]))
    first = pickled(op.snapshot_state())
    assert first == {"changes": {"a": ttl_entry((1, 100)), "b": ttl_entry((2, 100))}}
    clock.set(50)
    op.process(Batch([("b", 3)]))
    second = pickled(op.snapshot_state())
    assert second == {"changes": {"b": ttl_entry((3, 150))}}  # a expires untouched: not in it
    # The expiry survives the restore: b's value is there until 150, then gone.
    restored = keyed(Remember)(clock)
    restored.restore_state([first, second])
    clock.set(149)
    assert restored.process(Batch([("b", 4)])).values == [("b", 3)]
    clock.set(400)
    assert restored.process(Batch([("b", 5), ("a", 6)])).values == [("b", None), ("a", None)]
    clock.set(600)  # both written at 400: expired at 500, before this snapshot
    assert changes_of(restored) == {"a": None, "b": None}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("abcde"), st.integers(-1, 9), st.integers(0, 4)), min_size=1, max_size=40
    ),
    st.lists(st.integers(0, 40), max_size=6),
    st.integers(0, 40),
)
def test_any_snapshots_and_any_restore_point_resume_exactly(
    records: list[tuple[str, int, int]], snap_at: list[int], restore_at: int
) -> None:
    """Records in batches of three with a watermark after each batch (event time rises by the third
    field), the clock moving with the records; snapshots and a restore anywhere between batches."""
    steps: list[Any] = []
    time = 0
    for position in range(0, len(records), 3):
        chunk = records[position : position + 3]
        stamps = []
        for _, _, gap in chunk:
            time += gap
            stamps.append(time)
        steps.append(feed([(k, v) for k, v, _ in chunk], stamps, [(len(chunk), time - 3)]))
        steps.append(clock_to(time))
        steps.extend([Snap] * snap_at.count(position // 3))
        if position // 3 == restore_at % (len(records) // 3 + 1):
            steps.extend([Snap, Restore])
    if Restore not in steps:
        steps.extend([Snap, Restore])
    steps.append(feed([("a", 1), ("z", 2)], [time, time], [(2, MAX_WATERMARK)]))
    steps.append(clock_to(time + 100))
    resumes_exactly(keyed(Everything), steps)


# -- windows ---------------------------------------------------------------------------------------


class SumCount(AggregateFunction[dict[str, Any], tuple[int, int], tuple[int, int]]):
    def create_accumulator(self) -> tuple[int, int]:
        return (0, 0)

    def add(self, value: dict[str, Any], accumulator: tuple[int, int]) -> tuple[int, int]:
        return (accumulator[0] + value["v"], accumulator[1] + 1)

    def get_result(self, accumulator: tuple[int, int]) -> tuple[int, int]:
        return accumulator

    def merge(self, a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
        return (a[0] + b[0], a[1] + b[1])


def rec(k: str, v: int) -> dict[str, Any]:
    return {"k": k, "v": v}


def add_v(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {"k": a["k"], "v": a["v"] + b["v"]}


def windows(
    assigner: Any, contents: Any = None, trigger: Any = None, lateness: int = 0, *, incremental: bool = True
) -> Callable[[ManualClock], WindowOperator]:
    def make(clock: ManualClock) -> WindowOperator:
        op = WindowOperator(
            "w", itemgetter("k"), assigner, contents or AggregateContents(SumCount()), trigger, lateness
        )
        op.open(context("w", clock, incremental=incremental))
        return op

    return make


def test_tumbling_event_time_windows_on_the_fast_path_resume() -> None:
    make = windows(TumblingEventTimeWindows.of(10), lateness=5)
    assert make(ManualClock(0))._tumbling
    changes = resumes_exactly(
        make,
        [
            feed([rec("a", 1), rec("b", 2), rec("a", 3)], [1, 4, 12], [(2, 3)]),
            Snap,
            feed([rec("c", 4), rec("a", 5)], [15, 8], [(1, 10)]),  # a:8 is late within the lateness
            Snap,
            feed([rec("b", 6)], [22], [(1, 16)]),  # [0, 10) is cleaned up (9 + 5 < 16)
            Snap,
            Restore,
            feed([rec("a", 7), rec("c", 8), rec("a", 9)], [13, 18, 3], [(0, 16), (3, 25)]),
            feed([rec("d", 1)], [40], [(1, MAX_WATERMARK)]),
        ],
    )
    assert sorted(changes[0]) == ["a", "b"]
    assert sorted(changes[1]) == ["a", "b", "c"]  # b: watermark 10 fired [0, 10) (cleaned up at 14)
    assert sorted(changes[2]) == ["a", "b"]  # a's [0, 10) is gone, [10, 20) stays
    b = changes[2]["b"]
    assert b is not None and list(b["windows"]) == [(20, 30)] and [t for t, _, _ in b["event"]] == [29, 34]


def test_sliding_windows_resume() -> None:
    changes = resumes_exactly(
        windows(SlidingEventTimeWindows.of(10, 5), ReduceContents(add_v), lateness=4),
        [
            feed([rec("a", 1), rec("b", 2), rec("a", 4)], [3, 7, 12], [(2, 9)]),
            Snap,
            feed([rec("a", 8), rec("c", 1)], [8, 30], [(1, 10)]),
            Snap,
            Restore,
            feed([rec("a", 16), rec("b", 6)], [0, 6], [(0, 10), (0, 13)]),
            feed([], [], [(0, MAX_WATERMARK)]),
        ],
    )
    assert sorted(changes[1]) == ["a", "c"]  # b's [0, 10) fired at 9 already, its cleanup is at 13


def test_session_windows_with_merging_and_a_purging_count_trigger_resume() -> None:
    changes = resumes_exactly(
        windows(
            EventTimeSessionWindows.with_gap(10),
            ReduceContents(add_v),
            PurgingTrigger.of(CountTrigger.of(2)),
            lateness=20,
        ),
        [
            feed(
                [rec(k, v) for v, k in enumerate("abcdeabcab")],
                [(i * 13) % 50 for i in range(10)],
                [(5, 20)],
            ),
            Snap,
            feed([rec("a", 100), rec("b", 200)], [31, 25], [(2, 22)]),
            Snap,
            Restore,
            feed([rec("e", 300), rec("c", 400), rec("a", 500)], [12, 45, 29], [(0, 22), (3, 30)]),
            feed([rec("a", 1)], [60], [(1, MAX_WATERMARK)]),
        ],
    )
    assert sorted(changes[1]) == ["a", "b"]
    a = changes[1]["a"]
    assert a is not None and a["trigger_state"]  # the merged session's count


def test_a_count_trigger_keeps_its_state_across_a_restore() -> None:
    make = windows(TumblingEventTimeWindows.of(100), trigger=CountTrigger.of(3))
    assert not make(ManualClock(0))._tumbling
    changes = resumes_exactly(
        make,
        [
            feed([rec("a", 1), rec("b", 1), rec("a", 2)], [1, 2, 3], [(3, 3)]),
            Snap,
            feed([rec("a", 4), rec("a", 8)], [4, 5], [(2, 5)]),  # a fires at 3, counts 1 again
            Snap,
            Restore,
            feed([rec("a", 16), rec("b", 32)], [150, 7], [(2, 9)]),  # a: a count in [100, 200) too
            Snap,
            Restore,  # a second generation: a's count in [0, 100) came from the first restore
            feed([rec("a", 64), rec("a", 128), rec("b", 1)], [8, 9, 10], [(3, 11)]),  # a's fires
            feed([], [], [(0, MAX_WATERMARK)]),
        ],
    )
    assert changes[0]["a"]["trigger_state"] == {(0, 100): {"count": 2}}
    assert changes[1] == {"a": changes[1]["a"]}
    assert changes[1]["a"]["trigger_state"] == {(0, 100): {"count": 1}}
    assert changes[2]["a"]["trigger_state"] == {(0, 100): {"count": 1}, (100, 200): {"count": 1}}


def test_a_window_operator_restored_from_a_full_snapshot_exports_every_key_in_the_next_one() -> None:
    full = windows(TumblingEventTimeWindows.of(100), trigger=CountTrigger.of(3), incremental=False)(
        ManualClock(0)
    )
    full.process(Batch([rec("a", 1), rec("b", 2), rec("a", 4)], [1, 2, 150], None))
    op = windows(TumblingEventTimeWindows.of(100), trigger=CountTrigger.of(3))(ManualClock(0))
    op.restore_state([pickled(full.snapshot_state())])
    changes = changes_of(op)
    assert sorted(changes) == ["a", "b"]
    a = changes["a"]
    assert a is not None and a["trigger_state"] == {(0, 100): {"count": 1}, (100, 200): {"count": 1}}
    assert [time for time, _, _ in a["event"]] == [99, 199]
    assert op.snapshot_state() == {"changes": {}}


def test_processing_time_windows_and_sessions_resume_on_the_clock() -> None:
    for make in (
        windows(TumblingProcessingTimeWindows.of(100)),
        windows(ProcessingTimeSessionWindows.with_gap(50)),
    ):
        changes = resumes_exactly(
            make,
            [
                feed([rec("a", 1), rec("b", 2)]),
                clock_to(40),
                feed([rec("a", 3)]),
                Snap,
                clock_to(95),  # b's session [0, 50) fires
                Snap,
                Restore,
                feed([rec("c", 4), rec("a", 5)]),
                clock_to(150),
                feed([rec("a", 6)]),
                clock_to(400),
            ],
        )
        assert sorted(changes[0]) == ["a", "b"]


def test_a_window_snapshot_holds_only_the_keys_that_changed() -> None:
    for make in (windows(TumblingEventTimeWindows.of(10)), windows(EventTimeSessionWindows.with_gap(5))):
        op = make(ManualClock(0))
        op.process(Batch([rec(f"k{n}", n) for n in range(1_000)], [n % 10 for n in range(1_000)], None))
        assert len(changes_of(op)) == 1_000
        # Into windows they have (no new timer): only the records say these keys changed.
        op.process(Batch([rec("k1", 1), rec("k2", 1), rec("k3", 1)], [1, 2, 3], None))
        changes = changes_of(op)
        assert sorted(changes) == ["k1", "k2", "k3"]
        assert list(changes["k3"]["windows"].values()) == [(4, 2)]
        op.process(Batch([], [], [(0, 30)]))
        changes = changes_of(op)
        assert len(changes) == 1_000 and all(entry is None for entry in changes.values())
        assert op.windows == {}


# -- two inputs: keyed co-process, keyed broadcast, the interval join -------------------------------


class Enrich(KeyedCoProcessFunction[dict[str, Any], dict[str, Any], Any]):
    """Orders (input 0) wait for their customer (input 1); a waiting order times out in event time."""

    def open(self, ctx: RuntimeContext) -> None:
        self.name = ctx.get_state(ValueStateDescriptor[str]("name"))
        self.waiting = ctx.get_list_state(ListStateDescriptor[int]("waiting"))

    def process_element1(self, order: dict[str, Any], ctx: Context, out: Collector) -> None:
        name = self.name.value()
        if name is None:
            self.waiting.add(order["id"])
            assert ctx.timestamp is not None
            ctx.timer_service().register_event_time_timer(ctx.timestamp + 10)
        else:
            out.collect((order["id"], name))

    def process_element2(self, customer: dict[str, Any], ctx: Context, out: Collector) -> None:
        self.name.update(customer["name"])
        for order in self.waiting.get():
            out.collect((order, customer["name"]))
        self.waiting.clear()

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        for order in self.waiting.get():
            out.collect((order, "timed out", ctx.time_domain is TimeDomain.EVENT_TIME))
        self.waiting.clear()


def order(oid: int, cid: str) -> dict[str, Any]:
    return {"id": oid, "cid": cid}


def customer(cid: str, name: str) -> dict[str, Any]:
    return {"cid": cid, "name": name}


def test_a_keyed_co_process_function_resumes() -> None:
    def make(clock: ManualClock) -> Operator:
        op = KeyedCoProcessOperator("enrich", Enrich(), itemgetter("cid"), itemgetter("cid"))
        op.open(context("enrich", clock))
        return op

    changes = resumes_exactly(
        make,
        [
            feed([order(1, "x"), order(2, "y"), order(3, "z")], [1, 2, 3], [(3, 3)], input=0),
            feed([customer("x", "Xena")], [4], [(1, 3)], input=1),
            Snap,
            feed([order(4, "x"), order(5, "y")], [5, 6], [(2, 5)], input=0),
            Snap,
            Restore,
            feed([customer("y", "Yann")], [7], [(1, 6)], input=1),
            watermark(20, input=1),
            feed([order(6, "z"), order(7, "y")], [21, 22], [(2, 40)], input=0),
        ],
    )
    assert sorted(changes[0]) == ["x", "y", "z"]
    assert sorted(changes[1]) == ["x", "y"]


RULES = MapStateDescriptor("rules")


class Limits(KeyedBroadcastProcessFunction[tuple[str, int], dict[str, Any], Any]):
    """Sums per key; a rule sets the limit and resets the sum of every key (apply_to_keyed_state)."""

    def open(self, ctx: RuntimeContext) -> None:
        self.sum = ctx.get_state(ValueStateDescriptor[int]("sum", default=0))

    def process_element(self, value: tuple[str, int], ctx: BroadcastContext, out: Collector) -> None:
        self.sum.update(self.sum.value() + value[1])
        limit = ctx.get_broadcast_state(RULES).get("limit")
        if limit is not None and self.sum.value() > limit:
            out.collect((ctx.current_key, self.sum.value()))

    def process_broadcast_element(
        self, rule: dict[str, Any], ctx: BroadcastContext, out: Collector
    ) -> None:
        ctx.get_broadcast_state(RULES)["limit"] = rule["limit"]

        def reset(key: Any, state: Any) -> None:
            if rule.get("reset") == key:
                state.clear()

        ctx.apply_to_keyed_state(ValueStateDescriptor("sum", default=0), reset)


def test_a_keyed_broadcast_function_resumes_and_apply_to_keyed_state_marks_keys() -> None:
    def make(clock: ManualClock) -> Operator:
        op = KeyedBroadcastProcessOperator("limits", Limits(), itemgetter(0), [RULES])
        op.open(context("limits", clock))
        return op

    op = make(ManualClock(0))
    op.process_input(Batch([("a", 1), ("b", 2)]), 0)
    assert op.snapshot_state() == {
        "changes": {
            "a": {"state": {"sum": 1}, "event": [], "processing": []},
            "b": {"state": {"sum": 2}, "event": [], "processing": []},
        }
    }
    op.process_input(Batch([{"limit": 2, "reset": "a"}]), 1)
    assert op.snapshot_state() == {
        "changes": {"a": None, "b": {"state": {"sum": 2}, "event": [], "processing": []}},
        "broadcast": {"rules": {"limit": 2}},
    }

    changes = resumes_exactly(
        make,
        [
            feed([("a", 1), ("b", 2), ("c", 3)], input=0),
            Snap,
            feed([{"limit": 4}], input=1),
            feed([("a", 4), ("b", 1)], input=0),
            Snap,
            feed([("c", 1)], input=0),
            Snap,
            Restore,
            feed([("a", 1), ("b", 5), ("c", 1)], input=0),
            feed([{"limit": 1, "reset": "b"}], input=1),
            feed([("a", 1), ("b", 5)], input=0),
        ],
    )
    assert sorted(changes[1]) == ["a", "b", "c"]  # the rule reached every key with a sum
    assert changes[2] == {"c": {"state": {"sum": 4}, "event": [], "processing": []}}


class Pairs(ProcessJoinFunction[Any, Any, Any]):
    def process_element(self, left: Any, right: Any, ctx: Any, out: Collector) -> None:
        out.collect((left, right, ctx.timestamp))


def test_an_interval_join_resumes() -> None:
    def make(clock: ManualClock) -> Operator:
        op = KeyedProcessOperator("join", IntervalJoinFunction(Pairs(), -2, 3), itemgetter(1))
        op.open(context("join", clock))
        return op

    def tagged(side: int, key: str, n: int) -> tuple[int, str, int]:
        return (side, key, n)

    resumes_exactly(
        make,
        [
            feed([tagged(LEFT, "a", 1), tagged(RIGHT, "a", 2), tagged(LEFT, "b", 3)], [1, 2, 3], [(3, 1)]),
            Snap,
            feed([tagged(RIGHT, "b", 4), tagged(LEFT, "a", 5)], [4, 5], [(2, 3)]),
            Snap,
            Restore,
            feed([tagged(RIGHT, "a", 6), tagged(RIGHT, "b", 7), tagged(LEFT, "b", 8)], [6, 6, 8], [(3, 6)]),
            feed([], [], [(0, MAX_WATERMARK)]),
        ],
    )


# -- the timer index -------------------------------------------------------------------------------


def test_an_indexed_timer_queue_fires_like_a_plain_one_and_keeps_order_across_a_restore() -> None:
    plain, indexed = TimerQueue(), IndexedTimerQueue(itemgetter(0))
    for queue in (plain, indexed):
        for n in range(30):
            queue.add(n % 4, (f"k{n % 7}", n % 3))
        queue.remove(2, ("k2", 2))
    assert indexed.snapshot() == plain.snapshot()
    # Exported key by key (as incremental snapshots do), restored in one call: the same order.
    exported = [
        (time, sequence, scope)
        for key in ("k5", "k0", "k3", "k6", "k1", "k2", "k4")
        for time, scope, sequence in indexed.timers_of(key)
    ]
    restored = IndexedTimerQueue(itemgetter(0))
    restored.add_sequenced(exported)
    assert restored.snapshot() == plain.snapshot()
    unindexed = TimerQueue()
    unindexed.add_sequenced(exported)
    assert unindexed.snapshot() == plain.snapshot()
    assert list(restored.pop_due(2)) == list(plain.pop_due(2)) == list(indexed.pop_due(2))
    assert sum(len(restored.timers_of(f"k{n}")) for n in range(7)) == len(plain) == len(restored)
    restored.add(9, ("k1", 0))
    assert restored.timers_of("k1")[-1][2] > max(sequence for _, sequence, _ in exported)
