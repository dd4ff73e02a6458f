"""The Kafka broker that the tests get (``tests/kafka_fixtures.py``) works with aiokafka, end to end.

Keyed records through a 3-partition topic and a consumer group, a transaction read back with
``read_committed``, and a broker restart in the middle that loses nothing that was acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from aiokafka import (  # type: ignore[import-untyped, unused-ignore]  # aiokafka has no py.typed
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRecord,
)

from tests.kafka_fixtures import KafkaEndpoint, TopicFactory


def _encode(value: Any) -> bytes:
    return json.dumps(value).encode()


def _decode(raw: bytes | None) -> Any:
    assert raw is not None
    return json.loads(raw)


async def _consume(
    bootstrap_servers: str, topic: str, expected: int, *, within: float = 30.0, **options: Any
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read ``topic`` from the start, in a fresh consumer group, until ``expected`` records came."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        **options,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(within):
            while len(records) < expected:
                batches = await consumer.getmany(timeout_ms=500)
                for batch in batches.values():
                    records.extend(batch)
        # Nothing beyond what was expected turns up a moment later.
        extra = await consumer.getmany(timeout_ms=300)
        records.extend(record for batch in extra.values() for record in batch)
    finally:
        await consumer.stop()
    return records


async def test_keyed_json_records_round_trip(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    topic = await kafka_topic(partitions=3)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers, acks="all")
    await producer.start()
    try:
        sent = [
            producer.send(topic, _encode({"n": n, "user": f"u{n % 7}"}), key=f"u{n % 7}".encode())
            for n in range(100)
        ]
        await producer.flush()
        metadata = [await future for future in await asyncio.gather(*sent)]
    finally:
        await producer.stop()
    assert {m.partition for m in metadata} == {0, 1, 2}  # seven keys over three partitions

    records = await _consume(kafka_broker.bootstrap_servers, topic, 100)

    assert sorted(_decode(r.value)["n"] for r in records) == list(range(100))
    partition_of_key: dict[bytes | None, set[int]] = {}
    for record in records:
        partition_of_key.setdefault(record.key, set()).add(record.partition)
        assert _decode(record.value)["user"].encode() == record.key
    assert len(partition_of_key) == 7
    assert all(len(partitions) == 1 for partitions in partition_of_key.values())  # a key stays put
    for partition in range(3):  # the order within a partition is the order of sending
        ns = [_decode(r.value)["n"] for r in records if r.partition == partition]
        assert ns == sorted(ns)


async def test_transactions_commit_and_abort(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    topic = await kafka_topic(partitions=2)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_broker.bootstrap_servers,
        transactional_id=f"test-tx-{uuid.uuid4().hex[:8]}",
        enable_idempotence=True,
    )
    await producer.start()
    try:
        await producer.begin_transaction()
        for n in range(10):
            await producer.send(topic, _encode({"n": n, "tx": "committed"}), key=str(n).encode())
        await producer.commit_transaction()

        await producer.begin_transaction()
        for n in range(10, 15):
            await producer.send(topic, _encode({"n": n, "tx": "aborted"}), key=str(n).encode())
        await producer.flush()
        await producer.abort_transaction()

        async with producer.transaction():
            await producer.send(topic, _encode({"n": 15, "tx": "committed"}), key=b"15")
    finally:
        await producer.stop()

    committed = await _consume(kafka_broker.bootstrap_servers, topic, 11, isolation_level="read_committed")
    assert sorted(_decode(r.value)["n"] for r in committed) == [*range(10), 15]

    everything = await _consume(
        kafka_broker.bootstrap_servers, topic, 16, isolation_level="read_uncommitted"
    )
    assert sorted(_decode(r.value)["n"] for r in everything) == list(range(16))


@pytest.mark.timeout(180)
@pytest.mark.parametrize("graceful", [True, False], ids=["sigterm", "sigkill"])
async def test_broker_restart_keeps_the_records(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory, graceful: bool
) -> None:
    if not kafka_broker.restartable:
        pytest.skip("the broker at $KAFKA_BOOTSTRAP_SERVERS is not ours to restart")
    topic = await kafka_topic(partitions=3)
    # One producer throughout: it reconnects to the restarted broker by itself.
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for n in range(50):
            await producer.send(topic, _encode({"n": n}), key=str(n).encode())
        await producer.flush()

        await asyncio.to_thread(kafka_broker.restart, graceful=graceful)

        async with asyncio.timeout(60):
            for n in range(50, 100):
                await producer.send(topic, _encode({"n": n}), key=str(n).encode())
            await producer.flush()
    finally:
        await producer.stop()

    records = await _consume(kafka_broker.bootstrap_servers, topic, 100, within=60.0)
    assert sorted(_decode(r.value)["n"] for r in records) == list(range(100))


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # The storage tool would read "-..." as an option: one id in 64 used to fail the format.
    import uuid

    from scripts.kafka import broker

    drawn = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=bytes(16))])
    monkeypatch.setattr(broker.uuid, "uuid4", lambda: next(drawn))
    assert broker._new_cluster_id() == "AAAAAAAAAAAAAAAAAAAAAA"
