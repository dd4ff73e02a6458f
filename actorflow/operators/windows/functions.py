"""Window functions: what a window keeps while it is open, and what it emits when it fires.

Incremental functions keep one value per window: :class:`ReduceContents` folds records with a reduce
function, :class:`AggregateContents` keeps an :class:`~actorflow.state.descriptors.AggregateFunction`'s
accumulator. A :class:`ProcessWindowFunction` sees every element and the window's metadata, so its
window keeps the list of elements (:class:`ProcessContents`); combined with an aggregate function it
gets the one aggregated result instead.

Merging windows (sessions) also merge contents when two windows become one (:meth:`WindowContents.merge`):
a reduce reduces the two values, an aggregate calls :meth:`AggregateFunction.merge` on the two
accumulators, a process window function's lists are concatenated (earlier window first).

>>> class Total(ProcessWindowFunction):
...     def process(self, key, context, elements, out):
...         out.collect((key, context.window.start, sum(elements)))
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

from actorflow.operators.base import Collector
from actorflow.runtime.messages import MIN_WATERMARK
from actorflow.state.descriptors import AggregateFunction
from actorflow.time.clock import Clock

if TYPE_CHECKING:
    from actorflow.operators.windows.assigners import TimeWindow

__all__ = [
    "EMPTY",
    "AggregateContents",
    "ProcessContents",
    "ProcessWindowFunction",
    "ReduceContents",
    "WindowContents",
    "Watermark",
    "WindowContext",
]

IN = TypeVar("IN")
OUT = TypeVar("OUT")
K = TypeVar("K")


class _Empty:
    """The type of :data:`EMPTY`; it pickles and deep-copies to the same object (snapshots keep it)."""

    __slots__ = ()

    def __reduce__(self) -> str:
        return "EMPTY"

    def __repr__(self) -> str:
        return "EMPTY"


#: The contents of a window no record was added to yet (or whose contents were purged).
EMPTY: Final[Any] = _Empty()


class Watermark(int):
    """An event time read from a window or trigger context: call it (``ctx.current_watermark()``),
    as a timer service's. Reading it without the call, as a number (the form of 0.1), still works
    for this release only.

    >>> w = Watermark(5)
    >>> (w(), w + 1)
    (5, 6)
    """

    __slots__ = ()

    def __call__(self) -> int:
        return int(self)


class WindowContext:
    """What a :class:`ProcessWindowFunction` knows about the window that fires.

    One object is reused for every firing of an operator instance: read it, do not keep it.
    """

    __slots__ = ("_clock", "_watermark", "window")

    def __init__(self, clock: Clock, window: TimeWindow) -> None:
        self._clock = clock
        #: The window that fires.
        self.window = window
        self._watermark = MIN_WATERMARK  # set by the operator before each firing

    @property
    def current_watermark(self) -> Watermark:
        """``current_watermark()``: the operator's event time when the window fires."""
        return Watermark(self._watermark)

    def current_processing_time(self) -> int:
        """The clock's time in epoch milliseconds."""
        return self._clock.now()


class ProcessWindowFunction(ABC, Generic[IN, OUT, K]):
    """Sees all elements of a firing window (of one key) and the window itself."""

    @abstractmethod
    def process(self, key: K, context: WindowContext, elements: list[IN], out: Collector) -> None:
        """Emit the window's results with ``out.collect``; do not keep ``elements``."""


class WindowContents(ABC):
    """How a window's contents grow per record and turn into results when it fires."""

    @abstractmethod
    def add(self, contents: Any, value: Any) -> Any:
        """The window's new contents after ``value`` (``contents`` is :data:`EMPTY` at first)."""

    @abstractmethod
    def emit(self, key: Any, context: WindowContext, contents: Any, out: Collector) -> None:
        """The window fires with ``contents``: emit its results to ``out``."""

    @property
    def can_merge(self) -> bool:
        """Whether :meth:`merge` works (merging window assigners need it)."""
        return True

    def merge(self, first: Any, second: Any) -> Any:
        """The contents of the union of two windows (``first`` is the earlier one's; either may be
        :data:`EMPTY`)."""
        if first is EMPTY:
            return second
        if second is EMPTY:
            return first
        return self._merge(first, second)

    @abstractmethod
    def _merge(self, first: Any, second: Any) -> Any:
        """:meth:`merge` of two non-empty contents."""


class ReduceContents(WindowContents):
    """Keeps ``reduce(reduce(a, b), c)``; emits it (or hands it to a window function)."""

    def __init__(
        self,
        reduce: Callable[[Any, Any], Any],
        window_function: ProcessWindowFunction[Any, Any, Any] | None = None,
    ) -> None:
        self.reduce = reduce
        self.window_function = window_function

    def add(self, contents: Any, value: Any) -> Any:
        return value if contents is EMPTY else self.reduce(contents, value)

    def emit(self, key: Any, context: WindowContext, contents: Any, out: Collector) -> None:
        if self.window_function is None:
            out.collect(contents)
        else:
            self.window_function.process(key, context, [contents], out)

    def _merge(self, first: Any, second: Any) -> Any:
        return self.reduce(first, second)

    def __repr__(self) -> str:
        return f"reduce({getattr(self.reduce, '__qualname__', repr(self.reduce))})"


class AggregateContents(WindowContents):
    """Keeps an aggregate function's accumulator; emits its result (or hands it to a window
    function)."""

    def __init__(
        self,
        function: AggregateFunction[Any, Any, Any],
        window_function: ProcessWindowFunction[Any, Any, Any] | None = None,
    ) -> None:
        self.function = function
        self.window_function = window_function

    def add(self, contents: Any, value: Any) -> Any:
        function = self.function
        return function.add(value, function.create_accumulator() if contents is EMPTY else contents)

    def emit(self, key: Any, context: WindowContext, contents: Any, out: Collector) -> None:
        result = self.function.get_result(contents)
        if self.window_function is None:
            out.collect(result)
        else:
            self.window_function.process(key, context, [result], out)

    @property
    def can_merge(self) -> bool:
        """True if the aggregate function overrides :meth:`AggregateFunction.merge`."""
        return type(self.function).merge is not AggregateFunction.merge

    def _merge(self, first: Any, second: Any) -> Any:
        return self.function.merge(first, second)

    def __repr__(self) -> str:
        return f"aggregate({type(self.function).__name__})"


class ProcessContents(WindowContents):
    """Keeps every element; hands the list to a :class:`ProcessWindowFunction`."""

    def __init__(self, function: ProcessWindowFunction[Any, Any, Any]) -> None:
        self.function = function

    def add(self, contents: Any, value: Any) -> Any:
        if contents is EMPTY:
            return [value]
        contents.append(value)
        return contents

    def emit(self, key: Any, context: WindowContext, contents: Any, out: Collector) -> None:
        self.function.process(key, context, list(contents), out)

    def _merge(self, first: Any, second: Any) -> Any:
        first.extend(second)
        return first

    def __repr__(self) -> str:
        return f"process({type(self.function).__name__})"
