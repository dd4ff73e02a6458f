"""Windowed streams: ``keyed.window(assigner)``, then a trigger, lateness and a window function.

>>> from actorflow import Flow, TumblingEventTimeWindows, WatermarkStrategy
>>> flow = Flow()
>>> records = [{"k": "a", "v": 1, "ts": 1}, {"k": "a", "v": 2, "ts": 12}, {"k": "a", "v": 3, "ts": 15}]
>>> out = (
...     flow.from_iterable(records, watermarks=WatermarkStrategy.punctuated("ts", lag_ms=0))
...     .key_by("k")
...     .window(TumblingEventTimeWindows.of(10))
...     .reduce(lambda a, b: {**a, "v": a["v"] + b["v"]})
...     .map(lambda r: r["v"])
...     .collect()
... )
>>> flow.execute()
>>> out.values
[1, 5]
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from actorflow.api import nodes
from actorflow.errors import PlanError
from actorflow.operators.side_outputs import OutputTag
from actorflow.operators.windows.assigners import WindowAssigner
from actorflow.operators.windows.functions import (
    AggregateContents,
    ProcessContents,
    ProcessWindowFunction,
    ReduceContents,
    WindowContents,
)
from actorflow.operators.windows.operator import WindowOperator, check_window_setup
from actorflow.operators.windows.triggers import Trigger
from actorflow.state.descriptors import AggregateFunction

if TYPE_CHECKING:
    from actorflow.api.stream import DataStream, KeyedStream

__all__ = ["WindowedStream"]

T = TypeVar("T")
K = TypeVar("K")
U = TypeVar("U")


class WindowedStream(Generic[T, K]):
    """A keyed stream cut into windows; a window function turns it back into a :class:`DataStream`.

    ``trigger`` and ``allowed_lateness`` configure it and return it (as in Flink).
    """

    def __init__(
        self, stream: KeyedStream[T, K], assigner: WindowAssigner, *, whole_stream: bool = False
    ) -> None:
        if not isinstance(assigner, WindowAssigner):
            raise PlanError(f"window() takes a WindowAssigner, got {assigner!r}")
        self._whole_stream = whole_stream
        self._stream = stream
        self._assigner = assigner
        self._trigger: Trigger | None = None
        self._lateness = 0
        self._late_data: OutputTag[T] | None = None

    def trigger(self, trigger: Trigger) -> WindowedStream[T, K]:
        """Fire by ``trigger`` instead of the assigner's default trigger."""
        if not isinstance(trigger, Trigger):
            raise PlanError(f"trigger() takes a Trigger, got {trigger!r}")
        self._trigger = trigger
        return self

    def allowed_lateness(self, ms: int) -> WindowedStream[T, K]:
        """Keep event-time windows ``ms`` past their end; a late record in that time fires them again.

        Raises :class:`PlanError` for a negative lateness. Ignored by processing-time windows.
        """
        if ms < 0:
            raise PlanError(f"allowed lateness must not be negative, got {ms}")
        self._lateness = ms
        return self

    def side_output_late_data(self, tag: OutputTag[T]) -> WindowedStream[T, K]:
        """Send records that come too late for every window (past the allowed lateness) to the side
        output ``tag``, with their own timestamps, instead of only counting them (Flink's
        ``sideOutputLateData``). Read them with ``get_side_output(tag)`` on the window's result.

        Raises :class:`PlanError` unless ``tag`` is an :class:`OutputTag`.

        >>> from actorflow import Flow, OutputTag, TumblingEventTimeWindows, WatermarkStrategy
        >>> late = OutputTag("late")
        >>> flow = Flow()
        >>> sums = (
        ...     flow.from_iterable([5, 25, 7, 21], watermarks=WatermarkStrategy.punctuated(lambda n: n))
        ...     .key_by(lambda n: 0)
        ...     .window(TumblingEventTimeWindows.of(10))
        ...     .side_output_late_data(late)
        ...     .reduce(lambda a, b: a + b)
        ... )
        >>> too_late = sums.get_side_output(late).collect()
        >>> totals = sums.collect()
        >>> flow.execute()
        >>> totals.values, too_late.values
        ([5, 46], [7])
        """
        if not isinstance(tag, OutputTag):
            raise PlanError(f"side_output_late_data() takes an OutputTag, got {tag!r}")
        self._late_data = tag
        return self

    def reduce(
        self,
        fn: Callable[[T, T], T],
        window_function: ProcessWindowFunction[T, U, K] | None = None,
        *,
        name: str | None = None,
        parallelism: int | None = None,
    ) -> DataStream[Any]:
        """Fold each window's records with ``fn`` (only the running value is kept) and emit it."""
        return self._build(ReduceContents(fn, window_function), name, parallelism)

    def aggregate(
        self,
        function: AggregateFunction[T, Any, Any],
        window_function: ProcessWindowFunction[Any, U, K] | None = None,
        *,
        name: str | None = None,
        parallelism: int | None = None,
    ) -> DataStream[Any]:
        """Keep an accumulator per window; emit ``get_result`` (or what ``window_function`` makes
        of it, with the window's metadata)."""
        if not isinstance(function, AggregateFunction):
            raise PlanError("aggregate() takes an AggregateFunction")
        return self._build(AggregateContents(function, window_function), name, parallelism)

    def process(
        self,
        function: ProcessWindowFunction[T, U, K],
        *,
        name: str | None = None,
        parallelism: int | None = None,
    ) -> DataStream[U]:
        """Keep every record of a window; hand them all to ``function`` when it fires."""
        if not isinstance(function, ProcessWindowFunction):
            raise PlanError("a windowed stream's process() takes a ProcessWindowFunction")
        return self._build(ProcessContents(function), name, parallelism)

    def _build(
        self, contents: WindowContents, name: str | None, parallelism: int | None
    ) -> DataStream[Any]:
        if self._whole_stream:
            if parallelism not in (None, 1):
                raise PlanError("window_all() runs in one instance: its parallelism is 1")
            parallelism = 1
        stream = self._stream
        key = stream.key
        assigner = self._assigner
        trigger = self._trigger
        lateness = self._lateness
        late_data = self._late_data
        # Refuse sessions with a trigger or function that cannot merge now, not when the job runs.
        check_window_setup(assigner, trigger or assigner.default_trigger(), contents)

        def make(node_name: str) -> WindowOperator:
            return WindowOperator(
                node_name,
                key,
                copy.deepcopy(assigner),
                copy.deepcopy(contents),
                copy.deepcopy(trigger),
                lateness,
                late_data,
            )

        return nodes.add(stream, "window", name, make, parallelism=parallelism)
