"""PartitionBatches (actorflow_kafka.batches): a sink's records batched per partition and handed to
the producer whole, as ``producer.send()`` per record would have placed them.

Most tests use a stand-in producer (aiokafka's own ``BatchBuilder``, no broker): linger, full
batches, the size check, one batch on its way per partition, failures of a hand-over in the
background. The last one compares, on a real broker, KafkaSink's placement of keyed records with
``producer.send()``'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from hypothesis import given, settings
from hypothesis import strategies as st

from actorflow import Flow
from actorflow_kafka import KafkaSink
from actorflow_kafka.batches import PartitionBatches
from tests.kafka_fixtures import KafkaEndpoint, TopicFactory


class _Builder(BatchBuilder):  # type: ignore[misc]
    """aiokafka's builder, noting the values it took."""

    def __init__(self, batch_size: int) -> None:
        super().__init__(batch_size, 0)
        self.values: list[bytes | None] = []

    def append(self, **record: Any) -> Any:
        metadata = super().append(**record)
        if metadata is not None:
            self.values.append(record["value"])
        return metadata


class _Producer:
    """What PartitionBatches uses of AIOKafkaProducer; batches handed over are kept in ``sent``."""

    def __init__(self, partitions: int = 1, batch_size: int = 16_384) -> None:
        self.partitions = partitions
        self.batch_size = batch_size
        self.client = SimpleNamespace(
            cluster=SimpleNamespace(available_partitions_for_topic=self._available)
        )
        self.sent: list[tuple[str, int, _Builder, asyncio.Future[Any]]] = []
        self.failure: Exception | None = None
        self.attempts = 0
        self.arrived = asyncio.Event()

    def _available(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def create_batch(self) -> _Builder:
        return _Builder(self.batch_size)

    async def send_batch(self, builder: _Builder, topic: str, *, partition: int) -> asyncio.Future[Any]:
        self.attempts += 1
        if self.failure is not None:
            self.arrived.set()
            raise self.failure
        assert builder.closed(), "a batch lingers in the sink, not in the producer"
        future = asyncio.get_running_loop().create_future()
        self.sent.append((topic, partition, builder, future))
        self.arrived.set()
        return future

    async def handed_over(self, count: int, *, or_tried: bool = False) -> None:
        """Until ``count`` batches in all have been handed over (or tried to be)."""
        async with asyncio.timeout(10):
            while (self.attempts if or_tried else len(self.sent)) < count:
                self.arrived.clear()
                await self.arrived.wait()

    def values(self, partition: int | None = None) -> list[bytes | None]:
        return [v for _, p, builder, _ in self.sent if partition in (None, p) for v in builder.values]


async def _batches(producer: _Producer, **options: Any) -> PartitionBatches:
    batches = PartitionBatches(producer, options)  # type: ignore[arg-type]
    await batches.refresh("t")
    return batches


async def test_a_batch_waits_for_its_linger_and_a_flush_hands_over_every_batch() -> None:
    producer = _Producer(partitions=3)
    batches = await _batches(producer, linger_ms=60_000)
    for n in range(30):
        assert batches.append("t", str(n).encode(), b"v%d" % n, None) is None
    await batches.hand_over_due()
    assert producer.sent == []
    assert batches.in_flight == 30
    await batches.hand_over_all()
    assert sorted(v for v in producer.values() if v) == sorted(b"v%d" % n for n in range(30))
    assert len(producer.sent) == len({p for _, p, _, _ in producer.sent})  # one batch per partition
    assert [b.records for b in batches.sent] == [len(builder.values) for _, _, builder, _ in producer.sent]


async def test_without_linger_a_call_s_records_go_as_one_batch_and_the_next_waits_for_its_ack() -> None:
    producer = _Producer()
    batches = await _batches(producer)  # linger_ms=0, aiokafka's default
    for n in range(5):
        batches.append("t", None, b"a%d" % n, None)
    await batches.hand_over_due()
    assert producer.values() == [b"a0", b"a1", b"a2", b"a3", b"a4"]
    for n in range(3):
        batches.append("t", None, b"b%d" % n, None)
    await batches.hand_over_due()
    assert len(producer.sent) == 1  # the first batch is still on its way: this one waits
    producer.sent[0][3].set_result(None)  # acknowledged: the next one goes in the background
    await producer.handed_over(2)
    assert producer.values() == [b"a0", b"a1", b"a2", b"a3", b"a4", b"b0", b"b1", b"b2"]


async def test_a_batch_whose_linger_is_over_is_handed_over_without_another_write() -> None:
    producer = _Producer()
    batches = await _batches(producer, linger_ms=1)
    batches.append("t", None, b"alone", None)
    await producer.handed_over(1)
    assert producer.values() == [b"alone"]
    assert batches.in_flight == 1


async def test_a_full_batch_is_handed_over_and_the_record_starts_the_next() -> None:
    producer = _Producer(batch_size=200)
    batches = await _batches(producer, linger_ms=60_000)
    values = [b"%03d" % n + b"x" * 40 for n in range(20)]
    for value in values:
        full = batches.append("t", None, value, None)
        if full is not None:
            await batches.hand_over(full)
            assert batches.append_to(full, None, value, None)
    await batches.hand_over_all()
    assert len(producer.sent) > 3
    assert producer.values() == values


async def test_a_record_over_max_request_size_fails_as_send_does() -> None:
    producer = _Producer()
    batches = await _batches(producer, max_request_size=200)
    batches.append("t", None, b"x" * 20, None)
    with pytest.raises(MessageSizeTooLargeError, match="max_request_size"):
        batches.append("t", None, b"x" * 300, None)


async def test_a_failed_hand_over_in_the_background_fails_the_next_append_and_flush() -> None:
    producer = _Producer()
    batches = await _batches(producer, linger_ms=1)
    producer.failure = KafkaTimeoutError()
    batches.append("t", None, b"lost", None)
    await producer.handed_over(1, or_tried=True)  # its linger is over: tried in the background
    with pytest.raises(KafkaTimeoutError):
        batches.append("t", None, b"next", None)
    with pytest.raises(KafkaTimeoutError):
        await batches.hand_over_all()


@settings(max_examples=60, deadline=None)
@given(
    keys=st.lists(st.one_of(st.none(), st.binary(min_size=0, max_size=12)), min_size=1, max_size=60),
    partitions=st.integers(min_value=1, max_value=7),
    batch_size=st.sampled_from([64, 256, 16_384]),
)
def test_records_go_where_send_puts_them_in_the_order_they_came(
    keys: list[bytes | None], partitions: int, batch_size: int
) -> None:
    async def run() -> None:
        producer = _Producer(partitions=partitions, batch_size=batch_size)
        batches = await _batches(producer, linger_ms=60_000)
        expected: dict[int, list[bytes]] = {}
        for n, key in enumerate(keys):
            value = b"%d" % n
            full = batches.append("t", key, value, None)
            if full is not None:
                await batches.hand_over(full)
                assert batches.append_to(full, key, value, None)
            if key is not None:  # keyless records go to a random (available) partition, as with send()
                partition = DefaultPartitioner()(key, list(range(partitions)), list(range(partitions)))
                expected.setdefault(partition, []).append(value)
        await batches.hand_over_all()
        keyed = {b"%d" % n for n, key in enumerate(keys) if key is not None}
        for partition in range(partitions):
            placed = [v for v in producer.values(partition) if v in keyed]
            assert placed == expected.get(partition, [])
        assert sorted(producer.values(), key=int) == [b"%d" % n for n in range(len(keys))]

    asyncio.run(run())


async def _read(servers: str, topic: str, partitions: int) -> dict[int, list[tuple[Any, ...]]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found: dict[int, list[tuple[Any, ...]]] = {p: [] for p in range(partitions)}
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                found[tp.partition] += [(r.key, r.value, tuple(r.headers)) for r in records]
        return found
    finally:
        await consumer.stop()


async def test_the_sink_places_keyed_records_as_producer_send_does(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    servers = kafka_broker.bootstrap_servers
    by_sink, by_send = await kafka_topic(partitions=3), await kafka_topic(partitions=3)
    records = [{"card": f"c{n % 37}", "n": n} for n in range(2_000)]
    options: Mapping[str, Any] = {"linger_ms": 5, "max_batch_size": 4_096}
    producer = AIOKafkaProducer(bootstrap_servers=servers, **options)
    await producer.start()
    try:
        for record in records:
            await producer.send(
                by_send,
                orjson.dumps(record),
                key=record["card"].encode(),
                headers=[("n", str(record["n"]).encode())],
            )
        await producer.flush()
    finally:
        await producer.stop()
    sink = KafkaSink(
        by_sink,
        bootstrap_servers=servers,
        key="card",
        headers=lambda r: [("n", str(r["n"]).encode())],
        producer_options=options,
    )
    flow = Flow("placed-as-send", batch_size=300)
    flow.from_iterable(records).sink(sink)
    await flow.run()
    assert sink.records_written == 2_000
    assert await _read(servers, by_sink, 3) == await _read(servers, by_send, 3)
