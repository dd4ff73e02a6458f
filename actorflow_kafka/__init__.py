"""actorflow_kafka: Kafka sources and sinks for actorflow, on aiokafka.

A placeholder until the Kafka connector lands: it sits above :mod:`actorflow` and may import any
of it, never the other way round.
"""

__all__: list[str] = []
