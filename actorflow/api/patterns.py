"""Pattern streams: ``keyed.pattern(pattern)``, then ``select``, ``flat_select`` or ``process``.

>>> from actorflow import Flow, Pattern
>>> flow = Flow("cep")
>>> events = flow.from_iterable([{"card": "c", "amount": 0.5}, {"card": "c", "amount": 900.0}])
>>> pattern = (Pattern.begin("small").where(lambda tx: tx["amount"] < 1)
...            .next("large").where(lambda tx: tx["amount"] > 500))
>>> found = events.key_by("card").pattern(pattern).select(
...     lambda match: (match["small"][0]["amount"], match["large"][0]["amount"])).collect()
>>> flow.execute()
>>> found.values
[(0.5, 900.0)]
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from actorflow.api import nodes
from actorflow.errors import PlanError
from actorflow.operators.base import Collector
from actorflow.operators.cep import (
    NFA,
    AfterMatchSkip,
    Pattern,
    PatternContext,
    PatternOperator,
    PatternProcessFunction,
)
from actorflow.operators.failures import FailedRecord
from actorflow.operators.side_outputs import OutputTag

if TYPE_CHECKING:
    from actorflow.api.stream import DataStream, KeyedStream

__all__ = ["PatternStream"]

T = TypeVar("T")
U = TypeVar("U")

Events = dict[str, list[Any]]


class PatternStream(Generic[T]):
    """A keyed stream and a pattern; finish it with :meth:`select`, :meth:`flat_select` or
    :meth:`process` (each a keyed operator, one per key group as usual)."""

    def __init__(
        self,
        keyed: KeyedStream[T, Any],
        pattern: Pattern[Any],
        skip: AfterMatchSkip | None,
        late: OutputTag[T] | None,
        parallelism: int | None = None,
    ) -> None:
        if not isinstance(pattern, Pattern):
            raise PlanError(f"pattern() takes a Pattern, not {pattern!r}")
        self._keyed = keyed
        self._nfa = NFA(pattern, skip)  # refuses a pattern that cannot work, now
        self._late = late
        self._parallelism = parallelism

    def select(
        self,
        function: Callable[[Events], U],
        *,
        timed_out: OutputTag[Any] | None = None,
        on_timeout: Callable[[Events, int], Any] | None = None,
        name: str | None = None,
        dead_letters: OutputTag[FailedRecord[T]] | None = None,
    ) -> DataStream[U]:
        """One result per match: ``function(match)``, ``match`` mapping each stage name to its
        events. With ``timed_out``, each partial match that timed out goes there as
        ``on_timeout(partial match, timeout time)`` (default: the partial match itself). With
        ``dead_letters``, an event a condition raises on goes there as a
        :class:`~actorflow.FailedRecord` (and leaves the partial matches as they were) instead of
        failing the job."""

        def on_match(match: Events, ctx: PatternContext, out: Collector) -> None:
            out.collect(function(match))

        return self._build(on_match, timed_out, on_timeout, name, dead_letters)

    def flat_select(
        self,
        function: Callable[[Events], Iterable[U]],
        *,
        timed_out: OutputTag[Any] | None = None,
        on_timeout: Callable[[Events, int], Any] | None = None,
        name: str | None = None,
        dead_letters: OutputTag[FailedRecord[T]] | None = None,
    ) -> DataStream[U]:
        """Any number of results per match: every item of ``function(match)`` (otherwise as
        :meth:`select`)."""

        def on_match(match: Events, ctx: PatternContext, out: Collector) -> None:
            for result in function(match):
                out.collect(result)

        return self._build(on_match, timed_out, on_timeout, name, dead_letters)

    def process(
        self,
        function: PatternProcessFunction[T, U],
        *,
        timed_out: bool = False,
        name: str | None = None,
        dead_letters: OutputTag[FailedRecord[T]] | None = None,
    ) -> DataStream[U]:
        """Run ``function.process_match`` per match (and ``process_timed_out_match`` per timed
        out partial match, with ``timed_out=True``), with a context for side outputs;
        ``dead_letters`` as for :meth:`select`."""
        if not isinstance(function, PatternProcessFunction):
            raise PlanError("a pattern stream's process() takes a PatternProcessFunction")

        def make(node_name: str) -> PatternOperator:
            own = copy.deepcopy(function)  # one per instance, as for process functions
            return self._operator(
                node_name,
                own.process_match,
                own.process_timed_out_match if timed_out else None,
                dead_letters,
                opened=own.open,
            )

        return nodes.add(self._keyed, "pattern", name, make, parallelism=self._parallelism)

    def _build(
        self,
        on_match: Callable[[Events, PatternContext, Collector], None],
        timed_out: OutputTag[Any] | None,
        on_timeout: Callable[[Events, int], Any] | None,
        name: str | None,
        dead_letters: OutputTag[Any] | None,
    ) -> DataStream[Any]:
        if on_timeout is not None and timed_out is None:
            raise PlanError("on_timeout goes with timed_out=OutputTag(...), where its results go")
        handle_timeout = None
        if timed_out is not None:
            tag = timed_out
            convert = on_timeout

            def handle_timeout(match: Events, ctx: PatternContext, out: Collector) -> None:
                ctx.output(tag, match if convert is None else convert(match, ctx.timestamp or 0))

        return nodes.add(
            self._keyed,
            "pattern",
            name,
            lambda node_name: self._operator(node_name, on_match, handle_timeout, dead_letters),
            parallelism=self._parallelism,
        )

    def _operator(
        self,
        name: str,
        on_match: Callable[[Events, PatternContext, Collector], None],
        on_timeout: Callable[[Events, PatternContext, Collector], None] | None,
        dead_letters: OutputTag[Any] | None,
        *,
        opened: Callable[[Any], None] | None = None,
    ) -> PatternOperator:
        return PatternOperator(
            name,
            self._nfa,
            self._keyed.key,
            on_match,
            on_timeout,
            late=self._late,
            errors=dead_letters,
            opened=opened,
        )
