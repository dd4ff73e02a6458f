"""Outgoing batches: a sink's records gathered per partition and handed to the producer whole.

``producer.send()`` per record costs a coroutine, a metadata check, the partitioner, a
``TopicPartition``, a future, and on acknowledgement a ``RecordMetadata`` and a ``set_result``
per record (and the garbage collector meets all of them while they wait). A sink knows more: it
writes many records at a time and only wants to know that all of them are stored. So
:class:`PartitionBatches` appends each record to a batch of its partition, built with aiokafka's
public batch API (``create_batch()``, ``BatchBuilder.append``) and handed over with
``send_batch()``, with one future per batch.

It keeps what ``send()`` does:

* the partition: the producer's partitioner (``partitioner`` in its options, else aiokafka's
  default, murmur2 of the key as Java clients, a random available partition without a key) on
  the serialized key, over the topic's partitions and the available ones;
* the size check: a record larger than ``max_request_size`` fails at once with aiokafka's
  ``MessageSizeTooLargeError``; a batch is at most ``max_batch_size`` (the builder refuses more);
* ``linger_ms``: a batch is handed over once its first record has waited that long, or when it is
  full, and every batch at :meth:`PartitionBatches.hand_over_all` (a flush). As in aiokafka, a
  partition has one batch on its way at a time (a produce request per broker is in flight at a
  time): a batch whose linger is over is handed over once the previous one of its partition is
  acknowledged;
* transactions: a batch goes into the transaction open when it is handed over; the sink hands all
  of them over (and waits for them) before a commit.

>>> PartitionBatches.options_of({"linger_ms": 5, "acks": 1})
(0.005, 1048576)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.record.default_records import DefaultRecordBatchBuilder

__all__ = ["PartitionBatches", "SentBatch"]

Headers = list[tuple[str, bytes]]
#: A batch's partition: ``(topic, partition)``.
Key = tuple[str, int]

_DEFAULT_MAX_REQUEST_SIZE = 1_048_576  # aiokafka's default
_NO_HEADERS: Headers = []  # only read (aiokafka's builder wants a list)


@dataclass(eq=False)
class SentBatch:
    """A batch handed to the producer: its acknowledgement, its topic, its records, and the size of
    its largest record (key and value, for an error message)."""

    future: asyncio.Future[Any]
    topic: str
    records: int
    largest: int


@dataclass(eq=False)
class _OpenBatch:
    """A batch still taking records."""

    builder: Any  # aiokafka.producer.message_accumulator.BatchBuilder
    deadline: float  # time.monotonic() at which its linger is over
    records: int = 0
    largest: int = 0
    timer: asyncio.TimerHandle | None = None


@dataclass(eq=False)
class _Partitions:
    """A topic's partitions as the producer's metadata has them: all (sorted), and available."""

    all: list[int]
    available: list[int]
    single: int | None = None


@dataclass(eq=False)
class PartitionBatches:
    """The batches one sink instance is filling and has handed over; see the module docstring.

    ``options`` are the producer's (``linger_ms``, ``max_request_size``, ``partitioner``,
    ``key_serializer``/``value_serializer``: read as aiokafka reads them).
    """

    producer: AIOKafkaProducer
    options: Mapping[str, Any] = field(default_factory=dict)
    #: Batches handed over, oldest first, until the sink has seen their acknowledgement.
    sent: list[SentBatch] = field(default_factory=list)
    _open: dict[Key, _OpenBatch] = field(default_factory=dict)
    #: The last batch handed over per partition, while it is not acknowledged.
    _unacked: dict[Key, asyncio.Future[Any]] = field(default_factory=dict)
    _partitions: dict[str, _Partitions] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _failure: BaseException | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self._linger, self._max_request_size = self.options_of(self.options)
        partitioner = self.options.get("partitioner")
        self._default_partitioner = partitioner is None or type(partitioner) is DefaultPartitioner
        self._partitioner: Callable[[Any, list[int], list[int]], int] = partitioner or DefaultPartitioner()
        self._key_serializer: Callable[[Any], Any] | None = self.options.get("key_serializer")
        self._value_serializer: Callable[[Any], Any] | None = self.options.get("value_serializer")

    @staticmethod
    def options_of(options: Mapping[str, Any]) -> tuple[float, int]:
        """``(linger in seconds, max_request_size)`` of producer options (aiokafka's defaults)."""
        linger_ms = options.get("linger_ms", 0)
        return linger_ms / 1000, options.get("max_request_size", _DEFAULT_MAX_REQUEST_SIZE)

    @property
    def in_flight(self) -> int:
        """Records not acknowledged yet (as far as the sink has looked): in batches being filled and
        in those handed over."""
        filling = sum(batch.records for batch in self._open.values())
        return filling + sum(batch.records for batch in self.sent)

    # -- taking records --------------------------------------------------------------------------

    async def refresh(self, topic: str) -> None:
        """Read ``topic``'s partitions from the producer's metadata (waiting for it if needed):
        call it once per topic before :meth:`append`, as ``send()`` does per record."""
        known = await self.producer.partitions_for(topic)
        available = self.producer.client.cluster.available_partitions_for_topic(topic)
        ordered = sorted(known)
        # The default partitioner has one choice for a topic of one partition: skip the call.
        single = ordered[0] if len(ordered) == 1 and self._default_partitioner else None
        self._partitions[topic] = _Partitions(ordered, list(available or ()), single)

    def append(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers | None
    ) -> Key | None:
        """Add a record to its partition's batch. If that batch is full, return the partition: the
        caller hands the batch over (:meth:`hand_over`) and adds the record with :meth:`append_to`
        (a new batch takes any record).

        Raises ``MessageSizeTooLargeError`` as ``send()`` does for a record over ``max_request_size``.
        """
        if self._failure is not None:
            raise self._failure
        if headers is None:
            headers = _NO_HEADERS
        serialized_key = key if self._key_serializer is None else self._key_serializer(key)
        serialized_value = value if self._value_serializer is None else self._value_serializer(value)
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(serialized_key, serialized_value, headers)
        if size > self._max_request_size:
            raise MessageSizeTooLargeError(
                f"The message is {size} bytes when serialized which is larger than the maximum "
                "request size you have configured with the max_request_size configuration"
            )
        partitions = self._partitions[topic]
        partition = partitions.single
        if partition is None:
            partition = self._partitioner(serialized_key, partitions.all, partitions.available)
        where = (topic, partition)
        return None if self.append_to(where, key, value, headers) else where

    def append_to(
        self, where: Key, key: bytes | None, value: bytes | None, headers: Headers | None
    ) -> bool:
        """Add a record to the batch of partition ``where``; False if that batch is full."""
        batch = self._open.get(where)
        if batch is None:
            batch = self._open[where] = self._new_batch(where)
        if (
            batch.builder.append(timestamp=None, key=key, value=value, headers=headers or _NO_HEADERS)
            is None
        ):
            return False
        batch.records += 1
        size = len(key or b"") + len(value or b"")
        if size > batch.largest:
            batch.largest = size
        return True

    def _new_batch(self, where: Key) -> _OpenBatch:
        batch = _OpenBatch(self.producer.create_batch(), time.monotonic() + self._linger)
        batch.timer = asyncio.get_running_loop().call_later(self._linger, self._lingered, where, batch)
        return batch

    # -- handing over ----------------------------------------------------------------------------

    async def hand_over_due(self) -> None:
        """Hand over every batch whose linger is over (and whose partition has no batch on its way)."""
        if self._failure is not None:
            raise self._failure
        now = time.monotonic()
        due = [where for where, batch in self._open.items() if batch.deadline <= now and self._free(where)]
        for where in due:
            await self.hand_over(where)

    async def hand_over_all(self) -> None:
        """Hand over every batch, and wait until the ones handed over in the background are in."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))
        for where in list(self._open):
            await self.hand_over(where)
        if self._failure is not None:
            raise self._failure

    async def hand_over(self, where: Key) -> None:
        """Close the batch of ``where`` and hand it to the producer (in order: one at a time)."""
        async with self._lock:
            batch = self._open.pop(where, None)
            if batch is None or batch.records == 0:
                return
            if batch.timer is not None:
                batch.timer.cancel()
            batch.builder.close()  # no linger in the producer: the batch lingered here
            future = await self.producer.send_batch(batch.builder, where[0], partition=where[1])
            self.sent.append(SentBatch(future, where[0], batch.records, batch.largest))
            self._unacked[where] = future
            future.add_done_callback(lambda done: self._acknowledged(where, done))

    def _free(self, where: Key) -> bool:
        return where not in self._unacked

    def _acknowledged(self, where: Key, future: asyncio.Future[Any]) -> None:
        if self._unacked.get(where) is future:
            del self._unacked[where]
            batch = self._open.get(where)
            if batch is not None and batch.deadline <= time.monotonic():
                self._in_background(where)

    def _lingered(self, where: Key, batch: _OpenBatch) -> None:
        batch.timer = None
        if self._open.get(where) is batch and self._free(where):
            self._in_background(where)

    def _in_background(self, where: Key) -> None:
        task = asyncio.ensure_future(self._hand_over_noting_failure(where))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _hand_over_noting_failure(self, where: Key) -> None:
        try:
            await self.hand_over(where)
        except Exception as error:  # raised to the sink by its next append or flush
            if self._failure is None:
                self._failure = error

    def discard(self) -> None:
        """Drop the batches not handed over (the sink is closing without writing them)."""
        for batch in self._open.values():
            if batch.timer is not None:
                batch.timer.cancel()
        self._open.clear()
        for task in self._tasks:
            task.cancel()
