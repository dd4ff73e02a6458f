"""The source actor's events and its loop: what a quiet input reports, and what the loop makes of it.

The events come from :func:`watch` (or are the source's batches alone when only records can
happen); the loop of :class:`SourceActor` is checked against a chain that writes down every call
it gets.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any, cast

import pytest

from actorflow import MAX_WATERMARK, ManualClock, WatermarkStrategy
from actorflow.operators.base import OperatorContext
from actorflow.operators.chain import Chain
from actorflow.operators.chain import SourceActor as SourceActorFromChain
from actorflow.operators.source_actor import (
    Active,
    BarrierDue,
    Idle,
    SourceActor,
    Wakeup,
    watch,
)
from actorflow.operators.sources import Source
from actorflow.runtime.messages import Barrier, Batch


class Feed:
    """A reader that yields what the test puts in, and counts its reads (None ends it)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[list[Any] | Batch | BaseException | None] = asyncio.Queue()
        self.reads = 0
        self.cancelled = False

    async def read(self) -> AsyncIterator[list[Any] | Batch]:
        try:
            while True:
                self.reads += 1
                item = await self.queue.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        except asyncio.CancelledError:
            self.cancelled = True
            raise


def soon(action: Any, *args: Any) -> None:
    """Run ``action(*args)`` once the caller is parked (the loop's next round)."""
    asyncio.get_running_loop().call_soon(action, *args)


# -- the events of an input ------------------------------------------------------------------


async def test_a_quiet_input_goes_idle_once_and_active_before_its_next_records() -> None:
    clock, feed = ManualClock(), Feed()
    events = watch(feed.read(), clock, idle_timeout=100)
    soon(clock.advance, 100)
    assert [await anext(events), await anext(events)] == [Idle(), Wakeup()]
    soon(clock.advance, 1_000)  # idle already: no second Idle, and nothing else to wake for
    soon(feed.queue.put_nowait, [1])
    assert [await anext(events), await anext(events)] == [Active(), [1]]
    assert feed.reads == 1  # one read waited through the quiet spell
    feed.queue.put_nowait(None)
    assert [event async for event in events] == []


async def test_the_idleness_timeout_counts_from_the_last_records() -> None:
    clock, feed = ManualClock(), Feed()
    feed.queue.put_nowait([1])
    events = watch(feed.read(), clock, idle_timeout=100)
    assert await anext(events) == [1]
    clock.advance(60)
    soon(clock.advance, 60)  # 120 ms after the records
    assert [await anext(events), await anext(events)] == [Idle(), Wakeup()]
    await events.aclose()


async def test_a_barrier_requested_while_quiet_comes_before_idleness_and_the_wakeup() -> None:
    clock, feed = ManualClock(), Feed()
    requested = asyncio.Event()
    events = watch(feed.read(), clock, idle_timeout=0, barrier_requested=requested)
    requested.set()
    assert [await anext(events), await anext(events)] == [BarrierDue(), Idle()]
    requested.clear()  # the handler clears it when the barriers go out
    assert await anext(events) == Wakeup()
    await events.aclose()


async def test_records_win_over_a_barrier_request_that_came_with_them() -> None:
    clock, feed = ManualClock(), Feed()
    requested = asyncio.Event()
    feed.queue.put_nowait([1])
    requested.set()
    events = watch(feed.read(), clock, barrier_requested=requested)
    assert await anext(events) == [1]
    await events.aclose()


async def test_the_chain_s_wakeup_wakes_a_quiet_input_and_is_asked_again_each_time() -> None:
    clock, feed = ManualClock(), Feed()
    asked: list[int] = []

    def wakeup() -> Awaitable[object] | None:
        asked.append(clock.now())
        return clock.at(50) if clock.now() < 50 else None

    events = watch(feed.read(), clock, wakeup=wakeup)
    soon(clock.advance, 50)
    assert await anext(events) == Wakeup()
    soon(feed.queue.put_nowait, [1])
    assert await anext(events) == [1]
    assert asked == [0, 50]
    await events.aclose()


async def test_closing_the_events_cancels_the_pending_read(loop_errors: list[dict[str, Any]]) -> None:
    clock, feed = ManualClock(), Feed()
    events = watch(feed.read(), clock, idle_timeout=0)
    assert await anext(events) == Idle()
    await events.aclose()
    assert feed.cancelled
    assert loop_errors == []


async def test_what_the_reader_raises_ends_the_events_with_it() -> None:
    clock, feed = ManualClock(), Feed()
    feed.queue.put_nowait(ValueError("bad input"))
    events = watch(feed.read(), clock, idle_timeout=100)
    with pytest.raises(ValueError, match="bad input"):
        await anext(events)


# -- the loop --------------------------------------------------------------------------------


class FakeChain:
    """The chain a source actor drives, writing down each call."""

    hooks = None
    wants_wakeups = False

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail_on: int | None = None  # the value of a record on_batch fails on

    def wakeup(self) -> Awaitable[object] | None:
        return None

    async def open(self) -> None:
        self.calls.append(("open",))

    async def on_batch(self, batch: Batch) -> None:
        if self.fail_on in batch.values:
            raise RuntimeError("operator failed")
        self.calls.append(("batch", batch.values, batch.marks))

    async def on_status(self, idle: bool) -> None:
        self.calls.append(("status", idle))

    async def on_time(self) -> None:
        self.calls.append(("time",))

    async def on_barrier(self, barrier: Barrier, extra: dict[str, bytes] | None = None) -> None:
        self.calls.append(("barrier", barrier.checkpoint_id))

    async def on_end(self, extra: dict[str, bytes] | None = None) -> None:
        self.calls.append(("end",))

    async def close(self) -> None:
        self.calls.append(("close",))


class FeedSource(Source):
    def __init__(self, feed: Feed) -> None:
        self.feed = feed
        self.finished: bool | None = None

    def read(self, context: OperatorContext) -> AsyncIterator[list[Any] | Batch]:
        return self.feed.read()

    async def finish(self, context: OperatorContext, *, completed: bool) -> None:
        self.finished = completed


def actor(
    feed: Feed,
    chain: FakeChain,
    strategy: WatermarkStrategy | None = None,
    clock: ManualClock | None = None,
) -> SourceActor:
    context = OperatorContext("numbers", clock=clock or ManualClock())
    return SourceActor("numbers", FeedSource(feed), context, strategy, cast(Chain, chain))


def test_chain_py_still_exports_the_source_actor() -> None:
    assert SourceActorFromChain is SourceActor


async def test_each_batch_is_stamped_and_the_end_puts_out_the_final_watermark() -> None:
    feed, chain = Feed(), FakeChain()
    for item in ([{"ts": 5}], [{"ts": 9}], None):
        feed.queue.put_nowait(item)
    source = actor(feed, chain, WatermarkStrategy.punctuated("ts"))
    await source.run()
    assert chain.calls == [
        ("open",),
        ("batch", [{"ts": 5}], [(1, 5)]),
        ("batch", [{"ts": 9}], [(1, 9)]),
        ("batch", [], [(0, MAX_WATERMARK)]),
        ("end",),
        ("close",),
    ]
    assert cast(FeedSource, source.source).finished is True


async def test_a_quiet_input_tells_the_chain_idle_then_active_then_gives_it_the_records() -> None:
    feed, chain, clock = Feed(), FakeChain(), ManualClock()
    source = actor(feed, chain, WatermarkStrategy.punctuated("ts").with_idleness(100), clock)
    original_open, original_on_time = chain.open, chain.on_time

    async def open() -> None:
        await original_open()
        soon(clock.advance, 100)  # once the loop waits for its first read

    async def on_time() -> None:
        await original_on_time()
        feed.queue.put_nowait([{"ts": 1}])
        feed.queue.put_nowait(None)

    chain.open = open  # type: ignore[method-assign]
    chain.on_time = on_time  # type: ignore[method-assign]
    await source.run()
    assert chain.calls[1:4] == [("status", True), ("time",), ("status", False)]
    assert chain.calls[4] == ("batch", [{"ts": 1}], [(1, 1)])


async def test_a_drain_ends_the_input_after_the_batch_in_hand() -> None:
    feed, chain = Feed(), FakeChain()
    feed.queue.put_nowait([1])
    feed.queue.put_nowait([2])
    source = actor(feed, chain)
    original = chain.on_batch

    async def on_batch(batch: Batch) -> None:
        await original(batch)
        source.drain()

    chain.on_batch = on_batch  # type: ignore[method-assign]
    await source.run()
    assert [call for call in chain.calls if call[0] == "batch"] == [
        ("batch", [1], None),
        ("batch", [], [(0, MAX_WATERMARK)]),
    ]
    assert chain.calls[-2:] == [("end",), ("close",)]


async def test_an_error_names_the_source_and_still_closes_source_and_chain() -> None:
    feed, chain = Feed(), FakeChain()
    feed.queue.put_nowait([1])
    chain.fail_on = 1
    source = actor(feed, chain)
    with pytest.raises(RuntimeError, match="operator failed") as raised:
        await source.run()
    assert raised.value.__notes__ == ["actorflow: raised in operator numbers[1/1]"]
    assert chain.calls == [("open",), ("close",)]
    assert cast(FeedSource, source.source).finished is False


async def test_a_batch_the_source_stamped_itself_goes_through_as_it_is() -> None:
    feed, chain = Feed(), FakeChain()
    feed.queue.put_nowait(Batch([{"ts": 5}], [5], [(1, 3)]))
    feed.queue.put_nowait(None)
    await actor(feed, chain, WatermarkStrategy.punctuated("ts")).run()
    assert chain.calls[1] == ("batch", [{"ts": 5}], [(1, 3)])


class FakeHooks:
    """The coordinator, as far as a source actor and this fake chain reach it."""

    def __init__(self) -> None:
        self.registered: list[object] = []
        self.sources_finished = 0

    def register(self, participant: object) -> None:
        self.registered.append(participant)

    def source_finished(self) -> None:
        self.sources_finished += 1


async def test_a_restored_watermark_goes_out_first_and_the_fresh_marks_below_it_are_dropped() -> None:
    feed, chain = Feed(), FakeChain()
    chain.hooks = FakeHooks()  # type: ignore[assignment]
    feed.queue.put_nowait([{"ts": 5}, {"ts": 8}, {"ts": 12}])
    feed.queue.put_nowait([{"ts": 9}])
    feed.queue.put_nowait(None)
    context = OperatorContext("numbers", clock=ManualClock())
    source = SourceActor(
        "numbers",
        FeedSource(feed),
        context,
        WatermarkStrategy.punctuated("ts"),
        cast(Chain, chain),
        restore_watermark=10,
    )
    await source.run()
    assert [call[2] for call in chain.calls if call[0] == "batch"] == [
        [(0, 10)],
        [(3, 12)],
        [],  # ts 9 does not move the generator's watermark (12)
        [(0, MAX_WATERMARK)],
    ]
    assert chain.hooks.registered == [source]  # type: ignore[attr-defined]
    assert chain.hooks.sources_finished == 1  # type: ignore[attr-defined]


async def test_a_barrier_requested_while_the_input_is_quiet_goes_out_at_once() -> None:
    feed, chain = Feed(), FakeChain()
    chain.hooks = FakeHooks()  # type: ignore[assignment]
    source = actor(feed, chain)
    original_open, original_on_time = chain.open, chain.on_time

    async def open() -> None:
        await original_open()
        soon(source.request_barrier, 7)  # once the loop waits for its first read

    async def on_time() -> None:
        await original_on_time()
        feed.queue.put_nowait(None)

    chain.open = open  # type: ignore[method-assign]
    chain.on_time = on_time  # type: ignore[method-assign]
    await source.run()
    assert chain.calls[1:3] == [("barrier", 7), ("time",)]
    assert chain.calls[-2:] == [("end",), ("close",)]


async def test_whatever_else_a_source_yields_is_records() -> None:
    feed, chain = Feed(), FakeChain()
    feed.queue.put_nowait(cast(list[Any], (1, 2)))  # not a list: still its records, as before
    feed.queue.put_nowait(None)
    await actor(feed, chain).run()
    assert chain.calls[1] == ("batch", (1, 2), None)
