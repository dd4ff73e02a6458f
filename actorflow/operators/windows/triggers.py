"""Triggers: when a window's function runs, and when its contents are purged.

The window operator calls a trigger for every record added to a window and for every timer the
trigger registered; the :class:`TriggerResult` says whether to emit the window's result (FIRE), to
drop its contents (PURGE), both, or neither. Timers and per-window trigger state are scoped to the
current key and window through the :class:`TriggerContext`.

With a merging assigner (sessions) two windows of a key can become one. The operator then calls
:meth:`Trigger.on_merge` for the new window, whose context can merge the old windows' trigger state
(:meth:`OnMergeContext.merge_state`), and :meth:`Trigger.clear` for each old window. A trigger that
cannot merge (``can_merge()`` is False, the default for user-written triggers) is refused with such an
assigner when the flow is built.

>>> trigger = PurgingTrigger.of(CountTrigger.of(2))
>>> trigger
PurgingTrigger.of(CountTrigger.of(2))
"""

from __future__ import annotations

import operator
from abc import ABC, abstractmethod
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Any

from actorflow.errors import PlanError
from actorflow.operators.windows.functions import Watermark

if TYPE_CHECKING:
    from actorflow.operators.windows.assigners import TimeWindow

__all__ = [
    "ContinuousEventTimeTrigger",
    "CountTrigger",
    "EventTimeTrigger",
    "NeverTrigger",
    "OnMergeContext",
    "ProcessingTimeTrigger",
    "PurgingTrigger",
    "Trigger",
    "TriggerContext",
    "TriggerResult",
]


class TriggerResult(Enum):
    """What the operator does with a window after a trigger call."""

    CONTINUE = (False, False)
    FIRE = (True, False)
    PURGE = (False, True)
    FIRE_AND_PURGE = (True, True)

    @property
    def fire(self) -> bool:
        return self.value[0]

    @property
    def purge(self) -> bool:
        return self.value[1]


class TriggerContext(ABC):
    """Time, timers and state of the current (key, window), as a trigger sees them."""

    @property
    @abstractmethod
    def current_watermark(self) -> Watermark:
        """``current_watermark()``: the operator's event time (the last watermark it received).

        A property whose value is called (:class:`~actorflow.operators.windows.functions.Watermark`)
        so that triggers written for 0.1, which read it without the call, go on working for a release.
        """

    @abstractmethod
    def current_processing_time(self) -> int:
        """The clock's time in epoch milliseconds."""

    @abstractmethod
    def register_event_time_timer(self, time: int) -> None:
        """Call ``on_event_time`` for this key and window once the watermark reaches ``time``."""

    @abstractmethod
    def delete_event_time_timer(self, time: int) -> None: ...

    @abstractmethod
    def register_processing_time_timer(self, time: int) -> None:
        """Call ``on_processing_time`` for this key and window once the clock reaches ``time``."""

    @abstractmethod
    def delete_processing_time_timer(self, time: int) -> None: ...

    @abstractmethod
    def get_state(self, name: str, default: Any = None) -> Any:
        """The trigger's value ``name`` for this key and window (cleared with the window)."""

    @abstractmethod
    def set_state(self, name: str, value: Any) -> None: ...

    @abstractmethod
    def clear_state(self, name: str) -> None: ...


class OnMergeContext(TriggerContext):
    """The context of :meth:`Trigger.on_merge`: scoped to the new window, which replaces
    ``merged_windows`` (their trigger state and timers are cleared right after ``on_merge``)."""

    @property
    @abstractmethod
    def merged_windows(self) -> list[TimeWindow]:
        """The windows of the current key that merged into the new one, in time order."""

    @abstractmethod
    def merge_state(self, name: str, combine: Callable[[Any, Any], Any]) -> None:
        """Set the new window's value ``name`` to the merged windows' values of ``name`` combined
        with ``combine`` (in time order); windows without a value are skipped, none leaves it unset."""


class Trigger(ABC):
    """Decides when a window fires. Subclass it for custom triggers; keep per-window data in ``ctx``.

    One trigger object serves every key and window of an operator instance: it must not keep
    per-window data in attributes.
    """

    @abstractmethod
    def on_element(
        self, element: Any, timestamp: int | None, window: TimeWindow, ctx: TriggerContext
    ) -> TriggerResult:
        """``element`` was added to ``window``."""

    def on_event_time(self, time: int, window: TimeWindow, ctx: TriggerContext) -> TriggerResult:
        """An event-time timer this trigger registered for ``window`` fired (default: continue)."""
        return TriggerResult.CONTINUE

    def on_processing_time(self, time: int, window: TimeWindow, ctx: TriggerContext) -> TriggerResult:
        """A processing-time timer this trigger registered for ``window`` fired (default: continue)."""
        return TriggerResult.CONTINUE

    def clear(self, window: TimeWindow, ctx: TriggerContext) -> None:  # noqa: B027 - optional hook
        """The window is gone: delete the timers this trigger set (its state is cleared for it)."""

    def can_merge(self) -> bool:
        """Whether the trigger implements :meth:`on_merge`, so merging assigners can use it."""
        return False

    def on_merge(self, window: TimeWindow, ctx: OnMergeContext) -> None:
        """Windows merged into ``window``: merge their state into it and set its timers.

        Called only when :meth:`can_merge` is True.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot merge windows")


class EventTimeTrigger(Trigger):
    """Fires once the watermark passes ``window.max_timestamp``, and again for each late record
    admitted by the allowed lateness. The default of event-time assigners."""

    def on_element(
        self, element: Any, timestamp: int | None, window: TimeWindow, ctx: TriggerContext
    ) -> TriggerResult:
        max_timestamp = window.end - 1
        if max_timestamp <= ctx.current_watermark():
            return TriggerResult.FIRE  # a late record inside the allowed lateness
        ctx.register_event_time_timer(max_timestamp)
        return TriggerResult.CONTINUE

    def on_event_time(self, time: int, window: TimeWindow, ctx: TriggerContext) -> TriggerResult:
        return TriggerResult.FIRE if time == window.max_timestamp else TriggerResult.CONTINUE

    def clear(self, window: TimeWindow, ctx: TriggerContext) -> None:
        ctx.delete_event_time_timer(window.max_timestamp)

    def can_merge(self) -> bool:
        return True

    def on_merge(self, window: TimeWindow, ctx: OnMergeContext) -> None:
        # The merged window's end was not reached yet: it fires when it is. If it was (a late record
        # within the allowed lateness), on_element fires it at once instead.
        if window.end - 1 > ctx.current_watermark():
            ctx.register_event_time_timer(window.end - 1)

    def __repr__(self) -> str:
        return "EventTimeTrigger()"


class ProcessingTimeTrigger(Trigger):
    """Fires once the clock reaches ``window.max_timestamp``. The default of processing-time
    assigners."""

    def on_element(
        self, element: Any, timestamp: int | None, window: TimeWindow, ctx: TriggerContext
    ) -> TriggerResult:
        ctx.register_processing_time_timer(window.max_timestamp)
        return TriggerResult.CONTINUE

    def on_processing_time(self, time: int, window: TimeWindow, ctx: TriggerContext) -> TriggerResult:
        return TriggerResult.FIRE

    def clear(self, window: TimeWindow, ctx: TriggerContext) -> None:
        ctx.delete_processing_time_timer(window.max_timestamp)

    def can_merge(self) -> bool:
        return True

    def on_merge(self, window: TimeWindow, ctx: OnMergeContext) -> None:
        if window.end - 1 > ctx.current_processing_time():
            ctx.register_processing_time_timer(window.end - 1)

    def __repr__(self) -> str:
        return "ProcessingTimeTrigger()"


class NeverTrigger(Trigger):
    """Never fires: the default of :class:`GlobalWindows`."""

    def on_element(
        self, element: Any, timestamp: int | None, window: TimeWindow, ctx: TriggerContext
    ) -> TriggerResult:
        return TriggerResult.CONTINUE

    def can_merge(self) -> bool:
        return True  # no state, no timers: nothing to merge

    def on_merge(self, window: TimeWindow, ctx: OnMergeContext) -> None:
        pass

    def __repr__(self) -> str:
        return "NeverTrigger()"


class CountTrigger(Trigger):
    """Fires every ``count`` records of a window (the count restarts after each firing)."""

    def __init__(self, count: int) -> None:
        if count <= 0:
            raise PlanError(f"CountTrigger needs a positive count, got {count}")
        self.count = count

    @classmethod
    def of(cls, count: int) -> CountTrigger:
        """Raises :class:`PlanError` unless ``count > 0``."""
        return cls(count)

    def on_element(
        self, element: Any, timestamp: int | None, window: TimeWindow, ctx: TriggerContext
    ) -> TriggerResult:
        seen = ctx.get_state("count", 0) + 1
        if seen >= self.count:
            ctx.set_state("count", 0)
            return TriggerResult.FIRE
        ctx.set_state("count", seen)
        return TriggerResult.CONTINUE

    def clear(self, window: TimeWindow, ctx: TriggerContext) -> None:
        ctx.clear_state("count")

    def can_merge(self) -> bool:
        return True

    def on_merge(self, window: TimeWindow, ctx: OnMergeContext) -> None:
        # The records counted towards the next firing in each window all count in the merged one.
        # A sum that reaches the count fires at the next record, as in Flink.
        ctx.merge_state("count", operator.add)

    def __repr__(self) -> str:
        return f"CountTrigger.of({self.count})"


class ContinuousEventTimeTrigger(Trigger):
    """Early results: fires every ``interval`` ms of event time while the window is open (at the
    interval boundaries the watermark passes), and once more when it passes the window's end."""

    def __init__(self, interval: int) -> None:
        if interval <= 0:
            raise PlanError(f"ContinuousEventTimeTrigger needs a positive interval, got {interval}")
        self.interval = interval

    @classmethod
    def of(cls, interval: int) -> ContinuousEventTimeTrigger:
        """Raises :class:`PlanError` unless ``interval > 0``."""
        return cls(interval)

    def on_element(
        self, element: Any, timestamp: int | None, window: TimeWindow, ctx: TriggerContext
    ) -> TriggerResult:
        max_timestamp = window.end - 1
        if max_timestamp <= ctx.current_watermark():
            return TriggerResult.FIRE  # a late record inside the allowed lateness
        ctx.register_event_time_timer(max_timestamp)
        if ctx.get_state("next") is None and timestamp is not None:
            following = timestamp - timestamp % self.interval + self.interval
            ctx.set_state("next", following)
            ctx.register_event_time_timer(following)
        return TriggerResult.CONTINUE

    def on_event_time(self, time: int, window: TimeWindow, ctx: TriggerContext) -> TriggerResult:
        if time == ctx.get_state("next"):
            following = time + self.interval
            ctx.set_state("next", following)
            ctx.register_event_time_timer(following)
            return TriggerResult.FIRE
        if time == window.end - 1:
            return TriggerResult.FIRE
        return TriggerResult.CONTINUE

    def clear(self, window: TimeWindow, ctx: TriggerContext) -> None:
        following = ctx.get_state("next")
        if following is not None:
            ctx.delete_event_time_timer(following)
        ctx.delete_event_time_timer(window.end - 1)
        ctx.clear_state("next")

    def can_merge(self) -> bool:
        return True

    def on_merge(self, window: TimeWindow, ctx: OnMergeContext) -> None:
        # The earliest pending early firing of the merged windows is the merged window's next one.
        ctx.merge_state("next", min)
        following = ctx.get_state("next")
        if following is not None:
            ctx.register_event_time_timer(following)
        if window.end - 1 > ctx.current_watermark():
            ctx.register_event_time_timer(window.end - 1)

    def __repr__(self) -> str:
        return f"ContinuousEventTimeTrigger.of({self.interval})"


def _purging(result: TriggerResult) -> TriggerResult:
    return TriggerResult.FIRE_AND_PURGE if result.fire else result


class PurgingTrigger(Trigger):
    """Wraps a trigger and purges the window's contents whenever it fires."""

    def __init__(self, trigger: Trigger) -> None:
        self.trigger = trigger

    @classmethod
    def of(cls, trigger: Trigger) -> PurgingTrigger:
        return cls(trigger)

    def on_element(
        self, element: Any, timestamp: int | None, window: TimeWindow, ctx: TriggerContext
    ) -> TriggerResult:
        return _purging(self.trigger.on_element(element, timestamp, window, ctx))

    def on_event_time(self, time: int, window: TimeWindow, ctx: TriggerContext) -> TriggerResult:
        return _purging(self.trigger.on_event_time(time, window, ctx))

    def on_processing_time(self, time: int, window: TimeWindow, ctx: TriggerContext) -> TriggerResult:
        return _purging(self.trigger.on_processing_time(time, window, ctx))

    def clear(self, window: TimeWindow, ctx: TriggerContext) -> None:
        self.trigger.clear(window, ctx)

    def can_merge(self) -> bool:
        return self.trigger.can_merge()

    def on_merge(self, window: TimeWindow, ctx: OnMergeContext) -> None:
        self.trigger.on_merge(window, ctx)

    def __repr__(self) -> str:
        return f"PurgingTrigger.of({self.trigger!r})"
