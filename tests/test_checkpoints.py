"""Checkpoints in a running flow: barriers, snapshots, restore, restarts after injected faults."""

from __future__ import annotations

from collections import Counter
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
from actorflow.operators.sinks import CollectSink
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
