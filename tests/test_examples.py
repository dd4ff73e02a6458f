"""The examples run as the README says and find what they should."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from examples import embedded, fraud_detection, kafka_fraud_detection, kafka_producer
from tests.kafka_fixtures import KafkaEndpoint, TopicFactory

ROOT = Path(__file__).resolve().parent.parent


def _run_example(name: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "actorflow", "run", f"examples/{name}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.splitlines()


def test_fraud_detection_prints_alerts() -> None:
    alerts = _run_example("fraud_detection.py")
    assert alerts, "the bundled data has fraud patterns in it"
    assert all(line.startswith("ALERT card ") for line in alerts)


def test_windowed_count_prints_windows_and_late_records() -> None:
    lines = _run_example("windowed_count.py")
    assert any(" tx, " in line for line in lines)
    assert any(line.startswith("late: ") for line in lines)


async def test_embedded_service_gets_the_same_alerts_as_the_file_flow() -> None:
    alerts = await embedded.main()
    assert sorted(alerts) == sorted(_run_example("fraud_detection.py"))


async def test_kafka_example_writes_the_alerts_the_file_flow_prints(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    servers = kafka_broker.bootstrap_servers
    transactions, alerts_topic, dead = (
        await kafka_topic(partitions=4),
        await kafka_topic(),
        await kafka_topic(),
    )
    await kafka_producer.produce(servers, fraud_detection.DEFAULT_INPUT, topic=transactions)
    flow = kafka_fraud_detection.build(
        servers, bounded=True, transactions=transactions, alerts=alerts_topic, dead_letters=dead
    )
    await flow.run()

    consumer = AIOKafkaConsumer(alerts_topic, bootstrap_servers=servers, auto_offset_reset="earliest")
    await consumer.start()
    alerts: list[dict[str, Any]] = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=1000)
            if not batch:
                break
            alerts += [orjson.loads(r.value) for records in batch.values() for r in records]
    finally:
        await consumer.stop()
    expected = sorted(_run_example("fraud_detection.py"))
    assert sorted(fraud_detection.describe(alert) for alert in alerts) == expected
