"""The stateless steps: map, filter, flat map, and stamping records with event time.

Each works on a whole batch with one comprehension. Plain functions are called directly; only the
bookkeeping for timestamps and watermarks differs when the batch carries them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from actorflow.operators.base import Operator, OperatorContext
from actorflow.operators.batches import expand, select
from actorflow.operators.failures import FAILED, call_each
from actorflow.operators.side_outputs import OutputTag
from actorflow.runtime.messages import MAX_WATERMARK, Batch
from actorflow.time.watermarks import WatermarkGenerator, WatermarkStrategy

__all__ = ["FilterOperator", "FlatMapOperator", "MapOperator", "PassThroughOperator", "TimestampOperator"]


class PassThroughOperator(Operator):
    """Every batch unchanged: the head of a side output's stream, which reads a tagged edge."""

    def process(self, batch: Batch) -> Batch:
        return batch


class MapOperator(Operator):
    """``fn`` applied to every record; timestamps and watermarks stay where they are. With
    ``errors``, a record ``fn`` raises on goes to that side output (see
    :mod:`~actorflow.operators.failures`)."""

    def __init__(self, name: str, fn: Callable[[Any], Any], errors: OutputTag[Any] | None = None) -> None:
        super().__init__(name)
        self.fn = fn
        self.errors = errors
        if errors is not None:  # a metric only where records can fail over
            self.dead_letter_count = 0

    def process(self, batch: Batch) -> Batch:
        fn = self.fn
        if self.errors is not None:
            return self._guarded(batch)
        return Batch([fn(value) for value in batch.values], batch.timestamps, batch.marks)

    def _guarded(self, batch: Batch) -> Batch:
        out = call_each(self, self.fn, batch.values, batch.timestamps)
        keep = [result is not FAILED for result in out]
        mapped = Batch(out, batch.timestamps, batch.marks)
        return mapped if all(keep) else select(mapped, keep)


class FilterOperator(Operator):
    """The records for which ``predicate`` is true. With ``errors``, a record ``predicate`` raises
    on goes to that side output."""

    def __init__(
        self, name: str, predicate: Callable[[Any], bool], errors: OutputTag[Any] | None = None
    ) -> None:
        super().__init__(name)
        self.predicate = predicate
        self.errors = errors
        if errors is not None:  # a metric only where records can fail over
            self.dead_letter_count = 0

    def process(self, batch: Batch) -> Batch:
        predicate = self.predicate
        if self.errors is not None:
            return select(batch, self._guarded(batch))
        if batch.timestamps is None and not batch.marks:
            return Batch([value for value in batch.values if predicate(value)])
        return select(batch, [bool(predicate(value)) for value in batch.values])

    def _guarded(self, batch: Batch) -> list[bool]:
        predicate = self.predicate
        kept = call_each(self, lambda value: bool(predicate(value)), batch.values, batch.timestamps)
        return [result is True for result in kept]


class FlatMapOperator(Operator):
    """Every record replaced by the records of the iterable ``fn`` returns for it. With ``errors``,
    a record ``fn`` (or iterating its result) raises on goes to that side output, with no output."""

    def __init__(
        self, name: str, fn: Callable[[Any], Iterable[Any]], errors: OutputTag[Any] | None = None
    ) -> None:
        super().__init__(name)
        self.fn = fn
        self.errors = errors
        if errors is not None:  # a metric only where records can fail over
            self.dead_letter_count = 0

    def process(self, batch: Batch) -> Batch:
        fn = self.fn
        if self.errors is not None:
            return expand(batch, self._guarded(batch))
        if batch.timestamps is None and not batch.marks:
            return Batch([out for value in batch.values for out in fn(value)])
        return expand(batch, [list(fn(value)) for value in batch.values])

    def _guarded(self, batch: Batch) -> list[list[Any]]:
        fn = self.fn
        outputs = call_each(self, lambda value: list(fn(value)), batch.values, batch.timestamps)
        return [[] if output is FAILED else output for output in outputs]


class TimestampOperator(Operator):
    """Stamps records with event time and generates watermarks from a strategy.

    Watermarks that arrive from upstream are replaced by this strategy's, as in Flink's
    ``assign_timestamps_and_watermarks``.
    """

    def __init__(self, name: str, strategy: WatermarkStrategy) -> None:
        super().__init__(name)
        self.strategy = strategy
        self._generator: WatermarkGenerator = strategy.generator()

    def open(self, context: OperatorContext) -> None:
        super().open(context)
        self._generator = self.strategy.generator()

    def process(self, batch: Batch) -> Batch:
        stamped = stamp(batch.values, self.strategy, self._generator)
        if batch.marks and batch.marks[-1][1] == MAX_WATERMARK:
            # The end of the input keeps its meaning: every timer downstream fires.
            stamped.marks = [*(stamped.marks or ()), (len(stamped.values), MAX_WATERMARK)]
        return stamped


def stamp(values: list[Any], strategy: WatermarkStrategy, generator: WatermarkGenerator) -> Batch:
    """A batch of ``values`` with timestamps from ``strategy`` and marks from ``generator``."""
    timestamp = strategy.timestamp
    timestamps = list(map(timestamp, values))
    return Batch(values, timestamps, generator.on_batch(timestamps))
