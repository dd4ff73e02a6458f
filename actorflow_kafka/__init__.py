"""actorflow_kafka: Kafka sources and sinks for actorflow, on aiokafka.

This package sits above :mod:`actorflow` and may import any of it; actorflow never imports it.

    from actorflow import Flow, WatermarkStrategy
    from actorflow_kafka import KafkaSink, KafkaSource, kafka_timestamp

    flow = Flow("fraud")
    source = KafkaSource("transactions", bootstrap_servers="127.0.0.1:9092", group_id="fraud")
    (flow.from_source(source, watermarks=WatermarkStrategy.bounded_out_of_orderness(5_000, "ts"))
         .key_by("card_id").process(SmallThenLarge())
         .sink(KafkaSink("alerts", bootstrap_servers="127.0.0.1:9092", key="card_id")))
"""

from actorflow_kafka.dead_letters import ERROR_HEADER, DeadLetterTopic
from actorflow_kafka.records import KafkaRecord, kafka_timestamp
from actorflow_kafka.serde import (
    bytes_deserializer,
    bytes_serializer,
    json_deserializer,
    json_serializer,
    str_deserializer,
    str_serializer,
)
from actorflow_kafka.sink import KafkaSink
from actorflow_kafka.source import KafkaSource

__all__ = [
    "ERROR_HEADER",
    "DeadLetterTopic",
    "KafkaRecord",
    "KafkaSink",
    "KafkaSource",
    "bytes_deserializer",
    "bytes_serializer",
    "json_deserializer",
    "json_serializer",
    "kafka_timestamp",
    "str_deserializer",
    "str_serializer",
]
