"""Connected streams: two streams into one two-input operator (``a.connect(b)``).

``a.connect(b).process(CoProcessFunction)`` sees both streams' records through one method each;
``a.key_by(k1).connect(b.key_by(k2))`` (or ``a.connect(b).key_by(k1, k2)``) with a
:class:`KeyedCoProcessFunction` shares keyed state and timers per key between them.
``main.connect(rules.broadcast(DESCRIPTOR))`` is the broadcast state pattern.

>>> from actorflow import Flow
>>> flow = Flow()
>>> words = flow.from_iterable(["a", "b"])
>>> numbers = flow.from_iterable([1, 2])
>>> out = words.connect(numbers).map(str.upper, lambda n: n * 10).collect()
>>> flow.execute()
>>> sorted(out.values, key=str)
[10, 20, 'A', 'B']
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from actorflow.api import nodes
from actorflow.errors import PlanError
from actorflow.operators.base import Collector
from actorflow.operators.broadcast import (
    BroadcastProcessFunction,
    BroadcastProcessOperator,
    KeyedBroadcastProcessFunction,
    KeyedBroadcastProcessOperator,
)
from actorflow.operators.co_process import (
    CoProcessFunction,
    CoProcessOperator,
    KeyedCoProcessFunction,
    KeyedCoProcessOperator,
)
from actorflow.operators.process import Context
from actorflow.state.descriptors import MapStateDescriptor

if TYPE_CHECKING:
    from actorflow.api.stream import DataStream

__all__ = ["BroadcastConnectedStream", "BroadcastStream", "ConnectedStreams"]

T1 = TypeVar("T1")
T2 = TypeVar("T2")
U = TypeVar("U")
K = TypeVar("K")


class _CoMap(CoProcessFunction[Any, Any, Any]):
    def __init__(self, fn1: Callable[[Any], Any], fn2: Callable[[Any], Any]) -> None:
        self.fn1 = fn1
        self.fn2 = fn2

    def process_element1(self, value: Any, ctx: Context, out: Collector) -> None:
        out.collect(self.fn1(value))

    def process_element2(self, value: Any, ctx: Context, out: Collector) -> None:
        out.collect(self.fn2(value))


class ConnectedStreams(Generic[T1, T2]):
    """Two streams that a two-input operator will read; records keep their own types."""

    def __init__(self, first: DataStream[T1], second: DataStream[T2]) -> None:
        if first.flow is not second.flow:
            raise PlanError("cannot connect streams of different flows")
        self.first = first
        self.second = second

    def key_by(
        self, key1: Callable[[T1], K] | str, key2: Callable[[T2], K] | str
    ) -> ConnectedStreams[T1, T2]:
        """Partition both streams by their own key, so equal keys of both sides meet."""
        return ConnectedStreams(self.first.key_by(key1), self.second.key_by(key2))

    def process(
        self,
        function: CoProcessFunction[T1, T2, U] | KeyedCoProcessFunction[T1, T2, U],
        *,
        name: str | None = None,
        parallelism: int | None = None,
    ) -> DataStream[U]:
        """Run ``function`` (a fresh copy per instance) over both streams.

        A :class:`KeyedCoProcessFunction` needs both streams keyed (:meth:`key_by`); raises
        :class:`PlanError` otherwise, or for a function of another kind.
        """
        first, second = self.first, self.second
        make: nodes.MakeOperator
        if isinstance(function, KeyedCoProcessFunction):
            key1, key2 = _key(first), _key(second)
            if key1 is None or key2 is None:
                raise PlanError(
                    "a KeyedCoProcessFunction needs two keyed streams: "
                    "a.key_by(k1).connect(b.key_by(k2)) or a.connect(b).key_by(k1, k2)"
                )
            make = lambda node_name: KeyedCoProcessOperator(  # noqa: E731
                node_name, copy.deepcopy(function), key1, key2
            )
        elif isinstance(function, CoProcessFunction):
            make = lambda node_name: CoProcessOperator(node_name, copy.deepcopy(function))  # noqa: E731
        else:
            raise PlanError(
                f"connect(...).process() takes a CoProcessFunction or KeyedCoProcessFunction, "
                f"got {function!r}"
            )
        return nodes.add_two_input(first, second, "co_process", name, make, parallelism=parallelism)

    def map(
        self,
        fn1: Callable[[T1], U],
        fn2: Callable[[T2], U],
        *,
        name: str | None = None,
        parallelism: int | None = None,
    ) -> DataStream[U]:
        """One output stream: ``fn1`` over the first stream's records, ``fn2`` over the second's."""
        return self.process(_CoMap(fn1, fn2), name=name or "co_map", parallelism=parallelism)


def _key(stream: DataStream[Any]) -> Callable[[Any], Any] | None:
    return getattr(stream, "key", None)


class BroadcastStream(Generic[T2]):
    """A stream every instance of the next operator sees in full, with declared broadcast state.

    Made by ``stream.broadcast(descriptor, ...)``; use it in ``main.connect(broadcast_stream)``.
    """

    def __init__(self, stream: DataStream[T2], descriptors: Sequence[MapStateDescriptor]) -> None:
        for descriptor in descriptors:
            if not isinstance(descriptor, MapStateDescriptor):
                raise PlanError(f"broadcast state is declared with MapStateDescriptor, got {descriptor!r}")
        names = [descriptor.name for descriptor in descriptors]
        if len(set(names)) != len(names):
            raise PlanError(f"broadcast state names must differ, got {names}")
        self.stream = stream
        self.descriptors = tuple(descriptors)


class BroadcastConnectedStream(Generic[T1, T2]):
    """A main stream connected to a :class:`BroadcastStream`; finish with ``process``."""

    def __init__(self, main: DataStream[T1], broadcast: BroadcastStream[T2]) -> None:
        if main.flow is not broadcast.stream.flow:
            raise PlanError("cannot connect streams of different flows")
        self.main = main
        self.broadcast = broadcast

    def process(
        self,
        function: BroadcastProcessFunction[T1, T2, U] | KeyedBroadcastProcessFunction[T1, T2, U],
        *,
        name: str | None = None,
        parallelism: int | None = None,
    ) -> DataStream[U]:
        """Run ``function`` (a fresh copy per instance): main records to ``process_element``,
        broadcast records to ``process_broadcast_element`` on every instance.

        A :class:`KeyedBroadcastProcessFunction` needs a keyed main stream, a
        :class:`BroadcastProcessFunction` a non-keyed one; raises :class:`PlanError` otherwise.
        """
        main = self.main
        descriptors = self.broadcast.descriptors
        key = _key(main)
        make: nodes.MakeOperator
        if isinstance(function, KeyedBroadcastProcessFunction):
            if key is None:
                raise PlanError("a KeyedBroadcastProcessFunction needs a keyed main stream: key_by() first")
            make = lambda node_name: KeyedBroadcastProcessOperator(  # noqa: E731
                node_name, copy.deepcopy(function), key, descriptors
            )
        elif isinstance(function, BroadcastProcessFunction):
            if key is not None:
                raise PlanError("a keyed main stream takes a KeyedBroadcastProcessFunction")
            make = lambda node_name: BroadcastProcessOperator(  # noqa: E731
                node_name, copy.deepcopy(function), descriptors
            )
        else:
            raise PlanError(
                "connect(broadcast_stream).process() takes a BroadcastProcessFunction or "
                f"KeyedBroadcastProcessFunction, got {function!r}"
            )
        return nodes.add_two_input(
            main, self.broadcast.stream, "broadcast_process", name, make, parallelism=parallelism
        )
