"""Partitioners: which instance of the next operator gets each record.

- :class:`Forward`: instance ``i`` to instance ``i`` (equal parallelism).
- :class:`Hash`: by key, through key groups: a key always reaches the instance that owns its key
  group, in every process and every run.
- :class:`Rebalance`: round robin, record by record.
- :class:`Broadcast`: every record to every instance.

Watermarks inside a batch reach every instance (see :func:`scatter`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from actorflow.runtime.messages import Batch
from actorflow.runtime.output import ForwardRouter, Router
from actorflow.state.keygroups import operator_index, stable_hash

__all__ = [
    "Broadcast",
    "Forward",
    "Hash",
    "HashRouter",
    "Partitioner",
    "Rebalance",
    "RebalanceRouter",
    "scatter",
]


def scatter(batch: Batch, targets: list[int], receivers: int) -> list[Batch | None]:
    """Split ``batch`` so record ``i`` goes to receiver ``targets[i]``; marks go to all of them.

    >>> [p.values for p in scatter(Batch(["a", "b", "c"]), [1, 0, 1], 2)]
    [['b'], ['a', 'c']]
    >>> [p.marks for p in scatter(Batch(["a", "b"], marks=[(1, 5)]), [1, 1], 2)]
    [[(0, 5)], [(1, 5)]]
    """
    values = batch.values
    parts: list[list[Any]] = [[] for _ in range(receivers)]
    timestamps = batch.timestamps
    marks = batch.marks
    if timestamps is None and not marks:
        appends = [part.append for part in parts]
        for value, target in zip(values, targets, strict=True):
            appends[target](value)
        return [Batch(part) for part in parts]
    stamps: list[list[Any]] | None = [[] for _ in range(receivers)] if timestamps is not None else None
    part_marks: list[list[tuple[int, int]]] = [[] for _ in range(receivers)]
    mark_list = marks or []
    mark_index = 0
    mark_count = len(mark_list)
    for position, value in enumerate(values):
        while mark_index < mark_count and mark_list[mark_index][0] == position:
            watermark = mark_list[mark_index][1]
            for receiver in range(receivers):
                part_marks[receiver].append((len(parts[receiver]), watermark))
            mark_index += 1
        target = targets[position]
        parts[target].append(value)
        if stamps is not None:
            stamps[target].append(timestamps[position])  # type: ignore[index]
    for _, watermark in mark_list[mark_index:]:
        for receiver in range(receivers):
            part_marks[receiver].append((len(parts[receiver]), watermark))
    return [
        Batch(parts[r], stamps[r] if stamps is not None else None, part_marks[r] or None)
        for r in range(receivers)
    ]


class HashRouter:
    """Routes each record to the owner of its key's key group."""

    def __init__(self, key_of: Callable[[Any], Any], max_parallelism: int, receivers: int) -> None:
        self._key_of = key_of
        self._max_parallelism = max_parallelism
        self._owner = [operator_index(g, max_parallelism, receivers) for g in range(max_parallelism)]

    def split(self, batch: Batch, receivers: int) -> list[Batch | None]:
        key_of = self._key_of
        owner = self._owner
        groups = self._max_parallelism
        targets = [owner[stable_hash(key_of(value)) % groups] for value in batch.values]
        return scatter(batch, targets, receivers)


class RebalanceRouter:
    """Round robin over the receivers, continuing where the previous batch stopped."""

    def __init__(self) -> None:
        self._next = 0

    def split(self, batch: Batch, receivers: int) -> list[Batch | None]:
        start = self._next
        count = len(batch.values)
        self._next = (start + count) % receivers
        if batch.timestamps is None and not batch.marks:
            values = batch.values
            return [
                Batch(values[(receiver - start) % receivers :: receivers]) for receiver in range(receivers)
            ]
        targets = [(start + i) % receivers for i in range(count)]
        return scatter(batch, targets, receivers)


class BroadcastRouter:
    """Every record to every receiver (batches are never mutated, so one object serves all)."""

    def split(self, batch: Batch, receivers: int) -> list[Batch | None]:
        return [batch] * receivers


class Partitioner:
    """How an edge distributes records; makes one router per sending instance."""

    name = "partitioner"

    def router(self, receivers: int, max_parallelism: int) -> Router:
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


@dataclass(frozen=True, repr=False)
class Forward(Partitioner):
    name = "forward"

    def router(self, receivers: int, max_parallelism: int) -> Router:
        return ForwardRouter()


@dataclass(frozen=True, repr=False)
class Hash(Partitioner):
    key_of: Callable[[Any], Any]
    name = "hash"

    def router(self, receivers: int, max_parallelism: int) -> Router:
        return HashRouter(self.key_of, max_parallelism, receivers)


@dataclass(frozen=True, repr=False)
class Rebalance(Partitioner):
    name = "rebalance"

    def router(self, receivers: int, max_parallelism: int) -> Router:
        return RebalanceRouter()


@dataclass(frozen=True, repr=False)
class Broadcast(Partitioner):
    name = "broadcast"

    def router(self, receivers: int, max_parallelism: int) -> Router:
        return BroadcastRouter()
