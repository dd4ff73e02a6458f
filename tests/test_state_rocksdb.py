"""Keyed state in RocksDB: the key encoding, the bounded cache of live objects, codecs, TTL, and
savepoints that move a job between the heap and RocksDB.

The keyed-state, TTL, checkpoint, window, join and SQL suites run on RocksDB too (scripts/check
runs them again with ``ACTORFLOW_STATE_BACKEND=rocksdb``); this file holds what only RocksDB has.
"""

from __future__ import annotations

import operator
import os
import pickle
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actorflow import Flow
from actorflow.errors import PlanError, StateError
from actorflow.operators.base import Collector
from actorflow.operators.process import Context, KeyedProcessFunction, RuntimeContext
from actorflow.state import removal
from actorflow.state.backends import StateBackendConfig, open_tables
from actorflow.state.descriptors import (
    AggregateFunction,
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateTtl,
    ValueStateDescriptor,
)
from actorflow.state.keycodec import decode_key, encode_key
from actorflow.state.keyed import KeyContext, KeyedStateBackend
from actorflow.state.keygroups import key_group
from actorflow.state.removal import wait_removed
from actorflow.state.rocksdb import EVICT_CHUNK, PREFIX, RocksDBTables, sweep_stale
from actorflow.time.clock import ManualClock
from tests.faults import StoppingSource


def rocksdb_backend(
    tmp_path: Path, cache_entries: int = 4, clock: ManualClock | None = None
) -> tuple[KeyedStateBackend, RocksDBTables]:
    keys = KeyContext()
    config = StateBackendConfig("rocksdb", path=str(tmp_path / "rocks"), cache_entries=cache_entries)
    tables = open_tables(config, "test", 0, keys=keys)
    assert isinstance(tables, RocksDBTables)
    return KeyedStateBackend(clock=clock, tables=tables, keys=keys), tables


# -- keys -------------------------------------------------------------------------------------------

scalars = st.one_of(
    st.text(max_size=8),
    st.integers(),
    st.binary(max_size=8),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
)
keys_ = st.one_of(
    scalars, st.tuples(scalars, scalars), st.tuples(st.text(max_size=4), st.tuples(scalars, scalars))
)


@given(keys_)
def test_a_key_encodes_with_its_key_group_first_and_decodes_to_itself(key: Any) -> None:
    data = encode_key(key, 128)
    assert int.from_bytes(data[:2], "big") == key_group(key, 128)
    decoded = decode_key(data)
    assert decoded == key and type(decoded) is type(key)


def test_equal_keys_encode_equally_even_where_pickle_does_not() -> None:
    shared = "card-" + str(1)
    same_object, two_objects = (shared, shared), ("card-1", "card-" + str(1))
    assert pickle.dumps(same_object) != pickle.dumps(two_objects)  # why keys are not pickled
    assert encode_key(same_object, 128) == encode_key(two_objects, 128)


# -- the cache ----------------------------------------------------------------------------------------


def test_state_larger_than_the_cache_is_correct_and_the_cache_stays_bounded(tmp_path: Path) -> None:
    backend, tables = rocksdb_backend(tmp_path, cache_entries=8)
    count = backend.get_state(ValueStateDescriptor("count", default=0))
    seen = backend.get_list_state(ListStateDescriptor("seen"))
    most = 0
    for round_ in range(2):
        for i in range(5_000):
            backend.keys.current = f"card-{i}"
            count.update(count.value() + 1)
            seen.add(round_)
            most = max(most, tables.cached)
    assert most <= 8
    assert tables.misses > 10_000  # read back from RocksDB, not kept
    assert backend.state_size("count") == backend.state_size("seen") == 5_000
    exported = backend.tables()
    assert set(exported["count"].values()) == {2}
    assert all(values == [0, 1] for values in exported["seen"].values())
    backend.close()


def test_a_list_in_a_value_state_updated_in_place_survives_eviction(tmp_path: Path) -> None:
    backend, tables = rocksdb_backend(tmp_path, cache_entries=2)
    history = backend.get_state(ValueStateDescriptor("history"))
    for step in range(3):
        for key in ("a", "b", "c", "d"):
            backend.keys.current = key
            values = history.value()
            if values is None:
                values = []
                history.update(values)
            values.append(step)  # in place, no update(): the docs promise it works
    for key in ("a", "b", "c", "d"):
        backend.keys.current = key
        assert history.value() == [0, 1, 2]
    assert tables.misses > 8
    backend.close()


def test_a_key_without_state_is_read_from_rocksdb_once_while_cached(tmp_path: Path) -> None:
    backend, tables = rocksdb_backend(tmp_path, cache_entries=100)
    armed = backend.get_state(ValueStateDescriptor("armed"))
    backend.keys.current = "card-1"
    assert armed.value() is None and armed.value() is None
    assert tables.misses == 1  # the absence is cached too: Q3 reads absent state for most records
    armed.update((7, 1_000))
    armed.clear()
    assert armed.value() is None and tables.misses == 1
    backend.close()


def test_a_delete_reaches_rocksdb_when_its_entry_leaves_the_cache(tmp_path: Path) -> None:
    backend, tables = rocksdb_backend(tmp_path, cache_entries=2)
    armed = backend.get_state(ValueStateDescriptor("armed"))
    for key in ("a", "b", "c"):
        backend.keys.current = key
        armed.update(key)
    backend.keys.current = "a"
    armed.clear()  # "a" was evicted and read back: its delete is cached, then evicted below
    for key in ("d", "e", "f"):
        backend.keys.current = key
        armed.update(key)
    assert backend.tables()["armed"] == {"b": "b", "c": "c", "d": "d", "e": "e", "f": "f"}
    backend.keys.current = "b"
    armed.clear()
    backend.keys.current = "b"
    armed.update("again")  # set after a delete still cached: the value wins
    assert backend.tables()["armed"]["b"] == "again"
    assert tables.cached <= 2
    backend.close()


def write_back(tables: RocksDBTables) -> int:
    """What a native checkpoint writes back: the cached entries that differ from the store."""
    return sum(
        tables.write_changed(table, keys, values, table.family.get(keys))
        for table, keys, values in tables.serialized(10)
    )


def test_a_cached_delete_is_in_what_a_checkpoint_writes_back(tmp_path: Path) -> None:
    backend, tables = rocksdb_backend(tmp_path, cache_entries=100)
    armed = backend.get_state(ValueStateDescriptor("armed"))
    backend.keys.current = "a"
    armed.update(1)
    backend.keys.current = "b"
    assert armed.value() is None  # an absence read: nothing to write for it
    assert write_back(tables) == 1
    backend.keys.current = "a"
    armed.clear()
    assert write_back(tables) == 1  # the delete
    assert tables.tables[0].family.get(encode_key("a", tables.max_parallelism)) is None
    assert write_back(tables) == 0
    backend.close()


def test_the_current_keys_entries_are_never_evicted_under_it(tmp_path: Path) -> None:
    backend, _ = rocksdb_backend(tmp_path, cache_entries=1)
    names = [backend.get_state(ValueStateDescriptor(f"s{i}")) for i in range(4)]
    backend.keys.current = "k"
    lists = []
    for state in names:
        state.update([])
        lists.append(state.value())
    for values in lists:  # all four still live, though the cache holds one entry
        values.append("x")
    backend.keys.current = "other"
    names[0].update([])
    backend.keys.current = "k"
    assert [state.value() for state in names] == [["x"]] * 4
    backend.close()


def test_an_eviction_writes_back_a_bounded_chunk_however_large_the_cache(tmp_path: Path) -> None:
    """The loop waits for an eviction: a large cache lets go of EVICT_CHUNK entries at a time (an
    eighth of the default cache held the loop 95-130 ms at 10M keys), and every value comes back."""
    capacity = 10 * EVICT_CHUNK  # an eighth of it is more than a chunk
    backend, tables = rocksdb_backend(tmp_path, cache_entries=capacity)
    state = backend.get_state(ValueStateDescriptor("n"))
    for number in range(capacity + 1):
        backend.keys.current = number
        state.update(number)
    assert tables.cached == capacity + 1 - EVICT_CHUNK
    for number in range(capacity + EVICT_CHUNK):  # read back from the store, and evicting again
        backend.keys.current = number
        assert state.value() == (number if number <= capacity else None)
    backend.close()


def test_every_state_kind_and_the_lookups_from_outside_work_on_rocksdb(tmp_path: Path) -> None:
    backend, _ = rocksdb_backend(tmp_path, cache_entries=3)
    value = backend.get_state(ValueStateDescriptor("default", default=0))  # RocksDB has a "default"
    values = backend.get_list_state(ListStateDescriptor("list"))
    mapping = backend.get_map_state(MapStateDescriptor("map"))
    total = backend.get_reducing_state(ReducingStateDescriptor("total", operator.add))
    mean = backend.get_aggregating_state(AggregatingStateDescriptor("mean", Mean()))
    for i in range(40):
        backend.keys.current = i % 5
        value.update(value.value() + 1)
        values.add(i)
        mapping.put(i % 3, i)
        total.add(i)
        mean.add(float(i))
    backend.keys.current = 1
    mapping.remove(0)
    assert values.get() == list(range(1, 40, 5))
    assert (total.get(), mean.get()) == (sum(range(1, 40, 5)), sum(range(1, 40, 5)) / 8)
    assert sorted(backend.keys_in("default")) == [0, 1, 2, 3, 4]
    assert backend.states_of(1)["map"] == {1: 31, 2: 26}
    entry = backend.entry_of(2)
    restored, _ = rocksdb_backend(tmp_path / "again")
    restored.load_entries([(2, entry)])
    assert restored.states_of(2) == backend.states_of(2)
    backend.close()
    restored.close()


class Mean(AggregateFunction[float, tuple[float, int], float]):
    def create_accumulator(self) -> tuple[float, int]:
        return (0.0, 0)

    def add(self, value: float, accumulator: tuple[float, int]) -> tuple[float, int]:
        return (accumulator[0] + value, accumulator[1] + 1)

    def get_result(self, accumulator: tuple[float, int]) -> float:
        return accumulator[0] / accumulator[1]


# -- codecs and TTL ---------------------------------------------------------------------------------


def test_codecs_serialize_values_and_a_state_declared_after_a_restore_takes_its_codec(
    tmp_path: Path,
) -> None:
    calls: list[str] = []

    def dumps(value: Any) -> bytes:
        calls.append("dumps")
        return orjson.dumps(value)

    def loads(data: bytes) -> Any:
        calls.append("loads")
        return orjson.loads(data)

    backend, _ = rocksdb_backend(tmp_path, cache_entries=1)
    backend.load_tables({"mine": {"a": {"n": 1}, "b": {"n": 2}}})  # before the state is declared
    backend.get_state(ValueStateDescriptor("mine", codec=(dumps, loads)))
    profile = backend.get_state(ValueStateDescriptor("json", codec="json"))
    for key in "abc":
        backend.keys.current = key
        profile.update({"key": key, "scores": [1, 2]})
    assert backend.tables()["mine"] == {"a": {"n": 1}, "b": {"n": 2}}
    assert {"dumps", "loads"} <= set(calls)
    assert backend.tables()["json"]["a"] == {"key": "a", "scores": [1, 2]}
    with pytest.raises(StateError, match="unknown state codec 'yaml'"):
        backend.get_state(ValueStateDescriptor("bad", codec="yaml"))
    backend.close()


@pytest.mark.parametrize("codec", [None, "json"])
def test_ttl_entries_expire_on_rocksdb(tmp_path: Path, codec: str | None) -> None:
    clock = ManualClock()
    backend, _ = rocksdb_backend(tmp_path, cache_entries=2, clock=clock)
    seen = backend.get_state(ValueStateDescriptor("seen", ttl=StateTtl(1_000), codec=codec))
    for key in ("a", "b", "c", "d"):
        backend.keys.current = key
        seen.update({"key": key})
    clock.advance(500)
    backend.keys.current = "d"
    seen.update({"key": "d", "again": True})
    clock.advance(500)
    assert backend.tables()["seen"] == {"d": ({"key": "d", "again": True}, 1_500)}
    backend.keys.current = "a"
    assert seen.value() is None
    clock.advance(500)
    backend.keys.current = "d"
    assert seen.value() is None
    assert backend.state_size("seen") == 0
    backend.close()


# -- the backend in a flow ----------------------------------------------------------------------------


class Profile(KeyedProcessFunction[dict[str, Any], list[Any]]):
    """Every state kind, one with a TTL and a codec, and a list kept in a value state and
    updated in place."""

    def open(self, ctx: RuntimeContext) -> None:
        self.count = ctx.get_state(ValueStateDescriptor("count", default=0))
        self.seen = ctx.get_list_state(ListStateDescriptor("seen"))
        self.by_v = ctx.get_map_state(MapStateDescriptor("by_v"))
        self.total = ctx.get_reducing_state(ReducingStateDescriptor("total", operator.add))
        self.mean = ctx.get_aggregating_state(AggregatingStateDescriptor("mean", Mean()))
        self.last = ctx.get_state(ValueStateDescriptor("last", ttl=StateTtl(3_600_000), codec="json"))
        self.recent = ctx.get_state(ValueStateDescriptor("recent"))

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        v = value["v"]
        self.count.update(self.count.value() + 1)
        self.seen.add(v)
        self.by_v.put(v % 3, self.by_v.get(v % 3, 0) + 1)
        self.total.add(v)
        self.mean.add(float(v))
        self.last.update({"v": v})
        recent = self.recent.value()
        if recent is None:
            recent = []
            self.recent.update(recent)
        recent.append(v)  # in place
        if len(recent) > 3:
            del recent[0]
        out.collect(
            [
                ctx.current_key,
                self.count.value(),
                len(self.seen.get()),
                sorted(self.by_v.items()),
                self.total.get(),
                self.mean.get(),
                self.last.value(),
                list(recent),
            ]
        )


def _profile_flow(
    records: list[dict[str, Any]],
    checkpoints: Path,
    target: Path,
    stop_at: int | None,
    backend: str,
    rocks: Path,
) -> tuple[Flow, StoppingSource]:
    flow = Flow("profiles", parallelism=2, batch_size=25)
    if backend == "rocksdb":
        flow.set_state_backend("rocksdb", path=rocks, cache_entries=8)
    else:  # the heap, whatever $ACTORFLOW_STATE_BACKEND says
        flow.set_state_backend("heap")
    flow.enable_checkpointing(checkpoints)
    source = StoppingSource(records, flow, stop_at)
    flow.from_source(source).key_by("k").process(Profile()).sink_to_json_lines(target, exactly_once=True)
    return flow, source


def test_a_savepoint_taken_on_the_heap_restores_on_rocksdb_and_back(tmp_path: Path) -> None:
    """Stopped with a savepoint on the heap, resumed on RocksDB (a cache of 8 entries for 40
    keys), stopped again, finished on the heap: the output of a run without stops; RocksDB's
    directories are gone after each run."""
    n = 1_500
    records = [{"k": f"card-{i % 40}", "v": (i * 7) % 11} for i in range(n)]
    rocks = tmp_path / "rocks"
    reference = tmp_path / "reference.jsonl"
    _profile_flow(records, tmp_path / "reference-checkpoints", reference, None, "heap", rocks)[0].execute()
    target = tmp_path / "out.jsonl"
    for backend, stop_at in (("heap", n // 3), ("rocksdb", 2 * n // 3), ("heap", None)):
        flow, source = _profile_flow(records, tmp_path / "checkpoints", target, stop_at, backend, rocks)
        flow.execute()
        assert source.stopped == (stop_at is not None)
        assert not rocks.exists() or list(rocks.iterdir()) == []
    assert rocks.is_dir()  # the RocksDB run made its directories there, and deleted them

    def lines(path: Path) -> list[Any]:
        return sorted((orjson.loads(line) for line in path.read_bytes().splitlines()), key=repr)

    expected = lines(reference)
    assert len(expected) == n
    assert lines(target) == expected


def test_a_flow_on_rocksdb_gives_the_heaps_results_and_deletes_its_files(tmp_path: Path) -> None:
    records = [{"k": i % 13, "v": i % 5} for i in range(400)]
    results = []
    for backend in ("heap", "rocksdb"):
        flow = Flow("profiles", parallelism=2, batch_size=16)
        flow.set_state_backend(backend, path=tmp_path / "rocks", cache_entries=3)
        collected = flow.from_iterable(records).key_by("k").process(Profile()).collect()
        flow.execute()
        results.append(sorted(collected.values, key=repr))
    assert results[0] == results[1]
    assert list((tmp_path / "rocks").iterdir()) == []


def test_a_closed_store_leaves_its_path_at_once_and_its_files_in_a_worker_thread(tmp_path: Path) -> None:
    tables = RocksDBTables(StateBackendConfig("rocksdb", path=str(tmp_path)), "closing", 0)
    tables.table("n", None).update({key: key for key in range(1000)})
    tables.flush()
    removals: list[str] = []
    real_rmtree = removal.shutil.rmtree

    def rmtree(path: str, ignore_errors: bool = False) -> None:
        removals.append(threading.current_thread().name)
        real_rmtree(path, ignore_errors=ignore_errors)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(removal.shutil, "rmtree", rmtree)
        tables.close()
        assert not os.path.exists(tables.path)
        wait_removed()
    assert removals == ["actorflow-remove"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("close", [True, False])
def test_a_store_closed_or_left_open_is_deleted_before_the_process_exits(
    tmp_path: Path, close: bool
) -> None:
    """Closed just before the interpreter exits, the worker thread deleting it is waited for; left
    open, the finalizer deletes it at exit, in place."""
    script = (
        "from actorflow.state.backends import StateBackendConfig\n"
        "from actorflow.state.rocksdb import RocksDBTables\n"
        f"tables = RocksDBTables(StateBackendConfig('rocksdb', path={str(tmp_path)!r}), 'exiting', 0)\n"
        "tables.table('n', None).update({key: key for key in range(20000)})\n"
        "tables.flush()\n" + ("tables.close()\n" if close else "")
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    assert list(tmp_path.iterdir()) == []


def test_choosing_rocksdb_without_rocksdict_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rocksdict", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "actorflow.state.rocksdb")
    with pytest.raises(
        PlanError, match=r"^the rocksdb state backend needs rocksdict: pip install 'actorflow\[rocksdb\]'$"
    ):
        Flow("f").set_state_backend("rocksdb")
    with pytest.raises(StateError, match="needs rocksdict"):
        open_tables(StateBackendConfig("rocksdb"), "op", 0)
    with pytest.raises(PlanError, match="unknown state backend 'lmdb'"):
        Flow("f").set_state_backend("lmdb")


def test_a_killed_processs_directories_are_deleted_by_the_next_process(tmp_path: Path) -> None:
    """SIGKILL leaves an instance's directory behind; the next process that opens RocksDB state
    in the same place deletes it (its owner is gone), and keeps those of live processes."""
    script = (
        "import os, signal\n"
        "from actorflow.state.backends import StateBackendConfig\n"
        "from actorflow.state.rocksdb import PREFIX, RocksDBTables, sweep_stale\n"
        f"tables = RocksDBTables(StateBackendConfig('rocksdb', path={str(tmp_path)!r}), 'killed', 0)\n"
        "tables.table('n', None)['k'] = 1\n"
        "tables.flush()\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], check=False)
    assert done.returncode == -signal.SIGKILL
    left = [path.name for path in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(PREFIX)
    live = tmp_path / f"{PREFIX}{os.getpid()}-mine-0-x"
    live.mkdir()
    assert sweep_stale(str(tmp_path)) == left
    assert [path.name for path in tmp_path.iterdir()] == [live.name]
