"""One partition task: the flow at one instance per operator, over one input partition.

A task is what Kafka Streams calls a task and Flink a subtask pinned to a partition: its own
operators, keyed state, timers and event time, fed by its partition alone, so its results are a
function of that partition's records whichever worker runs it. It runs on the ordinary actor
runtime (:func:`~actorflow.plan.deploy.deploy` with the partition's
:class:`~actorflow_kafka.tasks.feed.PartitionFeed` as the source) with a checkpoint coordinator of
its own. Its keyed operators snapshot incrementally (only the keys changed since the previous
checkpoint), and each completed checkpoint commits, in one Kafka transaction of the task's own
producer:

1. the results its sinks wrote since the previous checkpoint (they wait at the barrier until the
   commit, so nothing newer gets in);
2. the changed keys, one record each, to the operators' compacted changelog topics (partition =
   the task's partition), and the watermark the task's source had reached;
3. the offset of the next input record, for the job's consumer group.

The transactional id is the task's (``<group>-<topic>-<partition>``): the worker that takes the
partition over starts its producer with it, which fences the previous owner (a crashed or paused
worker can no longer commit anything) and aborts its open transaction. Only then does the new
owner read the committed offset and the changelog, so it continues from exactly the state that
belongs to the output Kafka shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaProducer, TopicPartition

from actorflow.checkpoint.coordinator import CheckpointConfig, CheckpointCoordinator
from actorflow.checkpoint.storage import MemoryStorage
from actorflow.errors import CheckpointError
from actorflow.operators.snapshots import Loaded, Part, ended_owner, part_name, watermark_owner
from actorflow.plan.deploy import deploy
from actorflow.runtime.collector import paused_gc
from actorflow.runtime.job import run_actors
from actorflow.runtime.metrics import JobMetrics
from actorflow_kafka.connection import start_client
from actorflow_kafka.tasks.changelog import (
    UPSTREAM,
    WATERMARK,
    changelog_records,
    changelog_topic,
    dumps,
    read_partition,
    restored_state,
)
from actorflow_kafka.tasks.feed import PartitionFeed
from actorflow_kafka.tasks.repartition import UpstreamWatermarks
from actorflow_kafka.tasks.transaction import TaskTransaction, reset_transaction, set_transaction

if TYPE_CHECKING:
    from actorflow_kafka.tasks.job import TaskJob
    from actorflow_kafka.tasks.stages import Stage

__all__ = ["PartitionTask"]

log = logging.getLogger(__name__)

#: How long closing a task waits for its producer's abort and stop (a fenced one may not answer).
_STOP_TIMEOUT_S = 10


class _TaskStorage(MemoryStorage):
    """Checkpoints in memory, each part kept until the task has written it to Kafka: the parts of
    an aborted checkpoint are written with the next one (their changes were taken from the
    operators already and are not in any later snapshot)."""

    def __init__(self) -> None:
        super().__init__(retain=1)
        self.unwritten: dict[int, dict[str, bytes]] = {}

    def _put_part(self, checkpoint_id: int, kind: str, name: str, data: bytes) -> None:
        super()._put_part(checkpoint_id, kind, name, data)
        self.unwritten.setdefault(checkpoint_id, {})[name] = bytes(data)

    def take_through(self, checkpoint_id: int) -> list[dict[str, bytes]]:
        """The parts of every checkpoint up to ``checkpoint_id`` not written yet, oldest first."""
        ids = sorted(n for n in self.unwritten if n <= checkpoint_id)
        return [self.unwritten.pop(n) for n in ids]


class PartitionTask:
    """The task of partition ``tp`` of ``stage``'s topic in ``job``; :meth:`start`, then
    :meth:`close`."""

    def __init__(self, job: TaskJob, stage: Stage, tp: TopicPartition) -> None:
        self.job = job
        self.stage = stage
        self.tp = tp
        self.transactional_id = f"{job.group_id}-{tp.topic}-{tp.partition}"
        upstream = UpstreamWatermarks(job.partitions) if stage.repartitioned else None
        self.feed = PartitionFeed(0, capacity=job.feed_capacity, upstream=upstream)
        self.storage = _TaskStorage()
        #: The task's actors and channels, for the worker's dashboard and metrics.
        self.metrics = JobMetrics()
        self.coordinator: CheckpointCoordinator | None = None
        self.transaction: TaskTransaction | None = None
        self._run: asyncio.Future[None] | None = None
        self._periodic: asyncio.Future[None] | None = None
        self._closing = False
        self._suspended = False
        #: The input offset, the sources' watermarks (pickled) and the upstream tasks' watermarks
        #: the last commits wrote.
        self._offset = 0
        self._watermarks: dict[str, bytes] = {}
        self._upstream: dict[int, int] | None = None
        #: Per operator, the record keys its changelog partition holds (tombstones of others are
        #: not written).
        self._stored: dict[str, set[bytes]] = {}
        #: Held while a checkpoint commits: a close waits for it before it aborts.
        self._commit_lock = asyncio.Lock()
        #: The offset after the last record the worker fetched for this task.
        self.fetched = 0
        #: Checkpoints this task committed, and state records it wrote (for tests and metrics).
        self.commits = 0
        self.changelog_records = 0

    @property
    def label(self) -> str:
        return f"task {self.tp.topic}-{self.tp.partition}"

    # -- starting ------------------------------------------------------------------------------

    async def start(self, start_offset: Callable[[TopicPartition], Awaitable[int]]) -> int:
        """Fence the previous owner, restore the partition's state from its changelog, start the
        task's actors; returns the offset to read the partition from.

        ``start_offset(tp)`` finds the committed offset (or the configured start); it is called
        once the previous owner is fenced, so that the committed offset is final.
        """
        job = self.job
        producer = AIOKafkaProducer(
            bootstrap_servers=job.bootstrap_servers,
            transactional_id=self.transactional_id,
            **job.producer_options,
        )
        self.transaction = TaskTransaction(
            producer, self.transactional_id, self.tp.partition, producer_options=job.producer_options
        )
        try:
            # fences the previous owner; its open transaction is aborted
            await start_client(producer, job.bootstrap_servers)
            offset = int(await start_offset(self.tp))
            self.feed.position = self.fetched = self._offset = offset
            parts = await self._restored_parts()
            await producer.begin_transaction()
            self._deploy(parts)
        except BaseException:
            await self._stop_producer()
            raise
        log.debug("%s started at offset %d (%d state parts restored)", self.label, offset, len(parts))
        return offset

    async def _restored_parts(self) -> dict[str, Part]:
        """The checkpoint parts that give every operator its state back from the changelogs."""
        job = self.job
        stage = self.stage
        parts: dict[str, Part] = {}
        existing = await job.existing_topics()
        names = [name for name in stage.state_names if changelog_topic(job.group_id, name) in existing]
        reads = await asyncio.gather(
            *(
                read_partition(
                    job.bootstrap_servers,
                    TopicPartition(changelog_topic(job.group_id, name), self.tp.partition),
                    job.client_options,
                )
                for name in names
            )
        )
        for name, entries in zip(names, reads, strict=True):
            watermark = entries.pop(WATERMARK, None)
            if watermark is not None:  # a source's
                parts[part_name(watermark_owner(name), 0)] = self._watermarks[name] = watermark
            upstream = entries.pop(UPSTREAM, None)
            if upstream is not None and self.feed.upstream is not None:
                self._upstream = pickle.loads(upstream)
                self.feed.upstream = UpstreamWatermarks(job.partitions, self._upstream)
            if name == stage.source_name:
                continue
            self._stored[name] = set(entries)
            with paused_gc():
                state = restored_state(entries)
            if state is not None:
                parts[part_name(name, 0)] = Loaded(state)
        return parts

    def _deploy(self, parts: dict[str, Part]) -> None:
        job = self.job
        coordinator = CheckpointCoordinator(
            self.storage, CheckpointConfig(job.commit_interval_ms, job.commit_timeout_ms), job.clock
        )
        coordinator.add_participant(self)  # first: commits before the sinks hear of it
        self.coordinator = coordinator
        stage = self.stage
        actors = deploy(
            stage.plan,
            clock=job.clock,
            batch_size=job.batch_size,
            mailbox_capacity=job.mailbox_capacity,
            max_parallelism=job.max_parallelism,
            checkpoints=coordinator,
            restore=parts or None,
            metrics=self.metrics,
            instance=(self.tp.partition, job.partitions),
            sources={
                stage.source_name: self.feed,
                **{name: source.task_copy() for name, source in stage.side_inputs.items()},
            },
            incremental=True,
            state_backend=job.flow.state_backend,
        )
        token = set_transaction(self.transaction)  # the actors' tasks copy it: sinks find it
        try:
            self._run = asyncio.ensure_future(run_actors(actors))
        finally:
            reset_transaction(token)
        self._periodic = asyncio.ensure_future(coordinator.run_periodic())

    # -- running -------------------------------------------------------------------------------

    def failure(self) -> BaseException | None:
        """Why the task stopped on its own (its actors or a commit failed), or None while it runs."""
        for future in (self._run, self._periodic):
            if future is not None and future.done() and not future.cancelled():
                error = future.exception()
                if error is not None:
                    return error
        if self._run is not None and self._run.done() and not self._closing:
            return CheckpointError(f"{self.label} ended while its partition was still assigned")
        return None

    async def put(
        self,
        values: list[Any],
        timestamps: list[int] | None,
        updates: list[tuple[int, int, int]] | None,
        next_offset: int,
    ) -> None:
        """Hand records of the partition to the task, and the upstream tasks' watermarks among
        them for a repartition topic (waits while its feed is full)."""
        if not self._closing:
            await self.feed.put(values, timestamps, next_offset, updates)

    # -- the coordinator's participant: commit --------------------------------------------------

    async def checkpoint_complete(self, checkpoint_id: int) -> None:
        """Write the checkpoint's state changes and offset into the transaction and commit it."""
        async with self._commit_lock:
            transaction = self.transaction
            if transaction is None or self._closing:
                # Closing without a commit: nothing of this checkpoint may become visible.
                if transaction is not None:
                    transaction.decide(checkpoint_id, False)
                return
            await self._commit(transaction, checkpoint_id)

    async def _commit(self, transaction: TaskTransaction, checkpoint_id: int) -> None:
        producer = transaction.producer
        job = self.job
        stage = self.stage
        offset: int | None = None
        sends = []
        for parts in self.storage.take_through(checkpoint_id):
            for name, data in parts.items():
                owner = name.rpartition("/")[0]
                if owner == stage.source_name:
                    # The offset goes to the group's committed offsets; the upstream tasks'
                    # watermarks (a repartition topic's) to the source's changelog.
                    offset, upstream = pickle.loads(data)
                    if upstream is not None and upstream != self._upstream:
                        self._upstream = upstream
                        topic = changelog_topic(job.group_id, owner)
                        await job.ensure_changelog(topic)
                        sends.append(
                            await producer.send(
                                topic, dumps(upstream), key=UPSTREAM, partition=self.tp.partition
                            )
                        )
                    continue
                source = stage.source_of(owner)
                if source is not None and owner == ended_owner(source):
                    continue
                if source is not None:  # a source's watermark, in that source's changelog
                    if data == self._watermarks.get(source):
                        continue  # event time stood still: the changelog has it
                    self._watermarks[source] = data
                    records: Any = [(WATERMARK, data)]
                    topic = changelog_topic(job.group_id, source)
                else:
                    with paused_gc():
                        records = self._worth_writing(owner, changelog_records(data))
                    topic = changelog_topic(job.group_id, owner)
                await job.ensure_changelog(topic)
                for key, value in records:
                    sends.append(await producer.send(topic, value, key=key, partition=self.tp.partition))
        if not sends and offset in (None, self._offset) and not transaction.written:
            transaction.decide(checkpoint_id, True)  # nothing happened: the open one goes on
            return
        if sends:
            await asyncio.gather(*sends)
            self.changelog_records += len(sends)
        moved = offset is not None and offset != self._offset
        if offset is not None:
            await producer.send_offsets_to_transaction({self.tp: offset}, job.group_id)
            self._offset = offset
        await producer.commit_transaction()
        if moved:
            job.last_commit_ms = job.clock.now()
            if self.stage.repartitioned:
                job.purge(self.tp, self._offset)
        transaction.written = 0
        self.commits += 1
        # The next transaction is open before the sinks, released now, write again.
        await producer.begin_transaction()
        transaction.decide(checkpoint_id, True)

    def _worth_writing(
        self, owner: str, records: Iterable[tuple[bytes, bytes | None]]
    ) -> list[tuple[bytes, bytes | None]]:
        """``records`` without the tombstones of keys the changelog does not hold (a key touched
        that kept no state: most cards of a fraud rule, most of the time)."""
        stored = self._stored.setdefault(owner, set())
        kept = []
        for key, value in records:
            if value is not None:
                stored.add(key)
            elif key in stored:
                stored.discard(key)
            else:
                continue
            kept.append((key, value))
        return kept

    async def checkpoint_aborted(self, checkpoint_id: int) -> None:
        """The transaction stays open: its records and changes commit with the next checkpoint."""
        if self.transaction is not None:
            self.transaction.decide(checkpoint_id, False)

    # -- rebalances and closing -----------------------------------------------------------------

    async def suspend(self) -> None:
        """Commit everything the task has read (a checkpoint) and take no more checkpoints until
        :meth:`resume`: the partition may go to another worker now. Raises if the commit fails."""
        self._stop_periodic()
        coordinator = self.coordinator
        failure = self.failure()
        if failure is not None:
            raise failure
        assert coordinator is not None
        self._suspended = True
        log.debug("%s: suspending (commit)", self.label)
        await coordinator.trigger()
        log.debug("%s: suspended", self.label)

    def resume(self) -> int:
        """Go on after a rebalance that gave the partition back; returns the offset to fetch from
        (after the records already fetched for the task: they reach it still)."""
        self._suspended = False
        if self.coordinator is not None:
            self._periodic = asyncio.ensure_future(self.coordinator.run_periodic())
        return self.fetched

    async def close(self, *, commit: bool) -> None:
        """Stop the task. With ``commit`` (a graceful stop), a last checkpoint first commits what
        it read, unless it is suspended (committed already). The open transaction is aborted: the
        next owner goes on from the last commit."""
        if commit and not self._suspended:
            try:
                await self.suspend()
            except Exception as error:
                log.warning(
                    "%s: its last commit failed (%r); the next owner goes on from the one before",
                    self.label,
                    error,
                )
        self._stop_periodic()
        self._closing = True
        log.debug("%s: closing", self.label)
        self.feed.close()
        if self._run is not None:
            self._run.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._run
        await self._stop_producer()

    def _stop_periodic(self) -> None:
        if self._periodic is not None:
            self._periodic.cancel()
            self._periodic = None

    async def _stop_producer(self) -> None:
        async with self._commit_lock:
            transaction, self.transaction = self.transaction, None
        if transaction is None:
            return
        producer = transaction.producer
        try:
            # What the task did since its last commit is never to be seen. An empty transaction
            # needs no abort, and must not wait for one: the partition's next owner may have
            # fenced this producer already, and a fenced producer's abort never ends.
            if transaction.written:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(_STOP_TIMEOUT_S):
                        await producer.abort_transaction()
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_STOP_TIMEOUT_S):
                    await producer.stop()
