"""Native, incremental RocksDB checkpoints: only new SST files are stored, a restore at the same
parallelism opens the checkpoint's files, one at another parallelism (or on the heap) reads the key
groups it owns, and the local checkpoint directories go once a checkpoint completes or aborts."""

from __future__ import annotations

import asyncio
import itertools
import os
import pickle
import sys
from pathlib import Path
from typing import Any

import pytest

from actorflow.checkpoint.filesystem import FileSystemStorage
from actorflow.checkpoint.parts import SnapshotPart
from actorflow.errors import StateError
from actorflow.operators.base import Collector, OperatorContext
from actorflow.operators.broadcast import (
    BroadcastContext,
    KeyedBroadcastProcessFunction,
    KeyedBroadcastProcessOperator,
)
from actorflow.operators.process import Context, KeyedProcessFunction, KeyedProcessOperator, RuntimeContext
from actorflow.runtime.messages import Batch
from actorflow.state.backends import StateBackendConfig
from actorflow.state.descriptors import (
    MapStateDescriptor,
    ValueStateDescriptor,
)
from actorflow.state.keygroups import key_group
from actorflow.state.removal import wait_removed
from actorflow.state.rocksdb import PREFIX, RocksDBTables
from actorflow.state.rocksdb_timers import RocksDBTimerQueue
from tests.checkpoint_flows import (
    Profile,
    build,
    completed,
    contents,
    feed,
    lines,
    new_shared_bytes,
    records,
    reference_run,
)


@pytest.fixture
def reference(tmp_path: Path) -> tuple[list[dict[str, Any]], list[Any]]:
    return reference_run(tmp_path)


# -- the checkpoints ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cache_entries", [16, 100_000], ids=["small-cache", "every-key-cached"])
def test_a_checkpoint_after_few_changes_stores_only_the_new_sst_files(
    tmp_path: Path, cache_entries: int
) -> None:
    """Every key, then a checkpoint; ten keys more, then another: the second stores a small
    fraction of the first's SST bytes, also when every key is in the cache (where any entry may
    have changed in place: only those whose bytes changed are written back)."""
    keys = 3_000
    items = records(2 * keys, keys) + records(10, keys)
    flow, source = build(
        items,
        tmp_path / "checkpoints",
        tmp_path / "out.jsonl",
        parallelism=1,
        backend="rocksdb",
        rocks=tmp_path / "rocks",
        gates=[2 * keys, 2 * keys + 10],
        cache_entries=cache_entries,
    )
    flow.execute()
    assert source.checkpointed == [2 * keys, 2 * keys + 10]
    first, second = completed(tmp_path / "checkpoints")[:2]
    assert first.shared and all(key.startswith("rocksdb/") for key in first.shared)
    full, incremental = new_shared_bytes([first, second])
    assert full > 50_000
    assert incremental < full / 10, (full, incremental)
    assert set(first.shared) & set(second.shared), "the second checkpoint lists the first's files"


def test_the_local_checkpoints_are_deleted_when_they_complete_abort_or_the_operator_closes(
    tmp_path: Path,
) -> None:
    operator = open_operator(tmp_path, 0, 1)
    feed(operator, range(50))
    instance = only_instance(tmp_path / "rocks")

    def local_checkpoints() -> list[str]:
        return sorted(name for name in os.listdir(instance) if name.startswith("checkpoint-"))

    async def scenario() -> None:
        part = await operator.checkpoint_state_async(1)
        assert isinstance(part, SnapshotPart) and part.shared
        assert all(map(os.path.exists, part.shared.values()))
        await operator.checkpoint_state_async(2)
        assert local_checkpoints() == ["checkpoint-1", "checkpoint-2"]
        await operator.checkpoint_complete(1)
        assert local_checkpoints() == ["checkpoint-2"]
        await operator.checkpoint_aborted(2)
        assert local_checkpoints() == []
        await operator.checkpoint_state_async(3)
        assert local_checkpoints() == ["checkpoint-3"]

    asyncio.run(scenario())
    operator.close()
    assert not os.path.exists(instance)


def test_a_checkpoint_aborted_while_it_is_taken_leaves_no_local_directory(tmp_path: Path) -> None:
    """The coordinator may abort (time out) a checkpoint while the operator is still taking it:
    its local directory is deleted once taken, and the next checkpoint is whole."""
    operator = open_operator(tmp_path, 0, 1)
    feed(operator, range(100))
    instance = only_instance(tmp_path / "rocks")

    async def scenario() -> None:
        taking = asyncio.ensure_future(operator.checkpoint_state_async(1))
        await asyncio.sleep(0)  # it starts, and waits for its first worker thread
        assert not taking.done()
        await operator.checkpoint_aborted(1)
        assert isinstance(await taking, SnapshotPart)
        assert not any(name.startswith("checkpoint-") for name in os.listdir(instance))
        part = await operator.checkpoint_state_async(2)
        assert isinstance(part, SnapshotPart) and isinstance(part.data, bytes)
        assert all(map(os.path.exists, part.shared.values()))

    asyncio.run(scenario())
    operator.close()


def test_an_aborted_checkpoint_does_not_break_the_next_one(tmp_path: Path) -> None:
    """The storage deletes what only an aborted checkpoint wrote; the next one lists the same
    SST files and stores them again, and restores."""
    storage = FileSystemStorage(tmp_path / "checkpoints")
    operator = open_operator(tmp_path, 0, 1)
    feed(operator, range(200))

    async def checkpoint(checkpoint_id: int, commit: bool) -> None:
        part = await operator.checkpoint_state_async(checkpoint_id)
        assert isinstance(part, SnapshotPart) and isinstance(part.data, bytes)
        storage.write_part(checkpoint_id, "process/0", part.data)
        for key, path in part.shared.items():
            storage.write_shared(checkpoint_id, key, path)
        if commit:
            storage.commit(checkpoint_id)
            await operator.checkpoint_complete(checkpoint_id)
        else:
            storage.abort(checkpoint_id)
            await operator.checkpoint_aborted(checkpoint_id)

    asyncio.run(checkpoint(1, commit=False))
    feed(operator, range(200, 220))
    asyncio.run(checkpoint(2, commit=True))
    expected = contents([operator])
    operator.close()
    loaded = storage.load_latest()
    assert loaded is not None and loaded.info.checkpoint_id == 2
    restored = open_operator(tmp_path, 0, 1, files=loaded.files)
    restored.restore_state([pickle.loads(loaded.parts["process/0"])])
    assert contents([restored]) == expected
    store = restored.backend.store
    assert isinstance(store, RocksDBTables)
    ssts = [name for name in os.listdir(store.db_path) if name.endswith(".sst")]
    assert ssts and all(os.stat(os.path.join(store.db_path, name)).st_nlink > 1 for name in ssts), (
        "opened on the checkpoint's files, hard-linked from the storage"
    )
    restored.close()
    halves = [open_operator(tmp_path, index, 2, files=loaded.files) for index in (0, 1)]
    for half in halves:
        half.restore_state([pickle.loads(loaded.parts["process/0"])])
        owned = half.context.key_groups
        assert all(key_group(key, 128) in owned for key in half.backend.keys_in("count"))
    assert contents(halves) == expected
    for half in halves:
        half.close()


# -- restores in a flow -------------------------------------------------------------------------------


def test_a_restore_at_the_same_parallelism_gives_the_output_of_a_run_without_failure(
    tmp_path: Path, reference: tuple[list[dict[str, Any]], list[Any]]
) -> None:
    """Crashed after two checkpoints, restarted on RocksDB at the same parallelism: the output of
    a run without failure, and the restarted run's first checkpoint stores only new files (the
    restored databases keep the keys of the files they were opened from)."""
    items, expected = reference
    checkpoints, target, rocks = tmp_path / "checkpoints", tmp_path / "out.jsonl", tmp_path / "rocks"
    first, _ = build(
        items, checkpoints, target, parallelism=2, backend="rocksdb", rocks=rocks, gates=[800, 1_200],
        crash_at=1_400,
    )  # fmt: skip
    with pytest.raises(RuntimeError, match="crash"):
        first.execute()
    assert [info.checkpoint_id for info in completed(checkpoints)] == [1, 2]
    second, source = build(
        items, checkpoints, target, parallelism=2, backend="rocksdb", rocks=rocks, gates=[1_600]
    )
    second.execute()
    assert source.checkpointed == [1_600]
    assert lines(target) == expected
    infos = completed(checkpoints)
    restored_from, after = infos[1], infos[2]
    assert set(restored_from.shared) & set(after.shared), "the files restored from were not uploaded again"
    assert new_shared_bytes([restored_from, after])[1] < sum(e["size"] for e in after.shared.values())
    wait_removed()  # closed stores' directories go in a worker thread
    assert list(rocks.iterdir()) == []


@pytest.mark.parametrize("parallelisms", [(2, 3), (3, 1)], ids=["2-to-3", "3-to-1"])
def test_a_restore_at_another_parallelism_reads_the_key_groups_it_owns(
    tmp_path: Path, reference: tuple[list[dict[str, Any]], list[Any]], parallelisms: tuple[int, int]
) -> None:
    items, expected = reference
    checkpoints, target, rocks = tmp_path / "checkpoints", tmp_path / "out.jsonl", tmp_path / "rocks"
    before, after = parallelisms
    first, _ = build(
        items, checkpoints, target, parallelism=before, backend="rocksdb", rocks=rocks, gates=[1_000],
        crash_at=1_300,
    )  # fmt: skip
    with pytest.raises(RuntimeError, match="crash"):
        first.execute()
    second, _ = build(items, checkpoints, target, parallelism=after, backend="rocksdb", rocks=rocks)
    second.execute()
    assert lines(target) == expected
    wait_removed()  # closed stores' directories go in a worker thread
    assert list(rocks.iterdir()) == []


def test_a_rocksdb_checkpoint_restores_on_the_heap(
    tmp_path: Path, reference: tuple[list[dict[str, Any]], list[Any]]
) -> None:
    items, expected = reference
    checkpoints, target, rocks = tmp_path / "checkpoints", tmp_path / "out.jsonl", tmp_path / "rocks"
    first, _ = build(
        items, checkpoints, target, parallelism=2, backend="rocksdb", rocks=rocks, gates=[1_000],
        crash_at=1_300,
    )  # fmt: skip
    with pytest.raises(RuntimeError, match="crash"):
        first.execute()
    assert completed(checkpoints)[-1].shared
    second, _ = build(items, checkpoints, target, parallelism=3, backend="heap", rocks=rocks)
    second.execute()
    assert lines(target) == expected


# -- operators, directly ------------------------------------------------------------------------------


def open_operator(tmp_path: Path, index: int, parallelism: int, files: Any = None) -> KeyedProcessOperator:
    operator = KeyedProcessOperator("process", Profile(), lambda record: record["k"])
    config = StateBackendConfig("rocksdb", path=str(tmp_path / "rocks"), cache_entries=16)
    operator.open(
        OperatorContext(
            "process", index, parallelism, state_backend=config, checkpointing=True, restored_files=files
        )
    )
    return operator


def only_instance(rocks: Path) -> str:
    (instance,) = [path for path in rocks.iterdir() if path.name.startswith(PREFIX)]
    return str(instance)


def test_tables_are_rocksdb_tables_in_these_tests(tmp_path: Path) -> None:
    operator = open_operator(tmp_path, 0, 1)
    assert isinstance(operator.backend.store, RocksDBTables)
    assert operator.native_checkpoints is not None
    assert isinstance(operator.event_timers, RocksDBTimerQueue)  # timers in the store too
    assert isinstance(operator.processing_timers, RocksDBTimerQueue)
    operator.close()


def test_a_rocksdb_checkpoint_needs_rocksdict_to_restore_on_the_heap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    operator = open_operator(tmp_path, 0, 1)
    feed(operator, range(10))
    part = asyncio.run(operator.checkpoint_state_async(1))
    assert isinstance(part, SnapshotPart) and isinstance(part.data, bytes)
    operator.close()
    monkeypatch.setitem(sys.modules, "rocksdict", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "actorflow.state.rocksdb_checkpoint")
    monkeypatch.delitem(sys.modules, "actorflow.state.rocksdb")
    heap = KeyedProcessOperator("process", Profile(), lambda record: record["k"])
    heap.open(OperatorContext("process", 0, 1))
    with pytest.raises(StateError, match=r"holds RocksDB state, which needs rocksdict"):
        heap.restore_state([pickle.loads(part.data)])


class Lazy(KeyedProcessFunction[dict[str, Any], Any]):
    """Declares its JSON-coded state on the first record, not in ``open``: a restore meets the
    state before its declaration."""

    def open(self, ctx: RuntimeContext) -> None:
        self.ctx = ctx

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        last = self.ctx.get_state(ValueStateDescriptor[Any]("last", codec="json"))
        seen = last.value()
        last.update({"v": value["v"], "before": None if seen is None else seen["v"]})
        out.collect(last.value())


@pytest.mark.parametrize("parallelism", [1, 2], ids=["whole", "key-group-ranges"])
def test_a_state_restored_before_its_declaration_reads_as_it_was_stored(
    tmp_path: Path, parallelism: int
) -> None:
    def lazy_operator(index: int, files: Any = None) -> KeyedProcessOperator:
        operator = KeyedProcessOperator("process", Lazy(), lambda record: record["k"])
        config = StateBackendConfig("rocksdb", path=str(tmp_path / "rocks"), cache_entries=4)
        context = OperatorContext("process", index, parallelism, state_backend=config, restored_files=files)
        operator.open(context)
        return operator

    storage = FileSystemStorage(tmp_path / "checkpoints")
    operator = KeyedProcessOperator("process", Lazy(), lambda record: record["k"])
    operator.open(
        OperatorContext(
            "process",
            state_backend=StateBackendConfig("rocksdb", path=str(tmp_path / "rocks"), cache_entries=4),
        )
    )
    operator.process(Batch([{"k": f"k{n % 9}", "v": n} for n in range(30)]))
    part = asyncio.run(operator.checkpoint_state_async(1))
    assert isinstance(part, SnapshotPart) and isinstance(part.data, bytes)
    storage.write_part(1, "process/0", part.data)
    for key, path in part.shared.items():
        storage.write_shared(1, key, path)
    storage.commit(1)
    operator.close()
    loaded = storage.load_latest()
    assert loaded is not None
    results = []
    for index in range(parallelism):
        restored = lazy_operator(index, loaded.files)
        restored.restore_state([pickle.loads(loaded.parts["process/0"])])
        keys = [f"k{n}" for n in range(9)]
        owned = [key for key in keys if key_group(key, 128) in restored.context.key_groups]
        results += restored.process(Batch([{"k": key, "v": 100} for key in owned])).values
        restored.close()
    assert sorted(result["before"] for result in results) == list(range(21, 30))


RULES = MapStateDescriptor("rules")


class Rated(KeyedBroadcastProcessFunction[dict[str, Any], tuple[str, int], Any]):
    """Broadcast rates by name; a running total per key, in keyed state."""

    def open(self, ctx: RuntimeContext) -> None:
        self.total = ctx.get_state(ValueStateDescriptor[int]("total", default=0))

    def process_element(self, value: dict[str, Any], ctx: BroadcastContext, out: Collector) -> None:
        self.total.update(self.total.value() + value["v"] * ctx.get_broadcast_state(RULES).get("rate", 1))
        out.collect((ctx.current_key, self.total.value()))

    def process_broadcast_element(
        self, value: tuple[str, int], ctx: BroadcastContext, out: Collector
    ) -> None:
        ctx.get_broadcast_state(RULES)[value[0]] = value[1]


def test_a_keyed_broadcast_operators_native_checkpoint_keeps_its_broadcast_state(tmp_path: Path) -> None:
    config = StateBackendConfig("rocksdb", path=str(tmp_path / "rocks"), cache_entries=4)

    def rated(files: Any = None) -> KeyedBroadcastProcessOperator:
        operator = KeyedBroadcastProcessOperator("rated", Rated(), lambda record: record["k"], [RULES])
        operator.open(OperatorContext("rated", state_backend=config, restored_files=files))
        return operator

    storage = FileSystemStorage(tmp_path / "checkpoints")
    operator = rated()
    operator.process_input(Batch([("rate", 3)]), 1)
    operator.process_input(Batch([{"k": f"k{n % 5}", "v": 1} for n in range(20)]), 0)
    part = asyncio.run(operator.checkpoint_state_async(1))
    assert isinstance(part, SnapshotPart) and isinstance(part.data, bytes)
    state = pickle.loads(part.data)
    assert "rocksdb" in state and state["broadcast"] == {"rules": {"rate": 3}}
    storage.write_part(1, "rated/0", part.data)
    for key, path in part.shared.items():
        storage.write_shared(1, key, path)
    storage.commit(1)
    operator.close()
    loaded = storage.load_latest()
    assert loaded is not None
    restored = rated(loaded.files)
    restored.restore_state([pickle.loads(loaded.parts["rated/0"])])
    assert restored.broadcast_state == {"rules": {"rate": 3}}
    out = restored.process_input(Batch([{"k": "k0", "v": 1}]), 0)
    assert out is not None and out.values == [("k0", 15)]
    restored.close()


@pytest.mark.parametrize("target", ["whole", "key-group-ranges", "heap"])
def test_a_native_checkpoint_keeps_its_timers_in_the_store_and_a_restore_gets_them_all(
    tmp_path: Path, target: str
) -> None:
    """Taking the checkpoint reads no timer (the part exports none, it counts them); restored whole
    the queues adopt the store's timers, by key-group ranges or onto the heap they are read."""
    storage = FileSystemStorage(tmp_path / "checkpoints")
    operator = open_operator(tmp_path, 0, 1)
    feed(operator, range(100))  # 37 keys, an event-time timer each
    expected = contents([operator])
    part = asyncio.run(operator.checkpoint_state_async(1))
    assert isinstance(part, SnapshotPart) and isinstance(part.data, bytes)
    saved = pickle.loads(part.data)
    assert saved["event"] is None and saved["processing"] is None
    assert saved["rocksdb"]["timers"]["event"]["count"] == 37
    storage.write_part(1, "process/0", part.data)
    for key, path in part.shared.items():
        storage.write_shared(1, key, path)
    storage.commit(1)
    asyncio.run(operator.checkpoint_complete(1))
    operator.close()
    loaded = storage.load_latest()
    assert loaded is not None

    if target == "heap":
        restored = [KeyedProcessOperator("process", Profile(), lambda record: record["k"])]
        restored[0].open(OperatorContext("process", 0, 1, restored_files=loaded.files))
    else:
        parallelism = 1 if target == "whole" else 2
        restored = [
            open_operator(tmp_path, index, parallelism, loaded.files) for index in range(parallelism)
        ]
    for instance in restored:
        instance.restore_state([pickle.loads(loaded.parts["process/0"])])
    assert contents(restored) == expected
    assert sum(len(instance.event_timers) for instance in restored) == 37
    fired = []
    for instance in restored:
        fired += instance.process(Batch([], marks=[(0, 2_000_000)])).values
        assert len(instance.event_timers) == 0 and instance.event_timers.next_time is None
        instance.close()
    assert sorted(value[1] for value in fired) == sorted(expected[0]["count"])


def test_checkpoints_of_small_changes_keep_the_files_of_the_first(tmp_path: Path) -> None:
    """Compaction in tiers: up to twelve flushes wait unmerged, so ten checkpoints of a few changes
    each store their own new files and never the first one's again (leveled compaction merged
    every four flushes, rewriting the base, which the next checkpoint then stored again)."""
    operator = open_operator(tmp_path, 0, 1)
    listed: list[set[str]] = []
    for checkpoint_id in range(1, 11):
        feed(operator, range(checkpoint_id * 100, checkpoint_id * 100 + 50))
        part = asyncio.run(operator.checkpoint_state_async(checkpoint_id))
        assert isinstance(part, SnapshotPart)
        listed.append(set(part.shared))
        asyncio.run(operator.checkpoint_complete(checkpoint_id))
    operator.close()
    assert listed[0] and listed[0] <= listed[-1], "a file of the first checkpoint was compacted away"
    assert all(len(now - before) <= 5 for before, now in itertools.pairwise(listed))  # a flush per family
