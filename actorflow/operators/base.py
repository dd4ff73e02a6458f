"""The operator contract: a batch in, a batch (or nothing) out, synchronously.

An operator instance is one step of a chain that runs inside one actor. It is created fresh for
every instance of every run, opened with its :class:`OperatorContext`, fed batches, told when its
input has ended (:meth:`Operator.finish`), and closed. Operators that need to wait (async sinks)
set ``is_async`` and implement :meth:`Operator.process_async` instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actorflow.operators.side_outputs import OutputTag, SideOutputs
from actorflow.runtime.messages import Batch
from actorflow.state.keygroups import DEFAULT_MAX_PARALLELISM, key_group_range
from actorflow.time.clock import Clock, SystemClock
from actorflow.time.watermarks import WatermarkStrategy

__all__ = ["Collector", "Operator", "OperatorContext"]


@dataclass(frozen=True)
class OperatorContext:
    """Where an operator instance runs: its name, its place among its siblings, its clock."""

    name: str
    index: int = 0
    parallelism: int = 1
    max_parallelism: int = DEFAULT_MAX_PARALLELISM
    clock: Clock = field(default_factory=SystemClock)
    batch_size: int = 1024
    #: For a source: the watermark strategy it was given. A source that stamps event time itself
    #: (per-partition watermarks) reads it here and yields ready :class:`Batch` objects.
    watermarks: WatermarkStrategy | None = None

    @property
    def key_groups(self) -> range:
        """The key groups this instance owns."""
        return key_group_range(self.index, self.max_parallelism, self.parallelism)

    @property
    def label(self) -> str:
        """``name[index/parallelism]``, as used in logs and error notes."""
        return f"{self.name}[{self.index + 1}/{self.parallelism}]"


class Collector:
    """Where a process function puts its results: ``out.collect(value)`` once per result.

    >>> results = []
    >>> out = Collector(results.append)
    >>> out.collect(1)
    >>> results
    [1]
    """

    __slots__ = ("collect",)

    def __init__(self, collect: Callable[[Any], None] | None = None) -> None:
        #: Emit one value downstream. Rebound by the operator to a fast append for each batch.
        self.collect: Callable[[Any], None] = collect if collect is not None else [].append


class Operator:
    """One step of an operator chain. Subclasses override :meth:`process`."""

    is_async = False
    #: Subclasses that keep processing-time timers set this, so the chain asks them for wake-ups.
    has_processing_timers = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.context = OperatorContext(name)
        #: Buffers of the side outputs something downstream consumes; the chain replaces it with
        #: one that knows the consumed tags (see :mod:`actorflow.operators.side_outputs`).
        self.side_outputs = SideOutputs()

    def emit_side(self, tag: OutputTag[Any], value: Any, timestamp: int | None) -> None:
        """Send ``value`` to the side output ``tag`` (dropped if nothing consumes it)."""
        self.side_outputs.emit(tag, value, timestamp)

    def open(self, context: OperatorContext) -> None:
        """Called once before the first batch."""
        self.context = context

    async def open_async(self, context: OperatorContext) -> None:
        """The async form of :meth:`open`, awaited by the chain; defaults to :meth:`open`."""
        self.open(context)

    def process(self, batch: Batch) -> Batch | None:
        """Transform a batch; ``None`` means nothing goes on (a sink)."""
        raise NotImplementedError

    def process_input(self, batch: Batch, input: int) -> Batch | None:
        """Records of input ``input`` (0 or 1) of a two-input operator; by default :meth:`process`.

        Only the first operator of a chain has two inputs. Watermark-only batches (the minimum
        over both inputs) still arrive through :meth:`process`.
        """
        return self.process(batch)

    async def process_async(self, batch: Batch) -> Batch | None:
        """The async form of :meth:`process`, used when ``is_async`` is set."""
        return self.process(batch)

    def finish(self) -> Batch | None:
        """The input has ended (after the final watermark): emit what is left."""
        return None

    async def finish_async(self) -> Batch | None:
        """The async form of :meth:`finish`, awaited by the chain; defaults to :meth:`finish`."""
        return self.finish()

    def close(self) -> None:
        """Release resources; called after :meth:`finish`, and also after a failure."""

    async def close_async(self) -> None:
        """The async form of :meth:`close`, awaited by the chain; defaults to :meth:`close`."""
        self.close()

    def next_processing_time(self) -> int | None:
        """The processing time of the next due timer, if any (see ``has_processing_timers``)."""
        return None

    def on_processing_time(self, now: int) -> Batch | None:
        """Fire the processing-time timers due at ``now``."""
        return None
