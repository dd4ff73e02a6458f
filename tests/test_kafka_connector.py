"""actorflow_kafka against the real broker: KafkaSource, KafkaSink, DeadLetterTopic, serde, metadata,
start positions, per-partition watermarks and idleness, sink errors, and a broker restart mid-job.

Every test makes its own topics (``kafka_topic``) and reads what a flow wrote with a plain aiokafka
consumer up to the topic's end offsets, so an exact count is an honest one.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import orjson
import pytest
from aiokafka import (  # type: ignore[import-untyped, unused-ignore]  # aiokafka has no py.typed
    AIOKafkaConsumer,
    AIOKafkaProducer,
)
from aiokafka.admin import (  # type: ignore[import-untyped, unused-ignore]
    AIOKafkaAdminClient,
)
from aiokafka.partitioner import (  # type: ignore[import-untyped, unused-ignore]
    murmur2,
)

from actorflow import (
    MIN_WATERMARK,
    Collector,
    Context,
    DeadLetter,
    Flow,
    KeyedProcessFunction,
    ManualClock,
    WatermarkStrategy,
)
from actorflow_kafka import DeadLetterTopic, KafkaRecord, KafkaSink, KafkaSource, kafka_timestamp
from tests.kafka_fixtures import KafkaEndpoint, TopicFactory
from tests.kafka_helpers import (
    Message,
    eventually,
    produce,
    produce_json,
    read_topic,
    run_until,
    running,
    values_of,
)


def _partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default (Java) partitioner picks for ``key``: murmur2, positive, modulo."""
    return int((murmur2(key) & 0x7FFFFFFF) % partitions)


# -- 1. round trips -----------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2], ids=["p1", "p2"])
async def test_json_round_trip_reads_and_writes_every_record_once(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory, workers: int
) -> None:
    servers = kafka_broker.bootstrap_servers
    source_topic = await kafka_topic(partitions=3)
    output_topic = await kafka_topic(partitions=3)
    inputs = [{"n": n, "user": f"u{n % 11}", "amount": n * 3} for n in range(500)]
    written = await produce_json(servers, source_topic, inputs, key=lambda v: v["user"])
    per_partition = {p: sum(1 for m in written if m.partition == p) for p in range(3)}
    assert all(per_partition.values())  # 11 keys over 3 partitions: every partition has records

    flow = Flow("json-round-trip", parallelism=workers)
    source = KafkaSource(source_topic, bootstrap_servers=servers, bounded=True)
    (
        flow.from_source(source)
        .map(lambda r: {**r, "doubled": r["amount"] * 2})
        .sink(KafkaSink(output_topic, bootstrap_servers=servers, key="user"))
    )
    await flow.run()

    records = await read_topic(servers, output_topic, at_least=500)
    values = values_of(records)
    assert sorted(v["n"] for v in values) == list(range(500))  # every record, exactly once
    assert all(v == {**inputs[v["n"]], "doubled": inputs[v["n"]]["amount"] * 2} for v in values)
    assert source.records_read == 500
    assert source.snapshot() == {(source_topic, p): count for p, count in per_partition.items()}
    partitions_of_key: dict[bytes, set[int]] = {}
    for record, value in zip(records, values, strict=True):
        assert record.key == value["user"].encode()  # key="user": the field, as UTF-8 text
        partitions_of_key.setdefault(record.key, set()).add(record.partition)
    assert len(partitions_of_key) == 11
    assert all(len(found) == 1 for found in partitions_of_key.values())


async def test_bytes_round_trip_keeps_raw_values_and_partitions_by_key(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    servers = kafka_broker.bootstrap_servers
    source_topic = await kafka_topic(partitions=2)
    output_topic = await kafka_topic(partitions=3)
    # Not UTF-8, not JSON: raw bytes must pass untouched.
    payloads = [bytes([n % 256, 0xFF, 0x00, 0xFE]) + n.to_bytes(4, "big") for n in range(120)]
    await produce(
        servers,
        source_topic,
        (Message(p, key=f"k{n % 5}".encode()) for n, p in enumerate(payloads)),
    )

    flow = Flow("bytes-round-trip")
    source = KafkaSource(
        source_topic,
        bootstrap_servers=servers,
        bounded=True,
        value_deserializer="bytes",
        with_metadata=True,
    )
    (
        flow.from_source(source)
        .map(lambda r: (r.key, r.value[::-1]))
        .sink(
            KafkaSink(
                output_topic,
                bootstrap_servers=servers,
                key=lambda kv: kv[0],
                value=lambda kv: kv[1],
                key_serializer="bytes",
                value_serializer="bytes",
            )
        )
    )
    await flow.run()

    records = await read_topic(servers, output_topic, at_least=120)
    assert sorted(r.value for r in records) == sorted(p[::-1] for p in payloads)
    for record in records:
        n = int.from_bytes(record.value[::-1][4:], "big")
        assert record.key == f"k{n % 5}".encode()
        # The sink's key decides the partition, as Kafka's Java clients would place it.
        assert record.partition == _partition_of(record.key, 3)
    assert len({r.partition for r in records}) > 1


async def test_str_round_trip_decodes_and_encodes_utf8(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    servers = kafka_broker.bootstrap_servers
    source_topic = await kafka_topic(partitions=2)
    output_topic = await kafka_topic(partitions=2)
    texts = [f"user-{n % 4}|grüße №{n} ✓" for n in range(60)]
    await produce(servers, source_topic, (Message(t.encode(), key=t.split("|")[0].encode()) for t in texts))

    flow = Flow("str-round-trip")
    source = KafkaSource(
        source_topic,
        bootstrap_servers=servers,
        bounded=True,
        value_deserializer="str",
        key_deserializer="str",
        with_metadata=True,
    )
    decoded = flow.from_source(source).map(lambda r: (r.key, r.value)).collect()
    (
        flow.from_source(
            KafkaSource(source_topic, bootstrap_servers=servers, bounded=True, value_deserializer="str")
        )
        .map(str.upper)
        .sink(
            KafkaSink(
                output_topic,
                bootstrap_servers=servers,
                key=lambda text: text.split("|")[0],
                value_serializer="str",
            )
        )
    )
    await flow.run()

    # key_deserializer="str" and value_deserializer="str" give text, exactly as produced.
    assert sorted(decoded.values) == sorted((t.split("|")[0], t) for t in texts)
    records = await read_topic(servers, output_topic, at_least=60)
    assert sorted(r.value.decode("utf-8") for r in records) == sorted(t.upper() for t in texts)
    partition_of_key: dict[bytes, set[int]] = {}
    for record in records:
        assert record.key == record.value.decode().split("|")[0].encode()
        partition_of_key.setdefault(record.key, set()).add(record.partition)
    assert len(partition_of_key) == 4
    assert all(len(found) == 1 for found in partition_of_key.values())


# -- 3. metadata --------------------------------------------------------------------------------------


async def test_with_metadata_gives_kafka_records(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    servers = kafka_broker.bootstrap_servers
    topic = await kafka_topic(partitions=2)
    base = 1_700_000_000_000
    messages = [
        Message(b'{"n": 0}', key=b"alpha", partition=0, timestamp_ms=base, headers=[("trace", b"t-0")]),
        Message(
            b'{"n": 1}',
            key=b"beta",
            partition=1,
            timestamp_ms=base + 5,
            headers=[("a", b""), ("b", b"\xff")],
        ),
        Message(b'{"n": 2}', key=None, partition=1, timestamp_ms=base + 9),
        Message(b'{"n": 3}', key=b"alpha", partition=0, timestamp_ms=base + 1),
    ]
    written = await produce(servers, topic, messages)

    flow = Flow("metadata")
    source = KafkaSource(topic, bootstrap_servers=servers, bounded=True, with_metadata=True)
    out = flow.from_source(source).collect()
    await flow.run()

    expected = [
        KafkaRecord(
            topic=topic,
            partition=meta.partition,
            offset=meta.offset,
            timestamp=m.timestamp_ms,
            key=m.key,  # key_deserializer="bytes" by default
            value=orjson.loads(m.value),
            headers=tuple(m.headers),
        )
        for m, meta in zip(messages, written, strict=True)
        if m.timestamp_ms is not None and m.value is not None
    ]
    assert all(isinstance(r, KafkaRecord) for r in out.values)

    def where(record: KafkaRecord) -> tuple[int, int]:
        return record.partition, record.offset

    assert sorted(out.values, key=where) == sorted(expected, key=where)
    assert [r.offset for r in out.values if r.partition == 0] == [0, 1]  # a partition's order kept


# -- 4. start positions -------------------------------------------------------------------------------


async def test_start_earliest_reads_everything_and_a_timestamp_reads_from_that_time(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    servers = kafka_broker.bootstrap_servers
    topic = await kafka_topic(partitions=2)
    base = 1_700_000_000_000
    await produce(
        servers,
        topic,
        (
            Message(orjson.dumps({"n": n}), partition=n % 2, timestamp_ms=base + 1_000 * n)
            for n in range(20)
        ),
    )

    flow = Flow("earliest")
    earliest = flow.from_source(
        KafkaSource(topic, bootstrap_servers=servers, start="earliest", bounded=True)
    )
    everything = earliest.map(lambda r: r["n"]).collect()
    from_time = (
        flow.from_source(KafkaSource(topic, bootstrap_servers=servers, start=base + 12_000, bounded=True))
        .map(lambda r: r["n"])
        .collect()
    )
    await flow.run()

    assert sorted(everything.values) == list(range(20))
    assert sorted(from_time.values) == list(range(12, 20))  # the records from that time on, per partition


async def test_start_timestamp_after_the_last_record_reads_nothing(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    servers = kafka_broker.bootstrap_servers
    topic = await kafka_topic(partitions=2)
    base = 1_700_000_000_000
    await produce(
        servers,
        topic,
        (
            Message(orjson.dumps({"n": n}), partition=n % 2, timestamp_ms=base + 1_000 * n)
            for n in range(20)
        ),
    )

    # aiokafka's own offset reset, still in flight right after assign(), used to override the
    # source's seek_to_end() about five times in six: six sources in turn catch that every time.
    read: list[list[int]] = []
    for attempt in range(6):
        flow = Flow(f"after-the-end-{attempt}")
        source = KafkaSource(topic, bootstrap_servers=servers, start=base + 60_000, bounded=True)
        out = flow.from_source(source).map(lambda r: r["n"]).collect()
        await flow.run()
        read.append(out.values)
        assert source.snapshot() == {(topic, 0): 10, (topic, 1): 10}

    assert read == [[]] * 6


async def test_start_latest_skips_what_was_there_and_reads_what_comes(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    servers = kafka_broker.bootstrap_servers
    topic = await kafka_topic(partitions=2)
    await produce_json(servers, topic, ({"n": n, "when": "before"} for n in range(20)), key=str)

    flow = Flow("latest")
    source = KafkaSource(topic, bootstrap_servers=servers, start="latest")
    seen: list[Any] = []
    flow.from_source(source).sink_to_callback(seen.append)

    async def produce_after_positioned() -> None:
        # The source's positions are set once it has sought to the end of each partition.
        await eventually(lambda: len(source.positions.get(0, {})) == 2, message="source never positioned")
        assert sum(source.snapshot().values()) == 20  # at the end of both partitions
        await produce_json(servers, topic, ({"n": n, "when": "after"} for n in range(20, 30)), key=str)

    producer = asyncio.create_task(produce_after_positioned())
    await run_until(flow, source, lambda: len(seen) >= 10, message=lambda: f"seen {seen}")
    await producer

    assert sorted(v["n"] for v in seen) == list(range(20, 30))
    assert {v["when"] for v in seen} == {"after"}


async def test_start_committed_resumes_where_the_group_stopped(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    servers = kafka_broker.bootstrap_servers
    topic = await kafka_topic(partitions=2)
    await produce_json(servers, topic, ({"n": n} for n in range(200)), key=lambda v: str(v["n"]))
    group = f"committed-{uuid.uuid4().hex[:8]}"

    first_seen: list[int] = []
    first_flow = Flow("committed-1")
    first = KafkaSource(topic, bootstrap_servers=servers, group_id=group, max_records=10)

    def take(n: int) -> None:
        first_seen.append(n)
        if len(first_seen) == 30:
            first.stop()  # the source ends after the batch in hand (at most 10 records)

    first_flow.from_source(first).map(lambda r: r["n"]).sink_to_callback(take)
    await run_until(first_flow, first, lambda: len(first_seen) >= 30)
    assert 30 <= len(first_seen) < 40  # stopped part way: the commit is what the test is about
    assert sum(first.snapshot().values()) == len(first_seen)

    second_seen: list[int] = []
    second_flow = Flow("committed-2")
    second = KafkaSource(topic, bootstrap_servers=servers, group_id=group)
    second_flow.from_source(second).map(lambda r: r["n"]).sink_to_callback(second_seen.append)
    await run_until(
        second_flow,
        second,
        lambda: len(first_seen) + len(second_seen) >= 200,
        message=lambda: f"first read {len(first_seen)}, second {len(second_seen)}",
    )

    assert not set(first_seen) & set(second_seen)  # the second run read only the rest
    assert sorted(first_seen + second_seen) == list(range(200))

    # start="earliest" ignores what the group committed (bounded: the flow ends by itself).
    third_flow = Flow("committed-3")
    third = KafkaSource(topic, bootstrap_servers=servers, group_id=group, start="earliest", bounded=True)
    everything = third_flow.from_source(third).map(lambda r: r["n"]).collect()
    await third_flow.run()
    assert sorted(everything.values) == list(range(200))


# -- 5. per-partition watermarks ----------------------------------------------------------------------


class TimerPerRecord(KeyedProcessFunction[Any, tuple[Any, ...]]):
    """For every record: ``("record", value, timestamp, watermark before it)`` and an event-time timer
    at the record's timestamp; for every timer that fires: ``("timer", time, watermark)``."""

    def process_element(self, value: Any, ctx: Context, out: Collector) -> None:
        timers = ctx.timer_service()
        out.collect(("record", value, ctx.timestamp, timers.current_watermark()))
        assert ctx.timestamp is not None
        timers.register_event_time_timer(ctx.timestamp)

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        out.collect(("timer", timestamp, ctx.timer_service().current_watermark()))


def _records(events: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [e for e in events if e[0] == "record"]


def _timers(events: list[tuple[Any, ...]]) -> list[int]:
    return [e[1] for e in events if e[0] == "timer"]


async def test_the_watermark_is_the_minimum_over_partitions(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    servers = kafka_broker.bootstrap_servers
    topic = await kafka_topic(partitions=2)
    ahead: list[dict[str, Any]] = [{"k": "a", "p": 0, "ts": 100_000 + n} for n in range(50)]
    behind: list[dict[str, Any]] = [{"k": "a", "p": 1, "ts": 1_000 + n} for n in range(50)]
    await produce_json(servers, topic, ahead, partition=0)

    flow = Flow("per-partition-watermarks")
    source = KafkaSource(topic, bootstrap_servers=servers)
    events: list[tuple[Any, ...]] = []
    (
        flow.from_source(source, watermarks=WatermarkStrategy.punctuated("ts"))
        .key_by("k")
        .process(TimerPerRecord())
        .sink_to_callback(events.append)
    )
    async with running(flow, source) as job:
        await job.until(lambda: len(_records(events)) == 50, message=lambda: f"{len(events)} events")
        # Partition 1 has shown no record, so no watermark: event time has not moved at all.
        assert _timers(events) == []
        assert {e[3] for e in _records(events)} == {MIN_WATERMARK}

        await produce_json(servers, topic, behind, partition=1)
        await job.until(
            lambda: len(_timers(events)) >= 50, message=lambda: f"timers fired: {_timers(events)}"
        )
        # Partition 1's records moved event time to its own (lower) timestamps, never to partition 0's.
        assert sorted(_timers(events)) == [r["ts"] for r in behind]
        assert len(_records(events)) == 100
    # ... none of them was late: each came before the watermark passed its timestamp ...
    assert all(watermark < ts for _, _, ts, watermark in _records(events))
    # ... and partition 0's timers waited for the end of the stream (the final watermark).
    assert sorted(_timers(events)) == sorted(r["ts"] for r in ahead + behind)
    assert _timers(events)[50:] == [r["ts"] for r in ahead]


async def test_kafka_timestamp_stamps_records_with_their_kafka_time(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    servers = kafka_broker.bootstrap_servers
    topic = await kafka_topic(partitions=1)
    base = 1_650_000_000_000
    stamps = [base + 1_000 * n for n in range(10)]
    flow = Flow("kafka-time")
    source = KafkaSource(topic, bootstrap_servers=servers)
    events: list[tuple[Any, ...]] = []
    (
        flow.from_source(source, watermarks=WatermarkStrategy.punctuated(kafka_timestamp))
        .key_by("k")
        .process(TimerPerRecord())
        .sink_to_callback(events.append)
    )
    async with running(flow, source) as job:
        # No "ts" field anywhere: the event time is the producer's timestamp of each record.
        await produce(
            servers,
            topic,
            (Message(orjson.dumps({"k": "a", "n": n}), timestamp_ms=ts) for n, ts in enumerate(stamps)),
        )
        # While the stream runs, the Kafka timestamps drive the watermark: all ten timers fire.
        await job.until(lambda: len(_timers(events)) == 10, message=lambda: f"events: {events}")
    assert [(e[1]["n"], e[2]) for e in _records(events)] == list(enumerate(stamps))
    assert _timers(events) == stamps


# -- 6. idleness --------------------------------------------------------------------------------------


async def test_an_idle_partition_stops_holding_event_time_back(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    servers = kafka_broker.bootstrap_servers
    topic = await kafka_topic(partitions=2)  # partition 1 never gets a record
    clock = ManualClock(0)
    flow = Flow("idleness", clock=clock)
    source = KafkaSource(topic, bootstrap_servers=servers)
    events: list[tuple[Any, ...]] = []
    strategy = WatermarkStrategy.punctuated("ts").with_idleness(200)
    (
        flow.from_source(source, watermarks=strategy)
        .key_by("k")
        .process(TimerPerRecord())
        .sink_to_callback(events.append)
    )
    async with running(flow, source) as job:
        await job.until(lambda: len(source.positions.get(0, {})) == 2)  # both assigned at time 0
        await produce_json(servers, topic, ({"k": "a", "ts": 1_000 * n} for n in range(1, 6)), partition=0)
        await job.until(lambda: len(_records(events)) == 5)
        assert _timers(events) == []  # partition 1 holds event time back

        clock.advance(150)  # partition 1 silent for 150 ms: not idle yet
        await produce_json(servers, topic, [{"k": "a", "ts": 6_000}], partition=0)
        await job.until(lambda: len(_records(events)) == 6)
        assert _timers(events) == []

        # At 250 ms partition 1 has been silent for 250 ms (>= 200), partition 0 for 100 ms: the next
        # poll marks partition 1 idle, and event time jumps to partition 0's watermark.
        clock.advance(100)
        await job.until(lambda: len(_timers(events)) == 6, message=lambda: f"events: {events}")
        assert _timers(events) == [1_000 * n for n in range(1, 7)]
        assert events[-1] == ("timer", 6_000, 6_000)


async def test_without_idleness_a_silent_partition_holds_event_time_back(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    servers = kafka_broker.bootstrap_servers
    topic = await kafka_topic(partitions=2)
    clock = ManualClock(0)
    flow = Flow("no-idleness", clock=clock)
    source = KafkaSource(topic, bootstrap_servers=servers)
    events: list[tuple[Any, ...]] = []
    (
        flow.from_source(source, watermarks=WatermarkStrategy.punctuated("ts"))
        .key_by("k")
        .process(TimerPerRecord())
        .sink_to_callback(events.append)
    )
    async with running(flow, source) as job:
        await job.until(lambda: len(source.positions.get(0, {})) == 2)
        await produce_json(servers, topic, ({"k": "a", "ts": 1_000 * n} for n in range(1, 6)), partition=0)
        await job.until(lambda: len(_records(events)) == 5)
        clock.advance(10_000)  # long past any timeout an idle-aware source could have
        # A record read after the clock moved: the source has polled (and decided) at the new time.
        await produce_json(servers, topic, [{"k": "a", "ts": 6_000}], partition=0)
        await job.until(lambda: len(_records(events)) == 6)
        fired_while_running = _timers(events)
    assert fired_while_running == []
    # Stopping ends the stream: the final watermark fires every timer.
    assert _timers(events) == [1_000 * n for n in range(1, 7)]


# -- 7. dead letters ----------------------------------------------------------------------------------

_BAD_INPUT: dict[str, tuple[list[tuple[bytes, Any]], list[bytes], str]] = {
    # deserializer: (good payloads and what they decode to, malformed payloads, the error's type)
    "json": (
        [(b'{"n": 1}', {"n": 1}), (b'{"n": 2, "s": "\\u00e9"}', {"n": 2, "s": "\u00e9"}), (b"[3]", [3])],
        [b"not json", b'{"n": ', b"\xff\xfe{}"],
        "orjson.JSONDecodeError",
    ),
    "str": (
        [(b"plain", "plain"), ("gr\u00fc\u00dfe".encode(), "gr\u00fc\u00dfe"), (b"", "")],
        [b"\xff\xfe\xfd", b"half a char \xc3", b"\xed\xa0\x80 surrogate"],
        "builtins.UnicodeDecodeError",
    ),
}


@pytest.mark.parametrize("deserializer", ["json", "str"])
async def test_malformed_records_go_to_the_dead_letter_topic_byte_for_byte(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory, deserializer: str
) -> None:
    servers = kafka_broker.bootstrap_servers
    topic = await kafka_topic(partitions=2)
    dead_topic = await kafka_topic(partitions=1)
    good, bad, error_type = _BAD_INPUT[deserializer]
    messages = []
    for n, (raw, _) in enumerate(good):
        messages.append(Message(raw, key=f"good-{n}".encode(), partition=n % 2))
    for n, raw in enumerate(bad):
        headers = [("trace", f"t-{n}".encode()), ("binary", b"\x00\xff")]
        messages.append(Message(raw, key=b"\x00bad-" + bytes([n]), partition=n % 2, headers=headers))
    written = await produce(servers, topic, messages)

    flow = Flow("dead-letters")
    dead_letters = DeadLetterTopic(dead_topic)
    source = KafkaSource(
        topic,
        bootstrap_servers=servers,
        bounded=True,
        value_deserializer=deserializer,
        dead_letters=dead_letters,
    )
    out = flow.from_source(source).collect()
    await flow.run()

    # The good records still flow, decoded.
    assert sorted(map(repr, out.values)) == sorted(repr(value) for _, value in good)
    assert source.records_read == len(good)
    assert source.dead_letter_count == dead_letters.count == len(bad)

    letters = await read_topic(servers, dead_topic, at_least=len(bad))
    assert len(letters) == len(bad)
    origin = {m.value: (m, meta) for m, meta in zip(messages, written, strict=True)}
    for letter in letters:
        message, meta = origin[letter.value]  # the exact raw value...
        assert message.value in bad
        assert letter.key == message.key  # ... and key
        headers = list(letter.headers)
        assert headers[: len(message.headers)] == list(message.headers)  # the original headers kept
        added = dict(headers[len(message.headers) :])
        assert set(added) == {
            "actorflow.error",
            "actorflow.error.type",
            "actorflow.source.topic",
            "actorflow.source.partition",
            "actorflow.source.offset",
        }
        assert added["actorflow.error.type"] == error_type.encode()
        assert added["actorflow.error"].startswith(error_type.rsplit(".", 1)[1].encode() + b": ")
        assert added["actorflow.source.topic"] == topic.encode()
        assert added["actorflow.source.partition"] == str(meta.partition).encode()
        assert added["actorflow.source.offset"] == str(meta.offset).encode()


async def test_a_dead_letter_topic_shared_by_parallel_source_instances(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    servers = kafka_broker.bootstrap_servers
    topic = await kafka_topic(partitions=1)
    dead_topic = await kafka_topic(partitions=1)
    await produce(servers, topic, [Message(b'{"n": 0}'), Message(b"bad"), Message(b'{"n": 1}')])

    # Two instances, one partition: instance 1 reads nothing and ends at once (bounded), while
    # instance 0 still has a dead letter to publish.
    flow = Flow("dead-letters-parallel", parallelism=2)
    dead_letters = DeadLetterTopic(dead_topic)
    source = KafkaSource(topic, bootstrap_servers=servers, bounded=True, dead_letters=dead_letters)
    out = flow.from_source(source).collect()
    await flow.run()

    assert sorted(v["n"] for v in out.values) == [0, 1]
    assert source.dead_letter_count == dead_letters.count == 1
    letters = await read_topic(servers, dead_topic, at_least=1)
    assert [letter.value for letter in letters] == [b"bad"]


async def test_a_malformed_record_fails_the_job_without_dead_letters(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    servers = kafka_broker.bootstrap_servers
    topic = await kafka_topic(partitions=1)
    await produce(servers, topic, [Message(b'{"n": 0}'), Message(b'{"n": 1}'), Message(b"{oops")])

    flow = Flow("no-dead-letters")
    source = KafkaSource(topic, bootstrap_servers=servers, bounded=True)
    flow.from_source(source).collect()
    with pytest.raises(ValueError, match=rf"{topic}/0@2\b") as raised:
        await flow.run()
    assert "JSONDecodeError" in str(raised.value)
    assert source.dead_letter_count == 0


async def test_a_dead_letter_callable_receives_dead_letters(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    servers = kafka_broker.bootstrap_servers
    topic = await kafka_topic(partitions=1)
    await produce(
        servers, topic, [Message(b'"a"'), Message(b"\x80\x81"), Message(b'"b"'), Message(b"nope")]
    )

    flow = Flow("dead-letter-callable")
    letters: list[DeadLetter] = []
    source = KafkaSource(topic, bootstrap_servers=servers, bounded=True, dead_letters=letters.append)
    out = flow.from_source(source).collect()
    await flow.run()

    assert out.values == ["a", "b"]
    assert [(letter.raw, letter.origin) for letter in letters] == [
        (b"\x80\x81", f"{topic}/0@1"),
        (b"nope", f"{topic}/0@3"),
    ]
    assert all(letter.error.startswith("JSONDecodeError: ") for letter in letters)
    assert source.dead_letter_count == 2


# -- 8. the sink: errors, topic creation, topic per record, headers --------------------------------


async def _topics(servers: str) -> dict[str, int]:
    """Every topic on the broker with its partition count."""
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        names = await admin.list_topics()
        described = await admin.describe_topics(names)
        return {t["topic"]: len(t["partitions"]) for t in described}
    finally:
        await admin.close()


async def _delete_topics(servers: str, *names: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        await admin.delete_topics(list(names))
    finally:
        await admin.close()


class _TrackedSink(KafkaSink):
    """A KafkaSink that keeps the per-instance copies a flow makes of it, to check their producers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.instances: list[KafkaSink] = []

    def copy(self) -> KafkaSink:
        instance = super().copy()
        assert isinstance(instance, KafkaSink)
        self.instances.append(instance)
        return instance

    def open_producers(self) -> list[Any]:
        return [i._producer for i in self.instances if i._producer is not None and not i._producer._closed]

    async def close_leaked_producers(self) -> None:
        for producer in self.open_producers():
            await producer.stop()


async def test_a_missing_topic_fails_the_flow_at_once_naming_it(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    servers = kafka_broker.bootstrap_servers
    existing = await kafka_topic(partitions=1)
    missing = f"no-such-topic-{uuid.uuid4().hex[:12]}"
    loop = asyncio.get_running_loop()

    fixed = Flow("missing-fixed")
    fixed_sink = _TrackedSink(missing, bootstrap_servers=servers)
    fixed.from_iterable([{"n": 1}]).sink(fixed_sink)
    began = loop.time()
    try:
        with pytest.raises(LookupError, match=rf"'{missing}' does not exist.*create_topics=True"):
            await fixed.run()
        assert loop.time() - began < 10  # not after a 40 s metadata timeout
    finally:
        # Should the sink leak its producer (test_a_sink_that_fails_to_open_closes_its_producer),
        # don't let it fail whichever later test collects it.
        await fixed_sink.close_leaked_producers()

    # A topic chosen per record is checked when a record first names it.
    per_record = Flow("missing-per-record")
    per_record.from_iterable([{"to": existing}, {"to": missing}]).sink(
        KafkaSink(lambda r: r["to"], bootstrap_servers=servers)
    )
    began = loop.time()
    with pytest.raises(LookupError, match=rf"'{missing}' does not exist"):
        await per_record.run()
    assert loop.time() - began < 10
    assert missing not in await _topics(servers)  # nothing was auto-created on the way

    # The source fails as clearly on a topic that is not there.
    reading = Flow("missing-source")
    reading.from_source(KafkaSource(missing, bootstrap_servers=servers, bounded=True)).collect()
    began = loop.time()
    with pytest.raises(LookupError, match=rf"'{missing}' does not exist"):
        await reading.run()
    assert loop.time() - began < 10


async def test_a_sink_that_fails_to_open_closes_its_producer(
    kafka_broker: KafkaEndpoint,
) -> None:
    servers = kafka_broker.bootstrap_servers
    flow = Flow("missing-leak")
    sink = _TrackedSink(f"no-such-topic-{uuid.uuid4().hex[:12]}", bootstrap_servers=servers)
    flow.from_iterable([{"n": 1}]).sink(sink)
    try:
        with pytest.raises(LookupError):
            await flow.run()
        assert len(sink.instances) == 1
        assert sink.open_producers() == []
    finally:
        await sink.close_leaked_producers()


async def test_create_topics_creates_a_missing_topic_with_its_partitions(
    kafka_broker: KafkaEndpoint,
) -> None:
    servers = kafka_broker.bootstrap_servers
    fixed = f"created-fixed-{uuid.uuid4().hex[:12]}"
    routed = f"created-routed-{uuid.uuid4().hex[:12]}"
    try:
        flow = Flow("create-topics")
        values = [{"n": n, "to": fixed if n % 2 else routed} for n in range(40)]
        flow.from_iterable(values).sink(
            KafkaSink(fixed, bootstrap_servers=servers, create_topics=True, partitions=3, key="n")
        )
        flow.from_iterable(values).sink(
            KafkaSink(lambda r: r["to"], bootstrap_servers=servers, create_topics=True, partitions=2)
        )
        await flow.run()

        topics = await _topics(servers)
        # The broker's own auto-creation would have made one partition (num.partitions=1).
        assert topics[fixed] == 3
        assert topics[routed] == 2
        in_fixed = values_of(await read_topic(servers, fixed, at_least=60))
        assert sorted(v["n"] for v in in_fixed) == sorted([*range(40), *range(1, 40, 2)])
        in_routed = values_of(await read_topic(servers, routed, at_least=20))
        assert sorted(v["n"] for v in in_routed) == list(range(0, 40, 2))
    finally:
        await _delete_topics(servers, *[t for t in (fixed, routed) if t in await _topics(servers)])


async def test_a_record_larger_than_max_request_size_fails_with_its_size(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    servers = kafka_broker.bootstrap_servers
    topic = await kafka_topic(partitions=1)
    flow = Flow("too-large")
    flow.from_iterable([{"n": 0, "blob": "x" * 10}, {"n": 1, "blob": "x" * 2_000}]).sink(
        KafkaSink(topic, bootstrap_servers=servers, producer_options={"max_request_size": 1_000})
    )
    with pytest.raises(ValueError, match=r"a record of 20\d\d bytes .*max_request_size") as raised:
        await flow.run()
    assert topic in str(raised.value)


async def test_a_record_larger_than_the_topic_accepts_fails_with_its_size(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    servers = kafka_broker.bootstrap_servers
    topic = await kafka_topic(partitions=1, config={"max.message.bytes": "1000"})
    flow = Flow("too-large-for-the-topic")
    flow.from_iterable([{"n": 0, "blob": "x" * 5_000}]).sink(KafkaSink(topic, bootstrap_servers=servers))
    with pytest.raises(ValueError, match=r"a record of 50\d\d bytes") as raised:
        await flow.run()
    assert topic in str(raised.value)


async def test_the_topic_can_be_chosen_per_record_and_headers_added(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    servers = kafka_broker.bootstrap_servers
    small = await kafka_topic(partitions=2)
    large = await kafka_topic(partitions=1)
    values = [{"n": n, "dest": large if n >= 70 else small} for n in range(100)]

    flow = Flow("routing", parallelism=2)
    flow.from_iterable(values).sink(
        KafkaSink(
            lambda r: r["dest"],
            bootstrap_servers=servers,
            key=lambda r: r["n"],  # str serializer by default: the key is "7"
            value=lambda r: {"n": r["n"]},
            headers=lambda r: [("n", str(r["n"]).encode()), ("parity", b"odd" if r["n"] % 2 else b"even")],
        )
    )
    await flow.run()

    small_records = await read_topic(servers, small, at_least=70)
    large_records = await read_topic(servers, large, at_least=30)
    assert sorted(v["n"] for v in values_of(small_records)) == list(range(70))
    assert sorted(v["n"] for v in values_of(large_records)) == list(range(70, 100))
    for record in small_records + large_records:
        n = orjson.loads(record.value)["n"]
        assert record.key == str(n).encode()
        assert list(record.headers) == [("n", str(n).encode()), ("parity", b"odd" if n % 2 else b"even")]


# -- 9. a broker restart in the middle of a job -------------------------------------------------------


@pytest.mark.timeout(180)
async def test_a_job_reconnects_after_a_broker_restart_and_processes_every_record(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    if not kafka_broker.restartable:
        pytest.skip("the broker at $KAFKA_BOOTSTRAP_SERVERS is not ours to restart")
    servers = kafka_broker.bootstrap_servers
    source_topic = await kafka_topic(partitions=3)
    output_topic = await kafka_topic(partitions=3)
    total = 3_000
    progress = {"produced": 0}
    output_ids: list[int] = []  # every id the output topic shows, duplicates included
    restarting = asyncio.Event()

    async def feed() -> None:
        """Produce the input in steps of 50 acknowledged records: a third before the restart, the
        rest from the moment it begins (so the job has work on both sides of it)."""
        # Idempotent, so that its own retries across the restart add no duplicates to the input.
        producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            for first in range(0, total, 50):
                if first == total // 3:
                    await restarting.wait()
                sent = [
                    await producer.send(source_topic, orjson.dumps({"id": n}), key=str(n).encode())
                    for n in range(first, first + 50)
                ]
                await asyncio.gather(*sent)
                progress["produced"] = first + 50
        finally:
            await producer.stop()

    async def tail() -> None:
        """Read the output topic as it fills (no group: every partition, from the start)."""
        consumer = AIOKafkaConsumer(output_topic, bootstrap_servers=servers, auto_offset_reset="earliest")
        await consumer.start()
        try:
            while True:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    output_ids.extend(orjson.loads(r.value)["id"] for r in records)
        finally:
            await consumer.stop()

    flow = Flow("broker-restart")
    source = KafkaSource(
        source_topic, bootstrap_servers=servers, group_id=f"restart-{uuid.uuid4().hex[:8]}"
    )
    (
        flow.from_source(source)
        .map(lambda r: {"id": r["id"], "square": r["id"] ** 2})
        .sink(KafkaSink(output_topic, bootstrap_servers=servers, key="id"))
    )
    feeder = asyncio.create_task(feed())
    tailer = asyncio.create_task(tail())

    def all_in_output() -> bool:
        for task in (feeder, tailer):
            if task.done() and task.exception() is not None:
                raise AssertionError(f"a helper task failed: {task.exception()!r}")
        return len(set(output_ids)) == total

    try:
        async with running(flow, source) as job:
            await job.until(lambda: len(output_ids) >= 300, within=30)
            produced_at_restart, output_at_restart = progress["produced"], len(output_ids)
            restarting.set()
            await asyncio.to_thread(kafka_broker.restart)
            await job.until(
                all_in_output,
                within=120,
                message=lambda: (
                    f"{len(set(output_ids))} of {total} ids in the output, {progress['produced']} produced"
                ),
            )
        await feeder
    finally:
        tailer.cancel()
        feeder.cancel()
        await asyncio.gather(tailer, feeder, return_exceptions=True)

    assert set(output_ids) == set(range(total))  # at least once: nothing lost
    duplicates = len(output_ids) - total
    input_records = len(await read_topic(servers, source_topic, at_least=total))
    with capsys.disabled():
        print(
            f"\n[broker restart] when it began: {produced_at_restart} of {total} produced, "
            f"{output_at_restart} in the output; afterwards {input_records} records in the input "
            f"topic, the source read {source.records_read}, "
            f"{duplicates} duplicate(s) in the output"
        )


# -- 10. connection settings pass through ----------------------------------------------------------


async def test_client_settings_pass_through_to_aiokafka(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    servers = kafka_broker.bootstrap_servers
    source_topic = await kafka_topic(partitions=2)
    output_topic = await kafka_topic(partitions=1)
    await produce_json(servers, source_topic, ({"n": n} for n in range(20)), key=lambda v: str(v["n"]))
    group = f"settings-{uuid.uuid4().hex[:8]}"

    flow = Flow("settings")
    source = KafkaSource(
        source_topic,
        bootstrap_servers=servers,
        group_id=group,
        client_options={
            "client_id": "actorflow-test",
            "request_timeout_ms": 20_000,
            "fetch_max_bytes": 1 << 20,
        },
    )
    sink = _TrackedSink(
        output_topic,
        bootstrap_servers=servers,
        producer_options={"client_id": "actorflow-test-sink", "linger_ms": 5, "compression_type": "gzip"},
    )
    seen: list[Any] = []
    stream = flow.from_source(source)
    stream.sink(sink)
    stream.sink_to_callback(seen.append)

    members: list[dict[str, Any]] = []

    async def group_members() -> list[dict[str, Any]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=servers)
        await admin.start()
        try:
            responses = await admin.describe_consumer_groups([group])
            return [m for r in responses for g in r.to_object()["groups"] for m in g["members"]]
        finally:
            await admin.close()

    async with running(flow, source) as job:
        await job.until(lambda: len(seen) == 20)
        members = await group_members()
        producers = [i._producer for i in sink.instances if i._producer is not None]
    # The broker saw the source's consumer under the client id it was given ...
    assert [m["client_id"] for m in members] == ["actorflow-test"]
    # ... and the sink's producer was made with the producer options.
    assert [p.client._client_id for p in producers] == ["actorflow-test-sink"]
    assert values_of(await read_topic(servers, output_topic, at_least=20)) == seen

    # Untouched: what aiokafka does not know, aiokafka itself refuses.
    failing = Flow("unknown-setting")
    failing.from_source(
        KafkaSource(source_topic, bootstrap_servers=servers, bounded=True, client_options={"no_such": 1})
    ).collect()
    with pytest.raises(TypeError, match="no_such"):
        await failing.run()


async def test_records_written_counts_every_acknowledged_record_once_over_instances(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    servers = kafka_broker.bootstrap_servers
    topic = await kafka_topic(partitions=2)
    flow = Flow("sink-counts", parallelism=2, batch_size=50)
    sink = _TrackedSink(topic, bootstrap_servers=servers, key="n")
    returned = flow.from_iterable({"n": n} for n in range(1_000)).rebalance().sink(sink)
    await flow.run()

    assert returned is sink
    assert len(sink.instances) == 2
    # Each instance flushes only its own pending acknowledgements: no record is counted twice.
    assert sink.records_written == 1_000
    assert len(await read_topic(servers, topic, at_least=1_000)) == 1_000


# -- topics by pattern ----------------------------------------------------------------------------------


async def test_a_pattern_subscribes_to_every_matching_topic(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    servers = kafka_broker.bootstrap_servers
    first, second, other = await kafka_topic(), await kafka_topic(partitions=2), await kafka_topic()
    await produce_json(servers, first, ({"n": n} for n in range(10)))
    await produce_json(servers, second, ({"n": n} for n in range(10, 30)))
    await produce_json(servers, other, ({"n": n} for n in range(100, 105)))

    # Match the first two by their exact names under one regular expression, not the third.
    pattern = f"^({re.escape(first)}|{re.escape(second)})$"
    flow = Flow("pattern")
    source = KafkaSource(
        pattern=pattern, bootstrap_servers=servers, group_id=f"pattern-{uuid.uuid4().hex[:8]}"
    )
    seen: list[int] = []
    flow.from_source(source).map(lambda r: r["n"]).sink_to_callback(seen.append)
    await run_until(flow, source, lambda: len(seen) >= 30, message=lambda: f"saw {sorted(seen)}")
    assert sorted(seen) == list(range(30))


async def test_a_record_without_its_event_time_is_a_dead_letter(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    # A poison record must not fail the job at every restart: one that decodes but has no event
    # time to read (field missing, not a number, not an object) goes to the dead letters too.
    servers = kafka_broker.bootstrap_servers
    topic = await kafka_topic(partitions=1)
    values = [b'{"ts": 1}', b'{"n": 2}', b'{"ts": "soon"}', b"[3]", b'{"ts": 4}', b'{"ts": 5.5}']
    await produce(servers, topic, [Message(value) for value in values])

    flow = Flow("no-time")
    letters: list[DeadLetter] = []
    source = KafkaSource(topic, bootstrap_servers=servers, bounded=True, dead_letters=letters.append)
    out = flow.from_source(source, watermarks=WatermarkStrategy.punctuated("ts", lag_ms=0)).collect()
    await flow.run()

    assert out.values == [{"ts": 1}, {"ts": 4}, {"ts": 5.5}]
    assert [letter.raw for letter in letters] == [b'{"n": 2}', b'{"ts": "soon"}', b"[3]"]
    assert [letter.origin for letter in letters] == [f"{topic}/0@{n}" for n in (1, 2, 3)]
    assert "no event time in the record: KeyError" in letters[0].error
    assert "must be a number" in letters[1].error
    assert source.dead_letter_count == 3


async def test_a_record_without_its_event_time_fails_the_job_without_dead_letters(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    servers = kafka_broker.bootstrap_servers
    topic = await kafka_topic(partitions=1)
    await produce(servers, topic, [Message(b'{"ts": 1}'), Message(b'{"amount": 2}')])

    flow = Flow("no-time-fails")
    source = KafkaSource(topic, bootstrap_servers=servers, bounded=True)
    flow.from_source(source, watermarks=WatermarkStrategy.punctuated("ts", lag_ms=0)).collect()
    with pytest.raises(ValueError, match=rf"{topic}/0@1\b.*no event time in the record"):
        await flow.run()


def test_client_options_go_to_every_client_and_producer_options_to_the_producer_on_top() -> None:
    # One story throughout actorflow_kafka: client_options for every client an object makes (the
    # connection), producer_options for its producer only; the old producer_options alone still work.
    sink = KafkaSink(
        "alerts",
        bootstrap_servers="127.0.0.1:9092",
        client_options={"client_id": "fraud", "security_protocol": "PLAINTEXT"},
        producer_options={"linger_ms": 5, "client_id": "fraud-alerts"},
    )
    assert sink.client_options == {"client_id": "fraud", "security_protocol": "PLAINTEXT"}
    assert sink.producer_options == {
        "client_id": "fraud-alerts",
        "security_protocol": "PLAINTEXT",
        "linger_ms": 5,
    }
    old = KafkaSink("alerts", bootstrap_servers="127.0.0.1:9092", producer_options={"linger_ms": 5})
    assert old.producer_options == {"linger_ms": 5}
    dead = DeadLetterTopic("dead", client_options={"client_id": "x"}, producer_options={"linger_ms": 1})
    assert dead._options == {"client_id": "x", "linger_ms": 1}
