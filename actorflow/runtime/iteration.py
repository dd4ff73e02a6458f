"""The head of an iteration: the actor that reads the loop's input and its back edge.

An :class:`IterationHead` is an :class:`~actorflow.runtime.actor.Actor` with a second inbox, the
back edges from the loop's tail (:class:`~actorflow.runtime.feedback.FeedbackMailbox`, whose puts
never wait), and four rules of its own:

- **Feedback first.** It takes a message off the back edge whenever there is one, and new input
  only while the back edge is empty. So the back edge holds at most what the body held when the
  head last took input, multiplied by what the body makes of it (a flat map that doubles records
  doubles it), however long the input is; a full body parks the head, not the tail, and the
  backpressure reaches the sources, not the loop.
- **Event time is the input's.** Records that come back keep their timestamps; the watermarks the
  tail sends back are dropped, so the head's watermark is its input's alone: a loop cannot hold
  event time back. (A window in the body may therefore see fed-back records late.)
- **It ends when the loop is over** (:class:`~actorflow.runtime.loop.Loop`: the input ended and no
  record is left anywhere in the loop, nor any timer or request that could make one). It then
  ends its output, the body ends behind it, and its back edges are sealed.
- **Checkpoints with a cycle** (Carbone et al., 2015, the barrier snapshots for cyclic graphs): it
  aligns a barrier over its input only (waiting for the back edge would wait for itself),
  snapshots its operators and passes the barrier into the body (:meth:`LoopHandler.snapshot_and_forward`);
  then every record that comes back on a back edge before that back edge brings the barrier back
  is both processed and *logged*. Those records were in flight round the loop when the snapshot
  was cut: no operator's snapshot holds their effect. When the barrier has come back on every back
  edge, the head acknowledges its snapshot with the log as one more part
  (:meth:`LoopHandler.acknowledge_later`); a restored head puts the logged records into the body
  again before it reads any input. With several head instances and a keyed back edge, another
  instance's barrier can come round to this head before this head has aligned it: what follows it
  on that back edge belongs after this head's snapshot, so that back edge is blocked until the head
  aligns (at once when its input has ended: an ended input counts as aligned), and it does not wait
  for that edge again.
"""

from __future__ import annotations

import asyncio
import pickle
from dataclasses import dataclass, field
from typing import Any, Protocol

from actorflow.runtime.actor import Actor, Handler
from actorflow.runtime.feedback import FeedbackMailbox
from actorflow.runtime.loop import LoopMember
from actorflow.runtime.mailbox import Inbox
from actorflow.runtime.messages import Barrier, Batch, EndOfStream, Message, StreamStatus

__all__ = ["IterationHead", "LoopHandler"]


class LoopHandler(Handler, Protocol):
    """What an iteration head drives: a handler whose barrier can be acknowledged later."""

    async def snapshot_and_forward(self, barrier: Barrier) -> dict[str, Any] | None:
        """Snapshot every operator and pass ``barrier`` on, without acknowledging it; return the
        parts to acknowledge later (None: the job takes no checkpoints)."""

    async def acknowledge_later(
        self, checkpoint_id: int, parts: dict[str, Any], extra: dict[str, bytes]
    ) -> None:
        """Acknowledge the snapshot :meth:`snapshot_and_forward` took, with ``extra`` parts."""


@dataclass(eq=False)
class _Logging:
    """A snapshot whose barrier is on its way round the loop, and what came back meanwhile."""

    #: The back edges (indices) that have not brought the barrier back yet.
    waiting: set[int]
    parts: dict[str, Any]
    #: ``(values, timestamps)`` of every batch that came back on a waiting back edge.
    log: list[tuple[list[Any], list[Any] | None]] = field(default_factory=list)


class IterationHead(Actor):
    """The actor at the head of a loop (module docstring).

    ``inbox`` reads the loop's input (as an :class:`Actor`'s does), ``back_edges`` come from the
    tail's instances; ``connected`` makes it a two-input head (a connected iteration: input records
    go to input 0 of the head operator, fed-back ones to input 1). ``log_part`` names the part
    holding the back edge's log in a checkpoint; ``restored`` are the batches a restored checkpoint
    logged, put into the body again before any input.
    """

    __slots__ = (
        "_back_edges",
        "_connected",
        "_early",
        "_feedback",
        "_last_aligned",
        "_log_part",
        "_logging",
        "_member",
        "_restored",
    )

    def __init__(
        self,
        name: str,
        inbox: Inbox,
        back_edges: list[FeedbackMailbox],
        handler: LoopHandler,
        member: LoopMember,
        *,
        connected: bool = False,
        log_part: str | None = None,
        restored: list[Batch] | None = None,
    ) -> None:
        super().__init__(name, inbox, handler)
        self._back_edges = back_edges
        self._feedback = Inbox(list(back_edges))
        self._member = member
        self._connected = connected
        self._log_part = log_part
        self._restored = restored or []
        self._logging: dict[int, _Logging] = {}
        #: Back edges that brought a barrier before this head had aligned it (another instance's
        #: snapshot came round first), by checkpoint id: blocked until this head aligns.
        self._early: dict[int, set[int]] = {}
        self._last_aligned = 0

    async def run(self) -> None:
        handler = self._handler
        inbox = self._inbox
        feedback = self._feedback
        loop = self._member.loop
        try:
            await handler.open()
            for batch in self._restored:  # what was on its way round the loop at the checkpoint
                await self._into_body(batch)
            self._restored = []
            while True:
                item = feedback.get_nowait()
                if item is not None:
                    await self._on_feedback(*item)
                    continue
                item = inbox.get_nowait()
                if item is not None:
                    await self._on_input(*item)
                    continue
                if loop.done:
                    break
                await self._wait()
            self._seal()
            await handler.on_end()
        finally:
            self._seal()
            await handler.close()

    async def _on_input(self, index: int, message: Message) -> None:
        """A message of the loop's input: as an :class:`Actor` handles it."""
        valve = self._valve
        if type(message) is Batch:
            if valve.is_idle(index):
                await self._set_idle(index, False)
            marks = message.marks
            if marks:
                message = Batch(message.values, message.timestamps, valve.merge_marks(index, marks))
            if self._connected:
                await self._handler.on_input(message, 0)
            else:
                await self._handler.on_batch(message)
        elif type(message) is StreamStatus:
            await self._set_idle(index, message.idle)
        elif type(message) is EndOfStream:
            self._member.input_ended(index)
            was_idle = valve.idle
            await self._changed(was_idle, valve.end(index))
            await self._complete_alignments()
            await self._align_early()
        elif type(message) is Barrier:
            self._barriers.setdefault(message.checkpoint_id, set()).add(index)
            self._inbox.block(index)
            await self._complete_alignments()

    async def _on_feedback(self, index: int, message: Message) -> None:
        """A message from back edge ``index``: records go into the body again (logged while a
        barrier is on its way round), a barrier that came back completes a snapshot; the tail's
        watermarks, stream status and end of stream say nothing about the loop's input."""
        if type(message) is Batch:
            if not message.values:
                return
            batch = Batch(message.values, message.timestamps)
            for pending in self._logging.values():
                if index in pending.waiting:
                    pending.log.append((batch.values, batch.timestamps))
            await self._into_body(batch)
        elif type(message) is Barrier:
            checkpoint_id = message.checkpoint_id
            if checkpoint_id <= self._last_aligned:
                await self._returned(index, checkpoint_id)
                return
            # Another head instance snapshotted first and its barrier came round to this one:
            # what follows on this back edge comes after that snapshot, so it must come after
            # this head's too. The edge waits until this head aligns (at once if its input ended).
            self._early.setdefault(checkpoint_id, set()).add(index)
            self._feedback.block(index)
            await self._align_early()

    async def _align_early(self) -> None:
        """Once every input has ended, barriers can only come round the loop: align them now (an
        ended input counts as aligned, as in :class:`Actor`)."""
        valve = self._valve
        if not all(valve.is_ended(i) for i in range(len(self._inbox.mailboxes))):
            return
        for checkpoint_id in sorted(self._early):
            await self._aligned(checkpoint_id)

    async def _into_body(self, batch: Batch) -> None:
        if self._connected:
            await self._handler.on_input(batch, 1)
        else:
            await self._handler.on_batch(batch)

    async def _aligned(self, checkpoint_id: int) -> None:
        # The barrier came on every input: snapshot, pass it into the body, log until it is back
        # on every back edge (those that brought it early have it: they open again now).
        handler: LoopHandler = self._handler  # type: ignore[assignment]
        self._last_aligned = max(self._last_aligned, checkpoint_id)
        returned = self._early.pop(checkpoint_id, set())
        opened = set(returned)
        for stale in [n for n in self._early if n < checkpoint_id]:  # aborted: never aligned here
            opened |= self._early.pop(stale)
        for index in opened.difference(*self._early.values()):
            self._feedback.unblock(index)
        parts = await handler.snapshot_and_forward(Barrier(checkpoint_id))
        if parts is None:
            return
        pending = _Logging(set(range(len(self._back_edges))) - returned, parts)
        if pending.waiting:
            self._logging[checkpoint_id] = pending
        else:
            await handler.acknowledge_later(checkpoint_id, parts, {})

    async def _returned(self, index: int, checkpoint_id: int) -> None:
        pending = self._logging.get(checkpoint_id)
        if pending is None:
            return
        pending.waiting.discard(index)
        if pending.waiting:
            return
        del self._logging[checkpoint_id]
        extra = {}
        if self._log_part is not None and pending.log:
            extra[self._log_part] = pickle.dumps(pending.log, protocol=pickle.HIGHEST_PROTOCOL)
        handler: LoopHandler = self._handler  # type: ignore[assignment]
        await handler.acknowledge_later(checkpoint_id, pending.parts, extra)

    async def _wait(self) -> None:
        """Nothing to read: wait for the back edge, the input, a timer, or the end of the loop.
        Without a timer or background work pending the head parks (the loop may be over)."""
        feedback_ready = self._feedback.waiter()
        if feedback_ready is None:
            return
        inputs_ready = self._inbox.waiter()
        if inputs_ready is None:
            feedback_ready.cancel()
            return
        waits: list[asyncio.Future[Any]] = [feedback_ready, inputs_ready]
        wakeup = self._handler.wakeup()
        timer = None
        member = self._member
        if wakeup is None:
            waits.append(member.loop.finished)
            member.park()
        else:
            timer = asyncio.ensure_future(wakeup)
            waits.append(timer)
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            member.wake()
            feedback_ready.cancel()
            inputs_ready.cancel()
            fired = timer is not None and timer.done() and not timer.cancelled()
            if timer is not None:
                timer.cancel()
        if fired:
            await self._handler.on_time()

    def _seal(self) -> None:
        for edge in self._back_edges:
            edge.seal()
