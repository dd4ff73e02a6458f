"""The keyed operator that runs a pattern over each key's events.

**Event time.** Events wait in one buffer per operator instance, ordered by timestamp and arrival,
until the watermark passes them; then each goes through its key's automaton
(:class:`~actorflow.operators.cep.nfa.NFA`), so a key sees its events in timestamp order, equal
timestamps in arrival order. An event at or behind the watermark when it arrives is late: it goes to
the ``late`` side output if there is one, else it is dropped and counted (``late_events``). Partial
matches time out when the watermark reaches ``first event + within`` (a second heap of due times).
**Processing time**: without event timestamps, events go through as they arrive and ``within``
counts on the clock.

**State.** Per key: its partial matches (:class:`~actorflow.operators.cep.nfa.NFAState`) and its
waiting events; a key with neither keeps nothing, and an event that neither continues a partial
match nor begins one costs no state at all. It lives in the table ``"pattern"`` of the instance's
:func:`~actorflow.state.backends.open_tables` (the flow's state backend): per key ``[NFAState or
None, [(ts, seq, event), ...], due time or None]``. On the heap the table is a dict and the waiting
events stay in the instance's list of ``(ts, seq, event)`` (nothing is evicted there, and it is the
fastest): a batch's events are appended as they come, and a watermark sorts them in (a stable sort
of what is mostly in order already) and takes the due ones off the front, whose keys are found
then; the first stage's condition runs over them in C, and only the events of keys with state (or
that begin a partial match) go through Python, the rest never do; on RocksDB each key's
waiting events are in its entry, in ``(ts, seq)`` order, and a heap holds only ``(ts, seq, key)`` of
each key's earliest one. The operator sets its key context before it touches a key's entry (a
record, the watermark releasing an event, a timeout) and keeps no entry across keys: on RocksDB an
entry is live only while its key is current. What stays on the heap either way: the heap of due
times ``(due, key)`` per key with a ``within``, the index of waiting events above, the keys changed
since the last snapshot (incremental mode).

A snapshot writes, per key, ``(NFAState or None, [(ts, seq, event), ...])``, with the instance's
key groups (on RocksDB the table is read back as a dict: the same format, so a savepoint moves
between backends), so a restore (at any parallelism) takes the keys it owns and rebuilds both
heaps; in incremental mode (partition tasks) only the keys touched since the previous snapshot, a
key without state as None.
"""

from __future__ import annotations

import heapq
from abc import ABC, abstractmethod
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Hashable, MutableMapping
from itertools import accumulate, compress, count, repeat
from operator import itemgetter, le, not_
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

from actorflow.errors import StateError
from actorflow.operators.base import Collector, OperatorContext
from actorflow.operators.cep.nfa import NFA, Match, NFAState
from actorflow.operators.failures import FailedRecord, route_failure
from actorflow.operators.native import NativeCheckpointing
from actorflow.operators.process import RuntimeContext, restore_native
from actorflow.operators.side_outputs import OutputTag
from actorflow.operators.snapshots import SnapshotPart, dumps, incremental_changes
from actorflow.runtime.messages import MAX_WATERMARK, MIN_WATERMARK, Batch
from actorflow.state.backends import StateBackendConfig, StateTables, open_tables
from actorflow.state.keyed import NO_KEY, KeyContext
from actorflow.state.keygroups import KeyGroupFilter

if TYPE_CHECKING:
    from actorflow.state.rocksdb_checkpoint import NativeCheckpoints  # needs rocksdict

__all__ = ["PatternContext", "PatternOperator", "PatternProcessFunction"]

IN = TypeVar("IN")
OUT = TypeVar("OUT")

Events = dict[str, list[Any]]
#: ``handler(match, ctx, out)``.
Handler = Callable[[Events, "PatternContext", Collector], None]
#: The name of the table that holds each key's state.
TABLE: Final = "pattern"
#: A waiting event's time (and a mark's position).
_TIME: Final = itemgetter(0)
#: A mark's watermark.
_LEVEL: Final = itemgetter(1)
#: A waiting event's event.
_VALUE: Final = itemgetter(1)


class PatternContext:
    """What a :class:`PatternProcessFunction` (or a timeout handler) sees besides the match."""

    __slots__ = ("_operator", "current_key", "timestamp")

    def __init__(self, operator: PatternOperator) -> None:
        self._operator = operator
        #: The time of the match: its last event's (event time), or the clock's; for a timed-out
        #: partial match, when it timed out.
        self.timestamp: int | None = None
        #: The key the match belongs to.
        self.current_key: Any = None

    def output(self, tag: OutputTag[Any], value: Any) -> None:
        """Send ``value`` to the side output ``tag``."""
        self._operator.emit_side(tag, value, self.timestamp)


class PatternProcessFunction(ABC, Generic[IN, OUT]):
    """Turns matches into results, with a context (Flink's ``PatternProcessFunction``)."""

    def open(self, ctx: RuntimeContext) -> None:
        """Called once per instance before the first match."""

    @abstractmethod
    def process_match(self, match: dict[str, list[IN]], ctx: PatternContext, out: Collector) -> None:
        """One match: each stage's events in order; emit results with ``out.collect``."""

    def process_timed_out_match(
        self, match: dict[str, list[IN]], ctx: PatternContext, out: Collector
    ) -> None:
        """A partial match that timed out (only with ``timed_out=True``). Default: nothing."""


class PatternOperator(NativeCheckpointing):
    """Runs ``nfa`` per key of ``key_of`` and hands each match to ``on_match(match, ctx, out)``,
    each timed-out partial match to ``on_timeout``; see the module for time and state."""

    has_processing_timers = True

    def __init__(
        self,
        name: str,
        nfa: NFA,
        key_of: Callable[[Any], Hashable],
        on_match: Handler,
        on_timeout: Handler | None = None,
        *,
        late: OutputTag[Any] | None = None,
        errors: OutputTag[FailedRecord[Any]] | None = None,
        opened: Callable[[RuntimeContext], None] | None = None,
    ) -> None:
        super().__init__(name)
        self.nfa = nfa
        self.key_of = key_of
        self.on_match = on_match
        self.on_timeout = on_timeout
        self.late = late
        self.errors = errors
        self.opened = opened
        #: Late events dropped (without a ``late`` output), since this instance opened.
        self.late_events = 0
        if errors is not None:
            self.dead_letter_count = 0

    def open(self, context: OperatorContext) -> None:
        super().open(context)
        #: The key whose state the operator works on: the RocksDB cache never evicts its entry.
        self.keys = KeyContext()
        self._backend = context.state_backend or StateBackendConfig()
        #: Whether each key's waiting events are in its entry (on RocksDB, where entries may be
        #: evicted) rather than all in :attr:`waiting` (on the heap, the fastest).
        self.per_key = self._backend.kind != "heap"
        #: The instance's tables; on RocksDB None until the first record or restore (opening a
        #: store costs tens of milliseconds: an instance that never holds a key does without).
        self.tables: StateTables | None = None
        #: The native checkpoints of a RocksDB store (None on the heap, and until the store
        #: opens); see :meth:`checkpoint_state_async`.
        self.native_checkpoints: NativeCheckpoints | None = None
        #: Per key with partial matches or waiting events: ``[NFAState or None, [(ts, seq, event),
        #: ...] in (ts, seq) order (or () when there are none), due time of its earliest partial
        #: match or None]`` (see the module). On RocksDB read only after :attr:`keys` names the key.
        self.table: MutableMapping[Hashable, list[Any]] = {}
        if not self.per_key:
            self._open_tables()
        #: Events waiting for the watermark. On the heap: ``(ts, seq, event)`` in time order, equal
        #: times in arrival order, those that arrived since the last release in :attr:`arrived`.
        #: Per key, a heap of ``(ts, seq, key)`` of each key's earliest waiting event (an entry
        #: whose event is no longer its key's first is stale and skipped): which key the
        #: watermark releases next.
        self.waiting: list[tuple[Any, ...]] = []
        #: On the heap: ``(ts, seq, event)`` of the events that arrived since the last release, in
        #: arrival order (the release merges them into :attr:`waiting`).
        self.arrived: list[tuple[Any, ...]] = []
        #: ``(due, key)`` per key whose partial matches time out (an entry whose due time differs
        #: from the key's is stale and skipped).
        self.timeouts: list[tuple[int, Hashable]] = []
        self.watermark = MIN_WATERMARK
        self.processing = False
        self._seq = 0
        #: Keys whose state changed since the last snapshot (incremental snapshots only).
        self.changed: set[Hashable] | None = set() if context.incremental else None
        self._ctx = PatternContext(self)
        #: Whether the heap's release steps keys by :meth:`_step_pair`.
        self._pair = (
            not self.per_key
            and self.nfa.strict_pair
            and self.nfa.begin_condition is not None
            and self.errors is None
        )
        self._values: list[Any] = []
        self._times: list[Any] = []
        self._out = Collector(self._collect)
        if self.opened is not None:
            self.opened(RuntimeContext(context, None))

    def _open_tables(self) -> None:
        context = self.context
        self.tables = open_tables(
            self._backend,
            context.name,
            context.index,
            max_parallelism=context.max_parallelism,
            keys=self.keys,
        )
        self.table = self.tables.table(TABLE, None)
        if self._backend.kind == "rocksdb":
            from actorflow.state.rocksdb import RocksDBTables  # rocksdict is there: tables opened
            from actorflow.state.rocksdb_checkpoint import NativeCheckpoints

            assert isinstance(self.tables, RocksDBTables)
            self.native_checkpoints = NativeCheckpoints(self.tables)

    def _collect(self, value: Any) -> None:
        self._values.append(value)
        self._times.append(self._ctx.timestamp)

    # -- records and time --------------------------------------------------------------------

    def process(self, batch: Batch) -> Batch | None:
        self._values, self._times = [], []
        values = batch.values
        timestamps = batch.timestamps
        marks = batch.marks
        keys = self.keys
        if self.tables is None and values:
            self._open_tables()
        if timestamps is None:  # no event time: as they come (and watermarks, such as the last)
            if values:
                self.processing = True
                now = self.context.clock.now()
                table = self.table
                step = self._step
                for value in values:
                    key = keys.current = self.key_of(value)
                    step(key, table.get(key), value, now)
                keys.current = NO_KEY
            for _, mark in marks or ():
                if mark > self.watermark:
                    self.watermark = mark
                    self._release(mark)
            return self._output(marks)
        watermark = self._arrive(values, timestamps, marks)
        if watermark > self.watermark:
            self.watermark = watermark
            self._release(watermark)
        return self._output(marks)

    def _arrive(self, values: list[Any], timestamps: list[Any], marks: list[tuple[int, int]] | None) -> int:
        """A batch's events in: the late ones (at or behind the watermark when they come) to
        :meth:`_late`, the others waiting, numbered in arrival order. Returns the watermark after
        the batch's marks: the waiting events are released once, at the last mark (an event not
        late when it came is after every event an earlier mark passed, so the order is the same
        as releasing at each mark)."""
        timely, watermark = _timely(timestamps, marks, self.watermark)
        if timely is not None:
            for value, ts in compress(zip(values, timestamps, strict=True), map(not_, timely)):
                self._late(value, ts)
        seq = self._seq
        self._seq = seq + len(values)  # a late event's number is not used
        if not self.per_key:
            events = zip(timestamps, count(seq), values)
            self.arrived.extend(events if timely is None else compress(events, timely))
            if self.changed is not None:
                kept = values if timely is None else compress(values, timely)
                self.changed.update(map(self.key_of, kept))
            return watermark
        if timely is not None:
            values = list(compress(values, timely))
            timestamps = list(compress(timestamps, timely))
        self._arrive_per_key(values, timestamps, seq)
        return watermark

    def _late(self, value: Any, ts: int) -> None:
        if self.late is not None:
            self.emit_side(self.late, value, ts)
        else:
            self.late_events += 1

    def _arrive_per_key(self, values: list[Any], timestamps: list[Any], seq: int) -> None:
        """Timely events into their keys' entries, numbered from ``seq``."""
        keys = self.keys
        key_of = self.key_of
        table = self.table
        get = table.get
        waiting = self.waiting
        push = heapq.heappush
        changed = self.changed
        for ts, value in zip(timestamps, values, strict=True):
            key = keys.current = key_of(value)
            item = (ts, seq, value)
            entry = get(key)
            if entry is None:
                table[key] = [None, [item], None]
                push(waiting, (ts, seq, key))
            else:
                events = entry[1]
                if not events:  # () or []
                    entry[1] = [item]
                    push(waiting, (ts, seq, key))
                elif ts >= events[-1][0]:
                    events.append(item)  # the common case: in time order
                else:  # (ts, seq) order; seq is unique, so events are never compared
                    insort(events, item)
                    if events[0] is item:
                        push(waiting, (ts, seq, key))
            seq += 1
            if changed is not None:
                changed.add(key)
        keys.current = NO_KEY

    def _output(self, marks: list[tuple[int, int]] | None) -> Batch | None:
        """This batch's results, with the batch's last watermark after them."""
        values, times = self._values, self._times
        if not values and not marks:
            return None
        return Batch(
            values,
            None if self.processing else times,
            [(len(values), marks[-1][1])] if marks else None,
        )

    def _release(self, watermark: int) -> None:
        """Every waiting event and timeout the watermark passed, in time order (a timeout due at
        an event's time first, as a partial match times out before that event could extend it)."""
        if self.per_key:
            self._release_per_key(watermark)
            return
        timeouts = self.timeouts
        get = self.table.get
        changed = self.changed
        key_of = self.key_of
        begins = self.nfa.begin_condition or _may_begin
        step = self._step_pair if self._pair else self._step
        next_due = timeouts[0][0] if timeouts else MAX_WATERMARK  # at MAX_WATERMARK: a no-op
        for ts, _, value in self._due(watermark):
            if ts >= next_due:
                self._expire(ts)
                next_due = timeouts[0][0] if timeouts else MAX_WATERMARK
            key = key_of(value)
            entry = get(key)
            if entry is None:
                # The common case: nothing to continue and (the first stage's own condition, called
                # directly) nothing begun: no state. If it raises, _step raises or routes it.
                try:
                    if not begins(value):
                        if changed is not None:
                            changed.add(key)
                        continue
                except Exception:
                    self._step(key, entry, value, ts)  # raises or routes it, as it does
                    next_due = timeouts[0][0] if timeouts else MAX_WATERMARK
                    continue
            step(key, entry, value, ts)
            next_due = timeouts[0][0] if timeouts else MAX_WATERMARK
        self._expire(watermark)

    def _due(self, watermark: int) -> list[tuple[Any, ...]]:
        """The waiting ``(ts, seq, event)`` at or behind ``watermark``, in order, taken out of
        :attr:`waiting` (the events that arrived since the previous release merged in first)."""
        waiting = self.waiting
        if self.arrived:
            _merge(waiting, self.arrived)
            self.arrived = []
        cut = bisect_right(waiting, watermark, key=_TIME)
        if not cut:
            return []
        due = waiting[:cut]
        del waiting[:cut]
        return due

    def _release_per_key(self, watermark: int) -> None:
        """:meth:`_release` with each key's waiting events in its entry."""
        waiting = self.waiting
        timeouts = self.timeouts
        pop = heapq.heappop
        push = heapq.heappush
        keys = self.keys
        table = self.table
        get = table.get
        changed = self.changed
        begins = self.nfa.begin_condition
        step = self._step
        while waiting and waiting[0][0] <= watermark:
            if timeouts and timeouts[0][0] <= waiting[0][0]:
                self._expire(waiting[0][0])
            ts, seq, key = pop(waiting)
            keys.current = key
            entry = get(key)
            if entry is None:
                continue  # stale
            events = entry[1]
            if not events or events[0][1] != seq:
                continue  # stale: an earlier event came after this entry was made
            value = events.pop(0)[2]
            if events:
                push(waiting, (events[0][0], events[0][1], key))
            if changed is not None:
                changed.add(key)
            if entry[0] is None and begins is not None:
                # The common case: nothing to continue and (the first stage's own condition, called
                # directly) nothing begun: no state. If it raises, _step raises or routes it.
                try:
                    if not begins(value):
                        if not events:
                            del table[key]
                        continue
                except Exception:
                    pass
            step(key, entry, value, ts)
        keys.current = NO_KEY
        self._expire(watermark)

    def _step(self, key: Hashable, entry: list[Any] | None, value: Any, ts: int) -> None:
        """One event of ``key`` (the current key; ``entry`` its entry, if it has one) through its
        automaton."""
        nfa = self.nfa
        state: NFAState | None = None if entry is None else entry[0]
        try:
            if state is None:
                if not nfa.may_begin(value, None):  # type: ignore[arg-type]
                    self._settle(key, entry, None)
                    return  # nothing to continue, nothing begun: no state
                state = NFAState()
            elif self.errors is not None:  # time on its own: what times out is reported anyway
                self._hand_over(key, *nfa.advance(state, ts), ts)
            matches, timed_out = nfa.process(state, value, ts)
        except Exception as error:
            if self.errors is None:
                raise
            route_failure(self, self.errors, value, error, ts)  # the partial matches stay
            self._settle(key, entry, None if entry is None else entry[0])
            return
        finally:
            if self.changed is not None:
                self.changed.add(key)
        if matches or timed_out:
            self._hand_over(key, matches, timed_out, ts)
        self._settle(key, entry, state)

    def _step_pair(self, key: Hashable, entry: list[Any] | None, value: Any, ts: int) -> None:
        """:meth:`_step` of a strict pair whose first stage has a plain condition, without dead
        letters, on the heap (the entry holds no events), ``entry`` None only when the first
        condition holds for ``value``: what :meth:`_step` does, without its general steps. A
        key's entry has one partial match (it began at the key's previous event); anything else
        (one timed out already, matches held) goes the general way."""
        nfa = self.nfa
        window = nfa.window
        if self.changed is not None:
            self.changed.add(key)
        if entry is None:
            state = nfa.begin_pair(value, ts)
            entry = self.table[key] = [state, (), None]
        else:
            state = entry[0]
            partials = state.partials
            if (
                len(partials) != 1
                or state.held
                or (window is not None and ts - partials[0].start_ts >= window)
            ):
                self._step(key, entry, value, ts)
                return
            matches = nfa.pair_event(state, value, ts)
            if matches:
                self._hand_over(key, matches, [], ts)
            if not state.partials:
                del self.table[key]
                return
        if window is not None:
            due = state.partials[0].start_ts + window
            if entry[2] != due:
                entry[2] = due
                heapq.heappush(self.timeouts, (due, key))

    def _settle(self, key: Hashable, entry: list[Any] | None, state: NFAState | None) -> None:
        """Keep ``key``'s ``state`` while it has partial matches (and note when the first times
        out); forget the key once it has neither partial matches nor waiting events."""
        if state is None or not state.partials:
            if entry is not None:
                if entry[1]:
                    entry[0] = entry[2] = None
                else:
                    del self.table[key]
            return
        if entry is None:
            entry = [state, (), None]  # no events: () is shared
            self.table[key] = entry
        else:
            entry[0] = state
        due = self.nfa.next_timeout(state)
        if due is not None and entry[2] != due:
            entry[2] = due
            heapq.heappush(self.timeouts, (due, key))
        elif due is None:
            entry[2] = None

    def _expire(self, now: int) -> None:
        """Time out what is due at ``now``."""
        timeouts = self.timeouts
        pop = heapq.heappop
        keys = self.keys
        get = self.table.get
        while timeouts and timeouts[0][0] <= now:
            due, key = pop(timeouts)
            keys.current = key
            entry = get(key)
            if entry is None or entry[2] != due:
                continue  # a stale entry: the key moved on since
            entry[2] = None
            if self.changed is not None:
                self.changed.add(key)
            state = entry[0]
            self._hand_over(key, *self.nfa.advance(state, due), due)
            self._settle(key, entry, state)
        keys.current = NO_KEY

    def _hand_over(self, key: Hashable, matches: list[Match], timed_out: list[Match], ts: int) -> None:
        ctx = self._ctx
        ctx.timestamp = ts
        ctx.current_key = key
        if timed_out and self.on_timeout is not None:
            for match in timed_out:
                self.on_timeout(match.events, ctx, self._out)
        for match in matches:
            self.on_match(match.events, ctx, self._out)

    def next_processing_time(self) -> int | None:
        if not self.processing or not self.timeouts:
            return None
        return self.timeouts[0][0]

    def on_processing_time(self, now: int) -> Batch | None:
        self._values, self._times = [], []
        self._expire(now)
        return self._output(None)

    def finish(self) -> Batch | None:
        return None

    def close(self) -> None:
        native = getattr(self, "native_checkpoints", None)  # None: never opened
        if native is not None:
            native.release_all()
        tables = getattr(self, "tables", None)
        if tables is not None:
            tables.close()  # the RocksDB backend deletes its files
            self.tables = None

    # -- checkpoints -------------------------------------------------------------------------

    def _entries(self, keys: set[Hashable] | None) -> dict[Hashable, Any]:
        """``{key: (NFAState or None, [(ts, seq, event), ...])}`` of ``keys`` (None: every key
        with state), a key without state as None. Live objects (read back, on RocksDB): pickle
        them before the next record."""
        if self.per_key:
            return self._entries_per_key(keys)
        events: dict[Hashable, list[tuple[int, int, Any]]] = {}
        key_of = self.key_of
        for ts, seq, value in [*self.waiting, *self.arrived]:
            key = key_of(value)
            if keys is None or key in keys:
                events.setdefault(key, []).append((ts, seq, value))
        table = self.table
        wanted = set(table) | set(events) if keys is None else keys
        entries: dict[Hashable, Any] = {}
        for key in wanted:
            entry = table.get(key)
            state = None if entry is None else entry[0]
            mine = events.get(key)
            entries[key] = None if state is None and not mine else (state, sorted(mine or []))
        return entries

    def _entries_per_key(self, keys: set[Hashable] | None) -> dict[Hashable, Any]:
        if keys is None:
            if self.tables is None:
                return {}
            table = self.tables.export({TABLE: self.table})[TABLE]
            return {key: (entry[0], list(entry[1])) for key, entry in table.items()}
        context = self.keys
        get = self.table.get
        entries: dict[Hashable, Any] = {}
        for key in keys:
            context.current = key
            entry = get(key)
            entries[key] = None if entry is None else (entry[0], list(entry[1]))
        context.current = NO_KEY
        return entries

    def snapshot_state(self) -> Any:
        """``{"key_groups": (start, stop), "keys": {key: (NFAState or None, [(ts, seq, event),
        ...])}}`` (every key with state; read back as plain dicts on RocksDB, so a snapshot
        restores on either backend), or in incremental mode ``{"changes": {key: ... or None}}``
        for the keys changed since the previous snapshot."""
        if self.changed is not None:
            changes = self._entries(self.changed)
            self.changed = set()
            return {"changes": changes}
        groups = self.context.key_groups
        return {"key_groups": (groups.start, groups.stop), "keys": self._entries(None)}

    async def checkpoint_state_async(self, checkpoint_id: int) -> Any:
        """On RocksDB: a native, incremental checkpoint of the table (see
        :mod:`~actorflow.state.rocksdb_checkpoint`), a :class:`SnapshotPart` whose data is the
        pickled ``{"key_groups": (start, stop), "rocksdb": description}`` and whose shared files
        are the store's SST files; the local checkpoint is deleted once the checkpoint completes
        or aborts. Nothing of the heap's indexes goes with it: a restore rebuilds them from the
        table. On the heap, for incremental snapshots, and on RocksDB before the store opened (an
        empty snapshot): :meth:`snapshot_state`.
        """
        native = self.native_checkpoints
        if native is None or self.changed is not None:
            return await self.snapshot_state_async()
        description, shared = await native.take(checkpoint_id)
        groups = self.context.key_groups
        return SnapshotPart(
            dumps({"key_groups": (groups.start, groups.stop), "rocksdb": description}), shared
        )

    def restore_state(self, states: list[Any]) -> None:
        """Load every instance's :meth:`snapshot_state` or native checkpoint part: the keys this
        instance owns (incremental ones whole, applied in order), then both heaps rebuilt. On
        RocksDB, when a native part is all that overlaps this instance's key groups, its owned
        entries go into the store as they are (the part's files become the store when it lies
        inside them) and the heaps are rebuilt from the table; otherwise entries are renumbered
        (instances restored together may have used the same sequence numbers)."""
        changes = incremental_changes(self.name, states)
        entries: dict[Hashable, Any] = {}
        if changes is not None:
            for part in changes:
                entries.update(part)
        else:
            owned = self.context.key_groups
            native = []
            for state in states:
                keep = KeyGroupFilter(range(*state["key_groups"]), owned, self.context.max_parallelism)
                if keep.takes_none:
                    continue
                if "rocksdb" in state:
                    native.append((state["rocksdb"], range(*state["key_groups"])))
                    continue
                for key, entry in state["keys"].items():
                    if keep.takes_all or keep(key):
                        entries[key] = entry
            if native and self.per_key and not entries and len(native) == 1:
                self._restore_native_as_stored(native)
                return
            if native:
                entries.update(self._read_native(native))
        # Renumber: instances restored together may have used the same sequence numbers.
        events = sorted(
            ((ts, seq, key, value) for key, entry in entries.items() if entry is not None
             for ts, seq, value in entry[1]),
            key=lambda item: (item[0], item[1]),
        )  # fmt: skip
        self._seq = len(events)
        restored: dict[Hashable, list[Any]] = {
            key: [entry[0], (), None]
            for key, entry in entries.items()
            if entry is not None and entry[0] is not None and entry[0].partials
        }
        if self.per_key:
            for n, (ts, _, key, value) in enumerate(events):
                entry = restored.get(key)
                if entry is None:
                    entry = restored[key] = [None, (), None]
                if entry[1]:
                    entry[1].append((ts, n, value))
                else:
                    entry[1] = [(ts, n, value)]
            for key, (_, mine, _) in restored.items():
                if mine:
                    self.waiting.append((mine[0][0], mine[0][1], key))
            heapq.heapify(self.waiting)
        else:  # in (ts, seq) order already
            self.waiting = [(ts, n, value) for n, (ts, _, _, value) in enumerate(events)]
        nfa = self.nfa
        for key, entry in restored.items():
            due = None if entry[0] is None else nfa.next_timeout(entry[0])
            if due is not None:
                entry[2] = due
                self.timeouts.append((due, key))
        heapq.heapify(self.timeouts)
        if self.tables is None and restored:
            self._open_tables()
        self.table.update(restored)  # on RocksDB: written through, not cached

    def _loader(self, into: MutableMapping[Hashable, Any]) -> Callable[[str, dict[Hashable, Any]], None]:
        """The :data:`~actorflow.state.rocksdb_checkpoint.LoadEntries` of a native restore: the
        restored entries of the pattern table go ``into`` a mapping."""

        def load(name: str, entries: dict[Hashable, Any]) -> None:
            if name != TABLE:
                raise StateError(f"{self.name}: a checkpoint holds table {name!r}, which patterns lack")
            into.update(entries)

        return load

    def _restore_native_as_stored(self, parts: list[tuple[dict[str, Any], range]]) -> None:
        """One native part on RocksDB: its files become the store, or its owned key groups are
        copied in undecoded; then the heaps of waiting events and timeouts are rebuilt from the
        table (one read of every entry), the sequence numbers kept."""
        if self.tables is None:
            self._open_tables()
        restore_native(self.name, self.context, parts, self._loader(self.table), self.native_checkpoints)
        last = -1
        for key, entry in self.table.items():
            events = entry[1]
            if events:
                self.waiting.append((events[0][0], events[0][1], key))
                last = max(last, max(event[1] for event in events))
            if entry[2] is not None:
                self.timeouts.append((entry[2], key))
        heapq.heapify(self.waiting)
        heapq.heapify(self.timeouts)
        self._seq = last + 1

    def _read_native(self, parts: list[tuple[dict[str, Any], range]]) -> dict[Hashable, Any]:
        """The owned entries of native parts, decoded, in the snapshot's form: ``{key: (NFAState
        or None, [(ts, seq, event), ...])}``."""
        read: dict[Hashable, list[Any]] = {}
        restore_native(self.name, self.context, parts, self._loader(read), None)
        return {key: (entry[0], list(entry[1])) for key, entry in read.items()}


def _may_begin(value: Any) -> bool:
    """Without a plain first condition: any event may begin a match (the automaton decides)."""
    return True


def _timely(
    timestamps: list[int], marks: list[tuple[int, int]] | None, watermark: int
) -> tuple[list[bool] | None, int]:
    """Which of a batch's events are not late (after the watermark in effect when each comes: a
    mark ``(n, w)`` holds from the batch's ``n``-th event on, ``watermark`` before the first),
    None if all; and the watermark after the last mark. Only an event at or behind that last
    watermark can be late (the watermark never goes back), and few are: those alone are looked at
    one by one.

    >>> _timely([6, 5, 6, 8], [(1, 5), (3, 4), (3, 7)], 0)
    ([True, False, True, True], 7)
    """
    last = max(watermark, max(map(_LEVEL, marks))) if marks else watermark
    suspects = list(compress(count(), map(le, timestamps, repeat(last))))
    if not suspects:
        return None, last
    positions = list(map(_TIME, marks or ()))
    # The watermark at each stretch between marks: the highest so far.
    held = list(accumulate(map(_LEVEL, marks or ()), max, initial=watermark))
    timely = [True] * len(timestamps)
    for position in suspects:
        if timestamps[position] <= held[bisect_right(positions, position)]:
            timely[position] = False
    return (None if all(timely) else timely), last


def _merge(waiting: list[tuple[Any, ...]], arrived: list[tuple[Any, ...]]) -> None:
    """``arrived`` (``(ts, seq, event)`` in arrival order, after every waiting event) into
    ``waiting``, which stays in time order, equal times in arrival order: only the waiting events
    from the earliest arrived one's time on are sorted again, with them (the sort is stable;
    both parts are mostly in order already, which Python's sort merges in about linear time).

    >>> waiting = [(1, 0, "a"), (3, 1, "b")]
    >>> _merge(waiting, [(3, 2, "c"), (2, 3, "d")])
    >>> [event for *_, event in waiting]
    ['a', 'd', 'b', 'c']
    """
    start = bisect_left(waiting, min(arrived, key=_TIME)[0], key=_TIME)
    tail = waiting[start:]
    del waiting[start:]
    tail += arrived
    tail.sort(key=_TIME)
    waiting += tail
