"""Async I/O: a coroutine per record (a lookup), many of them in flight, as Flink's ``AsyncDataStream``.

Built with :meth:`DataStream.map_async <actorflow.api.stream.DataStream.map_async>`. Every record
starts one *request*: a task running ``await fn(record)``, retried on failure, bounded by a timeout.

- **Capacity.** A record counts against ``capacity`` from the moment its request starts until its
  result has left the operator (in ordered mode a finished result may wait for an earlier one). When
  the operator is full, :meth:`AsyncMapOperator.process_async` waits for room: the actor stops
  reading its mailbox, the mailbox fills, and the sender waits. Backpressure, as for a slow sink.
- **Ordered** (the default): results leave in input order.
- **Unordered**: results leave as their requests complete, but never across a watermark. The
  watermarks cut the input into segments; a watermark leaves only after every record of the
  segments before it, and a record only after the watermarks before it (Flink's unordered mode). A
  downstream operator therefore sees every result at exactly the watermark its input record saw.
- **Results.** One per record, keeping the record's timestamp; ``None`` is a result like any other
  (as in ``map``). With ``flat=True``, ``fn`` returns an iterable: every item is a result with the
  record's timestamp, and an empty one drops the record (Flink completes a request with a
  collection).
- **Timeout** (Flink's): from the first call to the result, every retry and retry delay included.
  At the deadline the call in progress is cancelled. Time is the flow's clock.
- **Without new input**, results still leave as soon as they are ready: the operator sets
  :attr:`~actorflow.operators.base.Operator.has_wakeups`, and the actor (or the source actor) waits
  on its input and on :meth:`AsyncMapOperator.wakeup` at once.
- **End of input**: :meth:`AsyncMapOperator.finish_async` waits for every request in flight and
  emits the results (in order, in ordered mode) before the end of the stream goes on.
- **Failure.** A request that still fails after its retries fails the job with the function's own
  exception, noted with the record and the number of attempts (and, by the chain, the operator).
  A request that runs out of time fails it with a :class:`TimeoutError` naming the record. Both can
  instead go to a ``dead_letters`` callback (the record is dropped; each instance counts them in
  ``dead_letter_count``, which metrics export), and a timeout to an ``on_timeout`` fallback
  (Flink's ``AsyncFunction.timeout``).
- **Cancellation.** Closing the operator (at the end, after a failure, or when the job is
  cancelled) cancels every request still running and waits for them.

What comes out while the operator waits *inside* a call (for room in the middle of a batch, or in
``finish_async``) leaves when that call returns, as one batch: an operator hands results to the
chain only by returning them.
"""

from __future__ import annotations

import asyncio
import inspect
import reprlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from actorflow.errors import PlanError
from actorflow.operators.base import Operator
from actorflow.operators.failures import FailedRecord
from actorflow.runtime.messages import Batch
from actorflow.time.clock import Clock

__all__ = ["AsyncMapOperator", "AsyncMapSpec", "FailedRequest"]


class FailedRequest(FailedRecord[Any]):
    """A record whose request failed for good: the :class:`FailedRecord` a ``dead_letters``
    callback of ``map_async`` receives. The name, and this constructor's order of arguments, are
    kept for this release; use :class:`FailedRecord` (``value``, ``record`` or ``attempts``).

    ``error`` is what the last attempt raised, or a :class:`TimeoutError` when the request ran out
    of time; ``attempts`` counts the calls of ``fn`` made for it; ``operator`` names the instance.

    >>> failed = FailedRequest({"id": 7}, TimeoutError("slow"), attempts=2, operator="lookup[1/1]")
    >>> failed.record, failed.attempts, isinstance(failed, FailedRecord)
    ({'id': 7}, 2, True)
    """

    def __init__(self, record: Any, error: Exception, attempts: int, operator: str) -> None:
        super().__init__(record, error, operator, attempts)


def _is_coroutine_function(fn: object) -> bool:
    # An object whose __call__ is a coroutine function (a class with state, like Flink's
    # RichAsyncFunction) is awaited the same way as an ``async def``.
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


@dataclass(frozen=True)
class AsyncMapSpec:
    """The settings of an async I/O step, checked when the flow is built (raises :class:`PlanError`).

    See :meth:`DataStream.map_async <actorflow.api.stream.DataStream.map_async>` for their meaning.

    >>> AsyncMapSpec(abs)
    Traceback (most recent call last):
    ...
    actorflow.errors.PlanError: map_async takes a coroutine function (async def): use map() for a plain one
    """

    fn: Callable[[Any], Awaitable[Any]]
    capacity: int = 100
    timeout_ms: int | None = None
    retries: int = 0
    retry_delay_ms: int = 100
    retry_on: tuple[type[Exception], ...] = (Exception,)
    ordered: bool = True
    flat: bool = False
    on_timeout: Callable[[Any], Any] | None = None
    dead_letters: Callable[[FailedRequest], None] | None = None

    def __post_init__(self) -> None:
        if not _is_coroutine_function(self.fn):
            raise PlanError("map_async takes a coroutine function (async def): use map() for a plain one")
        if self.capacity < 1:
            raise PlanError(f"map_async needs capacity >= 1, not {self.capacity}")
        if self.timeout_ms is not None and self.timeout_ms <= 0:
            raise PlanError(f"map_async needs timeout_ms > 0 (None: no timeout), not {self.timeout_ms}")
        if self.retries < 0 or self.retry_delay_ms < 0:
            raise PlanError("map_async needs retries >= 0 and retry_delay_ms >= 0")
        if not all(isinstance(kind, type) and issubclass(kind, Exception) for kind in self.retry_on):
            raise PlanError("map_async's retry_on takes a tuple of Exception subclasses")
        if self.on_timeout is not None and self.timeout_ms is None:
            raise PlanError("map_async's on_timeout needs a timeout_ms to go with it")
        for name in ("on_timeout", "dead_letters"):
            callback = getattr(self, name)
            if callback is not None and _is_coroutine_function(callback):
                raise PlanError(f"map_async's {name} takes a plain function, not a coroutine function")


class _Expired(Exception):
    """A request's deadline passed (raised by :class:`_Deadline` only, so never retried)."""


class _Deadline:
    """``asyncio.timeout`` on an actorflow :class:`Clock` (which a ManualClock moves in tests).

    At the deadline the current task is cancelled; leaving the block then raises :class:`_Expired`
    instead of the :class:`CancelledError`. A cancellation from anyone else still propagates: the
    ``cancelling()`` count tells them apart, as in ``asyncio.timeout``.
    """

    __slots__ = ("_cancelling", "_clock", "_done", "_due", "_future", "_task", "expired")

    def __init__(self, clock: Clock, timeout_ms: int) -> None:
        self._clock = clock
        self._due = clock.now() + timeout_ms
        self.expired = False
        self._done = False

    def __enter__(self) -> _Deadline:
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._cancelling = task.cancelling()
        self._future = self._clock.at(self._due)
        self._future.add_done_callback(self._expire)
        return self

    def _expire(self, future: asyncio.Future[None]) -> None:
        # Done callbacks run a loop turn after the future resolves: the block may have ended since.
        if future.cancelled() or self._done:
            return
        self.expired = True
        self._task.cancel()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._done = True
        self._future.cancel()
        if self.expired and self._task.uncancel() <= self._cancelling and kind is asyncio.CancelledError:
            raise _Expired from error


class _Request:
    """One record's request: its input, and once done, its result (or that it was dropped)."""

    __slots__ = ("attempts", "done", "emit", "result", "segment", "timestamp", "value")

    def __init__(self, value: Any, timestamp: Any) -> None:
        self.value = value
        self.timestamp = timestamp
        self.attempts = 0
        self.done = False
        self.emit = True  # False once a dead-letter callback took the record
        self.result: Any = None
        self.segment: _Segment | None = None


class _Segment:
    """Unordered mode: the records between two watermarks, and the watermark that closes them."""

    __slots__ = ("ready", "requests", "watermark")

    def __init__(self) -> None:
        self.requests: dict[_Request, None] = {}  # not emitted yet (finished or not), input order
        self.ready: list[_Request] = []  # finished, in completion order
        self.watermark: int | None = None


class _Output:
    """The batch one call of the operator returns, built result by result."""

    __slots__ = ("marks", "stamped", "timestamps", "values")

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.timestamps: list[Any] = []
        self.marks: list[tuple[int, int]] = []
        self.stamped = False

    def add(self, request: _Request, flat: bool) -> None:
        timestamp = request.timestamp
        if timestamp is not None:
            self.stamped = True
        if flat:
            self.values.extend(request.result)
            self.timestamps.extend([timestamp] * len(request.result))
        else:
            self.values.append(request.result)
            self.timestamps.append(timestamp)

    def mark(self, watermark: int) -> None:
        position = len(self.values)
        marks = self.marks
        if marks and marks[-1][0] == position:
            # Nothing between two watermarks: the later one says it all (as batches.select does).
            marks[-1] = (position, watermark)
        else:
            marks.append((position, watermark))

    def batch(self) -> Batch | None:
        if not self.values and not self.marks:
            return None
        return Batch(self.values, self.timestamps if self.stamped else None, self.marks or None)


class AsyncMapOperator(Operator):
    """Runs ``spec.fn`` for every record as a request of its own; see the module docstring.

    >>> from actorflow.operators.base import OperatorContext
    >>> async def lookup(n):
    ...     await asyncio.sleep(0)
    ...     return n * 10
    >>> async def demo():
    ...     operator = AsyncMapOperator("lookup", AsyncMapSpec(lookup, capacity=2))
    ...     operator.open(OperatorContext("lookup"))
    ...     first = await operator.process_async(Batch([1, 2, 3]))
    ...     rest = await operator.finish_async()
    ...     await operator.close_async()
    ...     return first.values + rest.values
    >>> asyncio.run(demo())
    [10, 20, 30]
    """

    is_async = True
    has_wakeups = True

    def __init__(self, name: str, spec: AsyncMapSpec) -> None:
        super().__init__(name)
        self.spec = spec
        # Ordered mode: requests and watermarks (plain ints) in input order, the oldest first.
        self._queue: deque[_Request | int] = deque()
        # Unordered mode: the watermark segments, the oldest first.
        self._segments: deque[_Segment] = deque()
        self._count = 0  # records started and not yet emitted: what capacity bounds
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiters: list[asyncio.Future[None]] = []
        self._ready = False  # something can be emitted (or a failure raised) right now
        self._failure: Exception | None = None
        #: Records this instance handed to ``dead_letters`` (a metric: ``actorflow_dead_letters_total``).
        self.dead_letter_count = 0

    @property
    def in_flight(self) -> int:
        """Records whose request has started and whose result has not left the operator yet."""
        return self._count

    # -- the operator contract ----------------------------------------------------------------

    async def process_async(self, batch: Batch) -> Batch | None:
        out = _Output()
        self._drain(out)
        values = batch.values
        timestamps = batch.timestamps
        marks = batch.marks or ()
        capacity = self.spec.capacity
        next_mark = 0
        for position, value in enumerate(values):
            while next_mark < len(marks) and marks[next_mark][0] <= position:
                self._add_watermark(marks[next_mark][1], out)
                next_mark += 1
            if self._count >= capacity:
                await self._make_room(out)
            self._start(value, None if timestamps is None else timestamps[position])
        for _, watermark in marks[next_mark:]:
            self._add_watermark(watermark, out)
        self._drain(out)
        return out.batch()

    async def finish_async(self) -> Batch | None:
        out = _Output()
        self._drain(out)
        while self._count:
            await self._ready_future()
            self._drain(out)
        return out.batch()

    async def close_async(self) -> None:
        tasks = [task for task in self._tasks if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self.close()

    def wakeup(self) -> asyncio.Future[None] | None:
        if not self._count and not self._ready and self._failure is None:
            return None  # nothing in flight: nothing can become ready without new input
        return self._ready_future()

    def on_wakeup(self) -> Batch | None:
        out = _Output()
        self._drain(out)
        return out.batch()

    # -- checkpoints --------------------------------------------------------------------------

    def snapshot_state(self) -> list[tuple[Any, ...]] | None:
        """The input not answered yet, in input order: ``("r", record, timestamp)`` for every record
        whose result has not left (finished or not: it is requested again on restore, as Flink
        does) and ``("w", watermark)`` for the watermarks held back behind them."""
        if self.spec.ordered:
            requests: Iterable[_Request | int] = self._queue
        else:
            requests = (
                entry
                for segment in self._segments
                for entry in (*segment.requests, segment.watermark)
                if entry is not None
            )
        elements = [
            ("w", entry) if isinstance(entry, int) else ("r", entry.value, entry.timestamp)
            for entry in requests
            if isinstance(entry, int) or not (entry.done and not entry.emit)  # dead letters are sent
        ]
        return elements or None

    def restore_state(self, states: list[Any]) -> None:
        """Request again the records of a checkpoint's unanswered input, after :meth:`open`.

        The instances of the checkpoint are dealt out round robin (Flink's even split of operator
        state); after a scale-down an instance may hold more than ``capacity`` until results leave.
        """
        context = self.context
        mine = states[context.index :: context.parallelism]
        for elements in mine:
            for element in elements:
                if element[0] == "r":
                    self._start(element[1], element[2])
                else:
                    self._hold(element[1])
        if mine:
            self._ready = True  # watermarks may lead the queue now: the next wake-up lets them out

    # -- accepting input ----------------------------------------------------------------------

    def _start(self, value: Any, timestamp: Any) -> None:
        request = _Request(value, timestamp)
        if self.spec.ordered:
            self._queue.append(request)
        else:
            segments = self._segments
            if not segments or segments[-1].watermark is not None:
                segments.append(_Segment())
            segment = segments[-1]
            segment.requests[request] = None
            request.segment = segment
        self._count += 1
        task = asyncio.create_task(self._run(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _add_watermark(self, watermark: int, out: _Output) -> None:
        if self._queue or self._segments:
            self._hold(watermark)
        else:
            out.mark(watermark)  # nothing before it is waiting

    def _hold(self, watermark: int) -> None:
        """Queue ``watermark`` behind the records before it."""
        if self.spec.ordered:
            queue = self._queue
            if queue and isinstance(queue[-1], int):
                queue[-1] = watermark  # no record between them: keep the later one only
            else:
                queue.append(watermark)
            return
        segments = self._segments
        if not segments:
            segments.append(_Segment())
        # Closes the newest segment, or replaces the watermark that closed it if no record came
        # in between.
        segments[-1].watermark = watermark

    async def _make_room(self, out: _Output) -> None:
        capacity = self.spec.capacity
        self._drain(out)
        while self._count >= capacity:
            await self._ready_future()
            self._drain(out)

    # -- emitting -----------------------------------------------------------------------------

    def _drain(self, out: _Output) -> None:
        """Move every result that may leave now into ``out``, or raise the failure of the job."""
        if self._failure is not None:
            raise self._failure
        self._ready = False
        flat = self.spec.flat
        if self.spec.ordered:
            queue = self._queue
            while queue:
                head = queue[0]
                if isinstance(head, int):
                    out.mark(head)
                elif head.done:
                    if head.emit:
                        out.add(head, flat)
                    self._count -= 1
                else:
                    return
                queue.popleft()
            return
        segments = self._segments
        while segments:
            segment = segments[0]
            ready = segment.ready
            if ready:
                requests = segment.requests
                for request in ready:
                    if request.emit:
                        out.add(request, flat)
                    del requests[request]
                self._count -= len(ready)
                segment.ready = []
            if segment.requests:
                return
            segments.popleft()
            if segment.watermark is not None:
                out.mark(segment.watermark)

    def _ready_future(self) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._ready or self._failure is not None:
            future.set_result(None)
        else:
            self._waiters = [waiter for waiter in self._waiters if not waiter.done()]
            self._waiters.append(future)
        return future

    def _signal(self) -> None:
        self._ready = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    # -- requests -----------------------------------------------------------------------------

    @property
    def _clock(self) -> Clock:
        return self.context.clock

    async def _run(self, request: _Request) -> None:
        spec = self.spec
        try:
            if spec.timeout_ms is None:
                result = await self._attempts(request)
            else:
                with _Deadline(self._clock, spec.timeout_ms):
                    result = await self._attempts(request)
        except _Expired:
            if spec.on_timeout is None:
                self._give_up(request, self._timeout_error(request))
                return
            try:
                result = spec.on_timeout(request.value)
                if spec.flat:
                    result = list(result)
            except Exception as error:
                error.add_note(f"actorflow: raised by on_timeout for record {reprlib.repr(request.value)}")
                self._give_up(request, error)
                return
        except asyncio.CancelledError as error:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise  # we are being cancelled (the job stops): never swallowed
            # fn let out the CancelledError of a future someone else cancelled: a failed request,
            # not a cancelled job, or the operator would wait for it forever.
            failure = RuntimeError(
                f"async request for record {reprlib.repr(request.value)} raised CancelledError "
                "without being cancelled"
            )
            failure.__cause__ = error
            self._give_up(request, failure)
            return
        except Exception as error:
            error.add_note(
                f"actorflow: async request for record {reprlib.repr(request.value)} "
                f"failed after {request.attempts} attempt(s)"
            )
            self._give_up(request, error)
            return
        request.result = result
        self._complete(request)

    async def _attempts(self, request: _Request) -> Any:
        spec = self.spec
        fn = spec.fn
        clock = self._clock
        while True:
            request.attempts += 1
            try:
                result = await fn(request.value)
                # A flat result is read here, so that an iterable that fails counts as a failed request.
                return list(result) if spec.flat else result
            except spec.retry_on:
                if request.attempts > spec.retries:
                    raise
            if spec.retry_delay_ms:
                await clock.sleep_until(clock.now() + spec.retry_delay_ms)

    def _timeout_error(self, request: _Request) -> TimeoutError:
        return TimeoutError(
            f"async request for record {reprlib.repr(request.value)} timed out after "
            f"{self.spec.timeout_ms} ms ({request.attempts} attempt(s)) in {self.context.label}"
        )

    def _give_up(self, request: _Request, error: Exception) -> None:
        dead_letters = self.spec.dead_letters
        if dead_letters is None:
            self._fail(error)
            return
        try:
            dead_letters(FailedRequest(request.value, error, request.attempts, self.context.label))
        except Exception as callback_error:
            callback_error.add_note(
                f"actorflow: raised by dead_letters for record {reprlib.repr(request.value)}"
            )
            self._fail(callback_error)
            return
        self.dead_letter_count += 1
        request.emit = False
        self._complete(request)

    def _complete(self, request: _Request) -> None:
        request.done = True
        if self.spec.ordered:
            # After every drain the queue starts with a request still running: only that one
            # finishing lets something out.
            if self._queue and self._queue[0] is request:
                self._signal()
        else:
            segment = request.segment
            assert segment is not None
            segment.ready.append(request)
            if self._segments and self._segments[0] is segment:
                self._signal()

    def _fail(self, error: Exception) -> None:
        if self._failure is None:
            self._failure = error
        self._signal()
