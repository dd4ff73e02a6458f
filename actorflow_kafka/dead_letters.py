"""Dead letters: records a source cannot decode go to a topic of their own, never to nowhere.

Each dead letter keeps the original key, value and headers byte for byte, and adds headers that say
what went wrong and where the record came from::

    actorflow.error          "JSONDecodeError: unexpected character: line 1 column 1 (char 0)"
    actorflow.error.type     "orjson.JSONDecodeError"
    actorflow.source.topic   "transactions"
    actorflow.source.partition  "2"
    actorflow.source.offset  "4711"
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from actorflow_kafka.connection import start_client

__all__ = ["ERROR_HEADER", "DeadLetterTopic", "dead_letter_headers"]

ERROR_HEADER = "actorflow.error"


def dead_letter_headers(record: ConsumerRecord[Any, Any], error: BaseException) -> list[tuple[str, bytes]]:
    """The record's own headers followed by the ones describing ``error`` and the record's origin."""
    kind = type(error)
    return [
        *(record.headers or ()),
        (ERROR_HEADER, f"{kind.__name__}: {error}".encode()),
        ("actorflow.error.type", f"{kind.__module__}.{kind.__qualname__}".encode()),
        ("actorflow.source.topic", record.topic.encode()),
        ("actorflow.source.partition", str(record.partition).encode()),
        ("actorflow.source.offset", str(record.offset).encode()),
    ]


class DeadLetterTopic:
    """Where a :class:`~actorflow_kafka.KafkaSource` sends the records it cannot decode.

    >>> dlq = DeadLetterTopic("transactions.dead")
    >>> dlq.topic, dlq.count
    ('transactions.dead', 0)
    """

    def __init__(
        self,
        topic: str,
        *,
        bootstrap_servers: str | None = None,
        client_options: Mapping[str, Any] | None = None,
        producer_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.topic = topic
        self.bootstrap_servers = bootstrap_servers
        # On top of the source's client options: this topic's own (its cluster's connection, as
        # for every client: client_options), then its producer's (producer_options).
        self._options = {**(client_options or {}), **(producer_options or {})}
        self._producer: AIOKafkaProducer | None = None
        self._users = 0
        self._starting = asyncio.Lock()
        #: Dead letters produced so far by this object.
        self.count = 0

    async def start(self, bootstrap_servers: str, client_options: Mapping[str, Any]) -> None:
        """Connect (to the source's cluster unless this topic names its own).

        Every source instance that uses this topic starts it and stops it; one producer serves
        them all and closes when the last one stops.
        """
        async with self._starting:
            if self._producer is None:
                options = {**client_options, **self._options}
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap_servers or bootstrap_servers,
                    acks="all",
                    **options,
                )
                # Waits for Kafka like every client of the connector (it closes the producer if
                # Kafka stays unreachable).
                await start_client(producer, self.bootstrap_servers or bootstrap_servers)
                self._producer = producer
            self._users += 1

    async def publish(self, record: ConsumerRecord[Any, Any], error: BaseException) -> None:
        """Produce ``record``'s raw bytes with the error headers, and wait until it is stored."""
        if self._producer is None:
            raise RuntimeError("DeadLetterTopic.publish before start()")
        await self._producer.send_and_wait(
            self.topic,
            value=record.value,
            key=record.key,
            partition=None,
            headers=dead_letter_headers(record, error),
        )
        self.count += 1

    async def stop(self) -> None:
        """Release one user; the last one closes the producer."""
        self._users = max(0, self._users - 1)
        if self._users:
            return
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
