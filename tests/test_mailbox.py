"""Mailbox and Inbox: the bound, backpressure, FIFO order, closing, fair reading, blocking."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from actorflow.errors import ClosedResourceError, WouldBlock
from actorflow.runtime.mailbox import Inbox, Mailbox, MailboxStats
from actorflow.runtime.messages import Batch, EndOfStream


def batch(*values: object) -> Batch:
    return Batch(list(values))


async def settle(turns: int = 10) -> None:
    """Give every ready task a few turns of the loop (no waiting on real time)."""
    for _ in range(turns):
        await asyncio.sleep(0)


# -- Mailbox ---------------------------------------------------------------------------------------


def test_capacity_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="capacity"):
        Mailbox(0)


def test_put_nowait_raises_would_block_at_the_bound() -> None:
    box = Mailbox(2, name="a->b")
    box.put_nowait(batch(1))
    box.put_nowait(batch(2))
    with pytest.raises(WouldBlock, match="a->b"):
        box.put_nowait(batch(3))
    assert len(box) == 2
    box.get_nowait()
    box.put_nowait(batch(3))  # room again after one get
    assert len(box) == 2


def test_messages_come_out_in_fifo_order() -> None:
    box = Mailbox(5)
    messages = [batch(i) for i in range(5)]
    for message in messages:
        box.put_nowait(message)
    assert [box.get_nowait() for _ in range(5)] == messages
    with pytest.raises(IndexError):
        box.get_nowait()


async def test_put_parks_the_sender_until_get_makes_room() -> None:
    box = Mailbox(1)
    first, second = batch(1), batch(2)
    box.put_nowait(first)
    entered = asyncio.Event()

    async def sender() -> None:
        entered.set()
        await box.put(second)

    task = asyncio.create_task(sender())
    await entered.wait()
    await settle()
    assert not task.done()  # parked on the full mailbox
    assert box.stats().waits == 1
    assert len(box) == 1

    assert box.get_nowait() is first
    await task
    assert box.get_nowait() is second
    stats = box.stats()
    assert (stats.puts, stats.waits, stats.size) == (2, 1, 0)


async def test_put_with_room_does_not_wait() -> None:
    box = Mailbox(3)
    await box.put(batch(1))
    await box.put(batch(2))
    assert box.stats().waits == 0
    assert box.stats().puts == 2


async def test_close_wakes_parked_senders_and_refuses_later_puts() -> None:
    box = Mailbox(1, name="x")
    box.put_nowait(batch(0))
    senders = [asyncio.create_task(box.put(batch(i))) for i in (1, 2)]
    await settle()
    assert box.stats().waits == 2
    assert not any(task.done() for task in senders)

    box.close()
    results = await asyncio.gather(*senders, return_exceptions=True)
    assert all(isinstance(result, ClosedResourceError) for result in results), results
    with pytest.raises(ClosedResourceError):
        box.put_nowait(batch(3))
    with pytest.raises(ClosedResourceError):
        await box.put(batch(4))


async def test_cancelling_a_parked_put_leaves_no_waiter_behind() -> None:
    box = Mailbox(1)
    box.put_nowait(batch(0))
    task = asyncio.create_task(box.put(batch(1)))
    await settle()
    assert len(box._senders) == 1  # white box: the parked sender's future
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(box._senders) == 0
    box.get_nowait()
    assert len(box) == 0  # the cancelled put never delivered its message


async def test_a_cancelled_woken_sender_passes_the_wakeup_on() -> None:
    box = Mailbox(1)
    box.put_nowait(batch(0))
    first = asyncio.create_task(box.put(batch(1)))
    second = asyncio.create_task(box.put(batch(2)))
    await settle()
    box.get_nowait()  # room for one: wakes `first`
    first.cancel()  # ... which is cancelled before it can use the room
    try:
        with pytest.raises(asyncio.CancelledError):
            await first
        await settle()
        assert second.done(), "the second sender is still parked on an empty mailbox"
        assert len(box) == 1
    finally:
        second.cancel()
        await asyncio.gather(second, return_exceptions=True)


def test_stats_fill_is_size_over_capacity() -> None:
    assert MailboxStats("m", 4, 0, 0, 0).fill == 0.0
    assert MailboxStats("m", 4, 1, 7, 2).fill == 0.25
    assert MailboxStats("m", 4, 4, 7, 2).fill == 1.0

    box = Mailbox(4, name="m")
    box.put_nowait(batch(1))
    box.put_nowait(batch(2))
    stats = box.stats()
    assert stats == MailboxStats("m", 4, 2, 2, 0)
    assert stats.fill == 0.5


def test_stats_is_a_frozen_snapshot() -> None:
    box = Mailbox(2)
    stats = box.stats()
    box.put_nowait(batch(1))
    assert stats.size == 0  # taken before the put
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.size = 5  # type: ignore[misc]


# -- Inbox -----------------------------------------------------------------------------------------


def read_indices(inbox: Inbox) -> list[int]:
    """Drain the inbox with get_nowait; the mailbox index of each message in reading order."""
    indices = []
    while (item := inbox.get_nowait()) is not None:
        indices.append(item[0])
    return indices


def test_inbox_reads_mailboxes_round_robin() -> None:
    boxes = [Mailbox(8) for _ in range(3)]
    inbox = Inbox(boxes)
    for count, box in zip((3, 1, 2), boxes, strict=True):
        for i in range(count):
            box.put_nowait(batch(i))
    assert read_indices(inbox) == [0, 1, 2, 0, 2, 0]


def test_inbox_keeps_each_mailbox_in_fifo_order() -> None:
    boxes = [Mailbox(8) for _ in range(2)]
    inbox = Inbox(boxes)
    sent = {0: [batch("a", i) for i in range(3)], 1: [batch("b", i) for i in range(3)]}
    for index, messages in sent.items():
        for message in messages:
            boxes[index].put_nowait(message)
    received: dict[int, list[object]] = {0: [], 1: []}
    while (item := inbox.get_nowait()) is not None:
        received[item[0]].append(item[1])
    assert received == sent


def test_inbox_get_nowait_is_none_when_empty() -> None:
    inbox = Inbox([Mailbox(1), Mailbox(1)])
    assert inbox.get_nowait() is None


def test_a_mailbox_belongs_to_one_inbox() -> None:
    box = Mailbox(1, name="shared")
    Inbox([box])
    with pytest.raises(ValueError, match="shared"):
        Inbox([box])


def test_blocked_mailbox_is_not_read_while_the_others_are() -> None:
    boxes = [Mailbox(2) for _ in range(3)]
    inbox = Inbox(boxes)
    for box in boxes:
        box.put_nowait(batch(1))
        box.put_nowait(batch(2))
    inbox.block(1)
    assert read_indices(inbox) == [0, 2, 0, 2]
    assert len(boxes[1]) == 2  # untouched, and full: its sender now waits
    with pytest.raises(WouldBlock):
        boxes[1].put_nowait(batch(3))
    inbox.unblock(1)
    assert read_indices(inbox) == [1, 1]


def test_blocking_the_only_mailbox() -> None:
    box = Mailbox(2)
    inbox = Inbox([box])
    message = batch(1)
    box.put_nowait(message)
    inbox.block(0)
    assert inbox.get_nowait() is None
    inbox.unblock(0)
    assert inbox.get_nowait() == (0, message)
    assert len(box) == 0


async def test_wait_returns_when_a_message_is_put() -> None:
    boxes = [Mailbox(1), Mailbox(1)]
    inbox = Inbox(boxes)
    waiting = asyncio.create_task(inbox.wait())
    await settle()
    assert not waiting.done()
    message = EndOfStream()
    boxes[1].put_nowait(message)
    await waiting
    assert inbox.get_nowait() == (1, message)


async def test_get_waits_for_the_next_message() -> None:
    box = Mailbox(1)
    inbox = Inbox([box])
    getting = asyncio.create_task(inbox.get())
    await settle()
    assert not getting.done()
    message = batch(7)
    await box.put(message)
    assert await getting == (0, message)


async def test_wait_returns_at_once_when_a_message_is_there() -> None:
    box = Mailbox(1)
    inbox = Inbox([box])
    box.put_nowait(batch(1))
    await inbox.wait()  # would hang (test timeout) if it parked
    assert len(box) == 1  # wait does not consume


async def test_waiter_is_none_when_a_message_is_already_there() -> None:
    boxes = [Mailbox(1), Mailbox(1)]
    inbox = Inbox(boxes)
    boxes[0].put_nowait(batch(1))
    assert inbox.waiter() is None


async def test_waiter_ignores_messages_in_blocked_mailboxes_and_unblock_wakes_it() -> None:
    boxes = [Mailbox(1), Mailbox(1)]
    inbox = Inbox(boxes)
    inbox.block(0)
    boxes[0].put_nowait(batch(1))
    waiter = inbox.waiter()
    assert waiter is not None
    assert not waiter.done()
    inbox.unblock(0)
    assert waiter.done()
    assert inbox.get_nowait() is not None


async def test_waiter_resolves_on_put() -> None:
    boxes = [Mailbox(1), Mailbox(1)]
    inbox = Inbox(boxes)
    waiter = inbox.waiter()
    assert waiter is not None
    assert not waiter.done()
    boxes[1].put_nowait(batch(1))
    assert waiter.done()
