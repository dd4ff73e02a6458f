"""Exactly-once checkpoints of iterations: the records on their way round the loop at a checkpoint
are logged by the head and put into the body again at a restore, so a restored run, and a run
killed with SIGKILL at random moments and started again, write exactly the failure-free output.

The loop's step keeps keyed state (the steps counted per record), so this file also runs with
``ACTORFLOW_STATE_BACKEND=rocksdb`` (scripts/check).
"""

from __future__ import annotations

import pickle
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from actorflow import Flow, JsonLinesSource, ValueStateDescriptor
from actorflow.checkpoint.filesystem import FileSystemStorage
from actorflow.checkpoint.restart import FixedDelayRestart
from actorflow.checkpoint.storage import CheckpointInfo
from actorflow.operators.base import Collector, OperatorContext
from actorflow.operators.co_process import KeyedCoProcessFunction
from actorflow.operators.process import Context, RuntimeContext
from actorflow.state.keygroups import key_group
from tests import iteration_job
from tests.killing import DEADLINE_S, newest_checkpoint, wait_for

REPO_ROOT = Path(__file__).resolve().parent.parent


class FailOnceAfterCheckpoint(JsonLinesSource):
    """Takes a checkpoint once ``at`` records were read, then fails its first run right after it."""

    def __init__(self, path: Path, flow: Flow, at: int) -> None:
        super().__init__(path)
        self.flow = flow
        self.at = at
        self.taken: list[CheckpointInfo] = []
        self.failed = False

    async def read(self, context: OperatorContext) -> AsyncIterator[list[Any]]:
        read = 0
        async for batch in super().read(context):
            yield batch
            read += len(batch)
            if not self.failed and read >= self.at:
                self.taken.append(await self.flow.checkpoint())
                self.failed = True
                raise RuntimeError("injected failure after a checkpoint taken mid-loop")


@pytest.mark.parametrize(("parallelism", "keyed"), [(1, False), (2, False), (2, True)])
def test_a_run_restored_from_a_checkpoint_taken_mid_loop_writes_the_failure_free_output(
    tmp_path: Path, parallelism: int, keyed: bool
) -> None:
    count = 600
    data = tmp_path / "in.jsonl"
    iteration_job.write_input(data, count)
    output = tmp_path / "out.jsonl"
    flow = Flow("collatz", parallelism=parallelism, batch_size=16)
    storage = FileSystemStorage(tmp_path / "checkpoints")
    flow.enable_checkpointing(storage)
    flow.set_restart_strategy(FixedDelayRestart(1, 0))
    source = FailOnceAfterCheckpoint(data, flow, at=count // 2)
    iteration_job.build(flow, source, output, keyed_feedback=keyed)
    flow.execute()
    assert flow.restarts == 1
    (taken,) = source.taken
    logged = [name for name in taken.parts if name.startswith("iterate@feedback/")]
    assert logged, "the checkpoint was taken while records went round the loop"
    loaded = storage.load(taken)
    in_flight = sum(len(values) for name in logged for values, _ in pickle.loads(loaded.parts[name]))
    assert in_flight > 0
    assert iteration_job.read_output(output) == sorted(iteration_job.expected(count).items())


def test_a_savepoint_of_an_iteration_resumes_to_the_failure_free_output(tmp_path: Path) -> None:
    count = 300
    data = tmp_path / "in.jsonl"
    iteration_job.write_input(data, count)
    output = tmp_path / "out.jsonl"

    class StopHalfway(JsonLinesSource):
        async def read(self, context: OperatorContext) -> AsyncIterator[list[Any]]:
            read = 0
            async for batch in super().read(context):
                yield batch
                read += len(batch)
                if read >= count // 2:
                    await first.stop()

    first = Flow("collatz", batch_size=8)
    first.enable_checkpointing(tmp_path / "checkpoints")
    iteration_job.build(first, StopHalfway(data), output)
    first.execute()
    assert list((tmp_path / "checkpoints").glob("sp-*")), "stopped at a savepoint"
    assert len(iteration_job.read_output(output)) < count
    again = Flow("collatz", batch_size=8)
    again.enable_checkpointing(tmp_path / "checkpoints")
    iteration_job.build(again, JsonLinesSource(data), output)
    again.execute()
    assert iteration_job.read_output(output) == sorted(iteration_job.expected(count).items())


class StopAt(JsonLinesSource):
    """Stops its flow with a savepoint once it has read ``at`` records."""

    def __init__(self, path: Path, flow: Flow, at: int) -> None:
        super().__init__(path)
        self.flow = flow
        self.at = at

    async def read(self, context: OperatorContext) -> AsyncIterator[list[Any]]:
        read = 0
        async for batch in super().read(context):
            yield batch
            read += len(batch)
            if read >= self.at:
                await self.flow.stop()


@pytest.mark.parametrize(("before", "after", "keyed"), [(2, 3, True), (3, 1, True), (2, 1, False)])
def test_a_savepoint_taken_mid_loop_resumes_at_another_parallelism(
    tmp_path: Path, before: int, after: int, keyed: bool
) -> None:
    # The logged records go back to the head instance the back edge would route them to now:
    # by key for a keyed back edge, by instance for a forward one.
    count = 400
    data = tmp_path / "in.jsonl"
    iteration_job.write_input(data, count)
    output = tmp_path / "out.jsonl"
    first = Flow("collatz", parallelism=before, batch_size=16)
    storage = FileSystemStorage(tmp_path / "checkpoints")
    first.enable_checkpointing(storage)
    iteration_job.build(first, StopAt(data, first, count // 2), output, keyed_feedback=keyed)
    first.execute()
    (savepoint,) = [info for info in storage.completed() if info.kind == "savepoint"]
    assert any(name.startswith("iterate@feedback/") for name in savepoint.parts), "stopped mid-loop"
    again = Flow("collatz", parallelism=after, batch_size=16)
    again.enable_checkpointing(storage)
    iteration_job.build(again, JsonLinesSource(data), output, keyed_feedback=keyed)
    again.execute()
    assert iteration_job.read_output(output) == sorted(iteration_job.expected(count).items())


KILLS = 3
INTERVAL_MS = 30


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("parallelism", "feedback", "seed", "count"), [(1, "forward", 1, 10_000), (2, "keyed", 3, 3_000)]
)
def test_an_iterative_job_killed_and_restarted_writes_the_failure_free_output(
    tmp_path: Path,
    parallelism: int,
    feedback: str,
    seed: int,
    count: int,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    # Kill moments are random (the subject, not synchronisation): each attempt waits until a
    # checkpoint newer than the one it resumed from is complete, then dies after up to two
    # intervals, wherever it is: a barrier on its way round the loop, the head logging, a snapshot.
    # ``count``: about 1.5 s of work without kills on a quiet machine (at 3,000 records parallelism 1
    # ran out after one kill: an attempt goes on for up to a checkpoint and two intervals).
    rng = random.Random(seed)
    data = tmp_path / "in.jsonl"
    iteration_job.write_input(data, count)
    output = tmp_path / "out.jsonl"
    checkpoints = tmp_path / "checkpoints"
    command = [
        sys.executable, "-m", "tests.iteration_job",
        str(data), str(output), str(checkpoints), str(INTERVAL_MS), str(parallelism), feedback,
    ]  # fmt: skip
    killed = 0
    for attempt in range(KILLS):
        before = newest_checkpoint(checkpoints)
        with (tmp_path / f"stderr-{attempt}.txt").open("wb") as stderr:
            process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
        processes.append(process)
        if wait_for(lambda last=before: newest_checkpoint(checkpoints) > last, process, "new checkpoint"):
            time.sleep(rng.uniform(0.0, 2 * INTERVAL_MS / 1000))
        if process.poll() is not None:
            assert process.returncode == 0, (tmp_path / f"stderr-{attempt}.txt").read_text()
            continue
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed += 1
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, timeout=DEADLINE_S, check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert killed >= 2, "the kills landed while the job ran"
    assert iteration_job.read_output(output) == sorted(iteration_job.expected(count).items())


def test_running_an_iteration_again_after_it_completed_changes_nothing(tmp_path: Path) -> None:
    count = 100
    data = tmp_path / "in.jsonl"
    iteration_job.write_input(data, count)
    output = tmp_path / "out.jsonl"
    for _ in range(2):  # the second run restores the final checkpoint: every input ended, no loop left
        flow = Flow("collatz", batch_size=8)
        flow.enable_checkpointing(tmp_path / "checkpoints")
        iteration_job.build(flow, JsonLinesSource(data), output)
        flow.execute()
        assert iteration_job.read_output(output) == sorted(iteration_job.expected(count).items())


class Countdown(KeyedCoProcessFunction[Any, Any, Any]):
    """A keyed head: ``(id, n)`` comes round ``n`` times, counted in the id's state; a fed-back
    record must reach the instance that owns its id (it raises otherwise)."""

    def open(self, ctx: RuntimeContext) -> None:
        self.visits = ctx.get_state(ValueStateDescriptor[int]("visits"))
        self.owned = ctx.operator.key_groups
        self.max_parallelism = ctx.operator.max_parallelism

    def process_element1(self, value: Any, ctx: Context, out: Collector) -> None:
        self.visits.update(0)
        out.collect(value)

    def process_element2(self, value: Any, ctx: Context, out: Collector) -> None:
        if key_group(ctx.current_key, self.max_parallelism) not in self.owned:
            raise ValueError(f"record {value!r} reached an instance that does not own its key")
        visits = (self.visits.value() or 0) + 1
        self.visits.update(visits)
        out.collect((value[0], value[1] - 1) if value[1] > 1 else {"id": value[0], "visits": visits})


@pytest.mark.parametrize(("before", "after"), [(2, 3), (3, 2)])
def test_a_keyed_head_gets_its_logged_records_by_key_after_a_rescale(
    tmp_path: Path, before: int, after: int
) -> None:
    starts = [(i, 1 + i % 40) for i in range(300)]
    data = tmp_path / "in.jsonl"
    data.write_bytes(b"".join(orjson.dumps(start) + b"\n" for start in starts))
    output = tmp_path / "out.jsonl"
    storage = FileSystemStorage(tmp_path / "checkpoints")
    for parallelism, source in [(before, "stop"), (after, "all")]:
        flow = Flow("countdown", parallelism=parallelism, batch_size=8)
        flow.enable_checkpointing(storage)
        read = flow.from_source(StopAt(data, flow, 150) if source == "stop" else JsonLinesSource(data))
        loop = read.map(tuple).iterate_with(tuple).key_by(lambda r: r[0], lambda r: r[0])
        head = loop.process(Countdown(), name="countdown")
        loop.close_with(head.filter(lambda r: isinstance(r, tuple)))
        head.filter(lambda r: isinstance(r, dict)).sink_to_json_lines(output, exactly_once=True)
        flow.execute()
    (savepoint,) = [info for info in storage.completed() if info.kind == "savepoint"]
    assert any(name.startswith("countdown@feedback/") for name in savepoint.parts), "stopped mid-loop"
    visits = sorted(
        (row["id"], row["visits"]) for row in map(orjson.loads, output.read_bytes().splitlines())
    )
    assert visits == sorted(starts)
