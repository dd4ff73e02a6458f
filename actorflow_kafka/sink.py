"""KafkaSink: records to a Kafka topic (fixed, or chosen per record), at least once.

Each batch is handed to aiokafka's producer record by record (it batches and compresses them per
partition as configured). The sink does not wait for the broker's acknowledgements batch by batch,
which would stall the whole chain for a linger and a round trip each time: it keeps the pending
acknowledgements, fails the job on the first one that fails, waits for all of them once
``max_in_flight`` records are pending, and always before the end of its input (and on
:meth:`KafkaSink.flush`). So every record the sink accepted is stored before the flow ends normally,
or the job fails with the reason. The checkpoint issue adds transactions (exactly once).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import MessageSizeTooLargeError, TopicAlreadyExistsError

from actorflow import Sink
from actorflow.operators.base import OperatorContext
from actorflow.time.watermarks import field_getter
from actorflow_kafka.serde import Serializer, resolve_serializer

__all__ = ["KafkaSink"]

Headers = list[tuple[str, bytes]]


class KafkaSink(Sink):
    """Writes every record to Kafka.

    ``topic`` is a topic name or a function of the record. ``key`` (a function or a field name)
    picks the record's key, which decides its partition (Kafka's default murmur2 partitioner, the
    same as Java clients use); ``value`` picks what is written (default: the whole record).
    ``headers`` is a function of the record returning ``[(name, bytes), ...]``.
    ``producer_options`` (linger_ms, max_batch_size, compression_type, acks, max_request_size,
    enable_idempotence, SASL/SSL settings, client_id, ...) go to aiokafka untouched.

    A missing topic fails the job when the sink opens (or when a record first names it), unless
    ``create_topics=True``, which creates it with ``partitions`` partitions.

    >>> sink = KafkaSink("alerts", bootstrap_servers="127.0.0.1:9092", key="card_id")
    >>> sink.name
    'kafka:alerts'
    """

    is_async = True

    def __init__(
        self,
        topic: str | Callable[[Any], str],
        *,
        bootstrap_servers: str,
        key: Callable[[Any], Any] | str | None = None,
        value: Callable[[Any], Any] | str | None = None,
        headers: Callable[[Any], Headers] | None = None,
        key_serializer: str | Serializer = "str",
        value_serializer: str | Serializer = "json",
        create_topics: bool = False,
        partitions: int = 1,
        replication_factor: int = 1,
        producer_options: Mapping[str, Any] | None = None,
        max_in_flight: int = 100_000,
    ) -> None:
        super().__init__(f"kafka:{topic}" if isinstance(topic, str) else "kafka")
        self.max_in_flight = max_in_flight
        self._pending: list[tuple[asyncio.Future[Any], str, int]] = []
        self.topic = topic
        self.bootstrap_servers = bootstrap_servers
        self._key = field_getter(key) if key is not None else None
        self._value = field_getter(value) if value is not None else None
        self._headers = headers
        self._key_serializer = resolve_serializer(key_serializer)
        self._value_serializer = resolve_serializer(value_serializer)
        self.create_topics = create_topics
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.producer_options = dict(producer_options or {})
        self._producer: AIOKafkaProducer | None = None
        self._pending = []
        self._known_topics: set[str] = set()
        # Shared by the per-instance copies the flow makes (shallow copies share these objects).
        self._written = [0]
        self._instances: list[KafkaSink] = []

    def copy(self) -> KafkaSink:
        instance = copy.copy(self)
        self._instances.append(instance)
        return instance

    @property
    def records_written(self) -> int:
        """Records the broker acknowledged, over every instance of this sink."""
        return self._written[0]

    async def open_async(self, context: OperatorContext) -> None:
        self.open(context)
        self._known_topics = set()
        self._pending = []  # this instance's own (copies share what __init__ made)
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, **self.producer_options)
        await producer.start()
        self._producer = producer
        try:
            if isinstance(self.topic, str):
                await self._ensure_topic(self.topic)
        except BaseException:
            self._producer = None
            await producer.stop()
            raise

    async def _ensure_topic(self, topic: str) -> None:
        if topic in self._known_topics:
            return
        producer = self._producer
        assert producer is not None
        metadata = await producer.client.fetch_all_metadata()
        if topic not in metadata.topics():
            if not self.create_topics:
                raise LookupError(
                    f"Kafka topic {topic!r} does not exist: create it first, "
                    "or give the sink create_topics=True"
                )
            await self._create(topic)
        self._known_topics.add(topic)

    async def _create(self, topic: str) -> None:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap_servers,
            **{k: v for k, v in self.producer_options.items() if k in _ADMIN_OPTIONS},
        )
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, self.partitions, self.replication_factor)])
        except TopicAlreadyExistsError:
            pass  # created by another instance meanwhile
        finally:
            await admin.close()

    async def write_async(self, values: list[Any]) -> None:
        producer = self._producer
        assert producer is not None
        topic_of = self.topic
        key_of = self._key
        value_of = self._value
        headers_of = self._headers
        serialize_key = self._key_serializer
        serialize_value = self._value_serializer
        sends: list[tuple[asyncio.Future[Any], str, int]] = []
        for record in values:
            topic = topic_of if isinstance(topic_of, str) else topic_of(record)
            if topic not in self._known_topics:
                await self._ensure_topic(topic)
            key = serialize_key(key_of(record)) if key_of is not None else None
            value = serialize_value(value_of(record) if value_of is not None else record)
            size = len(value or b"") + len(key or b"")
            try:
                future = await producer.send(
                    topic,
                    value=value,
                    key=key,
                    headers=headers_of(record) if headers_of is not None else None,
                )
            except MessageSizeTooLargeError as error:
                raise _too_large(size, topic, error) from error
            sends.append((future, topic, size))
        pending = self._pending
        pending += sends
        if len(pending) >= self.max_in_flight:
            await self.flush()
        elif pending[0][0].done():
            self._collect_done()

    def _collect_done(self) -> None:
        # Forget the acknowledged records (in order), failing on the first failed one.
        pending = self._pending
        done = 0
        for future, topic, size in pending:
            if not future.done():
                break
            _check(future, topic, size)
            done += 1
        del pending[:done]
        self._written[0] += done

    async def flush(self) -> None:
        """Wait until every record handed to the producer has been acknowledged.

        On the sink object given to ``DataStream.sink`` this flushes every running instance.
        """
        if self._producer is None:
            for instance in self._instances:
                if instance._producer is not None:
                    await instance.flush()
            return
        pending, self._pending = self._pending, []
        if self._producer is not None:
            await self._producer.flush()
        if pending:
            await asyncio.wait([future for future, _, _ in pending])
        for future, topic, size in pending:
            _check(future, topic, size)
        self._written[0] += len(pending)

    async def finish_async(self) -> None:
        await self.flush()

    async def close_async(self) -> None:
        producer, self._producer = self._producer, None
        pending, self._pending = self._pending, []
        try:
            if producer is not None:
                await producer.stop()  # flushes what is pending first
        finally:
            for future, _, _ in pending:
                if future.done() and not future.cancelled():
                    future.exception()  # retrieved: the job already ends with a reason


def _too_large(size: int, topic: str, error: BaseException) -> ValueError:
    return ValueError(
        f"a record of {size} bytes for Kafka topic {topic!r} is larger than the producer allows "
        f"(max_request_size) or the topic accepts (max.message.bytes): {error!r}"
    )


def _check(future: asyncio.Future[Any], topic: str, size: int) -> None:
    """Raise the producer's error for one record, explained when it is about its size."""
    error = future.exception()
    if error is None:
        return
    if isinstance(error, MessageSizeTooLargeError):
        raise _too_large(size, topic, error) from error
    raise error


_ADMIN_OPTIONS = {
    "client_id",
    "request_timeout_ms",
    "security_protocol",
    "ssl_context",
    "sasl_mechanism",
    "sasl_plain_username",
    "sasl_plain_password",
    "sasl_kerberos_service_name",
    "sasl_kerberos_domain_name",
    "sasl_oauth_token_provider",
}
