"""The trigger's view of a window operator's current key and window, and the layouts of the
trigger-state table.

Trigger state lives in the operator's ``trigger_state`` table as ``{key: {window: {name: value}}}``;
snapshots show it by scope, ``{(key, window): {name: value}}`` (:func:`by_scope`, :func:`by_key`).
A window timer's key in the timer queues is the scope ``(key, window)``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from actorflow.operators.windows.assigners import GLOBAL_WINDOW, TimeWindow
from actorflow.operators.windows.functions import Watermark
from actorflow.operators.windows.triggers import OnMergeContext
from actorflow.time.timers import IndexedTimerQueue

if TYPE_CHECKING:
    from actorflow.operators.windows.operator import WindowOperator

__all__ = ["TriggerScope", "by_key", "by_scope", "clear_trigger_state", "timers_of"]


class TriggerScope(OnMergeContext):
    """The trigger's view of the current key and window (one object, re-pointed per call).

    The key is the operator's key context (``keys.current``), which the operator sets before it
    calls the trigger: trigger state is read through it, so it is the key whose entries the
    RocksDB cache keeps live.
    """

    __slots__ = ("keys", "merged", "operator", "window")

    def __init__(self, operator: WindowOperator) -> None:
        self.operator = operator
        self.keys = operator.keys
        self.window: TimeWindow = GLOBAL_WINDOW
        self.merged: list[TimeWindow] = []

    @property
    def key(self) -> Hashable:
        """The current key."""
        return self.keys.current  # type: ignore[no-any-return]

    @property
    def merged_windows(self) -> list[TimeWindow]:
        return self.merged

    def merge_state(self, name: str, combine: Callable[[Any, Any], Any]) -> None:
        per_key = self.operator.triggers.get(self.keys.current)
        if per_key is None:
            return
        combined: Any = None
        found = False
        for window in self.merged:
            state = per_key.get(window)
            if state is not None and name in state:
                combined = combine(combined, state[name]) if found else state[name]
                found = True
        if found:
            self.set_state(name, combined)

    @property
    def current_watermark(self) -> Watermark:
        return Watermark(self.operator.watermark)

    def current_processing_time(self) -> int:
        return self.operator.context.clock.now()

    def register_event_time_timer(self, time: int) -> None:
        self.operator.event_timers.add(time, (self.keys.current, self.window))

    def delete_event_time_timer(self, time: int) -> None:
        self.operator.event_timers.remove(time, (self.keys.current, self.window))

    def register_processing_time_timer(self, time: int) -> None:
        self.operator.processing_timers.add(time, (self.keys.current, self.window))

    def delete_processing_time_timer(self, time: int) -> None:
        self.operator.processing_timers.remove(time, (self.keys.current, self.window))

    def get_state(self, name: str, default: Any = None) -> Any:
        per_key = self.operator.triggers.get(self.keys.current)
        if per_key is None:
            return default
        state = per_key.get(self.window)
        return default if state is None else state.get(name, default)

    def set_state(self, name: str, value: Any) -> None:
        triggers = self.operator.triggers
        key = self.keys.current
        per_key = triggers.get(key)
        if per_key is None:
            triggers[key] = {self.window: {name: value}}
            return
        state = per_key.get(self.window)
        if state is None:
            per_key[self.window] = {name: value}
        else:
            state[name] = value

    def clear_state(self, name: str) -> None:
        clear_trigger_state(self.operator.triggers, self.keys.current, self.window, name)


def clear_trigger_state(
    triggers: MutableMapping[Hashable, dict[TimeWindow, dict[str, Any]]],
    key: Hashable,
    window: TimeWindow,
    name: str | None = None,
) -> None:
    """Drop ``key``'s trigger state ``name`` of ``window`` (all of it if None), and the key's
    entry once it holds nothing."""
    per_key = triggers.get(key)
    if per_key is None:
        return
    state = per_key.get(window)
    if state is None:
        return
    if name is not None:
        state.pop(name, None)
        if state:
            return
    del per_key[window]
    if not per_key:
        del triggers[key]


def timers_of(queue: IndexedTimerQueue, key: Hashable) -> list[tuple[int, TimeWindow, int]]:
    """``key``'s timers as ``[(time, window, sequence)]`` (the queue's keys are ``(key, window)``)."""
    return [(time, scope[1], sequence) for time, scope, sequence in queue.timers_of(key)]


def by_scope(triggers: Mapping[Hashable, Any]) -> dict[tuple[Hashable, TimeWindow], dict[str, Any]]:
    """``{key: {window: state}}`` as ``{(key, window): state}`` (the snapshots' format)."""
    return {(key, window): state for key, per_key in triggers.items() for window, state in per_key.items()}


def by_key(
    scopes: Iterable[tuple[tuple[Hashable, TimeWindow], dict[str, Any]]],
) -> dict[Hashable, dict[TimeWindow, dict[str, Any]]]:
    """``{(key, window): state}`` items as ``{key: {window: state}}`` (the tables' layout)."""
    triggers: dict[Hashable, dict[TimeWindow, dict[str, Any]]] = {}
    for (key, window), state in scopes:
        per_key = triggers.get(key)
        if per_key is None:
            triggers[key] = {window: state}
        else:
            per_key[window] = state
    return triggers
