"""Decoding: fetched Kafka records into the values a flow reads, and the ones that fail to dead letters.

A record whose value (or key, with metadata) does not decode, or whose value has no event time to
read when the flow's watermark strategy takes it from the value, is a *dead letter*: it goes to a
:class:`~actorflow_kafka.DeadLetterTopic` with its raw bytes, to a callback as a
:class:`~actorflow.DeadLetter`, or, with neither, fails the job naming its topic, partition and
offset. Nothing is dropped without trace; a poison record cannot crash-loop a job.

Used by the :class:`~actorflow_kafka.KafkaSource` reader and by partition tasks alike.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord

from actorflow import DeadLetter
from actorflow.time.watermarks import WatermarkStrategy, event_time
from actorflow_kafka.dead_letters import DeadLetterTopic
from actorflow_kafka.records import KafkaRecord, kafka_timestamp
from actorflow_kafka.serde import Deserializer, json_deserializer

__all__ = ["DeadLetterTarget", "Decoded", "RecordDecoder"]

DeadLetterTarget = DeadLetterTopic | Callable[[DeadLetter], Awaitable[None] | None]
#: The decoded values, the records they came from, and their event times (None: the records' own
#: Kafka timestamps are the event time, or the flow has none).
Decoded = tuple[list[Any], list[ConsumerRecord[Any, Any]], list[Any] | None]


class RecordDecoder:
    """Decodes records for one reader; call :meth:`open` before and :meth:`close` after.

    ``on_dead_letter`` is called once per dead letter (the owner counts them for its metrics).
    """

    def __init__(
        self,
        *,
        value: Deserializer,
        key: Deserializer,
        with_metadata: bool,
        strategy: WatermarkStrategy | None,
        dead_letters: DeadLetterTarget | None,
        on_dead_letter: Callable[[], None],
    ) -> None:
        self._value = value
        self._key = key
        self.with_metadata = with_metadata
        self.kafka_time = strategy is not None and strategy.timestamp is kafka_timestamp
        #: Reads the event time from a value (None: from the record, or no event time).
        self._time_of = None if strategy is None or self.kafka_time else strategy.timestamp
        self._dead_letters = dead_letters
        self._on_dead_letter = on_dead_letter
        self._topic: DeadLetterTopic | None = None

    async def open(self, bootstrap_servers: str, client_options: dict[str, Any]) -> None:
        """Start the dead-letter topic's producer, if there is one."""
        if isinstance(self._dead_letters, DeadLetterTopic):
            self._topic = self._dead_letters
            await self._topic.start(bootstrap_servers, client_options)

    async def close(self) -> None:
        if self._topic is not None:
            topic, self._topic = self._topic, None
            await topic.stop()

    async def decode(self, records: list[ConsumerRecord[Any, Any]]) -> Decoded:
        """The decoded values, the records they came from, and, when event time comes from the
        values, their timestamps. Dead letters are left out (and sent where they go first)."""
        time_of = self._time_of
        if not self.with_metadata:
            decode = orjson.loads if self._value is json_deserializer else self._value
            try:
                # Fast path: one comprehension; any failure (a bad record, a tombstone for
                # orjson, a value without its time) sends the whole poll through the
                # record-by-record path below.
                values = [decode(record.value) for record in records]
                if time_of is None:
                    return values, records, None
                stamps = list(map(time_of, values))
                if all(type(time) is int for time in stamps):
                    return values, records, stamps
            except Exception:
                pass
        value_of = self._value
        key_of = self._key
        values = []
        kept: list[ConsumerRecord[Any, Any]] = []
        times: list[Any] = []
        for record in records:
            try:
                value = value_of(record.value)
                if self.with_metadata:
                    value = KafkaRecord(
                        record.topic,
                        record.partition,
                        record.offset,
                        record.timestamp,
                        key_of(record.key),
                        value,
                        tuple(record.headers or ()),
                    )
                if time_of is not None:
                    times.append(event_time(time_of, value))
            except Exception as error:
                await self.dead_letter(record, error)
                continue
            values.append(value)
            kept.append(record)
        return values, kept, None if time_of is None else times

    async def dead_letter(self, record: ConsumerRecord[Any, Any], error: Exception) -> None:
        """Send ``record`` where dead letters go; raises ``ValueError`` naming it if nowhere."""
        origin = f"{record.topic}/{record.partition}@{record.offset}"
        target = self._dead_letters
        if self._topic is not None:
            await self._topic.publish(record, error)
        elif target is not None and not isinstance(target, DeadLetterTopic):
            letter = DeadLetter(record.value or b"", origin, f"{type(error).__name__}: {error}")
            outcome = target(letter)
            if inspect.isawaitable(outcome):
                await outcome
        else:
            raise ValueError(
                f"cannot decode the Kafka record at {origin}: {type(error).__name__}: {error} "
                "(give the source dead_letters= to keep the job running)"
            ) from error
        self._on_dead_letter()
