"""Barrier alignment under a slow input: the fast input is held back, and memory stays bounded."""

from __future__ import annotations

import asyncio
from typing import Any

from actorflow import Collector, Context, CoProcessFunction, Flow, PushSource
from actorflow.checkpoint.storage import MemoryStorage
from tests.test_backpressure import in_flight_bound

BATCH = 4
CAPACITY = 2
FAST = 5_000


class Meter:
    def __init__(self) -> None:
        self.produced = 0
        self.consumed = 0

    def produce(self, value: int) -> int:
        self.produced += 1
        return value


class Count(CoProcessFunction[int, str, Any]):
    def __init__(self, meter: Meter) -> None:
        self.meter = meter

    def process_element1(self, value: int, ctx: Context, out: Collector) -> None:
        self.meter.consumed += 1

    def process_element2(self, value: str, ctx: Context, out: Collector) -> None:
        out.collect(value)

    def __deepcopy__(self, memo: dict[int, Any]) -> Count:
        return Count(self.meter)


async def until(condition: Any, what: str) -> None:
    """Yield to the running flow until ``condition()`` holds (a guard fails a hang)."""
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110 - the flow runs in this loop: yield it turns
            await asyncio.sleep(0)


async def test_a_slow_input_holds_the_fast_one_back_without_growing_memory() -> None:
    meter = Meter()
    gate = asyncio.Event()

    async def slow_lookup(record: str) -> str:
        await gate.wait()
        return record

    flow = Flow(batch_size=BATCH, mailbox_capacity=CAPACITY)
    flow.enable_checkpointing(MemoryStorage())
    slow = PushSource()
    fast = flow.from_iterable(range(FAST)).map(meter.produce)
    lagging = flow.from_source(slow).map_async(slow_lookup, capacity=1)
    out = fast.connect(lagging).process(Count(meter)).collect()
    bound = in_flight_bound(flow.plan(), BATCH, CAPACITY)

    running = asyncio.create_task(flow.run())
    await slow.send("first")  # takes the async operator's only slot
    await slow.send("second")  # the slow source's actor now waits for room: no barrier gets out
    await until(lambda: flow._coordinator is not None and meter.consumed > 0, "the flow runs")
    checkpoint = asyncio.create_task(flow.checkpoint())
    # The fast input's barrier arrives and its channel is blocked: the fast source fills the
    # channel and stops, far short of its input, however long the slow input takes.
    await until(lambda: meter.produced - meter.consumed >= CAPACITY * BATCH, "the channel fills")
    for _ in range(2_000):
        await asyncio.sleep(0)
        assert meter.produced - meter.consumed <= bound
    held = meter.produced
    for _ in range(500):
        await asyncio.sleep(0)
    assert meter.produced == held < FAST, "the fast source was held back while aligning"
    assert not checkpoint.done()
    gate.set()
    info = await checkpoint
    slow.close()
    await running
    assert info.checkpoint_id >= 1
    assert meter.consumed == FAST
    assert sorted(out.values) == ["first", "second"]
