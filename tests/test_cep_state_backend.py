"""Patterns on the RocksDB state backend: each key's partial matches, waiting events and due time
live in the store behind a cache of a few entries, and the output is the heap's.

The CEP suites run on RocksDB too (``ACTORFLOW_STATE_BACKEND=rocksdb``, with RocksDB's default
cache, so little is evicted there); this file holds what needs a tiny cache or both backends in one
test: matches and timeouts across evictions, the snapshot format, savepoints moving between the
heap and RocksDB, incremental snapshots.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from actorflow import AfterMatchSkip, Flow, OutputTag, Pattern, WatermarkStrategy
from actorflow.operators.base import OperatorContext
from actorflow.operators.cep import NFA, NFAState, PatternOperator
from actorflow.runtime.messages import Batch
from actorflow.state.backends import StateBackendConfig
from actorflow.state.removal import wait_removed
from actorflow.state.rocksdb import RocksDBTable, RocksDBTables
from actorflow.time.clock import ManualClock
from tests.faults import StoppingSource


def loop(within: int) -> Pattern[Any]:
    return (
        Pattern.begin("a").where(lambda r: r["v"] < 2)
        .followed_by("b").where(lambda r: 2 <= r["v"] < 5).one_or_more()
        .followed_by("c").where(lambda r: r["v"] >= 8)
        .within(within)
    )  # fmt: skip


LOOP = loop(40)
#: Ends with a negation: its partial matches share a ``done`` flag, which must pickle shared.
TRAILING_NOT = (
    Pattern.begin("a").where(lambda r: r["v"] < 3)
    .followed_by("b").where(lambda r: r["v"] >= 7).one_or_more()
    .not_next("c").where(lambda r: r["v"] == 5)
    .within(30)
)  # fmt: skip

#: A record, then the first later one with the same ``v``: in start order, a match that completes
#: while an earlier partial match is alive is held in the key's state.
SAME_V = (
    Pattern.begin("first")
    .followed_by("again").where(lambda r, ctx: r["v"] == ctx.events("first")[0]["v"])
    .within(20)
)  # fmt: skip


def ids(match: dict[str, list[Any]]) -> list[Any]:
    return [[r["id"] for r in match[stage]] for stage in sorted(match)]


def pattern_operator(
    backend: StateBackendConfig | None,
    pattern: Pattern[Any] = LOOP,
    skip: AfterMatchSkip | None = None,
    *,
    incremental: bool = False,
    clock: ManualClock | None = None,
) -> PatternOperator:
    """A pattern operator reporting matches as ``["match", ids]`` and timeouts as ``["timeout",
    ids, time]``."""
    op = PatternOperator(
        "pattern",
        NFA(pattern, skip or AfterMatchSkip.skip_to_next()),
        lambda r: r["k"],
        lambda m, ctx, out: out.collect(["match", ids(m)]),
        lambda m, ctx, out: out.collect(["timeout", ids(m), ctx.timestamp]),
    )
    settings: dict[str, Any] = {} if clock is None else {"clock": clock}
    op.open(OperatorContext("pattern", incremental=incremental, state_backend=backend, **settings))
    return op


def rocksdb(tmp_path: Path, cache_entries: int = 4) -> StateBackendConfig:
    return StateBackendConfig("rocksdb", path=str(tmp_path / "rocks"), cache_entries=cache_entries)


def feed(op: PatternOperator, records: list[dict[str, Any]], watermark: int | None) -> list[Any]:
    marks = None if watermark is None else [(len(records), watermark)]
    out = op.process(Batch(records, [r["ts"] for r in records], marks))
    return [] if out is None else out.values


def records(count: int, keys: int, seed: int, lag: int = 6) -> list[dict[str, Any]]:
    """``count`` records over ``keys`` keys, their timestamps up to ``lag`` out of order."""
    rng = random.Random(seed)
    return [
        {
            "id": i,
            "k": f"card-{rng.randrange(keys)}",
            "v": rng.randrange(10),
            "ts": max(0, i - rng.randrange(lag)),
        }
        for i in range(count)
    ]


def run_batches(op: PatternOperator, stream: list[dict[str, Any]], size: int, lag: int) -> list[Any]:
    """``stream`` in batches of ``size``, each with the watermark ``lag`` behind its newest
    record, then the end of time."""
    found: list[Any] = []
    high = 0
    for start in range(0, len(stream), size):
        part = stream[start : start + size]
        high = max(high, *(r["ts"] for r in part))
        found += feed(op, part, high - lag)
    return found + feed(op, [], 1 << 60)


def describe(entries: dict[Any, Any]) -> dict[Any, Any]:
    """A snapshot's ``keys`` in comparable form: partial matches as their stage, count, start and
    events."""

    def state_of(state: NFAState | None) -> Any:
        if state is None:
            return None
        partials = [(p.stage, p.count, p.start_ts, p.start_seq, p.events()) for p in state.partials]
        return sorted(partials, key=repr), state.seq

    return {key: (state_of(state), events) for key, (state, events) in entries.items()}


# -- the state is in RocksDB ------------------------------------------------------------------------


def test_the_partial_matches_and_waiting_events_of_many_keys_live_in_rocksdb(tmp_path: Path) -> None:
    """300 keys, each with a partial match and a waiting event, behind a cache of 4 entries: the
    store holds them, the cache stays bounded, reads miss, and a snapshot (in the heap's format)
    and the matches equal the heap's."""
    keys = 300
    begin = [{"id": k, "k": f"card-{k}", "v": 0, "ts": k} for k in range(keys)]
    extend = [{"id": keys + k, "k": f"card-{k}", "v": 3, "ts": keys + k} for k in range(keys)]
    finish = [{"id": 2 * keys + k, "k": f"card-{k}", "v": 9, "ts": 2 * keys + k} for k in range(keys)]
    heap = pattern_operator(None, loop(10_000))
    rocks = pattern_operator(rocksdb(tmp_path), loop(10_000))
    try:
        assert rocks.tables is None  # no store until a key needs one
        for op in (heap, rocks):
            assert feed(op, begin, keys - 1) == []  # every key has a partial match now
            assert feed(op, extend, keys - 1) == []  # and a waiting event (the watermark stays)
        tables = rocks.tables
        assert isinstance(tables, RocksDBTables) and isinstance(rocks.table, RocksDBTable)
        assert tables.cached <= tables.capacity == 4
        stored = sum(1 for _ in rocks.table.family.keys())  # noqa: SIM118 (an Rdict)
        assert stored >= keys - tables.capacity  # the others were written back when evicted
        assert len(rocks.waiting) == keys  # the heap holds (ts, seq, key) per key, no events
        assert all(len(item) == 3 for item in rocks.waiting)
        snapshot = pickle.loads(pickle.dumps(rocks.snapshot_state()))
        assert snapshot.keys() == {"key_groups", "keys"}
        assert describe(snapshot["keys"]) == describe(heap.snapshot_state()["keys"])
        misses = tables.misses
        found = [feed(op, finish, 3 * keys) for op in (heap, rocks)]
        assert tables.misses > misses  # read back from the store
        assert found[0] == found[1]
        assert sorted(found[1]) == sorted(["match", [[k], [keys + k], [2 * keys + k]]] for k in range(keys))
        assert tables.cached <= tables.capacity
        tables.flush()  # the cache remembers deletes: they reach the store when written back
        assert sum(1 for _ in rocks.table.family.keys()) == 0  # noqa: SIM118 (nothing left)
    finally:
        heap.close()
        rocks.close()
    wait_removed()  # closed stores' directories go in a worker thread
    assert list((tmp_path / "rocks").iterdir()) == []  # close deletes the instance's files


@pytest.mark.parametrize(
    ("pattern", "skip"),
    [
        (LOOP, AfterMatchSkip.skip_to_next()),
        (SAME_V, AfterMatchSkip.skip_to_next().start_order()),
        (TRAILING_NOT, AfterMatchSkip.no_skip()),
    ],
    ids=["loop", "held-matches", "trailing-not"],
)
def test_out_of_order_events_and_timeouts_on_rocksdb_equal_the_heaps(
    tmp_path: Path, pattern: Pattern[Any], skip: AfterMatchSkip
) -> None:
    """Records of 60 keys up to 6 ms out of order, partial matches timing out (``within``), a
    cache of 4 entries: the same matches and timeouts, in the same order, as on the heap."""
    stream = records(3_000, 60, seed=7)
    heap = pattern_operator(None, pattern, skip)
    rocks = pattern_operator(rocksdb(tmp_path), pattern, skip)
    try:
        expected = run_batches(heap, stream, 37, 6)
        found = run_batches(rocks, stream, 37, 6)
        assert {line[0] for line in expected} == {"match", "timeout"}
        assert found == expected
        assert isinstance(rocks.tables, RocksDBTables) and rocks.tables.misses > 0  # read back
    finally:
        heap.close()
        rocks.close()


def test_processing_time_timeouts_on_rocksdb_equal_the_heaps(tmp_path: Path) -> None:
    """Without event time: each record goes through as it comes; partial matches time out on the
    (manual) clock; the state lives in RocksDB."""
    stream = records(600, 40, seed=3)
    results = []
    for backend in (None, rocksdb(tmp_path)):
        clock = ManualClock(start=0)
        op = pattern_operator(backend, LOOP, clock=clock)
        found: list[Any] = []
        try:
            for start in range(0, len(stream), 10):
                out = op.process(Batch(stream[start : start + 10]))
                found += [] if out is None else out.values
                clock.advance(3)
                due = op.next_processing_time()
                if due is not None and due <= clock.now():
                    out = op.on_processing_time(clock.now())
                    found += [] if out is None else out.values
        finally:
            op.close()
        results.append(found)
    assert {line[0] for line in results[0]} == {"match", "timeout"}
    assert results[1] == results[0]


# -- snapshots --------------------------------------------------------------------------------------


def test_incremental_snapshots_on_rocksdb_restore_on_either_backend(tmp_path: Path) -> None:
    """In incremental mode (a partition task's changelog) the changes a RocksDB operator writes
    restore on RocksDB and on the heap, and each goes on as the original does."""
    stream = records(1_200, 30, seed=11)
    first = pattern_operator(rocksdb(tmp_path / "first"), incremental=True)
    changes = []
    half = len(stream) // 2
    try:
        for start in range(0, half, 40):
            part = stream[start : start + 40]
            feed(first, part, max(r["ts"] for r in part) - 6)
            changes.append(first.snapshot_state())
        assert all(change.keys() == {"changes"} for change in changes)
        assert first.snapshot_state() == {"changes": {}}
        parts = pickle.loads(pickle.dumps(changes))  # as a changelog holds them
        restored = [
            pattern_operator(rocksdb(tmp_path / "second"), incremental=True),
            pattern_operator(None, incremental=True),
        ]
        for op in restored:
            op.restore_state(parts)
        rest = stream[half:]
        expected = run_batches(first, rest, 40, 6)
        assert expected
        for op in restored:
            assert run_batches(op, rest, 40, 6) == expected
            op.close()
    finally:
        first.close()


def _flow(
    stream: list[dict[str, Any]],
    parallelism: int,
    backend: str,
    tmp_path: Path,
    target: Path,
    stop_at: int | None,
) -> tuple[Flow, StoppingSource]:
    flow = Flow("cep-backends", parallelism=parallelism, batch_size=40)
    flow.set_state_backend(backend, path=tmp_path / "rocks", cache_entries=4)
    flow.enable_checkpointing(tmp_path / "checkpoints")
    source = StoppingSource(stream, flow, stop_at)
    timeouts: OutputTag[Any] = OutputTag("timeouts")
    matches = (
        flow.from_source(source, watermarks=WatermarkStrategy.punctuated("ts", lag_ms=6))
        .key_by("k")
        .pattern(LOOP, skip=AfterMatchSkip.skip_to_next())
        .select(
            lambda m: ["match", ids(m)],
            timed_out=timeouts,
            on_timeout=lambda m, t: ["timeout", ids(m), t],
        )
    )
    matches.union(matches.get_side_output(timeouts)).sink_to_json_lines(target, exactly_once=True)
    return flow, source


def test_a_savepoint_taken_on_the_heap_restores_on_rocksdb_and_back(tmp_path: Path) -> None:
    """Stopped with a savepoint on the heap at parallelism 1 while partial matches are open and
    events wait, resumed on RocksDB (4 cache entries per instance) at 3, stopped again, finished
    on the heap at 2: the matches and timeouts of a run without stops, and RocksDB's files gone."""
    stream = records(4_000, 50, seed=5)
    n = len(stream)
    reference = tmp_path / "reference.jsonl"
    _flow(stream, 1, "heap", tmp_path / "reference", reference, None)[0].execute()
    target = tmp_path / "out.jsonl"
    for parallelism, backend, stop_at in (
        (1, "heap", n // 3),
        (3, "rocksdb", 2 * n // 3),
        (2, "heap", None),
    ):
        flow, source = _flow(stream, parallelism, backend, tmp_path, target, stop_at)
        flow.execute()
        assert source.stopped == (stop_at is not None)
    wait_removed()  # closed stores' directories go in a worker thread
    assert list((tmp_path / "rocks").iterdir()) == []

    def lines(path: Path) -> list[Any]:
        return sorted((orjson.loads(line) for line in path.read_bytes().splitlines()), key=repr)

    expected = lines(reference)
    assert {line[0] for line in expected} == {"match", "timeout"}
    assert lines(target) == expected
