"""KafkaSource: topics (or a pattern) read by a consumer group, with per-partition watermarks.

Each instance of the source is one aiokafka consumer. With a ``group_id`` the instances (in this
process and in every other process running the same flow) share the partitions through Kafka's group
protocol, and a rebalance moves partitions between them: before a partition is taken away, the offset
of the next record this consumer would read is committed, so the new owner goes on from there (the
records already handed to the flow are still processed here). Without checkpoints that is
at-least-once across a crash (the last commit is where a restart begins) and exactly once across a
clean stop or a rebalance.

Event time is kept **per partition**: each partition has its own watermark generator, and the
source's watermark is the minimum over the partitions it reads, so a partition that lags behind holds
event time back instead of making its records late. A partition with nothing to read for the
strategy's idleness timeout stops holding the others back until it has records again.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord

from actorflow import DeadLetter, Source
from actorflow.operators.base import OperatorContext
from actorflow.runtime.messages import MIN_WATERMARK, Batch
from actorflow.time.watermarks import WatermarkGenerator, WatermarkStrategy
from actorflow_kafka.dead_letters import DeadLetterTopic
from actorflow_kafka.records import KafkaRecord, kafka_timestamp
from actorflow_kafka.serde import Deserializer, json_deserializer, resolve_deserializer

__all__ = ["KafkaSource", "Start"]

Start = Literal["committed", "earliest", "latest"] | int
DeadLetterTarget = DeadLetterTopic | Callable[[DeadLetter], Awaitable[None] | None]


class KafkaSource(Source):
    """Records from Kafka topics, decoded, stamped with event time per partition.

    ``start`` says where a partition without a committed offset (for the group) begins: "committed"
    (the default: committed offsets, else the earliest), "earliest", "latest", or an epoch-ms
    timestamp. With "earliest", "latest" or a timestamp, every partition this source instance is
    assigned for the first time starts there, committed or not.

    ``bounded=True`` reads every partition of the topics up to the end offsets they had when the
    flow started, then ends the stream (a topic read like a file). Otherwise the source runs until
    :meth:`stop`.

    ``client_options`` go to aiokafka untouched (SASL, SSL, client id, fetch sizes...).

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
        client_options: Mapping[str, Any] | None = None,
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
        self.client_options = dict(client_options or {})
        self._stopping = asyncio.Event()
        self._readers: dict[int, _PartitionReader] = {}
        #: Per instance: the offset of the next record to read, per partition (the source's state).
        self.positions: dict[int, dict[TopicPartition, int]] = {}
        #: Records handed to the flow, and records sent to the dead letters, over all instances.
        self.records_read = 0
        self.dead_letter_count = 0

    def describe(self) -> str:
        return f"KafkaSource({self.topics or self.pattern!r})"

    def stop(self) -> None:
        """End the stream: every instance finishes the batch in hand, commits, and ends."""
        self._stopping.set()

    def snapshot(self) -> dict[tuple[str, int], int]:
        """The next offset to read for every partition this source reads (all instances)."""
        return {
            (tp.topic, tp.partition): offset
            for positions in self.positions.values()
            for tp, offset in positions.items()
        }

    async def read(self, context: OperatorContext) -> AsyncIterator[list[Any] | Batch]:
        if not self._readers:
            self._stopping.clear()  # a source stopped in an earlier run may run again
        reader = _PartitionReader(self, context)
        self._readers[context.index] = reader
        await reader.open()
        async for batch in reader.batches():
            yield batch

    async def finish(self, context: OperatorContext, *, completed: bool) -> None:
        """Commit the positions if everything read went through (``completed``), then disconnect.

        A job that failed or was cancelled commits nothing: the next start reads again what this
        one may not have written.
        """
        reader = self._readers.pop(context.index, None)
        if reader is not None:
            await reader.close(commit=completed)


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
        self.strategy: WatermarkStrategy | None = context.watermarks
        self.kafka_time = self.strategy is not None and self.strategy.timestamp is kafka_timestamp
        self.consumer: AIOKafkaConsumer | None = None
        self.positions: dict[TopicPartition, int] = source.positions.setdefault(context.index, {})
        self.generators: dict[TopicPartition, WatermarkGenerator] = {}
        self.watermarks: dict[TopicPartition, int] = {}
        self.last_record: dict[TopicPartition, int] = {}
        self.idle: set[TopicPartition] = set()
        self.started: set[TopicPartition] = set()
        self.current = MIN_WATERMARK
        self.end_offsets: dict[TopicPartition, int] = {}
        self.dead_letter_topic: DeadLetterTopic | None = None
        self.dead_letter_callback: Callable[[DeadLetter], Awaitable[None] | None] | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        source = self.source
        consumer = AIOKafkaConsumer(
            bootstrap_servers=source.bootstrap_servers,
            group_id=source.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if source.start != "latest" else "latest",
            **source.client_options,
        )
        self.consumer = consumer
        await consumer.start()
        if isinstance(source.dead_letters, DeadLetterTopic):
            self.dead_letter_topic = source.dead_letters
            await source.dead_letters.start(source.bootstrap_servers, source.client_options)
        elif source.dead_letters is not None:
            self.dead_letter_callback = source.dead_letters
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
        consumer, self.consumer = self.consumer, None
        try:
            if consumer is not None and commit and self.started:
                await self._commit(consumer, set(self.positions))
        finally:
            try:
                if consumer is not None:
                    await consumer.stop()
            finally:
                if self.dead_letter_topic is not None:
                    await self.dead_letter_topic.stop()

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
        now = self.context.clock.now()
        for tp in partitions:
            if self.strategy is not None:
                self.generators[tp] = self.strategy.generator()
                self.watermarks[tp] = MIN_WATERMARK
                self.last_record[tp] = now
            first_time = tp not in self.started
            self.started.add(tp)
            if first_time and self.source.start != "committed":
                # Seek to an explicit offset: aiokafka's own offset reset for a new assignment
                # may still be in flight, and seek() (unlike seek_to_end) wins over it.
                consumer.seek(tp, await self._start_offset(consumer, tp))
            self.positions[tp] = await consumer.position(tp)

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
        if consumer is not None:
            await self._commit(consumer, partitions)
        for tp in partitions:
            self.positions.pop(tp, None)
            self.generators.pop(tp, None)
            self.watermarks.pop(tp, None)
            self.last_record.pop(tp, None)
            self.idle.discard(tp)

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
        while not stopping.is_set():
            if self.source.bounded and self._at_end():
                return
            fetched = await consumer.getmany(timeout_ms=self.source.poll_timeout_ms, max_records=limit)
            batch = await self._decode(fetched)
            if batch is not None:
                yield batch
            # getmany() returns prefetched records without suspending: give other tasks a turn.
            await asyncio.sleep(0)

    def _at_end(self) -> bool:
        return all(self.positions.get(tp, 0) >= end for tp, end in self.end_offsets.items())

    async def _decode(
        self, fetched: Mapping[TopicPartition, list[ConsumerRecord[Any, Any]]]
    ) -> Batch | None:
        values: list[Any] = []
        stamps: list[Any] = []
        marks: list[tuple[int, int]] = []
        strategy = self.strategy
        now = self.context.clock.now()
        for tp, records in fetched.items():
            if not records:
                continue
            decoded, kept = await self._decode_records(records)
            if tp not in self.positions:
                # Revoked while these were fetched or decoded: the position committed on
                # revocation excludes them, so the partition's new owner reads them instead.
                continue
            self.positions[tp] = records[-1].offset + 1
            self.source.records_read += len(decoded)
            if strategy is None:
                values += decoded
                continue
            if self.kafka_time:
                timestamps = [record.timestamp for record in kept]
            else:
                timestamps = list(map(strategy.timestamp, decoded))
            base = len(values)
            values += decoded
            stamps += timestamps
            self.last_record[tp] = now
            self.idle.discard(tp)
            for position, watermark in self.generators[tp].on_batch(timestamps):
                self.watermarks[tp] = watermark
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

    async def _decode_records(
        self, records: list[ConsumerRecord[Any, Any]]
    ) -> tuple[list[Any], list[ConsumerRecord[Any, Any]]]:
        """The decoded values, and the records they came from (dead letters left out)."""
        source = self.source
        if not source.with_metadata:
            decode = orjson.loads if source._value is json_deserializer else source._value
            try:
                # Fast path: one comprehension; any failure (a bad record, a tombstone for
                # orjson) sends the whole poll through the record-by-record path below.
                return [decode(record.value) for record in records], records
            except Exception:
                pass
        value_of = source._value
        key_of = source._key
        values: list[Any] = []
        kept: list[ConsumerRecord[Any, Any]] = []
        for record in records:
            try:
                value = value_of(record.value)
                if source.with_metadata:
                    value = KafkaRecord(
                        record.topic,
                        record.partition,
                        record.offset,
                        record.timestamp,
                        key_of(record.key),
                        value,
                        tuple(record.headers or ()),
                    )
            except Exception as error:
                await self._dead_letter(record, error)
                continue
            values.append(value)
            kept.append(record)
        return values, kept

    async def _dead_letter(self, record: ConsumerRecord[Any, Any], error: Exception) -> None:
        origin = f"{record.topic}/{record.partition}@{record.offset}"
        if self.dead_letter_topic is not None:
            await self.dead_letter_topic.publish(record, error)
        elif self.dead_letter_callback is not None:
            letter = DeadLetter(record.value or b"", origin, f"{type(error).__name__}: {error}")
            outcome = self.dead_letter_callback(letter)
            if inspect.isawaitable(outcome):
                await outcome
        else:
            raise ValueError(
                f"cannot decode the Kafka record at {origin}: {type(error).__name__}: {error} "
                "(give the source dead_letters= to keep the job running)"
            ) from error
        self.source.dead_letter_count += 1
