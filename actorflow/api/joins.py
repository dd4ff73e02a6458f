"""Joins of two streams: window joins, co-groups and interval joins, as Flink's.

``a.join(b).where(key_a).equal_to(key_b).window(assigner).apply(fn)`` calls ``fn(left, right)`` for
every pair of records with equal keys in the same window; ``a.co_group(b)`` (same builder) calls
``fn(lefts, rights, out)`` once per key and window. ``a.key_by(k).interval_join(b.key_by(k))
.between(lower, upper).process(fn)`` joins records of equal keys whose timestamps satisfy
``a.ts + lower <= b.ts <= a.ts + upper``. The semantics (lateness, cleanup, timestamps) are those of
:mod:`actorflow.operators.joins`.

>>> from actorflow import Flow, TumblingEventTimeWindows, WatermarkStrategy
>>> flow = Flow()
>>> stamped = WatermarkStrategy.punctuated(lambda r: r[1])
>>> orders = flow.from_iterable([("o1", 1, "ann"), ("o2", 12, "bob")], watermarks=stamped)
>>> names = flow.from_iterable([("ann", 5, "Ann"), ("bob", 7, "Bob")], watermarks=stamped)
>>> out = (
...     orders.join(names)
...     .where(lambda o: o[2])
...     .equal_to(lambda n: n[0])
...     .window(TumblingEventTimeWindows.of(10))
...     .apply(lambda o, n: (o[0], n[2]))
...     .collect()
... )
>>> flow.execute()
>>> out.values
[('o1', 'Ann')]
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable
from typing import Any, Generic, Self, TypeVar

from actorflow.api import nodes
from actorflow.api.stream import DataStream, KeyedStream
from actorflow.errors import PlanError
from actorflow.operators.base import Collector
from actorflow.operators.joins import (
    LEFT,
    RIGHT,
    CoGroupFunction,
    FlatJoinFunction,
    IntervalJoinFunction,
    JoinFunction,
    ProcessJoinContext,
    ProcessJoinFunction,
    Tagger,
    WindowCoGroupFunction,
    WindowJoinFunction,
    process_join_function,
)
from actorflow.operators.side_outputs import OutputTag
from actorflow.operators.stateless import MapOperator
from actorflow.operators.windows.assigners import WindowAssigner
from actorflow.operators.windows.functions import ProcessWindowFunction
from actorflow.operators.windows.triggers import Trigger
from actorflow.plan.partitioners import Hash
from actorflow.time.watermarks import field_getter

__all__ = ["CoGroupedStreams", "IntervalJoin", "IntervalJoined", "JoinedStreams"]

L = TypeVar("L")
R = TypeVar("R")
OUT = TypeVar("OUT")
T = TypeVar("T")

#: The key of a tagged record ``(side, key, record)``: read in C, once by the router, once by the
#: operator.
_TAGGED_KEY = operator.itemgetter(1)


def _same_flow(left: DataStream[Any], right: DataStream[Any], what: str) -> None:
    if not isinstance(right, DataStream):
        raise PlanError(f"{what}() takes a stream, got {right!r}")
    if left.flow is not right.flow:
        raise PlanError(f"cannot {what} streams of different flows")


def _plain(fn: Any, method: str, takes: str = "a function") -> None:
    if not callable(fn):
        raise PlanError(f"{method} takes {takes}, got {fn!r}")
    if inspect.iscoroutinefunction(fn):
        raise PlanError(f"{method} takes a plain function, not a coroutine function")


def _selector(key: Callable[[Any], Any] | str, what: str) -> Callable[[Any], Any]:
    try:
        selector = field_getter(key)
    except TypeError:
        raise PlanError(f"{what}() takes a key function or a field name, got {key!r}") from None
    _plain(selector, f"{what}()")
    return selector


def _tag(stream: DataStream[Any], side: int, key: Callable[[Any], Any], name: str) -> DataStream[Any]:
    # A keyed input's own hash shuffle is superseded by the join's: the tag map reads the records
    # where they are (chained when it can be) and only the union is shuffled.
    inputs = tuple(
        (node, None if isinstance(partitioner, Hash) else partitioner)
        for node, partitioner in nodes.inputs_of(stream)
    )
    tagger = Tagger(side, key)
    return nodes.add(
        nodes.rewired(stream, inputs),
        "map",
        None,
        lambda node_name: MapOperator(node_name, tagger),
        default_name=name,
    )


def _tagged_union(
    left: DataStream[Any],
    right: DataStream[Any],
    left_key: Callable[[Any], Any],
    right_key: Callable[[Any], Any],
    name: str,
) -> KeyedStream[tuple[int, Any, Any], Any]:
    """One stream keyed by each side's own key, whose records are ``(side, key, record)``."""
    tagged_left = _tag(left, LEFT, left_key, f"{name}.left")
    tagged_right = _tag(right, RIGHT, right_key, f"{name}.right")
    return tagged_left.union(tagged_right).key_by(_TAGGED_KEY)


class _WindowJoinBuilder(Generic[L, R]):
    """The builder shared by window joins and co-groups: keys, then a window, then the function."""

    _what = "join"

    def __init__(self, left: DataStream[L], right: DataStream[R]) -> None:
        _same_flow(left, right, self._what)
        self._left = left
        self._right = right
        self._left_key: Callable[[L], Any] | None = None
        self._right_key: Callable[[R], Any] | None = None
        self._assigner: WindowAssigner | None = None
        self._trigger: Trigger | None = None
        self._lateness = 0

    def where(self, key: Callable[[L], Any] | str) -> Self:
        """The key of the first (left) stream's records: a function or a field name."""
        self._left_key = _selector(key, "where")
        return self

    def equal_to(self, key: Callable[[R], Any] | str) -> Self:
        """The key of the second (right) stream's records; raises :class:`PlanError` before
        :meth:`where`."""
        if self._left_key is None:
            raise PlanError(f"{self._what}: call where() before equal_to()")
        self._right_key = _selector(key, "equal_to")
        return self

    def window(self, assigner: WindowAssigner) -> Self:
        """The windows both sides are cut into; raises :class:`PlanError` before the keys are set."""
        if self._left_key is None or self._right_key is None:
            raise PlanError(f"{self._what}: call where() and equal_to() before window()")
        if not isinstance(assigner, WindowAssigner):
            raise PlanError(f"window() takes a WindowAssigner, got {assigner!r}")
        self._assigner = assigner
        return self

    def trigger(self, trigger: Trigger) -> Self:
        """Fire windows by ``trigger`` instead of the assigner's default trigger."""
        self._windowed("trigger")
        if not isinstance(trigger, Trigger):
            raise PlanError(f"trigger() takes a Trigger, got {trigger!r}")
        self._trigger = trigger
        return self

    def allowed_lateness(self, ms: int) -> Self:
        """Keep event-time windows ``ms`` past their end; a late record in that time fires its
        window again, with all its pairs. Raises :class:`PlanError` for a negative lateness."""
        self._windowed("allowed_lateness")
        if ms < 0:
            raise PlanError(f"allowed lateness must not be negative, got {ms}")
        self._lateness = ms
        return self

    def _windowed(self, method: str) -> WindowAssigner:
        if self._assigner is None:
            raise PlanError(f"{self._what}: call where(), equal_to() and window() before {method}()")
        return self._assigner

    def _build(
        self,
        function: ProcessWindowFunction[Any, Any, Any],
        name: str | None,
        parallelism: int | None,
    ) -> DataStream[Any]:
        assigner = self._windowed("apply")
        assert self._left_key is not None and self._right_key is not None
        base = name if name is not None else nodes.free_name(self._left.flow, self._what)
        keyed = _tagged_union(self._left, self._right, self._left_key, self._right_key, base)
        windowed = keyed.window(assigner).allowed_lateness(self._lateness)
        if self._trigger is not None:
            windowed.trigger(self._trigger)
        return windowed.process(function, name=base, parallelism=parallelism)


class JoinedStreams(_WindowJoinBuilder[L, R]):
    """A window join being built: ``where``, ``equal_to``, ``window`` (then optionally ``trigger``
    and ``allowed_lateness``), and ``apply``. Each step before its turn raises :class:`PlanError`.

    Results carry the window's ``max_timestamp``; see :mod:`actorflow.operators.joins`.

    >>> from actorflow import Flow, TumblingEventTimeWindows
    >>> numbers = Flow().from_iterable([1, 2])
    >>> numbers.join(numbers).window(TumblingEventTimeWindows.of(10))
    Traceback (most recent call last):
    ...
    actorflow.errors.PlanError: join: call where() and equal_to() before window()
    """

    _what = "join"

    def apply(
        self,
        function: Callable[[L, R], OUT] | JoinFunction[L, R, OUT] | FlatJoinFunction[L, R, OUT],
        *,
        name: str | None = None,
        parallelism: int | None = None,
    ) -> DataStream[OUT]:
        """Emit ``function(left, right)`` for every pair of the same key in the same window.

        ``function`` is a plain function, a :class:`JoinFunction` (its ``join(left, right)``), or a
        :class:`FlatJoinFunction` (its ``join(left, right, out)`` emits any number of results).
        """
        if isinstance(function, FlatJoinFunction):
            return self._build(WindowJoinFunction(function.join, flat=True), name, parallelism)
        if isinstance(function, JoinFunction):
            return self._build(WindowJoinFunction(function.join), name, parallelism)
        _plain(function, "apply()", "a function or a JoinFunction")
        return self._build(WindowJoinFunction(function), name, parallelism)

    def flat_apply(
        self,
        function: Callable[[L, R, Collector], None],
        *,
        name: str | None = None,
        parallelism: int | None = None,
    ) -> DataStream[Any]:
        """Call ``function(left, right, out)`` for every pair; it emits results with
        ``out.collect`` (any number per pair)."""
        _plain(function, "flat_apply()")
        return self._build(WindowJoinFunction(function, flat=True), name, parallelism)


class CoGroupedStreams(_WindowJoinBuilder[L, R]):
    """A co-group being built: the steps of :class:`JoinedStreams`, ending in ``apply``.

    ``apply(fn)`` calls ``fn(lefts, rights, out)`` once per key and window that has records of
    either side (the other list is then empty), as Flink's ``coGroup``.

    >>> from actorflow import Flow, TumblingEventTimeWindows, WatermarkStrategy
    >>> flow = Flow()
    >>> stamped = WatermarkStrategy.punctuated(lambda r: r[1])
    >>> clicks = flow.from_iterable([("ann", 1), ("bob", 2), ("ann", 3)], watermarks=stamped)
    >>> buys = flow.from_iterable([("bob", 4)], watermarks=stamped)
    >>> out = (
    ...     clicks.co_group(buys)
    ...     .where(lambda c: c[0])
    ...     .equal_to(lambda b: b[0])
    ...     .window(TumblingEventTimeWindows.of(10))
    ...     .apply(lambda cs, bs, out: out.collect((cs[0][0] if cs else bs[0][0], len(cs), len(bs))))
    ...     .collect()
    ... )
    >>> flow.execute()
    >>> sorted(out.values)
    [('ann', 2, 0), ('bob', 1, 1)]
    """

    _what = "co_group"

    def apply(
        self,
        function: Callable[[list[L], list[R], Collector], None] | CoGroupFunction[L, R, Any],
        *,
        name: str | None = None,
        parallelism: int | None = None,
    ) -> DataStream[Any]:
        """Emit what ``function(lefts, rights, out)`` collects, per key and window."""
        if isinstance(function, CoGroupFunction):
            return self._build(WindowCoGroupFunction(function.co_group), name, parallelism)
        _plain(function, "apply()", "a function or a CoGroupFunction")
        return self._build(WindowCoGroupFunction(function), name, parallelism)


class IntervalJoin(Generic[L, R]):
    """``left.interval_join(right)``: set the interval with :meth:`between`.

    >>> from actorflow import Flow, WatermarkStrategy
    >>> flow = Flow()
    >>> stamped = WatermarkStrategy.punctuated(lambda r: r[1])
    >>> views = flow.from_iterable([("ann", 10), ("bob", 20)], watermarks=stamped).key_by(lambda r: r[0])
    >>> buys = flow.from_iterable([("ann", 12), ("bob", 40)], watermarks=stamped).key_by(lambda r: r[0])
    >>> out = (
    ...     views.interval_join(buys)
    ...     .between(0, 5)
    ...     .process(lambda view, buy, ctx, out: out.collect((view[0], ctx.timestamp)))
    ...     .collect()
    ... )
    >>> flow.execute()
    >>> out.values
    [('ann', 12)]
    """

    def __init__(self, left: KeyedStream[L, Any], right: KeyedStream[R, Any]) -> None:
        if not isinstance(right, KeyedStream):
            raise PlanError(f"interval_join() takes a keyed stream (key_by first), got {right!r}")
        _same_flow(left, right, "interval_join")
        self._left = left
        self._right = right

    def between(self, lower: int, upper: int) -> IntervalJoined[L, R]:
        """Join ``l`` and ``r`` when ``l.ts + lower <= r.ts <= l.ts + upper`` (milliseconds,
        inclusive unless made exclusive). Raises :class:`PlanError` if ``lower > upper``."""
        for bound in (lower, upper):
            if not isinstance(bound, int) or isinstance(bound, bool):
                raise PlanError(f"between() takes integer milliseconds, got {bound!r}")
        if lower > upper:
            raise PlanError(f"between() needs lower <= upper, got lower={lower} upper={upper}")
        return IntervalJoined(self._left, self._right, lower, upper)


class IntervalJoined(Generic[L, R]):
    """An interval join with its bounds; finish it with :meth:`process`."""

    def __init__(
        self, left: KeyedStream[L, Any], right: KeyedStream[R, Any], lower: int, upper: int
    ) -> None:
        self._left = left
        self._right = right
        self._lower = lower
        self._upper = upper
        self._lower_exclusive = False
        self._upper_exclusive = False
        self._left_late: OutputTag[L] | None = None
        self._right_late: OutputTag[R] | None = None

    def lower_bound_exclusive(self) -> IntervalJoined[L, R]:
        """Join only when ``l.ts + lower < r.ts``."""
        self._lower_exclusive = True
        return self

    def upper_bound_exclusive(self) -> IntervalJoined[L, R]:
        """Join only when ``r.ts < l.ts + upper``."""
        self._upper_exclusive = True
        return self

    def side_output_left_late_data(self, tag: OutputTag[L]) -> IntervalJoined[L, R]:
        """Send the left records dropped as late to the side output ``tag`` of the result stream."""
        self._left_late = self._checked(tag)
        return self

    def side_output_right_late_data(self, tag: OutputTag[R]) -> IntervalJoined[L, R]:
        """Send the right records dropped as late to the side output ``tag`` of the result stream."""
        self._right_late = self._checked(tag)
        return self

    @staticmethod
    def _checked(tag: OutputTag[T]) -> OutputTag[T]:
        if not isinstance(tag, OutputTag):
            raise PlanError(f"a late-data side output takes an OutputTag, got {tag!r}")
        return tag

    def process(
        self,
        function: ProcessJoinFunction[L, R, OUT] | Callable[[L, R, ProcessJoinContext, Collector], None],
        *,
        name: str | None = None,
        parallelism: int | None = None,
    ) -> DataStream[OUT]:
        """Call ``function.process_element(left, right, ctx, out)`` (or a plain ``function(left,
        right, ctx, out)``) once per joined pair; results carry ``max(l.ts, r.ts)``.

        Raises :class:`PlanError` if exclusive bounds leave an empty interval.
        """
        if not isinstance(function, ProcessJoinFunction):
            _plain(function, "process()", "a ProcessJoinFunction or a function")
        lower, upper = IntervalJoinFunction.bounds(
            self._lower,
            self._upper,
            lower_exclusive=self._lower_exclusive,
            upper_exclusive=self._upper_exclusive,
        )
        if lower > upper:
            raise PlanError(
                f"the interval join's bounds are empty: between({self._lower}, {self._upper}) "
                "with exclusive ends leaves no timestamp to join"
            )
        base = name if name is not None else nodes.free_name(self._left.flow, "interval_join")
        keyed = _tagged_union(self._left, self._right, self._left.key, self._right.key, base)
        join = IntervalJoinFunction(
            process_join_function(function),
            lower,
            upper,
            left_late=self._left_late,
            right_late=self._right_late,
        )
        return keyed.process(join, name=base, parallelism=parallelism)
