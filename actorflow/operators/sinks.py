"""Sinks: where records leave a flow. A sink is the last operator of its chain.

Built in: :class:`PrintSink` (stdout), :class:`JsonLinesSink` (a file), :class:`CollectSink`
(an in-memory list, for tests and embedding) and :class:`CallbackSink` (an async or plain function
per record). Write your own by subclassing :class:`Sink` and implementing :meth:`Sink.write`
(or :meth:`Sink.write_async` with ``is_async = True``).
"""

from __future__ import annotations

import copy
import inspect
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

import orjson

from actorflow.operators.base import Operator, OperatorContext
from actorflow.runtime.messages import Batch

__all__ = ["CallbackSink", "CollectSink", "JsonLinesSink", "PrintSink", "Sink"]


class Sink(Operator):
    """Consumes batches. ``max_parallelism`` caps how many instances a sink may have."""

    max_parallelism: int | None = None

    def __init__(self, name: str = "sink") -> None:
        super().__init__(name)

    def write(self, values: list[Any]) -> None:
        """Handle a batch of records (override this, or ``write_async``)."""
        raise NotImplementedError

    async def write_async(self, values: list[Any]) -> None:
        self.write(values)

    def process(self, batch: Batch) -> None:
        if batch.values:
            self.write(batch.values)

    async def process_async(self, batch: Batch) -> None:
        if batch.values:
            await self.write_async(batch.values)

    def copy(self) -> Sink:
        """The sink object for one instance of one run: a shallow copy, so what the sink set up in
        ``__init__`` (a collect list, a callback) is shared and what ``open`` sets is not."""
        return copy.copy(self)


class PrintSink(Sink):
    """Writes each record's ``str`` on its own line to a text stream (stdout by default)."""

    def __init__(self, stream: IO[str] | None = None, *, prefix: str = "") -> None:
        super().__init__("print")
        self._stream = stream
        self._prefix = prefix

    def write(self, values: list[Any]) -> None:
        stream = self._stream if self._stream is not None else sys.stdout
        prefix = self._prefix
        stream.write("".join(f"{prefix}{value}\n" for value in values))


class JsonLinesSink(Sink):
    """Writes each record as one line of JSON (orjson) to ``path``; one instance only."""

    max_parallelism = 1

    def __init__(self, path: str | Path) -> None:
        super().__init__("json-lines")
        self.path = Path(path)
        self._file: IO[bytes] | None = None

    def open(self, context: OperatorContext) -> None:
        super().open(context)
        self._file = self.path.open("wb")

    def write(self, values: list[Any]) -> None:
        assert self._file is not None
        dumps = orjson.dumps
        newline = orjson.OPT_APPEND_NEWLINE
        self._file.write(b"".join([dumps(value, option=newline) for value in values]))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class CollectSink(Sink):
    """Keeps every record in :attr:`values` (shared by all instances), for tests and embedding.

    >>> sink = CollectSink()
    >>> sink.write([1, 2])
    >>> sink.values
    [1, 2]
    """

    def __init__(self) -> None:
        super().__init__("collect")
        self.values: list[Any] = []

    def write(self, values: list[Any]) -> None:
        self.values.extend(values)


class CallbackSink(Sink):
    """Calls ``callback(record)`` for every record; a coroutine function is awaited in order."""

    def __init__(self, callback: Callable[[Any], Awaitable[None] | None]) -> None:
        super().__init__("callback")
        self._callback = callback
        self.is_async = inspect.iscoroutinefunction(callback)

    def write(self, values: list[Any]) -> None:
        callback = self._callback
        for value in values:
            callback(value)

    async def write_async(self, values: list[Any]) -> None:
        callback = self._callback
        for value in values:
            await callback(value)  # type: ignore[misc]
