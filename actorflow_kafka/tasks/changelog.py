"""Changelog topics: a partition task's state in Kafka, written incrementally, read back whole.

Every stateful operator of a task flow has a compacted topic ``<group>-<operator>-changelog`` with
one partition per input partition (task). At each of its checkpoints a task writes, inside the
transaction that also carries its results and its input offsets, one record per key whose state
changed since the previous checkpoint: the key's whole state, or a tombstone once it has none. Kafka
compacts each topic down to the newest record per key, so restoring a task reads about one record
per live key, whatever the task's history.

Record keys say what a record holds:

- ``b"k" + pickle(key)``: one key of a keyed operator; the value is ``pickle((key, entry))`` with
  its entry from ``snapshot_state()["changes"]`` (the key again, so that a restore unpickles one
  object per record); no value: the key has no state any more;
- ``b"s"``: the whole state of an operator that keeps state of another kind (async I/O's requests
  in flight, a keyed operator that cannot snapshot incrementally), as the checkpoint part;
- ``b"f" + pickle(name)``: another field of an incremental snapshot (a keyed broadcast operator's
  broadcast state), written when the snapshot has it;
- ``b"w"`` (in the source's topic): the watermark the task's source had put out;
- ``b"u"`` (in the source's topic, for a repartition topic's task): the upstream tasks' watermarks.

>>> changelog_topic("fraud", "small-then-large")
'fraud-small-then-large-changelog'
>>> changelog_topic("fraud", "kafka:alerts")
'fraud-kafka_alerts-changelog'
>>> decode_key(encode_key(("c1", 7)))
('c1', 7)
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterator, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from actorflow_kafka.connection import start_client

__all__ = [
    "FIELD",
    "KEYED",
    "STATE",
    "UPSTREAM",
    "WATERMARK",
    "changelog_records",
    "changelog_topic",
    "decode_key",
    "dumps",
    "encode_key",
    "read_partition",
    "restored_state",
    "topic_name",
]

KEYED = b"k"
STATE = b"s"
FIELD = b"f"
WATERMARK = b"w"
UPSTREAM = b"u"

#: How much one fetch of a restore may bring from its partition.
_RESTORE_FETCH_BYTES = 16 << 20

_NOT_IN_TOPIC_NAMES = re.compile(r"[^a-zA-Z0-9._-]")


def topic_name(text: str) -> str:
    """``text`` as a topic name: characters a topic name cannot have become ``_``."""
    return _NOT_IN_TOPIC_NAMES.sub("_", text)


def changelog_topic(group: str, operator: str) -> str:
    """The changelog topic of ``operator`` in the job of consumer group ``group``."""
    return topic_name(f"{group}-{operator}-changelog")


def encode_key(key: Any) -> bytes:
    """A record key for one state key: stable for equal keys of the same type (str, int, tuples)."""
    return KEYED + pickle.dumps(key, protocol=5)


def decode_key(data: bytes) -> Any:
    return pickle.loads(data[len(KEYED) :])


def dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def changelog_records(part: bytes) -> Iterator[tuple[bytes, bytes | None]]:
    """The changelog records of one operator's checkpoint part: a record per changed key for an
    incremental snapshot, else one record with the whole state."""
    state = pickle.loads(part)
    changes = state.get("changes") if isinstance(state, dict) else None
    if changes is None:
        yield STATE, part
        return
    for key, entry in changes.items():
        yield encode_key(key), None if entry is None else dumps((key, entry))
    for name, value in state.items():
        if name != "changes":
            yield FIELD + pickle.dumps(name, protocol=5), dumps(value)


def restored_state(entries: Mapping[bytes, bytes]) -> Any:
    """The state that gives an operator back what its changelog holds (the newest record per key,
    tombstones left out), or None if it holds nothing."""
    whole = entries.get(STATE)
    if whole is not None:
        return pickle.loads(whole)
    changes = dict(map(pickle.loads, [value for key, value in entries.items() if key[:1] == KEYED]))
    fields = {
        pickle.loads(key[len(FIELD) :]): pickle.loads(value)
        for key, value in entries.items()
        if key[:1] == FIELD
    }
    if not changes and not fields:
        return None
    return {**fields, "changes": changes}


async def read_partition(
    bootstrap_servers: str, tp: TopicPartition, client_options: Mapping[str, Any]
) -> dict[bytes, bytes]:
    """Every committed record of changelog partition ``tp``, the newest per key (tombstones remove
    the key): what Kafka's compaction keeps, read to the last stable offset."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        enable_auto_commit=False,
        isolation_level="read_committed",
        # A restore reads one partition to its end as fast as it can: big fetches (aiokafka's
        # default is 1 MiB per partition and request).
        **{"max_partition_fetch_bytes": _RESTORE_FETCH_BYTES, **client_options},
    )
    await start_client(consumer, bootstrap_servers)
    entries: dict[bytes, bytes] = {}
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        while await consumer.position(tp) < end:
            fetched = await consumer.getmany(tp, timeout_ms=500, max_records=10_000)
            for record in fetched.get(tp, ()):
                if record.value is None:
                    entries.pop(record.key, None)
                else:
                    entries[record.key] = record.value
    finally:
        await consumer.stop()
    return entries
