"""The ETL example against the real broker: every input lands once, in exactly one place."""

from __future__ import annotations

from pathlib import Path

import orjson

from examples import etl
from tests.kafka_fixtures import KafkaEndpoint, TopicFactory
from tests.kafka_helpers import Message, produce, read_topic, values_of

GOOD = [
    {"payment_id": n, "merchant_id": f"m{n % 120}", "amount": 10.0 + n, "ts": 1_000 * n} for n in range(60)
]
BAD = [
    {"payment_id": 100, "merchant_id": "m1", "amount": -5, "ts": 0},
    {"payment_id": "x", "merchant_id": "m1", "amount": 5, "ts": 0},
    ["not", "an", "object"],
]
UNDECODABLE = [b"{broken json", b"\xff\xfe"]


def enriched_reference() -> list[dict[str, object]]:
    return [
        {**p, "merchant": etl.MERCHANTS.get(str(p["merchant_id"]), {"name": None, "country": None})}
        for p in GOOD
    ]


async def fill(servers: str, topic: str) -> None:
    messages = [Message(orjson.dumps(v)) for v in [*GOOD[:30], *BAD]]
    messages += [Message(raw) for raw in UNDECODABLE]
    messages += [Message(orjson.dumps(v)) for v in GOOD[30:]]
    await produce(servers, topic, messages)


async def test_payments_are_validated_enriched_and_routed(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    servers = kafka_broker.bootstrap_servers
    topic, dead, invalid, enriched = [await kafka_topic() for _ in range(4)]
    await fill(servers, topic)
    flow = etl.build(
        servers,
        topic=topic,
        bounded=True,
        dead_letters=dead,
        invalid_topic=invalid,
        enriched_topic=enriched,
    )
    await flow.run()
    assert values_of(await read_topic(servers, enriched, at_least=len(GOOD))) == enriched_reference()
    reasons = [v["reason"] for v in values_of(await read_topic(servers, invalid, at_least=len(BAD)))]
    assert reasons == ["amount must be positive", "payment_id is missing or not int", "not a JSON object"]
    dead_records = await read_topic(servers, dead, at_least=len(UNDECODABLE))
    assert [record.value for record in dead_records] == UNDECODABLE


async def test_enriched_payments_can_go_to_an_exactly_once_file(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory, tmp_path: Path
) -> None:
    servers = kafka_broker.bootstrap_servers
    topic, dead, invalid = [await kafka_topic() for _ in range(3)]
    await fill(servers, topic)
    output = tmp_path / "enriched.jsonl"
    flow = etl.build(
        servers, topic=topic, bounded=True, output=str(output), dead_letters=dead, invalid_topic=invalid
    )
    await flow.run()
    assert [orjson.loads(line) for line in output.read_bytes().splitlines()] == enriched_reference()
