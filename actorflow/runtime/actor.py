"""An actor: one operator instance (or chain) reading its inbox, one message at a time.

The runtime knows nothing of operators. An actor hands what it reads to a :class:`Handler` (the
operator layer's chain of operators) after doing the runtime's own part: merging watermarks over its
inputs (:class:`~actorflow.runtime.valve.WatermarkValve`), tracking idleness and end of stream, and
waking the handler when a processing-time timer is due.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Protocol

from actorflow.runtime.mailbox import Inbox
from actorflow.runtime.messages import Barrier, Batch, EndOfStream, StreamStatus
from actorflow.runtime.valve import WatermarkValve

__all__ = ["Actor", "Handler", "Runnable"]


class Runnable(Protocol):
    """Anything the job supervisor runs as one task: a name and an async ``run``."""

    name: str

    async def run(self) -> None: ...


class Handler(Protocol):
    """What an actor drives: the operator chain of one instance."""

    async def open(self) -> None:
        """Called once before the first message."""

    async def on_batch(self, batch: Batch) -> None:
        """Records and merged watermarks, in channel order."""

    async def on_input(self, batch: Batch, input: int) -> None:
        """Like :meth:`on_batch`, for an actor with two inputs: ``input`` says whose records."""

    async def on_status(self, idle: bool) -> None:
        """All inputs went idle (``True``) or one came back (``False``)."""

    async def on_barrier(self, barrier: Barrier) -> None:
        """A barrier has arrived on every input (aligned)."""

    async def on_end(self) -> None:
        """Every input has ended: flush and send end of stream downstream."""

    async def close(self) -> None:
        """Release resources; called even when the actor failed."""

    def wakeup(self) -> Awaitable[object] | None:
        """A future that resolves when the handler wants :meth:`on_time`, or None."""

    async def on_time(self) -> None:
        """The wakeup future resolved (a processing-time timer is due)."""


class Actor:
    """Runs a handler over an inbox until every input has ended.

    Watermarks are merged here: a batch's marks are replaced by the actor's merged marks before the
    handler sees it, so operators only ever see one monotonic watermark.
    """

    __slots__ = ("_barriers", "_handler", "_inbox", "_inputs", "_valve", "name")

    def __init__(self, name: str, inbox: Inbox, handler: Handler, inputs: list[int] | None = None) -> None:
        self.name = name
        self._inbox = inbox
        self._handler = handler
        #: For a two-input handler: the input number of each mailbox (None: one logical input).
        self._inputs = inputs
        self._valve = WatermarkValve(len(inbox.mailboxes))
        self._barriers: dict[int, set[int]] = {}

    @property
    def watermark(self) -> int:
        return self._valve.current

    async def run(self) -> None:
        handler = self._handler
        inbox = self._inbox
        valve = self._valve
        inputs = self._inputs
        open_inputs = len(inbox.mailboxes)
        try:
            await handler.open()
            while open_inputs:
                item = inbox.get_nowait()
                if item is None:
                    await self._idle_wait()
                    continue
                index, message = item
                if type(message) is Batch:
                    if valve.is_idle(index):
                        await self._set_idle(index, False)
                    marks = message.marks
                    if marks:
                        message = Batch(message.values, message.timestamps, valve.merge_marks(index, marks))
                    if inputs is None:
                        await handler.on_batch(message)
                    else:
                        await handler.on_input(message, inputs[index])
                elif type(message) is StreamStatus:
                    await self._set_idle(index, message.idle)
                elif type(message) is EndOfStream:
                    open_inputs -= 1
                    was_idle = valve.idle
                    await self._changed(was_idle, valve.end(index))
                    await self._complete_alignments()
                elif type(message) is Barrier:
                    self._barriers.setdefault(message.checkpoint_id, set()).add(index)
                    inbox.block(index)
                    await self._complete_alignments()
            await handler.on_end()
        finally:
            await handler.close()

    async def _set_idle(self, index: int, idle: bool) -> None:
        was_idle = self._valve.idle
        await self._changed(was_idle, self._valve.set_idle(index, idle))

    async def _changed(self, was_idle: bool, moved: int | None) -> None:
        # Order downstream sees: active again, then the watermark; or the watermark, then idle.
        handler = self._handler
        idle = self._valve.idle
        if was_idle and not idle:
            await handler.on_status(False)
        if moved is not None:
            await handler.on_batch(Batch([], None, [(0, moved)]))
        if idle and not was_idle:
            await handler.on_status(True)

    async def _complete_alignments(self) -> None:
        # Alignment: an input that delivered barrier n is not read again until barrier n has come
        # on every input that is still open (an ended input will never send it).
        valve = self._valve
        inputs = range(len(self._inbox.mailboxes))
        for checkpoint_id in sorted(self._barriers):
            seen = self._barriers[checkpoint_id]
            if any(i not in seen and not valve.is_ended(i) for i in inputs):
                return
            del self._barriers[checkpoint_id]
            for index in seen:
                self._inbox.unblock(index)
            await self._aligned(checkpoint_id)

    async def _aligned(self, checkpoint_id: int) -> None:
        """Barrier ``checkpoint_id`` came on every open input: the handler snapshots and passes it
        on (an iteration's head does more, see :mod:`actorflow.runtime.iteration`)."""
        await self._handler.on_barrier(Barrier(checkpoint_id))

    async def _idle_wait(self) -> None:
        wakeup = self._handler.wakeup()
        if wakeup is None:
            await self._inbox.wait()
            return
        inbox_ready = self._inbox.waiter()
        if inbox_ready is None:
            return
        timer = asyncio.ensure_future(wakeup)
        try:
            await asyncio.wait((timer, inbox_ready), return_when=asyncio.FIRST_COMPLETED)
        finally:
            inbox_ready.cancel()
            fired = timer.done() and not timer.cancelled()
            timer.cancel()
        if fired:
            await self._handler.on_time()
