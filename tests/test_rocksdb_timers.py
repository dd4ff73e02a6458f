"""Timers in RocksDB behave as the heap's timer queue: the same timers fire in the same order."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actorflow.state.backends import StateBackendConfig
from actorflow.state.rocksdb import RocksDBTables
from actorflow.state.rocksdb_timers import RocksDBTimerQueue
from actorflow.time.timers import TimerQueue


@pytest.fixture
def tables(tmp_path: Path) -> Iterator[RocksDBTables]:
    opened = RocksDBTables(StateBackendConfig("rocksdb", path=str(tmp_path)), "timers", 0)
    yield opened
    opened.close()


times = st.integers(min_value=-3, max_value=12)
keys = st.sampled_from(["a", "b", ("c", 1), 7, None])
operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), times, keys),
        st.tuples(st.just("remove"), times, keys),
        st.tuples(st.just("pop"), times, st.none()),
        st.tuples(st.just("pop_adding"), times, keys),  # fires, and each firing adds a timer
    ),
    max_size=40,
)


def apply(queue: Any, operation: tuple[str, int, Any]) -> Any:
    kind, time, key = operation
    if kind == "add":
        return queue.add(time, key)
    if kind == "remove":
        return queue.remove(time, key)
    fired = []
    for due in queue.pop_due(time):
        fired.append(due)
        if kind == "pop_adding" and len(fired) < 4:
            queue.add(due[0] + len(fired) % 2, key)  # at the same time or later: due in this pass
    return fired


@settings(max_examples=60, deadline=None)
@given(operations)
def test_rocksdb_timers_fire_as_the_heap_queues_do(
    tmp_path_factory: pytest.TempPathFactory, ops: Any
) -> None:
    tables = RocksDBTables(StateBackendConfig("rocksdb", path=str(tmp_path_factory.mktemp("t"))), "t", 0)
    try:
        heap, rocks = TimerQueue(), RocksDBTimerQueue(tables, "event")
        for operation in ops:
            assert apply(rocks, operation) == apply(heap, operation), operation
            assert rocks.next_time == heap.next_time
        assert rocks.export() == heap.export()
        assert rocks.snapshot() == heap.snapshot() and len(rocks) == len(heap)
    finally:
        tables.close()


def test_a_restore_keeps_the_order_timers_of_one_time_were_registered_in(tables: RocksDBTables) -> None:
    queue = RocksDBTimerQueue(tables, "event")
    queue.add_sequenced([(20, 5, "late"), (10, 9, "b"), (20, 1, "early")])
    assert queue.snapshot() == [(10, ["b"]), (20, ["early", "late"])]
    assert queue.keys_at(20) == ["early", "late"] and queue.next_time == 10
    queue.add_all([(10, "b"), (5, "x")])  # (10, "b") is there already
    assert queue.export() == ([5, 10, 20, 20], ["x", "b", "early", "late"])


def test_the_timers_are_in_rocksdb_not_in_memory(tables: RocksDBTables) -> None:
    queue = RocksDBTimerQueue(tables, "processing")
    queue.add_all((time, f"card-{time}") for time in range(10_000))
    assert len(queue.keys_at(5)) == 1 and not hasattr(queue, "_times")  # no heap queue inside
    assert vars(queue).keys() == {
        "_columns",
        "_timers_family",
        "_index_family",
        "_tables",
        "_max_parallelism",
        "_sequence",
        "_resume",
        "_count",
    }
    assert [time for time, _ in queue.pop_due(2)] == [0, 1, 2] and queue.next_time == 3
    queue.clear()
    assert len(queue) == 0 and queue.next_time is None
