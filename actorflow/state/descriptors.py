"""State descriptors: the name and kind of a piece of keyed state, declared in ``open``.

>>> counter = ValueStateDescriptor("count", default=0)
>>> counter.name, counter.default
('count', 0)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = [
    "AggregateFunction",
    "AggregatingStateDescriptor",
    "Codec",
    "ListStateDescriptor",
    "MapStateDescriptor",
    "ReducingStateDescriptor",
    "StateDescriptor",
    "StateTtl",
    "ValueStateDescriptor",
]

T = TypeVar("T")
#: How a state's values are serialized off the heap (the RocksDB backend; the heap ignores it):
#: None or ``"pickle"`` (the default), ``"json"`` (orjson: JSON-shaped values only, lists come back
#: for tuples), or a ``(dumps, loads)`` pair of functions to and from bytes.
Codec = str | tuple[Callable[[Any], bytes], Callable[[bytes], Any]] | None
ACC = TypeVar("ACC")
OUT = TypeVar("OUT")


class AggregateFunction(ABC, Generic[T, ACC, OUT]):
    """An incremental aggregation: only the accumulator is kept in state.

    >>> class Mean(AggregateFunction[float, tuple[float, int], float]):
    ...     def create_accumulator(self): return (0.0, 0)
    ...     def add(self, value, acc): return (acc[0] + value, acc[1] + 1)
    ...     def get_result(self, acc): return acc[0] / acc[1]
    >>> m = Mean(); m.get_result(m.add(3.0, m.add(1.0, m.create_accumulator())))
    2.0
    """

    @abstractmethod
    def create_accumulator(self) -> ACC: ...

    @abstractmethod
    def add(self, value: T, accumulator: ACC) -> ACC: ...

    @abstractmethod
    def get_result(self, accumulator: ACC) -> OUT: ...

    def merge(self, a: ACC, b: ACC) -> ACC:
        """Combine two accumulators into one: merging windows (sessions) need it when two
        windows of a key become one. ``a`` is the earlier window's accumulator.

        Optional: the default raises :class:`NotImplementedError`, and a windowed ``aggregate``
        over a merging assigner refuses a function that does not override it (``PlanError``).

        >>> class Count(AggregateFunction[object, int, int]):
        ...     def create_accumulator(self): return 0
        ...     def add(self, value, acc): return acc + 1
        ...     def get_result(self, acc): return acc
        ...     def merge(self, a, b): return a + b
        >>> Count().merge(2, 3)
        5
        """
        raise NotImplementedError(f"{type(self).__name__} does not support merge")


@dataclass(frozen=True)
class StateDescriptor:
    """Base of all descriptors: state is looked up by ``name`` within one operator."""

    name: str

    @property
    def value_codec(self) -> Codec:
        """How the backend serializes this state's values (see :data:`Codec`); None: pickle."""
        return getattr(self, "codec", None)

    @property
    def time_to_live(self) -> StateTtl | None:
        """The state's :class:`StateTtl`, None for kinds without one."""
        return getattr(self, "ttl", None)


@dataclass(frozen=True)
class StateTtl:
    """Time to live of a key's state, in processing time (the operator's clock), as Flink's
    ``StateTtlConfig``: a key's entry expires ``ttl_ms`` after it was last written (or also read,
    with ``refresh_on_read``), and an expired entry is never returned. It applies to the key's
    whole entry: a value, a whole list, a whole map (Flink expires list elements and map entries
    one by one). Expired entries are removed when read, when a checkpoint is taken, and every so
    many writes.

    >>> StateTtl(60_000).ttl_ms
    60000
    """

    ttl_ms: int
    refresh_on_read: bool = False

    def __post_init__(self) -> None:
        if type(self.ttl_ms) is not int or self.ttl_ms < 1:
            raise ValueError(f"a state's ttl_ms must be a positive int, not {self.ttl_ms!r}")


@dataclass(frozen=True)
class ValueStateDescriptor(StateDescriptor, Generic[T]):
    """One value per key; ``default`` is returned while nothing was stored (keep it immutable).
    ``ttl``: see :class:`StateTtl`; ``codec``: see :data:`Codec`.

    >>> ValueStateDescriptor("profile", default={}, codec="json").codec
    'json'
    """

    default: Any = None
    ttl: StateTtl | None = None
    codec: Codec = None


@dataclass(frozen=True)
class ListStateDescriptor(StateDescriptor, Generic[T]):
    """A list of values per key (``ttl``: see :class:`StateTtl`; ``codec``: see :data:`Codec`)."""

    ttl: StateTtl | None = None
    codec: Codec = None


@dataclass(frozen=True)
class MapStateDescriptor(StateDescriptor):
    """A dict per key (``ttl``: see :class:`StateTtl`; ``codec``: see :data:`Codec`)."""

    ttl: StateTtl | None = None
    codec: Codec = None


@dataclass(frozen=True)
class ReducingStateDescriptor(StateDescriptor, Generic[T]):
    """One value per key, combined with each added value by ``reduce(old, new)``."""

    reduce: Callable[[Any, Any], Any]
    codec: Codec = None


@dataclass(frozen=True)
class AggregatingStateDescriptor(StateDescriptor):
    """One accumulator per key, maintained by an :class:`AggregateFunction`."""

    aggregate: AggregateFunction[Any, Any, Any]
    codec: Codec = None
