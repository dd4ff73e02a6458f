"""KafkaSink: records to a Kafka topic (fixed, or chosen per record), at least once or exactly once.

The sink gathers records into a batch per partition itself and hands each batch to aiokafka's
producer whole (:mod:`actorflow_kafka.batches`: the producer's partitioner, ``linger_ms``,
``max_batch_size`` and ``max_request_size`` apply as with ``send()``, without a future per record).
The sink does not wait for the broker's acknowledgements batch by batch,
which would stall the whole chain for a linger and a round trip each time: it keeps the pending
acknowledgements, fails the job on the first one that fails, waits for all of them once
``max_in_flight`` records are pending, and always before the end of its input, at every checkpoint's
barrier (and on :meth:`KafkaSink.flush`). So every record the sink accepted is stored before the
flow ends normally or a checkpoint completes, or the job fails with the reason.

``exactly_once=True`` writes through a Kafka transaction per checkpoint interval and commits it,
together with the offsets of the :class:`~actorflow_kafka.KafkaSource` given as ``offsets_of``, when
the checkpoint completes: ``read_committed`` readers see every result once, however often the job
fails and restarts. The protocol, step by step:

1. The sink opens with a transactional producer (``transactional_id``): starting it fences every
   older producer with that id and aborts the transaction a crashed run left open. Then it begins
   a transaction, and the records of the checkpoint interval go into it.
2. At barrier ``n`` it flushes (every record acknowledged) and notes the source's snapshot of
   barrier ``n``. The chain acknowledges the checkpoint and calls ``barrier_acknowledged(n)``, where
   the sink waits, reading nothing (its mailboxes fill up and hold the flow back), for the outcome.
3. Checkpoint ``n`` completes (its manifest is written): the sink adds the source's offsets of
   ``n`` to the transaction (``send_offsets_to_transaction``, each offset with a digest of the
   snapshot as metadata), commits, and begins the next transaction. Checkpoint ``n`` aborted: the
   transaction stays open, and its records commit with the next checkpoint.
4. On restart the source accepts only the checkpoint whose offsets and digest Kafka committed, so a
   crash after a manifest and before its commit restores the checkpoint before, whose transaction
   is the one Kafka has; the later transaction was aborted and its records are written again.
5. At the end of the input the final checkpoint commits the last transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, ProducerFenced, TopicAlreadyExistsError

from actorflow import Sink
from actorflow.errors import CheckpointError
from actorflow.operators.base import OperatorContext
from actorflow.time.watermarks import field_getter
from actorflow_kafka.admin import ADMIN_OPTIONS
from actorflow_kafka.batches import PartitionBatches
from actorflow_kafka.connection import start_client
from actorflow_kafka.serde import Serializer, resolve_serializer
from actorflow_kafka.source import KafkaSource
from actorflow_kafka.tasks.transaction import TaskTransaction, current_transaction
from actorflow_kafka.transactions import TransactionLink, commit_metadata, owned_offsets

__all__ = ["KafkaSink"]

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]


class KafkaSink(Sink):
    """Writes every record to Kafka.

    ``topic`` is a topic name or a function of the record. ``key`` (a function or a field name)
    picks the record's key, which decides its partition (Kafka's default murmur2 partitioner, the
    same as Java clients use); ``value`` picks what is written (default: the whole record).
    ``headers`` is a function of the record returning ``[(name, bytes), ...]``.
    Options go to aiokafka untouched, as everywhere in actorflow_kafka: ``client_options`` to
    every client the sink makes (the connection: SASL/SSL settings, client_id, ...; the same
    keyword as the source's), ``producer_options`` to its producer only, on top (linger_ms,
    max_batch_size, compression_type, acks, max_request_size, enable_idempotence,
    transaction_timeout_ms, ...). Connection settings given in ``producer_options``, as before
    ``client_options`` existed, still work.

    A missing topic fails the job when the sink opens (or when a record first names it), unless
    ``create_topics=True``, which creates it with ``partitions`` partitions.

    ``exactly_once=True`` (the job must take checkpoints) writes each checkpoint interval's records
    in a Kafka transaction and commits it with the offsets of ``offsets_of`` (a KafkaSource with a
    ``group_id``) when the checkpoint completes; see the module docstring. ``transactional_id`` must
    stay the same across restarts of the job and be used by no other running job (give each worker
    process of a scaled-out job its own). Such a sink has one instance: one transaction per
    checkpoint is what makes results and offsets commit atomically.

    >>> sink = KafkaSink("alerts", bootstrap_servers="127.0.0.1:9092", key="card_id")
    >>> sink.name
    'kafka:alerts'
    >>> source = KafkaSource("payments", bootstrap_servers="127.0.0.1:9092", group_id="fraud")
    >>> exact = KafkaSink("alerts", bootstrap_servers="127.0.0.1:9092", exactly_once=True,
    ...                   transactional_id="fraud-alerts-0", offsets_of=source)
    >>> exact.max_parallelism
    1
    """

    is_async = True

    def __init__(
        self,
        topic: str | Callable[[Any], str],
        *,
        bootstrap_servers: str,
        key: Callable[[Any], Any] | str | None = None,
        value: Callable[[Any], Any] | str | None = None,
        headers: Callable[[Any], Headers] | None = None,
        key_serializer: str | Serializer = "str",
        value_serializer: str | Serializer = "json",
        create_topics: bool = False,
        partitions: int = 1,
        replication_factor: int = 1,
        client_options: Mapping[str, Any] | None = None,
        producer_options: Mapping[str, Any] | None = None,
        max_in_flight: int = 100_000,
        exactly_once: bool = False,
        transactional_id: str | None = None,
        offsets_of: KafkaSource | None = None,
    ) -> None:
        super().__init__(f"kafka:{topic}" if isinstance(topic, str) else "kafka")
        self.max_in_flight = max_in_flight
        self.topic = topic
        self.bootstrap_servers = bootstrap_servers
        self._key = field_getter(key) if key is not None else None
        self._value = field_getter(value) if value is not None else None
        self._headers = headers
        self._key_serializer = resolve_serializer(key_serializer)
        self._value_serializer = resolve_serializer(value_serializer)
        self.create_topics = create_topics
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.client_options = dict(client_options or {})
        #: What the producer gets: the client's options, then the producer's own.
        self.producer_options = {**self.client_options, **(producer_options or {})}
        self.exactly_once = exactly_once
        self.transactional_id = transactional_id
        self.offsets_of = offsets_of
        self._link: TransactionLink | None = None
        if exactly_once:
            if not transactional_id:
                raise ValueError(
                    "exactly_once needs a transactional_id: the same across restarts of the job, "
                    "used by no other running job"
                )
            if offsets_of is None:
                raise ValueError(
                    "exactly_once needs offsets_of=, the KafkaSource whose offsets commit with the "
                    "results: on restart they tell which checkpoint's transaction Kafka has"
                )
            # One transaction per checkpoint: results and source offsets commit atomically.
            self.max_parallelism = 1
            self._link = TransactionLink(transactional_id, bootstrap_servers, self._producer_settings())
            offsets_of._attach(self._link)
        elif transactional_id is not None or offsets_of is not None:
            raise ValueError("transactional_id and offsets_of go with exactly_once=True")
        self._producer: AIOKafkaProducer | None = None
        #: Per instance and run: the batches being filled and the ones handed over (set in open_async).
        self._batches: PartitionBatches | None = None
        self._known_topics: set[str] = set()
        # Shared by the per-instance copies the flow makes (shallow copies share these objects).
        self._written = [0]
        self._committed = [0]
        self._instances: list[KafkaSink] = []
        # Per instance and run (set in open_async): the exactly-once bookkeeping.
        self._finished = False
        self._barriers = 0
        self._captured: dict[int, dict[str, Any]] = {}
        self._outcomes: dict[int, asyncio.Future[bool]] = {}
        self._commits: dict[int, asyncio.Future[None]] = {}
        #: Inside a partition task: the task's transaction, which this instance writes into.
        self._task: TaskTransaction | None = None

    def copy(self) -> KafkaSink:
        instance = copy.copy(self)
        self._instances.append(instance)
        return instance

    @property
    def records_written(self) -> int:
        """Records the broker acknowledged, over every instance of this sink."""
        return self._written[0]

    @property
    def transactions_committed(self) -> int:
        """Transactions committed (``exactly_once``), over every run of this sink."""
        return self._committed[0]

    def _producer_settings(self) -> dict[str, Any]:
        if not self.exactly_once:
            return dict(self.producer_options)
        # A transactional producer is idempotent, which needs every replica's acknowledgement.
        return {"acks": "all", **self.producer_options}

    async def open_async(self, context: OperatorContext) -> None:
        self.open(context)
        self._known_topics = set()
        self._batches = None  # this instance's own (copies share what __init__ made)
        self._finished = False
        self._barriers = 0
        self._captured = {}
        self._outcomes = {}
        self._commits = {}
        self._task = current_transaction()
        if self._task is not None:
            # A partition task: write into its transaction, which it commits with its state
            # changes and offsets (see actorflow_kafka.tasks.transaction).
            self._producer = self._task.producer
            self._batches = PartitionBatches(self._producer, self._task.producer_options)
            if isinstance(self.topic, str):
                await self._ensure_topic(self.topic)
            return
        if self.exactly_once:
            if not context.checkpointing:
                raise CheckpointError(
                    "KafkaSink(exactly_once=True) commits on checkpoints: call flow.enable_checkpointing()"
                )
            await self._stop_leftovers()
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap_servers,
                transactional_id=self.transactional_id,
                **self._producer_settings(),
            )
        else:
            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, **self.producer_options)
        # With a transactional id, starting fences every older producer with that id: a transaction
        # a crashed run left open is aborted, one it was committing is finished first.
        await start_client(producer, self.bootstrap_servers)
        self._producer = producer
        self._batches = PartitionBatches(producer, self._producer_settings())
        try:
            if isinstance(self.topic, str):
                await self._ensure_topic(self.topic)
            if self._link is not None:
                await producer.begin_transaction()
                self._link.set_ready()
        except BaseException:
            self._producer = None
            await producer.stop()
            raise

    async def _stop_leftovers(self) -> None:
        """Stop a producer an earlier run kept for its final commit, if that never came (the job
        failed after this sink had finished): the producer started next fences it anyway."""
        for instance in self._instances:
            producer = instance._producer
            if instance is not self and producer is not None:
                instance._producer = None
                with contextlib.suppress(KafkaError):
                    await producer.stop()
        if self.offsets_of is not None:
            await self.offsets_of._close_lingering()

    async def _ensure_topic(self, topic: str) -> None:
        if topic in self._known_topics:
            return
        producer = self._producer
        assert producer is not None
        metadata = await producer.client.fetch_all_metadata()
        if topic not in metadata.topics():
            if not self.create_topics:
                raise LookupError(
                    f"Kafka topic {topic!r} does not exist: create it first, "
                    "or give the sink create_topics=True"
                )
            await self._create(topic)
        self._known_topics.add(topic)

    async def _create(self, topic: str) -> None:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap_servers,
            **{k: v for k, v in self.producer_options.items() if k in ADMIN_OPTIONS},
        )
        await start_client(admin, self.bootstrap_servers)
        try:
            await admin.create_topics([NewTopic(topic, self.partitions, self.replication_factor)])
        except TopicAlreadyExistsError:
            pass  # created by another instance meanwhile
        finally:
            await admin.close()

    async def write_async(self, values: list[Any]) -> None:
        batches = self._batches
        assert batches is not None
        topic_of = self.topic
        key_of = self._key
        value_of = self._value
        headers_of = self._headers
        serialize_key = self._key_serializer
        serialize_value = self._value_serializer
        append = batches.append
        # The partitions of each topic are read once per call (send() reads them per record).
        ready: set[str] = set()
        if isinstance(topic_of, str):
            await self._ready_to_write(topic_of, ready)
        for record in values:
            topic = topic_of if isinstance(topic_of, str) else topic_of(record)
            if topic not in ready:
                await self._ready_to_write(topic, ready)
            key = serialize_key(key_of(record)) if key_of is not None else None
            value = serialize_value(value_of(record) if value_of is not None else record)
            headers = headers_of(record) if headers_of is not None else None
            try:
                full = append(topic, key, value, headers)
                if full is not None:
                    await batches.hand_over(full)
                    batches.append_to(full, key, value, headers)
            except MessageSizeTooLargeError as error:
                raise _too_large(len(value or b"") + len(key or b""), topic, error) from error
        if self._task is not None:
            self._task.written += len(values)
        await batches.hand_over_due()
        sent = batches.sent
        if batches.in_flight >= self.max_in_flight:
            await self.flush()
        elif sent and sent[0].future.done():
            self._collect_done()

    async def _ready_to_write(self, topic: str, ready: set[str]) -> None:
        if topic not in self._known_topics:
            await self._ensure_topic(topic)
        assert self._batches is not None
        await self._batches.refresh(topic)
        ready.add(topic)

    def _collect_done(self) -> None:
        # Forget the acknowledged batches (in order), failing on the first failed one.
        assert self._batches is not None
        sent = self._batches.sent
        done = records = 0
        for batch in sent:
            if not batch.future.done():
                break
            _check(batch.future, batch.topic, batch.largest, self.transactional_id)
            done += 1
            records += batch.records
        del sent[:done]
        self._written[0] += records

    async def flush(self) -> None:
        """Wait until every record handed to the producer has been acknowledged.

        On the sink object given to ``DataStream.sink`` this flushes every running instance.
        """
        if self._producer is None:
            for instance in self._instances:
                if instance._producer is not None:
                    await instance.flush()
            return
        batches = self._batches
        assert batches is not None
        await batches.hand_over_all()
        sent, batches.sent = batches.sent, []
        await self._producer.flush()
        if sent:
            await asyncio.wait([batch.future for batch in sent])
        for batch in sent:
            _check(batch.future, batch.topic, batch.largest, self.transactional_id)
        self._written[0] += sum(batch.records for batch in sent)

    async def finish_async(self) -> None:
        await self.flush()
        self._finished = True

    # -- checkpoints ---------------------------------------------------------------------------

    async def snapshot_state_async(self) -> None:
        """At a barrier (and at the end): every record accepted so far is acknowledged. Exactly
        once: note the source's snapshot of the same barrier, whose offsets this transaction
        commits. The sink counts barriers; every source instance put every barrier out, in order,
        with one snapshot each, and its final snapshot after the last one."""
        if self._producer is not None:
            await self.flush()
        if self.exactly_once and self._task is None:
            assert self.offsets_of is not None
            if not self._finished:
                self._barriers += 1
                self._captured = self.offsets_of._states_at(self._barriers)
            else:
                self._captured = self.offsets_of._states_at(self._barriers + 1)
        return None

    async def barrier_acknowledged(self, checkpoint_id: int) -> None:
        """Exactly once: wait for the checkpoint's outcome; once it is complete, commit (the actor
        reads nothing meanwhile, so nothing after the barrier gets into this transaction). In a
        partition task, wait for the task's commit (or abort) of the checkpoint."""
        if self._task is not None:
            await self._task.outcome(checkpoint_id)
            return
        if not self.exactly_once:
            return
        outcome = _future(self._outcomes, checkpoint_id)
        try:
            completed = await outcome
        finally:
            for older in [n for n in self._outcomes if n <= checkpoint_id]:
                del self._outcomes[older]
        if not completed:
            return
        done = _future(self._commits, checkpoint_id)
        try:
            await self._commit(final=False)
        except Exception as error:
            if not done.done():
                done.set_exception(error)
                done.exception()  # retrieved here: the job fails with it through this actor
            raise
        finally:
            if not done.done():
                done.set_result(None)  # committed, or the job is being cancelled meanwhile

    async def checkpoint_complete(self, checkpoint_id: int) -> None:
        if not self.exactly_once or self._task is not None:
            return
        if self._finished:
            # The first checkpoint to complete after the input ended (the final one, or one that
            # sources still running took: its part of this sink is the final state). The sink
            # waited at every earlier barrier for its outcome, and the actor is gone: commit here,
            # once.
            if self._producer is not None:
                await self._commit(final=True)
            return
        outcome = _future(self._outcomes, checkpoint_id)
        if not outcome.done():
            outcome.set_result(True)
        # Return once the actor committed: whoever waits for the checkpoint (flow.stop() before
        # the consumers leave the group, the next checkpoint) finds its results visible.
        done = _future(self._commits, checkpoint_id)
        try:
            await asyncio.shield(done)
        finally:
            del self._commits[checkpoint_id]

    async def checkpoint_aborted(self, checkpoint_id: int) -> None:
        if not self.exactly_once or self._task is not None:
            return
        if self._finished:
            await self._stop_transactional(abort=True)
            return
        outcome = _future(self._outcomes, checkpoint_id)
        if not outcome.done():
            outcome.set_result(False)  # the transaction stays open: it commits with the next one

    async def _commit(self, *, final: bool) -> None:
        producer = self._producer
        source = self.offsets_of
        assert producer is not None and source is not None and source.group_id is not None
        states = self._captured
        offsets = owned_offsets(states.values())
        if not offsets and not final:
            # The source read no partition at this barrier: no offset would carry this commit's
            # digest, and a restart could not tell whether it happened. Its records commit with the
            # next checkpoint that has offsets.
            return
        try:
            if offsets:
                metadata = commit_metadata(states.values())
                await producer.send_offsets_to_transaction(
                    {TopicPartition(t, p): (offset, metadata) for (t, p), offset in offsets.items()},
                    source.group_id,
                )
            await producer.commit_transaction()
            self._committed[0] += 1
            source._transaction_committed(states)
            if not final:
                await producer.begin_transaction()
        except ProducerFenced as error:
            _explain_fenced(error, self.transactional_id)
            raise
        finally:
            if final:
                await self._stop_transactional(abort=False)

    async def _stop_transactional(self, *, abort: bool) -> None:
        """After the final checkpoint: stop the producer, and let the source's consumers, which
        stayed in the group until the last offsets were committed, leave it."""
        producer, self._producer = self._producer, None
        try:
            if producer is not None:
                if abort:
                    await _abort_quietly(producer)
                await producer.stop()
        finally:
            if self._link is not None:
                self._link.reset()
            if self.offsets_of is not None:
                await self.offsets_of._close_lingering()

    async def close_async(self) -> None:
        if self._task is not None:  # the task's producer: the task stops it
            self._task = self._producer = None
            self._drop_batches()
            return
        if self.exactly_once and self._finished and self._producer is not None:
            return  # kept for the final checkpoint, which commits the last transaction and stops it
        producer, self._producer = self._producer, None
        for done in self._commits.values():
            if not done.done():
                done.set_result(None)  # closed before committing: a restore finds out which one Kafka has
        try:
            if producer is not None:
                if self.exactly_once:
                    # A job that stops or fails leaves nothing open: read_committed readers of the
                    # topic would otherwise wait for the transaction to time out.
                    await _abort_quietly(producer)
                elif self._batches is not None:
                    with contextlib.suppress(KafkaError):
                        await self._batches.hand_over_all()  # as with send(): stop() flushes them
                await producer.stop()  # flushes what is pending first
        finally:
            self._drop_batches()
            if self._link is not None:
                self._link.reset()

    def _drop_batches(self) -> None:
        """Forget the batches: those not handed over are dropped, and the errors of those handed
        over are retrieved (nobody waits for them any more: the job already ends with a reason)."""
        batches, self._batches = self._batches, None
        if batches is None:
            return
        batches.discard()
        for batch in batches.sent:
            if batch.future.done() and not batch.future.cancelled():
                batch.future.exception()


def _future(futures: dict[int, asyncio.Future[Any]], checkpoint_id: int) -> asyncio.Future[Any]:
    """The future of ``checkpoint_id`` in ``futures``, made by whichever side gets there first."""
    future = futures.get(checkpoint_id)
    if future is None:
        future = futures[checkpoint_id] = asyncio.get_running_loop().create_future()
    return future


async def _abort_quietly(producer: AIOKafkaProducer) -> None:
    """Abort the producer's open transaction if it can be (a fenced or failed producer cannot: the
    next run's producer aborts it then)."""
    # aiokafka has no public accessor for the transaction's state, and asserts on an abort outside
    # of a transaction (after a commit, before a begin, after a fatal error): look first.
    state = getattr(getattr(producer, "_txn_manager", None), "state", None)
    if getattr(state, "name", None) not in ("IN_TRANSACTION", "ABORTABLE_ERROR"):
        return
    with contextlib.suppress(KafkaError, TimeoutError):
        async with asyncio.timeout(10):
            await producer.abort_transaction()


def _too_large(size: int, topic: str, error: BaseException) -> ValueError:
    return ValueError(
        f"a record of {size} bytes for Kafka topic {topic!r} is larger than the producer allows "
        f"(max_request_size) or the topic accepts (max.message.bytes): {error!r}"
    )


def _check(future: asyncio.Future[Any], topic: str, size: int, transactional_id: str | None) -> None:
    """Raise the producer's error for a batch, explained when it is about its size (``size``: its
    largest record's) or a fenced transactional producer."""
    error = future.exception()
    if error is None:
        return
    if isinstance(error, MessageSizeTooLargeError):
        raise _too_large(size, topic, error) from error
    if isinstance(error, ProducerFenced):
        _explain_fenced(error, transactional_id)
    raise error


def _explain_fenced(error: BaseException, transactional_id: str | None) -> None:
    if not getattr(error, "_actorflow_explained", False):
        error._actorflow_explained = True  # type: ignore[attr-defined]
        error.add_note(
            f"actorflow: another producer started with transactional_id {transactional_id!r} and "
            "fenced this one: a second job, or another worker process of this one, uses the same "
            "id. Give every running job, and every worker process of a scaled-out job, its own "
            "transactional_id (stable across its restarts). A restart of this job fences the old "
            "run the same way; then this error belongs to the run that was replaced."
        )
