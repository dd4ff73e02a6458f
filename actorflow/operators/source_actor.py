"""The source actor: one loop that reads a source and drives the chain behind it.

A :class:`SourceActor` takes what happens at its source as typed events and handles each in turn,
in one ``match`` (:meth:`SourceActor._handle`); that loop is the only place that calls the chain
while the input runs:

- :data:`Records`: a batch the source read, as it yielded it (a list of records, or a
  :class:`~actorflow.runtime.messages.Batch` it stamped itself). It is stamped with event time, its
  marks are checked against a restored watermark, and it goes through the chain; barriers the
  coordinator asked for meanwhile go out right after it, and a drain stops the loop there.
- :class:`Idle` / :class:`Active`: the input has been quiet for the watermark strategy's idleness
  timeout, and records came again after that (a ``StreamStatus`` downstream).
- :class:`BarrierDue`: the coordinator asked for a barrier while the input was quiet.
- :class:`Wakeup`: the source woke while its input was quiet (a processing-time timer, output an
  operator got ready in the background, the idleness timeout, a barrier request): the chain gets
  its time.

The end of the input ends the events; the actor then puts out its final watermark, its final
state (with checkpoints) and the end of the stream. When nothing but records can happen (no
idleness timeout, no timers or background output in the chain, no checkpoints), the events are the
source's batches as it yields them, with nothing in between; otherwise :func:`watch` races each
read against the clock, the chain's wake-ups and barrier requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from actorflow.operators.base import OperatorContext
from actorflow.operators.locate import locate
from actorflow.operators.snapshots import dumps, ended_owner, part_name, watermark_owner
from actorflow.operators.sources import Source
from actorflow.operators.stateless import stamp
from actorflow.runtime.messages import MAX_WATERMARK, MIN_WATERMARK, Barrier, Batch
from actorflow.time.clock import Clock
from actorflow.time.watermarks import WatermarkStrategy

if TYPE_CHECKING:
    from actorflow.operators.chain import Chain

__all__ = [
    "Active",
    "BarrierDue",
    "Event",
    "Idle",
    "Records",
    "SourceActor",
    "Wakeup",
    "watch",
]


#: A batch read from the source, as it yielded it: a list of raw records, or a :class:`Batch` it
#: stamped itself (per-partition watermarks). Not wrapped: the records cost the loop nothing more.
Records: TypeAlias = list[Any] | Batch


@dataclass(frozen=True, slots=True)
class Idle:
    """The input has been quiet for the idleness timeout: downstream may stop waiting for it."""


@dataclass(frozen=True, slots=True)
class Active:
    """Records came again after :class:`Idle` (before those records)."""


@dataclass(frozen=True, slots=True)
class BarrierDue:
    """The coordinator asked for a barrier while the input was quiet."""


@dataclass(frozen=True, slots=True)
class Wakeup:
    """The source woke while its input was quiet: the chain's timers and background output."""


#: What happens at a source, one event at a time.
Event: TypeAlias = Records | Idle | Active | BarrierDue | Wakeup

# The events without data: one of each does.
_IDLE = Idle()
_ACTIVE = Active()
_BARRIER_DUE = BarrierDue()
_WAKEUP = Wakeup()


async def watch(
    reader: AsyncIterator[Records],
    clock: Clock,
    *,
    idle_timeout: int | None = None,
    wakeup: Callable[[], Awaitable[object] | None] | None = None,
    barrier_requested: asyncio.Event | None = None,
) -> AsyncGenerator[Event, None]:
    """The events of ``reader``: its batches and, while it is quiet, what else happens.

    Each read of ``reader`` is raced against the end of ``idle_timeout`` ms without records (read
    on ``clock``), the awaitable ``wakeup()`` returns (None: nothing to wait for) and
    ``barrier_requested``. A batch wins over the rest; a wake without one is, in this order,
    :class:`BarrierDue` (if ``barrier_requested`` is set; the handler clears it), :class:`Idle`
    (once per quiet spell) and always :class:`Wakeup`. The read stays pending across a wake and
    is not repeated; it is cancelled when the events are closed. With nothing to race it against
    (no deadline, nothing to wake for, no barrier to wait for) the read is awaited inline, in the
    caller's task. Ends when ``reader`` does; what ``reader`` raises propagates.

    >>> import asyncio
    >>> from actorflow.time.clock import ManualClock
    >>> async def quiet() -> list[Event]:
    ...     clock, records = ManualClock(), asyncio.Queue()
    ...     async def reader():
    ...         while (values := await records.get()) is not None:
    ...             yield values
    ...     events = watch(reader(), clock, idle_timeout=100)
    ...     asyncio.get_running_loop().call_soon(clock.advance, 100)  # while it waits to read
    ...     seen = [await anext(events), await anext(events)]
    ...     records.put_nowait([1]), records.put_nowait(None)
    ...     return seen + [event async for event in events]
    >>> asyncio.run(quiet())
    [Idle(), Wakeup(), Active(), [1]]
    """
    idle = False
    last_record = clock.now()
    pending: asyncio.Future[Records] | None = None
    read: asyncio.Future[Records] | None
    try:
        while True:
            deadline = None if idle_timeout is None or idle else last_record + idle_timeout
            waits = _waits(clock, deadline, wakeup, barrier_requested)
            if pending is None and not waits:
                # Nothing but the read can happen meanwhile (no timer due, no output on its way,
                # no barrier to wait for): read here, without a task and a wait per batch.
                read = None
            else:
                if pending is None:
                    pending = asyncio.ensure_future(anext(reader))
                try:
                    await asyncio.wait((pending, *waits), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    _cancel(waits)
                if not pending.done():
                    if barrier_requested is not None and barrier_requested.is_set():
                        yield _BARRIER_DUE
                    if deadline is not None and clock.now() >= deadline:
                        idle = True
                        yield _IDLE
                    yield _WAKEUP
                    continue
                read, pending = pending, None
            try:
                values = await anext(reader) if read is None else read.result()
            except StopAsyncIteration:
                return
            if idle:
                idle = False
                yield _ACTIVE
            last_record = clock.now()
            yield values
    finally:
        if pending is not None:
            await _forget(pending)


def _waits(
    clock: Clock,
    deadline: int | None,
    wakeup: Callable[[], Awaitable[object] | None] | None,
    barrier_requested: asyncio.Event | None,
) -> list[asyncio.Future[Any]]:
    """What a quiet input waits for besides its read, as futures to cancel after the wait."""
    waits: list[asyncio.Future[Any]] = []
    if deadline is not None:
        waits.append(clock.at(deadline))
    ready = wakeup() if wakeup is not None else None  # timers, output ready in an operator
    if ready is not None:
        waits.append(asyncio.ensure_future(ready))
    if barrier_requested is not None:
        waits.append(asyncio.ensure_future(barrier_requested.wait()))
    return waits


def _cancel(waits: list[asyncio.Future[Any]]) -> None:
    """Cancel what a quiet input waited for (done ones are left as they are)."""
    for wait in waits:
        wait.cancel()


async def _forget(read: asyncio.Future[Any]) -> None:
    """Cancel a pending read and wait until it has stopped; what it raised is retrieved, not
    raised: the reader is being closed anyway."""
    read.cancel()
    await asyncio.wait((read,))
    if not read.cancelled():
        read.exception()


async def _nothing() -> AsyncIterator[list[Any]]:
    """The reader of a source restored as ended."""
    return
    yield  # an async generator that yields nothing


class SourceActor:
    """Reads a source, stamps event time, and drives the chain behind it (module docstring).

    With checkpoints, the watermark it has put out is checkpointed beside the source's position
    (part ``watermark_owner(name)/index``), and a restore (``restore_watermark``) puts it out again
    before the first record: the watermark generator starts afresh after a restore and would
    otherwise judge the first records against no watermark at all, then against one computed from
    the records read since, so a record late before the crash would be on time after it. Marks the
    fresh generator makes at or below the restored watermark are dropped, so downstream sees the
    watermarks of a run that never failed.
    """

    def __init__(
        self,
        name: str,
        source: Source,
        context: OperatorContext,
        strategy: WatermarkStrategy | None,
        chain: Chain,
        *,
        restore: list[Any] | None = None,
        restore_watermark: int | None = None,
        restore_ended: bool = False,
    ) -> None:
        self.name = name
        self.source = source
        self.context = context
        self.strategy = strategy
        self.chain = chain
        self._restore = restore
        #: The restored watermark while the fresh generator's marks have not passed it (None: no
        #: restored watermark, or passed).
        self._floor = restore_watermark
        if restore_watermark is not None and restore_watermark <= MIN_WATERMARK:
            self._floor = None
        #: Every instance had ended at the restored checkpoint: read nothing, end at once.
        self._restore_ended = restore_ended
        #: Timestamps and marks for a list of records (the strategy's; made when the run starts).
        self._stamp: Callable[[list[Any]], Batch] = Batch
        #: The last watermark put out (kept only with checkpoints, which record it).
        self._watermark = MIN_WATERMARK
        # Checkpoint ids whose barrier this source still has to put out, and a wake-up for them.
        self._barriers: list[int] = []
        self._barrier_requested = asyncio.Event()
        self._ended = False
        self._draining = False
        if chain.hooks is not None:
            chain.hooks.register(self)

    # -- what the job and the coordinator call -------------------------------------------------

    def drain(self) -> None:
        """Read no more: after the batch in hand (or at once, if the source's read ends when
        told to stop), end the input as if it had ended, so that what was read goes through."""
        self._draining = True
        self.source.stop()

    def request_barrier(self, checkpoint_id: int) -> None:
        """Put barrier ``checkpoint_id`` out after the current batch (the coordinator asks).

        After the end of its input the source puts out no barrier: the chain's final state is its
        acknowledgement (see
        :meth:`~actorflow.checkpoint.coordinator.CheckpointCoordinator.actor_finished`).
        """
        if self._ended:
            return
        self._barriers.append(checkpoint_id)
        self._barrier_requested.set()

    async def checkpoint_complete(self, checkpoint_id: int) -> None:
        """Tell the source (it may commit its positions now)."""
        await self.source.checkpoint_complete(self.context, checkpoint_id)

    async def checkpoint_aborted(self, checkpoint_id: int) -> None:
        """Nothing to undo: a source only acts on completed checkpoints."""

    # -- the run -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Open the chain, handle the input's events until it ends (or a drain stops it), then
        end the stream; the source and the chain are closed whatever happens. An exception is
        re-raised with a note naming the source instance (unless an operator was named)."""
        strategy = self.strategy
        if strategy is not None:  # a fresh watermark generator for each run
            generator = strategy.generator()
            self._stamp = lambda values: stamp(values, strategy, generator)
        if self._restore is not None:
            self.source.restore_state(self.context, self._restore)
        # Drained before it started (a stop while the job was starting): nothing to read.
        reader = _nothing() if self._restore_ended or self._draining else self.source.read(self.context)
        watching = self._watch(reader)
        completed = False
        try:
            await self.chain.open()
            if self._floor is not None:  # the restored watermark goes out before any record
                self._watermark = self._floor
                await self.chain.on_batch(Batch([], None, [(0, self._floor)]))
            await self._handle(reader if watching is None else watching)
            await self._end_input()
            completed = True
        except Exception as error:
            locate(error, self.context.label)
            raise
        finally:
            try:
                if watching is not None:
                    # Closed here, not by the garbage collector's finaliser task: its pending
                    # read of ``reader`` stops before ``reader`` is closed.
                    await watching.aclose()
                await reader.aclose()  # type: ignore[attr-defined]
                await self.source.finish(self.context, completed=completed)
            finally:
                await self.chain.close()

    def _watch(self, reader: AsyncIterator[Records]) -> AsyncGenerator[Event, None] | None:
        """:func:`watch` of ``reader`` with what can happen to this actor's input while it is
        quiet; None when nothing can: the batches of ``reader`` are then the only events."""
        chain = self.chain
        idle_timeout = self.strategy.idle_timeout_ms if self.strategy is not None else None
        if idle_timeout is None and not chain.wants_wakeups and chain.hooks is None:
            return None
        return watch(
            reader,
            self.context.clock,
            idle_timeout=idle_timeout,
            wakeup=chain.wakeup,
            barrier_requested=self._barrier_requested if chain.hooks is not None else None,
        )

    async def _handle(self, events: AsyncIterator[Event]) -> None:
        """The loop: each event in turn, until the input ends or, after a batch, a drain."""
        chain = self.chain
        async for event in events:
            match event:
                case Idle():
                    await chain.on_status(True)
                case Active():
                    await chain.on_status(False)
                case BarrierDue():
                    await self._emit_barriers()
                case Wakeup():
                    await chain.on_time()
                case records:  # Records: whatever the source yielded (a list, or a Batch)
                    await chain.on_batch(self._batch_of(records))
                    if self._barriers:  # requested meanwhile: they go out right after it
                        await self._emit_barriers()
                    if self._draining:
                        return

    def _batch_of(self, records: Records) -> Batch:
        """``records`` as the chain gets them: stamped with event time (unless the source did),
        and with checkpoints, without the marks a restored watermark covers (the last mark left
        is the watermark put out)."""
        batch = records if isinstance(records, Batch) else self._stamp(records)
        if batch.marks and self.chain.hooks is not None:
            batch = self._above_floor(batch)
            if batch.marks:
                self._watermark = batch.marks[-1][1]
        return batch

    def _above_floor(self, batch: Batch) -> Batch:
        """``batch`` without the marks at or below the restored watermark: the fresh generator
        catching up with it. Once a mark passes it, the generator's marks only rise."""
        floor = self._floor
        if floor is None or not batch.marks:
            return batch
        marks = [mark for mark in batch.marks if mark[1] > floor]
        if marks:
            self._floor = None
        return Batch(batch.values, batch.timestamps, marks)

    async def _end_input(self) -> None:
        """The input ended (or was drained): requested barriers go out, then, with checkpoints, the
        final position; then the final watermark and the end of the stream."""
        chain = self.chain
        hooks = chain.hooks
        extra = None
        if hooks is not None:
            await self._emit_barriers()  # requested ones go out before the end
            self._ended = True
            hooks.source_finished()
            extra = self._position_parts()
            extra[part_name(ended_owner(self.context.name), self.context.index)] = dumps(True)
        await chain.on_batch(Batch([], None, [(0, MAX_WATERMARK)]))
        await chain.on_end(extra)

    # -- checkpoints ---------------------------------------------------------------------------

    async def _emit_barriers(self) -> None:
        """Put out every barrier requested so far, in order, each with the source's position."""
        self._barrier_requested.clear()
        while self._barriers:
            checkpoint_id = self._barriers.pop(0)
            await self.chain.on_barrier(Barrier(checkpoint_id), self._position_parts())

    def _position_parts(self) -> dict[str, bytes]:
        """The source's position and the watermark put out so far, as checkpoint parts."""
        context = self.context
        parts = {}
        position = self.source.snapshot_state(context)
        if position is not None:
            parts[part_name(context.name, context.index)] = dumps(position)
        # Also when it is still the minimum: the restore takes the lowest of all instances'.
        parts[part_name(watermark_owner(context.name), context.index)] = dumps(self._watermark)
        return parts
