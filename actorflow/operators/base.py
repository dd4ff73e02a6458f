"""The operator contract: a batch in, a batch (or nothing) out, synchronously.

An operator instance is one step of a chain that runs inside one actor. It is created fresh for
every instance of every run, opened with its :class:`OperatorContext`, fed batches, told when its
input has ended (:meth:`Operator.finish`), and closed. Operators that need to wait (async sinks)
set ``is_async`` and implement :meth:`Operator.process_async` instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actorflow.checkpoint.storage import SharedFiles
from actorflow.errors import StateError
from actorflow.operators.side_outputs import OutputTag, SideOutputs
from actorflow.runtime.messages import Batch
from actorflow.state.backends import StateBackendConfig
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
    #: Whether the job takes checkpoints: a transactional sink commits on checkpoints then, and at
    #: the end of its input otherwise.
    checkpointing: bool = False
    #: Whether keyed operators snapshot incrementally: ``snapshot_state()`` returns ``{"changes":
    #: {key: entry or None}}`` with only the keys changed since the previous snapshot (a task whose
    #: state goes to a changelog), and ``restore_state`` takes such states.
    incremental: bool = False
    #: Where keyed operators keep their state (None: on the heap); see
    #: :class:`~actorflow.state.backends.StateBackendConfig`.
    state_backend: StateBackendConfig | None = None
    #: The shared files of the checkpoint being restored (None: no restore, or it has none):
    #: ``path(key)``, ``copy(key, dest)``, see :class:`~actorflow.checkpoint.storage.SharedFiles`.
    restored_files: SharedFiles | None = None

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
    #: Subclasses whose output can get ready without new input (async I/O finishing in the
    #: background) set this, so the chain asks them for :meth:`wakeup` while its input is quiet.
    has_wakeups = False

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

    # -- checkpoints ---------------------------------------------------------------------------

    def snapshot_state(self) -> Any:
        """This instance's state for a checkpoint, or None if it keeps none.

        Called after barrier alignment, between two batches. The result is serialised (pickled)
        before the operator sees another record, so it may hand out its live objects. A keyed
        operator returns its live state whole, with the range of key groups the instance owns; it
        is not cut by key group: a restore at another parallelism hashes the keys of the parts
        that overlap its own range (see docs/architecture.md, "Key groups at restore time").
        """
        return None

    async def snapshot_state_async(self) -> Any:
        """The async form of :meth:`snapshot_state`, awaited by the chain (a transactional sink
        flushes here); defaults to :meth:`snapshot_state`. The actor reads nothing meanwhile."""
        return self.snapshot_state()

    async def checkpoint_state_async(self, checkpoint_id: int) -> Any:
        """This instance's state for checkpoint ``checkpoint_id`` (not a savepoint, not the final
        state at the end: those take :meth:`snapshot_state_async`, the format every backend
        restores). Defaults to :meth:`snapshot_state_async`. An operator may return a
        :class:`~actorflow.operators.snapshots.SnapshotPart` instead: its own serialization, files
        shared with other checkpoints (RocksDB's), and the data still being made off the loop;
        :meth:`restore_state` then gets the unpickled data of such parts."""
        return await self.snapshot_state_async()

    def restore_state(self, states: list[Any]) -> None:
        """Load a checkpoint's state, after :meth:`open`: ``states`` holds what *every* instance of
        this operator returned from :meth:`snapshot_state` (Nones left out), whatever the
        parallelism was then. A keyed operator keeps the key groups it owns now
        (``self.context.key_groups``).

        Raises :class:`~actorflow.errors.StateError` by default: an operator that returned state
        must know how to load it.
        """
        if states:
            raise StateError(f"operator {self.name!r} ({type(self).__name__}) cannot restore state")

    async def barrier_acknowledged(self, checkpoint_id: int) -> None:
        """Called after the chain acknowledged ``checkpoint_id`` and before it passes the barrier
        on. A sink that must commit before it writes anything newer (one Kafka transaction at a
        time) waits here for :meth:`checkpoint_complete`; the actor reads nothing meanwhile."""

    async def checkpoint_complete(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` is complete: commit what was pre-committed for it (sinks)."""

    async def checkpoint_aborted(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` was aborted: its pre-committed effects will not be committed."""

    def next_processing_time(self) -> int | None:
        """The processing time of the next due timer, if any (see ``has_processing_timers``)."""
        return None

    def on_processing_time(self, now: int) -> Batch | None:
        """Fire the processing-time timers due at ``now``."""
        return None

    def wakeup(self) -> asyncio.Future[Any] | None:
        """A future that resolves once :meth:`on_wakeup` has something to emit, or None if nothing
        can get ready without new input (see ``has_wakeups``). The caller owns the future and
        cancels it when it stops waiting."""
        return None

    def on_wakeup(self) -> Batch | None:
        """Emit what got ready since the last call into the operator (see ``has_wakeups``)."""
        return None
