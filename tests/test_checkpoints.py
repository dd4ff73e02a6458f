"""Checkpoints in a running flow: barriers, snapshots, restore, restarts after injected faults."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
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
from actorflow.operators.base import OperatorContext
from actorflow.operators.sinks import CollectSink
from actorflow.operators.sources import IterableSource
from tests.faults import Faults, FaultySink, GatedSource

N = 20_000
KEYS = 37


class CountAtEnd(KeyedProcessFunction[int, tuple[int, int]]):
    """A running count per key, emitted once when the input ends (the timer at +infinity)."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults

    def open(self, ctx: RuntimeContext) -> None:
        self.count = ctx.get_state(ValueStateDescriptor("count", default=0))

    def process_element(self, value: int, ctx: Context, out: Collector) -> None:
        self.faults.check("process")
        if self.count.value() == 0:
            ctx.timer_service().register_event_time_timer(MAX_WATERMARK)
        self.count.update(self.count.value() + 1)

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        out.collect((ctx.current_key, self.count.value()))

    def __deepcopy__(self, memo: dict[int, Any]) -> CountAtEnd:
        # One Faults object shared by every instance and every restart (a deep copy would not).
        return CountAtEnd(self.faults)


def build(parallelism: int, plan: list[str]) -> tuple[Flow, Faults, CollectSink, GatedSource]:
    flow = Flow(parallelism=parallelism, batch_size=64)
    flow.enable_checkpointing(MemoryStorage())
    flow.set_restart_strategy(FixedDelayRestart(attempts=3))
    faults = Faults(plan)
    source = faults.source = GatedSource(list(range(N)), flow, gates=[N // 3, 2 * N // 3])
    out = FaultySink(faults)
    (
        flow.from_source(source)
        .map(lambda n: n % KEYS)
        .key_by(lambda n: n)
        .process(CountAtEnd(faults))
        .sink(out)
    )
    return flow, faults, out, source


EXPECTED = sorted(Counter(n % KEYS for n in range(N)).items())


@pytest.mark.parametrize(
    "plan",
    [["process"], ["snapshot"], ["process", "restore"], ["process", "process", "snapshot"]],
    ids="+".join,
)
async def test_a_restart_resumes_from_the_checkpoint_with_exact_state(
    parallelism: int, plan: list[str]
) -> None:
    # A fault in processing, in taking a snapshot (of the second gate's checkpoint) and in
    # restoring one: each fails the job, which restarts from the last complete checkpoint.
    flow, faults, out, source = build(parallelism, plan)
    await flow.run()
    assert faults.raised == plan
    assert flow.restarts == len(plan)
    assert source._skip > 0, "the restarted run began at the checkpoint's position, not at 0"
    assert sorted(out.values) == EXPECTED


async def test_without_a_restart_strategy_the_fault_fails_the_job() -> None:
    flow, _, _, _ = build(1, ["process"])
    flow.set_restart_strategy(FixedDelayRestart(attempts=0))
    with pytest.raises(RuntimeError, match="injected fault in process"):
        await flow.run()
    assert flow.restarts == 0


def test_a_failed_job_resumes_from_its_directory_on_the_next_run(tmp_path: Path) -> None:
    flow, _, out, source = build(1, ["process"])
    flow.enable_checkpointing(tmp_path)
    flow.set_restart_strategy(FixedDelayRestart(attempts=0))
    with pytest.raises(RuntimeError, match="injected fault"):
        flow.execute()
    # A new process would build the same flow; here the same one runs again (the fault is spent).
    flow.execute()
    assert source._skip > 0
    assert sorted(out.values) == EXPECTED
    assert len(list(tmp_path.glob("chk-*"))) <= 3, "only the newest checkpoints are kept"


class EndingSource(IterableSource):
    """A short list that says when it has ended (its actor has reported its final state)."""

    def __init__(self, items: list[int]) -> None:
        super().__init__(items)
        self.ended = asyncio.Event()

    async def finish(self, context: OperatorContext, *, completed: bool) -> None:
        await super().finish(context, completed=completed)
        self.ended.set()


class GatedAfter(GatedSource):
    """A gated source whose checkpoints wait until ``other`` has ended."""

    def __init__(self, items: list[int], flow: Flow, gates: list[int], other: EndingSource) -> None:
        super().__init__(items, flow, gates)
        self.other = other

    async def read(self, context: OperatorContext) -> AsyncIterator[list[Any]]:
        async for batch in IterableSource.read(self, context):
            yield batch
            for gate in self.gates:
                if gate not in self.passed and self._emitted >= gate:
                    await self.other.ended.wait()
                    await self.flow.checkpoint()
                    self.passed.add(gate)


async def test_checkpoints_go_on_after_one_source_ended_and_restore_exactly(parallelism: int) -> None:
    # A rules-like source ends at once while the main one runs on: checkpoints still complete
    # (the ended source and what it fed take part with their final state), and a restart from one
    # neither reads the ended source again nor loses what it sent.
    flow = Flow(parallelism=parallelism, batch_size=64)
    flow.enable_checkpointing(MemoryStorage())
    flow.set_restart_strategy(FixedDelayRestart(attempts=3))
    faults = Faults(["process"])
    small = EndingSource([N + i for i in range(500)])
    main = faults.source = GatedAfter(list(range(N)), flow, [N // 2], small)
    out = FaultySink(faults)
    (
        flow.from_source(main)
        .union(flow.from_source(small))
        .map(lambda n: n % KEYS)
        .key_by(lambda n: n)
        .process(CountAtEnd(faults))
        .sink(out)
    )
    await flow.run()
    assert faults.raised == ["process"] and flow.restarts == 1
    assert main._skip > 0, "the restart began at the checkpoint"
    assert small._skip == 500, "the ended source was restored at its end"
    expected = Counter(n % KEYS for n in [*range(N), *(N + i for i in range(500))])
    assert sorted(out.values) == sorted(expected.items())
