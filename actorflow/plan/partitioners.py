"""Partitioners: which instance of the next operator gets each record.

- :class:`Forward`: instance ``i`` to instance ``i`` (equal parallelism).
- :class:`Hash`: by key, through key groups: a key always reaches the instance that owns its key
  group, in every process and every run.
- :class:`Rebalance`: round robin, record by record.
- :class:`Broadcast`: every record to every instance.

Watermarks inside a batch reach every instance (see :func:`scatter`).
"""

from __future__ import annotations

import zlib
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
    appends = [part.append for part in parts]
    timestamps = batch.timestamps
    marks = batch.marks
    if timestamps is None and not marks:
        for value, target in zip(values, targets, strict=True):
            appends[target](value)
        return [Batch(part) for part in parts]
    stamps: list[list[Any]] = [[] for _ in range(receivers)]
    stamp_appends = [stamp.append for stamp in stamps]
    part_marks: list[list[tuple[int, int]]] = [[] for _ in range(receivers)]
    start = 0
    # One segment of records per mark: the per-record loop stays as lean as without marks.
    for end, watermark in [*(marks or ()), (len(values), None)]:
        if end > start:
            if timestamps is None:
                for value, target in zip(values[start:end], targets[start:end], strict=True):
                    appends[target](value)
            else:
                for value, stamp, target in zip(
                    values[start:end], timestamps[start:end], targets[start:end], strict=True
                ):
                    appends[target](value)
                    stamp_appends[target](stamp)
            start = end
        if watermark is not None:
            for receiver in range(receivers):
                part_marks[receiver].append((len(parts[receiver]), watermark))
    return [
        Batch(
            parts[r],
            stamps[r] if timestamps is not None else None,
            _last_per_position(part_marks[r]),
        )
        for r in range(receivers)
    ]


def _last_per_position(marks: list[tuple[int, int]]) -> list[tuple[int, int]] | None:
    # Marks with no record between them: only the last one matters.
    if not marks:
        return None
    return list(dict(marks).items())


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
        crc32 = zlib.crc32
        keys = [key_of(value) for value in batch.values]
        # str keys inline the stable hash's str case (the common case, and per record).
        targets = [
            owner[(crc32(key.encode()) if type(key) is str else stable_hash(key)) % groups] for key in keys
        ]
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
