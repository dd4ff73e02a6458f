"""Streams: the fluent, typed surface a flow is written in.

Each method adds a node to the flow's logical graph and returns the stream of its output. Nothing
runs until ``flow.run()``.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

from actorflow.api import nodes
from actorflow.api.connected import BroadcastConnectedStream, BroadcastStream, ConnectedStreams
from actorflow.api.windowed import WindowedStream
from actorflow.errors import PlanError
from actorflow.operators.async_io import AsyncMapOperator, AsyncMapSpec, FailedRequest
from actorflow.operators.failures import FailedRecord
from actorflow.operators.file_sink import ExactlyOnceJsonLinesSink
from actorflow.operators.process import (
    KeyedProcessFunction,
    KeyedProcessOperator,
    ProcessFunction,
    ProcessOperator,
)
from actorflow.operators.rolling import Aggregation, Field, Reduce, aggregation
from actorflow.operators.side_outputs import OutputTag
from actorflow.operators.sinks import CallbackSink, CollectSink, JsonLinesSink, PrintSink, Sink
from actorflow.operators.stateless import (
    FilterOperator,
    FlatMapOperator,
    MapOperator,
    TimestampOperator,
)
from actorflow.operators.windows.assigners import WindowAssigner
from actorflow.plan.partitioners import Broadcast, Forward, Hash, Partitioner, Rebalance
from actorflow.state.descriptors import MapStateDescriptor
from actorflow.time.watermarks import WatermarkStrategy, field_getter

if TYPE_CHECKING:
    from actorflow.api.flow import Flow
    from actorflow.api.iteration import ConnectedIterativeStreams, IterativeStream
    from actorflow.api.joins import CoGroupedStreams, IntervalJoin, JoinedStreams
    from actorflow.api.patterns import PatternStream
    from actorflow.ml import Features, Scored, Target
    from actorflow.operators.cep import AfterMatchSkip, Pattern

__all__ = ["DataStream", "KeyedStream"]

T = TypeVar("T")
U = TypeVar("U")
K = TypeVar("K")
F = TypeVar("F")


def _dead_letter_tag(dead_letters: object, errors: object) -> Any:
    """The side output given as ``dead_letters=`` or, under its former name, ``errors=``."""
    if dead_letters is not None and errors is not None:
        raise PlanError("give dead_letters= only (errors= is its former name)")
    keyword, tag = ("errors", errors) if errors is not None else ("dead_letters", dead_letters)
    if tag is not None and not isinstance(tag, OutputTag):
        raise PlanError(f"{keyword}= takes an OutputTag, got {tag!r}")
    return tag


def _plain(fn: Callable[..., Any], what: str) -> None:
    if inspect.iscoroutinefunction(fn):
        raise PlanError(
            f"{what} takes a plain function; coroutine functions belong in an async I/O operator"
        )


def _whole_stream(record: Any) -> None:
    """The key of every record in ``window_all``: one key, so one window state for the stream."""
    return None


class DataStream(Generic[T]):
    """A stream of records of type ``T``.

    >>> from actorflow import Flow
    >>> flow = Flow()
    >>> out = flow.from_iterable(range(6)).filter(lambda n: n % 2 == 0).map(lambda n: n * 10).collect()
    >>> flow.execute()
    >>> out.values
    [0, 20, 40]
    """

    def __init__(
        self,
        flow: Flow,
        inputs: nodes.Inputs,
        *,
        chainable: bool = True,
    ) -> None:
        self._flow = flow
        self._inputs = inputs
        self._chainable = chainable

    @property
    def flow(self) -> Flow:
        return self._flow

    # -- transformations -----------------------------------------------------------------------

    def map(
        self,
        fn: Callable[[T], U],
        *,
        name: str | None = None,
        parallelism: int | None = None,
        dead_letters: OutputTag[FailedRecord[T]] | None = None,
        errors: OutputTag[FailedRecord[T]] | None = None,
    ) -> DataStream[U]:
        """Apply ``fn`` to every record. An exception in ``fn`` fails the job, unless
        ``dead_letters`` is given: then the record goes to that side output as a
        :class:`~actorflow.operators.failures.FailedRecord` (read it with ``get_side_output``).
        ``errors=`` is the former name of ``dead_letters=`` (kept for this release)."""
        _plain(fn, "map")
        errors = _dead_letter_tag(dead_letters, errors)
        return nodes.add(
            self, "map", name, lambda node_name: MapOperator(node_name, fn, errors), parallelism=parallelism
        )

    def filter(
        self,
        predicate: Callable[[T], bool],
        *,
        name: str | None = None,
        parallelism: int | None = None,
        dead_letters: OutputTag[FailedRecord[T]] | None = None,
        errors: OutputTag[FailedRecord[T]] | None = None,
    ) -> DataStream[T]:
        """Keep the records for which ``predicate`` is true (``dead_letters``: as for :meth:`map`)."""
        _plain(predicate, "filter")
        errors = _dead_letter_tag(dead_letters, errors)
        return nodes.add(
            self,
            "filter",
            name,
            lambda node_name: FilterOperator(node_name, predicate, errors),
            parallelism=parallelism,
        )

    def flat_map(
        self,
        fn: Callable[[T], Iterable[U]],
        *,
        name: str | None = None,
        parallelism: int | None = None,
        dead_letters: OutputTag[FailedRecord[T]] | None = None,
        errors: OutputTag[FailedRecord[T]] | None = None,
    ) -> DataStream[U]:
        """Replace every record by the records of the iterable ``fn`` returns for it (``dead_letters``:
        as for :meth:`map`)."""
        _plain(fn, "flat_map")
        errors = _dead_letter_tag(dead_letters, errors)
        return nodes.add(
            self,
            "flat_map",
            name,
            lambda node_name: FlatMapOperator(node_name, fn, errors),
            parallelism=parallelism,
        )

    @overload
    def map_async(
        self,
        fn: Callable[[T], Awaitable[U]],
        *,
        capacity: int = ...,
        timeout_ms: int | None = ...,
        retries: int = ...,
        retry_delay_ms: int = ...,
        retry_on: tuple[type[Exception], ...] = ...,
        ordered: bool = ...,
        flat: Literal[False] = ...,
        on_timeout: Callable[[T], U] | None = ...,
        dead_letters: Callable[[FailedRequest], None] | None = ...,
        name: str | None = ...,
        parallelism: int | None = ...,
    ) -> DataStream[U]: ...

    @overload
    def map_async(
        self,
        fn: Callable[[T], Awaitable[Iterable[U]]],
        *,
        capacity: int = ...,
        timeout_ms: int | None = ...,
        retries: int = ...,
        retry_delay_ms: int = ...,
        retry_on: tuple[type[Exception], ...] = ...,
        ordered: bool = ...,
        flat: Literal[True],
        on_timeout: Callable[[T], Iterable[U]] | None = ...,
        dead_letters: Callable[[FailedRequest], None] | None = ...,
        name: str | None = ...,
        parallelism: int | None = ...,
    ) -> DataStream[U]: ...

    def map_async(
        self,
        fn: Callable[[T], Awaitable[Any]],
        *,
        capacity: int = 100,
        timeout_ms: int | None = None,
        retries: int = 0,
        retry_delay_ms: int = 100,
        retry_on: tuple[type[Exception], ...] = (Exception,),
        ordered: bool = True,
        flat: bool = False,
        on_timeout: Callable[[T], Any] | None = None,
        dead_letters: Callable[[FailedRequest], None] | None = None,
        name: str | None = None,
        parallelism: int | None = None,
    ) -> DataStream[Any]:
        """Await ``fn(record)`` for every record, up to ``capacity`` at once (Flink's async I/O).

        ``fn`` is a coroutine function (an HTTP or database lookup); its result replaces the record
        and keeps its timestamp. With ``flat=True`` it returns an iterable of results instead (none
        drops the record; several share its timestamp). ``None`` is a result like any other.

        - ``capacity``: the most records in the operator at once, from the start of their request
          until their result leaves. When full, the operator waits and backpressure reaches upstream.
        - ``ordered``: results leave in input order (the default), or else as they complete, but
          never across a watermark: every result is seen downstream at the watermark its record saw.
        - ``timeout_ms``: the time a request may take from its first call to its result, retries and
          their delays included (Flink's). When it passes, the call is cancelled and the job fails
          with a :class:`TimeoutError` naming the record, unless ``on_timeout(record)`` gives a
          fallback result (Flink's ``AsyncFunction.timeout``). None: no limit.
        - ``retries``: how many times a call that raised one of ``retry_on`` is made again, after
          ``retry_delay_ms`` of processing time (the flow's clock). For a limit per attempt, bound
          the call inside ``fn`` (``asyncio.timeout``): the :class:`TimeoutError` is then retried.
        - A request that still fails fails the job with the error ``fn`` raised (noted with the
          record and the attempts), unless ``dead_letters`` is given: then it receives a
          :class:`~actorflow.operators.async_io.FailedRequest` (timeouts without ``on_timeout``
          included) and the record is dropped.

        ``fn`` is shared by every instance, as ``map``'s function is; ``on_timeout`` and
        ``dead_letters`` are plain functions. Raises :class:`PlanError` for a plain ``fn`` (use
        :meth:`map`) and for settings out of range. At the end of the input every request still
        in flight is awaited; when the job fails or is cancelled, they are cancelled.

        >>> import asyncio
        >>> from actorflow import Flow
        >>> async def lookup(n):
        ...     await asyncio.sleep(0)  # a network round trip
        ...     return {"id": n, "name": f"user-{n}"}
        >>> flow = Flow()
        >>> out = flow.from_iterable([3, 1, 2]).map_async(lookup, capacity=2, timeout_ms=5_000).collect()
        >>> flow.execute()
        >>> [user["name"] for user in out.values]
        ['user-3', 'user-1', 'user-2']
        """
        spec = AsyncMapSpec(
            fn,
            capacity=capacity,
            timeout_ms=timeout_ms,
            retries=retries,
            retry_delay_ms=retry_delay_ms,
            retry_on=retry_on,
            ordered=ordered,
            flat=flat,
            on_timeout=on_timeout,
            dead_letters=dead_letters,
        )
        return nodes.add(
            self,
            "map_async",
            name,
            lambda node_name: AsyncMapOperator(node_name, spec),
            parallelism=parallelism,
        )

    def process(
        self,
        function: ProcessFunction[T, U],
        *,
        name: str | None = None,
        parallelism: int | None = None,
        dead_letters: OutputTag[FailedRecord[T]] | None = None,
        errors: OutputTag[FailedRecord[T]] | None = None,
    ) -> DataStream[U]:
        """Run a :class:`ProcessFunction` (a fresh copy per instance) over every record
        (``dead_letters``: records ``process_element`` raises on, as for :meth:`map`)."""
        errors = _dead_letter_tag(dead_letters, errors)
        return nodes.add(
            self,
            "process",
            name,
            lambda node_name: ProcessOperator(node_name, copy.deepcopy(function), errors),
            parallelism=parallelism,
        )

    def get_side_output(self, tag: OutputTag[U], *, name: str | None = None) -> DataStream[U]:
        """The stream of the values this operator sent to the side output ``tag``.

        Works on the stream of one operator (a process function, a window with late data...).
        Raises :class:`PlanError` for a union or a source, which have no side outputs.

        >>> from actorflow import Flow, OutputTag, ProcessFunction
        >>> odd = OutputTag("odd")
        >>> class Split(ProcessFunction):
        ...     def process_element(self, value, ctx, out):
        ...         if value % 2:
        ...             ctx.output(odd, value)
        ...         else:
        ...             out.collect(value)
        >>> flow = Flow()
        >>> evens = flow.from_iterable(range(5)).process(Split())
        >>> odds = evens.get_side_output(odd).collect()
        >>> _ = evens.collect()
        >>> flow.execute()
        >>> odds.values
        [1, 3]
        """
        if not isinstance(tag, OutputTag):
            raise PlanError(f"get_side_output() takes an OutputTag, got {tag!r}")
        return nodes.add_side_output(self, tag, name)

    def assign_timestamps_and_watermarks(
        self, strategy: WatermarkStrategy, *, name: str | None = None
    ) -> DataStream[T]:
        """Stamp records with event time and replace upstream watermarks with ``strategy``'s."""
        return nodes.add(self, "timestamps", name, lambda node_name: TimestampOperator(node_name, strategy))

    def to_table(
        self, name: str, columns: Mapping[str, str], *, rowtime: str | None = None
    ) -> DataStream[T]:
        """Register this stream (of dicts) as SQL table ``name`` of its flow, with ``columns``
        (``{"card_id": "STRING", "amount": "DOUBLE"}``, Flink SQL types). ``rowtime`` names a
        column added to each row with the record's event timestamp: the table's time attribute,
        its watermarks this stream's. Returns this stream. Needs the ``sql`` extra."""
        from actorflow.api.flow import _extension

        _extension("sql", self._flow).register_stream(name, self, dict(columns), rowtime)
        return self

    @overload
    def key_by(self, key: str) -> KeyedStream[T, Any]: ...

    @overload
    def key_by(self, key: Callable[[T], K]) -> KeyedStream[T, K]: ...

    def key_by(self, key: Callable[[T], K] | str) -> KeyedStream[T, Any]:
        """Partition by ``key(record)``: every record of a key reaches the same instance.

        ``key`` may also name a field (``key_by("card_id")``), read without a Python call; the
        key's type is then ``Any`` (a field's type is not known to the type checker).
        """
        selector = field_getter(key)
        _plain(selector, "key_by")
        return KeyedStream(self._flow, self._with(Hash(selector)), selector, chainable=self._chainable)

    def pattern(
        self,
        pattern: Pattern[Any],
        *,
        skip: AfterMatchSkip | None = None,
        late: OutputTag[T] | None = None,
    ) -> PatternStream[T]:
        """Find ``pattern`` in the whole stream (one instance, as Flink runs a pattern on a
        stream that is not keyed); see :meth:`KeyedStream.pattern`."""
        from actorflow.api.patterns import PatternStream

        return PatternStream(self.key_by(_whole_stream), pattern, skip, late, parallelism=1)

    def window_all(self, assigner: WindowAssigner) -> WindowedStream[T, None]:
        """Cut the whole stream (not each key) into windows; runs in a single instance, as Flink's
        ``windowAll``. The window function sees ``None`` as the key."""
        return WindowedStream(self.key_by(_whole_stream), assigner, whole_stream=True)

    def union(self, *others: DataStream[T]) -> DataStream[T]:
        """One stream of the records of this stream and ``others`` (no order between them)."""
        inputs = list(self._inputs)
        for other in others:
            if other._flow is not self._flow:
                raise PlanError("cannot union streams of different flows")
            inputs.extend(other._inputs)
        return DataStream(self._flow, tuple(inputs))

    def rebalance(self) -> DataStream[T]:
        """Distribute records round robin over the next operator's instances."""
        return DataStream(self._flow, self._with(Rebalance()), chainable=self._chainable)

    @overload
    def broadcast(self) -> DataStream[T]: ...

    @overload
    def broadcast(
        self, descriptor: MapStateDescriptor, /, *descriptors: MapStateDescriptor
    ) -> BroadcastStream[T]: ...

    def broadcast(self, *descriptors: MapStateDescriptor) -> DataStream[T] | BroadcastStream[T]:
        """Send every record to every instance of the next operator.

        With state descriptors, returns a :class:`BroadcastStream` for the broadcast state
        pattern: ``main.connect(rules.broadcast(RULES)).process(...)``, where every instance keeps
        the broadcast state named by the descriptors.
        """
        stream: DataStream[T] = DataStream(self._flow, self._with(Broadcast()), chainable=self._chainable)
        if descriptors:
            return BroadcastStream(stream, descriptors)
        return stream

    @overload
    def connect(self, other: BroadcastStream[U]) -> BroadcastConnectedStream[T, U]: ...

    @overload
    def connect(self, other: DataStream[U]) -> ConnectedStreams[T, U]: ...

    def connect(
        self, other: DataStream[U] | BroadcastStream[U]
    ) -> ConnectedStreams[T, U] | BroadcastConnectedStream[T, U]:
        """Connect ``other`` to this stream for a two-input operator (``.process(...)``).

        Raises :class:`PlanError` for streams of different flows.
        """
        if isinstance(other, BroadcastStream):
            return BroadcastConnectedStream(self, other)
        return ConnectedStreams(self, other)

    def forward(self) -> DataStream[T]:
        """Instance ``i`` feeds instance ``i`` of the next operator, which runs at this one's
        parallelism unless it is given another (then a plan error: equal parallelism needed).

        >>> from actorflow import Flow
        >>> flow = Flow("doc", parallelism=4)
        >>> _ = flow.from_iterable([1, 2]).forward().map(lambda n: n * 2, name="double").collect()
        >>> [([node.name for node in chain.nodes], chain.parallelism) for chain in flow.plan().chains]
        [(['source', 'double'], 1), (['collect'], 4)]
        """
        return DataStream(self._flow, self._with(Forward()), chainable=self._chainable)

    def start_new_chain(self) -> DataStream[T]:
        """Run the next operator in an actor of its own instead of chaining it to this one."""
        return DataStream(self._flow, self._inputs, chainable=False)

    def iterate(self, *, name: str | None = None, parallelism: int | None = None) -> IterativeStream[T]:
        """Start a loop (Flink's ``IterativeStream``): build the body on the stream this returns,
        send records back with its ``close_with(feedback)``, and take the output from any stream
        of the body. The loop ends when this stream has ended and no record is left in it.

        The feedback goes back forward or keyed (``feedback.key_by(...)``); fed-back records keep
        their timestamps, and the head's watermark is this stream's. With checkpoints, what is on
        its way round the loop at a checkpoint is part of it (exactly once, see
        :mod:`actorflow.api.iteration`). Raises :class:`PlanError` at planning when the loop is
        never closed.

        >>> from actorflow import Flow
        >>> flow = Flow()
        >>> it = flow.from_iterable([6, 7]).iterate()
        >>> step = it.map(lambda n: n // 2 if n % 2 == 0 else 3 * n + 1)  # a Collatz step
        >>> _ = it.close_with(step.filter(lambda n: n != 1))
        >>> ones = step.filter(lambda n: n == 1).collect()
        >>> flow.execute()
        >>> ones.values
        [1, 1]
        """
        from actorflow.api.iteration import iterate  # iteration.py builds on this module

        return iterate(self, name, parallelism)

    def iterate_with(self, feedback_type: type[F] | None = None) -> ConnectedIterativeStreams[T, F]:
        """Start a loop whose head is a co-process function over this stream (input 1) and the
        feedback (input 2, of ``feedback_type``, which only informs the type checker): Flink's
        ``ConnectedIterativeStreams``. See
        :class:`~actorflow.api.iteration.ConnectedIterativeStreams`."""
        from actorflow.api.iteration import iterate_with  # iteration.py builds on this module

        return iterate_with(self)

    def join(self, other: DataStream[U]) -> JoinedStreams[T, U]:
        """Window join with ``other``: ``.where(key).equal_to(other_key).window(assigner).apply(fn)``
        calls ``fn(left, right)`` per pair of equal keys in a window (see
        :class:`~actorflow.api.joins.JoinedStreams`). Raises :class:`PlanError` across flows."""
        from actorflow.api.joins import JoinedStreams  # joins.py builds on this module

        return JoinedStreams(self, other)

    def co_group(self, other: DataStream[U]) -> CoGroupedStreams[T, U]:
        """Co-group with ``other``: the steps of :meth:`join`, then ``apply(fn(lefts, rights, out))``
        once per key and window (see :class:`~actorflow.api.joins.CoGroupedStreams`)."""
        from actorflow.api.joins import CoGroupedStreams  # joins.py builds on this module

        return CoGroupedStreams(self, other)

    def learn_predict(
        self,
        make_model: Callable[[], Any],
        *,
        features: Features,
        target: Target | None = None,
        name: str | None = None,
        dead_letters: OutputTag[FailedRecord[T]] | None = None,
    ) -> DataStream[Scored[T]]:
        """Learn and predict online with one river model for the whole stream (one instance):
        see :meth:`KeyedStream.learn_predict`, of which this is the keyed form on one key, so
        the model is checkpointed and restored the same way. Needs the ``ml`` extra."""
        return self.key_by(_whole_stream).learn_predict(
            make_model,
            features=features,
            target=target,
            name=name,
            parallelism=1,
            dead_letters=dead_letters,
        )

    def _with(self, partitioner: Partitioner) -> nodes.Inputs:
        return tuple((node, partitioner) for node, _ in self._inputs)

    # -- sinks ---------------------------------------------------------------------------------

    def sink(self, sink: Sink, *, name: str | None = None, parallelism: int | None = None) -> Sink:
        """Send every record to ``sink``; returns the sink."""
        # A sink's instances are copies of it, named as it is (its node's name keys their state).
        nodes.add(
            self,
            "sink",
            name,
            lambda node_name: sink.copy(),
            parallelism=parallelism,
            max_parallelism=sink.max_parallelism,
            default_name=sink.name,
        )
        return sink

    def print(self, prefix: str = "", *, name: str | None = None) -> PrintSink:
        """Print every record on its own line to stdout."""
        sink = PrintSink(prefix=prefix)
        self.sink(sink, name=name)
        return sink

    def collect(self, *, name: str | None = None) -> CollectSink:
        """Keep every record in memory; read them from the returned sink's ``values``."""
        sink = CollectSink()
        self.sink(sink, name=name)
        return sink

    def sink_to_json_lines(
        self, path: str | Path, *, exactly_once: bool = False, name: str | None = None
    ) -> Sink:
        """Write every record as a line of JSON to ``path``.

        With ``exactly_once``, records reach the file when a checkpoint completes (or the input
        ends), each exactly once however often the job restarts
        (:class:`~actorflow.operators.file_sink.ExactlyOnceJsonLinesSink`).
        """
        sink: Sink = ExactlyOnceJsonLinesSink(path) if exactly_once else JsonLinesSink(path)
        self.sink(sink, name=name)
        return sink

    def sink_to_callback(
        self, callback: Callable[[T], Awaitable[None] | None], *, name: str | None = None
    ) -> CallbackSink:
        """Call ``callback(record)`` for every record (awaited if it is a coroutine function)."""
        sink = CallbackSink(callback)
        self.sink(sink, name=name)
        return sink


class KeyedStream(DataStream[T], Generic[T, K]):
    """A stream partitioned by key: keyed state and timers are available downstream."""

    def __init__(
        self,
        flow: Flow,
        inputs: nodes.Inputs,
        key: Callable[[T], K],
        *,
        chainable: bool = True,
    ) -> None:
        super().__init__(flow, inputs, chainable=chainable)
        self.key = key

    def process(  # type: ignore[override]
        self,
        function: KeyedProcessFunction[T, U],
        *,
        name: str | None = None,
        parallelism: int | None = None,
        dead_letters: OutputTag[FailedRecord[T]] | None = None,
        errors: OutputTag[FailedRecord[T]] | None = None,
    ) -> DataStream[U]:
        """Run a :class:`KeyedProcessFunction` with keyed state and timers for each key
        (``dead_letters``: records ``process_element`` raises on go there, as for :meth:`map`; an
        exception in ``on_timer`` still fails the job)."""
        if not isinstance(function, KeyedProcessFunction):
            raise PlanError("a keyed stream's process() takes a KeyedProcessFunction")
        errors = _dead_letter_tag(dead_letters, errors)
        key = self.key
        return nodes.add(
            self,
            "process",
            name,
            lambda node_name: KeyedProcessOperator(node_name, copy.deepcopy(function), key, errors),
            parallelism=parallelism,
        )

    def reduce(
        self,
        function: Callable[[T, T], T],
        *,
        name: str | None = None,
        parallelism: int | None = None,
        dead_letters: OutputTag[FailedRecord[T]] | None = None,
    ) -> DataStream[T]:
        """A rolling reduce per key (Flink's ``KeyedStream.reduce``): each record is combined with
        the key's result so far, ``function(so_far, record)`` (the key's first record is its first
        result), and every new result goes on. The result is keyed state: checkpointed, restored
        and rescaled with the flow.

        >>> from actorflow import Flow
        >>> flow = Flow()
        >>> longest = flow.from_iterable(["to", "tea", "a", "ink"]).key_by(lambda w: w[0]).reduce(
        ...     lambda so_far, word: word if len(word) > len(so_far) else so_far
        ... ).collect()
        >>> flow.execute()
        >>> longest.values
        ['to', 'tea', 'a', 'ink']
        """
        name = name if name is not None else nodes.free_name(self._flow, "reduce")
        return self.process(Reduce(function), name=name, parallelism=parallelism, dead_letters=dead_letters)

    def sum(
        self, field: Field, *, name: str | None = None, parallelism: int | None = None
    ) -> DataStream[T]:
        """A rolling sum of ``field`` per key (a dict's key, a tuple's position, an attribute):
        each result is the key's first record with ``field`` replaced by the sum so far, as in
        Flink (see :mod:`actorflow.operators.rolling`).

        >>> from actorflow import Flow
        >>> flow = Flow()
        >>> rows = [("a", 1), ("b", 5), ("a", 2)]
        >>> out = flow.from_iterable(rows).key_by(lambda row: row[0]).sum(1).collect()
        >>> flow.execute()
        >>> out.values
        [('a', 1), ('b', 5), ('a', 3)]
        """
        return self._rolling("sum", field, name, parallelism)

    def min(
        self, field: Field, *, name: str | None = None, parallelism: int | None = None
    ) -> DataStream[T]:
        """A rolling minimum of ``field`` per key: the key's first record with ``field`` replaced
        by the minimum so far (:meth:`min_by` keeps the whole record that holds it)."""
        return self._rolling("min", field, name, parallelism)

    def max(
        self, field: Field, *, name: str | None = None, parallelism: int | None = None
    ) -> DataStream[T]:
        """A rolling maximum of ``field`` per key: the key's first record with ``field`` replaced
        by the maximum so far (:meth:`max_by` keeps the whole record that holds it)."""
        return self._rolling("max", field, name, parallelism)

    def min_by(
        self, field: Field, *, first: bool = True, name: str | None = None, parallelism: int | None = None
    ) -> DataStream[T]:
        """Per key, the record with the smallest ``field`` so far (of equal ones the earliest, or
        the latest with ``first=False``), emitted for every record.

        >>> from actorflow import Flow
        >>> flow = Flow()
        >>> bids = [{"item": "x", "price": 5, "by": "ann"}, {"item": "x", "price": 3, "by": "bo"}]
        >>> out = flow.from_iterable(bids).key_by("item").min_by("price").collect()
        >>> flow.execute()
        >>> [bid["by"] for bid in out.values]
        ['ann', 'bo']
        """
        return self._rolling("min_by", field, name, parallelism, first=first)

    def max_by(
        self, field: Field, *, first: bool = True, name: str | None = None, parallelism: int | None = None
    ) -> DataStream[T]:
        """Per key, the record with the largest ``field`` so far (of equal ones the earliest, or
        the latest with ``first=False``), emitted for every record."""
        return self._rolling("max_by", field, name, parallelism, first=first)

    def _rolling(
        self, kind: Aggregation, field: Field, name: str | None, parallelism: int | None, first: bool = True
    ) -> DataStream[T]:
        name = name if name is not None else nodes.free_name(self._flow, kind)
        return self.process(aggregation(kind, field, first=first), name=name, parallelism=parallelism)

    def learn_predict(
        self,
        make_model: Callable[[], Any],
        *,
        features: Features,
        target: Target | None = None,
        name: str | None = None,
        parallelism: int | None = None,
        dead_letters: OutputTag[FailedRecord[T]] | None = None,
    ) -> DataStream[Scored[T]]:
        """Learn and predict online with a river model per key (:mod:`actorflow.ml`; needs the
        ``ml`` extra, ``pip install 'actorflow[ml]'``).

        ``make_model()`` makes a key's model for its first record (``lambda:
        anomaly.HalfSpaceTrees(seed=42)``); ``features`` lists the numeric fields the model reads,
        or is a function of the record giving the features dict; ``target`` (a field or a
        function) is what a supervised model learns to predict. Each record is predicted first,
        then learnt from (test then train), and goes on as ``Scored(value, prediction)``: an
        anomaly detector's ``score_one``, or the model's ``predict_one``. The model is keyed
        state: checkpointed, restored and rescaled with the flow.

        Raises :class:`PlanError` when river is missing, for a model it cannot run and for a
        supervised model without ``target``. A record whose features or target cannot be read
        raises ValueError naming the operator and the record, which fails the job or, with
        ``dead_letters``, goes there as for :meth:`process` (the model untouched).

        >>> from actorflow import Flow
        >>> from river import dummy, stats
        >>> flow = Flow()
        >>> sales = [("a", 10.0), ("b", 100.0), ("a", 20.0), ("b", 300.0), ("a", 30.0)]
        >>> days = [{"shop": shop, "day": day, "sales": amount} for day, (shop, amount) in enumerate(sales)]
        >>> mean = lambda: dummy.StatisticRegressor(stats.Mean())  # predicts the mean of what it saw
        >>> out = (
        ...     flow.from_iterable(days).key_by("shop")
        ...     .learn_predict(mean, features=["day"], target="sales").collect()
        ... )
        >>> flow.execute()
        >>> sorted((s.value["shop"], s.value["day"], s.prediction) for s in out.values)
        [('a', 0, 0.0), ('a', 2, 10.0), ('a', 4, 15.0), ('b', 1, 0.0), ('b', 3, 100.0)]
        """
        from actorflow.ml.learning import learner  # only flows that learn need river

        name = name if name is not None else nodes.free_name(self._flow, "learn_predict")
        function = learner(make_model, features=features, target=target, operator=name)
        return self.process(function, name=name, parallelism=parallelism, dead_letters=dead_letters)

    def window(self, assigner: WindowAssigner) -> WindowedStream[T, K]:
        """Cut each key's records into the windows of ``assigner``; finish with a window function.

        Raises :class:`PlanError` if ``assigner`` is not a
        :class:`~actorflow.operators.windows.assigners.WindowAssigner`.
        """
        return WindowedStream(self, assigner)

    def pattern(
        self,
        pattern: Pattern[Any],
        *,
        skip: AfterMatchSkip | None = None,
        late: OutputTag[T] | None = None,
    ) -> PatternStream[T]:
        """Find ``pattern`` in each key's events (complex event processing, Flink's CEP): finish
        with ``.select(fn)``, ``.flat_select(fn)`` or ``.process(PatternProcessFunction)``.

        ``skip`` is the after-match skip strategy (default: no skip). With event time, events go
        through the pattern in timestamp order once the watermark has passed them; a late event
        goes to ``late`` if given, else it is dropped and counted. Raises :class:`PlanError` for
        a pattern that cannot work."""
        from actorflow.api.patterns import PatternStream  # patterns.py builds on this module

        return PatternStream(self, pattern, skip, late)

    def interval_join(self, other: KeyedStream[U, Any]) -> IntervalJoin[T, U]:
        """Interval join with the keyed stream ``other``: ``.between(lower, upper).process(fn)``
        joins records of equal keys with ``self.ts + lower <= other.ts <= self.ts + upper`` (see
        :class:`~actorflow.api.joins.IntervalJoin`). Raises :class:`PlanError` across flows."""
        from actorflow.api.joins import IntervalJoin  # joins.py builds on this module

        return IntervalJoin(self, other)
