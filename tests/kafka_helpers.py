"""Small async helpers for tests against the real Kafka broker: produce records, read a topic back,
wait for a condition that Kafka makes true asynchronously, and run an unbounded flow until a
condition holds.

Nothing here sleeps to synchronise: :func:`eventually` polls a condition every 50 ms and fails with a
message at its deadline, and :func:`read_topic` reads up to the end offsets the broker reports.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import (  # type: ignore[import-untyped, unused-ignore]  # aiokafka has no py.typed
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRecord,
    TopicPartition,
)

from actorflow import Flow
from actorflow_kafka import KafkaSource

__all__ = [
    "Message",
    "RunningFlow",
    "eventually",
    "produce",
    "produce_json",
    "read_topic",
    "run_until",
    "running",
    "values_of",
]

POLL_SECONDS = 0.05


async def eventually(
    predicate: Callable[[], bool], within: float = 15.0, message: str | Callable[[], str] = ""
) -> None:
    """Return once ``predicate()`` is true; poll every 50 ms and fail after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"not true within {within} s: {text or predicate}")
        await asyncio.sleep(POLL_SECONDS)


@dataclass(frozen=True)
class Message:
    """One record to produce, as raw bytes."""

    value: bytes | None
    key: bytes | None = None
    partition: int | None = None
    timestamp_ms: int | None = None
    headers: Sequence[tuple[str, bytes]] = ()


async def produce(bootstrap_servers: str, topic: str, messages: Iterable[Message]) -> list[Any]:
    """Produce ``messages`` in order (acks=all) and return their ``RecordMetadata``."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic,
                value=m.value,
                key=m.key,
                partition=m.partition,
                timestamp_ms=m.timestamp_ms,
                headers=list(m.headers) or None,
            )
            for m in messages
        ]
        return list(await asyncio.gather(*futures))
    finally:
        await producer.stop()


async def produce_json(
    bootstrap_servers: str,
    topic: str,
    values: Iterable[Any],
    *,
    key: Callable[[Any], str] | None = None,
    partition: int | None = None,
) -> list[Any]:
    """Produce every value as JSON, keyed by ``key(value)`` (UTF-8) when given."""
    return await produce(
        bootstrap_servers,
        topic,
        (
            Message(
                orjson.dumps(value),
                key=key(value).encode() if key is not None else None,
                partition=partition,
            )
            for value in values
        ),
    )


async def read_topic(
    bootstrap_servers: str, topic: str, *, at_least: int = 0, within: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` up to its end offsets, once it holds ``at_least`` records.

    Reading up to the end offsets (not "until nothing more comes") makes an exact count an honest
    assertion: a duplicate already written is always seen.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            # The consumer's metadata may not know a just-created topic yet.
            metadata = await consumer._client.fetch_all_metadata()
            partitions = [TopicPartition(topic, p) for p in sorted(metadata.partitions_for_topic(topic))]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends: dict[TopicPartition, int] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            ends = await consumer.end_offsets(partitions)
            if sum(ends.values()) >= at_least:
                break
            if loop.time() >= deadline:
                raise AssertionError(
                    f"topic {topic!r} holds {sum(ends.values())} records after {within} s, "
                    f"expected at least {at_least}"
                )
            await asyncio.sleep(POLL_SECONDS)
        records: list[ConsumerRecord[bytes, bytes]] = []
        async with asyncio.timeout(max(1.0, deadline - loop.time())):
            while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
                fetched = await consumer.getmany(timeout_ms=200)
                for tp, batch in fetched.items():
                    records.extend(r for r in batch if r.offset < ends[tp])
        return records
    finally:
        await consumer.stop()


class RunningFlow:
    """A flow running in a task, to be driven step by step; see :func:`running`."""

    def __init__(self, flow: Flow) -> None:
        self.task = asyncio.create_task(flow.run())

    async def until(
        self, condition: Callable[[], bool], within: float = 15.0, message: str | Callable[[], str] = ""
    ) -> None:
        """Wait until ``condition()`` holds; a flow that fails (or ends) meanwhile raises at once."""
        await eventually(lambda: condition() or self.task.done(), within, message)
        if not condition():
            self.task.result()  # the flow's error, if it failed
            text = message() if callable(message) else message
            raise AssertionError(f"the flow ended before the condition held: {text or condition}")


@contextlib.asynccontextmanager
async def running(flow: Flow, source: KafkaSource) -> AsyncIterator[RunningFlow]:
    """Run ``flow`` while the block runs; at its end ``source.stop()`` and wait for the flow's end.

    When the block fails, its error is the one reported (the flow is still stopped and awaited).
    """
    job = RunningFlow(flow)
    try:
        yield job
    except BaseException:
        source.stop()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(job.task, 30.0)
        raise
    source.stop()
    await asyncio.wait_for(job.task, 30.0)


async def run_until(
    flow: Flow,
    source: KafkaSource,
    condition: Callable[[], bool],
    *,
    within: float = 20.0,
    message: str | Callable[[], str] = "",
) -> None:
    """Run ``flow`` until ``condition()`` holds, then ``source.stop()`` and wait for the flow's end."""
    async with running(flow, source) as job:
        await job.until(condition, within, message)


def values_of(records: Iterable[ConsumerRecord[bytes, bytes]]) -> list[Any]:
    """The JSON values of ``records``."""
    return [orjson.loads(r.value) for r in records]
