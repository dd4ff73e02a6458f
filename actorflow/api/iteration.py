"""Iterations: a stream whose records go round a loop until the body lets them out.

``it = stream.iterate()`` starts a loop (Flink's ``IterativeStream``): the body is built on ``it``
like on any stream, ``it.close_with(feedback)`` sends ``feedback``'s records back to the head, and
any stream derived from the body is an output. ``stream.iterate_with()`` is the two-input form
(Flink's ``ConnectedIterativeStreams``): its head is a co-process function whose second input is
the feedback, which may have another type than the input.

The back edge goes forward (the feedback at the head's parallelism, instance ``i`` to instance
``i``) or by key (``close_with(feedback.key_by(k))``, or the second key of a keyed connected
iteration); nothing else. How the loop runs, ends and is checkpointed: see
:mod:`actorflow.runtime.iteration` and docs/architecture.md, "Iterations".

>>> from actorflow import Flow
>>> flow = Flow()
>>> it = flow.from_iterable([3, 1, 2]).iterate()
>>> step = it.map(lambda n: n - 1)
>>> _ = it.close_with(step.filter(lambda n: n > 0))
>>> zeros = step.filter(lambda n: n == 0).collect()
>>> flow.execute()
>>> zeros.values
[0, 0, 0]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from actorflow.api import nodes
from actorflow.api.connected import ConnectedStreams, _CoMap
from actorflow.api.stream import DataStream
from actorflow.errors import PlanError
from actorflow.operators.co_process import CoProcessFunction, KeyedCoProcessFunction
from actorflow.operators.stateless import PassThroughOperator
from actorflow.plan.graph import Node

if TYPE_CHECKING:
    from actorflow.api.flow import Flow

__all__ = ["ConnectedIterativeStreams", "IterativeStream", "iterate", "iterate_with"]

T = TypeVar("T")
F = TypeVar("F")
U = TypeVar("U")
K = TypeVar("K")


class IterativeStream(DataStream[T]):
    """The stream at the head of a loop: the input's records, then every record fed back.

    Close the loop with :meth:`close_with` before the flow runs (else :class:`PlanError` when it
    is planned).
    """

    def __init__(self, flow: Flow, head: Node) -> None:
        super().__init__(flow, ((head, None),))
        self._head = head

    def close_with(self, feedback: DataStream[T]) -> DataStream[T]:
        """Send ``feedback``'s records back to the head; returns ``feedback``.

        ``feedback`` must derive from this stream, and goes back forward (at the head's
        parallelism) or keyed (``feedback.key_by(...)``). Raises :class:`PlanError` otherwise, or
        when the loop is closed already.
        """
        nodes.add_feedback(self._head, feedback)
        return feedback


def iterate(
    stream: DataStream[T], name: str | None = None, parallelism: int | None = None
) -> IterativeStream[T]:
    """The head of a new loop reading ``stream`` (:meth:`DataStream.iterate`)."""
    out = nodes.add(stream, "iterate", name, PassThroughOperator, parallelism=parallelism)
    ((head, _),) = nodes.inputs_of(out)
    head.iteration = True
    return IterativeStream(stream.flow, head)


class ConnectedIterativeStreams(Generic[T, F]):
    """A loop whose head is a co-process function: input 1 is the loop's input (of type ``T``),
    input 2 what comes back (of type ``F``).

    Finish the head with :meth:`process` (or :meth:`map`), build the body on what it returns,
    then :meth:`close_with` the feedback.

    >>> from actorflow import Flow
    >>> flow = Flow()
    >>> loop = flow.from_iterable(["ab", "c"]).iterate_with(int)
    >>> head = loop.map(lambda word: (word, len(word)), lambda back: back)
    >>> shorter = head.filter(lambda pair: pair[1] > 1).map(lambda pair: (pair[0][1:], pair[1] - 1))
    >>> _ = loop.close_with(shorter)
    >>> done = head.filter(lambda pair: pair[1] <= 1).collect()
    >>> flow.execute()
    >>> sorted(done.values)
    [('b', 1), ('c', 1)]
    """

    def __init__(
        self,
        stream: DataStream[T],
        *,
        keys: tuple[Callable[[T], Any] | str, Callable[[F], Any] | str] | None = None,
    ) -> None:
        self._stream = stream
        self._keys = keys
        self._head: Node | None = None

    def key_by(
        self, key1: Callable[[T], K] | str, key2: Callable[[F], K] | str
    ) -> ConnectedIterativeStreams[T, F]:
        """Partition the input by ``key1`` and the feedback by ``key2`` (for a
        :class:`~actorflow.operators.co_process.KeyedCoProcessFunction` with state per key)."""
        return ConnectedIterativeStreams(self._stream, keys=(key1, key2))

    def process(
        self,
        function: CoProcessFunction[T, F, U] | KeyedCoProcessFunction[T, F, U],
        *,
        name: str | None = None,
        parallelism: int | None = None,
    ) -> DataStream[U]:
        """The head: ``function`` gets the input's records as its first input, the fed-back ones
        as its second; returns its output, the start of the body. Raises :class:`PlanError` as
        ``connect(...).process`` does, and when the head is made already."""
        if self._head is not None:
            raise PlanError("this connected iteration has its head already: process() goes once")
        feedback_side: DataStream[Any] = nodes.rewired(self._stream, ())  # wired by close_with
        first: DataStream[Any] = self._stream
        if self._keys is not None:
            first, feedback_side = first.key_by(self._keys[0]), feedback_side.key_by(self._keys[1])
        out = ConnectedStreams(first, feedback_side).process(
            function, name=name or nodes.free_name(self._stream.flow, "iterate"), parallelism=parallelism
        )
        ((head, _),) = nodes.inputs_of(out)
        head.iteration = True
        self._head = head
        return out

    def map(
        self,
        fn1: Callable[[T], U],
        fn2: Callable[[F], U],
        *,
        name: str | None = None,
        parallelism: int | None = None,
    ) -> DataStream[U]:
        """The head as two functions: ``fn1`` over the input's records, ``fn2`` over fed-back ones."""
        return self.process(_CoMap(fn1, fn2), name=name, parallelism=parallelism)

    def close_with(self, feedback: DataStream[F]) -> DataStream[F]:
        """Send ``feedback``'s records back to the head's second input (keyed by the second key of
        :meth:`key_by`, if any); returns ``feedback``. Raises :class:`PlanError` before
        :meth:`process`, and as :meth:`IterativeStream.close_with`."""
        if self._head is None:
            raise PlanError("close_with() needs the iteration's head: call process() or map() first")
        back: DataStream[Any] = feedback if self._keys is None else feedback.key_by(self._keys[1])
        nodes.add_feedback(self._head, back, input=1)
        return feedback


def iterate_with(stream: DataStream[T]) -> ConnectedIterativeStreams[T, Any]:
    """A connected loop reading ``stream`` (:meth:`DataStream.iterate_with`)."""
    return ConnectedIterativeStreams(stream)
