"""The exactly-once JSON-lines sink: every record in the file once, whatever fails and restarts."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actorflow import Collector, Context, Flow, KeyedProcessFunction, RuntimeContext, ValueStateDescriptor
from actorflow.checkpoint.restart import FixedDelayRestart
from actorflow.checkpoint.storage import MemoryStorage
from actorflow.errors import CheckpointError
from actorflow.operators.file_sink import ExactlyOnceJsonLinesSink, PartHandle
from tests.faults import Faults, GatedSource

N = 6_000
KEYS = 11


class RunningCount(KeyedProcessFunction[int, list[int]]):
    """Emits ``[key, count so far]`` for every record: any lost or repeated record shows."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults

    def open(self, ctx: RuntimeContext) -> None:
        self.count = ctx.get_state(ValueStateDescriptor("count", default=0))

    def process_element(self, value: int, ctx: Context, out: Collector) -> None:
        self.faults.check("process")
        self.count.update(self.count.value() + 1)
        out.collect([ctx.current_key, self.count.value()])

    def __deepcopy__(self, memo: dict[int, Any]) -> RunningCount:
        return RunningCount(self.faults)


def expected_lines() -> list[list[int]]:
    counts = dict.fromkeys(range(KEYS), 0)
    lines = []
    for n in range(N):
        counts[n % KEYS] += 1
        lines.append([n % KEYS, counts[n % KEYS]])
    return lines


def build(parallelism: int, plan: list[str], target: Path, storage: Any = None) -> tuple[Flow, Faults]:
    flow = Flow(parallelism=parallelism, batch_size=50)
    flow.enable_checkpointing(storage if storage is not None else MemoryStorage())
    flow.set_restart_strategy(FixedDelayRestart(attempts=3))
    faults = Faults(plan)
    source = faults.source = GatedSource(list(range(N)), flow, gates=[N // 4, N // 2, 3 * N // 4])
    (
        flow.from_source(source)
        .map(lambda n: n % KEYS)
        .key_by(lambda n: n)
        .process(RunningCount(faults))
        .sink_to_json_lines(target, exactly_once=True)
    )
    return flow, faults


def read(target: Path) -> list[list[int]]:
    return [orjson.loads(line) for line in target.read_bytes().splitlines()]


def leftovers(target: Path) -> list[str]:
    return sorted(p.name for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.part-"))


@pytest.mark.parametrize("plan", [[], ["process"], ["process", "process", "process"]], ids=len)
def test_every_record_reaches_the_file_once(tmp_path: Path, parallelism: int, plan: list[str]) -> None:
    target = tmp_path / "out.jsonl"
    flow, faults = build(parallelism, plan, target)
    flow.execute()
    assert faults.raised == plan
    got = read(target)
    expected = expected_lines()
    if parallelism == 1:
        assert got == expected
    else:  # keys interleave differently, but each key's counts are 1, 2, 3, ... exactly
        assert sorted(got) == sorted(expected)
    assert leftovers(target) == []


class ThreadRecordingSink(ExactlyOnceJsonLinesSink):
    """Notes the thread every commit runs in."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.threads: list[threading.Thread] = []

    def commit(self, handle: PartHandle) -> None:
        self.threads.append(threading.current_thread())
        super().commit(handle)


def test_commits_run_off_the_event_loop_so_the_job_goes_on_during_fsync(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    flow = Flow(batch_size=50)
    flow.enable_checkpointing(MemoryStorage())
    source = GatedSource(list(range(N)), flow, gates=[N // 2])
    sink = ThreadRecordingSink(target)
    flow.from_source(source).sink(sink)
    flow.execute()
    assert read(target) == list(range(N))
    # The checkpoint's commit and the final one (a run's sink is a shallow copy: the list is shared).
    assert len(sink.threads) == 2 and threading.main_thread() not in sink.threads


def test_without_checkpoints_the_file_is_written_at_the_end(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    target.write_text("old content\n")
    flow = Flow(batch_size=7)
    flow.from_iterable(range(20)).sink_to_json_lines(target, exactly_once=True)
    flow.execute()
    assert read(target) == list(range(20))
    assert leftovers(target) == []


def test_a_run_without_checkpoint_starts_the_file_afresh(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    target.write_text('"stale"\n')
    (tmp_path / ".out.jsonl.part-00000003").write_text('"leftover"\n')
    flow = Flow()
    flow.enable_checkpointing(MemoryStorage())
    flow.from_iterable([1, 2]).sink_to_json_lines(target, exactly_once=True)
    flow.execute()
    assert read(target) == [1, 2]
    assert leftovers(target) == []


def test_a_restore_commits_the_checkpoints_parts_and_removes_later_ones(tmp_path: Path) -> None:
    # The state of a checkpoint whose parts were pre-committed but not yet committed, then a crash
    # after a later part was written and partly appended: the restore puts the file right.
    target = tmp_path / "out.jsonl"
    first = tmp_path / ".out.jsonl.part-00000000"
    first.write_bytes(b"1\n2\n")
    target.write_bytes(b"1\n2\n3\n")  # part 0 committed, then half of an uncommitted part 1
    later = tmp_path / ".out.jsonl.part-00000001"
    later.write_bytes(b"3\n4\n")
    sink = ExactlyOnceJsonLinesSink(target)
    from actorflow.operators.base import OperatorContext

    sink.open(OperatorContext("sink", checkpointing=True))
    state = {"pending": [PartHandle(first.name, 0, 4)], "sink": {"sequence": 1, "next_offset": 4}}
    sink.restore_state([state])
    assert target.read_bytes() == b"1\n2\n"
    assert leftovers(target) == []


def test_a_missing_part_is_an_error_not_a_silent_loss(tmp_path: Path) -> None:
    from actorflow.operators.base import OperatorContext

    target = tmp_path / "out.jsonl"
    sink = ExactlyOnceJsonLinesSink(target)
    sink.open(OperatorContext("sink", checkpointing=True))
    with pytest.raises(CheckpointError, match="missing"):
        sink.commit(PartHandle(".out.jsonl.part-00000000", 0, 10))


def test_a_part_shorter_than_pre_committed_is_an_error(tmp_path: Path) -> None:
    from actorflow.operators.base import OperatorContext

    target = tmp_path / "out.jsonl"
    (tmp_path / ".out.jsonl.part-00000000").write_bytes(b"1\n")
    sink = ExactlyOnceJsonLinesSink(target)
    sink.open(OperatorContext("sink", checkpointing=True))
    with pytest.raises(CheckpointError, match="shorter than the 10 bytes"):
        sink.commit(PartHandle(".out.jsonl.part-00000000", 0, 10))


@pytest.mark.parametrize("in_kernel", [True, False], ids=["copy_file_range", "through the process"])
def test_a_commit_appends_the_part_whole_either_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_kernel: bool
) -> None:
    from actorflow.operators.base import OperatorContext

    if not in_kernel:  # as on a system or file system without it

        def refuse(*args: Any) -> int:
            raise OSError(18, "Invalid cross-device link")

        monkeypatch.setattr("os.copy_file_range", refuse)
    target = tmp_path / "out.jsonl"
    target.write_bytes(b"0\n")
    body = b"".join(b"%d\n" % n for n in range(1, 300_000))
    (tmp_path / ".out.jsonl.part-00000001").write_bytes(body)
    sink = ExactlyOnceJsonLinesSink(target)
    sink.open(OperatorContext("sink", checkpointing=True))
    sink.commit(PartHandle(".out.jsonl.part-00000001", 2, len(body)))
    assert target.read_bytes() == b"0\n" + body
    sink.commit(PartHandle(".out.jsonl.part-00000001", 2, len(body)))  # again: nothing changes
    assert target.read_bytes() == b"0\n" + body


def test_checkpoints_in_a_directory_survive_a_new_flow_object(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    checkpoints = tmp_path / "checkpoints"
    flow, _ = build(1, ["process"], target, storage=None)
    flow.enable_checkpointing(checkpoints)
    flow.set_restart_strategy(FixedDelayRestart(attempts=0))
    with pytest.raises(RuntimeError, match="injected fault"):
        flow.execute()
    # A new process: a new flow object reads the same directory and goes on from there.
    again, _ = build(1, [], target)
    again.enable_checkpointing(checkpoints)
    again.execute()
    assert read(target) == expected_lines()
    assert leftovers(target) == []


class FaultyFileSink(ExactlyOnceJsonLinesSink):
    """The exactly-once file whose snapshot and restore fail when the plan says so."""

    def __init__(self, path: Path, faults: Faults) -> None:
        super().__init__(path)
        self.faults = faults

    def snapshot_state(self) -> dict[str, Any]:
        self.faults.check("snapshot")
        return super().snapshot_state()

    def restore_state(self, states: list[Any]) -> None:
        self.faults.check("restore")
        super().restore_state(states)


@st.composite
def fault_plans(draw: st.DrawFn) -> list[str]:
    """Up to three faults; a restore can only fail after something else failed first."""
    plan: list[str] = []
    for _ in range(draw(st.integers(0, 3))):
        choices = ["process", "snapshot"] + (["restore"] if plan else [])
        plan.append(draw(st.sampled_from(choices)))
    return plan


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=fault_plans(), parallelism=st.sampled_from([1, 3]))
def test_random_faults_in_processing_snapshots_and_restores_leave_the_output_exact(
    tmp_path_factory: pytest.TempPathFactory, plan: list[str], parallelism: int
) -> None:
    target = tmp_path_factory.mktemp("random-faults") / "out.jsonl"
    flow = Flow(parallelism=parallelism, batch_size=50)
    flow.enable_checkpointing(MemoryStorage())
    flow.set_restart_strategy(FixedDelayRestart(attempts=len(plan)))
    faults = Faults(plan)
    source = faults.source = GatedSource(list(range(N)), flow, gates=[N // 4, N // 2, 3 * N // 4])
    (
        flow.from_source(source)
        .map(lambda n: n % KEYS)
        .key_by(lambda n: n)
        .process(RunningCount(faults))
        .sink(FaultyFileSink(target, faults))
    )
    flow.execute()
    assert faults.raised == plan
    assert flow.restarts == len(plan)
    assert sorted(read(target)) == sorted(expected_lines())
    assert leftovers(target) == []
