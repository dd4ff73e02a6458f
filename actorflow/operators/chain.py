"""Operator chains: the operators one actor runs, back to back, as plain calls.

A :class:`Chain` is the runtime :class:`~actorflow.runtime.actor.Handler` of an actor: each batch
goes through its operators in order and what comes out of the last one goes to every outgoing edge.
A :class:`~actorflow.operators.source_actor.SourceActor` (re-exported here) drives a chain from a
:class:`~actorflow.operators.sources.Source` instead of an inbox. Any exception a user function
raises is re-raised with a note naming the operator instance, and the job fails with it.

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

Every batch a chain takes in counts toward the process's paced young collections
(:mod:`actorflow.runtime.collector`), so replacing state values cannot pile up objects for one long
collection.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Awaitable, Mapping
from typing import Any

from actorflow.errors import CheckpointError
from actorflow.operators.base import Operator, OperatorContext
from actorflow.operators.locate import locate as _locate
from actorflow.operators.side_outputs import OutputTag, SideOutputs
from actorflow.operators.snapshots import CheckpointHooks, SnapshotPart, dumps, part_name
from actorflow.operators.source_actor import SourceActor
from actorflow.runtime.collector import paused_gc, records_done
from actorflow.runtime.forked import ChildPickling, can_fork, pickle_in_child
from actorflow.runtime.messages import Barrier, Batch, EndOfStream, StreamStatus
from actorflow.runtime.metrics import ActorMetrics
from actorflow.runtime.output import Output
from actorflow.time.clock import Clock

__all__ = ["Chain", "FORK_AFTER_MS", "FORK_ENV", "SourceActor"]

#: The environment variable: pickle a state in a forked child once pickling it took this many ms.
FORK_ENV = "ACTORFLOW_SNAPSHOT_FORK_MS"
#: Its default: about 10,000 small entries (a fork costs a few ms, a pickle about 1 ms per 1,400).
FORK_AFTER_MS = 10.0
#: Before a state was ever pickled: entries in its outer containers per ms of the threshold.
ENTRIES_PER_MS = 1_000
#: A state forks only if pickling it took this many times as long as the chain's last fork.
FORK_MARGIN = 2.0


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
        records_done(len(batch.values))
        await self._push(batch, 0)  # counts the batch as the first operator's input
        if self._timer_operators:
            await self._fire_processing_timers()

    async def on_input(self, batch: Batch, input: int) -> None:
        records_done(len(batch.values))
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
        if hooks is not None:
            # The loop's other tasks run before this chain's next batch: the snapshot's turn
            # (a fork of a large heap: 35-40 ms at 10M keys) then does not also carry that batch,
            # whose first writes after a fork copy pages (55 -> 45 ms of the longest pause).
            await asyncio.sleep(0)

    async def snapshot_and_forward(self, barrier: Barrier) -> dict[str, bytes | SnapshotPart] | None:
        """An iteration head's barrier, first half: snapshot every operator and pass ``barrier``
        on; the parts (None without checkpoints) are acknowledged with :meth:`acknowledge_later`
        once the barrier has come back round the loop (:mod:`actorflow.runtime.iteration`)."""
        hooks = self.hooks
        parts = None
        if hooks is not None:
            checkpoint_id = barrier.checkpoint_id
            native = hooks.kind_of(checkpoint_id) == "checkpoint"
            parts = await self._snapshot(None, checkpoint_id, native)
        await self._send_control(barrier)
        return parts

    async def acknowledge_later(
        self, checkpoint_id: int, parts: dict[str, bytes | SnapshotPart], extra: dict[str, bytes]
    ) -> None:
        """An iteration head's barrier, second half: acknowledge ``parts`` with ``extra`` (the
        records logged on the back edge meanwhile)."""
        if self.hooks is not None:
            self.hooks.acknowledge(checkpoint_id, self.name, {**parts, **extra})
            await self._tell_operators("barrier_acknowledged", checkpoint_id)

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
