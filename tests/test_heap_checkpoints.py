"""Incremental checkpoints on the heap (``set_state_backend("heap", incremental=True)``): a base,
then the keys changed since the previous checkpoint, each a shared file; restores fold them back
into the whole state, at any parallelism and onto either backend; savepoints stay whole."""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import os
import pickle
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from actorflow.checkpoint.filesystem import FileSystemStorage
from actorflow.checkpoint.parts import SnapshotPart
from actorflow.operators.base import Collector, OperatorContext
from actorflow.operators.process import Context, KeyedProcessFunction, KeyedProcessOperator, RuntimeContext
from actorflow.runtime.messages import Batch
from actorflow.state import heap_checkpoint
from actorflow.state.backends import StateBackendConfig
from actorflow.state.descriptors import ListStateDescriptor, ValueStateDescriptor
from actorflow.state.keygroups import key_group
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

INCREMENTAL = "heap-incremental"
needs_rocksdict = pytest.mark.skipif(importlib.util.find_spec("rocksdict") is None, reason="no rocksdict")


@pytest.fixture
def reference(tmp_path: Path) -> tuple[list[dict[str, Any]], list[Any]]:
    return reference_run(tmp_path)


def chains(checkpoints: Path, part: str = "process/0") -> list[list[str]]:
    """Each complete checkpoint's chain of shared keys in ``part`` (the final checkpoint at the end
    of the input is whole: it has none)."""
    storage = FileSystemStorage(checkpoints, retain=10)
    states = [pickle.loads(storage.read_part(info, part)) for info in storage.completed()]
    return [state["heap"] for state in states if "heap" in state]


# -- in a flow ----------------------------------------------------------------------------------------


def test_a_checkpoint_after_few_changes_stores_only_the_changed_keys(tmp_path: Path) -> None:
    keys = 3_000
    items = records(2 * keys, keys) + records(10, keys) + records(10, keys)
    gates = [2 * keys, 2 * keys + 10, 2 * keys + 20]
    flow, source = build(
        items,
        tmp_path / "checkpoints",
        tmp_path / "out.jsonl",
        parallelism=1,
        backend=INCREMENTAL,
        gates=gates,
    )
    flow.execute()
    assert source.checkpointed == gates
    infos = completed(tmp_path / "checkpoints")[:3]
    base, first, second = chains(tmp_path / "checkpoints")[:3]
    assert len(base) == 1 and base[0].startswith("heap/")
    assert first == base + first[1:] and len(first) == 2
    assert second == first + second[2:] and len(second) == 3
    full, *changes = new_shared_bytes(infos)
    assert full > 100_000
    assert all(0 < change < full / 50 for change in changes), (full, changes)


def test_a_restore_folds_the_changes_into_the_base_and_resumes_exactly(
    tmp_path: Path, reference: tuple[list[dict[str, Any]], list[Any]]
) -> None:
    items, expected = reference
    checkpoints, target = tmp_path / "checkpoints", tmp_path / "out.jsonl"
    gates = [800, 850, 900]  # 50 records change fewer than 50 of 300 keys: chained changes
    first, _ = build(
        items, checkpoints, target, parallelism=2, backend=INCREMENTAL, gates=gates, crash_at=1_400
    )
    with pytest.raises(RuntimeError, match="crash"):
        first.execute()
    assert [len(chain) for chain in chains(checkpoints)] == [1, 2, 3]
    second, _ = build(items, checkpoints, target, parallelism=2, backend=INCREMENTAL, gates=[1_600])
    second.execute()
    assert lines(target) == expected
    assert len(chains(checkpoints)[-1]) == 1, "the first checkpoint after a restore is a base"


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ((2, "heap-incremental"), (3, "heap-incremental")),
        ((3, "heap-incremental"), (1, "heap")),
        pytest.param((2, "heap-incremental"), (3, "rocksdb"), marks=needs_rocksdict),
        pytest.param((2, "rocksdb"), (1, "heap-incremental"), marks=needs_rocksdict),
    ],
    ids=["2-to-3", "3-to-1-whole-heap", "onto-rocksdb", "from-rocksdb"],
)
def test_a_restore_at_another_parallelism_or_backend_resumes_exactly(
    tmp_path: Path,
    reference: tuple[list[dict[str, Any]], list[Any]],
    before: tuple[int, str],
    after: tuple[int, str],
) -> None:
    items, expected = reference
    checkpoints, target = tmp_path / "checkpoints", tmp_path / "out.jsonl"
    first, _ = build(
        items,
        checkpoints,
        target,
        parallelism=before[0],
        backend=before[1],
        gates=[900, 950],
        crash_at=1_300,
    )
    with pytest.raises(RuntimeError, match="crash"):
        first.execute()
    second, _ = build(items, checkpoints, target, parallelism=after[0], backend=after[1])
    second.execute()
    assert lines(target) == expected


def test_a_savepoint_is_whole_and_lists_no_shared_file(tmp_path: Path) -> None:
    storage = FileSystemStorage(tmp_path / "checkpoints")
    operator = open_operator(tmp_path, 0, 1)
    feed(operator, range(100))
    state = asyncio.run(operator.snapshot_state_async())
    assert "heap" not in state and set(state["state"]["count"]) == {f"card-{n}" for n in range(37)}
    asyncio.run(checkpoint(operator, storage, 1))
    feed(operator, range(100, 110))
    assert "heap" not in asyncio.run(operator.snapshot_state_async())
    operator.close()


# -- an operator, directly ----------------------------------------------------------------------------


def open_operator(tmp_path: Path, index: int, parallelism: int, files: Any = None) -> KeyedProcessOperator:
    operator = KeyedProcessOperator("process", Profile(), lambda record: record["k"])
    config = StateBackendConfig("heap", path=str(tmp_path), incremental=True)
    operator.open(
        OperatorContext(
            "process", index, parallelism, state_backend=config, checkpointing=True, restored_files=files
        )
    )
    return operator


async def checkpoint(
    operator: KeyedProcessOperator, storage: FileSystemStorage, checkpoint_id: int, *, commit: bool = True
) -> list[str]:
    """Take checkpoint ``checkpoint_id`` of ``operator`` into ``storage`` as the coordinator would:
    its chain."""
    part = await operator.checkpoint_state_async(checkpoint_id)
    assert isinstance(part, SnapshotPart) and isinstance(part.data, bytes)
    storage.write_part(checkpoint_id, "process/0", part.data)
    for key, path in part.shared.items():
        storage.write_shared(checkpoint_id, key, path if isinstance(path, str) else await path)
    if commit:
        storage.commit(checkpoint_id)
        await operator.checkpoint_complete(checkpoint_id)
    else:
        storage.abort(checkpoint_id)
        await operator.checkpoint_aborted(checkpoint_id)
    chain: list[str] = pickle.loads(part.data)["heap"]
    return chain


def restored(
    tmp_path: Path, storage: FileSystemStorage, parallelism: int = 1
) -> list[KeyedProcessOperator]:
    loaded = storage.load_latest()
    assert loaded is not None
    instances = [
        open_operator(tmp_path, index, parallelism, files=loaded.files) for index in range(parallelism)
    ]
    for instance in instances:
        instance.restore_state([pickle.loads(loaded.parts["process/0"])])
    return instances


def test_changes_that_outgrow_the_base_start_a_new_base(tmp_path: Path) -> None:
    """A checkpoint writes a base exactly when the changes since the last base have grown larger
    than it; the chains restore whatever their length."""
    storage = FileSystemStorage(tmp_path / "checkpoints", retain=10)
    operator = open_operator(tmp_path, 0, 1)
    heap = operator.heap_checkpoints
    assert heap is not None
    lengths, outgrown = [], []
    feed(operator, range(74))  # every one of the 37 keys
    for checkpoint_id in range(1, 10):
        feed(operator, range(checkpoint_id * 100, checkpoint_id * 100 + 10))  # 10 of the 37 keys
        outgrown.append(heap.changes_bytes > heap.base_bytes)
        lengths.append(len(asyncio.run(checkpoint(operator, storage, checkpoint_id))))
    assert 1 in lengths[1:] and max(lengths) >= 3, lengths
    assert [length == 1 for length in lengths[1:]] == outgrown[1:], (lengths, outgrown)
    expected = contents([operator])
    operator.close()
    assert contents(restored(tmp_path, storage)) == expected


def test_a_checkpoint_after_many_keys_changed_is_a_base(tmp_path: Path) -> None:
    storage = FileSystemStorage(tmp_path / "checkpoints", retain=10)
    operator = open_operator(tmp_path, 0, 1)
    feed(operator, range(37))
    assert len(asyncio.run(checkpoint(operator, storage, 1))) == 1
    feed(operator, range(100, 110))  # 10 of 37 keys: a change
    assert len(asyncio.run(checkpoint(operator, storage, 2))) == 2
    feed(operator, range(200, 212))  # 12 of 37, over 30 %: a base
    assert len(asyncio.run(checkpoint(operator, storage, 3))) == 1
    operator.close()


def test_an_aborted_checkpoint_makes_the_next_one_a_base_and_nothing_is_lost(tmp_path: Path) -> None:
    storage = FileSystemStorage(tmp_path / "checkpoints", retain=10)
    operator = open_operator(tmp_path, 0, 1)
    feed(operator, range(100))
    assert len(asyncio.run(checkpoint(operator, storage, 1))) == 1
    feed(operator, range(100, 105))
    assert len(asyncio.run(checkpoint(operator, storage, 2, commit=False))) == 2
    feed(operator, range(105, 110))
    assert len(asyncio.run(checkpoint(operator, storage, 3))) == 1
    expected = contents([operator])
    operator.close()
    assert contents(restored(tmp_path, storage)) == expected


def test_a_restore_at_another_parallelism_keeps_the_key_groups_it_owns(tmp_path: Path) -> None:
    storage = FileSystemStorage(tmp_path / "checkpoints", retain=10)
    operator = open_operator(tmp_path, 0, 1)
    feed(operator, range(100))
    asyncio.run(checkpoint(operator, storage, 1))
    feed(operator, range(100, 130))
    asyncio.run(checkpoint(operator, storage, 2))
    expected = contents([operator])
    operator.close()
    halves = restored(tmp_path, storage, parallelism=2)
    for half in halves:
        owned = half.context.key_groups
        assert all(key_group(key, 128) in owned for key in half.backend.keys_in("count"))
        assert all(key_group(key, 128) in owned for key in half.event_timers.export()[1])
    assert contents(halves) == expected
    for half in halves:
        half.close()


def test_local_files_go_when_their_checkpoint_completes_or_aborts_and_the_directory_at_close(
    tmp_path: Path,
) -> None:
    storage = FileSystemStorage(tmp_path / "checkpoints", retain=10)
    operator = open_operator(tmp_path, 0, 1)
    feed(operator, range(50))
    asyncio.run(checkpoint(operator, storage, 1))
    feed(operator, range(50, 60))
    asyncio.run(checkpoint(operator, storage, 2, commit=False))
    (scratch,) = [path for path in tmp_path.iterdir() if path.name.startswith("actorflow-heap-")]
    assert list(scratch.iterdir()) == []
    operator.close()
    assert not scratch.exists()


def test_a_large_change_is_built_in_a_forked_child_as_the_state_was_at_the_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every base and change pickled in a child, the records the operator takes right after
    the checkpoint returned are not in it, and a restore gives the state at the checkpoint."""
    if not hasattr(os, "fork"):
        pytest.skip("no fork here")
    monkeypatch.setattr(heap_checkpoint, "FORK_ENTRIES", 0)
    storage = FileSystemStorage(tmp_path / "checkpoints", retain=10)
    operator = open_operator(tmp_path, 0, 1)

    async def checkpoints() -> Any:
        feed(operator, range(100))
        await checkpoint(operator, storage, 1)
        feed(operator, range(100, 120))
        part = await operator.checkpoint_state_async(2)
        at_checkpoint = copy.deepcopy(contents([operator]))  # lists in state change in place
        feed(operator, range(120, 200))  # while the child builds the change
        assert isinstance(part, SnapshotPart) and isinstance(part.data, bytes)
        storage.write_part(2, "process/0", part.data)
        for key, path in part.shared.items():
            storage.write_shared(2, key, path if isinstance(path, str) else await path)
        storage.commit(2)
        await operator.checkpoint_complete(2)
        return at_checkpoint

    expected = asyncio.run(checkpoints())
    assert contents([operator]) != expected
    operator.close()
    assert contents(restored(tmp_path, storage)) == expected


class Expiring(KeyedProcessFunction[int, Any]):
    """Per key a count and a list, and a timer 1 ms after each record; a timer clears the key's
    state when its count is even: records add, change and remove keys and timers."""

    def open(self, ctx: RuntimeContext) -> None:
        self.count = ctx.get_state(ValueStateDescriptor[int]("count", default=0))
        self.seen = ctx.get_list_state(ListStateDescriptor[int]("seen"))

    def process_element(self, value: int, ctx: Context, out: Collector) -> None:
        self.count.update(self.count.value() + 1)
        self.seen.add(value)
        assert ctx.timestamp is not None
        ctx.timer_service().register_event_time_timer(ctx.timestamp + 1)

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        if self.count.value() % 2 == 0:
            self.count.clear()
            self.seen.clear()


steps = st.lists(
    st.one_of(
        st.tuples(st.just("records"), st.lists(st.integers(0, 30), min_size=1, max_size=12)),
        st.tuples(st.just("watermark"), st.integers(0, 4)),
        st.tuples(st.just("checkpoint"), st.booleans()),
    ),
    max_size=30,
)


def run_steps(
    operator: KeyedProcessOperator, storage: FileSystemStorage, steps: list[tuple[str, Any]]
) -> Any:
    """Run ``steps`` on ``operator``: the contents at the last checkpoint that completed, or None."""
    time = watermark = 0
    expected = None
    for checkpoint_id, (kind, arg) in enumerate(steps, start=1):
        if kind == "records":
            time += 2
            operator.process(Batch(arg, [time] * len(arg)))
        elif kind == "watermark":
            watermark = max(watermark, time - arg)
            operator.process(Batch([], [], [(0, watermark)]))
        else:
            asyncio.run(checkpoint(operator, storage, checkpoint_id, commit=arg))
            if arg:
                expected = copy.deepcopy(contents([operator]))
    return expected


@settings(max_examples=40, deadline=None)
@given(steps=steps, parallelism=st.sampled_from([1, 2]))
@example(  # key 1's timer at 3 is in the first change, fired before the second: gone
    steps=[("records", [1]), ("checkpoint", True)] * 2 + [("watermark", 0), ("checkpoint", True)],
    parallelism=1,
)
def test_any_records_timers_and_checkpoints_restore_the_state_of_the_last_complete_one(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, Any]], parallelism: int
) -> None:
    tmp_path = tmp_path_factory.mktemp("heap")
    storage = FileSystemStorage(tmp_path / "checkpoints", retain=50)
    operator = KeyedProcessOperator("process", Expiring(), lambda value: value)
    config = StateBackendConfig("heap", path=str(tmp_path), incremental=True)
    operator.open(OperatorContext("process", 0, 1, state_backend=config, checkpointing=True))
    with (  # long chains
        mock.patch.object(heap_checkpoint, "REBASE_RATIO", 1e9),
        mock.patch.object(heap_checkpoint, "BASE_SHARE", 2.0),
    ):
        expected = run_steps(operator, storage, steps)
    operator.close()
    if expected is None:
        return
    loaded = storage.load_latest()
    assert loaded is not None
    instances = []
    for index in range(parallelism):
        instance = KeyedProcessOperator("process", Expiring(), lambda value: value)
        context = OperatorContext(
            "process", index, parallelism, state_backend=config, restored_files=loaded.files
        )
        instance.open(context)
        instance.restore_state([pickle.loads(loaded.parts["process/0"])])
        instances.append(instance)
    assert contents(instances) == expected
    for instance in instances:
        instance.close()


def test_a_large_set_of_changed_keys_is_let_go_of_a_chunk_per_turn_of_the_loop() -> None:
    keys = set(range(3 * heap_checkpoint.RELEASE_CHUNK + 5))
    sizes = []

    async def release() -> None:
        heap_checkpoint.HeapCheckpoints("op").release_later(keys)
        for _ in range(5):
            sizes.append(len(keys))
            await asyncio.sleep(0)  # one turn of the loop: what the release is counted in

    asyncio.run(release())
    chunk = heap_checkpoint.RELEASE_CHUNK
    assert sizes == [3 * chunk + 5, 2 * chunk + 5, chunk + 5, 5, 0]
