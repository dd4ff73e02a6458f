"""Operator chains: the operators one actor runs, back to back, as plain calls.

A :class:`Chain` is the runtime :class:`~actorflow.runtime.actor.Handler` of an actor: each batch
goes through its operators in order and what comes out of the last one goes to every outgoing edge.
A :class:`SourceActor` drives a chain from a :class:`~actorflow.operators.sources.Source` instead of
an inbox. Any exception a user function raises is re-raised with a note naming the operator
instance, and the job fails with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from actorflow.operators.base import Operator, OperatorContext
from actorflow.operators.side_outputs import OutputTag, SideOutputs
from actorflow.operators.sources import Source
from actorflow.operators.stateless import stamp
from actorflow.runtime.messages import MAX_WATERMARK, Barrier, Batch, EndOfStream, StreamStatus
from actorflow.runtime.output import Output
from actorflow.time.clock import Clock
from actorflow.time.watermarks import WatermarkStrategy

__all__ = ["Chain", "SourceActor"]


def _locate(error: BaseException, label: str) -> None:
    if not getattr(error, "_actorflow_located", False):
        error.add_note(f"actorflow: raised in operator {label}")
        error._actorflow_located = True  # type: ignore[attr-defined]


class Chain:
    """The operators of one actor instance and the edges its output goes to."""

    def __init__(
        self,
        operators: list[Operator],
        contexts: list[OperatorContext],
        outputs: list[Output],
        clock: Clock,
        side_outputs: list[tuple[OutputTag[Any], Output]] | None = None,
    ) -> None:
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

    @property
    def has_processing_timers(self) -> bool:
        """Whether an operator of the chain may set processing-time timers."""
        return bool(self._timer_operators)

    @property
    def label(self) -> str:
        return " -> ".join(context.label for context in self.contexts)

    # -- the Handler protocol ------------------------------------------------------------------

    async def open(self) -> None:
        for operator, context in zip(self.operators, self.contexts, strict=True):
            try:
                await operator.open_async(context)
            except Exception as error:
                _locate(error, context.label)
                raise
            self._opened += 1

    async def on_batch(self, batch: Batch) -> None:
        await self._push(batch, 0)
        if self._timer_operators:
            await self._fire_processing_timers()

    async def on_input(self, batch: Batch, input: int) -> None:
        head = self.operators[0]
        try:
            out = head.process_input(batch, input)
        except Exception as error:
            _locate(error, self.contexts[0].label)
            raise
        if out is not None:
            await self._push(out, 1)
        if self._timer_operators:
            await self._fire_processing_timers()

    async def on_status(self, idle: bool) -> None:
        await self._send_control(StreamStatus(idle))

    async def on_barrier(self, barrier: Barrier) -> None:
        await self._send_control(barrier)

    async def on_end(self) -> None:
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
        await self._send_control(EndOfStream())

    async def close(self) -> None:
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

    def wakeup(self) -> Awaitable[object] | None:
        due = self.next_processing_time()
        return None if due is None else self._clock.at(due)

    async def on_time(self) -> None:
        await self._fire_processing_timers()

    # -- internals -----------------------------------------------------------------------------

    async def _push(self, batch: Batch | None, start: int) -> None:
        operators = self.operators
        try:
            if self._any_async:
                for index in range(start, len(operators)):
                    operator = operators[index]
                    if operator.is_async:
                        batch = await operator.process_async(batch)  # type: ignore[arg-type]
                    else:
                        batch = operator.process(batch)  # type: ignore[arg-type]
                    if batch is None:
                        return
            else:
                for index in range(start, len(operators)):
                    batch = operators[index].process(batch)  # type: ignore[arg-type]
                    if batch is None:
                        return
        except Exception as error:
            _locate(error, self.contexts[index].label)
            raise
        assert batch is not None
        for output in self.outputs:
            await output.send(batch)
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
    """Reads a source, stamps event time, and drives the chain behind it."""

    def __init__(
        self,
        name: str,
        source: Source,
        context: OperatorContext,
        strategy: WatermarkStrategy | None,
        chain: Chain,
    ) -> None:
        self.name = name
        self.source = source
        self.context = context
        self.strategy = strategy
        self.chain = chain

    async def run(self) -> None:
        chain = self.chain
        strategy = self.strategy
        generator = strategy.generator() if strategy is not None else None
        idle_timeout = strategy.idle_timeout_ms if strategy is not None else None
        reader = self.source.read(self.context)
        completed = False
        try:
            await chain.open()
            batches = (
                self._with_timeouts(reader, idle_timeout)
                if idle_timeout is not None or chain.has_processing_timers
                else reader
            )
            async for values in batches:
                if values is _IDLE:
                    await chain.on_status(True)
                    continue
                if isinstance(values, Batch):
                    batch = values  # the source stamped it (per-partition watermarks)
                elif strategy is not None and generator is not None:
                    batch = stamp(values, strategy, generator)
                else:
                    batch = Batch(values)
                await chain.on_batch(batch)
            await chain.on_batch(Batch([], None, [(0, MAX_WATERMARK)]))
            await chain.on_end()
            completed = True
        except Exception as error:
            _locate(error, self.context.label)
            raise
        finally:
            try:
                await reader.aclose()  # type: ignore[attr-defined]
                await self.source.finish(self.context, completed=completed)
            finally:
                await chain.close()

    async def _with_timeouts(
        self, reader: AsyncIterator[list[Any] | Batch], idle_timeout: int | None
    ) -> AsyncIterator[Any]:
        """Batches from ``reader``, plus idleness and processing-time timers while it is quiet."""
        clock = self.context.clock
        chain = self.chain
        idle = False
        last_record = clock.now()
        pending: asyncio.Future[list[Any] | Batch] | None = None
        try:
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(anext(reader))
                deadlines = []
                if idle_timeout is not None and not idle:
                    deadlines.append(last_record + idle_timeout)
                timer_due = chain.next_processing_time()
                if timer_due is not None:
                    deadlines.append(timer_due)
                if not deadlines:
                    await asyncio.wait((pending,))
                else:
                    wake = clock.at(min(deadlines))
                    try:
                        await asyncio.wait((pending, wake), return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        wake.cancel()
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
