"""What a Kafka source emits when asked for metadata, and the Kafka event-time selector."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["KafkaRecord", "kafka_timestamp"]


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """A decoded Kafka record with where it came from (``KafkaSource(with_metadata=True)``)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: Any
    value: Any
    headers: tuple[tuple[str, bytes], ...] = ()


def kafka_timestamp(record: Any) -> int:
    """Event time = the Kafka record's own timestamp (producer or log-append time).

    Use it as the timestamp of a Kafka source's watermark strategy:
    ``WatermarkStrategy.bounded_out_of_orderness(5_000, kafka_timestamp)``. The source recognises it
    and reads the timestamp from the record; on a :class:`KafkaRecord` it also works as a plain
    function.

    >>> kafka_timestamp(KafkaRecord("t", 0, 7, 1_700_000_000_000, None, {}))
    1700000000000
    """
    if isinstance(record, KafkaRecord):
        return record.timestamp
    raise TypeError(
        "kafka_timestamp reads the Kafka record's timestamp: use it as the timestamp of a "
        "KafkaSource's watermark strategy (or on KafkaRecord values)"
    )
