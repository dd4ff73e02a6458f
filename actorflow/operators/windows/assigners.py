"""Window assigners: which windows a record belongs to.

An assigner maps a record and a time to a list of windows. Event-time assigners get the record's
timestamp; processing-time assigners get the clock's time when the record is processed. Windows are
aligned to the epoch plus ``offset``: a tumbling window of ``size`` starts at
``t - (t - offset) % size``.

>>> TumblingEventTimeWindows.of(10).assign("x", 23)
[TimeWindow(start=20, end=30)]
>>> SlidingEventTimeWindows.of(10, 5).assign("x", 23)
[TimeWindow(start=20, end=30), TimeWindow(start=15, end=25)]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, NamedTuple

from actorflow.errors import PlanError
from actorflow.operators.windows.triggers import (
    EventTimeTrigger,
    NeverTrigger,
    ProcessingTimeTrigger,
    Trigger,
)
from actorflow.runtime.messages import MAX_WATERMARK, MIN_WATERMARK

__all__ = [
    "GLOBAL_WINDOW",
    "GlobalWindows",
    "SlidingEventTimeWindows",
    "SlidingProcessingTimeWindows",
    "TimeWindow",
    "TumblingEventTimeWindows",
    "TumblingProcessingTimeWindows",
    "WindowAssigner",
]


class TimeWindow(NamedTuple):
    """The half-open time interval ``[start, end)``; immutable and hashable, a state key.

    A named tuple, so hashing and comparing (once per record and window) run in C.
    """

    start: int
    end: int

    @property
    def max_timestamp(self) -> int:
        """The largest timestamp inside the window: ``end - 1``."""
        return self.end - 1


#: The one window of :class:`GlobalWindows`: it spans all of time and never ends by itself.
GLOBAL_WINDOW = TimeWindow(MIN_WATERMARK, MAX_WATERMARK + 1)


class WindowAssigner(ABC):
    """Maps a record to its windows; says which time it works in and its default trigger."""

    #: True if windows are in event time (``assign`` gets the record's timestamp, late data exists).
    is_event_time: ClassVar[bool] = True

    @abstractmethod
    def assign(self, element: Any, timestamp: int) -> list[TimeWindow]:
        """The windows ``element`` belongs to, given its time (event or processing time)."""

    @abstractmethod
    def default_trigger(self) -> Trigger:
        """The trigger used when the user sets none."""


def _check(size: int, slide: int, offset: int) -> None:
    if size <= 0 or slide <= 0:
        raise PlanError(f"window size and slide must be positive, got size={size} slide={slide}")
    if not 0 <= offset < slide:
        raise PlanError(f"window offset must be in [0, {slide}), got {offset}")


class _Tumbling(WindowAssigner):
    def __init__(self, size: int, offset: int = 0) -> None:
        _check(size, size, offset)
        self.size = size
        self.offset = offset

    def assign(self, element: Any, timestamp: int) -> list[TimeWindow]:
        start = timestamp - (timestamp - self.offset) % self.size
        return [TimeWindow(start, start + self.size)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}.of({self.size}, offset={self.offset})"


class _Sliding(WindowAssigner):
    def __init__(self, size: int, slide: int, offset: int = 0) -> None:
        _check(size, slide, offset)
        self.size = size
        self.slide = slide
        self.offset = offset

    def assign(self, element: Any, timestamp: int) -> list[TimeWindow]:
        size = self.size
        last_start = timestamp - (timestamp - self.offset) % self.slide
        return [
            TimeWindow(start, start + size) for start in range(last_start, timestamp - size, -self.slide)
        ]

    def __repr__(self) -> str:
        return f"{type(self).__name__}.of({self.size}, {self.slide}, offset={self.offset})"


class TumblingEventTimeWindows(_Tumbling):
    """Back-to-back event-time windows of ``size`` ms; each record is in exactly one."""

    @classmethod
    def of(cls, size: int, offset: int = 0) -> TumblingEventTimeWindows:
        """Raises :class:`PlanError` unless ``size > 0`` and ``0 <= offset < size``."""
        return cls(size, offset)

    def default_trigger(self) -> Trigger:
        return EventTimeTrigger()


class SlidingEventTimeWindows(_Sliding):
    """Event-time windows of ``size`` ms starting every ``slide`` ms; they overlap if slide < size."""

    @classmethod
    def of(cls, size: int, slide: int, offset: int = 0) -> SlidingEventTimeWindows:
        """Raises :class:`PlanError` unless ``size, slide > 0`` and ``0 <= offset < slide``."""
        return cls(size, slide, offset)

    def default_trigger(self) -> Trigger:
        return EventTimeTrigger()


class TumblingProcessingTimeWindows(_Tumbling):
    """Back-to-back windows of ``size`` ms of the clock's time when a record is processed."""

    is_event_time = False

    @classmethod
    def of(cls, size: int, offset: int = 0) -> TumblingProcessingTimeWindows:
        return cls(size, offset)

    def default_trigger(self) -> Trigger:
        return ProcessingTimeTrigger()


class SlidingProcessingTimeWindows(_Sliding):
    """Sliding windows of the clock's time when a record is processed."""

    is_event_time = False

    @classmethod
    def of(cls, size: int, slide: int, offset: int = 0) -> SlidingProcessingTimeWindows:
        return cls(size, slide, offset)

    def default_trigger(self) -> Trigger:
        return ProcessingTimeTrigger()


class GlobalWindows(WindowAssigner):
    """Every record goes to :data:`GLOBAL_WINDOW`; it fires only with a trigger such as a count.

    The default trigger never fires, and the window's state is never cleaned up (as in Flink).
    """

    is_event_time = False
    _windows: ClassVar[list[TimeWindow]] = [GLOBAL_WINDOW]

    @classmethod
    def create(cls) -> GlobalWindows:
        return cls()

    def assign(self, element: Any, timestamp: int) -> list[TimeWindow]:
        return self._windows

    def default_trigger(self) -> Trigger:
        return NeverTrigger()

    def __repr__(self) -> str:
        return "GlobalWindows.create()"
