"""The source of one partition task: the records of its partition, handed over by the worker.

The worker's consumer fetches for every partition it owns and puts each partition's decoded records
into that partition's feed; the task's source actor reads the feed like any source. A feed holds a
few batches at most: when it is full, :meth:`PartitionFeed.put` waits, so a slow task holds its
worker's consumer back (backpressure reaches Kafka, as it reaches a file).

Event time is the task's own: the feed stamps each batch with a watermark generator of its own
(one per partition), so a task's windows and timers fire on its partition's records alone. A task
reading a repartition topic has no generator: its records come with their event times, and its
watermark is the minimum over the upstream tasks' (:class:`UpstreamWatermarks`), which the feed
moves as it hands the records out, so that its checkpointed state matches its position.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from actorflow import Source
from actorflow.operators.base import OperatorContext
from actorflow.runtime.messages import Batch
from actorflow_kafka.tasks.repartition import UpstreamWatermarks

__all__ = ["PartitionFeed"]

_END: Any = object()


class PartitionFeed(Source):
    """Records of one partition, put in by the worker, read by the task's source actor.

    Its checkpointed state is the offset of the next record after those it handed out, and the
    upstream tasks' watermarks (``upstream``, for a repartition topic's feed; else None).

    >>> async def demo():
    ...     feed = PartitionFeed(7, capacity=2)
    ...     await feed.put([{"n": 1}], None, 8)
    ...     feed.end()
    ...     return [batch async for batch in feed.read(OperatorContext("in"))], feed.position
    >>> asyncio.run(demo())
    ([[{'n': 1}]], 8)
    """

    def __init__(
        self, start_offset: int = 0, *, capacity: int = 4, upstream: UpstreamWatermarks | None = None
    ) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue(capacity)
        self._closed = False
        #: The offset of the next record after those the task has read.
        self.position = start_offset
        self.upstream = upstream

    async def put(
        self,
        values: list[Any],
        timestamps: list[int] | None,
        next_offset: int,
        updates: list[tuple[int, int, int]] | None = None,
    ) -> None:
        """Hand over decoded records (and their event times, when known) up to ``next_offset``,
        and for a repartition topic the upstream tasks' watermarks among them (``(position, task,
        watermark)``); waits while the feed is full. After :meth:`close` records are dropped (the
        partition has gone to another owner, which reads them from the committed offset)."""
        if not self._closed:
            await self._queue.put((values, timestamps, next_offset, updates))

    def close(self) -> None:
        """The task stopped: forget what is queued, so that a waiting :meth:`put` returns."""
        self._closed = True
        while not self._queue.empty():
            self._queue.get_nowait()

    def end(self) -> None:
        """No more records: the task's input ends once it has read what is queued."""
        self._queue.put_nowait(_END)

    async def read(self, context: OperatorContext) -> AsyncIterator[list[Any] | Batch]:
        strategy = context.watermarks
        generator = strategy.generator() if strategy is not None else None
        queue = self._queue
        while True:
            item = await queue.get()
            if item is _END:
                return
            values, timestamps, next_offset, updates = item
            # No await between here and the yield: a barrier (between two batches) sees exactly
            # the position of the records handed out.
            self.position = next_offset
            if self.upstream is not None:
                yield Batch(values, timestamps, self._marks(updates))
                continue
            if generator is None:
                yield values
                continue
            assert strategy is not None
            if timestamps is None:
                timestamps = list(map(strategy.timestamp, values))
            yield Batch(values, timestamps, generator.on_batch(timestamps))

    def _marks(self, updates: list[tuple[int, int, int]] | None) -> list[tuple[int, int]] | None:
        """The watermarks the upstream tasks' ``updates`` make (the minimum over them rose)."""
        upstream = self.upstream
        assert upstream is not None
        marks: list[tuple[int, int]] = []
        for position, task, watermark in updates or ():
            rose = upstream.update(task, watermark)
            if rose is not None:
                if marks and marks[-1][0] == position:
                    marks.pop()
                marks.append((position, rose))
        return marks or None

    def snapshot_state(self, context: OperatorContext) -> tuple[int, dict[int, int] | None]:
        upstream = self.upstream
        return self.position, None if upstream is None else dict(upstream.known)

    def restore_state(self, context: OperatorContext, states: list[Any]) -> None:
        """The worker positions the partition; nothing to load."""
