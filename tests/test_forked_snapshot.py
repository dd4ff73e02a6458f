"""Large states pickled in a forked child (actorflow.runtime.forked, and the chain's use of it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import select
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from actorflow import (
    MAX_WATERMARK,
    Collector,
    Context,
    Flow,
    KeyedProcessFunction,
    RuntimeContext,
    ValueStateDescriptor,
)
from actorflow.checkpoint.restart import FixedDelayRestart
from actorflow.checkpoint.storage import MemoryStorage
from actorflow.errors import CheckpointError
from actorflow.operators.base import OperatorContext
from actorflow.operators.chain import FORK_ENV
from actorflow.operators.sources import IterableSource
from actorflow.runtime import forked
from tests.faults import Faults, FaultySink, GatedSource, StoppingSource

pytestmark = pytest.mark.skipif(not forked.can_fork(), reason="no os.fork() here")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def forks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The pids of every child forked during the test; afterwards none of them may be left
    unreaped (a zombie), and no other zombie either."""
    pids: list[int] = []
    fork = os.fork

    def recording_fork() -> int:
        pid = fork()
        if pid:
            pids.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", recording_fork)
    yield pids
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaped already: not our child any more
    with contextlib.suppress(ChildProcessError):  # raised when there are no children at all
        assert os.waitpid(-1, os.WNOHANG) == (0, 0), "a child ended and nobody reaped it"


class Blocking:
    """Pickling it waits until a byte arrives on ``fd`` (in the child: never, unless sent)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple[Callable[[], int], tuple[()]]:
        os.read(self.fd, 1)
        return (int, ())


# -- the module ---------------------------------------------------------------------------------


async def test_the_child_pickles_the_object_as_it_was_at_the_fork(forks: list[int]) -> None:
    counts = {f"k{i}": [i, i * 2] for i in range(20_000)}
    state: dict[str, Any] = {"state": {"count": counts}, "key_groups": (0, 128)}
    expected = pickle.dumps(state, protocol=5)
    read_end, write_end = os.pipe()
    try:
        # The child waits on the pipe before it pickles the dict: the parent's changes come first.
        pickling = forked.pickle_in_child([("gate", Blocking(read_end)), ("count/0", state)])
        for i in range(0, 20_000, 3):
            counts[f"k{i}"].append(-1)  # changes an object the child pickles
        counts["new"] = [0]
        del counts["k1"]
        os.write(write_end, b"x")
        gate, data = await asyncio.gather(*pickling.parts)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert data == expected
    assert pickle.loads(gate) == 0
    assert len(pickling.durations_ms) == 2 and pickling.fork_ms > 0
    await forked.reaped()
    assert forks == [pickling.pid]


async def test_an_object_that_cannot_be_pickled_fails_every_part_naming_its_label(
    forks: list[int],
) -> None:
    pickling = forked.pickle_in_child([("fine/0", [1, 2]), ("window[2/3]", {"f": lambda: 1})])
    for part in pickling.parts:
        with pytest.raises(CheckpointError, match=r"cannot pickle the state of window\[2/3\].*lambda"):
            await part
    await forked.reaped()


async def test_cancelling_a_part_kills_the_child_and_reaps_it(forks: list[int]) -> None:
    read_end, write_end = os.pipe()
    try:
        part = forked.start_pickling(Blocking(read_end), label="stuck/0")  # never gets its byte
        part.cancel()
        await forked.reaped()
    finally:
        os.close(read_end)
        os.close(write_end)
    assert part.cancelled()
    assert len(forks) == 1  # the fixture checks it was reaped


def test_a_child_does_not_outlive_a_parent_killed_with_sigkill() -> None:
    script = textwrap.dedent(
        """
        import asyncio, os, sys
        from actorflow.runtime import forked

        class Blocking:
            def __init__(self, fd):
                self.fd = fd
            def __reduce__(self):
                os.read(self.fd, 1)
                return (int, ())

        async def main():
            read_end, write_end = os.pipe()  # nobody writes: the child waits forever
            pickling = forked.pickle_in_child([("stuck/0", Blocking(read_end))])
            print(pickling.pid, flush=True)
            await asyncio.Event().wait()

        asyncio.run(main())
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=REPO, text=True
    ) as parent:
        try:
            assert parent.stdout is not None
            child = int(parent.stdout.readline())
            watch = os.pidfd_open(child)  # opened while the parent lives: the pid is the child's
        finally:
            parent.kill()  # SIGKILL
            parent.wait()
    try:
        ready, _, _ = select.select([watch], [], [], 30)
        assert ready, f"the child {child} still runs after its parent was killed"
    finally:
        os.close(watch)


def test_without_fork_the_chain_never_forks() -> None:
    from actorflow.operators.chain import fork_after_ms

    assert fork_after_ms({FORK_ENV: "off"}) is None
    with pytest.raises(ValueError, match="ACTORFLOW_SNAPSHOT_FORK_MS"):
        fork_after_ms({FORK_ENV: "soon"})


# -- in a flow ----------------------------------------------------------------------------------

N = 12_000
KEYS = 500


class CountAtEnd(KeyedProcessFunction[int, tuple[int, int]]):
    """A count and a list of the values seen per key, emitted when the input ends."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults

    def open(self, ctx: RuntimeContext) -> None:
        self.seen = ctx.get_state(ValueStateDescriptor[list[int]]("seen"))

    def process_element(self, value: int, ctx: Context, out: Collector) -> None:
        self.faults.check("process")
        seen = self.seen.value()
        if seen is None:
            ctx.timer_service().register_event_time_timer(MAX_WATERMARK)
            self.seen.update([value])
        else:
            seen.append(value)  # in place: the live object the child must see as it was

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        seen = self.seen.value()
        out.collect((ctx.current_key, len(seen), sum(seen)))

    def __deepcopy__(self, memo: dict[int, Any]) -> CountAtEnd:
        return CountAtEnd(self.faults)


def expected() -> list[tuple[int, int, int]]:
    counts = Counter(n % KEYS for n in range(N))
    sums: Counter[int] = Counter()
    for n in range(N):
        sums[n % KEYS] += n
    return sorted((key, counts[key], sums[key]) for key in counts)


@pytest.mark.parametrize("plan", [["process"], ["process", "process"]], ids="+".join)
async def test_a_job_restores_from_forked_checkpoints_to_the_exact_output(
    parallelism: int, plan: list[str], forks: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FORK_ENV, "0")  # every state goes to a child
    flow = Flow(parallelism=parallelism, batch_size=50)
    flow.enable_checkpointing(MemoryStorage())
    flow.set_restart_strategy(FixedDelayRestart(attempts=3))
    faults = Faults(plan)
    source = faults.source = GatedSource(list(range(N)), flow, gates=[N // 4, N // 2, 3 * N // 4])
    out = FaultySink(faults)
    flow.from_source(source).key_by(lambda n: n % KEYS).process(CountAtEnd(faults)).sink(out)
    await flow.run()
    await forked.reaped()
    assert faults.raised == plan and flow.restarts == len(plan)
    assert source._skip > 0, "the restarted run began at a checkpoint's position"
    assert sorted(out.values) == expected()
    assert len(forks) >= 3 * parallelism, "the keyed states were pickled in children"


async def test_a_state_that_cannot_be_pickled_aborts_the_forked_checkpoint_then_fails_the_job(
    forks: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FORK_ENV, "0")

    class KeepsALambda(KeyedProcessFunction[int, int]):
        def open(self, ctx: RuntimeContext) -> None:
            self.state = ctx.get_state(ValueStateDescriptor[Any]("f"))

        def process_element(self, value: int, ctx: Context, out: Collector) -> None:
            self.state.update(lambda: value)

    failures: list[BaseException] = []

    class Checkpointing(IterableSource):
        """Takes one checkpoint after 100 records and keeps what it failed with."""

        def __init__(self, items: list[int], flow: Flow) -> None:
            super().__init__(items)
            self.flow = flow

        async def read(self, context: OperatorContext) -> AsyncIterator[list[Any]]:
            async for batch in super().read(context):
                yield batch
                if self._emitted >= 100 and not failures:
                    try:
                        await self.flow.checkpoint()
                    except CheckpointError as error:
                        failures.append(error)

    flow = Flow(batch_size=50)
    flow.enable_checkpointing(MemoryStorage())
    flow.set_restart_strategy(FixedDelayRestart(attempts=0))
    source = Checkpointing(list(range(300)), flow)
    flow.from_source(source).key_by(lambda n: n % 7).process(KeepsALambda(), name="keeps").collect()
    # The next snapshot (the final one) is pickled inline, as without forking: the job fails.
    with pytest.raises(Exception, match="lambda") as failed:
        await flow.run()
    await forked.reaped()
    assert len(failures) == 1, "the checkpoint was aborted with the child's error, not hung"
    assert "cannot pickle the state of keeps[1/1]" in str(failures[0])
    assert "keeps[1/1]" in "".join(getattr(failed.value, "__notes__", []))
    assert len(forks) == 1


def test_a_savepoint_taken_in_a_child_resumes_to_the_same_output(
    tmp_path: Path, forks: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FORK_ENV, "0")

    def build(stop_at: int | None) -> tuple[Flow, StoppingSource, FaultySink]:
        flow = Flow(parallelism=2, batch_size=40)
        flow.enable_checkpointing(tmp_path / "checkpoints")
        source = StoppingSource(list(range(N)), flow, stop_at)
        out = FaultySink(Faults([]))
        flow.from_source(source).key_by(lambda n: n % KEYS).process(CountAtEnd(Faults([]))).sink(out)
        return flow, source, out

    first, source, out = build(N // 2)
    first.execute()
    assert source.stopped and not out.values
    second, source, out = build(None)
    second.execute()
    assert source._skip >= N // 2
    assert sorted(out.values) == expected()
    assert list((tmp_path / "checkpoints").glob("sp-*")), "the stop took a savepoint"
    assert forks, "its keyed states were pickled in children"


def test_the_chain_forks_for_states_that_took_long_to_pickle_and_not_for_small_ones() -> None:
    from actorflow.operators.base import Operator
    from actorflow.operators.chain import Chain
    from actorflow.time.clock import ManualClock

    chain = Chain([Operator("keep")], [OperatorContext("keep")], [], ManualClock())
    chain.fork_after_ms = 10.0
    small, large = {"state": {"n": {1: 2}}}, {"state": {"n": dict.fromkeys(range(20_000), 0)}}
    # Never pickled: the size of the outer containers decides (1,000 entries per ms).
    assert not chain._is_large(0, small) and chain._is_large(0, large)
    chain._pickle_ms[0] = 15.0  # the last pickling took 15 ms: whatever the state looks like now
    assert chain._is_large(0, small)
    chain._fork_ms = 10.0  # ... unless a fork costs more than half of it
    assert not chain._is_large(0, large)
    chain._pickle_ms[0] = 5.0
    chain._fork_ms = 0.0
    assert not chain._is_large(0, large)
    chain._pickle_ms[0], chain._inline_next = 50.0, {0}  # the last child failed: inline
    assert not chain._is_large(0, large)
    chain._inline_next, chain.fork_after_ms = set(), None  # off
    assert not chain._is_large(0, large)


async def test_after_a_snapshot_the_chain_lets_the_loop_run_before_its_next_batch() -> None:
    """The turn of the loop that took a snapshot (a fork, for a large heap) ends with it: the next
    batch, whose writes copy the pages a child shares, runs in a later turn."""
    import asyncio

    from actorflow.operators.base import Operator
    from actorflow.operators.chain import Chain
    from actorflow.operators.snapshots import CheckpointHooks
    from actorflow.runtime.messages import Barrier
    from actorflow.time.clock import ManualClock

    acknowledged: list[int] = []
    hooks = CheckpointHooks(
        acknowledge=lambda checkpoint_id, actor, parts: acknowledged.append(checkpoint_id),
        finished=lambda actor, parts: None,
        source_finished=lambda: None,
        register=lambda participant: None,
    )
    chain = Chain([Operator("keep")], [OperatorContext("keep")], [], ManualClock(), hooks=hooks)
    others: list[str] = []
    loop = asyncio.get_running_loop()
    loop.call_soon(others.append, "ran")  # ready before the barrier is handled
    await chain.on_barrier(Barrier(1))
    assert acknowledged == [1]
    assert others == ["ran"], "the chain returned to its next batch without letting the loop run"
