"""Backpressure: a stalled sink suspends an endless source, and records in flight stay bounded.

The bound comes from the plan: every mailbox holds at most ``mailbox_capacity`` batches of at most
``batch_size`` records, and every actor holds at most one batch in hand (the one it is processing or
trying to send). Records produced by the source minus records the sink has finished must never
exceed that, however fast the source is.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest

from actorflow import ClosedResourceError, Flow, PushSource
from actorflow.plan.physical import PhysicalPlan

BATCH = 4
CAPACITY = 2


def in_flight_bound(plan: PhysicalPlan, batch_size: int, capacity: int) -> int:
    """Most records a deployed plan can hold: full mailboxes plus one batch in hand per actor.

    As ``deploy`` builds it: one mailbox per (sender, receiver) pair of an edge, where a forward
    edge pairs instance ``i`` with instance ``i`` only.
    """
    mailboxes = 0
    for chain in plan.chains:
        for edge in chain.inputs:
            receivers = 1 if edge.partitioner.name == "forward" else chain.parallelism
            mailboxes += edge.upstream.parallelism * receivers
    actors = sum(chain.parallelism for chain in plan.chains)
    return (mailboxes * capacity + actors) * batch_size


class Meter:
    """Counts records in and out, and the most ever in flight between the two."""

    def __init__(self) -> None:
        self.produced = 0
        self.consumed = 0
        self.most_in_flight = 0
        self.gate = asyncio.Event()
        self.sink_entered = asyncio.Event()
        self._target: tuple[int, asyncio.Future[None]] | None = None

    def produce(self) -> None:
        self.produced += 1
        self.most_in_flight = max(self.most_in_flight, self.produced - self.consumed)

    async def slow_sink(self, record: Any) -> None:
        self.sink_entered.set()
        await self.gate.wait()
        self.consumed += 1
        target = self._target
        if target is not None and self.consumed >= target[0] and not target[1].done():
            target[1].set_result(None)

    async def consumed_at_least(self, count: int) -> None:
        future = asyncio.get_running_loop().create_future()
        self._target = (count, future)
        if self.consumed >= count:
            return
        async with asyncio.timeout(10):  # a guard against a hang, not a synchronisation
            await future

    async def until_source_parks(self, bound: int) -> None:
        """Yield turns until the producer has not moved for many turns in a row.

        Fails if it never stops (no backpressure) or if the in-flight bound is crossed meanwhile.
        """
        quiet_turns = turns = 0
        last = self.produced
        while quiet_turns < 100:
            await asyncio.sleep(0)  # one event-loop turn, nothing more
            assert self.produced - self.consumed <= bound
            quiet_turns = quiet_turns + 1 if self.produced == last else 0
            last = self.produced
            turns += 1
            assert turns < 20_000, f"the source never stopped: {self.produced} records produced"


def bounded_flow(parallelism: int) -> Flow:
    return Flow(parallelism=parallelism, batch_size=BATCH, mailbox_capacity=CAPACITY)


@pytest.mark.parametrize("parallelism", [1, 2, 3])
async def test_a_stalled_sink_suspends_an_endless_iterable_source(
    parallelism: int, loop_errors: list[dict[str, Any]]
) -> None:
    meter = Meter()

    def endless() -> Iterator[int]:
        n = 0
        while True:
            meter.produce()
            yield n
            n += 1

    flow = bounded_flow(parallelism)
    # rebalance, then a chain break: mailboxes from the source to every mapper and mapper to sink.
    stream = flow.from_iterable(endless()).rebalance().map(lambda n: n + 1)
    stream.start_new_chain().sink_to_callback(meter.slow_sink)
    bound = in_flight_bound(flow.plan(), BATCH, CAPACITY)
    assert bound > BATCH * parallelism  # there are real mailboxes to fill

    running = asyncio.create_task(flow.run())
    await meter.sink_entered.wait()
    await meter.until_source_parks(bound)
    assert meter.consumed == 0
    assert BATCH < meter.produced <= bound
    parked_at = meter.produced

    # Let the sink go: records flow again, and the bound still holds.
    meter.gate.set()
    await meter.consumed_at_least(parked_at + 10 * bound)
    assert meter.produced > parked_at
    assert meter.most_in_flight <= bound

    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    gc.collect()
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert loop_errors == []


@pytest.mark.parametrize("parallelism", [1, 2, 3])
async def test_a_stalled_sink_parks_a_task_pushing_forever_and_nothing_is_lost(
    parallelism: int, loop_errors: list[dict[str, Any]]
) -> None:
    meter = Meter()
    push_capacity = 3
    source = PushSource(capacity=push_capacity)
    flow = bounded_flow(parallelism)
    flow.from_source(source).rebalance().map(lambda n: n).sink_to_callback(meter.slow_sink)
    bound = in_flight_bound(flow.plan(), BATCH, CAPACITY) + push_capacity

    async def push_forever() -> None:
        n = 0
        while True:
            await source.send(n)
            meter.produce()
            n += 1

    running = asyncio.create_task(flow.run())
    pusher = asyncio.create_task(push_forever())
    await meter.sink_entered.wait()
    await meter.until_source_parks(bound)
    assert meter.consumed == 0
    assert source.pending == push_capacity
    parked_at = meter.produced

    meter.gate.set()
    await meter.consumed_at_least(parked_at + 10 * bound)
    assert meter.most_in_flight <= bound

    # A graceful stop: stop pushing, close, and the flow drains everything that was sent.
    pusher.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pusher
    source.close()
    await running
    assert meter.consumed == meter.produced
    with pytest.raises(ClosedResourceError):
        source.send_nowait(-1)
    gc.collect()
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert loop_errors == []
