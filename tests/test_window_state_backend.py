"""Window contents and trigger state on the chosen state backend: in RocksDB they really are in the
store (a cache of a few entries evicts them and reads them back), the results equal the heap's, the
snapshots are the same neutral format on both, and a savepoint moves a windowed job between the
heap and RocksDB."""

from __future__ import annotations

import operator
import pickle
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from actorflow import Flow
from actorflow.operators.base import Collector, OperatorContext
from actorflow.operators.windows.assigners import (
    EventTimeSessionWindows,
    ProcessingTimeSessionWindows,
    SlidingEventTimeWindows,
    TimeWindow,
    TumblingEventTimeWindows,
    WindowAssigner,
)
from actorflow.operators.windows.functions import (
    AggregateContents,
    ProcessContents,
    ProcessWindowFunction,
    ReduceContents,
    WindowContents,
    WindowContext,
)
from actorflow.operators.windows.operator import WindowOperator
from actorflow.operators.windows.triggers import (
    CountTrigger,
    OnMergeContext,
    Trigger,
    TriggerContext,
    TriggerResult,
)
from actorflow.runtime.messages import MAX_WATERMARK, Batch
from actorflow.state.backends import StateBackendConfig
from actorflow.state.descriptors import AggregateFunction
from actorflow.state.removal import wait_removed
from actorflow.state.rocksdb import RocksDBTable, RocksDBTables
from actorflow.time.clock import ManualClock
from actorflow.time.watermarks import WatermarkStrategy
from tests.faults import StoppingSource

Record = dict[str, Any]
#: The RocksDB cache in these tests: far fewer entries than keys, so every batch evicts.
CACHE = 3


class SumCount(AggregateFunction[Record, list[int], tuple[int, int]]):
    """An accumulator updated in place (a list): it must survive eviction and read-back."""

    def create_accumulator(self) -> list[int]:
        return [0, 0]

    def add(self, value: Record, accumulator: list[int]) -> list[int]:
        accumulator[0] += value["v"]
        accumulator[1] += 1
        return accumulator

    def get_result(self, accumulator: list[int]) -> tuple[int, int]:
        return accumulator[0], accumulator[1]

    def merge(self, first: list[int], second: list[int]) -> list[int]:
        return [first[0] + second[0], first[1] + second[1]]


def larger(first: Record, second: Record) -> Record:
    return second if second["v"] > first["v"] else first


class Listing(ProcessWindowFunction[Record, tuple[Any, ...], str]):
    def process(self, key: str, context: WindowContext, elements: list[Record], out: Collector) -> None:
        window = context.window
        out.collect((key, window.start, window.end, [e["v"] for e in elements]))


class EverySecondAndAtTheEnd(Trigger):
    """A user's trigger with state: fires at every second record of a window (a count kept in the
    trigger state, with the sum of what it saw) and when the watermark passes the window's end."""

    def on_element(
        self, element: Any, timestamp: int | None, window: TimeWindow, ctx: TriggerContext
    ) -> TriggerResult:
        if window.end - 1 <= ctx.current_watermark():
            return TriggerResult.FIRE  # a late record inside the lateness
        ctx.register_event_time_timer(window.end - 1)
        seen = ctx.get_state("seen", 0) + 1
        ctx.set_state("sum", ctx.get_state("sum", 0) + element["v"])
        if seen == 2:
            ctx.clear_state("seen")
            return TriggerResult.FIRE
        ctx.set_state("seen", seen)
        return TriggerResult.CONTINUE

    def on_event_time(self, time: int, window: TimeWindow, ctx: TriggerContext) -> TriggerResult:
        return TriggerResult.FIRE if time == window.end - 1 else TriggerResult.CONTINUE

    def clear(self, window: TimeWindow, ctx: TriggerContext) -> None:
        ctx.delete_event_time_timer(window.end - 1)
        ctx.clear_state("seen")
        ctx.clear_state("sum")

    def can_merge(self) -> bool:
        return True

    def on_merge(self, window: TimeWindow, ctx: OnMergeContext) -> None:
        ctx.merge_state("seen", lambda a, b: (a + b) % 2)
        ctx.merge_state("sum", operator.add)
        if window.end - 1 > ctx.current_watermark():
            ctx.register_event_time_timer(window.end - 1)


#: name -> (assigner, contents, trigger, allowed lateness)
SETUPS: dict[str, Callable[[], tuple[WindowAssigner, WindowContents, Trigger | None, int]]] = {
    "tumbling": lambda: (TumblingEventTimeWindows.of(10), AggregateContents(SumCount()), None, 5),
    "sliding": lambda: (SlidingEventTimeWindows.of(20, 5), ReduceContents(larger), None, 3),
    "sessions": lambda: (EventTimeSessionWindows.with_gap(7), ProcessContents(Listing()), None, 10),
    "custom trigger": lambda: (
        TumblingEventTimeWindows.of(10),
        AggregateContents(SumCount()),
        EverySecondAndAtTheEnd(),
        4,
    ),
    "sessions, custom trigger": lambda: (
        EventTimeSessionWindows.with_gap(6),
        AggregateContents(SumCount()),
        EverySecondAndAtTheEnd(),
        8,
    ),
    "sessions, count trigger": lambda: (
        EventTimeSessionWindows.with_gap(5),
        ReduceContents(larger),
        CountTrigger.of(3),
        6,
    ),
}


def rocksdb(tmp_path: Path) -> StateBackendConfig:
    return StateBackendConfig("rocksdb", path=str(tmp_path / "rocks"), cache_entries=CACHE)


def window_operator(
    setup: str, backend: StateBackendConfig | None, *, incremental: bool = False
) -> WindowOperator:
    assigner, contents, trigger, lateness = SETUPS[setup]()
    op = WindowOperator("w", lambda r: r["k"], assigner, contents, trigger, lateness)
    op.open(OperatorContext("w", clock=ManualClock(0), state_backend=backend, incremental=incremental))
    return op


def batches(seed: int = 1, keys: int = 20, records: int = 600) -> list[Batch]:
    """Records of ``keys`` keys out of order by up to 12 ms, one in ten by up to 60 ms (later than
    the watermark, some within the allowed lateness, some past it), after every 4 records a
    watermark 5 ms behind the largest timestamp, in 8 batches, then a watermark that ends every
    window."""
    rng = random.Random(seed)
    values, stamps, highest = [], [], 0
    for n in range(records):
        delay = rng.randrange(60) if rng.random() < 0.1 else rng.randrange(12)
        stamp = max(0, n // 2 - delay)
        values.append({"k": f"k{rng.randrange(keys)}", "v": rng.randrange(100)})
        stamps.append(stamp)
    out: list[Batch] = []
    size = records // 8
    for start in range(0, records, size):
        marks = []
        for position in range(size):
            highest = max(highest, stamps[start + position])
            if position % 4 == 3:
                marks.append((position + 1, highest - 5))  # after the record at ``position``
        out.append(Batch(values[start : start + size], stamps[start : start + size], marks))
    out.append(Batch([], [], [(0, MAX_WATERMARK)]))
    return out


def results(op: WindowOperator, feed: list[Batch]) -> list[tuple[Any, Any]]:
    got: list[tuple[Any, Any]] = []
    for batch in feed:
        out = op.process(batch)
        got.extend(zip(out.values, out.timestamps or [None] * len(out.values), strict=True))
    return got


def rocks_tables(op: WindowOperator) -> RocksDBTables:
    tables = op._tables
    assert isinstance(tables, RocksDBTables)
    return tables


def stored(table: Any) -> int:
    """The entries in the table's column family (written by eviction, not the cache's)."""
    assert isinstance(table, RocksDBTable)
    return sum(1 for _ in table.family.keys())  # noqa: SIM118 (an Rdict is not iterable)


@pytest.mark.parametrize("setup", SETUPS)
def test_window_contents_live_in_rocksdb_and_give_the_heaps_results(tmp_path: Path, setup: str) -> None:
    feed = batches()
    heap = window_operator(setup, None)
    expected = results(heap, feed)
    assert expected and heap.late_records > 0  # the records exercise lateness

    op = window_operator(setup, rocksdb(tmp_path))
    assert type(op.windows) is dict and op.process(Batch([], [], [(0, 0)])).values == []
    assert not (tmp_path / "rocks").exists()  # no store until the first record
    got = results(op, feed[:4])
    assert isinstance(op.windows, RocksDBTable) and isinstance(op.triggers, RocksDBTable)
    tables = rocks_tables(op)
    # Evicted: more keys' windows are in the store than the cache can hold.
    assert stored(op.windows) > CACHE
    if SETUPS[setup]()[2] is not None:
        assert stored(op.triggers) > CACHE
    assert tables.cached <= CACHE + 2  # the bound, give or take the current key's entries
    misses = tables.misses
    got += results(op, feed[4:])
    assert tables.misses > misses  # read back from the store
    assert got == expected
    assert op.late_records == heap.late_records
    assert op.state_size() == heap.state_size() == 0
    op.close()
    heap.close()
    wait_removed()  # closed stores' directories go in a worker thread
    assert not (tmp_path / "rocks").exists() or list((tmp_path / "rocks").iterdir()) == []


@pytest.mark.parametrize("setup", SETUPS)
def test_a_snapshot_is_the_heaps_on_rocksdb_and_restores_across_backends(
    tmp_path: Path, setup: str
) -> None:
    """Snapshots (full and incremental) hold the same thing on both backends, and one taken on
    either backend, restored on the other, resumes to the results of a run without a restore."""
    feed = batches(seed=2)
    reference = window_operator(setup, None)
    expected = results(reference, feed)

    for incremental in (False, True):
        heap = window_operator(setup, None, incremental=incremental)
        rocks = window_operator(setup, rocksdb(tmp_path), incremental=incremental)
        before = results(heap, feed[:3])
        assert results(rocks, feed[:3]) == before
        first = heap.snapshot_state(), rocks.snapshot_state()
        assert first[0] is not None and first[0] == first[1]
        if not incremental and SETUPS[setup]()[2] is not None:
            assert first[0]["trigger_state"]  # by (key, window), as before the tables
        saved = [[first[0]], [first[1]]]
        resume_at = 3
        if incremental:  # the next changes too, after more records
            more = results(heap, feed[3:5])
            assert results(rocks, feed[3:5]) == more
            before += more
            second = heap.snapshot_state(), rocks.snapshot_state()
            assert second[0] == second[1]
            saved[0].append(second[0])
            saved[1].append(second[1])
            resume_at = 5
        # The heap's snapshot on RocksDB, RocksDB's on the heap.
        for state, backend in ((pickle.dumps(saved[0]), rocksdb(tmp_path)), (pickle.dumps(saved[1]), None)):
            resumed = window_operator(setup, backend, incremental=incremental)
            resumed.restore_state(pickle.loads(state))
            assert before + results(resumed, feed[resume_at:]) == expected
            resumed.close()
        heap.close()
        rocks.close()


def test_processing_time_sessions_fire_on_rocksdb_as_on_the_heap(tmp_path: Path) -> None:
    """Processing-time timers set the key before they read its windows, as records do."""
    got = []
    for backend in (None, rocksdb(tmp_path)):
        clock = ManualClock(0)
        op = WindowOperator(
            "w", lambda r: r["k"], ProcessingTimeSessionWindows.with_gap(30), ProcessContents(Listing())
        )
        op.open(OperatorContext("w", clock=clock, state_backend=backend))
        out: list[Any] = []
        for step in range(40):
            clock.set(step * 10)
            batch = op.process(Batch([{"k": f"k{(step * 7) % 11}", "v": step}], None, None))
            out.extend(batch.values)
            fired = op.on_processing_time(clock.now())
            if fired is not None:
                out.extend(fired.values)
        clock.set(10_000)
        fired = op.on_processing_time(clock.now())
        assert fired is not None
        out.extend(fired.values)
        assert op.state_size() == 0
        if backend is not None:
            assert rocks_tables(op).misses > 0
        op.close()
        got.append(out)
    assert got[0] == got[1] and len(got[0]) > 11


# -- a savepoint moves a windowed job between the heap and RocksDB --------------------------------


def _windowed_flow(
    records: list[Record],
    checkpoints: Path,
    target: Path,
    stop_at: int | None,
    backend: str,
    rocks: Path,
) -> tuple[Flow, StoppingSource]:
    flow = Flow("windows", parallelism=2, batch_size=20)
    if backend == "rocksdb":
        flow.set_state_backend("rocksdb", path=rocks, cache_entries=4)
    else:  # the heap, whatever $ACTORFLOW_STATE_BACKEND says
        flow.set_state_backend("heap")
    flow.enable_checkpointing(checkpoints)
    source = StoppingSource(records, flow, stop_at)
    keyed = flow.from_source(source, watermarks=WatermarkStrategy.punctuated("ts", lag_ms=20)).key_by("k")
    sessions = (
        keyed.window(EventTimeSessionWindows.with_gap(15))
        .trigger(EverySecondAndAtTheEnd())
        .allowed_lateness(10)
        .aggregate(SumCount(), name="sessions")
        .map(lambda r: ["session", *r])
    )
    tumbling = (
        keyed.window(TumblingEventTimeWindows.of(50))
        .aggregate(SumCount(), name="tumbling")
        .map(lambda r: ["tumbling", *r])
    )
    sessions.union(tumbling).sink_to_json_lines(target, exactly_once=True)
    return flow, source


def test_a_savepoint_of_a_windowed_job_taken_on_the_heap_restores_on_rocksdb_and_back(
    tmp_path: Path,
) -> None:
    """Stopped with a savepoint on the heap, resumed on RocksDB (4 cache entries for 30 keys),
    stopped again, finished on the heap: the output of a run without stops."""
    rng = random.Random(3)
    n = 1_200
    records = [
        {"k": f"card-{rng.randrange(30)}", "v": rng.randrange(50), "ts": max(0, i - rng.randrange(25))}
        for i in range(n)
    ]
    rocks = tmp_path / "rocks"
    reference = tmp_path / "reference.jsonl"
    _windowed_flow(records, tmp_path / "reference-checkpoints", reference, None, "heap", rocks)[0].execute()
    target = tmp_path / "out.jsonl"
    for backend, stop_at in (("heap", n // 3), ("rocksdb", 2 * n // 3), ("heap", None)):
        flow, source = _windowed_flow(records, tmp_path / "checkpoints", target, stop_at, backend, rocks)
        flow.execute()
        assert source.stopped == (stop_at is not None)
        wait_removed()  # closed stores' directories go in a worker thread
        assert not rocks.exists() or list(rocks.iterdir()) == []
    assert rocks.is_dir()  # the RocksDB run made its directories there, and deleted them

    def lines(path: Path) -> list[Any]:
        return sorted((orjson.loads(line) for line in path.read_bytes().splitlines()), key=repr)

    expected = lines(reference)
    assert len(expected) > 100
    assert lines(target) == expected
