"""The checkpoint coordinator: triggers checkpoints, gathers acknowledgements, completes or aborts.

One coordinator serves one job run (Flink's asynchronous barrier snapshots):

1. :meth:`CheckpointCoordinator.trigger` picks the next id and asks every source to put barrier ``n``
   into its output, in order with its records, after recording its position.
2. Every actor aligns barrier ``n`` over its inputs, takes a consistent copy of its operators' state
   (serialised bytes, one *part* per operator instance), calls :meth:`acknowledge` and forwards the
   barrier. The coordinator writes the parts to storage in a worker thread, so the data path only
   pays for the copy.
3. When every actor has acknowledged and every part is written, the manifest is committed (the
   checkpoint now exists) and every participant is told (:meth:`Participant.checkpoint_complete`):
   sinks commit their transactions, sources their offsets. A checkpoint that fails or does not complete
   within ``timeout_ms`` is aborted: its parts are deleted and participants are told.

Checkpoints go on after some sources have ended, while at least one still runs (as in Flink since
1.15): an actor that has *finished* (every input ended) takes part with the final state it reported
(:meth:`CheckpointCoordinator.actor_finished`), and one that finishes while a checkpoint waits for it
acknowledges with that final state. This is consistent because an input that ended delivered every
record before its end, and alignment counts an ended input as aligned: whatever a finished actor
sent is inside every downstream snapshot of the checkpoint. A source that ends with a barrier
requested puts it out before its end. A finished participant hears of completions (a sink commits
what it pre-committed at its end) but not of aborts: its last transaction stays pending and commits
with the next checkpoint that completes, at the latest the final one.

>>> import asyncio
>>> from actorflow.checkpoint.storage import MemoryStorage
>>> async def demo():
...     coordinator = CheckpointCoordinator(MemoryStorage(), CheckpointConfig())
...     class Source:
...         def request_barrier(self, checkpoint_id):
...             coordinator.acknowledge(checkpoint_id, "source", {"source/0": b"offset 3"})
...     coordinator.begin_run(["source"], [Source()])
...     info = await coordinator.trigger()
...     return info.checkpoint_id, sorted(info.parts)
>>> asyncio.run(demo())
(1, ['source/0'])
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol

from actorflow.checkpoint.parts import SnapshotPart
from actorflow.checkpoint.storage import CheckpointInfo, CheckpointStorage, LoadedCheckpoint
from actorflow.errors import CheckpointError
from actorflow.time.clock import Clock, SystemClock

__all__ = [
    "BarrierSource",
    "CheckpointConfig",
    "CheckpointCoordinator",
    "CheckpointStats",
    "Histogram",
    "Participant",
]

log = logging.getLogger(__name__)


class BarrierSource(Protocol):
    """A source actor: puts barrier ``checkpoint_id`` into its output as soon as it can."""

    def request_barrier(self, checkpoint_id: int) -> None: ...


class Participant(Protocol):
    """Something that holds uncommitted effects until a checkpoint completes (sinks, sources)."""

    def checkpoint_complete(self, checkpoint_id: int) -> Awaitable[None]: ...

    def checkpoint_aborted(self, checkpoint_id: int) -> Awaitable[None]: ...


@dataclass(frozen=True)
class CheckpointConfig:
    """When checkpoints are taken.

    ``interval_ms`` None means only on demand. ``min_pause_ms`` is the least time between the end of
    one checkpoint and the start of the next, so a slow checkpoint cannot starve the job.
    """

    interval_ms: int | None = None
    timeout_ms: int = 60_000
    min_pause_ms: int = 0

    def __post_init__(self) -> None:
        if self.interval_ms is not None and self.interval_ms < 1:
            raise ValueError("the checkpoint interval must be at least 1 ms")
        if self.timeout_ms < 1 or self.min_pause_ms < 0:
            raise ValueError("need timeout_ms >= 1 and min_pause_ms >= 0")


@dataclass
class Histogram:
    """Observed values counted into buckets the way Prometheus keeps a histogram: cumulatively.

    ``counts[i]`` is how many values were at most ``bounds[i]`` (so the counts never decrease);
    ``count`` and ``total`` are the number and the sum of all of them (``count`` is the ``+Inf``
    bucket). Raises ValueError unless ``bounds`` rise strictly.

    >>> sizes = Histogram((1_000, 10_000))
    >>> for size in (500, 2_000, 50_000):
    ...     sizes.observe(size)
    >>> sizes.counts, sizes.count, sizes.total
    ([1, 2], 3, 52500.0)
    """

    bounds: tuple[float, ...]
    counts: list[int] = field(init=False, default_factory=list)
    count: int = 0
    total: float = 0.0

    def __post_init__(self) -> None:
        if any(low >= high for low, high in zip(self.bounds, self.bounds[1:], strict=False)):
            raise ValueError(f"histogram bounds must rise strictly, not {self.bounds}")
        self.counts = [0] * len(self.bounds)

    def observe(self, value: float) -> None:
        self.count += 1
        self.total += value
        counts = self.counts
        for index, bound in enumerate(self.bounds):
            if value <= bound:
                counts[index] += 1


#: Bucket bounds of checkpoint durations, in ms: 10 ms to 10 minutes.
DURATION_BUCKETS_MS = (10, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 120_000, 600_000)
#: Bucket bounds of checkpoint sizes, in bytes: powers of 4 from 1 KiB to 4 GiB.
SIZE_BUCKETS_BYTES = tuple(1 << shift for shift in range(10, 33, 2))
#: How many recent checkpoints ``CheckpointStats.history`` keeps.
HISTORY_LENGTH = 100


@dataclass
class CheckpointStats:
    """Counters and the history of recent checkpoints, for metrics and the dashboard.

    ``history`` keeps the last :data:`HISTORY_LENGTH` completed checkpoints; the histograms
    ``durations_ms`` and ``sizes`` count every one completed since the stats were made (one
    ``Flow.run``, restarts included), so they can back Prometheus histograms.

    >>> stats = CheckpointStats()
    >>> stats.record_completed(1, "checkpoint", duration_ms=80, size=3_000)
    >>> stats.completed, stats.history, stats.durations_ms.count, stats.sizes.total
    (1, [(1, 'checkpoint', 80, 3000)], 1, 3000.0)
    """

    completed: int = 0
    failed: int = 0
    #: ``(checkpoint id, kind, duration ms, bytes)`` of the most recent completed checkpoints.
    history: list[tuple[int, str, int, int]] = field(default_factory=list)
    last_failure: str | None = None
    #: Durations of completed checkpoints (and savepoints), in ms.
    durations_ms: Histogram = field(default_factory=lambda: Histogram(DURATION_BUCKETS_MS))
    #: Bytes written by completed checkpoints (and savepoints).
    sizes: Histogram = field(default_factory=lambda: Histogram(SIZE_BUCKETS_BYTES))

    def record_completed(self, checkpoint_id: int, kind: str, *, duration_ms: int, size: int) -> None:
        """Count a completed checkpoint into the counter, the recent history and the histograms."""
        self.completed += 1
        self.history = [*self.history[1 - HISTORY_LENGTH :], (checkpoint_id, kind, duration_ms, size)]
        self.durations_ms.observe(duration_ms)
        self.sizes.observe(size)


@dataclass(eq=False)
class _Pending:
    checkpoint_id: int
    kind: str
    started_ms: int
    waiting: set[str]
    done: asyncio.Future[CheckpointInfo]
    writes: list[asyncio.Task[None]] = field(default_factory=list)
    size: int = 0
    #: The manifest is written: the checkpoint exists and can no longer be aborted.
    committed: bool = False


class CheckpointCoordinator:
    """Triggers and completes the checkpoints of one job run (see the module docstring)."""

    def __init__(
        self,
        storage: CheckpointStorage,
        config: CheckpointConfig,
        clock: Clock | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.storage = storage
        self.config = config
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.metadata = dict(metadata or {})
        self.stats = CheckpointStats()
        self._actors: list[str] = []
        self._final: dict[str, dict[str, bytes]] = {}
        self._sources: list[BarrierSource] = []
        self._participants: list[Participant] = []
        self._pending: _Pending | None = None
        self._tasks: set[asyncio.Future[Any]] = set()  # referenced until done (asyncio keeps weak refs)
        self._sources_running = 0
        #: Set by a graceful stop: no periodic checkpoint starts after the stop's savepoint.
        self.stopping = False
        self._last_id = 0
        self._last_end_ms: int | None = None

    # -- wiring --------------------------------------------------------------------------------

    def begin_run(self, actors: list[str], sources: list[BarrierSource]) -> None:
        """Start a run with these actors (each acknowledges once per checkpoint) and sources."""
        self._actors = list(actors)
        self._sources = list(sources)
        self._sources_running = len(sources)
        self._pending = None
        self._final = {}

    def add_participant(self, participant: Participant) -> None:
        """Tell ``participant`` when checkpoints complete or abort."""
        self._participants.append(participant)

    def source_finished(self) -> None:
        """A source has ended: checkpoints go on while another one runs (module docstring)."""
        self._sources_running -= 1

    def actor_finished(self, actor: str, parts: dict[str, bytes]) -> None:
        """``actor`` has ended; ``parts`` is its final state, for every later checkpoint. If the
        checkpoint in progress waits for ``actor`` (no barrier will reach it), these parts are its
        acknowledgement."""
        self._final[actor] = parts
        pending = self._pending
        if pending is not None and actor in pending.waiting:
            self.acknowledge(pending.checkpoint_id, actor, parts)

    async def complete_final(self) -> CheckpointInfo:
        """After every actor ended: write the *final* checkpoint of their final states, then tell
        the participants (sinks commit what they pre-committed at the end of their input).

        A crash before it completes restarts from the previous checkpoint, whose later effects
        were never committed; after it, a restart restores the finished state and sinks commit
        again, idempotently. Raises :class:`CheckpointError` if an actor did not report its end.
        """
        missing = sorted(set(self._actors) - set(self._final))
        if missing:
            raise CheckpointError(f"cannot take the final checkpoint: {missing} did not finish")
        while self._pending is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._pending.done)
        checkpoint_id = self._last_id = max(self.storage.next_id(), self._last_id + 1)
        done: asyncio.Future[CheckpointInfo] = asyncio.get_running_loop().create_future()
        pending = _Pending(checkpoint_id, "checkpoint", self.clock.now(), set(), done)
        self._pending = pending
        for parts in self._final.values():
            self._write(pending, parts)
        self._spawn(self._complete(pending, final=True))
        return await asyncio.shield(done)

    @property
    def can_trigger(self) -> bool:
        """Whether a checkpoint can start: some source still runs to put a barrier out."""
        return self._sources_running > 0

    def restore_point(self) -> LoadedCheckpoint | None:
        """The newest intact complete checkpoint to restore, after removing incomplete leftovers."""
        self.storage.clean()
        return self.storage.load_latest()

    # -- checkpoints ---------------------------------------------------------------------------

    async def trigger(self, kind: str = "checkpoint") -> CheckpointInfo:
        """Take a checkpoint (or a savepoint) now and wait until it completes.

        Waits for a checkpoint in progress first. Raises :class:`CheckpointError` if every source
        has ended, or if the checkpoint fails or times out (it is aborted then).
        """
        while self._pending is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._pending.done)
        if not self.can_trigger:
            raise CheckpointError("cannot checkpoint: every source has ended (or there is none)")
        if self.stopping and kind == "checkpoint":
            raise CheckpointError("cannot checkpoint: the job is stopping after its savepoint")
        # Ids only grow: past the storage's (also across restarts) and past aborted ones.
        checkpoint_id = self._last_id = max(self.storage.next_id(), self._last_id + 1)
        done: asyncio.Future[CheckpointInfo] = asyncio.get_running_loop().create_future()
        finished = self._final
        waiting = {actor for actor in self._actors if actor not in finished}
        pending = _Pending(checkpoint_id, kind, self.clock.now(), waiting, done)
        self._pending = pending
        for parts in finished.values():
            self._write(pending, parts)
        timeout = asyncio.ensure_future(self._expire(pending))
        try:
            for source in self._sources:
                source.request_barrier(checkpoint_id)
            return await asyncio.shield(done)
        finally:
            timeout.cancel()

    def kind_of(self, checkpoint_id: int) -> str:
        """``"savepoint"`` if ``checkpoint_id`` is a savepoint in progress, else ``"checkpoint"``."""
        pending = self._pending
        if pending is not None and pending.checkpoint_id == checkpoint_id:
            return pending.kind
        return "checkpoint"

    def acknowledge(
        self, checkpoint_id: int, actor: str, parts: dict[str, bytes] | dict[str, bytes | SnapshotPart]
    ) -> None:
        """``actor`` has snapshotted for ``checkpoint_id``: store its parts (in worker threads;
        a :class:`SnapshotPart`'s data is awaited first, and its shared files are stored too)."""
        pending = self._pending
        if pending is None or pending.checkpoint_id != checkpoint_id:
            return  # an aborted checkpoint's late acknowledgement
        if actor not in pending.waiting:
            raise CheckpointError(f"{actor} acknowledged checkpoint {checkpoint_id} twice or uninvited")
        pending.waiting.discard(actor)
        self._write(pending, parts)
        if not pending.waiting:
            self._spawn(self._complete(pending))

    def _write(self, pending: _Pending, parts: dict[str, bytes] | dict[str, bytes | SnapshotPart]) -> None:
        """Write ``parts`` into ``pending``'s checkpoint, in worker threads."""
        for name, data in parts.items():
            if isinstance(data, SnapshotPart):
                pending.writes.append(asyncio.ensure_future(self._write_snapshot_part(pending, name, data)))
                continue
            pending.size += len(data)
            pending.writes.append(
                asyncio.ensure_future(
                    asyncio.to_thread(
                        self.storage.write_part, pending.checkpoint_id, name, data, kind=pending.kind
                    )
                )
            )

    async def _write_snapshot_part(self, pending: _Pending, name: str, part: SnapshotPart) -> None:
        storage, checkpoint_id, kind = self.storage, pending.checkpoint_id, pending.kind
        shared = [
            asyncio.ensure_future(_write_shared(storage, checkpoint_id, key, path, kind))
            for key, path in part.shared.items()
        ]
        try:
            data = part.data if isinstance(part.data, bytes) else await part.data
            pending.size += len(data)
            await asyncio.to_thread(storage.write_part, checkpoint_id, name, data, kind=kind)
            for copied in await asyncio.gather(*shared):
                pending.size += copied
        finally:  # none left running when this one is cancelled (an abort) or fails
            for write in shared:
                write.cancel()
            await asyncio.gather(*shared, return_exceptions=True)

    def decline(self, checkpoint_id: int, reason: str) -> None:
        """A participant cannot take part in ``checkpoint_id``: abort it."""
        pending = self._pending
        if pending is not None and pending.checkpoint_id == checkpoint_id:
            self._spawn(self._abort(pending, reason))

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _complete(self, pending: _Pending, *, final: bool = False) -> None:
        metadata = self._metadata()
        if final:
            metadata["final"] = True
        try:
            await asyncio.gather(*pending.writes)
            info = await asyncio.to_thread(
                self.storage.commit, pending.checkpoint_id, metadata, kind=pending.kind
            )
        except Exception as error:
            await self._abort(pending, f"writing it failed: {error!r}", final=final)
            return
        if self._pending is not pending:
            return  # aborted (timed out) while the writes ran
        # Committed: no abort may touch it now, but it stays the pending one until every
        # participant has heard, so no next checkpoint starts while sinks are still committing.
        pending.committed = True
        end = self.clock.now()
        self._last_end_ms = end
        self.stats.record_completed(
            info.checkpoint_id, info.kind, duration_ms=end - pending.started_ms, size=pending.size
        )
        try:
            for participant in self._participants:
                await participant.checkpoint_complete(info.checkpoint_id)
        except Exception as error:  # delivered to whoever waits for this checkpoint
            pending.done.set_exception(error)
            return
        except BaseException as error:
            pending.done.set_exception(error)
            raise
        finally:
            if self._pending is pending:
                self._pending = None
        pending.done.set_result(info)

    async def _abort(self, pending: _Pending, reason: str, *, final: bool = False) -> None:
        if self._pending is not pending or pending.committed:
            return
        self._pending = None
        self._last_end_ms = self.clock.now()
        self.stats.failed += 1
        self.stats.last_failure = f"checkpoint {pending.checkpoint_id}: {reason}"
        log.warning("checkpoint %d aborted: %s", pending.checkpoint_id, reason)
        for write in pending.writes:
            write.cancel()
        await asyncio.gather(*pending.writes, return_exceptions=True)
        await asyncio.to_thread(self.storage.abort, pending.checkpoint_id)
        for participant in self._participants:
            # A finished participant's last transaction waits for the next completed checkpoint
            # (the final one at the latest); only the final checkpoint's abort ends it.
            if final or not getattr(participant, "finished", False):
                await participant.checkpoint_aborted(pending.checkpoint_id)
        pending.done.set_exception(CheckpointError(f"checkpoint {pending.checkpoint_id} aborted: {reason}"))

    async def _expire(self, pending: _Pending) -> None:
        await self.clock.sleep_until(pending.started_ms + self.config.timeout_ms)
        await self._abort(pending, f"not complete after {self.config.timeout_ms} ms")

    def _metadata(self) -> dict[str, Any]:
        return dict(self.metadata)

    # -- the periodic trigger ------------------------------------------------------------------

    async def run_periodic(self) -> None:
        """Trigger a checkpoint every ``interval_ms`` (and ``min_pause_ms`` after the last one
        ended) while every source runs; returns at once without an interval. Cancel it to stop."""
        interval = self.config.interval_ms
        if interval is None:
            return
        next_start = self.clock.now() + interval
        while True:
            if self._last_end_ms is not None:
                next_start = max(next_start, self._last_end_ms + self.config.min_pause_ms)
            await self.clock.sleep_until(next_start)
            if not self.can_trigger or self.stopping:
                return
            started = self.clock.now()
            with contextlib.suppress(CheckpointError):
                await self.trigger()
            next_start = started + interval


async def _write_shared(
    storage: CheckpointStorage, checkpoint_id: int, key: str, path: str | Awaitable[str], kind: str
) -> int:
    """Store shared file ``key`` of a checkpoint in a worker thread, once its local file is written
    (``path`` may be an awaitable of it); the bytes copied."""
    local = path if isinstance(path, str) else await path
    return await asyncio.to_thread(storage.write_shared, checkpoint_id, key, local, kind=kind)
