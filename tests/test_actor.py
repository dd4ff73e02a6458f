"""Actor: merges watermarks and idleness over its inputs, aligns barriers, ends, wakes for timers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from actorflow.runtime.actor import Actor
from actorflow.runtime.mailbox import Inbox, Mailbox
from actorflow.runtime.messages import MAX_WATERMARK, Barrier, Batch, EndOfStream, StreamStatus
from actorflow.time.clock import ManualClock


class Recorder:
    """A fake Handler: records every call in order; can fail, and can ask for a wakeup."""

    def __init__(self, clock: ManualClock | None = None) -> None:
        self.calls: list[tuple[str, object]] = []
        self.clock = clock
        self.timer_at: int | None = None
        self.fail_on_open: Exception | None = None
        self.fail_on_batch: Exception | None = None
        self._changed = asyncio.Event()

    def _record(self, name: str, argument: object = None) -> None:
        self.calls.append((name, argument))
        self._changed.set()

    async def open(self) -> None:
        self._record("open")
        if self.fail_on_open is not None:
            raise self.fail_on_open

    async def on_batch(self, batch: Batch) -> None:
        self._record("batch", (list(batch.values), list(batch.marks or [])))
        if self.fail_on_batch is not None:
            raise self.fail_on_batch

    async def on_status(self, idle: bool) -> None:
        self._record("status", idle)

    async def on_barrier(self, barrier: Barrier) -> None:
        self._record("barrier", barrier.checkpoint_id)

    async def on_end(self) -> None:
        self._record("end")

    async def close(self) -> None:
        self._record("close")

    def wakeup(self) -> Awaitable[object] | None:
        if self.timer_at is None or self.clock is None:
            return None
        return self.clock.at(self.timer_at)

    async def on_time(self) -> None:
        assert self.clock is not None
        self._record("time", self.clock.now())
        self.timer_at = None

    # -- for the tests -----------------------------------------------------------------------------

    def of(self, name: str) -> list[object]:
        return [argument for called, argument in self.calls if called == name]

    def names(self) -> list[str]:
        return [called for called, _ in self.calls]

    def watermarks(self) -> list[int]:
        return [w for _, marks in self.of("batch") for _, w in marks]  # type: ignore[misc]

    async def until(self, predicate: Callable[[], bool]) -> None:
        """Wait (on the handler's own calls, not on time) until ``predicate`` holds."""
        while not predicate():
            self._changed.clear()
            await self._changed.wait()


def make_actor(inputs: int, handler: Recorder, capacity: int = 8) -> tuple[Actor, list[Mailbox]]:
    boxes = [Mailbox(capacity, name=f"in{i}") for i in range(inputs)]
    return Actor("op[0]", Inbox(boxes), handler), boxes


async def drained(*boxes: Mailbox) -> None:
    """Let the actor run until it has taken every message from ``boxes`` and parked again.

    The fake handler never suspends, so once a mailbox is empty its messages have been handled.
    """
    for _ in range(50):
        if not any(len(box) for box in boxes):
            break
        await asyncio.sleep(0)
    assert not any(len(box) for box in boxes), "the actor did not read its mailboxes"
    await asyncio.sleep(0)


async def finish(task: asyncio.Task[None], boxes: list[Mailbox]) -> None:
    for box in boxes:
        box.put_nowait(EndOfStream())
    await task


async def test_watermarks_are_merged_over_the_inputs() -> None:
    handler = Recorder()
    actor, (a, b) = make_actor(2, handler)
    task = asyncio.create_task(actor.run())

    a.put_nowait(Batch(["x"], None, [(1, 10)]))
    await handler.until(lambda: len(handler.of("batch")) == 1)
    assert handler.of("batch") == [(["x"], [])]  # input 1 still holds the watermark back

    b.put_nowait(Batch(["y"], None, [(1, 5)]))
    await handler.until(lambda: len(handler.of("batch")) == 2)
    assert handler.of("batch")[-1] == (["y"], [(1, 5)])
    assert actor.watermark == 5

    b.put_nowait(Batch([], None, [(0, 20)]))
    await handler.until(lambda: len(handler.of("batch")) == 3)
    assert handler.of("batch")[-1] == ([], [(0, 10)])  # now input 0 is the minimum

    a.put_nowait(EndOfStream())  # an ended input holds nothing back
    await handler.until(lambda: len(handler.of("batch")) == 4)
    assert handler.of("batch")[-1] == ([], [(0, 20)])

    b.put_nowait(EndOfStream())
    await task
    assert handler.watermarks() == [5, 10, 20, MAX_WATERMARK]
    assert actor.watermark == MAX_WATERMARK


async def test_idle_status_is_forwarded_only_when_every_input_is_idle() -> None:
    handler = Recorder()
    actor, boxes = make_actor(2, handler)
    a, b = boxes
    task = asyncio.create_task(actor.run())
    a.put_nowait(Batch(["x"], None, [(1, 10)]))
    b.put_nowait(Batch(["y"], None, [(1, 5)]))
    await drained(a, b)

    b.put_nowait(StreamStatus(idle=True))  # input 1 (at 5) goes idle: input 0 (at 10) decides
    await drained(b)
    assert handler.calls[-1] == ("batch", ([], [(0, 10)]))
    assert handler.of("status") == []  # input 0 is still active

    a.put_nowait(StreamStatus(idle=True))
    await drained(a)
    assert handler.of("status") == [True]

    a.put_nowait(Batch(["z"]))  # records on an idle input make it (and the actor) active again
    await drained(a)
    assert handler.calls[-2:] == [("status", False), ("batch", (["z"], []))]

    b.put_nowait(StreamStatus(idle=False))
    await drained(b)
    assert handler.of("status") == [True, False]  # already active: nothing new
    assert handler.calls[-1] == ("batch", (["z"], []))  # and input 1 (at 5) cannot move it back

    a.put_nowait(StreamStatus(idle=True))
    await drained(a)
    b.put_nowait(StreamStatus(idle=True))
    await drained(b)
    assert handler.of("status") == [True, False, True]
    b.put_nowait(StreamStatus(idle=False))  # a status message alone makes an input active again
    await drained(b)
    assert handler.of("status") == [True, False, True, False]
    assert handler.watermarks() == [5, 10]

    await finish(task, boxes)


async def test_on_end_is_called_once_after_every_input_has_ended() -> None:
    handler = Recorder()
    actor, boxes = make_actor(3, handler)
    task = asyncio.create_task(actor.run())

    boxes[0].put_nowait(EndOfStream())
    boxes[2].put_nowait(EndOfStream())
    await drained(*boxes)
    assert "end" not in handler.names()
    assert not task.done()

    boxes[1].put_nowait(Batch(["late"]))  # an open input is still read
    await drained(*boxes)
    assert handler.of("batch")[-1] == (["late"], [])

    boxes[1].put_nowait(EndOfStream())
    await task
    assert handler.names().count("end") == 1
    assert handler.names()[-2:] == ["end", "close"]
    assert handler.names()[0] == "open"


async def test_close_is_called_when_on_batch_raises() -> None:
    handler = Recorder()
    handler.fail_on_batch = RuntimeError("user function failed")
    actor, (box,) = make_actor(1, handler)
    box.put_nowait(Batch([1]))
    with pytest.raises(RuntimeError, match="user function failed"):
        await actor.run()
    assert handler.names() == ["open", "batch", "close"]


async def test_close_is_called_when_open_raises() -> None:
    handler = Recorder()
    handler.fail_on_open = RuntimeError("cannot connect")
    actor, _ = make_actor(1, handler)
    with pytest.raises(RuntimeError, match="cannot connect"):
        await actor.run()
    assert handler.names() == ["open", "close"]


async def test_barrier_alignment_blocks_the_input_that_has_its_barrier() -> None:
    handler = Recorder()
    actor, (a, b) = make_actor(2, handler)
    for message in (Barrier(1), Batch(["a-after"]), EndOfStream()):
        a.put_nowait(message)
    for message in (Batch(["b1"]), Batch(["b2"]), Batch(["b3"]), Barrier(1), EndOfStream()):
        b.put_nowait(message)

    await actor.run()

    events = [(name, arg) for name, arg in handler.calls if name in ("batch", "barrier")]
    # Read round robin, "a-after" would come right after "b1": input 0 waits for the barrier of
    # input 1, while input 1's records before its barrier still get through.
    assert events == [
        ("batch", (["b1"], [])),
        ("batch", (["b2"], [])),
        ("batch", (["b3"], [])),
        ("barrier", 1),
        ("batch", (["a-after"], [])),
        ("batch", ([], [(0, MAX_WATERMARK)])),  # both inputs ended
    ]
    assert handler.names().count("end") == 1


async def test_a_blocked_input_backpressures_its_sender() -> None:
    handler = Recorder()
    actor, (a, b) = make_actor(2, handler, capacity=2)
    task = asyncio.create_task(actor.run())
    a.put_nowait(Barrier(7))
    await drained(a)
    a.put_nowait(Batch([1]))
    a.put_nowait(Batch([2]))
    sender = asyncio.create_task(a.put(Batch([3])))  # input 0 is blocked and full: must wait
    await drained(b)
    assert not sender.done()
    assert a.stats().waits == 1
    assert handler.of("batch") == []

    b.put_nowait(Barrier(7))
    await sender
    await drained(a, b)
    assert handler.of("barrier") == [7]
    assert handler.of("batch") == [([1], []), ([2], []), ([3], [])]
    await finish(task, [a, b])


@pytest.mark.parametrize("end_first", [True, False], ids=["ended-before-barrier", "ends-while-aligning"])
async def test_barrier_alignment_does_not_wait_for_an_ended_input(end_first: bool) -> None:
    handler = Recorder()
    actor, (a, b) = make_actor(2, handler)
    task = asyncio.create_task(actor.run())
    try:
        if end_first:
            b.put_nowait(EndOfStream())
            await drained(b)
            a.put_nowait(Barrier(1))
        else:
            a.put_nowait(Barrier(1))
            await drained(a)
            b.put_nowait(EndOfStream())
        await drained(a, b)
        a.put_nowait(Batch(["after"]))
        a.put_nowait(EndOfStream())
        for _ in range(50):
            if task.done():
                break
            await asyncio.sleep(0)
        assert handler.of("barrier") == [1]
        assert handler.of("batch")[0] == (["after"], [])
        assert task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_processing_time_wakeup_calls_on_time_once_the_clock_gets_there() -> None:
    clock = ManualClock(start=0)
    handler = Recorder(clock)
    handler.timer_at = 100
    actor, boxes = make_actor(1, handler)
    task = asyncio.create_task(actor.run())
    await drained(*boxes)
    assert clock.waiters == 1  # the actor waits on the clock and on its inbox

    clock.advance(99)
    await drained(*boxes)
    assert handler.of("time") == []

    clock.advance(1)
    await handler.until(lambda: bool(handler.of("time")))
    assert handler.of("time") == [100]
    await drained(*boxes)
    assert clock.waiters == 0  # no timer left: the actor waits on its inbox alone

    # a message before the timer is due: handled, and the wait on the clock is taken up again
    handler.timer_at = 200
    boxes[0].put_nowait(Batch(["x"]))
    await drained(*boxes)
    assert clock.waiters == 1
    boxes[0].put_nowait(Batch(["y"]))
    await drained(*boxes)
    assert clock.waiters == 1  # the previous wait was cancelled, not left behind
    assert handler.of("time") == [100]

    clock.set(200)
    await handler.until(lambda: len(handler.of("time")) == 2)
    assert handler.of("time") == [100, 200]
    await finish(task, boxes)
