"""Native, incremental RocksDB checkpoints of the window and pattern (CEP) operators: a checkpoint
after few changes stores only the new SST files, a restore at the same parallelism opens the
checkpoint's files, one at another parallelism (or onto the heap) reads the key groups it owns, an
instance whose store never opened checkpoints nothing, and the local checkpoint directories go once
a checkpoint completes or aborts, or the operator closes."""

from __future__ import annotations

import asyncio
import os
import pickle
import random
from pathlib import Path
from typing import Any

import pytest

from actorflow import AfterMatchSkip, Flow, Pattern, WatermarkStrategy
from actorflow.checkpoint.filesystem import FileSystemStorage
from actorflow.checkpoint.parts import SnapshotPart
from actorflow.operators.base import Operator, OperatorContext
from actorflow.operators.cep import NFA, PatternOperator
from actorflow.operators.windows.assigners import TumblingEventTimeWindows
from actorflow.operators.windows.functions import AggregateContents
from actorflow.operators.windows.operator import WindowOperator
from actorflow.runtime.messages import Batch
from actorflow.state.backends import StateBackendConfig
from actorflow.state.keygroups import key_group
from actorflow.state.removal import wait_removed
from actorflow.state.rocksdb import RocksDBTables
from tests.checkpoint_flows import CheckpointingSource, completed, lines, new_shared_bytes
from tests.test_window_state_backend import SumCount

Record = dict[str, Any]

#: A pattern whose partial matches live long (``a`` waits for a ``c`` that is rare), so each key
#: holds state across checkpoints; matches and timeouts both reach the output.
LONG = (
    Pattern.begin("a").where(lambda r: r["v"] < 3)
    .followed_by("c").where(lambda r: r["v"] == 9)
    .within(400)
)  # fmt: skip


def stream(n: int, keys: int, seed: int = 7) -> list[Record]:
    """``n`` records over ``keys`` keys, their timestamps up to 10 ms out of order."""
    rng = random.Random(seed)
    return [
        {
            "id": i,
            "k": f"card-{rng.randrange(keys)}",
            "v": rng.randrange(10),
            "ts": max(0, i - rng.randrange(10)),
        }
        for i in range(n)
    ]


def build(
    kind: str,
    items: list[Record],
    tmp_path: Path,
    *,
    parallelism: int,
    backend: str,
    gates: list[int] = (),  # type: ignore[assignment]
    crash_at: int | None = None,
    target: Path | None = None,
) -> tuple[Flow, CheckpointingSource]:
    """A windowed (``kind="window"``: tumbling windows of 300 ms summed) or pattern (``"pattern"``)
    flow with checkpoints into a FileSystemStorage, checkpointing after each of ``gates`` records."""
    flow = Flow(kind, parallelism=parallelism, batch_size=20)
    if backend == "rocksdb":
        flow.set_state_backend("rocksdb", path=tmp_path / "rocks", cache_entries=16)
    else:  # the heap, whatever $ACTORFLOW_STATE_BACKEND says
        flow.set_state_backend("heap")
    flow.enable_checkpointing(FileSystemStorage(tmp_path / "checkpoints", retain=10))
    source = CheckpointingSource(items, flow, list(gates), crash_at)
    keyed = flow.from_source(source, watermarks=WatermarkStrategy.punctuated("ts", lag_ms=20)).key_by("k")
    if kind == "window":
        out = keyed.window(TumblingEventTimeWindows.of(300)).aggregate(SumCount(), name="sums")
    else:
        out = keyed.pattern(LONG, skip=AfterMatchSkip.skip_to_next()).select(
            lambda m: ["match", [r["id"] for stage in sorted(m) for r in m[stage]]]
        )
    out.sink_to_json_lines(target or tmp_path / "out.jsonl", exactly_once=True)
    return flow, source


KINDS = ["window", "pattern"]
N = 2_400


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def reference(tmp_path: Path, kind: str) -> tuple[list[Record], list[Any]]:
    """The records and the output of a run without failure (on the heap)."""
    items = stream(N, 60)
    target = tmp_path / "reference.jsonl"
    flow, _ = build(kind, items, tmp_path / "reference", parallelism=2, backend="heap", target=target)
    flow.execute()
    expected = lines(target)
    assert len(expected) > 50
    return items, expected


def test_a_checkpoint_after_few_changes_stores_only_the_new_sst_files(tmp_path: Path, kind: str) -> None:
    """Every key, then a checkpoint; ten records more, then another: the second stores a small
    fraction of the first's SST bytes (records far apart in time, so windows and partial matches
    stay open)."""
    keys = 3_000
    items = [{"id": i, "k": f"card-{i % keys}", "v": i % 3, "ts": i // 100} for i in range(2 * keys + 10)]
    flow, source = build(
        kind, items, tmp_path, parallelism=1, backend="rocksdb", gates=[2 * keys, 2 * keys + 10]
    )
    flow.execute()
    assert source.checkpointed == [2 * keys, 2 * keys + 10]
    first, second = completed(tmp_path / "checkpoints")[:2]
    assert first.shared and all(key.startswith("rocksdb/") for key in first.shared)
    full, incremental = new_shared_bytes([first, second])
    assert full > 50_000
    assert incremental < full / 10, (full, incremental)
    wait_removed()  # closed stores' directories go in a worker thread
    assert list((tmp_path / "rocks").iterdir()) == []


@pytest.mark.parametrize(
    ("before", "after", "backend"),
    [(2, 2, "rocksdb"), (2, 3, "rocksdb"), (3, 1, "rocksdb"), (2, 3, "heap")],
    ids=["same-parallelism", "2-to-3", "3-to-1", "onto-the-heap"],
)
def test_a_restore_gives_the_output_of_a_run_without_failure(
    tmp_path: Path,
    kind: str,
    reference: tuple[list[Record], list[Any]],
    before: int,
    after: int,
    backend: str,
) -> None:
    """Crashed after two native checkpoints, restarted at the same parallelism, another one, or
    on the heap: the output of a run without failure, and RocksDB's directories gone."""
    items, expected = reference
    first, _ = build(
        kind, items, tmp_path, parallelism=before, backend="rocksdb", gates=[900, 1_500], crash_at=1_700
    )
    with pytest.raises(RuntimeError, match="crash"):
        first.execute()
    infos = completed(tmp_path / "checkpoints")
    assert [info.checkpoint_id for info in infos] == [1, 2] and infos[-1].shared
    second, _ = build(kind, items, tmp_path, parallelism=after, backend=backend, gates=[2_000])
    second.execute()
    assert lines(tmp_path / "out.jsonl") == expected
    if (before, after, backend) == (2, 2, "rocksdb"):
        restored_from, taken_after = completed(tmp_path / "checkpoints")[1:3]
        assert set(restored_from.shared) & set(taken_after.shared), "files restored were uploaded again"
    wait_removed()  # closed stores' directories go in a worker thread
    assert list((tmp_path / "rocks").iterdir()) == []


# -- operators, directly ------------------------------------------------------------------------------


def open_operator(
    kind: str, tmp_path: Path, index: int = 0, parallelism: int = 1, files: Any = None
) -> Any:
    operator: Operator
    if kind == "window":
        operator = WindowOperator(
            "op", lambda r: r["k"], TumblingEventTimeWindows.of(1_000), AggregateContents(SumCount())
        )
    else:
        operator = PatternOperator(
            "op",
            NFA(LONG, AfterMatchSkip.skip_to_next()),
            lambda r: r["k"],
            lambda m, ctx, out: out.collect(sorted(m)),
        )
    config = StateBackendConfig("rocksdb", path=str(tmp_path / "rocks"), cache_entries=16)
    operator.open(
        OperatorContext(
            "op", index, parallelism, state_backend=config, checkpointing=True, restored_files=files
        )
    )
    return operator


def feed(operator: Any, numbers: range) -> None:
    """Records of 37 keys; the watermark releases all but the last 30 (windows stay open)."""
    records = [{"k": f"card-{n % 37}", "v": n % 3, "ts": 100 + n} for n in numbers]
    operator.process(Batch(records, [r["ts"] for r in records], [(len(records), 70 + numbers.stop)]))


def state_of(operator: Any) -> Any:
    """What the operator holds, in a comparable form (its neutral snapshot's)."""
    state = operator.snapshot_state()
    if isinstance(operator, WindowOperator):
        return state["windows"], state["trigger_state"], sorted(zip(*state["event_timers"], strict=True))
    return {
        key: (0 if nfa is None else len(nfa.partials), events)
        for key, (nfa, events) in state["keys"].items()
    }


def only_instance(rocks: Path) -> str:
    (name,) = os.listdir(rocks)
    return str(rocks / name)


def test_an_instance_whose_store_never_opened_checkpoints_nothing(tmp_path: Path, kind: str) -> None:
    operator = open_operator(kind, tmp_path)
    part = asyncio.run(operator.checkpoint_state_async(1))
    assert not isinstance(part, SnapshotPart)
    assert part is None or part["keys"] == {}
    assert not (tmp_path / "rocks").exists()  # no store was opened for it
    operator.close()


def test_the_local_checkpoints_are_deleted_when_they_complete_abort_or_the_operator_closes(
    tmp_path: Path, kind: str
) -> None:
    operator = open_operator(kind, tmp_path)
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


def test_a_part_restores_whole_at_the_same_parallelism_and_by_key_group_at_another(
    tmp_path: Path, kind: str
) -> None:
    """At the same parallelism the restored store is the checkpoint's files (hard-linked from the
    storage); two instances read the key groups they own, and together hold what one did."""
    storage = FileSystemStorage(tmp_path / "checkpoints")
    operator = open_operator(kind, tmp_path)
    feed(operator, range(200))
    part = asyncio.run(operator.checkpoint_state_async(1))
    assert isinstance(part, SnapshotPart) and isinstance(part.data, bytes)
    storage.write_part(1, "op/0", part.data)
    for key, path in part.shared.items():
        storage.write_shared(1, key, path)
    storage.commit(1)
    asyncio.run(operator.checkpoint_complete(1))
    expected = state_of(operator)
    operator.close()
    loaded = storage.load_latest()
    assert loaded is not None
    saved = pickle.loads(loaded.parts["op/0"])
    assert "rocksdb" in saved

    restored = open_operator(kind, tmp_path, files=loaded.files)
    restored.restore_state([saved])
    assert state_of(restored) == expected
    tables = restored._tables if kind == "window" else restored.tables
    assert isinstance(tables, RocksDBTables)
    ssts = [name for name in os.listdir(tables.db_path) if name.endswith(".sst")]
    assert ssts and all(os.stat(os.path.join(tables.db_path, name)).st_nlink > 1 for name in ssts), (
        "opened on the checkpoint's files, hard-linked from the storage"
    )
    restored.close()

    halves = [open_operator(kind, tmp_path, index, 2, files=loaded.files) for index in (0, 1)]
    combined: list[Any] = []
    for half in halves:
        half.restore_state([pickle.loads(loaded.parts["op/0"])])
        held = state_of(half)
        keys = held[0] if kind == "window" else held
        assert keys and all(key_group(key, 128) in half.context.key_groups for key in keys)
        combined.append(held)
        half.close()
    if kind == "window":
        windows = {**combined[0][0], **combined[1][0]}
        assert windows == expected[0]
        assert sorted(combined[0][2] + combined[1][2]) == expected[2]
    else:
        assert {**combined[0], **combined[1]} == expected
