"""Repartition topics: records keyed anew, and event time, from one stage's tasks to the next.

A task of the stage before a repartition writes each record to the partition of its new key
(:class:`RepartitionSink`, the last operator of that stage), inside the task's transaction: the
records become visible to the next stage exactly when the task commits the input offsets they came
from. The partition is Kafka's for that key: murmur2 of the serialized key (UTF-8 for a ``str``, the
bytes of ``bytes``, a pickle otherwise), as the Java client's default partitioner computes it, so a
topic keyed the same way by another producer is partitioned alike.

Each message carries a batch of records of one upstream task, their event times, and that task's
watermark after them when it moved::

    pickle((upstream task, [timestamps] or None, [records], watermark or None))

**Event time across the topic.** At each of its checkpoints an upstream task sends its watermark,
if it moved, to *every* partition of the topic (a message with no records when it has none for a
partition). A downstream task keeps the newest watermark of each upstream task
(:class:`UpstreamWatermarks`, part of its checkpointed state) and its own watermark is the minimum
over all upstream tasks, one per partition of the input: Flink's rule for an operator with
several inputs, with the upstream tasks as the inputs. Until every upstream task has been heard
from it stays at its start, so no record is late for having been written by a task that started
early; an input partition that stays idle holds the downstream stage back, as an idle input holds
back a Flink operator without an idleness timeout.
"""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Callable
from typing import Any

from aiokafka.partitioner import murmur2

from actorflow import Source
from actorflow.errors import PlanError
from actorflow.operators.base import Operator, OperatorContext
from actorflow.runtime.messages import MIN_WATERMARK, Batch
from actorflow_kafka.tasks.transaction import TaskTransaction, current_transaction

__all__ = [
    "RepartitionInput",
    "RepartitionSink",
    "UpstreamWatermarks",
    "decode",
    "kafka_partition",
]

#: Records per message at most (a batch of one upstream task for one partition).
_MESSAGE_RECORDS = 500
#: Keys whose partition is remembered (a key's murmur2 costs about 2 us in Python).
_CACHED_KEYS = 100_000


def kafka_partition(key: Any, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` among ``partitions``.

    >>> kafka_partition("card-1", 4), kafka_partition(b"card-1", 4)
    (3, 3)
    """
    if isinstance(key, str):
        data = key.encode()
    elif isinstance(key, bytes):
        data = key
    else:
        data = pickle.dumps(key, protocol=5)
    return int(murmur2(data) & 0x7FFFFFFF) % partitions


class RepartitionInput(Source):
    """Stands for a repartition topic in a stage's plan; each task reads its feed instead."""

    def __init__(self, topic: str) -> None:
        self.topic = topic

    def read(self, context: OperatorContext) -> Any:
        raise PlanError(f"repartition topic {self.topic!r} is read by partition tasks only")

    def describe(self) -> str:
        return f"repartition topic {self.topic}"


class RepartitionSink(Operator):
    """Writes each record to the partition of ``key_of(record)`` of ``topic``, in the task's
    transaction, with its event time; sends the task's watermark to every partition at each
    checkpoint (see the module)."""

    is_async = True

    def __init__(self, topic: str, key_of: Callable[[Any], Any]) -> None:
        super().__init__(f"repartition {topic}")
        self.topic = topic
        self.key_of = key_of
        self._transaction: TaskTransaction | None = None
        self._partitions = 0
        self._records: list[list[Any]] = []
        self._timestamps: list[list[Any]] = []
        self._sends: list[asyncio.Future[Any]] = []
        self._of_key: dict[Any, int] = {}
        self._watermark = MIN_WATERMARK
        self._sent_watermark = MIN_WATERMARK

    async def open_async(self, context: OperatorContext) -> None:
        self.open(context)
        transaction = current_transaction()
        if transaction is None:
            raise PlanError(f"{self.name} runs in partition tasks only")
        self._transaction = transaction
        self._partitions = len(await transaction.producer.partitions_for(self.topic))
        self._records = [[] for _ in range(self._partitions)]
        self._timestamps = [[] for _ in range(self._partitions)]

    async def process_async(self, batch: Batch) -> None:
        of_key = self._of_key
        key_of = self.key_of
        partitions = self._partitions
        records = self._records
        timestamps = self._timestamps
        stamps = batch.timestamps if batch.timestamps is not None else [None] * len(batch.values)
        for value, stamp in zip(batch.values, stamps, strict=True):
            key = key_of(value)
            partition = of_key.get(key)
            if partition is None:
                if len(of_key) >= _CACHED_KEYS:
                    of_key.clear()
                partition = of_key[key] = kafka_partition(key, partitions)
            records[partition].append(value)
            timestamps[partition].append(stamp)
        if batch.marks:
            self._watermark = batch.marks[-1][1]
        for partition, waiting in enumerate(records):
            if len(waiting) >= _MESSAGE_RECORDS:
                await self._send(partition, None)

    async def _send(self, partition: int, watermark: int | None) -> None:
        transaction = self._transaction
        assert transaction is not None
        records, stamps = self._records[partition], self._timestamps[partition]
        self._records[partition], self._timestamps[partition] = [], []
        has_time = any(stamp is not None for stamp in stamps)
        value = pickle.dumps(
            (transaction.partition, stamps if has_time else None, records, watermark),
            protocol=pickle.HIGHEST_PROTOCOL,
        )
        self._sends.append(await transaction.producer.send(self.topic, value, partition=partition))
        transaction.written += 1

    async def snapshot_state_async(self) -> None:
        """At a barrier: every record sent, with the watermark if it moved; all acknowledged."""
        moved = self._watermark > self._sent_watermark
        for partition, waiting in enumerate(self._records):
            if waiting or moved:
                await self._send(partition, self._watermark if moved else None)
        self._sent_watermark = self._watermark
        sends, self._sends = self._sends, []
        if sends:
            await asyncio.gather(*sends)
        return None

    async def finish_async(self) -> None:
        await self.snapshot_state_async()

    async def barrier_acknowledged(self, checkpoint_id: int) -> None:
        """Nothing newer gets into the transaction of ``checkpoint_id`` before the task commits."""
        if self._transaction is not None:
            await self._transaction.outcome(checkpoint_id)

    async def close_async(self) -> None:
        for send in self._sends:
            if send.done() and not send.cancelled():
                send.exception()
        self._sends = []
        self._transaction = None


class UpstreamWatermarks:
    """The newest watermark of each of ``tasks`` upstream tasks; the minimum is a downstream
    task's watermark.

    >>> w = UpstreamWatermarks(2)
    >>> w.update(0, 50), w.update(1, 20), w.update(1, 70), w.current
    (None, 20, 50, 50)
    """

    def __init__(self, tasks: int, known: dict[int, int] | None = None) -> None:
        self.tasks = tasks
        self.known: dict[int, int] = dict(known or {})
        self.current = self._minimum()

    def _minimum(self) -> int:
        known = self.known
        return min(known.get(task, MIN_WATERMARK) for task in range(self.tasks))

    def update(self, task: int, watermark: int) -> int | None:
        """Note ``task``'s watermark; returns the new minimum if it rose, else None."""
        if watermark <= self.known.get(task, MIN_WATERMARK):
            return None
        self.known[task] = watermark
        current = self._minimum()
        if current <= self.current:
            return None
        self.current = current
        return current


def decode(messages: list[Any]) -> tuple[list[Any], list[Any] | None, list[tuple[int, int, int]]]:
    """The records, event times and upstream watermarks (``(position, task, watermark)``: after
    the first ``position`` records) of a repartition topic's messages, in order."""
    values: list[Any] = []
    timestamps: list[Any] | None = []
    updates: list[tuple[int, int, int]] = []
    for message in messages:
        task, stamps, records, watermark = pickle.loads(message.value)
        values += records
        if timestamps is not None:
            if stamps is None and records:
                timestamps = None
            elif stamps is not None:
                timestamps += stamps
        if watermark is not None:
            updates.append((len(values), task, watermark))
    return values, timestamps, updates
