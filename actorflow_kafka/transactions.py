"""What an exactly-once KafkaSink and the KafkaSource whose offsets it commits share.

The sink writes the results of checkpoint interval ``n`` into one Kafka transaction and commits it
together with the source's offsets of checkpoint ``n`` (``send_offsets_to_transaction``), once the
checkpoint is complete. Every committed offset carries, as its metadata, a digest of the source's
snapshot of that checkpoint (:func:`commit_metadata`): the snapshots hold a token unique to each
snapshot, so two checkpoints with the same offsets still have different digests. On restart the
source accepts only the checkpoint whose offsets *and* digest Kafka has committed
(:func:`matches_commit`): the state that belongs to the output Kafka shows to ``read_committed``
readers.

>>> states = [
...     {"offsets": {("in", 0): 7}, "token": "r1/0/3"},
...     {"offsets": {("in", 1): 2}, "token": "r1/1/3"},
... ]
>>> owned_offsets(states)
{('in', 0): 7, ('in', 1): 2}
>>> commit_metadata(states) == commit_metadata(list(reversed(states)))
True
>>> commit_metadata(states).startswith("actorflow:")
True
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaProducer

from actorflow_kafka.connection import start_client

__all__ = ["TransactionLink", "commit_metadata", "matches_commit", "owned_offsets"]

Key = tuple[str, int]


def owned_offsets(states: Iterable[Mapping[str, Any]]) -> dict[Key, int]:
    """The next offset of every partition some source instance read at the snapshot.

    A partition is owned by one instance at a time; should two report it, the larger offset is the
    later position (positions of a partition only grow within a run).
    """
    merged: dict[Key, int] = {}
    for state in states:
        for key, offset in state.get("offsets", {}).items():
            if offset > merged.get(key, -1):
                merged[key] = offset
    return merged


def commit_metadata(states: Iterable[Mapping[str, Any]]) -> str:
    """The metadata committed with every offset of one checkpoint: a digest of its snapshot tokens."""
    tokens = sorted(str(state.get("token", "")) for state in states)
    return "actorflow:" + hashlib.sha256("\n".join(tokens).encode()).hexdigest()[:32]


def matches_commit(states: list[Mapping[str, Any]], committed: Mapping[Key, tuple[int, str]]) -> bool:
    """Whether Kafka's committed offsets (``{(topic, partition): (offset, metadata)}``) are exactly
    the ones this snapshot's transaction committed.

    A snapshot without any partition committed no offset, so nothing in Kafka says whether its
    transaction committed: it does not match (the sink keeps such a transaction open until a
    checkpoint with offsets, see ``docs/kafka.md``).

    >>> states = [{"offsets": {("in", 0): 7}, "token": "r1/0/3"}]
    >>> matches_commit(states, {("in", 0): (7, commit_metadata(states))})
    True
    >>> matches_commit(states, {("in", 0): (7, "actorflow:another-checkpoint")})
    False
    >>> matches_commit(states, {})
    False
    """
    offsets = owned_offsets(states)
    if not offsets:
        return False
    metadata = commit_metadata(states)
    return all(committed.get(key) == (offset, metadata) for key, offset in offsets.items())


class TransactionLink:
    """The tie between an exactly-once KafkaSink and the KafkaSource whose offsets it commits.

    ``ready()`` returns once the sink of the current run has started its transactional producer:
    starting it fenced every older producer with the same transactional id, and made the broker
    finish a commit such a producer had in progress, so the group's committed offsets are final
    when the source reads them.
    """

    def __init__(
        self, transactional_id: str, bootstrap_servers: str, producer_options: Mapping[str, Any]
    ) -> None:
        self.transactional_id = transactional_id
        self.bootstrap_servers = bootstrap_servers
        self.producer_options = dict(producer_options)
        self._ready = asyncio.Event()

    async def ready(self) -> None:
        """Wait until the sink of this run has fenced its transactional id."""
        await self._ready.wait()

    def set_ready(self) -> None:
        self._ready.set()

    def reset(self) -> None:
        """The run ended: the next run's source waits for the next run's sink."""
        self._ready = asyncio.Event()

    async def fence(self) -> None:
        """Fence the transactional id now, with a producer of our own (before a run, when no sink is
        running): an open transaction of a crashed run is aborted, and a commit it had in progress
        is finished by the broker before this returns, so committed offsets read next are final."""
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            transactional_id=self.transactional_id,
            **self.producer_options,
        )
        await start_client(producer, self.bootstrap_servers)  # closes it if Kafka stays unreachable
        await producer.stop()
