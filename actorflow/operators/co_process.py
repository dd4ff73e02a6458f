"""Two-input process functions: ``a.connect(b).process(fn)``.

A co-process function has one method per input (``process_element1`` for the first stream's records,
``process_element2`` for the second's) and, keyed, the same keyed state, timers and ``on_timer`` as a
:class:`~actorflow.operators.process.KeyedProcessFunction`: both inputs are partitioned by their own
key selector into the same key space, so records of both sides with equal keys meet in one instance
and share that key's state. The operator's watermark is the minimum over both inputs.

The two inputs are not ordered against each other (as in Flink): a function that must see one
side's record before the other's buffers in state and waits for the watermark.

>>> from actorflow import ValueStateDescriptor
>>> class Enrich(KeyedCoProcessFunction):
...     def open(self, ctx):
...         self.name = ctx.get_state(ValueStateDescriptor("name"))
...     def process_element1(self, order, ctx, out):
...         out.collect((order["id"], self.name.value()))
...     def process_element2(self, customer, ctx, out):
...         self.name.update(customer["name"])
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from actorflow.operators.base import Collector
from actorflow.operators.process import (
    Context,
    KeyedProcessOperator,
    ProcessOperator,
    RuntimeContext,
)
from actorflow.runtime.messages import Batch

__all__ = [
    "CoProcessFunction",
    "CoProcessOperator",
    "KeyedCoProcessFunction",
    "KeyedCoProcessOperator",
]

IN1 = TypeVar("IN1")
IN2 = TypeVar("IN2")
OUT = TypeVar("OUT")


class CoProcessFunction(ABC, Generic[IN1, IN2, OUT]):
    """Per-record logic over two connected (not keyed) streams."""

    def open(self, ctx: RuntimeContext) -> None:
        """Called once per instance before the first record."""

    @abstractmethod
    def process_element1(self, value: IN1, ctx: Context, out: Collector) -> None:
        """Handle a record of the first stream."""

    @abstractmethod
    def process_element2(self, value: IN2, ctx: Context, out: Collector) -> None:
        """Handle a record of the second stream."""

    def close(self) -> None:
        """Called once per instance at the end, also after a failure."""


class KeyedCoProcessFunction(ABC, Generic[IN1, IN2, OUT]):
    """Per-record logic over two keyed streams that share keyed state and timers per key."""

    def open(self, ctx: RuntimeContext) -> None:
        """Called once per instance before the first record: declare state here."""

    @abstractmethod
    def process_element1(self, value: IN1, ctx: Context, out: Collector) -> None:
        """Handle a record of the first stream, with its key as ``ctx.current_key``."""

    @abstractmethod
    def process_element2(self, value: IN2, ctx: Context, out: Collector) -> None:
        """Handle a record of the second stream, with its key as ``ctx.current_key``."""

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        """A timer of key ``ctx.current_key`` fired (``ctx.time_domain`` says which kind)."""

    def close(self) -> None:
        """Called once per instance at the end, also after a failure."""


class CoProcessOperator(ProcessOperator):
    """Runs a :class:`CoProcessFunction`: each input's records go to their own method."""

    def __init__(self, name: str, function: CoProcessFunction[Any, Any, Any]) -> None:
        super().__init__(name, function)  # type: ignore[arg-type]

    def _element_of(self, input: int) -> Callable[[Any, Context, Collector], None]:
        function: Any = self.function
        element: Callable[[Any, Context, Collector], None] = (
            function.process_element2 if input else function.process_element1
        )
        return element

    def process_input(self, batch: Batch, input: int) -> Batch:
        self._element = self._element_of(input)
        return self.process(batch)


class KeyedCoProcessOperator(KeyedProcessOperator):
    """Runs a :class:`KeyedCoProcessFunction`; each input has its own key selector."""

    def __init__(
        self,
        name: str,
        function: KeyedCoProcessFunction[Any, Any, Any],
        key_of1: Callable[[Any], Any],
        key_of2: Callable[[Any], Any],
    ) -> None:
        super().__init__(name, function, key_of1)  # type: ignore[arg-type]
        self._keys_of = (key_of1, key_of2)

    def _element_of(self, input: int) -> Callable[[Any, Context, Collector], None]:
        function: Any = self.function
        element: Callable[[Any, Context, Collector], None] = (
            function.process_element2 if input else function.process_element1
        )
        return element

    def process_input(self, batch: Batch, input: int) -> Batch:
        self._element = self._element_of(input)
        self.key_of = self._keys_of[input]
        return self.process(batch)
