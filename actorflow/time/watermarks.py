"""Watermark strategies: where event timestamps come from, and how watermarks follow them.

A strategy pairs a timestamp assigner (record -> epoch milliseconds) with a watermark generator.
Generators work on a whole batch of timestamps at once and answer with in-batch marks
``(position, watermark)``; see :class:`actorflow.runtime.messages.Batch`.

- :meth:`WatermarkStrategy.bounded_out_of_orderness` (the usual choice): the watermark trails the
  highest timestamp seen by the bound, as Flink's (``max - bound - 1``), emitted once per batch.
- :meth:`WatermarkStrategy.punctuated`: a watermark after every record that moves it
  (``max - lag``): exact and deterministic, whatever the batch size.
- :meth:`WatermarkStrategy.with_idleness`: a source that produced nothing for a while is marked
  idle, so it stops holding back the event time of the operators it feeds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from operator import countOf, itemgetter
from typing import Any

from actorflow.compiled import load
from actorflow.runtime.messages import MIN_WATERMARK

__all__ = [
    "BoundedOutOfOrdernessGenerator",
    "EVENT_TIME_LIMIT",
    "event_time",
    "field_getter",
    "plain_event_times",
    "PunctuatedGenerator",
    "TimestampAssigner",
    "WatermarkGenerator",
    "WatermarkStrategy",
]

TimestampAssigner = Callable[[Any], int]


def field_getter(selector: Callable[[Any], Any] | str) -> Callable[[Any], Any]:
    """``selector`` itself, or for a field name, a C-speed getter of that field.

    >>> field_getter("ts")({"ts": 7})
    7
    """
    if isinstance(selector, str):
        return itemgetter(selector)
    if not callable(selector):
        raise TypeError(f"expected a function or a field name, got {selector!r}")
    return selector


def event_time(timestamp: TimestampAssigner, value: Any) -> int | float:
    """The event time ``timestamp`` reads from ``value``, checked: raises ValueError if there is
    none (a field missing, not a mapping) and TypeError if it is not a number (epoch ms). Sources
    call it to send such a record to their dead letters rather than fail the job with it.

    >>> event_time(field_getter("ts"), {"ts": 5})
    5
    >>> event_time(field_getter("ts"), {"n": 5})
    Traceback (most recent call last):
    ...
    ValueError: no event time in the record: KeyError: 'ts'
    >>> event_time(field_getter("ts"), {"ts": 2**70})
    Traceback (most recent call last):
    ...
    ValueError: the event time 1180591620717411303424 is out of range (epoch ms within 64 bits)
    """
    try:
        time = timestamp(value)
    except Exception as error:
        raise ValueError(f"no event time in the record: {type(error).__name__}: {error}") from error
    if type(time) is not int and type(time) is not float:  # a float is fine, if slower
        raise TypeError(f"the event time must be a number (epoch ms), not {type(time).__name__}: {time!r}")
    if not -EVENT_TIME_LIMIT < time < EVENT_TIME_LIMIT:
        raise ValueError(f"the event time {time!r} is out of range (epoch ms within 64 bits)")
    return time


#: Event times (epoch ms) lie strictly between minus and plus this: 64-bit integers, as watermarks.
#: A JSON integer beyond 64 bits is decoded as a float, so the check also catches those.
EVENT_TIME_LIMIT = 2**63 - 1


def plain_event_times(times: list[Any]) -> bool:
    """Whether every one of ``times`` is an ``int`` (not a subclass, not a float) within the
    range of :func:`event_time`: then ``event_time`` accepts each unchanged, and a source may take
    them without checking them one by one. Checked in C-level passes (no Python step per time);
    False for an empty list.

    >>> plain_event_times([5, 7]), plain_event_times([5, 7.0]), plain_event_times([True])
    (True, False, False)
    >>> plain_event_times([5, -EVENT_TIME_LIMIT])
    False
    """
    return (
        bool(times)
        and countOf(map(type, times), int) == len(times)
        and min(times) > -EVENT_TIME_LIMIT
        and max(times) < EVENT_TIME_LIMIT
    )


class WatermarkGenerator(ABC):
    """Turns the timestamps of each batch into in-batch watermark marks."""

    @abstractmethod
    def on_batch(self, timestamps: list[int]) -> list[tuple[int, int]]:
        """Return the marks for a batch with these timestamps (positions 1..len)."""

    def on_plain_batch(self, timestamps: list[Any]) -> list[tuple[int, int]] | None:
        """:meth:`on_batch` of ``timestamps`` if they are :func:`plain_event_times`; otherwise
        None, and the generator is left as it was (a source then checks them one by one)."""
        return self.on_batch(timestamps) if plain_event_times(timestamps) else None


class BoundedOutOfOrdernessGenerator(WatermarkGenerator):
    """Watermark ``max_timestamp - bound - 1`` after each batch that raised the maximum.

    >>> BoundedOutOfOrdernessGenerator(100).on_batch([1000, 1500, 1200])
    [(3, 1399)]
    """

    def __init__(self, bound_ms: int) -> None:
        self._bound = bound_ms
        self._max = MIN_WATERMARK

    def on_batch(self, timestamps: list[int]) -> list[tuple[int, int]]:
        if not timestamps:
            return []
        highest = max(timestamps)
        if highest <= self._max:
            return []
        self._max = highest
        return [(len(timestamps), highest - self._bound - 1)]


class PunctuatedGenerator(WatermarkGenerator):
    """Watermark ``max_timestamp - lag`` after every record that raised the maximum.

    >>> PunctuatedGenerator(2000).on_batch([5000, 4000, 7000])
    [(1, 3000), (3, 5000)]
    """

    def __init__(self, lag_ms: int) -> None:
        self._lag = lag_ms
        self._max = MIN_WATERMARK

    def on_batch(self, timestamps: list[int]) -> list[tuple[int, int]]:
        # Plain event times (the usual case) take the compiled pass when there is one: the same
        # marks as the loop below, which takes every other batch (floats, ints beyond 64 bits).
        compiled = _compiled
        if compiled is not None and type(self._max) is int:
            found = compiled(timestamps, self._max, self._lag)
            if found is not None:
                marks, self._max = found
                return marks
        marks, self._max = _marks_python(timestamps, self._max, self._lag)
        return marks

    def on_plain_batch(self, timestamps: list[Any]) -> list[tuple[int, int]] | None:
        """:meth:`on_batch`, checking :func:`plain_event_times` in the same pass (compiled when
        the extension is built, see :func:`_plain_marks_python`)."""
        highest = self._max
        found = (
            _plain_marks(timestamps, highest, self._lag)
            if type(highest) is int
            else _plain_marks_python(timestamps, highest, self._lag)
        )
        if found is None:
            return None
        marks, self._max = found
        return marks


_Marks = list[tuple[int, int]]


def _marks_python(timestamps: list[Any], highest: Any, lag: Any) -> tuple[_Marks, Any]:
    """The punctuated marks of ``timestamps`` after the maximum ``highest``, and the new maximum:
    ``(position, timestamp - lag)`` for each timestamp above every earlier one, positions from 1.

    >>> _marks_python([5000, 4000, 7000], 0, 2000)
    ([(1, 3000), (3, 5000)], 7000)
    """
    marks: _Marks = []
    append = marks.append
    # Positions from a list made once: enumerate would make an int per record past 256.
    positions = _POSITIONS if len(timestamps) <= len(_POSITIONS) else range(1, len(timestamps) + 1)
    for position, timestamp in zip(positions, timestamps, strict=False):
        if timestamp > highest:
            highest = timestamp
            append((position, timestamp - lag))
    return marks, highest


def _plain_marks_python(timestamps: list[Any], highest: Any, lag: Any) -> tuple[_Marks, Any] | None:
    """:func:`_marks_python` if ``timestamps`` are :func:`plain_event_times` and the maximum stays
    below :data:`EVENT_TIME_LIMIT`; otherwise None. The reference of the compiled
    ``actorflow.time._marks.plain_marks``, and its fallback.

    One Python step per timestamp, where the check alone takes three C-level passes (each about as
    costly as a loop step). The upper limit is checked once, on the highest timestamp.

    >>> _plain_marks_python([5000, 4000, 7000], 0, 2000)
    ([(1, 3000), (3, 5000)], 7000)
    >>> _plain_marks_python([5000, 4000.0], 0, 2000) is None
    True
    """
    marks: _Marks = []
    append = marks.append
    positions = _POSITIONS if len(timestamps) <= len(_POSITIONS) else range(1, len(timestamps) + 1)
    type_of, plain, lowest = type, int, -EVENT_TIME_LIMIT  # locals: no lookups in the loop
    for position, timestamp in zip(positions, timestamps, strict=False):
        if type_of(timestamp) is not plain:
            return None
        if timestamp > highest:
            if timestamp <= lowest:
                return None
            highest = timestamp
            append((position, timestamp - lag))
        elif timestamp <= lowest:
            return None
    if not timestamps or highest >= EVENT_TIME_LIMIT:
        return None
    return marks, highest


#: 1, 2, ... for the positions of a batch's records (longer batches count with a range).
_POSITIONS = list(range(1, 1 << 14))

#: The version of ``actorflow.time._marks`` this module expects (its ``VERSION``).
_KERNEL_VERSION = 1


def _compiled_plain_marks() -> Callable[[list[Any], int, Any], tuple[_Marks, Any] | None] | None:
    """``actorflow.time._marks.plain_marks`` if the extension is built, current and wanted (see
    :func:`actorflow.compiled.load`) and made for this module's event-time limit."""
    marks = load("actorflow.time._marks", _KERNEL_VERSION)
    if marks is None or getattr(marks, "LIMIT", None) != EVENT_TIME_LIMIT:
        return None
    return marks.plain_marks  # type: ignore[no-any-return]


#: The compiled pass, or None (then the generator runs the Python reference).
_compiled = _compiled_plain_marks()
_plain_marks = _compiled or _plain_marks_python


@dataclass(frozen=True)
class WatermarkStrategy:
    """How a source stamps its records with event time and generates watermarks.

    >>> strategy = WatermarkStrategy.punctuated(lambda r: r["ts"], lag_ms=2000)
    >>> strategy.timestamp({"ts": 5})
    5
    >>> strategy.with_idleness(30_000).idle_timeout_ms
    30000
    """

    timestamp: TimestampAssigner
    generator: Callable[[], WatermarkGenerator]
    idle_timeout_ms: int | None = None

    @staticmethod
    def bounded_out_of_orderness(bound_ms: int, timestamp: TimestampAssigner | str) -> WatermarkStrategy:
        """Records may arrive up to ``bound_ms`` behind the newest one; emitted once per batch.

        ``timestamp`` is a function of the record, or the name of the record's field that holds
        epoch milliseconds (read with ``operator.itemgetter``, no Python call per record).
        """
        if bound_ms < 0:
            raise ValueError("the out-of-orderness bound cannot be negative")
        return WatermarkStrategy(field_getter(timestamp), lambda: BoundedOutOfOrdernessGenerator(bound_ms))

    @staticmethod
    def punctuated(timestamp: TimestampAssigner | str, lag_ms: int = 0) -> WatermarkStrategy:
        """A watermark of ``max timestamp - lag_ms`` after each record that moves it.

        ``timestamp`` is a function of the record or the name of its timestamp field.
        """
        if lag_ms < 0:
            raise ValueError("the watermark lag cannot be negative")
        return WatermarkStrategy(field_getter(timestamp), lambda: PunctuatedGenerator(lag_ms))

    def with_idleness(self, timeout_ms: int) -> WatermarkStrategy:
        """Mark the source idle after ``timeout_ms`` of processing time without records."""
        if timeout_ms <= 0:
            raise ValueError("the idleness timeout must be positive")
        return replace(self, idle_timeout_ms=timeout_ms)
