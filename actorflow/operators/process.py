"""Process functions: user logic with access to time, keyed state and timers.

A :class:`KeyedProcessFunction` runs once per record with the record's key set as the current key:
its state handles read and write that key's entry, and the timers it registers belong to that key.
When the watermark (event time) or the clock (processing time) passes a timer, :meth:`on_timer`
runs with the timer's key as the current key. Results go to ``out.collect``.

>>> class Count(KeyedProcessFunction):
...     def open(self, ctx):
...         self.seen = ctx.get_state(ValueStateDescriptor("seen", default=0))
...     def process_element(self, value, ctx, out):
...         self.seen.update(self.seen.value() + 1)
...         out.collect((ctx.current_key, self.seen.value()))
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping
from enum import Enum
from itertools import repeat
from types import ModuleType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from actorflow.compiled import load
from actorflow.errors import StateError
from actorflow.operators.base import Collector, Operator, OperatorContext
from actorflow.operators.failures import guarded, route_failure
from actorflow.operators.native import NativeCheckpointing
from actorflow.operators.side_outputs import OutputTag
from actorflow.operators.snapshots import SnapshotPart, dumps, incremental_changes
from actorflow.runtime.messages import MIN_WATERMARK, Batch
from actorflow.state.backends import open_tables
from actorflow.state.descriptors import (
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    ValueStateDescriptor,
)
from actorflow.state.heap_checkpoint import Deferred, HeapCheckpoints, read_chain
from actorflow.state.keyed import (
    NO_KEY,
    AggregatingState,
    KeyContext,
    KeyedStateBackend,
    ListState,
    MapState,
    ReducingState,
    ValueState,
)
from actorflow.state.keygroups import KeyGroupFilter
from actorflow.time.clock import Clock
from actorflow.time.timers import IndexedTimerQueue, TimerQueue

if TYPE_CHECKING:
    from actorflow.state.rocksdb_checkpoint import NativeCheckpoints  # needs rocksdict

__all__ = [
    "Context",
    "KeyedProcessFunction",
    "KeyedProcessOperator",
    "ProcessFunction",
    "ProcessOperator",
    "RuntimeContext",
    "TimeDomain",
    "TimerService",
    "restore_native",
]

IN = TypeVar("IN")
OUT = TypeVar("OUT")
T = TypeVar("T")

#: The version of ``actorflow.operators._keyed_loop`` this module expects (its ``VERSION``).
_KERNEL_VERSION = 1

#: The keyed process operator's per-record loop in C (``_keyed_loop.c``), or None: then the
#: operator runs its Python loops (:meth:`KeyedProcessOperator._process_unmarked` and
#: :meth:`~KeyedProcessOperator._process_marked`, the reference), as with ACTORFLOW_PURE_PYTHON=1.
_compiled: ModuleType | None = load("actorflow.operators._keyed_loop", _KERNEL_VERSION)


class TimeDomain(Enum):
    """Which clock a firing timer was registered on."""

    EVENT_TIME = "event_time"
    PROCESSING_TIME = "processing_time"


class RuntimeContext:
    """What a function gets in ``open``: where it runs, and (keyed only) its state."""

    def __init__(
        self,
        operator: OperatorContext,
        backend: KeyedStateBackend | None,
        failed: Callable[[Any, Exception, int | None], None] | None = None,
    ) -> None:
        self.operator = operator
        self._backend = backend
        #: Sends a record the function could not process to the operator's dead letters:
        #: ``failed(record, error, timestamp)``; None when the operator has none (then raise).
        #: For failures outside ``process_element`` (which the operator guards itself), such as
        #: records a function buffered and processes in ``on_timer``.
        self.failed = failed

    @property
    def index(self) -> int:
        """This instance's index among the operator's ``parallelism`` instances."""
        return self.operator.index

    @property
    def parallelism(self) -> int:
        return self.operator.parallelism

    def _keyed(self) -> KeyedStateBackend:
        if self._backend is None:
            raise StateError(
                f"operator {self.operator.name!r} is not keyed: keyed state needs key_by() first"
            )
        return self._backend

    def get_state(self, descriptor: ValueStateDescriptor[T]) -> ValueState[T]:
        """A value per key."""
        return self._keyed().get_state(descriptor)

    def get_list_state(self, descriptor: ListStateDescriptor[T]) -> ListState[T]:
        """A list per key."""
        return self._keyed().get_list_state(descriptor)

    def get_map_state(self, descriptor: MapStateDescriptor) -> MapState:
        """A dict per key."""
        return self._keyed().get_map_state(descriptor)

    def get_reducing_state(self, descriptor: ReducingStateDescriptor[T]) -> ReducingState[T]:
        """A value per key, folded with a reduce function."""
        return self._keyed().get_reducing_state(descriptor)

    def get_aggregating_state(self, descriptor: AggregatingStateDescriptor) -> AggregatingState:
        """An accumulator per key, kept by an aggregate function."""
        return self._keyed().get_aggregating_state(descriptor)


class TimerService:
    """Time as a function sees it, and (in keyed functions) timers for the current key."""

    __slots__ = ("_clock", "_event", "_keys", "_processing", "watermark")

    def __init__(
        self,
        clock: Clock,
        keys: Any = None,
        event: TimerQueue | None = None,
        processing: TimerQueue | None = None,
    ) -> None:
        self._clock = clock
        self._keys = keys
        self._event = event
        self._processing = processing
        self.watermark = MIN_WATERMARK

    def current_watermark(self) -> int:
        """The operator's current event time: the watermark before the record being processed."""
        return self.watermark

    def current_processing_time(self) -> int:
        """The clock's time in epoch milliseconds."""
        return self._clock.now()

    def _queue(self, queue: TimerQueue | None) -> tuple[TimerQueue, Hashable]:
        if queue is None:
            raise StateError("timers need a keyed stream: use key_by(...).process(...)")
        key = self._keys.current
        if key is NO_KEY:
            raise StateError("timers can only be set while processing a record or a timer")
        return queue, key

    def register_event_time_timer(self, time: int) -> None:
        """Call ``on_timer`` once the watermark reaches ``time`` (once per key and time)."""
        key = self._keys.current if self._keys is not None else NO_KEY
        queue = self._event
        if queue is None or key is NO_KEY:  # the checks of _queue, without a call per timer
            queue, key = self._queue(queue)
        queue.add(time, key)

    def delete_event_time_timer(self, time: int) -> None:
        queue, key = self._queue(self._event)
        queue.remove(time, key)

    def register_processing_time_timer(self, time: int) -> None:
        """Call ``on_timer`` once the clock reaches ``time`` (once per key and time)."""
        queue, key = self._queue(self._processing)
        queue.add(time, key)

    def delete_processing_time_timer(self, time: int) -> None:
        queue, key = self._queue(self._processing)
        queue.remove(time, key)


class Context:
    """Per-record context: the record's timestamp, its key, the timer service.

    One object is reused for every record of an operator instance: read it, do not keep it.
    """

    __slots__ = ("_emit", "_keys", "_timers", "time_domain", "timestamp")

    def __init__(
        self,
        timers: TimerService,
        keys: Any = None,
        emit: Callable[[OutputTag[Any], Any, int | None], None] | None = None,
    ) -> None:
        self._timers = timers
        self._keys = keys
        self._emit = emit
        #: Event timestamp of the current record, or of the firing timer; None without event time.
        self.timestamp: int | None = None
        #: In ``on_timer``: which kind of timer fired; None while processing a record.
        self.time_domain: TimeDomain | None = None

    @property
    def current_key(self) -> Any:
        """The key of the record (or timer) being processed."""
        if self._keys is None:
            raise StateError("there is no current key outside a keyed stream")
        return self._keys.current

    def timer_service(self) -> TimerService:
        return self._timers

    def output(self, tag: OutputTag[T], value: T) -> None:
        """Send ``value`` to the side output ``tag``, stamped with the current timestamp.

        Read it downstream with ``stream.get_side_output(tag)``; without a consumer it is dropped.
        """
        if self._emit is None:
            raise StateError("side outputs are only available inside an operator")
        self._emit(tag, value, self.timestamp)


class ProcessFunction(ABC, Generic[IN, OUT]):
    """Per-record logic on a non-keyed stream (no keyed state, no timers)."""

    def open(self, ctx: RuntimeContext) -> None:
        """Called once per instance before the first record."""

    @abstractmethod
    def process_element(self, value: IN, ctx: Context, out: Collector) -> None:
        """Handle one record; emit results with ``out.collect``."""

    def close(self) -> None:
        """Called once per instance at the end, also after a failure."""


class KeyedProcessFunction(ABC, Generic[IN, OUT]):
    """Per-record logic on a keyed stream, with keyed state and timers."""

    def open(self, ctx: RuntimeContext) -> None:
        """Called once per instance before the first record: declare state here."""

    @abstractmethod
    def process_element(self, value: IN, ctx: Context, out: Collector) -> None:
        """Handle one record of key ``ctx.current_key``; emit results with ``out.collect``."""

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        """A timer of key ``ctx.current_key`` fired (``ctx.time_domain`` says which kind)."""

    def close(self) -> None:
        """Called once per instance at the end, also after a failure."""


class _StampedAppend:
    """Collects values and gives each the current context timestamp."""

    __slots__ = ("ctx", "timestamps", "values")

    def __init__(self, ctx: Context, values: list[Any], timestamps: list[Any]) -> None:
        self.ctx = ctx
        self.values = values
        self.timestamps = timestamps

    def __call__(self, value: Any) -> None:
        self.values.append(value)
        self.timestamps.append(self.ctx.timestamp)


class _MarkedOutput:
    """The collector of a batch with watermarks: results, their timestamps (if stamped), and the
    output's marks. A watermark waits in ``pending`` and is written just before the next result
    (or by :meth:`flush` at the end), so watermarks with no result between them leave one mark,
    the last, and a per-record watermark costs one attribute store."""

    __slots__ = ("ctx", "marks", "pending", "timestamps", "values")

    def __init__(
        self, ctx: Context, values: list[Any], timestamps: list[Any] | None, marks: list[tuple[int, int]]
    ) -> None:
        self.ctx = ctx
        self.values = values
        self.timestamps = timestamps
        self.marks = marks
        #: The watermark passed since the last result, or None.
        self.pending: int | None = None

    def flush(self) -> None:
        """Write the pending watermark, after the results so far."""
        if self.pending is not None:
            self.marks.append((len(self.values), self.pending))
            self.pending = None

    def __call__(self, value: Any) -> None:
        if self.pending is not None:
            self.flush()
        self.values.append(value)
        if self.timestamps is not None:
            self.timestamps.append(self.ctx.timestamp)


def _watermarks_before(marks: list[tuple[int, int]], count: int) -> list[Any] | None:
    """For each of ``count`` records, the watermark of the mark at its position, or None; None
    for the whole batch if two marks share a position before the last record. Marks at
    ``count`` or after are left out (they follow the last record).

    >>> _watermarks_before([(0, 5), (2, 9), (3, 12)], 3)
    [5, None, 9]
    >>> _watermarks_before([(1, 5), (1, 9)], 3) is None
    True
    """
    due: list[Any] = [None] * count
    for position, watermark in marks:
        if position < count:
            if due[position] is not None:
                return None
            due[position] = watermark
    return due


def _first_after(marks: list[tuple[int, int]], count: int) -> int:
    """The index of the first of ``marks`` (in position order) that follows the last of
    ``count`` records (position ``count`` or later); ``len(marks)`` if none does. Found from the
    end, so the marks among the records (about one every four records) cost no step here.

    >>> _first_after([(0, 5), (3, 9), (3, 12)], 3), _first_after([(1, 5)], 3)
    (1, 1)
    """
    first = len(marks)
    while first and marks[first - 1][0] >= count:
        first -= 1
    return first


class ProcessOperator(Operator):
    """Runs a :class:`ProcessFunction` over every record."""

    def __init__(
        self, name: str, function: ProcessFunction[Any, Any], errors: OutputTag[Any] | None = None
    ) -> None:
        super().__init__(name)
        self.function = function
        #: Where records ``process_element`` raises on go (None: the job fails).
        self.errors = errors
        if errors is not None:  # a metric only where records can fail over
            self.dead_letter_count = 0
        self._timers: TimerService | None = None

    def open(self, context: OperatorContext) -> None:
        super().open(context)
        self._timers = TimerService(context.clock)
        self._ctx = self._make_context(self._timers, None)
        self._out = Collector()
        #: The per-record user call; a two-input operator re-points it per input.
        self._element: Callable[[Any, Context, Collector], None] = self._element_of(0)
        if self.errors is not None:
            self._element = guarded(self, self._element, self.errors)
        self.function.open(RuntimeContext(context, None))

    def _make_context(self, timers: TimerService, keys: Any) -> Context:
        return Context(timers, keys, self.emit_side)

    def _element_of(self, input: int) -> Callable[[Any, Context, Collector], None]:
        """The user's per-record call for records of ``input``."""
        return self.function.process_element

    def process(self, batch: Batch) -> Batch:
        timers = self._timers
        assert timers is not None
        ctx = self._ctx
        values = batch.values
        timestamps = batch.timestamps
        out_values: list[Any] = []
        out_timestamps: list[Any] | None = None
        if timestamps is None:
            ctx.timestamp = None
            self._out.collect = out_values.append
        else:
            out_timestamps = []
            self._out.collect = _StampedAppend(ctx, out_values, out_timestamps)
        process = self._element
        out = self._out
        out_marks: list[tuple[int, int]] = []
        marks = batch.marks or []
        mark_index = 0
        mark_count = len(marks)
        next_position = marks[0][0] if marks else -1
        for position, value in enumerate(values):
            while position == next_position:
                timers.watermark = marks[mark_index][1]
                out_marks.append((len(out_values), timers.watermark))
                mark_index += 1
                next_position = marks[mark_index][0] if mark_index < mark_count else -1
            if timestamps is not None:
                ctx.timestamp = timestamps[position]
            process(value, ctx, out)
        for _, watermark in marks[mark_index:]:
            timers.watermark = watermark
            out_marks.append((len(out_values), watermark))
        return Batch(out_values, out_timestamps, out_marks or None)

    def close(self) -> None:
        self.function.close()


class KeyedProcessOperator(NativeCheckpointing):
    """Runs a :class:`KeyedProcessFunction`: sets the current key, keeps state, fires timers."""

    has_processing_timers = True

    def __init__(
        self,
        name: str,
        function: KeyedProcessFunction[Any, Any],
        key_of: Callable[[Any], Any],
        errors: OutputTag[Any] | None = None,
    ) -> None:
        super().__init__(name)
        self.function = function
        self.key_of = key_of
        #: Where records ``process_element`` raises on go (None: the job fails).
        self.errors = errors
        if errors is not None:  # a metric only where records can fail over
            self.dead_letter_count = 0
        self.backend = KeyedStateBackend()
        self.event_timers = TimerQueue()
        self.processing_timers = TimerQueue()
        #: Incremental snapshots (``context.incremental``) and incremental heap checkpoints only:
        #: the keys changed since the last snapshot. None otherwise, so the per-batch check is all
        #: the tracking costs.
        self.changed_keys: set[Hashable] | None = None
        #: Whether snapshots are incremental (``context.incremental``: a changelog's steps).
        self._changelog = False
        #: The chain of the checkpoint being taken, within an incremental heap checkpoint.
        self._heap_chain: list[str] | None = None
        self._stamped = False
        #: The native checkpoints of a RocksDB state (None on the heap); see
        #: :meth:`checkpoint_state_async`.
        self.native_checkpoints: NativeCheckpoints | None = None
        #: The description of the native checkpoint being taken (see checkpoint_state_async).
        self._native_description: dict[str, Any] | None = None

    def open(self, context: OperatorContext) -> None:
        super().open(context)
        keys = KeyContext()
        tables = None
        if context.state_backend is not None:
            tables = open_tables(
                context.state_backend,
                context.name,
                context.index,
                max_parallelism=context.max_parallelism,
                keys=keys,
            )
        self.backend = KeyedStateBackend(context.max_parallelism, context.clock, tables, keys)
        self.native_checkpoints = None
        self._changelog = context.incremental
        config = context.state_backend
        self.heap_checkpoints = None
        if not context.incremental and config is not None and config.kind == "heap" and config.incremental:
            self.heap_checkpoints = HeapCheckpoints(context.label, config.path)
        if context.incremental or self.heap_checkpoints is not None:
            # Timer changes (a timer set, deleted or fired, from any path) mark their key in the
            # queues themselves; records are marked per batch in process().
            self.changed_keys = changed = set[Hashable]()
            self.event_timers = IndexedTimerQueue(None, changed)
            self.processing_timers = IndexedTimerQueue(None, changed)
        else:
            self.changed_keys = None
            self.event_timers = TimerQueue()
            self.processing_timers = TimerQueue()
        if context.state_backend is not None and context.state_backend.kind == "rocksdb":
            from actorflow.state.rocksdb import RocksDBTables  # rocksdict is there: tables opened
            from actorflow.state.rocksdb_checkpoint import NativeCheckpoints
            from actorflow.state.rocksdb_timers import RocksDBTimerQueue

            assert isinstance(tables, RocksDBTables)
            self.native_checkpoints = NativeCheckpoints(tables)
            if not context.incremental:  # a changelog task indexes its timers by key: heap
                self.event_timers = RocksDBTimerQueue(tables, "event")
                self.processing_timers = RocksDBTimerQueue(tables, "processing")
        self.timers = TimerService(context.clock, keys, self.event_timers, self.processing_timers)
        self._ctx = self._make_context(self.timers, keys)
        self._out = Collector()
        #: The per-record user call; a two-input operator re-points it (and ``key_of``) per input.
        self._element: Callable[[Any, Context, Collector], None] = self._element_of(0)
        failed = None
        if self.errors is not None:
            self._element = guarded(self, self._element, self.errors)
            errors = self.errors

            def failed(value: Any, error: Exception, timestamp: int | None) -> None:
                route_failure(self, errors, value, error, timestamp)

        self.function.open(RuntimeContext(context, self.backend, failed))

    def _make_context(self, timers: TimerService, keys: Any) -> Context:
        return Context(timers, keys, self.emit_side)

    def _element_of(self, input: int) -> Callable[[Any, Context, Collector], None]:
        """The user's per-record call for records of ``input``."""
        return self.function.process_element

    def _bind(self, stamped: bool) -> tuple[list[Any], list[Any] | None]:
        values: list[Any] = []
        if stamped:
            timestamps: list[Any] = []
            self._out.collect = _StampedAppend(self._ctx, values, timestamps)
            return values, timestamps
        self._out.collect = values.append
        return values, None

    def process(self, batch: Batch) -> Batch:
        values = batch.values
        marks = batch.marks
        if values:
            self._stamped = stamped = batch.timestamps is not None
        else:
            # A watermark-only batch says nothing about timestamps: timers that fire on it stamp
            # their output as the stream does (with the timer's time).
            stamped = self._stamped or bool(marks)
        out_values, out_timestamps = self._bind(stamped)
        if batch.timestamps is None:
            self._ctx.timestamp = None
        if marks:
            out_marks: list[tuple[int, int]] = []
            output = _MarkedOutput(self._ctx, out_values, out_timestamps, out_marks)
            self._out.collect = output
            self._process_marked(values, batch.timestamps if stamped else None, marks, output)
        else:
            self._process_unmarked(values, batch.timestamps)
        self.backend.keys.current = NO_KEY
        if self.changed_keys is not None:
            self.changed_keys.update(map(self.key_of, values))
        return Batch(out_values, out_timestamps, out_marks if marks else None)

    def _process_unmarked(self, values: list[Any], timestamps: list[Any] | None) -> None:
        """The records of a batch without watermarks: for each, its key made current, its
        timestamp (if stamped) in the context, the user's call. In C when it is built."""
        if _compiled is not None:
            _compiled.run(
                values, timestamps, self.key_of, self._element, self._ctx, self._out, self.backend.keys
            )
            return
        keys = self.backend.keys
        key_of = self.key_of
        ctx = self._ctx
        out = self._out
        process = self._element
        if timestamps is None:
            for value, key in zip(values, map(key_of, values), strict=True):
                keys.current = key
                process(value, ctx, out)
        else:
            for value, key, timestamp in zip(values, map(key_of, values), timestamps, strict=True):
                keys.current = key
                ctx.timestamp = timestamp
                process(value, ctx, out)

    def _process_marked(
        self,
        values: list[Any],
        timestamps: list[Any] | None,
        marks: list[tuple[int, int]],
        output: _MarkedOutput,
    ) -> None:
        """The records of a batch with watermarks (``marks``: ``(position, watermark)``, the
        watermark before the record at ``position``). There is one every few records, so they are
        handled inline: a mark sets the watermark, fires the timers it passed (rarely), and waits
        in ``output`` until the next result or the end (what :meth:`_advance` does in a call).

        Each record comes with the watermark due before it (None mostly) from one ``zip``, so a
        record costs no position count and a mark no bookkeeping; a batch with two marks before
        the same record goes through :meth:`_process_in_order` instead. A record's key is read
        before the marks at its position are passed.

        In C when it is built (any marks): the same steps, a mark's timers fired through
        :meth:`_advance`."""
        if _compiled is not None:
            _compiled.run_marked(
                values,
                timestamps,
                marks,
                self.key_of,
                self._element,
                self._ctx,
                self._out,
                self.backend.keys,
                self.timers,
                self.event_timers,
                output,
                self._advance,
            )
            output.flush()
            return
        due = _watermarks_before(marks, len(values))
        if due is None:
            self._process_in_order(values, timestamps, marks, output)
            return
        keys = self.backend.keys
        ctx = self._ctx
        out = self._out
        process = self._element
        timers = self.timers
        queue = self.event_timers
        stamps = repeat(None) if timestamps is None else timestamps  # endless: strict=False
        records = zip(values, map(self.key_of, values), stamps, due, strict=False)
        for value, key, timestamp, watermark in records:
            if watermark is not None:
                timers.watermark = watermark
                next_time = queue.next_time
                if next_time is not None and next_time <= watermark:
                    self._fire(queue, watermark, TimeDomain.EVENT_TIME)
                output.pending = watermark
            keys.current = key
            ctx.timestamp = timestamp  # None throughout without timestamps, as process() set it
            process(value, ctx, out)
        for _, watermark in marks[_first_after(marks, len(values)) :]:
            self._advance(watermark, output)
        output.flush()

    def _process_in_order(
        self,
        values: list[Any],
        timestamps: list[Any] | None,
        marks: list[tuple[int, int]],
        output: _MarkedOutput,
    ) -> None:
        """:meth:`_process_marked` for any marks (several may come before the same record): the
        records counted, each mark in turn before the record at its position."""
        keys = self.backend.keys
        key_of = self.key_of
        ctx = self._ctx
        out = self._out
        process = self._element
        mark_index = 0
        mark_count = len(marks)
        next_position = marks[0][0]
        for position, value in enumerate(values):
            key = key_of(value)  # before the marks, as in _process_marked
            while position == next_position:
                self._advance(marks[mark_index][1], output)
                mark_index += 1
                next_position = marks[mark_index][0] if mark_index < mark_count else -1
            keys.current = key
            if timestamps is not None:
                ctx.timestamp = timestamps[position]
            process(value, ctx, out)
        for _, watermark in marks[mark_index:]:
            self._advance(watermark, output)
        output.flush()

    def _advance(self, watermark: int, output: _MarkedOutput) -> None:
        """The watermark moved: fire the event-time timers it passed, then pass it on (after the
        timers' results: ``output`` writes it before the next result)."""
        self.timers.watermark = watermark
        next_time = self.event_timers.next_time
        if next_time is not None and next_time <= watermark:
            self._fire(self.event_timers, watermark, TimeDomain.EVENT_TIME)
        output.pending = watermark

    def _fire(self, queue: TimerQueue, limit: int, domain: TimeDomain) -> None:
        keys = self.backend.keys
        ctx = self._ctx
        saved = ctx.timestamp
        on_timer = self.function.on_timer
        out = self._out
        ctx.time_domain = domain
        event_time = domain is TimeDomain.EVENT_TIME
        try:
            for time, key in queue.pop_due(limit):
                keys.current = key
                ctx.timestamp = time if event_time else None
                on_timer(time, ctx, out)
        finally:
            ctx.time_domain = None
            ctx.timestamp = saved

    def next_processing_time(self) -> int | None:
        return self.processing_timers.next_time

    def on_processing_time(self, now: int) -> Batch | None:
        out_values, out_timestamps = self._bind(self._stamped)
        self._fire(self.processing_timers, now, TimeDomain.PROCESSING_TIME)
        self.backend.keys.current = NO_KEY
        if not out_values:
            return None
        return Batch(out_values, out_timestamps)

    def snapshot_state(self) -> dict[str, Any]:
        """Keyed state and both timer queues as they are, with the key groups this instance owns:
        ``{"key_groups": (start, stop), "state": {name: {key: value}}, "event": ([times], [keys]),
        "processing": (...)}`` (see :meth:`~actorflow.time.timers.TimerQueue.export`).

        Not cut by key group: at the same parallelism a restore takes each instance's part whole,
        and only a change of parallelism hashes keys (a restore is rare, a checkpoint frequent).
        Nothing is copied: the chain pickles it at once, before the state changes again.

        With ``context.incremental``: ``{"changes": {key: entry or None}}`` for the keys changed
        since the previous snapshot only (a record, a timer, a broadcast's
        ``apply_to_keyed_state``), costing those keys, not the state. An entry is ``{"state":
        {name: value}, "event": [(time, sequence)], "processing": [(time, sequence)]}`` (values as
        stored: a TTL state's is ``(value, expires_at)``; the sequence orders timers of one time);
        None means the key holds nothing any more. The watermark is not part of it (as in a full
        snapshot: the inputs bring it again).
        """
        if self._changelog:
            assert self.changed_keys is not None
            return {"changes": self._changes(self.changed_keys)}
        owned = self.context.key_groups
        if self._heap_chain is not None:  # within an incremental heap checkpoint
            return {"key_groups": (owned.start, owned.stop), "heap": self._heap_chain}
        native = self._native_description
        if native is not None:  # within checkpoint_state_async
            stored = native.get("timers", {})  # timers the store holds are not exported
            return {
                "key_groups": (owned.start, owned.stop),
                "rocksdb": native,
                "event": None if "event" in stored else self.event_timers.export(),
                "processing": None if "processing" in stored else self.processing_timers.export(),
            }
        return self._whole_state()

    def _whole_state(self) -> dict[str, Any]:
        owned = self.context.key_groups
        return {
            "key_groups": (owned.start, owned.stop),
            "state": self.backend.tables(),
            "event": self.event_timers.export(),
            "processing": self.processing_timers.export(),
        }

    async def checkpoint_state_async(self, checkpoint_id: int) -> Any:
        """On RocksDB: a native, incremental checkpoint (see
        :mod:`~actorflow.state.rocksdb_checkpoint`), a :class:`SnapshotPart` whose data is the
        pickled ``{"key_groups": (start, stop), "rocksdb": description, "event": ([times], [keys]),
        "processing": (...)}`` (what :meth:`snapshot_state` returns while it runs, so a subclass's
        additions are kept) and whose shared files are the store's SST files: the cache is
        written back (the loop runs between batches), the store checkpointed in a worker thread;
        the local checkpoint is deleted once the checkpoint completes or aborts. Timers in
        RocksDB are in the store's files: the description records their count (``"timers"``)
        and the part exports none (``None``), so taking it reads no timer. On the heap, and for
        incremental snapshots: :meth:`snapshot_state`.

        On the heap with ``incremental=True``: a base or the changes since the last checkpoint, as
        a shared file (:mod:`actorflow.state.heap_checkpoint`); the part is
        ``{"key_groups": (start, stop), "heap": [shared keys of the chain]}`` (plus what a
        subclass's :meth:`snapshot_state` adds to it).
        """
        if self.heap_checkpoints is not None:
            return await self._heap_checkpoint(self.heap_checkpoints, checkpoint_id)
        native = self.native_checkpoints
        if native is None or self._changelog:
            return await self.snapshot_state_async()
        from actorflow.state.rocksdb_timers import RocksDBTimerQueue  # on RocksDB: rocksdict is there

        description, shared = await native.take(checkpoint_id)
        queues = {"event": self.event_timers, "processing": self.processing_timers}
        stored = {
            name: queue.native_state()
            for name, queue in queues.items()
            if isinstance(queue, RocksDBTimerQueue)
        }
        if stored:
            description["timers"] = stored
        # snapshot_state() gives the native shape meanwhile: what a subclass adds to it (the
        # broadcast state of a keyed broadcast function) goes into the part as well.
        self._native_description = description
        try:
            state = await self.snapshot_state_async()
        finally:
            self._native_description = None
        return SnapshotPart(dumps(state), shared)

    async def _heap_checkpoint(self, heap: HeapCheckpoints, checkpoint_id: int) -> SnapshotPart:
        changed = self._take_changed()
        base = heap.wants_base(len(changed), self.backend.largest_state())
        state: Any
        if base:
            state = self._whole_state()
            entries = sum(map(len, state["state"].values())) + len(state["event"][0])
        else:  # built where it is pickled, from the keys as they are now: in a forked child
            state = Deferred(functools.partial(self._heap_change, changed))  # when it is large
            entries = len(changed)
        chain, shared = heap.take(checkpoint_id, state, base=base, entries=entries, changed=changed)
        del state, changed  # the heap lets go of the keys once they are written
        # snapshot_state() gives the chain's shape meanwhile: what a subclass adds to it (the
        # broadcast state of a keyed broadcast function) goes into the part as well.
        self._heap_chain = chain
        try:
            part = await self.snapshot_state_async()
        finally:
            self._heap_chain = None
        return SnapshotPart(dumps(part), shared)

    def _take_changed(self) -> set[Hashable]:
        """The keys changed since the last checkpoint; a new set takes the next ones (every holder
        of the old one is re-pointed: the timer queues, and a subclass's context). Swapped, not
        copied or cleared: dropping millions of keys costs a pause (and, while a forked child
        shares the pages, a copy of every page they touch)."""
        changed = self.changed_keys
        assert changed is not None
        self.changed_keys = fresh = set[Hashable]()
        for queue in (self.event_timers, self.processing_timers):
            if isinstance(queue, IndexedTimerQueue):
                queue.changed = fresh
        return changed

    def _heap_change(self, keys: set[Hashable]) -> dict[str, Any]:
        """The change of an incremental heap checkpoint: the whole entries of ``keys`` in a whole
        state's shape, ``{"keys": [...], "state": {name: {key: value}}, "event": ([times],
        [keys]), "processing": (...)}`` (a key listed but in no table holds nothing any more; its
        timers in the order they fire). Columns rather than an entry per key: the same bytes per
        key as a base."""
        keys.discard(NO_KEY)  # the key of a broadcast input's records

        def timers(queue: IndexedTimerQueue) -> tuple[list[int], list[Hashable]]:
            if not queue:
                return [], []
            found = sorted(
                ((time, sequence, key) for index in keys for time, key, sequence in queue.timers_of(index)),
                key=lambda timer: (timer[0], timer[1]),
            )
            return [time for time, _, _ in found], [key for _, _, key in found]

        return {
            "keys": list(keys),
            "state": self.backend.entries_of(keys),
            "event": timers(self.event_timers),  # type: ignore[arg-type]
            "processing": timers(self.processing_timers),  # type: ignore[arg-type]
        }

    def _changes(self, changed: set[Hashable]) -> dict[Hashable, dict[str, Any] | None]:
        changed.discard(NO_KEY)  # the key of a broadcast input's records
        entry_of = self.backend.entry_of
        event: IndexedTimerQueue = self.event_timers  # type: ignore[assignment]
        processing: IndexedTimerQueue = self.processing_timers  # type: ignore[assignment]
        changes: dict[Hashable, dict[str, Any] | None] = {}
        for key in changed:
            state = entry_of(key)
            event_timers = [(time, sequence) for time, _, sequence in event.timers_of(key)]
            processing_timers = [(time, sequence) for time, _, sequence in processing.timers_of(key)]
            if state or event_timers or processing_timers:
                changes[key] = {"state": state, "event": event_timers, "processing": processing_timers}
            else:
                changes[key] = None
        changed.clear()
        return changes

    def restore_state(self, states: list[Any]) -> None:
        """Load every instance's :meth:`snapshot_state`: full states (this instance keeps the key
        groups it owns), or incremental ones (``{"changes": ...}``, applied in order: a later entry
        of a key replaces an earlier one, None removes it; taken whole, not filtered by key group:
        the caller hands this instance its own keys). A list mixes neither kind with the other
        (:class:`StateError`).

        In incremental mode, keys restored from full states count as changed (the next snapshot
        holds them all, so a changelog started from a checkpoint is complete); keys restored from
        changes do not (the changelog has them).
        """
        changes = incremental_changes(self.name, states)
        if changes is not None:
            self._restore_changes(changes)
            return
        self._restore_full(states)
        if self._changelog and self.changed_keys is not None:  # as the queues took timers
            self.changed_keys.update(key for table in self.backend.tables().values() for key in table)

    def _restore_changes(self, changes: list[dict[Hashable, dict[str, Any] | None]]) -> None:
        latest: dict[Hashable, dict[str, Any] | None] = {}
        for part in changes:
            latest.update(part)
        entries = [(key, entry) for key, entry in latest.items() if entry is not None]
        self.backend.load_entries((key, entry["state"]) for key, entry in entries)
        self.event_timers.add_sequenced(
            (time, sequence, key) for key, entry in entries for time, sequence in entry["event"]
        )
        self.processing_timers.add_sequenced(
            (time, sequence, key) for key, entry in entries for time, sequence in entry["processing"]
        )
        if self.changed_keys is not None:
            self.changed_keys.clear()

    def _restore_full(self, states: list[Any]) -> None:
        owned = self.context.key_groups
        max_parallelism = self.context.max_parallelism
        states = [self._unchained(state) if "heap" in state else state for state in states]
        native = [state for state in states if "rocksdb" in state]
        if native:  # first: one of them may become the store itself
            self._restore_native(native, owned)
        for state in states:  # just unpickled: nobody else holds these objects
            if "groups" in state:  # cut by key group (the format before session 3)
                self._restore_groups(state["groups"], owned)
                continue
            keep = KeyGroupFilter(range(*state["key_groups"]), owned, max_parallelism)
            if keep.takes_none:
                continue
            if "rocksdb" not in state:
                self.backend.load_tables(state["state"], keep)
            for queue, saved in (
                (self.event_timers, state["event"]),
                (self.processing_timers, state["processing"]),
            ):
                if saved is None:  # in the RocksDB part's store: restored with it
                    continue
                times, keys = saved
                if keep.takes_all:
                    queue.add_all(zip(times, keys, strict=True))
                else:
                    queue.add_all(timer for timer in zip(times, keys, strict=True) if keep(timer[1]))

    def _unchained(self, part: dict[str, Any]) -> dict[str, Any]:
        """An incremental heap checkpoint's part as the whole state it stands for: its base with
        its changes folded in."""
        owned = KeyGroupFilter(
            range(*part["key_groups"]), self.context.key_groups, self.context.max_parallelism
        )
        if owned.takes_none:
            return part  # skipped, unread
        base, *changes = read_chain(self.context.restored_files, part["heap"], self.name)
        return fold_changes(base, changes)

    def _restore_native(self, states: list[Any], owned: range) -> None:
        """Native RocksDB checkpoint parts (their timers are restored with the others'): see
        :func:`restore_native`."""
        parts = [(state["rocksdb"], range(*state["key_groups"])) for state in states]
        backend = self.backend
        restore_native(
            self.name,
            self.context,
            parts,
            lambda name, entries: backend.load_tables({name: entries}),
            self.native_checkpoints,
            {"event": self.event_timers, "processing": self.processing_timers},
        )

    def _restore_groups(self, groups: dict[int, dict[str, Any]], owned: range) -> None:
        self.backend.restore(
            {group: part["state"] for group, part in groups.items()}, owned, copy_values=False
        )
        mine = [part for group, part in groups.items() if group in owned]
        self.event_timers.add_all(timer for part in mine for timer in part["event"])
        self.processing_timers.add_all(timer for part in mine for timer in part["processing"])

    def close(self) -> None:
        try:
            self.function.close()
        finally:
            if self.native_checkpoints is not None:
                self.native_checkpoints.release_all()
            if self.heap_checkpoints is not None:
                self.heap_checkpoints.close()
            self.backend.close()  # the RocksDB backend deletes its files


def fold_changes(base: dict[str, Any], changes: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole state (:meth:`KeyedProcessOperator.snapshot_state`'s shape) that ``base``, a whole
    state, stands for after ``changes`` (:meth:`KeyedProcessOperator._heap_change`'s, oldest
    first): each change replaces the state and timers of its keys. At one time, the base's timers
    fire first, then the changes' in the order they were taken.

    >>> base = {"state": {"n": {"a": 1, "b": 2}}, "event": ([5, 9], ["a", "b"]), "processing": ([], [])}
    >>> no_timers = ([], [])
    >>> a_gone = {"keys": ["a"], "state": {}, "event": no_timers, "processing": no_timers}
    >>> c_new = {"keys": ["c"], "state": {"n": {"c": 7}}, "event": ([5], ["c"]), "processing": no_timers}
    >>> state = fold_changes(base, [a_gone, c_new])
    >>> state["state"], state["event"]
    ({'n': {'b': 2, 'c': 7}}, ([5, 9], ['c', 'b']))
    """
    if not changes:
        return base
    tables: dict[str, dict[Hashable, Any]] = base["state"]
    latest: dict[Hashable, int] = {}  # key -> the index of the last change that has it
    for index, change in enumerate(changes):
        keys = change["keys"]
        latest.update(dict.fromkeys(keys, index))
        state = change["state"]
        for name, table in tables.items():
            # Only what the key lost is removed: a dict without removed entries is copied whole
            # (a memory copy) into the table a restore fills, one with them entry by entry.
            kept = state.get(name, ())
            for key in keys:
                if key not in kept:
                    table.pop(key, None)
        for name, entries in state.items():
            tables.setdefault(name, {}).update(entries)
    for domain in ("event", "processing"):
        times, keys = base[domain]
        kept = [(time, key) for time, key in zip(times, keys, strict=True) if key not in latest]
        added = [
            (time, key)
            for index, change in enumerate(changes)
            for time, key in zip(*change[domain], strict=True)
            if latest[key] == index
        ]
        merged = sorted(kept + added, key=lambda timer: timer[0])  # stable: the base's first
        base[domain] = ([time for time, _ in merged], [key for _, key in merged])
    return base


def restore_native(
    operator: str,
    context: OperatorContext,
    parts: list[tuple[dict[str, Any], range]],
    load: Callable[[str, dict[Hashable, Any]], None],
    checkpoints: NativeCheckpoints | None,
    timers: Mapping[str, TimerQueue] | None = None,
) -> bool:
    """Restore native RocksDB checkpoint parts (``(description, their key groups)``) into the
    state of ``operator``'s instance of ``context``: on RocksDB (``checkpoints`` given) at the same
    parallelism a part's files become the store; otherwise the owned key groups of every
    overlapping part are read and handed to ``load(name, entries)`` (see
    :func:`actorflow.state.rocksdb_checkpoint.restore`, which every keyed operator shares).
    Returns whether a part was taken whole. Needs rocksdict, even onto the heap
    (:class:`StateError` without it).

    >>> from actorflow.operators.base import OperatorContext
    >>> restore_native("op", OperatorContext("op"), [], lambda name, entries: None, None)
    False
    """
    try:
        from actorflow.state.rocksdb_checkpoint import restore
    except ModuleNotFoundError as error:
        if error.name != "rocksdict":
            raise
        raise StateError(
            f"operator {operator!r}: the checkpoint holds RocksDB state, which needs rocksdict "
            "to restore: pip install 'actorflow[rocksdb]' (or restore from a savepoint)"
        ) from None
    backend = context.state_backend
    scratch = backend.path if backend is not None else None
    return restore(parts, load, context.key_groups, context.restored_files, checkpoints, scratch, timers)
