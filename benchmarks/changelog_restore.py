"""``python -m benchmarks changelog-restore``: a partition task's restore of N keys from its changelog.

Fills a :class:`~actorflow.operators.process.KeyedProcessOperator` in incremental mode (the way a
partition task runs it) with Q3's state shape, N keys with a value state and an event-time timer
each, takes its incremental snapshot (every key is new, so every key is in it), and writes it to a
one-partition compacted changelog topic as a task's commit does (one record per key, in one
transaction). Then it times a task's restore, phase by phase:

* read: :func:`~actorflow_kafka.tasks.changelog.read_partition` (``read_committed``, to the end);
* decode: :func:`~actorflow_kafka.tasks.changelog.restored_state` (a record per key into the state);
* restore: ``restore_state()`` into a freshly opened operator.

The restored operator is checked against the filled one (same keys, same timers). It uses
``$KAFKA_BOOTSTRAP_SERVERS``, else starts the project's own broker. Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from operator import itemgetter
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer, TopicPartition

from actorflow.operators.base import OperatorContext
from actorflow.operators.process import KeyedProcessOperator
from actorflow.runtime.collector import paused_gc
from actorflow.runtime.messages import Batch
from actorflow_kafka.tasks.changelog import changelog_records, dumps, read_partition, restored_state
from benchmarks.kafka import _bootstrap_servers, create_topics, delete_topics
from benchmarks.state_snapshot import ArmPerKey

__all__ = ["main", "measure"]

OPERATOR = "state"
BATCH = 10_000


def _operator() -> KeyedProcessOperator:
    operator = KeyedProcessOperator(OPERATOR, ArmPerKey(), itemgetter(0))
    operator.open(OperatorContext(OPERATOR, checkpointing=True, incremental=True))
    return operator


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


async def measure(bootstrap: str, keys: int) -> dict[str, Any]:
    """Fill, write and restore ``keys`` keys; the times in milliseconds."""
    filled = _operator()
    base = 1_700_000_000_000
    for start in range(0, keys, BATCH):
        values = [(f"card-{n:08}", n, base + n) for n in range(start, min(start + BATCH, keys))]
        filled.process(Batch(values, [v[2] for v in values]))
    started = time.perf_counter()
    part = dumps(filled.snapshot_state())
    snapshot_ms = _ms(started)
    topic = f"changelog-restore-{uuid.uuid4().hex[:8]}"
    await create_topics(bootstrap, [topic], 1)
    try:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            transactional_id=f"{topic}-writer",
            acks="all",
            linger_ms=20,
            max_batch_size=1 << 20,
        )
        await producer.start()
        try:
            started = time.perf_counter()
            await producer.begin_transaction()
            sent = [
                await producer.send(topic, value, key=key, partition=0)
                for key, value in changelog_records(part)
            ]
            await asyncio.gather(*sent)
            await producer.commit_transaction()
            write_ms = _ms(started)
        finally:
            await producer.stop()
        started = time.perf_counter()
        entries = await read_partition(bootstrap, TopicPartition(topic, 0), {})
        read_ms = _ms(started)
        # As a task does: decoding and restore_state (the chain's) with the collector paused.
        started = time.perf_counter()
        with paused_gc():
            state = restored_state(entries)
        decode_ms = _ms(started)
        assert state is not None
        started = time.perf_counter()
        restored = _operator()
        with paused_gc():
            restored.restore_state([state])
        restore_ms = _ms(started)
    finally:
        await delete_topics(bootstrap, [topic])
    if restored.backend.state_size("armed") != keys or len(restored.event_timers) != keys:
        raise AssertionError("the restored operator does not hold every key and timer")
    return {
        "keys": keys,
        "records": len(entries),
        "bytes": sum(len(k) + len(v) for k, v in entries.items()),
        "snapshot_ms": snapshot_ms,
        "write_ms": write_ms,
        "read_ms": read_ms,
        "decode_ms": decode_ms,
        "restore_ms": restore_ms,
        "restore_total_ms": round(read_ms + decode_ms + restore_ms, 1),
    }


def main(keys: int = 1_000_000) -> int:
    with _bootstrap_servers() as bootstrap:
        numbers = asyncio.run(measure(bootstrap, keys))
    sys.stdout.buffer.write(orjson.dumps(numbers) + b"\n")
    return 0
