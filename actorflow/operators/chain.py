"""Operator chains: the operators one actor runs, back to back, as plain calls.

A :class:`Chain` is the runtime :class:`~actorflow.runtime.actor.Handler` of an actor: each batch
goes through its operators in order and what comes out of the last one goes to every outgoing edge.
A :class:`SourceActor` drives a chain from a :class:`~actorflow.operators.sources.Source` instead of
an inbox. Any exception a user function raises is re-raised with a note naming the operator
instance, and the job fails with it.

**Large states are pickled in a forked child** (:mod:`actorflow.runtime.forked`): at a barrier the
chain pickles an operator's state on the event loop only while that is cheap. Once pickling an
operator's state took ``$ACTORFLOW_SNAPSHOT_FORK_MS`` (default :data:`FORK_AFTER_MS`) or more, the
chain forks for it instead, one child for every such state of the chain, and hands the coordinator
parts whose data the child is still making; the loop pauses only for the fork (3-6 ms at 250 MB of
resident memory, 20-40 ms at 2.4 GB). The last time measured (inline, or the child's own) decides
the next checkpoint, so a state that shrinks goes back inline; before a state's first pickling, a
look at the sizes of its outer containers (:func:`_entries`, ``ENTRIES_PER_MS`` entries per ms of
the threshold) stands in for it. In a large process a fork costs more than a small pickle: a state
forks only if it took at least twice as long as the chain's last fork (:data:`FORK_MARGIN`).
``0`` forks for every state, ``off`` never; a child that failed
makes the next snapshot of its states inline, so a state that cannot be pickled fails the job as
it always did (the checkpoint the child failed is aborted with the error).
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Mapping
from typing import Any

from actorflow.errors import CheckpointError
from actorflow.operators.base import Operator, OperatorContext
from actorflow.operators.failures import failing_record, shorten
from actorflow.operators.side_outputs import OutputTag, SideOutputs
from actorflow.operators.snapshots import (
    CheckpointHooks,
    SnapshotPart,
    dumps,
    ended_owner,
    part_name,
    watermark_owner,
)
from actorflow.operators.sources import Source
from actorflow.operators.stateless import stamp
from actorflow.runtime.forked import ChildPickling, can_fork, pickle_in_child
from actorflow.runtime.gcpause import paused_gc
from actorflow.runtime.messages import (
    MAX_WATERMARK,
    MIN_WATERMARK,
    Barrier,
    Batch,
    EndOfStream,
    StreamStatus,
)
from actorflow.runtime.metrics import ActorMetrics
from actorflow.runtime.output import Output
from actorflow.time.clock import Clock
from actorflow.time.watermarks import WatermarkStrategy

__all__ = ["Chain", "FORK_AFTER_MS", "FORK_ENV", "SourceActor"]

#: The environment variable: pickle a state in a forked child once pickling it took this many ms.
FORK_ENV = "ACTORFLOW_SNAPSHOT_FORK_MS"
#: Its default: about 10,000 small entries (a fork costs a few ms, a pickle about 1 ms per 1,400).
FORK_AFTER_MS = 10.0
#: Before a state was ever pickled: entries in its outer containers per ms of the threshold.
ENTRIES_PER_MS = 1_000
#: A state forks only if pickling it took this many times as long as the chain's last fork.
FORK_MARGIN = 2.0


def _locate(error: BaseException, label: str, values: list[Any] | None = None) -> None:
    """Note on ``error`` the operator instance it was raised in and, when the operator had a batch
    in hand (``values``), the record a user function failed on; the command line reads the
    attributes ``_actorflow_operator`` and ``_actorflow_record`` (a shortened repr) for its one
    line."""
    if getattr(error, "_actorflow_located", False):
        return
    error._actorflow_located = True  # type: ignore[attr-defined]
    error._actorflow_operator = label  # type: ignore[attr-defined]
    found, record = failing_record(error, values) if values else (False, None)
    if found:
        shown = shorten(record)
        error._actorflow_record = shown  # type: ignore[attr-defined]
        error.add_note(f"actorflow: raised in operator {label} on record {shown}")
    else:
        error.add_note(f"actorflow: raised in operator {label}")


async def _resolved(parts: dict[str, bytes | SnapshotPart]) -> dict[str, bytes]:
    """``parts`` as bytes (a final state is written into every later checkpoint: it may share no
    files with them)."""
    resolved = {}
    for name, part in parts.items():
        if isinstance(part, SnapshotPart):
            if part.shared:
                raise CheckpointError(f"part {name!r}: a final state cannot share files")
            part = part.data if isinstance(part.data, bytes) else await part.data
        resolved[name] = part
    return resolved


def fork_after_ms(environ: Mapping[str, str] = os.environ) -> float | None:
    """The threshold of ``$ACTORFLOW_SNAPSHOT_FORK_MS`` (module docstring): None when the chain
    never forks (``off``, or no ``os.fork`` here). Raises ValueError for anything but a number of
    ms or ``off``.

    >>> fork_after_ms({}), fork_after_ms({FORK_ENV: "0"}), fork_after_ms({FORK_ENV: "off"})
    (10.0, 0.0, None)
    """
    text = environ.get(FORK_ENV, "").strip().lower()
    if text == "off" or not can_fork():
        return None
    if not text:
        return FORK_AFTER_MS
    try:
        return max(0.0, float(text))
    except ValueError:
        raise ValueError(f"${FORK_ENV} must be a number of ms or 'off', not {text!r}") from None


def _entries(state: Any, depth: int = 3) -> int:
    """About how many entries ``state`` holds, from the lengths of its outer containers only
    (containers of up to 16 items are looked into, ``depth`` levels deep): a keyed operator's
    ``{"state": {name: {key: value}}, ...}`` counts its keys, without visiting a single one.

    >>> _entries({"state": {"count": dict.fromkeys(range(50_000), 0)}, "key_groups": (0, 8)})
    50005
    """
    if not isinstance(state, dict | list | tuple | set):
        return 0
    count = len(state)
    if depth > 0 and count <= 16:
        for item in state.values() if isinstance(state, dict) else state:
            count += _entries(item, depth - 1)
    return count


class Chain:
    """The operators of one actor instance and the edges its output goes to."""

    def __init__(
        self,
        operators: list[Operator],
        contexts: list[OperatorContext],
        outputs: list[Output],
        clock: Clock,
        side_outputs: list[tuple[OutputTag[Any], Output]] | None = None,
        *,
        name: str = "chain",
        hooks: CheckpointHooks | None = None,
        restore: list[list[Any]] | None = None,
    ) -> None:
        self.name = name
        #: The job's checkpoint coordinator, as this chain sees it (None: no checkpoints).
        self.hooks = hooks
        self._restore = restore
        if hooks is not None:
            hooks.register(self)
        self.operators = operators
        self.contexts = contexts
        self.outputs = outputs
        #: (tag, edge) for each edge that reads a side output of the chain's last operator.
        self.side_outputs = side_outputs or []
        if self.side_outputs:
            if not operators:
                raise ValueError("side outputs need an operator to emit them")
            operators[-1].side_outputs = SideOutputs(tag for tag, _ in self.side_outputs)
        self._control_outputs = outputs + [output for _, output in self.side_outputs]
        self._timer_operators = [i for i, op in enumerate(operators) if op.has_processing_timers]
        self._any_async = any(op.is_async for op in operators)
        self._clock = clock
        self._opened = 0
        #: Every input has ended and the final state went to the coordinator (checkpoints go on
        #: while other sources run; this chain then only commits, see the coordinator).
        self.finished = False
        #: Records into each operator and out of the last, and the watermarks that came with them,
        #: counted per batch and operator (for metrics; see ActorMetrics for what each slot means).
        self.metrics = ActorMetrics([context.name for context in contexts])
        self._records = self.metrics.records
        self._watermarks = self.metrics.watermarks
        #: Fork for a state once pickling it took this many ms (None: never; module docstring).
        self.fork_after_ms = fork_after_ms()
        #: How long pickling each operator's state took the last time (None: never, or it failed).
        self._pickle_ms: list[float | None] = [None] * len(operators)
        #: Operators whose state the last child failed to pickle: the next snapshot is inline.
        self._inline_next: set[int] = set()
        #: How long the chain's last fork held the loop, in ms (0: it never forked).
        self._fork_ms = 0.0

    @property
    def has_processing_timers(self) -> bool:
        """Whether an operator of the chain may set processing-time timers."""
        return bool(self._timer_operators)

    @property
    def label(self) -> str:
        return " -> ".join(context.label for context in self.contexts)

    # -- the Handler protocol ------------------------------------------------------------------

    async def open(self) -> None:
        for index, (operator, context) in enumerate(zip(self.operators, self.contexts, strict=True)):
            try:
                await operator.open_async(context)
                self._opened += 1
                if self._restore is not None:
                    with paused_gc():  # a restore builds the state's containers in bulk
                        operator.restore_state(self._restore[index])
            except Exception as error:
                _locate(error, context.label)
                raise
        self._restore = None  # loaded: let the checkpoint's bytes go
        self.metrics.opened = True

    async def on_batch(self, batch: Batch) -> None:
        await self._push(batch, 0)  # counts the batch as the first operator's input
        if self._timer_operators:
            await self._fire_processing_timers()

    async def on_input(self, batch: Batch, input: int) -> None:
        self._records[0] += len(batch.values)
        if batch.marks:
            self._watermarks[0] = batch.marks[-1][1]
        head = self.operators[0]
        try:
            out = head.process_input(batch, input)
        except Exception as error:
            _locate(error, self.contexts[0].label, batch.values)
            raise
        if out is not None:
            await self._push(out, 1)
        if self._timer_operators:
            await self._fire_processing_timers()

    async def on_status(self, idle: bool) -> None:
        await self._send_control(StreamStatus(idle))

    async def on_barrier(self, barrier: Barrier, extra: dict[str, bytes] | None = None) -> None:
        """Barrier ``n`` is aligned: snapshot every operator (plus ``extra`` parts, the source's
        position), acknowledge, and pass the barrier on."""
        hooks = self.hooks
        if hooks is not None:
            checkpoint_id = barrier.checkpoint_id
            native = hooks.kind_of(checkpoint_id) == "checkpoint"
            hooks.acknowledge(checkpoint_id, self.name, await self._snapshot(extra, checkpoint_id, native))
            await self._tell_operators("barrier_acknowledged", checkpoint_id)
        await self._send_control(barrier)

    async def _snapshot(
        self, extra: dict[str, bytes] | None, checkpoint_id: int = 0, native: bool = False
    ) -> dict[str, bytes | SnapshotPart]:
        """Every operator's part: ``native`` (a checkpoint, not a savepoint) asks
        :meth:`~actorflow.operators.base.Operator.checkpoint_state_async`, which may return a
        :class:`SnapshotPart` of the operator's own; otherwise the state is pickled here, or in a
        forked child when it is large (module docstring): one child for all of them, forked after
        the last operator has handed its state over (the chain reads nothing meanwhile)."""
        parts: dict[str, bytes | SnapshotPart] = dict(extra or {})
        large: list[tuple[int, str, Any]] = []
        for index, (operator, context) in enumerate(zip(self.operators, self.contexts, strict=True)):
            try:
                if native:
                    state = await operator.checkpoint_state_async(checkpoint_id)
                else:
                    state = await operator.snapshot_state_async()
                name = part_name(context.name, context.index)
                if isinstance(state, SnapshotPart):
                    parts[name] = state
                elif state is None:
                    continue
                elif self._is_large(index, state):
                    large.append((index, name, state))
                else:
                    parts[name] = self._pickle(index, state)
            except Exception as error:
                _locate(error, context.label)
                raise
        if large:
            parts.update(self._pickle_in_child(large))
        return parts

    def _is_large(self, index: int, state: Any) -> bool:
        """Whether operator ``index``'s state goes to a forked child (module docstring)."""
        threshold = self.fork_after_ms
        if threshold is None or index in self._inline_next:
            return False
        last = self._pickle_ms[index]
        if last is None:
            return _entries(state) >= threshold * ENTRIES_PER_MS
        return last >= threshold and (threshold == 0 or last >= FORK_MARGIN * self._fork_ms)

    def _pickle(self, index: int, state: Any) -> bytes:
        """Pickle operator ``index``'s state here, and time it."""
        started = time.perf_counter()
        data = dumps(state)
        self._pickle_ms[index] = (time.perf_counter() - started) * 1000
        self._inline_next.discard(index)
        return data

    def _pickle_in_child(self, large: list[tuple[int, str, Any]]) -> dict[str, bytes | SnapshotPart]:
        """``{name: part}`` for ``(operator index, part name, state)`` of ``large``, pickled by one
        forked child; inline if the fork fails (no memory for the page tables, no processes)."""
        try:
            pickling = pickle_in_child([(self.contexts[index].label, state) for index, _, state in large])
        except OSError:
            return {name: self._pickle(index, state) for index, name, state in large}
        self._fork_ms = pickling.fork_ms
        parts: dict[str, bytes | SnapshotPart] = {}
        for position, ((index, name, _), data) in enumerate(zip(large, pickling.parts, strict=True)):
            data.add_done_callback(functools.partial(self._forked, pickling, position, index))
            parts[name] = SnapshotPart(data)
        return parts

    def _forked(
        self, pickling: ChildPickling, position: int, index: int, data: asyncio.Future[bytes]
    ) -> None:
        """A child's part is done: its time decides the next snapshot; a failure makes it inline."""
        if data.cancelled():
            return
        if data.exception() is not None:
            self._pickle_ms[index] = None
            self._inline_next.add(index)
        elif position < len(pickling.durations_ms):
            self._pickle_ms[index] = pickling.durations_ms[position]

    async def checkpoint_complete(self, checkpoint_id: int) -> None:
        """Tell every operator (sinks commit what they pre-committed for ``checkpoint_id``)."""
        await self._tell_operators("checkpoint_complete", checkpoint_id)

    async def checkpoint_aborted(self, checkpoint_id: int) -> None:
        await self._tell_operators("checkpoint_aborted", checkpoint_id)

    async def _tell_operators(self, method: str, checkpoint_id: int) -> None:
        for operator, context in zip(self.operators, self.contexts, strict=True):
            try:
                await getattr(operator, method)(checkpoint_id)
            except Exception as error:
                _locate(error, context.label)
                raise

    async def on_end(self, extra: dict[str, bytes] | None = None) -> None:
        for index, (operator, context) in enumerate(zip(self.operators, self.contexts, strict=True)):
            try:
                rest = await operator.finish_async()
            except Exception as error:
                _locate(error, context.label)
                raise
            if rest is not None:
                await self._push(rest, index + 1)
        if self.side_outputs:
            await self._send_sides(None)
        if self.hooks is not None:
            self.finished = True
            self.hooks.finished(self.name, await _resolved(await self._snapshot(extra)))
        await self._send_control(EndOfStream())

    async def close(self) -> None:
        self.metrics.closed = True
        failure: BaseException | None = None
        for operator, context in zip(
            self.operators[: self._opened], self.contexts[: self._opened], strict=True
        ):
            try:
                await operator.close_async()
            except Exception as error:  # close them all, then report the first failure
                _locate(error, context.label)
                failure = failure or error
        if failure is not None:
            raise failure

    @property
    def wants_wakeups(self) -> bool:
        """Whether the chain may want :meth:`on_time` while its input is quiet: an operator keeps
        processing-time timers, or gets output ready in the background (async I/O)."""
        return bool(self._timer_operators or self._wakeup_operators)

    @functools.cached_property
    def _wakeup_operators(self) -> list[int]:
        return [i for i, op in enumerate(self.operators) if op.has_wakeups]

    def wakeup(self) -> Awaitable[object] | None:
        due = self.next_processing_time()
        timer = None if due is None else self._clock.at(due)
        if not self._wakeup_operators:
            return timer
        waits = [] if timer is None else [timer]
        for index in self._wakeup_operators:
            ready = self.operators[index].wakeup()
            if ready is not None:
                waits.append(ready)
        if len(waits) > 1:
            return _first_of(waits)
        return waits[0] if waits else None

    async def on_time(self) -> None:
        await self._fire_processing_timers()
        await self._drain_wakeups()

    async def _drain_wakeups(self) -> None:
        for index in self._wakeup_operators:
            try:
                ready = self.operators[index].on_wakeup()
            except Exception as error:
                _locate(error, self.contexts[index].label)
                raise
            if ready is not None:
                await self._push(ready, index + 1)

    # -- internals -----------------------------------------------------------------------------

    async def _push(self, batch: Batch, start: int) -> None:
        """Run ``batch`` through the operators from ``start`` on and send what comes out.

        ``batch`` is the input of operator ``start``: the chain's input for ``start == 0``, else
        output of operator ``start - 1`` (its timers, wake-ups, end of input, or a two-input head's
        result), and is counted as such.
        """
        operators = self.operators
        records = self._records
        watermarks = self._watermarks
        out: Batch | None = batch
        try:
            if self._any_async:
                for index in range(start, len(operators)):
                    records[index] += len(batch.values)
                    if batch.marks:
                        watermarks[index] = batch.marks[-1][1]
                    operator = operators[index]
                    if operator.is_async:
                        out = await operator.process_async(batch)
                    else:
                        out = operator.process(batch)
                    if out is None:
                        return
                    batch = out
            else:
                for index in range(start, len(operators)):
                    records[index] += len(batch.values)
                    if batch.marks:
                        watermarks[index] = batch.marks[-1][1]
                    out = operators[index].process(batch)
                    if out is None:
                        return
                    batch = out
        except Exception as error:
            _locate(error, self.contexts[index].label, batch.values)
            raise
        records[-1] += len(batch.values)
        if batch.marks:
            watermarks[-1] = batch.marks[-1][1]
        try:
            for output in self.outputs:
                await output.send(batch)  # a key selector of the next operators runs here
        except Exception as error:
            _locate(error, self.contexts[-1].label if self.contexts else self.name, batch.values)
            raise
        if self.side_outputs:
            await self._send_sides(batch.marks[-1][1] if batch.marks else None)

    async def _send_sides(self, watermark: int | None) -> None:
        """Send what the last operator put into its side outputs, ending with ``watermark``."""
        buffers = self.operators[-1].side_outputs
        for tag, output in self.side_outputs:
            side = buffers.take(tag, watermark)
            if side is not None:
                await output.send(side)

    async def _send_control(self, message: StreamStatus | Barrier | EndOfStream) -> None:
        for output in self._control_outputs:
            await output.send_control(message)

    def next_processing_time(self) -> int | None:
        """The earliest processing-time timer of any operator in the chain, or None."""
        due = None
        for index in self._timer_operators:
            time = self.operators[index].next_processing_time()
            if time is not None and (due is None or time < due):
                due = time
        return due

    async def _fire_processing_timers(self) -> None:
        now = self._clock.now()
        for index in self._timer_operators:
            operator = self.operators[index]
            time = operator.next_processing_time()
            if time is not None and time <= now:
                try:
                    fired = operator.on_processing_time(now)
                except Exception as error:
                    _locate(error, self.contexts[index].label)
                    raise
                if fired is not None:
                    await self._push(fired, index + 1)
                elif self.side_outputs and index == len(self.operators) - 1:
                    await self._send_sides(None)


class SourceActor:
    """Reads a source, stamps event time, and drives the chain behind it.

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
        self._restore_watermark = restore_watermark
        #: Every instance had ended at the restored checkpoint: read nothing, end at once.
        self._restore_ended = restore_ended
        #: The last watermark put out (kept only with checkpoints, which record it).
        self._watermark = MIN_WATERMARK
        # Checkpoint ids whose barrier this source still has to put out, and a wake-up for them.
        self._barriers: list[int] = []
        self._barrier_requested = asyncio.Event()
        self._ended = False
        self._draining = False
        if chain.hooks is not None:
            chain.hooks.register(self)

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

    async def _emit_barriers(self) -> None:
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

    async def checkpoint_complete(self, checkpoint_id: int) -> None:
        """Tell the source (it may commit its positions now)."""
        await self.source.checkpoint_complete(self.context, checkpoint_id)

    async def checkpoint_aborted(self, checkpoint_id: int) -> None:
        """Nothing to undo: a source only acts on completed checkpoints."""

    async def run(self) -> None:
        chain = self.chain
        strategy = self.strategy
        generator = strategy.generator() if strategy is not None else None
        idle_timeout = strategy.idle_timeout_ms if strategy is not None else None
        hooks = chain.hooks
        if self._restore is not None:
            self.source.restore_state(self.context, self._restore)
        # Drained before it started (a stop while the job was starting): nothing to read.
        reader = _nothing() if self._restore_ended or self._draining else self.source.read(self.context)
        timeouts: AsyncGenerator[Any, None] | None = None
        completed = False
        # Marks at or below it are the fresh generator catching up with the restored watermark.
        floor = self._restore_watermark
        if floor is not None and floor <= MIN_WATERMARK:
            floor = None
        try:
            await chain.open()
            if floor is not None:
                self._watermark = floor
                await chain.on_batch(Batch([], None, [(0, floor)]))
            if idle_timeout is not None or chain.wants_wakeups or hooks is not None:
                timeouts = self._with_timeouts(reader, idle_timeout)
            batches = reader if timeouts is None else timeouts
            async for values in batches:
                if values is _IDLE:
                    await chain.on_status(True)
                    continue
                if values is _BARRIER:
                    await self._emit_barriers()
                    continue
                if isinstance(values, Batch):
                    batch = values  # the source stamped it (per-partition watermarks)
                elif strategy is not None and generator is not None:
                    batch = stamp(values, strategy, generator)
                else:
                    batch = Batch(values)
                if hooks is not None and batch.marks:
                    if floor is not None:
                        marks = [mark for mark in batch.marks if mark[1] > floor]
                        batch = Batch(batch.values, batch.timestamps, marks)
                        if marks:
                            floor = None  # past it: the generator's marks only rise from here
                    if batch.marks:
                        self._watermark = batch.marks[-1][1]
                await chain.on_batch(batch)
                if self._barriers:
                    await self._emit_barriers()
                if self._draining:
                    break
            extra = None
            if hooks is not None:
                await self._emit_barriers()  # requested ones go out before the end
                self._ended = True
                hooks.source_finished()
                extra = self._position_parts()
                extra[part_name(ended_owner(self.context.name), self.context.index)] = dumps(True)
            await chain.on_batch(Batch([], None, [(0, MAX_WATERMARK)]))
            await chain.on_end(extra)
            completed = True
        except Exception as error:
            _locate(error, self.context.label)
            raise
        finally:
            try:
                if timeouts is not None:
                    # Closed here, not by the garbage collector's finaliser task: it stops its
                    # pending read of ``reader`` before ``reader`` is closed.
                    await timeouts.aclose()
                await reader.aclose()  # type: ignore[attr-defined]
                await self.source.finish(self.context, completed=completed)
            finally:
                await chain.close()

    async def _with_timeouts(
        self, reader: AsyncIterator[list[Any] | Batch], idle_timeout: int | None
    ) -> AsyncGenerator[Any, None]:
        """Batches from ``reader``; while it is quiet, idleness and the chain's wake-ups (timers,
        results of async I/O)."""
        clock = self.context.clock
        chain = self.chain
        idle = False
        last_record = clock.now()
        pending: asyncio.Future[list[Any] | Batch] | None = None
        try:
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(anext(reader))
                waits: list[asyncio.Future[Any]] = []
                if idle_timeout is not None and not idle:
                    waits.append(clock.at(last_record + idle_timeout))
                wakeup = chain.wakeup()  # processing-time timers, output ready in an operator
                if wakeup is not None:
                    waits.append(asyncio.ensure_future(wakeup))
                if chain.hooks is not None:
                    waits.append(asyncio.ensure_future(self._barrier_requested.wait()))
                try:
                    await asyncio.wait((pending, *waits), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for wait in waits:
                        wait.cancel()
                if pending.done():
                    try:
                        values = pending.result()
                    except StopAsyncIteration:
                        return
                    finally:
                        pending = None
                    if idle:
                        idle = False
                        await chain.on_status(False)
                    last_record = clock.now()
                    yield values
                    continue
                if self._barrier_requested.is_set():
                    yield _BARRIER
                now = clock.now()
                if idle_timeout is not None and not idle and now >= last_record + idle_timeout:
                    idle = True
                    yield _IDLE
                await chain.on_time()
        finally:
            if pending is not None:
                pending.cancel()
                await asyncio.wait((pending,))
                if not pending.cancelled():
                    pending.exception()  # retrieved: the reader is being closed anyway


_IDLE: Any = object()
_BARRIER: Any = object()


async def _nothing() -> AsyncIterator[list[Any]]:
    """The reader of a source restored as ended."""
    return
    yield  # an async generator that yields nothing


def _first_of(waits: list[asyncio.Future[Any]]) -> asyncio.Future[None]:
    """A future that resolves with the first of ``waits``; once it is done (or cancelled by its
    owner), every one of ``waits`` is cancelled, so no clock wait is left behind."""
    first: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def resolve(_: asyncio.Future[Any]) -> None:
        if not first.done():
            first.set_result(None)

    def release(_: asyncio.Future[None]) -> None:
        for wait in waits:
            wait.cancel()

    for wait in waits:
        wait.add_done_callback(resolve)
    first.add_done_callback(release)
    return first
