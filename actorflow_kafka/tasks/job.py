"""A flow run as partition tasks: one worker process's share of a job that many workers form.

``KafkaSource(..., tasks=True)`` makes ``flow.run()`` run here. The worker joins the source's
consumer group; Kafka's group protocol gives it some of the input topic's partitions, and for each
one it runs a :class:`~actorflow_kafka.tasks.task.PartitionTask`. One consumer fetches for all of
them and hands each partition's decoded records to its task. Every worker running the same flow
with the same group (in this process, in other processes, on other machines) takes part: no
cluster of actorflow's own, Kafka assigns the partitions and holds the state.

Rebalances follow the group protocol's eager form, as aiokafka's consumer speaks it: before the
group re-forms, every task commits (a checkpoint: its results, state changes and input offset in
one transaction) and is *suspended*; once the new assignment is known, the tasks whose partition
came back resume where they were (no restore), the others close, and new partitions start by
restoring their state from the changelogs. A worker that dies is fenced by the next owner of each
of its partitions, whose open transactions are then aborted: nothing it did after its last commit
is visible, and its partitions go on from that commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.errors import TopicAlreadyExistsError

from actorflow.errors import PlanError
from actorflow.runtime.metrics import JobMetrics
from actorflow_kafka.admin import ADMIN_OPTIONS
from actorflow_kafka.connection import start_client
from actorflow_kafka.decoding import RecordDecoder
from actorflow_kafka.polling import unless_stopped
from actorflow_kafka.tasks import repartition
from actorflow_kafka.tasks.stages import Stage, cut_stages
from actorflow_kafka.tasks.task import PartitionTask

__all__ = ["TaskJob"]

log = logging.getLogger(__name__)

#: How long the group waits for a member to finish its part of a rebalance (commits, restores).
_REBALANCE_TIMEOUT_MS = 120_000
#: How long a new changelog topic may take to get a leader for every partition.
_TOPIC_READY_S = 30
#: How often at most the consumed records of a repartition topic's partition are deleted.
_PURGE_INTERVAL_S = 10.0


class TaskJob:
    """Runs ``flow`` as the partition tasks of this worker until ``source.stop()``.

    Built by :meth:`KafkaSource.task_runner`; ``flow.run()`` calls :meth:`run`.
    """

    def __init__(self, source: Any, flow: Any) -> None:
        if source.group_id is None:
            raise PlanError("a flow run as partition tasks needs the KafkaSource's group_id")
        if source.pattern is not None or len(source.topics) != 1:
            raise PlanError("a flow run as partition tasks reads one named topic (not a pattern)")
        stages = cut_stages(flow.graph, source, source.group_id)
        for stage in stages:
            for name, side in stage.side_inputs.items():
                if not callable(getattr(side, "task_copy", None)):
                    raise PlanError(
                        f"source {name!r}: a flow run as partition tasks reads one partitioned "
                        "Kafka topic, and beside it only Kafka topics every task reads whole (a "
                        "KafkaSource without group_id: rules as broadcast state, for instance)"
                    )
                side.task_copy()  # raises now, naming the source, if it cannot be a side input
        self.source = source
        self.flow = flow
        #: The stages by the topic their tasks read: the input topic's first, then repartitions.
        self.stages: dict[str, Stage] = {stage.topic: stage for stage in stages}
        self.topic: str = source.topics[0]
        self.group_id: str = source.group_id
        self.bootstrap_servers: str = source.bootstrap_servers
        self.client_options: dict[str, Any] = dict(source.client_options)
        shared = {k: v for k, v in self.client_options.items() if k in ADMIN_OPTIONS}
        self.producer_options: dict[str, Any] = {"acks": "all", **shared, **source.producer_options}
        self.clock = flow.clock
        self.batch_size: int = source.max_records or flow.batch_size
        self.mailbox_capacity: int = flow.mailbox_capacity
        self.max_parallelism: int = flow.max_parallelism
        self.commit_interval_ms: int = source.commit_interval_ms
        self.commit_timeout_ms = 60_000
        self.feed_capacity = 4
        self.replication_factor: int = source.replication_factor
        #: The tasks of the partitions this worker owns, and those suspended during a rebalance.
        self.tasks: dict[TopicPartition, PartitionTask] = {}
        self._suspended: dict[TopicPartition, PartitionTask] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        #: Partitions of the input topic, and so of every changelog and repartition topic.
        self.partitions = 0
        self._known_topics: set[str] = set()
        self._creating: dict[str, asyncio.Future[None]] = {}
        #: Set once the worker stops: rebalances start no task any more.
        self._closed = False
        #: Counts the rebalance callbacks' starts and ends: records fetched across one are stale.
        self._generation = 0
        #: Records handed to tasks, when the first one was (the flow clock's ms), and when a task
        #: last committed records it had read: the worker's throughput, for benchmarks.
        self.records_read = 0
        self.first_record_ms: int | None = None
        self.last_commit_ms: int | None = None
        self._failure: BaseException | None = None
        #: When each repartition partition was last purged, and the purges under way.
        self._purged: dict[TopicPartition, float] = {}
        self._purges: set[asyncio.Future[None]] = set()
        self.watermarks = flow_watermarks(stages[0].plan, stages[0].source_name)

    def show_tasks(self) -> None:
        """Make the flow's metrics (dashboard, ``/metrics``) show the tasks running now: each
        operator as one instance per partition of its stage, those of this worker."""
        metrics = JobMetrics()
        for tp in sorted(self.tasks, key=lambda tp: (tp.topic != self.topic, tp)):
            metrics.extend(self.tasks[tp].metrics)
        self.flow.metrics = metrics

    # -- topics --------------------------------------------------------------------------------

    async def existing_topics(self) -> set[str]:
        """Every topic the cluster has now."""
        assert self._consumer is not None
        metadata = await self._consumer._client.fetch_all_metadata()
        topics = set(metadata.topics())
        self._known_topics |= topics
        return topics

    async def ensure_changelog(self, topic: str) -> None:
        """Create changelog ``topic`` unless it exists (see :meth:`ensure_topic`)."""
        await self.ensure_topic(topic, compacted=True)

    async def ensure_topic(self, topic: str, *, compacted: bool) -> None:
        """Create ``topic`` (a partition per input partition) unless it exists, and wait until
        every partition has a leader (the tasks of this worker share one creation)."""
        if topic in self._known_topics:
            return
        creating = self._creating.get(topic)
        if creating is None:
            creating = self._creating[topic] = asyncio.ensure_future(self._create(topic, compacted))
        try:
            await asyncio.shield(creating)
        finally:
            if creating.done():
                self._creating.pop(topic, None)
        self._known_topics.add(topic)

    async def _create(self, topic: str, compacted: bool) -> None:
        admin = self._admin
        assert admin is not None
        # A repartition topic keeps its records until the next stage has consumed them (they are
        # deleted then, see purge): a stopped job finds its records there however long it stood.
        config = {"cleanup.policy": "compact"} if compacted else {"retention.ms": "-1"}
        with contextlib.suppress(TopicAlreadyExistsError):  # another worker made it
            await admin.create_topics(
                [NewTopic(topic, self.partitions, self.replication_factor, topic_configs=config)]
            )
        # Producing before the partitions have leaders only earns retries: wait for them.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _TOPIC_READY_S
        while True:
            found = (await admin.describe_topics([topic]) or [{}])[0]
            led = [p for p in found.get("partitions", ()) if p.get("leader", -1) >= 0]
            if found.get("error_code", 0) == 0 and len(led) >= self.partitions:
                return
            if loop.time() >= deadline:
                raise TimeoutError(f"changelog topic {topic!r} has no leader after {_TOPIC_READY_S} s")
            await asyncio.sleep(0.05)

    def purge(self, tp: TopicPartition, offset: int) -> None:
        """The records of repartition partition ``tp`` before ``offset`` are consumed for good (the
        group committed ``offset``): delete them, at most every ``_PURGE_INTERVAL_S`` per partition,
        in the background, as Kafka Streams purges its repartition topics."""
        now = asyncio.get_running_loop().time()
        if self._admin is None or now < self._purged.get(tp, -_PURGE_INTERVAL_S) + _PURGE_INTERVAL_S:
            return
        self._purged[tp] = now
        purge = asyncio.ensure_future(self._purge(self._admin, tp, offset))
        self._purges.add(purge)
        purge.add_done_callback(self._purges.discard)

    async def _purge(self, admin: AIOKafkaAdminClient, tp: TopicPartition, offset: int) -> None:
        try:
            await admin.delete_records({tp: RecordsToDelete(offset)}, timeout_ms=10_000)
        except Exception as error:  # the next commit tries again; the records are merely kept
            log.debug("deleting %s-%d before %d failed: %r", tp.topic, tp.partition, offset, error)

    # -- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        source = self.source
        # A rebalance waits for every task to commit (revoked) and to restore its state (assigned):
        # give the group's members time for that, not just a session's worth (aiokafka's default).
        options = {"rebalance_timeout_ms": _REBALANCE_TIMEOUT_MS, **self.client_options}
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.group_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            **options,
        )
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap_servers,
            **{k: v for k, v in self.client_options.items() if k in ADMIN_OPTIONS},
        )
        decoder = RecordDecoder(
            value=source._value,
            key=source._key,
            with_metadata=source.with_metadata,
            strategy=self.watermarks,
            dead_letters=source.dead_letters,
            on_dead_letter=source._count_dead_letter,
        )
        self._consumer = consumer
        self._admin = admin
        graceful = False
        await start_client(consumer, self.bootstrap_servers)
        try:
            await start_client(admin, self.bootstrap_servers)
            await decoder.open(self.bootstrap_servers, self.client_options)
            metadata = await consumer._client.fetch_all_metadata()
            partitions = metadata.partitions_for_topic(self.topic)
            if not partitions:
                raise LookupError(f"Kafka topic {self.topic!r} does not exist")
            self.partitions = len(partitions)
            for topic in self.stages:
                if topic != self.topic:
                    await self.ensure_topic(topic, compacted=False)
            consumer.subscribe(topics=list(self.stages), listener=_Listener(self))
            await self._poll_loop(consumer, decoder)
            graceful = True
        finally:
            # From here on a rebalance starts no task (the group may still assign some to this
            # worker until it has left): what is running commits (if graceful) and closes.
            self._closed = True
            try:
                await self._close_all(commit=graceful)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()
                await self._close_all(commit=False)  # suspended by a rebalance meanwhile
                for purge in list(self._purges):
                    purge.cancel()
                with contextlib.suppress(Exception):
                    await admin.close()
                await decoder.close()
                self._consumer = self._admin = None

    async def _poll_loop(self, consumer: AIOKafkaConsumer, decoder: RecordDecoder) -> None:
        stopping = self.source._stopping
        stopped = asyncio.ensure_future(stopping.wait())
        try:
            while not stopping.is_set():
                self._raise_failure()
                polled = await unless_stopped(self._fetch(consumer), stopped)
                if polled is None:
                    break
                fetched, generation = polled
                if generation != self._generation:
                    # A rebalance ran between the fetch and now: it positioned every partition it
                    # kept or gave (a seek), so what was fetched before is fetched again.
                    continue
                # Each batch goes to the task that owned its partition when it was fetched (a
                # rebalance may suspend and resume the task while the batch is being handed over:
                # a resumed task fetches on after it; a closed one drops it, and the partition's
                # next owner reads it again from the last commit).
                batches = []
                for tp, records in fetched.items():
                    task = self.tasks.get(tp)
                    if task is not None and records:
                        task.fetched = records[-1].offset + 1
                        batches.append((task, records))
                if batches and self.first_record_ms is None:
                    self.first_record_ms = self.clock.now()
                for task, records in batches:
                    if task.stage.repartitioned:
                        await task.put(*repartition.decode(records), records[-1].offset + 1)
                        continue
                    self.records_read += len(records)
                    values, kept, times = await decoder.decode(records)
                    self.source.records_read += len(values)  # the daemon's progress reads it
                    if times is None and decoder.kafka_time:
                        times = [record.timestamp for record in kept]
                    await task.put(values, times, None, records[-1].offset + 1)
                # getmany() returns prefetched records without suspending: let the tasks run.
                await asyncio.sleep(0)
            self._raise_failure()
        finally:
            stopped.cancel()

    async def _fetch(self, consumer: AIOKafkaConsumer) -> tuple[dict[TopicPartition, list[Any]], int]:
        """The next records, and the rebalance generation they were fetched in (read as getmany
        returns, before anything else runs)."""
        fetched = await consumer.getmany(
            timeout_ms=self.source.poll_timeout_ms, max_records=self.batch_size
        )
        return fetched, self._generation

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure
        for task in self.tasks.values():
            failure = task.failure()
            if failure is not None:
                raise failure

    async def _close_all(self, *, commit: bool) -> None:
        tasks = [*self.tasks.values(), *self._suspended.values()]
        self.tasks = {}
        self._suspended = {}
        outcomes = await asyncio.gather(*(t.close(commit=commit) for t in tasks), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                log.warning("closing a task failed: %r", outcome)

    # -- rebalances ------------------------------------------------------------------------------

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        """Before the group re-forms: every task of ``partitions`` commits and waits."""
        self._generation += 1
        tasks = {tp: self.tasks.pop(tp) for tp in partitions if tp in self.tasks}
        log.debug("%s: revoked %s", self.group_id, _names(tasks))
        outcomes = await asyncio.gather(
            *(task.suspend() for task in tasks.values()), return_exceptions=True
        )
        for (tp, task), outcome in zip(tasks.items(), outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.warning("%s: could not commit before the rebalance: %r", task.label, outcome)
                await task.close(commit=False)
                continue
            self._suspended[tp] = task

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        """The group's new assignment: resume, close and start tasks accordingly. Records fetched
        until this returns are not handed to tasks (see ``_poll_loop``): positions are set here."""
        consumer = self._consumer
        assert consumer is not None
        self._generation += 1
        try:
            await self._assign(consumer, partitions)
        finally:
            self._generation += 1

    async def _assign(self, consumer: AIOKafkaConsumer, partitions: set[TopicPartition]) -> None:
        log.debug("%s: assigned %s", self.group_id, _names(partitions))
        if self._closed:  # stopping: the partitions go to the group's other members
            partitions = set()
        gone = [self._suspended.pop(tp) for tp in list(self._suspended) if tp not in partitions]
        await asyncio.gather(*(task.close(commit=False) for task in gone))
        for tp in partitions:
            task = self._suspended.pop(tp, None)
            if task is not None:
                consumer.seek(tp, task.resume())
                self.tasks[tp] = task
        new = [
            PartitionTask(self, self.stages[tp.topic], tp)
            for tp in sorted(partitions)
            if tp not in self.tasks
        ]
        outcomes = await asyncio.gather(
            *(task.start(self._start_offset) for task in new), return_exceptions=True
        )
        for task, outcome in zip(new, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                self._failure = outcome
                continue
            consumer.seek(task.tp, outcome)
            self.tasks[task.tp] = task
        self.show_tasks()
        if new:
            log.info(
                "%s: tasks %s",
                self.group_id,
                ", ".join(f"{tp.topic}-{tp.partition}" for tp in sorted(self.tasks)),
            )

    async def _start_offset(self, tp: TopicPartition) -> int:
        consumer = self._consumer
        assert consumer is not None
        committed = await consumer.committed(tp)
        if committed is not None:
            return int(committed)
        start = self.source.start
        if isinstance(start, int):
            found = (await consumer.offsets_for_times({tp: start})).get(tp)
            if found is not None:
                return int(found.offset)
            start = "latest"
        if start == "latest":
            return int((await consumer.end_offsets([tp]))[tp])
        return int((await consumer.beginning_offsets([tp]))[tp])


def _names(partitions: Iterable[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}-{tp.partition}" for tp in sorted(partitions)) or "nothing"


def flow_watermarks(plan: Any, source_name: str) -> Any:
    """The watermark strategy the flow gave its Kafka source."""
    for chain in plan.chains:
        if chain.head.name == source_name:
            return chain.head.watermarks
    return None


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, job: TaskJob) -> None:
        self._job = job

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        try:
            await self._job.revoked(set(revoked))
        except Exception as error:  # aiokafka would only log it: the poll loop raises it
            self._job._failure = error

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        try:
            await self._job.assigned(set(assigned))
        except Exception as error:
            self._job._failure = error
