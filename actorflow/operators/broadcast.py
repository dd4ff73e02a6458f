"""The broadcast state pattern: a low-volume stream (rules) sent to every instance of an operator.

``main.connect(rules.broadcast(RULES))`` joins a main stream (keyed or not) with a stream every
instance sees in full. Records of the broadcast side go to ``process_broadcast_element``, which may
change the *broadcast state*: named dicts, one per :class:`MapStateDescriptor` given to
``broadcast()``, identical on every instance because every instance applies the same updates. Records
of the main side go to ``process_element``, which can read broadcast state but not change it (a change
there would make the instances disagree), and, keyed, use keyed state and timers as a
:class:`~actorflow.operators.process.KeyedProcessFunction` does.

This is how rules change at run time: a rules topic feeds the broadcast side, transactions the main
side. The two sides are not ordered against each other (as in Flink): a record may be processed
before a rule sent earlier from elsewhere arrives.

>>> from actorflow import MapStateDescriptor
>>> RULES = MapStateDescriptor("rules")
>>> class Limit(KeyedBroadcastProcessFunction):
...     def process_element(self, tx, ctx, out):
...         limit = ctx.get_broadcast_state(RULES).get("limit")
...         if limit is not None and tx["amount"] > limit:
...             out.collect(tx)
...     def process_broadcast_element(self, rule, ctx, out):
...         ctx.get_broadcast_state(RULES)["limit"] = rule["limit"]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, MutableMapping
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from actorflow.errors import StateError
from actorflow.operators.base import Collector
from actorflow.operators.process import (
    Context,
    KeyedProcessOperator,
    ProcessOperator,
    RuntimeContext,
    TimeDomain,
    TimerService,
)
from actorflow.runtime.messages import Batch
from actorflow.state.descriptors import (
    ListStateDescriptor,
    MapStateDescriptor,
    StateDescriptor,
    ValueStateDescriptor,
)
from actorflow.state.keyed import NO_KEY, KeyedStateBackend
from actorflow.time.timers import TimerQueue

__all__ = [
    "BroadcastContext",
    "BroadcastProcessFunction",
    "BroadcastProcessOperator",
    "KeyedBroadcastProcessFunction",
    "KeyedBroadcastProcessOperator",
]

IN1 = TypeVar("IN1")
IN2 = TypeVar("IN2")
OUT = TypeVar("OUT")


def _no_key(value: Any) -> Any:
    """The key of a broadcast record: none (keyed state is not reachable from the broadcast side)."""
    return NO_KEY


class BroadcastContext(Context):
    """A :class:`~actorflow.operators.process.Context` that also reaches the broadcast state.

    Writable while a broadcast record is processed, read-only (a mapping proxy) otherwise.
    """

    __slots__ = ("_backend", "_changed", "_state", "_writable")

    def __init__(
        self,
        timers: TimerService,
        keys: Any,
        emit: Any,
        state: dict[str, dict[Any, Any]],
        backend: KeyedStateBackend | None,
    ) -> None:
        super().__init__(timers, keys, emit)
        self._state = state
        self._backend = backend
        self._writable = False
        #: The operator's changed keys in incremental mode: keys reached by apply_to_keyed_state.
        self._changed: set[Any] | None = None

    def get_broadcast_state(self, descriptor: MapStateDescriptor) -> MutableMapping[Any, Any]:
        """The broadcast state named by ``descriptor`` (one of those given to ``broadcast()``).

        Raises :class:`StateError` for a descriptor the broadcast stream did not declare. From
        ``process_element`` the mapping is read-only: writing raises ``TypeError``.
        """
        table = self._state.get(descriptor.name)
        if table is None:
            declared = ", ".join(sorted(self._state)) or "none"
            raise StateError(
                f"broadcast state {descriptor.name!r} was not declared in broadcast(...) "
                f"(declared: {declared})"
            )
        return table if self._writable else MappingProxyType(table)  # type: ignore[return-value]

    def apply_to_keyed_state(
        self, descriptor: StateDescriptor, function: Callable[[Any, Any], None]
    ) -> None:
        """From ``process_broadcast_element`` of a keyed function: call ``function(key, state)``
        for every key of this instance that has ``descriptor``'s state (to migrate or clear it when
        a rule changes). ``state`` is the handle of that key, valid during the call."""
        backend = self._backend
        if backend is None or not self._writable:
            raise StateError("apply_to_keyed_state() works in a keyed process_broadcast_element only")
        if isinstance(descriptor, ValueStateDescriptor):
            handle: Any = backend.get_state(descriptor)
        elif isinstance(descriptor, ListStateDescriptor):
            handle = backend.get_list_state(descriptor)
        elif isinstance(descriptor, MapStateDescriptor):
            handle = backend.get_map_state(descriptor)
        else:
            raise StateError(
                f"apply_to_keyed_state() supports value, list and map state, not {descriptor!r}"
            )
        keys = backend.keys
        reached = backend.keys_in(descriptor.name)
        if self._changed is not None:
            self._changed.update(reached)  # the function may change or clear any of them
        try:
            for key in reached:
                keys.current = key
                function(key, handle)
        finally:
            keys.current = NO_KEY


class BroadcastProcessFunction(ABC, Generic[IN1, IN2, OUT]):
    """A non-keyed main stream with a broadcast side (see the module docstring)."""

    def open(self, ctx: RuntimeContext) -> None:
        """Called once per instance before the first record."""

    @abstractmethod
    def process_element(self, value: IN1, ctx: BroadcastContext, out: Collector) -> None:
        """A main-side record; broadcast state is read-only here."""

    @abstractmethod
    def process_broadcast_element(self, value: IN2, ctx: BroadcastContext, out: Collector) -> None:
        """A broadcast record (every instance sees it); broadcast state is writable here."""

    def close(self) -> None:
        """Called once per instance at the end, also after a failure."""


class KeyedBroadcastProcessFunction(ABC, Generic[IN1, IN2, OUT]):
    """A keyed main stream with a broadcast side: keyed state and timers on the main side."""

    def open(self, ctx: RuntimeContext) -> None:
        """Called once per instance before the first record: declare keyed state here."""

    @abstractmethod
    def process_element(self, value: IN1, ctx: BroadcastContext, out: Collector) -> None:
        """A main-side record of key ``ctx.current_key``; broadcast state is read-only here."""

    @abstractmethod
    def process_broadcast_element(self, value: IN2, ctx: BroadcastContext, out: Collector) -> None:
        """A broadcast record: no current key; broadcast state is writable, and
        ``ctx.apply_to_keyed_state`` reaches every key's state."""

    def on_timer(self, timestamp: int, ctx: BroadcastContext, out: Collector) -> None:
        """A timer of key ``ctx.current_key`` fired; broadcast state is read-only here."""

    def close(self) -> None:
        """Called once per instance at the end, also after a failure."""


def _fresh_state(descriptors: Iterable[MapStateDescriptor]) -> dict[str, dict[Any, Any]]:
    return {descriptor.name: {} for descriptor in descriptors}


class BroadcastProcessOperator(ProcessOperator):
    """Runs a :class:`BroadcastProcessFunction`: input 0 is the main side, input 1 the broadcast."""

    def __init__(
        self,
        name: str,
        function: BroadcastProcessFunction[Any, Any, Any],
        descriptors: Iterable[MapStateDescriptor],
    ) -> None:
        super().__init__(name, function)  # type: ignore[arg-type]
        #: The broadcast state of this instance: ``{descriptor name: dict}``.
        self.broadcast_state = _fresh_state(descriptors)

    def _make_context(self, timers: TimerService, keys: Any) -> Context:
        return BroadcastContext(timers, keys, self.emit_side, self.broadcast_state, None)

    def _element_of(self, input: int) -> Callable[[Any, Context, Collector], None]:
        function: Any = self.function
        element: Callable[[Any, Context, Collector], None] = (
            function.process_broadcast_element if input else function.process_element
        )
        return element

    def process_input(self, batch: Batch, input: int) -> Batch:
        self._element = self._element_of(input)
        return _with_writable(self._ctx, input == 1, self.process, batch)  # type: ignore[arg-type]

    def snapshot_state(self) -> dict[str, Any]:
        return {"broadcast": self.broadcast_state}

    def restore_state(self, states: list[Any]) -> None:
        _restore_broadcast(self.broadcast_state, states)


class KeyedBroadcastProcessOperator(KeyedProcessOperator):
    """Runs a :class:`KeyedBroadcastProcessFunction` (input 0 keyed by ``key_of``, input 1 broadcast)."""

    def __init__(
        self,
        name: str,
        function: KeyedBroadcastProcessFunction[Any, Any, Any],
        key_of: Callable[[Any], Any],
        descriptors: Iterable[MapStateDescriptor],
    ) -> None:
        super().__init__(name, function, key_of)  # type: ignore[arg-type]
        self._keys_of = (key_of, _no_key)
        #: The broadcast state of this instance: ``{descriptor name: dict}``.
        self.broadcast_state = _fresh_state(descriptors)
        #: Incremental mode: whether broadcast records came since the last snapshot.
        self._broadcast_changed = False

    def _make_context(self, timers: TimerService, keys: Any) -> Context:
        ctx = BroadcastContext(timers, keys, self.emit_side, self.broadcast_state, self.backend)
        ctx._changed = self.changed_keys
        return ctx

    def _take_changed(self) -> set[Any]:
        changed = super()._take_changed()
        ctx: BroadcastContext = self._ctx  # type: ignore[assignment]
        ctx._changed = self.changed_keys  # apply_to_keyed_state marks the new set
        return changed

    def _element_of(self, input: int) -> Callable[[Any, Context, Collector], None]:
        function: Any = self.function
        element: Callable[[Any, Context, Collector], None] = (
            function.process_broadcast_element if input else function.process_element
        )
        return element

    def process_input(self, batch: Batch, input: int) -> Batch:
        self._element = self._element_of(input)
        self.key_of = self._keys_of[input]
        if input == 1 and batch.values:
            self._broadcast_changed = True
        return _with_writable(self._ctx, input == 1, self.process, batch)  # type: ignore[arg-type]

    def snapshot_state(self) -> dict[str, Any]:
        """The keyed snapshot (full or incremental) plus ``"broadcast"``: the whole broadcast
        state (small, and the same on every instance). An incremental snapshot has it only when
        broadcast records came since the previous one (or after a restore from a full snapshot)."""
        state = super().snapshot_state()
        if "changes" not in state or self._broadcast_changed:
            state["broadcast"] = self.broadcast_state
            self._broadcast_changed = False
        return state

    def restore_state(self, states: list[Any]) -> None:
        """As :meth:`KeyedProcessOperator.restore_state`; the broadcast state is the last one in
        ``states`` (incremental states without broadcast records left it out)."""
        super().restore_state(states)
        _restore_broadcast(self.broadcast_state, [state for state in states if "broadcast" in state][-1:])
        if self.changed_keys is not None and states and "changes" not in states[0]:
            self._broadcast_changed = True  # a changelog started from a full snapshot needs it

    def _fire(self, queue: TimerQueue, limit: int, domain: TimeDomain) -> None:
        # Timers see read-only broadcast state, also when a broadcast batch's watermark fires them.
        ctx: BroadcastContext = self._ctx  # type: ignore[assignment]
        writable = ctx._writable
        ctx._writable = False
        try:
            super()._fire(queue, limit, domain)
        finally:
            ctx._writable = writable


def _restore_broadcast(target: dict[str, dict[Any, Any]], states: list[Any]) -> None:
    # Every instance held the same broadcast state (they all applied the same records), so any
    # one copy restores every new instance, whatever the parallelism.
    if states:
        for name, table in states[0]["broadcast"].items():
            if name in target:
                target[name].update(table)


def _with_writable(
    ctx: BroadcastContext, writable: bool, process: Callable[[Batch], Batch], batch: Batch
) -> Batch:
    ctx._writable = writable
    try:
        return process(batch)
    finally:
        ctx._writable = False
