"""Fraud detection on Kafka: transactions in from a topic, alerts out to another.

The same pattern as ``fraud_detection.py`` (a card's transaction under 1.00 directly followed by one
over 500.00 within a minute), reading the ``transactions`` topic with a consumer group and writing
alerts, keyed by card, to ``fraud-alerts``. Undecodable records go to ``transactions.dead`` with
their bytes and the error. Start several of these processes to share the partitions.

    python3 scripts/kafka/broker.py start          # or use any broker: KAFKA_BOOTSTRAP_SERVERS
    python3 examples/kafka_producer.py             # creates the topics, produces 5,000 transactions
    python3 -m actorflow run examples/kafka_fraud_detection.py     # Ctrl-C to stop
"""

from __future__ import annotations

import os

from actorflow import Flow, WatermarkStrategy
from actorflow_kafka import DeadLetterTopic, KafkaSink, KafkaSource

try:  # the pattern itself lives in the file-based example
    from fraud_detection import SmallThenLarge
except ImportError:  # pragma: no cover - imported as examples.kafka_fraud_detection
    from examples.fraud_detection import SmallThenLarge

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


def build(
    bootstrap_servers: str = BOOTSTRAP,
    *,
    bounded: bool = False,
    transactions: str = "transactions",
    alerts: str = "fraud-alerts",
    dead_letters: str = "transactions.dead",
) -> Flow:
    """The fraud-detection flow between the ``transactions`` and ``fraud-alerts`` topics."""
    flow = Flow("kafka-fraud-detection")
    source = KafkaSource(
        transactions,
        bootstrap_servers=bootstrap_servers,
        group_id="fraud-detection",
        dead_letters=DeadLetterTopic(dead_letters),
        bounded=bounded,
    )
    (
        flow.from_source(
            source,
            name="transactions",
            watermarks=WatermarkStrategy.bounded_out_of_orderness(5_000, "ts").with_idleness(10_000),
        )
        .key_by("card_id")
        .process(SmallThenLarge(), name="small-then-large")
        .sink(KafkaSink(alerts, bootstrap_servers=bootstrap_servers, key="card_id"))
    )
    return flow


flow = build()
