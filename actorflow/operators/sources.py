"""Sources: where records enter a flow, a batch at a time.

A :class:`Source` yields lists of records from :meth:`Source.read`. A bounded source simply stops
yielding: the flow then sends the final +infinity watermark and end of stream. Sources built in:

- :class:`IterableSource`: any iterable (bounded, or an endless generator);
- :class:`JsonLinesSource`: a JSON-lines file, parsed with orjson; a line that does not parse fails
  the job with its file and line, or goes to a dead-letter callback if one is given;
- :class:`PushSource`: records an async service pushes in with ``await source.send(record)``;
  a full buffer makes ``send`` wait (backpressure reaches the caller).
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sized
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import IO, Any, Protocol

import orjson

from actorflow.errors import BrokenResourceError, ClosedResourceError, InputError, StateError, WouldBlock
from actorflow.operators.base import OperatorContext
from actorflow.runtime.collector import batch_in_flight
from actorflow.runtime.messages import Batch
from actorflow.time.watermarks import WatermarkGenerator, event_time

__all__ = [
    "DeadLetter",
    "IterableSource",
    "JsonLinesSource",
    "PushSource",
    "ReadProgress",
    "Source",
    "TaskRunner",
]


class TaskRunner(Protocol):
    """Runs a flow as partition tasks (see :meth:`Source.task_runner`)."""

    async def run(self) -> None:
        """Run until the source is stopped; raises what failed."""


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReadProgress:
    """``done`` of ``total`` read, in the source's own ``unit`` (``"B"`` for bytes, ``"records"``).

    >>> ReadProgress(250, 1_000, "records").share
    0.25
    """

    done: int
    total: int
    unit: str = "records"

    @property
    def share(self) -> float:
        """The part read, from 0.0 to 1.0 (1.0 for an empty input)."""
        return min(1.0, self.done / self.total) if self.total > 0 else 1.0


class Source(ABC):
    """Produces batches of records. ``max_parallelism`` caps how many instances may read.

    ``read`` yields plain lists of records, which the flow stamps with the source's watermark
    strategy; or, for a source that keeps watermarks of its own (one per partition), ready
    :class:`~actorflow.runtime.messages.Batch` objects built with ``context.watermarks``.
    """

    max_parallelism: int = 1

    @abstractmethod
    def read(self, context: OperatorContext) -> AsyncIterator[list[Any] | Batch]:
        """Yield lists of records (at most ``context.batch_size`` each) until the input ends."""

    async def finish(self, context: OperatorContext, *, completed: bool) -> None:  # noqa: B027
        """Called once per instance when it is done. ``completed`` is True when everything it read
        went through its actor's operators to the end (sinks in that actor flushed), False when
        the job failed or was cancelled: a source that commits its position does it only then."""

    def describe(self) -> str:
        return type(self).__name__

    def stop(self) -> None:  # noqa: B027
        """End the input soon, as if it had ended (a drain: ``Flow.drain()``, the daemon's SIGTERM
        without checkpoints). Between two batches the flow stops reading anyway; a source whose
        :meth:`read` can wait long for its next records ends that wait here. Default: nothing."""

    def check(self) -> None:  # noqa: B027
        """Raise :class:`~actorflow.errors.InputError` if the input cannot be read at all (a
        missing file). :meth:`Flow.run <actorflow.Flow.run>` calls it before any actor starts, and
        ``actorflow run`` makes it bad usage (exit 2). Default: nothing to check."""

    def read_progress(self) -> ReadProgress | None:
        """How much of a bounded input this source has read (all its instances), for progress
        lines and ETAs; None when its size is unknown (unbounded, or not known in advance)."""
        return None

    # -- checkpoints ---------------------------------------------------------------------------

    def snapshot_state(self, context: OperatorContext) -> Any:
        """The position of instance ``context.index``: just after the records it has yielded.

        Called between two batches, when a barrier goes out. None means the source cannot be
        rewound (records after the last checkpoint are not read again after a failure).
        """
        return None

    def restore_state(self, context: OperatorContext, states: list[Any]) -> None:  # noqa: B027
        """Before :meth:`read`: go on from a checkpoint's positions (those of every instance then,
        Nones left out), so that the instance reads what comes after them."""

    async def checkpoint_complete(self, context: OperatorContext, checkpoint_id: int) -> None:  # noqa: B027
        """Checkpoint ``checkpoint_id`` is complete (a source may commit its positions now)."""

    def task_runner(self, flow: Any) -> TaskRunner | None:
        """What runs ``flow`` instead of the in-process runtime, when this source splits the job
        into partition tasks (a Kafka source with ``tasks=True``); None for every other source."""
        return None

    async def accepts_restore(self, states: list[Any]) -> bool:
        """Whether the job may resume from a checkpoint in which this source's instances had
        ``states``. The flow asks before a restore, newest checkpoint first, and takes the first
        every source accepts: a Kafka source whose offsets commit inside the output's
        transactions accepts only the checkpoint whose offsets Kafka committed."""
        return True


@dataclass(frozen=True)
class DeadLetter:
    """A record that could not be decoded: its raw bytes, where it came from, and why."""

    raw: bytes
    origin: str
    error: str


class IterableSource(Source):
    """The records of an iterable, in order.

    >>> import asyncio
    >>> async def first():
    ...     async for batch in IterableSource(range(5)).read(OperatorContext("s", batch_size=2)):
    ...         return batch
    >>> asyncio.run(first())
    [0, 1]
    """

    def __init__(self, items: Iterable[Any]) -> None:
        self._items = items
        self._emitted = 0
        self._skip = 0

    def snapshot_state(self, context: OperatorContext) -> int:
        """How many records went out (a restore skips them: the iterable must be re-iterable)."""
        return self._emitted

    def read_progress(self) -> ReadProgress | None:
        """Records out of the collection's length (None for an iterable without one)."""
        items = self._items
        return ReadProgress(self._emitted, len(items)) if isinstance(items, Sized) else None

    def restore_state(self, context: OperatorContext, states: list[Any]) -> None:
        if states and iter(self._items) is self._items:
            raise StateError(
                "an IterableSource over an iterator cannot rewind to a checkpoint: give it a list, "
                "a range or another iterable that can be read again"
            )
        self._skip = sum(states)

    async def read(self, context: OperatorContext) -> AsyncIterator[list[Any]]:
        iterator = iter(self._items)
        size = context.batch_size
        self._emitted = self._skip
        if self._skip:
            next(islice(iterator, self._skip, self._skip), None)
        while True:
            batch = list(islice(iterator, size))
            if not batch:
                return
            self._emitted += len(batch)
            yield batch
            # Give other actors a turn even when nothing downstream is full.
            await asyncio.sleep(0)


#: The file buffer of a :class:`JsonLinesSource`: eight times the default, so that reading the
#: file takes an eighth of the system calls (each costs about as much as a few lines' decoding).
_READ_BUFFER_BYTES = 1 << 16


class JsonLinesSource(Source):
    """One JSON value per line of a file; blank lines are skipped.

    A line that is not UTF-8, not valid JSON, or (with a watermark strategy) has no event time to
    read (or one beyond 64 bits), fails the job with an :class:`~actorflow.errors.InputError`
    naming the file and line, unless ``dead_letters`` is given: then it receives a
    :class:`DeadLetter` and the job goes on. A missing file fails before the job starts
    (:meth:`check`); a file without records logs a warning (``0 records``).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        dead_letters: Callable[[DeadLetter], None] | None = None,
        chunk_bytes: int = 1 << 20,
    ) -> None:
        self.path = Path(path)
        self._dead_letters = dead_letters
        self._chunk_bytes = chunk_bytes
        #: Records decoded so far (dead letters not included).
        self.records_read = 0
        #: Lines that went to ``dead_letters`` (a metric: ``actorflow_dead_letters_total``).
        self.dead_letter_count = 0
        # (byte offset, line number) just after the last record yielded; where a restore starts.
        self._position = (0, 0)
        self._start = (0, 0)

    def describe(self) -> str:
        return f"JsonLinesSource({self.path})"

    def check(self) -> None:
        """Raises :class:`InputError` if the file cannot be opened (``transactions.jsonl: no such
        file``)."""
        try:
            self.path.open("rb").close()
        except FileNotFoundError:
            raise InputError(f"{self.path}: no such file") from None
        except OSError as error:
            raise InputError(f"{self.path}: cannot read it ({error.strerror or error})") from None

    def read_progress(self) -> ReadProgress | None:
        """Bytes read of the file's size (None if it cannot be read)."""
        try:
            size = self.path.stat().st_size
        except OSError:
            return None
        return ReadProgress(self._position[0], size, "B")

    def snapshot_state(self, context: OperatorContext) -> tuple[int, int]:
        """``(byte offset, line number)`` just after the last record yielded."""
        return self._position

    def restore_state(self, context: OperatorContext, states: list[Any]) -> None:
        self._start = (int(states[0][0]), int(states[0][1])) if states else (0, 0)

    async def read(self, context: OperatorContext) -> AsyncIterator[list[Any] | Batch]:
        # Lines are read and decoded a batch at a time: only one batch's records are alive at
        # once (the collector has less to walk), and the position after a batch is the file's.
        size = context.batch_size
        # With event time, the source reads it while decoding, so that a line without it is a
        # dead letter (file and line) like one that is not JSON, rather than a failed job.
        strategy = context.watermarks
        time_of = None if strategy is None else strategy.timestamp
        generator = None if strategy is None else strategy.generator()
        offset, line_number = self._position = self._start
        with self.path.open("rb", buffering=_READ_BUFFER_BYTES) as file:
            file.seek(offset)
            pause_at = offset + self._chunk_bytes
            while True:
                with batch_in_flight():
                    count, records, times, marks = self._decode(
                        file, offset, size, line_number, time_of, generator
                    )
                    if not count:
                        break
                    offset = file.tell()
                    line_number += count
                    self._position = (offset, line_number)
                    if records:
                        self.records_read += len(records)
                        yield records if times is None else Batch(records, times, marks)
                if offset >= pause_at:  # give other actors a turn every chunk of the file
                    pause_at = offset + self._chunk_bytes
                    await asyncio.sleep(0)
        if self._start == (0, 0) and self.records_read == 0:
            empty = " (the file is empty)" if offset == 0 else ""
            log.warning("%s: 0 records%s", self.path, empty)

    def _decode(
        self,
        file: IO[bytes],
        offset: int,
        size: int,
        first_line: int,
        time_of: Callable[[Any], Any] | None,
        generator: WatermarkGenerator | None,
    ) -> tuple[int, list[Any], list[Any] | None, list[tuple[int, int]] | None]:
        """How many lines were read (the next ``size`` of ``file``, from byte ``offset`` and line
        ``first_line``, 0-based, at most), their records, and if ``time_of`` reads event times,
        theirs and the marks ``generator`` makes of them."""
        try:
            # Fast path: every line is a JSON value, with an event time that is an int in range
            # (the generator checks them as it goes). The lines are decoded as they are read (no
            # list of them). A blank or bad line raises, or fails the check: the slow path reads
            # the batch's lines again and sorts them out.
            records = list(map(orjson.loads, islice(file, size)))
            if time_of is None or generator is None:
                return len(records), records, None, None
            times = list(map(time_of, records))
            marks = generator.on_plain_batch(times)
            if marks is not None:
                return len(records), records, times, marks
        except Exception:
            pass
        file.seek(offset)
        lines = list(islice(file, size))
        records, checked = self._decode_slowly(lines, first_line, time_of)
        if checked is None or generator is None:
            return len(lines), records, None, None
        return len(lines), records, checked, generator.on_batch(checked)

    def _decode_slowly(
        self, lines: list[bytes], first_line: int, time_of: Callable[[Any], Any] | None
    ) -> tuple[list[Any], list[Any] | None]:
        records = []
        times: list[Any] = []
        for index, line in enumerate(lines):
            if line.isspace():
                continue
            try:
                record = orjson.loads(line)
                if time_of is not None:
                    times.append(event_time(time_of, record))
            except (orjson.JSONDecodeError, ValueError, TypeError) as error:
                origin = f"{self.path}:{first_line + index + 1}"
                reason = (
                    _why_not_json(line, error) if isinstance(error, orjson.JSONDecodeError) else str(error)
                )
                if self._dead_letters is None:
                    raise InputError(f"{origin}: {reason}") from None
                self.dead_letter_count += 1
                self._dead_letters(DeadLetter(line.rstrip(b"\r\n"), origin, reason))
                continue
            records.append(record)
        return records, None if time_of is None else times


def _why_not_json(line: bytes, error: orjson.JSONDecodeError) -> str:
    """What is wrong with a line orjson refused, placed within the line (orjson's own line and
    column count from the start of the text it was given: always line 1 or 2 here)."""
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"not UTF-8 at byte {bad.start + 1} of the line ({line[bad.start : bad.start + 1]!r})"
    return f"not valid JSON ({error.msg} at column {error.pos + 1})"


class PushSource(Source):
    """Records pushed in by the application: ``await source.send(record)``, then ``close()``.

    ``capacity`` bounds the records buffered between ``send`` and the flow; a full buffer makes
    ``send`` wait. If the flow fails, waiting and later senders get :class:`BrokenResourceError`.

    >>> source = PushSource(capacity=2)
    >>> source.send_nowait({"n": 1})
    >>> source.pending
    1
    """

    def __init__(self, capacity: int = 1024) -> None:
        if capacity < 1:
            raise ValueError("a push source needs a capacity of at least 1")
        self._capacity = capacity
        self._buffer: deque[Any] = deque()
        self._senders: deque[asyncio.Future[None]] = deque()
        self._reader: asyncio.Future[None] | None = None
        self._closed = False
        self._broken: BaseException | None = None

    @property
    def pending(self) -> int:
        """Records sent and not yet taken by the flow."""
        return len(self._buffer)

    def send_nowait(self, record: Any) -> None:
        """Buffer ``record`` or raise :class:`WouldBlock` when the buffer is full."""
        if self._broken is not None:
            raise BrokenResourceError("the flow reading this push source has stopped") from (self._broken)
        if self._closed:
            raise ClosedResourceError("this push source was closed")
        if len(self._buffer) >= self._capacity:
            raise WouldBlock(f"push source is full ({self._capacity} records)")
        self._buffer.append(record)
        self._wake_reader()

    async def send(self, record: Any) -> None:
        """Buffer ``record``, waiting while the buffer is full (backpressure)."""
        while True:
            try:
                self.send_nowait(record)
                return
            except WouldBlock:
                waiter = asyncio.get_running_loop().create_future()
                self._senders.append(waiter)
                try:
                    await waiter
                finally:
                    waiter.cancel()

    async def send_all(self, records: Iterable[Any]) -> None:
        """Send every record of ``records`` in order."""
        for record in records:
            await self.send(record)

    def close(self) -> None:
        """End the stream: the flow finishes the buffered records, then ends this input."""
        self._closed = True
        self._wake_reader()

    def stop(self) -> None:
        """A drain closes the stream (:meth:`close`)."""
        self.close()

    def _wake_reader(self) -> None:
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)

    def _wake_senders(self) -> None:
        while self._senders:
            waiter = self._senders.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def read(self, context: OperatorContext) -> AsyncIterator[list[Any]]:
        buffer = self._buffer
        size = context.batch_size
        self._broken = None
        try:
            while True:
                if buffer:
                    take = min(size, len(buffer))
                    batch = [buffer.popleft() for _ in range(take)]
                    self._wake_senders()
                    yield batch
                    continue
                if self._closed:
                    return
                self._reader = asyncio.get_running_loop().create_future()
                try:
                    await self._reader
                finally:
                    self._reader = None
        except BaseException as error:
            self._broken = error
            raise
        finally:
            if not self._closed and self._broken is None:
                self._broken = BrokenResourceError("the flow stopped reading")
            self._wake_senders()
