"""KafkaSource: topics (or a pattern) read by a consumer group, with per-partition watermarks.

Each instance of the source is one aiokafka consumer. With a ``group_id`` the instances (in this
process and in every other process running the same flow) share the partitions through Kafka's group
protocol, and a rebalance moves partitions between them.

**Without checkpoints**, before a partition is taken away the offset of the next record this consumer
would read is committed, so the new owner goes on from there (the records already handed to the flow
are still processed here), and a clean end commits every position. That is at-least-once across a
crash (the last commit is where a restart begins) and exactly once across a clean stop or a rebalance.

**With checkpoints** (``flow.enable_checkpointing``) the source's state is the next offset of every
partition it reads (and each partition's watermark), taken when a barrier goes out; a restore starts
every partition of the checkpoint exactly there. Offsets reach the group only for a completed
checkpoint: the source commits them itself when the checkpoint completes, or, when an exactly-once
:class:`~actorflow_kafka.KafkaSink` is linked to it (``offsets_of=``), the sink commits them inside
its transaction, atomically with the results of that checkpoint. Nothing is committed at a revoke or
at the end of the input. A revoked partition is *released* only once a checkpoint taken after the
revoke (so holding the partition's last position) has been committed; meanwhile no more of its
records go out, and the group's rebalance waits. Its next owner, here or in another process, then
starts exactly where this one stopped, and every record is in exactly one consistent checkpoint.
See ``docs/kafka.md`` for the whole protocol.

Event time is kept **per partition**: each partition has its own watermark generator, and the
source's watermark is the minimum over the partitions it reads, so a partition that lags behind holds
event time back instead of making its records late. A partition with nothing to read for the
strategy's idleness timeout stops holding the others back until it has records again.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord

from actorflow import Source
from actorflow.errors import CheckpointError
from actorflow.operators.base import OperatorContext
from actorflow.operators.sources import TaskRunner
from actorflow.runtime.collector import paused_gc
from actorflow.runtime.messages import MIN_WATERMARK, Batch
from actorflow.time.watermarks import WatermarkGenerator, WatermarkStrategy
from actorflow_kafka.admin import ADMIN_OPTIONS
from actorflow_kafka.connection import connect_timeout, start_client
from actorflow_kafka.decoding import DeadLetterTarget, RecordDecoder
from actorflow_kafka.polling import unless_stopped
from actorflow_kafka.serde import Deserializer, resolve_deserializer
from actorflow_kafka.transactions import TransactionLink, matches_commit, owned_offsets

__all__ = ["KafkaSource", "Start"]

log = logging.getLogger(__name__)

T = TypeVar("T")

Start = Literal["committed", "earliest", "latest"] | int
#: A partition in a checkpoint: ``(topic, partition)``, plain values so that pickles stay stable.
Key = tuple[str, int]


#: How long a transactional source waits for its sink's producer (a fenced predecessor's commit or
#: abort is finished first, which takes a moment, not minutes).
_SINK_START_TIMEOUT_S = 120


def _key(tp: TopicPartition) -> Key:
    return (tp.topic, tp.partition)


@dataclass
class _Run:
    """What the instances of one run of the source share; a restart begins a new one."""

    #: Unique per run: snapshot tokens (and so commit digests) never repeat across runs.
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    parallelism: int = 1
    #: ``("restore" | "read", instance)`` calls seen (see ``KafkaSource._touch_run``).
    seen: set[tuple[str, int]] = field(default_factory=set)
    #: Whether this run resumes from a checkpoint (committed offsets then come before ``start``).
    resumed: bool = False
    #: The restored checkpoint's positions and watermarks, and which restored partitions an instance
    #: has taken (with how many snapshots that instance had taken then: see ``snapshot_state``).
    restored: dict[TopicPartition, int] = field(default_factory=dict)
    restored_watermarks: dict[TopicPartition, int] = field(default_factory=dict)
    taken: dict[TopicPartition, int] = field(default_factory=dict)
    #: Partitions that have begun in this run (a configured ``start`` applies only the first time).
    started: set[TopicPartition] = field(default_factory=set)
    #: Released partitions: ``(offset, watermark)``, so an instance here that gets one next keeps its
    #: event time (only if it starts at that very offset: nobody else read it meanwhile).
    released: dict[TopicPartition, tuple[int, int]] = field(default_factory=dict)
    #: Snapshots taken per instance, the newest one, and (with an exactly-once sink linked) every
    #: snapshot not yet consumed by the sink, by ordinal.
    counts: dict[int, int] = field(default_factory=dict)
    latest: dict[int, dict[str, Any]] = field(default_factory=dict)
    ordered: dict[int, dict[int, dict[str, Any]]] = field(default_factory=dict)
    #: Instances whose bounded input has ended, with the ordinal of their newest snapshot since:
    #: the final one, which stands for every later barrier (checkpoints go on while other
    #: instances or sources still run).
    read_to_end: set[int] = field(default_factory=set)
    ended: dict[int, int] = field(default_factory=dict)


class KafkaSource(Source):
    """Records from Kafka topics, decoded, stamped with event time per partition.

    ``start`` says where a partition without a committed offset (for the group) begins: "committed"
    (the default: committed offsets, else the earliest), "earliest", "latest", or an epoch-ms
    timestamp. With "earliest", "latest" or a timestamp, every partition assigned for the first time
    in a run starts there, committed or not (except when an exactly-once sink commits this source's
    offsets: committed offsets are then the truth, and ``start`` applies to partitions without one).
    A checkpoint being restored decides over both.

    ``bounded=True`` reads every partition of the topics up to the end offsets they had when the
    flow started, then ends the stream (a topic read like a file). Otherwise the source runs until
    :meth:`stop`.

    ``release_timeout_ms`` (with checkpoints) bounds how long a revoked partition waits for a
    checkpoint to commit its position; if none does, the job fails and restarts from its last
    checkpoint rather than let the partition move with an unknown position (take checkpoints
    periodically: ``enable_checkpointing(..., interval_ms=...)``).

    ``client_options`` go to aiokafka untouched (SASL, SSL, client id, fetch sizes...).

    ``tasks=True`` runs the flow as **partition tasks** (:mod:`actorflow_kafka.tasks`): one task per
    partition of the topic that this worker is assigned, each with its own keyed state, timers and
    event time, kept in compacted changelog topics ``<group_id>-<operator>-changelog``, so that a
    partition's state moves with it to whichever worker (process, machine) the group gives it.
    Every ``commit_interval_ms`` each task commits its results, its state changes and its offset
    in one Kafka transaction of its own (``producer_options`` go to that producer; changelog
    topics get ``replication_factor``). Checkpoint settings of the flow do not apply then.
    ``partitioned_by`` names the field (or is the function) the topic's records are partitioned by
    (the producer's Kafka key is its value): a ``key_by`` on it runs in the input's tasks; every
    other ``key_by`` goes through a repartition topic (:mod:`actorflow_kafka.tasks.stages`).

    >>> source = KafkaSource("transactions", bootstrap_servers="127.0.0.1:9092", group_id="fraud")
    >>> source.describe()
    "KafkaSource(['transactions'])"
    """

    def __init__(
        self,
        topics: str | Sequence[str] | None = None,
        *,
        bootstrap_servers: str,
        pattern: str | None = None,
        group_id: str | None = None,
        start: Start = "committed",
        value_deserializer: str | Deserializer = "json",
        key_deserializer: str | Deserializer = "bytes",
        with_metadata: bool = False,
        dead_letters: DeadLetterTarget | None = None,
        bounded: bool = False,
        max_parallelism: int = 64,
        poll_timeout_ms: int = 100,
        max_records: int | None = None,
        release_timeout_ms: int = 30_000,
        client_options: Mapping[str, Any] | None = None,
        tasks: bool = False,
        commit_interval_ms: int = 1_000,
        producer_options: Mapping[str, Any] | None = None,
        replication_factor: int = 1,
        partitioned_by: str | Callable[[Any], Any] | None = None,
    ) -> None:
        if isinstance(topics, str):
            topics = [topics]
        if (not topics) == (pattern is None):
            raise ValueError("give the topics to read, or a pattern, not both")
        if bounded and pattern is not None:
            raise ValueError("a bounded Kafka source reads named topics, not a pattern")
        if start == "committed" and group_id is None and not bounded:
            start = "earliest"  # no group, nothing committed
        self.topics = list(topics or ())
        self.pattern = pattern
        self.bootstrap_servers = bootstrap_servers
        self.group_id = group_id
        self.start = start
        self._value = resolve_deserializer(value_deserializer)
        self._key = resolve_deserializer(key_deserializer)
        self.with_metadata = with_metadata
        self.dead_letters = dead_letters
        self.bounded = bounded
        self.max_parallelism = max_parallelism
        self.poll_timeout_ms = poll_timeout_ms
        self.max_records = max_records
        self.release_timeout_ms = release_timeout_ms
        self.client_options = dict(client_options or {})
        if tasks and (group_id is None or bounded):
            raise ValueError("tasks=True needs a group_id, and an unbounded source")
        if commit_interval_ms < 1:
            raise ValueError("commit_interval_ms must be at least 1")
        self.tasks = tasks
        self.commit_interval_ms = commit_interval_ms
        self.producer_options = dict(producer_options or {})
        self.replication_factor = replication_factor
        self.partitioned_by = partitioned_by
        #: With ``tasks=True``: the runner of the current (or last) run, for its statistics.
        self.task_job: Any = None
        self._stopping = asyncio.Event()
        self._readers: dict[int, _PartitionReader] = {}
        # Readers that ended while an exactly-once sink still has to commit their last offsets:
        # their consumers stay in the group until it has (see finish).
        self._lingering: list[_PartitionReader] = []
        self._run = _Run()
        #: Set by an exactly-once KafkaSink that commits this source's offsets (``offsets_of=``).
        self._link: TransactionLink | None = None
        #: Per instance: the offset of the next record to read, per partition (the source's state).
        self.positions: dict[int, dict[TopicPartition, int]] = {}
        #: Records handed to the flow, and records sent to the dead letters, over all instances.
        self.records_read = 0
        self.dead_letter_count = 0

    def describe(self) -> str:
        return f"KafkaSource({self.topics or self.pattern!r})"

    def _count_dead_letter(self) -> None:
        self.dead_letter_count += 1

    def task_runner(self, flow: Any) -> TaskRunner | None:
        """With ``tasks=True``: the runner of ``flow`` as partition tasks (one per partition this
        worker is assigned, state in changelog topics, output exactly once); see
        :mod:`actorflow_kafka.tasks`."""
        if not self.tasks:
            return None
        from actorflow_kafka.tasks.job import TaskJob  # it builds on this module

        job = self.task_job = TaskJob(self, flow)
        return job

    def task_copy(self) -> KafkaSource:
        """A copy of this (non-task) source for one partition task, which reads the topic whole
        as a side input: the same settings, none of the running state."""
        if self.tasks or self.group_id is not None or self.bounded:
            raise ValueError(
                f"{self.describe()}: a side input of partition tasks reads its topic whole: give it "
                "no group_id (and not bounded)"
            )
        copied = copy.copy(self)
        copied._stopping = asyncio.Event()
        copied._readers = {}
        copied._lingering = []
        copied._run = _Run()
        copied._link = None
        copied.positions = {}
        copied.records_read = 0
        copied.dead_letter_count = 0
        return copied

    def stop(self) -> None:
        """End the stream: every instance finishes the batch in hand and ends.

        Without checkpoints each instance commits its positions first. With checkpoints the final
        checkpoint holds them (an exactly-once sink commits them with its last transaction); to
        commit a running job's positions and stop, use ``await flow.stop()`` (a savepoint).
        """
        self._stopping.set()

    @property
    def releasing(self) -> set[TopicPartition]:
        """Partitions revoked from an instance that wait for a checkpoint to commit their position."""
        return {tp for reader in self._readers.values() for tp in reader.releasing}

    def snapshot(self) -> dict[tuple[str, int], int]:
        """The next offset to read for every partition this source reads (all instances)."""
        return {
            (tp.topic, tp.partition): offset
            for positions in self.positions.values()
            for tp, offset in positions.items()
        }

    # -- running -------------------------------------------------------------------------------

    def _touch_run(self, context: OperatorContext, call: str | None = None) -> _Run:
        """The current run's shared state. Every run calls ``restore_state`` (when it resumes) and
        then ``read`` once per instance: a call that an instance already made in this run, or a
        restore after its read, starts a new run."""
        run = self._run
        if call is not None:
            # restore_state comes before read in a run: a restore after a read starts a new one.
            later = ("restore", "read") if call == "restore" else ("read",)
            if any((kind, context.index) in run.seen for kind in later):
                run = self._run = _Run(parallelism=context.parallelism)
            if call == "read" and not any(kind == "read" for kind, _ in run.seen):
                self._stopping.clear()  # a source stopped in an earlier run may run again
            run.seen.add((call, context.index))
            run.parallelism = context.parallelism
        return run

    async def read(self, context: OperatorContext) -> AsyncIterator[list[Any] | Batch]:
        self._touch_run(context, "read")
        await self._close_lingering()  # left by a run whose final checkpoint never came
        reader = _PartitionReader(self, context)
        self._readers[context.index] = reader
        await reader.open()
        async for batch in reader.batches():
            yield batch
        self._run.read_to_end.add(context.index)

    async def finish(self, context: OperatorContext, *, completed: bool) -> None:
        """Disconnect. Without checkpoints, commit the positions first if everything read went
        through (``completed``); with checkpoints, completed checkpoints alone commit (see the
        module docstring).

        A job that failed or was cancelled commits nothing: the next start reads again what this
        one may not have written.
        """
        reader = self._readers.pop(context.index, None)
        if reader is None:
            return
        if completed and self._link is not None:
            # The final checkpoint's transaction commits the last offsets after every actor has
            # ended. Leaving the group before would let a partition's next owner start from the
            # offsets committed before: the consumer stays until the sink has committed.
            reader.ended = True
            self._lingering.append(reader)
            return
        await reader.close(commit=completed and not context.checkpointing)

    async def _close_lingering(self) -> None:
        """Close the consumers kept for the final commit (it happened, or it never will)."""
        lingering, self._lingering = self._lingering, []
        # All at once: a consumer that leaves the group makes the others rebalance, and one still
        # rejoining would wait for those that are leaving.
        closing = await asyncio.gather(
            *(reader.close(commit=False) for reader in lingering), return_exceptions=True
        )
        failures = [outcome for outcome in closing if isinstance(outcome, BaseException)]
        if failures:
            raise failures[0]

    # -- checkpoints ---------------------------------------------------------------------------

    def snapshot_state(self, context: OperatorContext) -> dict[str, Any]:
        """Instance ``context.index``'s position: ``{"offsets": {(topic, partition): next offset},
        "watermarks": {...}, "pending": {...}, "token": ..., "seq": ...}``.

        ``offsets`` are the partitions the instance reads (a partition being released included).
        ``pending`` are partitions of the restored checkpoint that no instance had taken when this
        snapshot was cut; they keep their restored position in the next checkpoint. ``token`` is
        unique to this snapshot (the run, the instance, the snapshot's number ``seq``).
        """
        run = self._touch_run(context)
        index = context.index
        seq = run.counts[index] = run.counts.get(index, 0) + 1
        reader = self._readers.get(index)
        offsets: dict[Key, int] = {}
        watermarks: dict[Key, int] = {}
        if reader is not None:
            offsets = {_key(tp): offset for tp, offset in reader.positions.items()}
            watermarks = {
                _key(tp): reader.watermarks[tp] for tp in reader.positions if tp in reader.watermarks
            }
        # A restored partition taken by an instance that had cut fewer than ``seq`` snapshots then
        # is in that instance's snapshot number ``seq`` (it owned it by then); one taken later, or
        # not at all, is not, so this snapshot keeps its restored position.
        pending = {
            _key(tp): offset
            for tp, offset in run.restored.items()
            if run.taken.get(tp, seq) >= seq and _key(tp) not in offsets
        }
        for tp, watermark in run.restored_watermarks.items():
            if _key(tp) in pending:
                watermarks[_key(tp)] = watermark
        state = {
            "offsets": offsets,
            "watermarks": watermarks,
            "pending": pending,
            "token": f"{run.token}/{index}/{seq}",
            "seq": seq,
        }
        run.latest[index] = state
        if index in run.read_to_end:
            run.ended[index] = seq
        if self._link is not None:
            run.ordered.setdefault(index, {})[seq] = state
        return state

    def restore_state(self, context: OperatorContext, states: list[Any]) -> None:
        """Start the partitions of the checkpoint (every instance's, whichever instance reads a
        partition now) at their positions then; others start as configured."""
        run = self._touch_run(context, "restore")
        run.resumed = True
        restored: dict[TopicPartition, int] = {}
        watermarks: dict[TopicPartition, int] = {}
        for state in states:
            for part in ("offsets", "pending"):
                for (topic, partition), offset in state.get(part, {}).items():
                    tp = TopicPartition(topic, partition)
                    restored[tp] = max(offset, restored.get(tp, offset))
            for (topic, partition), watermark in state.get("watermarks", {}).items():
                tp = TopicPartition(topic, partition)
                watermarks[tp] = max(watermark, watermarks.get(tp, watermark))
        # Every instance gets the same states: the first call sets them, the others find them set.
        if not run.taken:
            run.restored = restored
            run.restored_watermarks = watermarks

    async def checkpoint_complete(self, context: OperatorContext, checkpoint_id: int) -> None:
        """Commit the instance's offsets of the completed checkpoint to the group (unless an
        exactly-once sink commits them inside its transaction)."""
        reader = self._readers.get(context.index)
        if self._link is not None or self.group_id is None or reader is None:
            return
        state = self._run.latest.get(context.index)
        if state is not None:
            await reader.commit_state(state)

    async def accepts_restore(self, states: list[Any]) -> bool:
        """With an exactly-once sink linked: whether this checkpoint's transaction is the one Kafka
        committed last (its offsets and its digest are the group's committed ones). A crash between
        a checkpoint and its commit so restores the checkpoint before, whose results Kafka has."""
        link = self._link
        if link is None:
            return True
        offsets = owned_offsets(states)
        if not offsets:
            return False  # no offsets were committed with it: nothing tells (see matches_commit)
        # A commit of the crashed run may still be writing its markers: fence first, so that what
        # the group says next is final.
        await link.fence()
        committed = await self._committed_offsets([TopicPartition(*key) for key in offsets])
        accepted = matches_commit(states, committed)
        if not accepted:
            log.info("a checkpoint of %s is not the one Kafka committed: try an older one", self.describe())
        return accepted

    async def _committed_offsets(self, partitions: list[TopicPartition]) -> dict[Key, tuple[int, str]]:
        assert self.group_id is not None
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap_servers,
            **{k: v for k, v in self.client_options.items() if k in ADMIN_OPTIONS},
        )
        await start_client(admin, self.bootstrap_servers)
        try:
            found = await _retrying(
                lambda: admin.list_consumer_group_offsets(self.group_id, partitions=partitions)
            )
        finally:
            await admin.close()
        return {
            _key(tp): (int(meta.offset), str(meta.metadata or ""))
            for tp, meta in found.items()
            if meta.offset >= 0
        }

    # -- the exactly-once sink's side --------------------------------------------------------------

    def _attach(self, link: TransactionLink) -> None:
        if self.group_id is None:
            raise ValueError("an exactly-once KafkaSink commits the offsets of a source with a group_id")
        if self._link is not None:
            raise ValueError(
                f"{self.describe()} already has an exactly-once sink committing its offsets: "
                "write several topics through one sink (topic= a function of the record)"
            )
        self._link = link

    def _states_at(self, ordinal: int) -> dict[int, dict[str, Any]]:
        """Every instance's ``ordinal``-th snapshot of this run: the one of the ``ordinal``-th
        barrier (the sink counts the barriers it aligned; each instance put every barrier out, in
        order, one snapshot each, until its input ended), or its final one after its last barrier.
        Older ones are dropped."""
        run = self._run
        found: dict[int, dict[str, Any]] = {}
        for index in range(run.parallelism):
            snapshots = run.ordered.get(index, {})
            wanted = min(ordinal, run.ended.get(index, ordinal))
            if wanted not in snapshots:
                raise CheckpointError(
                    f"{self.describe()}[{index + 1}] has no snapshot for barrier {ordinal} of this run"
                )
            found[index] = snapshots[wanted]
            for older in [seq for seq in snapshots if seq < wanted]:
                del snapshots[older]
        return found

    def _transaction_committed(self, states: Mapping[int, Mapping[str, Any]]) -> None:
        """The sink committed a transaction with these snapshots' offsets."""
        for reader in [*self._readers.values(), *self._lingering]:
            state = states.get(reader.context.index)
            if state is not None:
                reader.mark_committed(int(state["seq"]))


async def _retrying(request: Callable[[], Awaitable[T]]) -> T:
    """``request()``, again after a retriable Kafka error (the group's coordinator moving or
    loading, right after a transaction's markers were written), with a doubling backoff, until
    :func:`connect_timeout` has passed; then that error."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + connect_timeout()
    backoff = 0.05
    while True:
        try:
            return await request()
        except KafkaError as error:
            if not error.retriable or loop.time() + backoff > deadline:
                raise
            log.debug("retrying after %s", error)
        await asyncio.sleep(backoff)
        backoff = min(2 * backoff, 1.0)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, reader: _PartitionReader) -> None:
        self._reader = reader

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._reader.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self._reader.assigned(set(assigned))


class _PartitionReader:
    """One source instance: its consumer, its partitions' positions and watermarks."""

    def __init__(self, source: KafkaSource, context: OperatorContext) -> None:
        self.source = source
        self.context = context
        self.run = source._run
        self.strategy: WatermarkStrategy | None = context.watermarks
        self.decoder = RecordDecoder(
            value=source._value,
            key=source._key,
            with_metadata=source.with_metadata,
            strategy=self.strategy,
            dead_letters=source.dead_letters,
            on_dead_letter=source._count_dead_letter,
        )
        self.consumer: AIOKafkaConsumer | None = None
        self.positions: dict[TopicPartition, int] = {}
        source.positions[context.index] = self.positions
        self.generators: dict[TopicPartition, WatermarkGenerator] = {}
        self.watermarks: dict[TopicPartition, int] = {}
        self.last_record: dict[TopicPartition, int] = {}
        self.idle: set[TopicPartition] = set()
        self.current = MIN_WATERMARK
        self.end_offsets: dict[TopicPartition, int] = {}
        # Checkpoints: partitions being released, the newest snapshot whose offsets were committed,
        # who waits for such a commit, and a failure to raise from the read loop.
        self.releasing: set[TopicPartition] = set()
        self.committed_seq = 0
        self.closing = False
        self.ended = False  # the instance has finished; its consumer lingers for the final commit
        self.failure: BaseException | None = None
        self._commit_waiters: list[asyncio.Future[None]] = []
        # A restored or handed-over watermark not yet put out: the next batch starts with it.
        self._floor_pending = False

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        source = self.source
        if source._link is not None:
            # Committed offsets are the truth for a transactional source: read them only once the
            # sink has fenced its transactional id (a commit in progress is then finished).
            try:
                async with asyncio.timeout(_SINK_START_TIMEOUT_S):
                    await source._link.ready()
            except TimeoutError:
                raise CheckpointError(
                    f"{source.describe()}: the exactly-once KafkaSink that commits its offsets "
                    f"(offsets_of=) did not start within {_SINK_START_TIMEOUT_S} s: is it in the flow?"
                ) from None
        consumer = AIOKafkaConsumer(
            bootstrap_servers=source.bootstrap_servers,
            group_id=source.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if source.start != "latest" else "latest",
            **source.client_options,
        )
        self.consumer = consumer
        await start_client(consumer, source.bootstrap_servers)
        await self.decoder.open(source.bootstrap_servers, source.client_options)
        if source.bounded or source.group_id is None:
            partitions = await self._partitions_of(source.topics)
            mine = partitions[self.context.index :: self.context.parallelism]
            consumer.assign(mine)
            await self.assigned(set(mine))
            if source.bounded:
                self.end_offsets = await consumer.end_offsets(mine)
        elif source.pattern is not None:
            consumer.subscribe(pattern=source.pattern, listener=_Rebalance(self))
        else:
            consumer.subscribe(topics=source.topics, listener=_Rebalance(self))

    async def close(self, *, commit: bool) -> None:
        self.closing = True
        self._wake_commit_waiters()  # a release in progress gives up: the consumer is going
        consumer, self.consumer = self.consumer, None
        try:
            if consumer is not None and commit and self.run.started:
                await self._commit(consumer, set(self.positions))
        finally:
            try:
                if consumer is not None:
                    await consumer.stop()
            finally:
                await self.decoder.close()

    async def _partitions_of(self, topics: list[str]) -> list[TopicPartition]:
        assert self.consumer is not None
        found: list[TopicPartition] = []
        for topic in topics:
            partitions = await self._wait_for_partitions(topic)
            found.extend(TopicPartition(topic, p) for p in sorted(partitions))
        return found

    async def _wait_for_partitions(self, topic: str) -> set[int]:
        assert self.consumer is not None
        # aiokafka's consumer has no public call for one topic's partitions that does not wait
        # out a timeout on a missing topic: ask its client for the whole metadata instead.
        metadata = await self.consumer._client.fetch_all_metadata()
        partitions = metadata.partitions_for_topic(topic)
        if not partitions:
            raise LookupError(f"Kafka topic {topic!r} does not exist")
        return set(partitions)

    # -- rebalancing -----------------------------------------------------------------------------

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        consumer = self.consumer
        assert consumer is not None
        run = self.run
        for tp in sorted(partitions):
            floor = MIN_WATERMARK
            if tp in run.restored and tp not in run.taken:
                # The restored checkpoint decides. Taken and positioned in one step (no await
                # between): a snapshot sees the partition either pending or owned, never neither.
                run.taken[tp] = run.counts.get(self.context.index, 0)
                consumer.seek(tp, run.restored[tp])
                self.positions[tp] = run.restored[tp]
                floor = run.restored_watermarks.get(tp, MIN_WATERMARK)
            else:
                configured = tp not in run.started and self.source.start != "committed"
                if configured and not await self._committed_is_truth(consumer, tp):
                    # Seek to an explicit offset: aiokafka's own offset reset for a new assignment
                    # may still be in flight, and seek() (unlike seek_to_end) wins over it.
                    consumer.seek(tp, await self._start_offset(consumer, tp))
                position = await consumer.position(tp)
                if self.consumer is None or tp not in consumer.assignment():
                    continue  # closed or revoked meanwhile
                released = run.released.pop(tp, None)
                if released is not None and released[0] == position:
                    floor = released[1]
                self.positions[tp] = position
            run.started.add(tp)
            if self.strategy is not None:
                self.generators[tp] = self.strategy.generator()
                self.watermarks[tp] = floor
                self.last_record[tp] = self.context.clock.now()
                if floor > MIN_WATERMARK:
                    self._floor_pending = True

    async def _committed_is_truth(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> bool:
        """Whether ``tp`` starts at its committed offset whatever ``start`` says: when an
        exactly-once sink commits the offsets (the committed one is where its output ends), and
        when the job resumes from a checkpoint (its checkpoints committed it)."""
        if self.source._link is None and not self.run.resumed:
            return False
        return await consumer.committed(tp) is not None

    async def _start_offset(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> int:
        start = self.source.start
        if start == "earliest":
            return int((await consumer.beginning_offsets([tp]))[tp])
        if isinstance(start, int):
            found = (await consumer.offsets_for_times({tp: start})).get(tp)
            if found is not None:
                return int(found.offset)
        return int((await consumer.end_offsets([tp]))[tp])  # "latest", or a time after the end

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        consumer = self.consumer
        if not self.context.checkpointing:
            if consumer is not None:
                await self._commit(consumer, partitions)
        else:
            await self._release(partitions & set(self.positions))
        for tp in partitions:
            position = self.positions.pop(tp, None)
            watermark = self.watermarks.pop(tp, None)
            if position is not None and watermark is not None:
                self.run.released[tp] = (position, watermark)
            self.generators.pop(tp, None)
            self.last_record.pop(tp, None)
            self.idle.discard(tp)
        self.releasing -= partitions

    async def _release(self, partitions: set[TopicPartition]) -> None:
        """Hold revoked partitions until a checkpoint cut after the revoke has committed their
        position (no more of their records go out meanwhile), so the next owner starts there."""
        if not partitions or self.closing:
            return
        self.releasing |= partitions
        # The next snapshot holds their last positions; once the instance has ended, its final
        # snapshot (taken before the end) does.
        needed = self.run.counts.get(self.context.index, 0) + (0 if self.ended else 1)
        timeout = self.source.release_timeout_ms / 1000
        try:
            async with asyncio.timeout(timeout):
                await self._committed_through(needed)
                if self.source._link is not None:
                    await self._visible({tp: self.positions[tp] for tp in partitions})
        except TimeoutError:
            if not self.closing:
                self.failure = CheckpointError(
                    f"{self.context.label}: partitions {sorted(map(_key, partitions))} were revoked "
                    f"but no checkpoint committed their position within {timeout:g} s; restarting "
                    "from the last checkpoint (take checkpoints periodically: interval_ms=...)"
                )

    async def _committed_through(self, needed: int) -> None:
        loop = asyncio.get_running_loop()
        while self.committed_seq < needed and not self.closing:
            waiter = loop.create_future()
            self._commit_waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._commit_waiters:
                    self._commit_waiters.remove(waiter)

    async def _visible(self, offsets: dict[TopicPartition, int]) -> None:
        """Until the group shows ``offsets``: a transaction's offsets become visible a moment after
        its commit returns (the broker writes the commit markers then)."""
        consumer = self.consumer
        while consumer is not None and not self.closing:
            shown = {tp: await consumer.committed(tp) for tp in offsets}
            if shown == offsets:
                return
            await asyncio.sleep(0.02)

    def mark_committed(self, seq: int) -> None:
        """This instance's snapshot ``seq`` (and those before it) had its offsets committed."""
        if seq > self.committed_seq:
            self.committed_seq = seq
            self._wake_commit_waiters()

    def _wake_commit_waiters(self) -> None:
        for waiter in self._commit_waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def commit_state(self, state: Mapping[str, Any]) -> None:
        """Commit a completed checkpoint's offsets of the partitions this consumer still has."""
        consumer = self.consumer
        if consumer is None or self.closing:
            return
        assignment = consumer.assignment()
        offsets = {
            tp: offset
            for (topic, partition), offset in state["offsets"].items()
            if (tp := TopicPartition(topic, partition)) in assignment
        }
        if offsets:
            try:
                await consumer.commit(offsets)
            except (CommitFailedError, IllegalStateError) as error:
                # The group moved on (a rebalance completed meanwhile): these partitions are
                # someone else's now, and a later checkpoint commits what is still ours.
                log.info("%s: commit of checkpointed offsets skipped: %s", self.context.label, error)
                return
        self.mark_committed(int(state["seq"]))

    async def _commit(self, consumer: AIOKafkaConsumer, partitions: set[TopicPartition]) -> None:
        if self.source.group_id is None:
            return
        offsets = {tp: self.positions[tp] for tp in partitions if tp in self.positions}
        if offsets:
            await consumer.commit(offsets)

    # -- reading ---------------------------------------------------------------------------------

    async def batches(self) -> AsyncIterator[list[Any] | Batch]:
        consumer = self.consumer
        assert consumer is not None
        stopping = self.source._stopping
        limit = self.source.max_records or self.context.batch_size
        # getmany() waits out a rebalance whatever its timeout. With checkpoints a stop must not
        # wait for the rebalance, which may itself wait for this job's last checkpoint (see
        # _release): the poll races the stop then (a task per poll, so only then).
        stopped = asyncio.ensure_future(stopping.wait()) if self.context.checkpointing else None
        timeout_ms = self.source.poll_timeout_ms
        try:
            while not stopping.is_set():
                if self.failure is not None:
                    raise self.failure
                if self.source.bounded and self._at_end():
                    return
                if stopped is None:
                    fetched = await consumer.getmany(timeout_ms=timeout_ms, max_records=limit)
                else:
                    fetched = await self._poll(consumer, limit, stopped)
                # No await between _decode's bookkeeping and the yield: a snapshot (cut between
                # two batches) sees exactly the positions of the records that went out.
                # Decoding builds a container per record while the fetched records are alive:
                # collections meanwhile would go through all of them, for no garbage. So the
                # collector waits until the records are gone (dropped here, not after the next
                # poll); it runs as usual during the flow's work and the poll. (_decode awaits
                # only to publish a dead letter.)
                with paused_gc():
                    batch = await self._decode(fetched)
                    del fetched
                if self.failure is not None:
                    raise self.failure
                if batch is not None:
                    yield batch
                # getmany() returns prefetched records without suspending: let other tasks run.
                await asyncio.sleep(0)
        finally:
            if stopped is not None:
                stopped.cancel()

    async def _poll(
        self, consumer: AIOKafkaConsumer, limit: int, stopped: asyncio.Future[Any]
    ) -> Mapping[TopicPartition, list[ConsumerRecord[Any, Any]]]:
        """The next records, or none once the source is stopped."""
        fetched: Mapping[TopicPartition, list[ConsumerRecord[Any, Any]]] | None = await unless_stopped(
            consumer.getmany(timeout_ms=self.source.poll_timeout_ms, max_records=limit), stopped
        )
        return {} if fetched is None else fetched

    def _at_end(self) -> bool:
        return all(self.positions.get(tp, 0) >= end for tp, end in self.end_offsets.items())

    async def _decode(
        self, fetched: Mapping[TopicPartition, list[ConsumerRecord[Any, Any]]]
    ) -> Batch | None:
        # First decode (dead letters may be published: this awaits), then, without awaiting, move
        # positions and watermarks: they only ever describe records handed to the flow.
        decoded_parts = []
        for tp, records in fetched.items():
            if records:
                decoded, kept, times = await self.decoder.decode(records)
                decoded_parts.append((tp, records[-1].offset + 1, decoded, kept, times))
        values: list[Any] = []
        stamps: list[Any] = []
        marks: list[tuple[int, int]] = []
        strategy = self.strategy
        now = self.context.clock.now()
        if self._floor_pending:
            self._floor_pending = False
            self._advance(0, marks)
        for tp, next_offset, decoded, kept, times in decoded_parts:
            if tp not in self.positions or tp in self.releasing:
                # Revoked while these were fetched or decoded: the position committed for it
                # excludes them, so the partition's next owner reads them instead.
                continue
            self.positions[tp] = next_offset
            self.source.records_read += len(decoded)
            if strategy is None:
                values += decoded
                continue
            timestamps = [record.timestamp for record in kept] if times is None else times
            base = len(values)
            values += decoded
            stamps += timestamps
            self.last_record[tp] = now
            self.idle.discard(tp)
            floor = self.watermarks[tp]
            for position, watermark in self.generators[tp].on_batch(timestamps):
                if watermark > floor:  # a restored watermark is never undercut
                    self.watermarks[tp] = floor = watermark
                    self._advance(base + position, marks)
        if strategy is not None and strategy.idle_timeout_ms is not None:
            timeout = strategy.idle_timeout_ms
            went_idle = {
                tp for tp, seen in self.last_record.items() if tp not in self.idle and now - seen >= timeout
            }
            if went_idle:
                self.idle |= went_idle
                self._advance(len(values), marks)
        if strategy is None:
            return Batch(values) if values else None
        if not values and not marks:
            return None
        return Batch(values, stamps, marks or None)

    def _advance(self, position: int, marks: list[tuple[int, int]]) -> None:
        active = [w for tp, w in self.watermarks.items() if tp not in self.idle]
        if not active:
            return
        merged = min(active)
        if merged > self.current:
            self.current = merged
            if marks and marks[-1][0] == position:
                marks[-1] = (position, merged)
            else:
                marks.append((position, merged))
