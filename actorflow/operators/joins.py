"""Joins of two streams by key, in windows or within an interval of event time (Flink's semantics).

There is no two-input operator underneath: both inputs are *tagged* and united into one keyed
stream. A tag map turns each record into ``(side, key, record)`` (:class:`Tagger`), computing the
side's own key once; the union is keyed by that key (``itemgetter(1)``, no Python call), so the
records of both sides with equal keys meet in one instance. Event-time watermarks of a union are the
minimum over its inputs: the join's event time never runs ahead of the slower side. The tags never
reach user functions.

**Window join and co-group** (:class:`WindowJoinFunction`, :class:`WindowCoGroupFunction`) are
process window functions on that keyed stream: the window operator keeps each window's tagged
records, and when it fires the function splits them by side. A join calls the user function once per
(left, right) pair of the key and window (lefts in the outer loop, each side in the order the window
holds it); a window with records of one side only emits nothing. A co-group is called once per key
and window with both lists, one of which may be empty. Session windows are made of both sides'
records together, as in Flink (the sides share one windowed stream). Lateness, triggers and result
timestamps are the window operator's: a record is dropped from a window when ``window.max_timestamp
+ allowed_lateness <= watermark``, results carry ``window.max_timestamp``, and a late record within
the allowed lateness fires the window again with all its pairs (as in Flink).

**Interval join** (:class:`IntervalJoinFunction`) is a keyed process function. A left record at
``l`` and a right record at ``r`` of the same key join when ``l + lower <= r <= l + upper``
(:meth:`IntervalJoinFunction.bounds` folds exclusive bounds in: an exclusive lower bound is
``lower + 1``, an exclusive upper bound ``upper - 1``, on integer milliseconds). Each side keeps a
buffer ``{timestamp: [records]}`` per key; a record is joined with the other side's buffer and then
buffered itself, so every pair is emitted once, when its later-arriving record comes. The result is
stamped ``max(l, r)``.

*Late records of an interval join*: a record whose timestamp is strictly below the join's current
watermark (the minimum of both inputs' watermarks, before the record) is dropped, joined with
nothing and not buffered, as Flink's ``isLate``. A record *at* the watermark is on time. Late records
are counted (``late_records``) and, if asked for, sent to a side output per side (Flink's
``sideOutputLeftLateData`` / ``sideOutputRightLateData``).

*Cleanup*: a buffered left record at ``l`` can only be joined by a right record at ``r <= l +
upper``, and right records below the watermark are late, so it is dropped once the watermark exceeds
``l + upper`` (an event-time timer at ``l + upper + 1``); a right record at ``r`` once the watermark
exceeds ``r - lower`` (a timer at ``r - lower + 1``). A record that could never be joined by a later
one (its cleanup time is not above the watermark already) is not buffered at all.

*Deviation from Flink*: Flink cleans a left record up when the watermark reaches ``l + upper`` (``l``
if ``upper <= 0``) and a right one at ``r - lower`` (``r`` if ``lower >= 0``), one millisecond early
for its own lateness rule: with the watermark at ``w = l + upper`` a right record at ``w`` is not
late but no longer finds ``l``, so whether such a pair is emitted depends on when watermarks
arrive. Here the timers fire one millisecond later, and the output is exactly every pair of
non-late records within the bounds; state lives one millisecond of event time longer. Flink also
buffers every on-time record until its timer, even one no later record can join (a left record
when ``upper < 0``, a right one when ``lower > 0``); here it is joined and not kept.

>>> Tagger(LEFT, len)("abc")
(0, 3, 'abc')
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar

from actorflow.errors import StateError
from actorflow.operators.base import Collector
from actorflow.operators.process import Context, KeyedProcessFunction, RuntimeContext
from actorflow.operators.side_outputs import OutputTag
from actorflow.operators.windows.functions import ProcessWindowFunction, WindowContext
from actorflow.runtime.messages import MAX_WATERMARK
from actorflow.state.descriptors import ValueStateDescriptor

__all__ = [
    "LEFT",
    "RIGHT",
    "CoGroupFunction",
    "FlatJoinFunction",
    "IntervalJoinFunction",
    "JoinFunction",
    "ProcessJoinContext",
    "ProcessJoinFunction",
    "Tagger",
    "WindowCoGroupFunction",
    "WindowJoinFunction",
]

L = TypeVar("L")
R = TypeVar("R")
OUT = TypeVar("OUT")
T = TypeVar("T")

#: The side tag of the first (left) input's records.
LEFT: Final = 0
#: The side tag of the second (right) input's records.
RIGHT: Final = 1

#: The names of the interval join's buffers in keyed state (``{timestamp: [records]}`` per key).
LEFT_BUFFER: Final = "interval_join.left"
RIGHT_BUFFER: Final = "interval_join.right"


class Tagger:
    """The tag map of one side: ``record -> (side, key(record), record)``.

    >>> Tagger(RIGHT, str.upper)("ab")
    (1, 'AB', 'ab')
    """

    __slots__ = ("key", "side")

    def __init__(self, side: int, key: Callable[[Any], Any]) -> None:
        self.side = side
        self.key = key

    def __call__(self, record: Any) -> tuple[int, Any, Any]:
        return (self.side, self.key(record), record)


# -- user functions ----------------------------------------------------------------------------------


class JoinFunction(ABC, Generic[L, R, OUT]):
    """Makes one result of each pair of a window join (Flink's ``JoinFunction``).

    >>> class Pair(JoinFunction):
    ...     def join(self, left, right):
    ...         return (left, right)
    >>> Pair().join(1, 2)
    (1, 2)
    """

    @abstractmethod
    def join(self, left: L, right: R) -> OUT:
        """The result for one (left, right) pair of the same key and window."""


class FlatJoinFunction(ABC, Generic[L, R, OUT]):
    """Emits any number of results per pair of a window join (Flink's ``FlatJoinFunction``).

    >>> class Both(FlatJoinFunction):
    ...     def join(self, left, right, out):
    ...         out.collect(left)
    ...         out.collect(right)
    >>> got = []
    >>> Both().join(1, 2, Collector(got.append))
    >>> got
    [1, 2]
    """

    @abstractmethod
    def join(self, left: L, right: R, out: Collector) -> None:
        """Emit the results of one (left, right) pair with ``out.collect``."""


class CoGroupFunction(ABC, Generic[L, R, OUT]):
    """Sees all records of both sides of one key and window (Flink's ``CoGroupFunction``).

    >>> class Count(CoGroupFunction):
    ...     def co_group(self, lefts, rights, out):
    ...         out.collect((len(lefts), len(rights)))
    >>> got = []
    >>> Count().co_group([1, 2], [], Collector(got.append))
    >>> got
    [(2, 0)]
    """

    @abstractmethod
    def co_group(self, lefts: list[L], rights: list[R], out: Collector) -> None:
        """Emit results with ``out.collect``; either list may be empty (never both)."""


class ProcessJoinContext:
    """What a :class:`ProcessJoinFunction` knows about the pair it is called for.

    One object is reused for every pair of an operator instance: read it, do not keep it.

    >>> ctx = ProcessJoinContext()
    >>> ctx.left_timestamp, ctx.right_timestamp, ctx.timestamp
    (0, 0, 0)
    """

    __slots__ = ("_ctx", "left_timestamp", "right_timestamp", "timestamp")

    def __init__(self, ctx: Context | None = None) -> None:
        self._ctx = ctx
        #: Event time of the left record.
        self.left_timestamp = 0
        #: Event time of the right record.
        self.right_timestamp = 0
        #: The result's timestamp: the later of the two.
        self.timestamp = 0

    @property
    def current_key(self) -> Any:
        """The key both records share."""
        if self._ctx is None:
            raise StateError("there is no current key outside an interval join")
        return self._ctx.current_key

    def output(self, tag: OutputTag[T], value: T) -> None:
        """Send ``value`` to the side output ``tag``, stamped with :attr:`timestamp`."""
        if self._ctx is None:
            raise StateError("side outputs are only available inside an operator")
        self._ctx.output(tag, value)


class ProcessJoinFunction(ABC, Generic[L, R, OUT]):
    """Called once per joined pair of an interval join (Flink's ``ProcessJoinFunction``).

    >>> class Gap(ProcessJoinFunction):
    ...     def process_element(self, left, right, ctx, out):
    ...         out.collect(ctx.right_timestamp - ctx.left_timestamp)
    """

    def open(self, ctx: RuntimeContext) -> None:
        """Called once per instance before the first record."""

    @abstractmethod
    def process_element(self, left: L, right: R, ctx: ProcessJoinContext, out: Collector) -> None:
        """Emit the results of one pair with ``out.collect`` (stamped ``ctx.timestamp``)."""

    def close(self) -> None:
        """Called once per instance at the end, also after a failure."""


#: A plain function ``fn(left, right, ctx, out)`` of an interval join.
JoinCall = Callable[[Any, Any, ProcessJoinContext, Collector], None]


class _ProcessJoinCall(ProcessJoinFunction[Any, Any, Any]):
    """A plain function ``fn(left, right, ctx, out)`` as a :class:`ProcessJoinFunction`."""

    def __init__(self, fn: JoinCall) -> None:
        self.fn = fn

    def process_element(self, left: Any, right: Any, ctx: ProcessJoinContext, out: Collector) -> None:
        self.fn(left, right, ctx, out)


def process_join_function(
    function: ProcessJoinFunction[Any, Any, Any] | JoinCall,
) -> ProcessJoinFunction[Any, Any, Any]:
    """``function`` itself, or a plain function ``fn(left, right, ctx, out)`` wrapped as one.

    >>> got = []
    >>> wrapped = process_join_function(lambda left, right, ctx, out: out.collect(left + right))
    >>> wrapped.process_element(1, 2, ProcessJoinContext(), Collector(got.append))
    >>> got
    [3]
    """
    if isinstance(function, ProcessJoinFunction):
        return function
    return _ProcessJoinCall(function)


# -- window join and co-group ------------------------------------------------------------------------


def _split(elements: list[tuple[int, Any, Any]]) -> tuple[list[Any], list[Any]]:
    lefts: list[Any] = []
    rights: list[Any] = []
    for side, _, record in elements:
        (lefts if side == LEFT else rights).append(record)
    return lefts, rights


class WindowJoinFunction(ProcessWindowFunction[tuple[int, Any, Any], Any, Any]):
    """Joins a firing window's tagged records: ``fn`` per (left, right) pair.

    ``fn(left, right)`` returns the one result of a pair; with ``flat`` it is ``fn(left, right, out)``
    and emits any number.

    >>> join = WindowJoinFunction(lambda a, b: a + b)
    >>> got = []
    >>> join.process("k", None, [(LEFT, "k", 1), (RIGHT, "k", 10), (LEFT, "k", 2)], Collector(got.append))
    >>> got
    [11, 12]
    """

    def __init__(self, fn: Callable[..., Any], *, flat: bool = False) -> None:
        self.fn = fn
        self.flat = flat

    def process(
        self, key: Any, context: WindowContext, elements: list[tuple[int, Any, Any]], out: Collector
    ) -> None:
        lefts, rights = _split(elements)
        if not lefts or not rights:
            return
        fn = self.fn
        if self.flat:
            for left in lefts:
                for right in rights:
                    fn(left, right, out)
        else:
            collect = out.collect
            for left in lefts:
                for right in rights:
                    collect(fn(left, right))


class WindowCoGroupFunction(ProcessWindowFunction[tuple[int, Any, Any], Any, Any]):
    """Co-groups a firing window's tagged records: ``fn(lefts, rights, out)`` once per window.

    >>> co_group = WindowCoGroupFunction(lambda lefts, rights, out: out.collect((lefts, rights)))
    >>> got = []
    >>> co_group.process("k", None, [(RIGHT, "k", 5)], Collector(got.append))
    >>> got
    [([], [5])]
    """

    def __init__(self, fn: Callable[[list[Any], list[Any], Collector], None]) -> None:
        self.fn = fn

    def process(
        self, key: Any, context: WindowContext, elements: list[tuple[int, Any, Any]], out: Collector
    ) -> None:
        lefts, rights = _split(elements)
        self.fn(lefts, rights, out)


# -- interval join -----------------------------------------------------------------------------------


class IntervalJoinFunction(KeyedProcessFunction[tuple[int, Any, Any], Any]):
    """The interval join of tagged records: left ``l`` and right ``r`` join when
    ``l + lower <= r <= l + upper`` (both bounds inclusive here; see :meth:`bounds`).

    Needs event time: a record without a timestamp raises :class:`StateError`. ``late_records``
    counts the records dropped as late (a metric of this instance, not state); with ``left_late`` /
    ``right_late`` they also go to that side output, with their own timestamps.

    >>> IntervalJoinFunction.bounds(-5, 5, lower_exclusive=True, upper_exclusive=False)
    (-4, 5)
    """

    def __init__(
        self,
        function: ProcessJoinFunction[Any, Any, Any],
        lower: int,
        upper: int,
        *,
        left_late: OutputTag[Any] | None = None,
        right_late: OutputTag[Any] | None = None,
    ) -> None:
        if lower > upper:
            raise ValueError(f"an interval join needs lower <= upper, got [{lower}, {upper}]")
        self.function = function
        self.lower = lower
        self.upper = upper
        self.left_late = left_late
        self.right_late = right_late
        self.late_records = 0

    @staticmethod
    def bounds(lower: int, upper: int, *, lower_exclusive: bool, upper_exclusive: bool) -> tuple[int, int]:
        """The inclusive bounds of ``lower``/``upper`` with exclusive ends moved inwards by 1 ms."""
        return (lower + 1 if lower_exclusive else lower, upper - 1 if upper_exclusive else upper)

    def open(self, ctx: RuntimeContext) -> None:
        self._left = ctx.get_state(ValueStateDescriptor[dict[int, list[Any]]](LEFT_BUFFER))
        self._right = ctx.get_state(ValueStateDescriptor[dict[int, list[Any]]](RIGHT_BUFFER))
        self._pair: ProcessJoinContext | None = None
        self.late_records = 0
        self.function.open(ctx)

    def process_element(self, value: tuple[int, Any, Any], ctx: Context, out: Collector) -> None:
        side, _, record = value
        timestamp = ctx.timestamp
        if timestamp is None:
            raise StateError(
                "interval joins need event time: use assign_timestamps_and_watermarks() "
                "or a source with watermarks"
            )
        timers = ctx.timer_service()
        watermark = timers.current_watermark()
        if timestamp < watermark:
            self.late_records += 1
            tag = self.left_late if side == LEFT else self.right_late
            if tag is not None:
                ctx.output(tag, record)
            return
        lower = self.lower
        upper = self.upper
        if side == LEFT:
            own_state, other_state = self._left, self._right
            first, last = timestamp + lower, timestamp + upper
            cleanup = timestamp + upper + 1
        else:
            own_state, other_state = self._right, self._left
            first, last = timestamp - upper, timestamp - lower
            cleanup = timestamp - lower + 1
        other = other_state.value()
        if other:
            self._join(side, record, timestamp, other, first, last, ctx, out)
        if cleanup <= watermark:
            return  # every record that could still join this one would be late
        own = own_state.value()
        if own is None:
            own = {}
            own_state.update(own)  # the dict is the live state value: filled in place below
        bucket = own.get(timestamp)
        if bucket is None:
            own[timestamp] = [record]
            timers.register_event_time_timer(min(cleanup, MAX_WATERMARK))
        else:
            bucket.append(record)

    def _join(
        self,
        side: int,
        record: Any,
        timestamp: int,
        other: dict[int, list[Any]],
        first: int,
        last: int,
        ctx: Context,
        out: Collector,
    ) -> None:
        pair = self._pair
        if pair is None:
            pair = self._pair = ProcessJoinContext(ctx)
        # Look the interval's timestamps up one by one when there are fewer of them than buffered
        # timestamps; otherwise scan the buffer.
        if last - first < len(other):
            matches = [(ts, other[ts]) for ts in range(first, last + 1) if ts in other]
        else:
            matches = [(ts, records) for ts, records in other.items() if first <= ts <= last]
        process = self.function.process_element
        try:
            for other_timestamp, records in matches:
                # The operator stamps what the function collects with ctx.timestamp: the pair's.
                ctx.timestamp = pair.timestamp = max(timestamp, other_timestamp)
                if side == LEFT:
                    pair.left_timestamp, pair.right_timestamp = timestamp, other_timestamp
                    for right in records:
                        process(record, right, pair, out)
                else:
                    pair.left_timestamp, pair.right_timestamp = other_timestamp, timestamp
                    for left in records:
                        process(left, record, pair, out)
        finally:
            ctx.timestamp = timestamp

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        # Timers are per (key, time), not per side: the timer at ``t`` cleans up the left bucket
        # whose cleanup time is t (l = t - upper - 1) and the right one (r = t + lower - 1).
        for state, bucket in (
            (self._left, timestamp - self.upper - 1),
            (self._right, timestamp + self.lower - 1),
        ):
            buffer = state.value()
            if buffer is None:
                continue
            if timestamp == MAX_WATERMARK:
                buffer.clear()  # the end of event time (cleanup times past it were clamped to it)
            else:
                buffer.pop(bucket, None)
            if not buffer:
                state.clear()

    def close(self) -> None:
        self.function.close()
