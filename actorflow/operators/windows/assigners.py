"""Window assigners: which windows a record belongs to.

An assigner maps a record and a time to a list of windows. Event-time assigners get the record's
timestamp; processing-time assigners get the clock's time when the record is processed. Windows are
aligned to the epoch plus ``offset``: a tumbling window of ``size`` starts at
``t - (t - offset) % size``.

>>> TumblingEventTimeWindows.of(10).assign("x", 23)
[TimeWindow(start=20, end=30)]
>>> SlidingEventTimeWindows.of(10, 5).assign("x", 23)
[TimeWindow(start=20, end=30), TimeWindow(start=15, end=25)]

Session windows are *merging*: a record gets its own window ``[t, t + gap)``, and the windows of a
key that overlap or touch become one (:meth:`MergingWindowAssigner.merge_windows`), so a session
ends after a gap of inactivity. As in Flink, windows that only touch (``[0, 10)`` and ``[10, 20)``)
merge too.

>>> sessions = EventTimeSessionWindows.with_gap(10)
>>> sessions.assign("x", 23)
[TimeWindow(start=23, end=33)]
>>> sessions.merge_windows([TimeWindow(0, 10), TimeWindow(30, 40), TimeWindow(5, 15)])
[(TimeWindow(start=0, end=15), [TimeWindow(start=0, end=10), TimeWindow(start=5, end=15)])]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
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
    "EventTimeSessionWindows",
    "GlobalWindows",
    "MergingWindowAssigner",
    "ProcessingTimeSessionWindows",
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


def merge_time_windows(windows: Iterable[TimeWindow]) -> list[tuple[TimeWindow, list[TimeWindow]]]:
    """Groups of windows that overlap or touch, each with the window covering the group; windows
    that merge with no other are left out. Groups and their members are in time order.

    >>> merge_time_windows([TimeWindow(10, 20), TimeWindow(0, 10), TimeWindow(25, 30)])
    [(TimeWindow(start=0, end=20), [TimeWindow(start=0, end=10), TimeWindow(start=10, end=20)])]
    """
    merged: list[tuple[TimeWindow, list[TimeWindow]]] = []
    cover: TimeWindow | None = None
    members: list[TimeWindow] = []
    for window in sorted(windows):
        if cover is not None and window.start <= cover.end:
            members.append(window)
            if window.end > cover.end:
                cover = TimeWindow(cover.start, window.end)
            continue
        if len(members) > 1:
            merged.append((cover, members))  # type: ignore[arg-type]
        cover = window
        members = [window]
    if len(members) > 1:
        merged.append((cover, members))  # type: ignore[arg-type]
    return merged


class MergingWindowAssigner(WindowAssigner):
    """An assigner whose windows of one key can merge (sessions).

    The operator keeps a key's windows disjoint: after adding a record's window it asks
    :meth:`merge_windows` which of them become one, and merges their contents, trigger state and
    timers. Its triggers and window functions must be able to merge (checked when the flow is built).
    """

    def merge_windows(self, windows: Iterable[TimeWindow]) -> list[tuple[TimeWindow, list[TimeWindow]]]:
        """``[(merged window, [windows it replaces]), ...]``; by default, windows that overlap or
        touch merge (:func:`merge_time_windows`)."""
        return merge_time_windows(windows)


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


class CumulativeEventTimeWindows(WindowAssigner):
    """Windows that grow by ``step`` ms from the start of each ``size`` ms period (Flink SQL's
    ``CUMULATE``): a record at ``t`` is in ``[start, start + k * step)`` for every ``k`` whose
    window holds ``t``, ``start`` being ``t``'s period's.

    >>> CumulativeEventTimeWindows.of(30, 10).assign(None, 14)
    [TimeWindow(start=0, end=20), TimeWindow(start=0, end=30)]
    """

    def __init__(self, size: int, step: int) -> None:
        _check(size, step, 0)
        if size % step:
            raise PlanError(f"a cumulating window's size ({size}) must be a multiple of its step ({step})")
        self.size = size
        self.step = step

    @classmethod
    def of(cls, size: int, step: int) -> CumulativeEventTimeWindows:
        """Raises :class:`PlanError` unless ``0 < step``, ``step <= size`` and ``step`` divides ``size``."""
        return cls(size, step)

    def assign(self, element: Any, timestamp: int) -> list[TimeWindow]:
        start = timestamp - timestamp % self.size
        first = timestamp - timestamp % self.step + self.step
        return [TimeWindow(start, end) for end in range(first, start + self.size + 1, self.step)]

    def default_trigger(self) -> Trigger:
        return EventTimeTrigger()

    def __repr__(self) -> str:
        return f"CumulativeEventTimeWindows.of({self.size}, {self.step})"


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


def _positive_gap(gap: int) -> int:
    if gap <= 0:
        raise ValueError(f"a session gap must be positive, got {gap}")
    return gap


class _Sessions(MergingWindowAssigner):
    def __init__(self, gap: int | None = None, gap_of: Callable[[Any], int] | None = None) -> None:
        if gap is not None and gap <= 0:
            raise PlanError(f"a session gap must be positive, got {gap}")
        if gap is None and gap_of is None:
            raise PlanError("session windows need a gap or a function giving the gap")
        self.gap = gap
        self.gap_of = gap_of

    def assign(self, element: Any, timestamp: int) -> list[TimeWindow]:
        gap = self.gap if self.gap_of is None else _positive_gap(self.gap_of(element))
        return [TimeWindow(timestamp, timestamp + gap)]  # type: ignore[operator]

    def __repr__(self) -> str:
        if self.gap_of is None:
            return f"{type(self).__name__}.with_gap({self.gap})"
        return f"{type(self).__name__}.with_dynamic_gap({self.gap_of!r})"


class EventTimeSessionWindows(_Sessions):
    """Sessions in event time: a record at ``t`` opens ``[t, t + gap)``, and windows of a key that
    overlap or touch merge. A session fires once the watermark passes its end (``last record's
    timestamp + gap - 1``).

    >>> EventTimeSessionWindows.with_dynamic_gap(lambda r: r["gap"]).assign({"gap": 5}, 100)
    [TimeWindow(start=100, end=105)]
    """

    @classmethod
    def with_gap(cls, gap: int) -> EventTimeSessionWindows:
        """Sessions that end after ``gap`` ms without records. Raises :class:`PlanError` unless
        ``gap > 0``."""
        return cls(gap)

    @classmethod
    def with_dynamic_gap(cls, gap_of: Callable[[Any], int]) -> EventTimeSessionWindows:
        """Each record's window lasts ``gap_of(record)`` ms. A gap that is not positive raises
        :class:`ValueError` when the record is processed (the job fails)."""
        return cls(gap_of=gap_of)

    def default_trigger(self) -> Trigger:
        return EventTimeTrigger()


class ProcessingTimeSessionWindows(_Sessions):
    """Sessions in the clock's time: a record processed at ``now`` opens ``[now, now + gap)``; the
    session fires when the clock reaches its end without a record extending it."""

    is_event_time = False

    @classmethod
    def with_gap(cls, gap: int) -> ProcessingTimeSessionWindows:
        """Raises :class:`PlanError` unless ``gap > 0``."""
        return cls(gap)

    @classmethod
    def with_dynamic_gap(cls, gap_of: Callable[[Any], int]) -> ProcessingTimeSessionWindows:
        """Each record's window lasts ``gap_of(record)`` ms (see
        :meth:`EventTimeSessionWindows.with_dynamic_gap`)."""
        return cls(gap_of=gap_of)

    def default_trigger(self) -> Trigger:
        return ProcessingTimeTrigger()
