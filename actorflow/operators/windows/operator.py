"""The keyed window operator: assigns records to windows, asks the trigger, emits window results.

Per record (with its key as the current key): the assigner gives its windows. In event time, a window
with ``max_timestamp + allowed_lateness <= watermark`` can no longer fire: the record is not added to
it, and a record none of whose windows accepted it is counted in ``late_records`` (dropped). Otherwise
the record joins each window's contents, the trigger decides (FIRE emits the window function's
results, PURGE drops the contents), and a cleanup timer is set at ``max_timestamp +
allowed_lateness`` (event time) or ``max_timestamp`` (processing time). When the cleanup timer fires,
the window's contents, trigger state and trigger timers are gone: state never outlives a window that
can no longer fire (except :class:`GlobalWindows`, which never ends).

Results are stamped with ``window.max_timestamp``. Contents and trigger state live in the keyed
state backend the flow chose (``open_tables``): two tables keyed by the record's key, ``windows``
(``{key: {window: contents}}``) and ``trigger_state`` (``{key: {window: {name: value}}}``). On the
heap these are plain dicts; on RocksDB a key's entry is a live object until the operator moves to
another key, so the operator sets the key context (``keys.current``) before it touches a key's
windows, for a record, a timer or a merge, and keeps no key's dict beyond that key. Timers are in
the operator's timer queues (on the heap) keyed by (key, window).
A late record inside the allowed lateness fires its window again with the updated result (the
default event-time trigger fires at once for a window the watermark has passed), as in Flink.
A record dropped as late goes to the ``late_data`` side output too, when one is set.

Merging assigners (sessions): a key's windows are its merging window set. A record's new window is
merged with the windows the assigner says it merges with *before* the lateness check (so a record
whose own window is late still joins a live session it touches, as in Flink); for each merge the
trigger's ``on_merge`` runs for the merged window, then the old windows' trigger state, trigger
timers and cleanup timers are cleared, and their contents are merged into the new window's (in time
order). A purged window stays in the set with empty contents until its cleanup.

The rules have names: :meth:`WindowOperator.cleanup_time` (``max_timestamp + allowed_lateness``),
:meth:`WindowOperator.is_late` (a window whose cleanup time the watermark reached), a record no
window took is dropped if it is past the lateness itself, and the trigger's result is applied in one
place (FIRE emits, PURGE drops the contents). There are three record paths, one per window shape,
chosen once when the operator is built or opened (so the common shape's loop does no dispatch per
record):

- tumbling event-time windows with the default trigger (the common case, and the benchmark's Q2):
  the window is computed inline, an aggregate function is called directly, each window has one
  timer (plus a cleanup timer with allowed lateness), a record whose window the watermark has
  passed goes to the next path's rules, and the batch is cut only at the watermarks that fire a
  timer (punctuated watermarks come after almost every record, and almost none fires anything);
  on the heap without lateness (and with full snapshots) its open windows are panes, ``{max
  timestamp: {key: contents}}`` with one timer each, put back in the tables' layout whenever
  something reads :attr:`WindowOperator.windows` or the timers (see :meth:`WindowOperator._gather`);
- other event-time windows with the default trigger: its rules applied by the operator, no
  trigger call, in a loop over the runs of records between the batch's watermarks (as the next);
- merging windows (sessions), custom triggers and processing time: the trigger is called for
  each record and timer.

Deviation from Flink: Flink keeps a merged window's state under one of the old windows ("state
window") to avoid copying state in RocksDB; here a key's windows are one entry of the ``windows``
table (one read and one write per record on RocksDB, whatever the number of windows), so contents
are merged directly.
"""

from __future__ import annotations

import copy
import itertools
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Hashable, Iterator, MutableMapping, Sequence
from operator import itemgetter, length_hint
from types import ModuleType
from typing import TYPE_CHECKING, Any

from actorflow.compiled import load
from actorflow.errors import PlanError, StateError
from actorflow.operators.base import Collector, OperatorContext
from actorflow.operators.native import NativeCheckpointing
from actorflow.operators.process import restore_native
from actorflow.operators.side_outputs import OutputTag
from actorflow.operators.snapshots import SnapshotPart, dumps, incremental_changes
from actorflow.operators.windows.assigners import (
    GLOBAL_WINDOW,
    MergingWindowAssigner,
    TimeWindow,
    TumblingEventTimeWindows,
    WindowAssigner,
)
from actorflow.operators.windows.functions import (
    EMPTY,
    AggregateContents,
    WindowContents,
    WindowContext,
)
from actorflow.operators.windows.scope import TriggerScope, by_key, by_scope, clear_trigger_state, timers_of
from actorflow.operators.windows.triggers import (
    EventTimeTrigger,
    Trigger,
    TriggerResult,
)
from actorflow.runtime.messages import MAX_WATERMARK, MIN_WATERMARK, Batch
from actorflow.state.backends import HEAP, StateBackendConfig, StateTables, open_tables
from actorflow.state.keyed import NO_KEY, KeyContext
from actorflow.state.keygroups import KeyGroupFilter, KeyGroups
from actorflow.time.timers import IndexedTimerQueue, TimerQueue

if TYPE_CHECKING:
    from actorflow.state.rocksdb_checkpoint import NativeCheckpoints  # needs rocksdict

__all__ = ["WindowOperator", "check_window_setup"]

#: The version of ``actorflow.operators.windows._pane_run`` this module expects (its ``VERSION``).
_KERNEL_VERSION = 1

#: The common case of the tumbling path's loop over its panes in C (``_pane_run.c``: see
#: :meth:`WindowOperator._pane_run_compiled`), or None: then :meth:`WindowOperator._pane_run`
#: (the reference) runs alone, as with ACTORFLOW_PURE_PYTHON=1.
_compiled: ModuleType | None = load("actorflow.operators.windows._pane_run", _KERNEL_VERSION)

CONTINUE = TriggerResult.CONTINUE

#: The index key of a window timer's ``(key, window)``: the key.
_key_of_scope = itemgetter(0)


class _PaneTimer:
    """The type of :data:`_PANE`; it pickles and deep-copies to the same object."""

    __slots__ = ()

    def __reduce__(self) -> str:
        return "_PANE"

    def __repr__(self) -> str:
        return "_PANE"


#: The timer of a pane of the tumbling path (see :meth:`WindowOperator._gather`): all its windows.
_PANE: Any = _PaneTimer()
#: A mark's ``(position, watermark)`` parts, for bisecting a batch's marks.
_position_of = itemgetter(0)
_watermark_of = itemgetter(1)


def check_window_setup(assigner: WindowAssigner, trigger: Trigger, contents: WindowContents) -> None:
    """Raise :class:`PlanError` if a merging assigner (sessions) meets a trigger or a window function
    that cannot merge two windows."""
    if not isinstance(assigner, MergingWindowAssigner):
        return
    if not trigger.can_merge():
        raise PlanError(
            f"{assigner!r} merges windows, but the trigger {trigger!r} cannot merge them: "
            "implement Trigger.can_merge() and Trigger.on_merge()"
        )
    if not contents.can_merge:
        raise PlanError(
            f"{assigner!r} merges windows, but the window function cannot merge two windows' "
            f"contents: {contents!r} (an AggregateFunction needs a merge() method)"
        )


class _Out(Collector):
    """The results of one batch. ``collect`` is the values list's own append (no Python call per
    result); after each firing, :meth:`stamp` gives the new results the window's ``max_timestamp``."""

    __slots__ = ("timestamps", "values")

    def __init__(self) -> None:
        super().__init__()
        self.bind()

    def bind(self) -> None:
        self.values: list[Any] = []
        self.timestamps: list[Any] = []
        self.collect = self.values.append

    def stamp(self, timestamp: int) -> None:
        missing = len(self.values) - len(self.timestamps)
        if missing:
            self.timestamps.extend([timestamp] * missing)


class WindowOperator(NativeCheckpointing):
    """Keyed windows: ``assigner`` + ``trigger`` + ``contents`` (the window function).

    ``late_records`` counts records dropped because all their windows were past the allowed
    lateness; they also go to the side output ``late_data`` when it is set. ``state_size()`` counts
    the (key, window) entries held, for tests and metrics.

    Contents are in :attr:`windows` and trigger state in :attr:`triggers`, tables of the state
    backend of ``context.state_backend`` (plain dicts on the heap) opened in :meth:`open` and
    closed in :meth:`close`; :attr:`trigger_state` shows the latter by ``(key, window)``.
    """

    has_processing_timers = True

    def __init__(
        self,
        name: str,
        key_of: Callable[[Any], Any],
        assigner: WindowAssigner,
        contents: WindowContents,
        trigger: Trigger | None = None,
        allowed_lateness: int = 0,
        late_data: OutputTag[Any] | None = None,
    ) -> None:
        super().__init__(name)
        #: Where records past every window's lateness go (besides being counted), if anywhere.
        self.late_data = late_data
        self.key_of = key_of
        self.assigner = assigner
        self.contents = contents
        self.trigger = trigger if trigger is not None else assigner.default_trigger()
        self.allowed_lateness = allowed_lateness if assigner.is_event_time else 0
        check_window_setup(assigner, self.trigger, contents)
        self._merging = isinstance(assigner, MergingWindowAssigner)
        #: The default event-time trigger, whose rules the operator applies itself (no trigger call).
        self._default_event_trigger = (
            assigner.is_event_time and type(self.trigger) is EventTimeTrigger and not self._merging
        )
        # The common case (Q2 of the benchmark) gets a loop of its own: epoch-aligned tumbling
        # event-time windows with the default trigger need no assigner call, no trigger call and
        # one timer per window (see _process_tumbling).
        self._tumbling = self._default_event_trigger and type(assigner) is TumblingEventTimeWindows
        if self._tumbling:
            self._size: int = assigner.size  # type: ignore[attr-defined]
            self._offset: int = assigner.offset  # type: ignore[attr-defined]
        self._reset()
        self._choose_paths()  # again in open(): an operator may be used without it, in tests

    def _reset(self) -> None:
        #: The key whose windows the operator works on; the RocksDB cache keeps its entries live.
        self.keys = KeyContext()
        self._tables: StateTables = HEAP
        self._size_at_close: int | None = None
        #: A RocksDB backend's settings until the first record or restore opens its store (see
        #: :meth:`_open_store`); None once open, and on the heap.
        self._unopened: StateBackendConfig | None = None
        #: ``{key: {window: contents}}`` and ``{key: {window: {name: value}}}``: tables of the
        #: chosen state backend (dicts on the heap).
        self._windows: MutableMapping[Hashable, dict[TimeWindow, Any]] = HEAP.table("windows", None)
        self.triggers: MutableMapping[Hashable, dict[TimeWindow, dict[str, Any]]] = HEAP.table(
            "trigger_state", None
        )
        #: The native checkpoints of a RocksDB store (None on the heap, and until the store opens);
        #: see :meth:`checkpoint_state_async`.
        self.native_checkpoints: NativeCheckpoints | None = None
        self.watermark = MIN_WATERMARK
        self.late_records = 0
        #: The tumbling path's open windows by max timestamp (see :meth:`_tumbling_run`).
        self._open_windows: dict[int, TimeWindow] = {}
        self._out = _Out()
        self._scope = TriggerScope(self)
        #: Incremental snapshots only (``context.incremental``): the keys changed since the last
        #: snapshot. None otherwise, so the per-batch check is all it costs.
        self.changed_keys: set[Hashable] | None = None
        if self.context.incremental:
            # Timer changes (set, deleted, fired) mark their key in the queues themselves.
            self.changed_keys = changed = set[Hashable]()
            self._event_timers: TimerQueue = IndexedTimerQueue(_key_of_scope, changed)
            self.processing_timers: TimerQueue = IndexedTimerQueue(_key_of_scope, changed)
        else:
            self._event_timers = TimerQueue()
            self.processing_timers = TimerQueue()
        #: Where a window's cleanup timer goes: the queue of the assigner's time domain.
        self._cleanup_timers = self._event_timers if self.assigner.is_event_time else self.processing_timers
        #: The tumbling path's open windows on the heap without lateness, when it holds them in
        #: panes (``{max timestamp: {key: contents}}``, see :meth:`_gather`); None otherwise.
        self._panes: dict[int, dict[Hashable, Any]] | None = None
        #: Whether the panes may hold the open windows: tumbling windows without lateness, on the
        #: heap, with full snapshots (open() rules out another backend).
        self._pane_capable = self._tumbling and not self.allowed_lateness and self.changed_keys is None

    def open(self, context: OperatorContext) -> None:
        super().open(context)
        self._release()  # opened again: the previous run's tables go
        self._size_at_close = None
        self._reset()
        self._choose_paths()
        self._window_context = WindowContext(context.clock, GLOBAL_WINDOW)
        backend = context.state_backend
        if backend is not None and backend.kind != "heap":
            self._unopened = backend
            self._pane_capable = False  # a store's entries are written back per key: no panes

    def _open_store(self) -> None:
        """Open the tables of the state backend chosen for the flow. On RocksDB this happens at
        the first record or restore, not in :meth:`open`: opening a store and its column families
        costs tens of milliseconds, which an instance that never holds a key does without."""
        config = self._unopened
        assert config is not None and not (self._windows or self.triggers)
        self._unopened = None
        context = self.context
        self._tables = tables = open_tables(
            config, context.name, context.index, max_parallelism=context.max_parallelism, keys=self.keys
        )
        self._windows = tables.table("windows", None)
        self.triggers = tables.table("trigger_state", None)
        if config.kind == "rocksdb":
            from actorflow.state.rocksdb import RocksDBTables  # rocksdict is there: tables opened
            from actorflow.state.rocksdb_checkpoint import NativeCheckpoints

            assert isinstance(tables, RocksDBTables)
            self.native_checkpoints = NativeCheckpoints(tables)
        # Timers stay in the heap queues on RocksDB too. A RocksDBTimerQueue of (key, window)
        # scopes works (a TimeWindow encodes stably: pickled, a named tuple of two ints), but it
        # made Q2 on RocksDB 11 times slower (a seek from (next_time, 0) steps over the deletes of
        # every timer of that time already fired) and, with that seek fixed, still 3 times (per
        # timer: the scope encoded with a pickled window and a hashed key group, an index read,
        # two write batches); see docs/architecture.md, "State".

    def close(self) -> None:
        """Close the state tables (the RocksDB backend deletes its files, local checkpoints
        included); :meth:`state_size` answers what it was then."""
        self._size_at_close = self.state_size()
        self._release()

    def _release(self) -> None:
        if self.native_checkpoints is not None:
            self.native_checkpoints.release_all()
        self._tables.close()

    @property
    def windows(self) -> MutableMapping[Hashable, dict[TimeWindow, Any]]:
        """The contents of the open windows, ``{key: {window: contents}}``: a table of the state
        backend (a dict on the heap). Reading it puts the tumbling path's panes back in it (see
        :meth:`_gather`)."""
        if self._panes is not None:
            self._spill()
        return self._windows

    @property
    def event_timers(self) -> TimerQueue:
        """The event-time timers, by ``(key, window)``. Reading it puts the tumbling path's panes
        back in the general layout, as :attr:`windows` does."""
        if self._panes is not None:
            self._spill()
        return self._event_timers

    def _gather(self) -> None:
        """Move the open windows into panes, ``{max timestamp: {key: contents}}``, each with one
        timer (:data:`_PANE`) instead of one per window: the tumbling path's layout on the heap
        without lateness, where a window's only timer fires it at its max timestamp and drops it.

        A record then costs one lookup (its key in its window's pane: no window hashed, no key
        context), and an open window one object (its contents: no per-key dict, no timer scope).
        Anything else that reads the state (a snapshot, a restore, :meth:`state_size`, queryable
        state) goes through :attr:`windows` or :attr:`event_timers`, which put the panes back
        (:meth:`_spill`); the next batch gathers them again. A layout the panes cannot hold (a
        timer not at its window's max timestamp, trigger state: a restored snapshot of another
        setup) stays as it is, and the operator keeps the general tumbling path.
        """
        timers = self._event_timers
        popped = []  # every (time, scopes), in time then registration order: the panes' order
        while (due := timers.pop_time(MAX_WATERMARK)) is not None:
            popped.append(due)
        panes = self._panes_of(popped)
        if panes is None:
            timers.add_all((time, scope) for time, scopes in popped for scope in scopes)
            self._pane_capable = False
            return
        timers.add_all((time, _PANE) for time in panes)
        self._windows.clear()
        self._open_windows.clear()
        self._panes = panes

    def _panes_of(
        self, timers: list[tuple[int, dict[Hashable, None]]]
    ) -> dict[int, dict[Hashable, Any]] | None:
        """The panes of :meth:`_gather` for the windows and their ``timers``, or None if a window
        has another timer than one at its max timestamp, or trigger state."""
        if self.triggers or len(self.processing_timers):
            return None
        windows = self._windows
        panes: dict[int, dict[Hashable, Any]] = {}
        held = 0
        key: Hashable
        window: TimeWindow
        for time, scopes in timers:
            pane = panes[time] = {}
            for key, window in scopes:  # type: ignore[misc]
                per_key = windows.get(key)
                if per_key is None or window.end - 1 != time or window not in per_key:
                    return None
                pane[key] = per_key[window]
            held += len(pane)
        if held != sum(map(len, windows.values())):
            return None
        return panes

    def _spill(self) -> None:
        """Put the panes back in the general layout: each pane's window in its keys' dicts of
        :attr:`windows`, with a timer per key in the pane's place (in the pane's order)."""
        panes = self._panes
        assert panes is not None
        self._panes = None
        timers = self._event_timers
        windows = self._windows
        size = self._size
        for time, pane in panes.items():
            window = self._open_windows[time] = TimeWindow(time - size + 1, time + 1)
            for key, contents in pane.items():
                per_key = windows.get(key)
                if per_key is None:
                    windows[key] = {window: contents}
                else:
                    per_key[window] = contents
            timers.remove(time, _PANE)
            timers.add_keys(time, [(key, window) for key in pane])

    @property
    def trigger_state(self) -> dict[tuple[Hashable, TimeWindow], dict[str, Any]]:
        """Trigger state by ``(key, window)`` (a new dict; the snapshots' format).

        >>> from actorflow.operators.windows import TumblingEventTimeWindows
        >>> from actorflow.operators.windows.functions import ReduceContents
        >>> op = WindowOperator("w", len, TumblingEventTimeWindows.of(10), ReduceContents(max))
        >>> op.triggers["k"] = {TimeWindow(0, 10): {"count": 1}}
        >>> op.trigger_state
        {('k', TimeWindow(start=0, end=10)): {'count': 1}}
        """
        return by_scope(self.triggers)

    def state_size(self) -> int:
        """(key, window) entries with contents, plus those with trigger state (after
        :meth:`close`: as they were when it closed; a closed RocksDB store cannot be read)."""
        if self._size_at_close is not None:
            return self._size_at_close
        if self._panes is not None:  # no trigger state: the default trigger keeps none
            return sum(map(len, self._panes.values()))
        return sum(len(windows) for windows in self.windows.values()) + sum(
            len(windows) for windows in self.triggers.values()
        )

    def _export(self) -> tuple[dict[Hashable, Any], dict[Hashable, Any]]:
        """The two tables as dicts: the live ones on the heap, read back after a flush on RocksDB."""
        exported = self._tables.export({"windows": self.windows, "trigger_state": self.triggers})
        return exported["windows"], exported["trigger_state"]

    def snapshot(self, *, copy_values: bool = True) -> dict[int, dict[str, Any]]:
        """A deep copy of the window state, cut by key group of the key: ``{group: {"windows":
        {key: {window: contents}}, "trigger_state": {(key, window): {...}}, "event_timers":
        [(time, (key, window))], "processing_timers": [...]}}``.

        The watermark and ``late_records`` are not part of it (the watermark is re-established by
        the inputs; the late count is a metric). Later updates never show in the snapshot, unless
        ``copy_values=False``: for a checkpoint, which pickles it before the state changes again.
        """
        group_of = KeyGroups(self.context.max_parallelism)  # each key hashed once
        groups: dict[int, dict[str, Any]] = {}

        def part(key: Hashable) -> dict[str, Any]:
            group = group_of[key]
            found = groups.get(group)
            if found is None:
                found = groups[group] = {
                    "windows": {},
                    "trigger_state": {},
                    "event_timers": [],
                    "processing_timers": [],
                }
            return found

        windows, triggers = self._export()
        for key, per_key in windows.items():
            part(key)["windows"][key] = per_key
        for key, per_key in triggers.items():
            trigger_part = part(key)["trigger_state"]
            for window, state in per_key.items():
                trigger_part[(key, window)] = state
        for name, queue in (
            ("event_timers", self.event_timers),
            ("processing_timers", self.processing_timers),
        ):
            for time, timer_scopes in queue.snapshot():
                for timer_scope in timer_scopes:
                    key = timer_scope[0]  # type: ignore[index]
                    part(key)[name].append((time, timer_scope))
        return copy.deepcopy(groups) if copy_values else groups

    def snapshot_state(self) -> dict[str, Any] | None:
        """The checkpoint's state, as it is, with the key groups this instance owns (None when the
        operator holds none): ``{"key_groups": (start, stop), "windows": {key: {window:
        contents}}, "trigger_state": {(key, window): {...}}, "event_timers": ([times], [(key,
        window)]), "processing_timers": (...)}``, the same on every state backend (RocksDB's
        tables are flushed and read back as dicts), so a savepoint moves between them.

        Not copied and not cut by key group: the chain pickles it at once, and a restore at the
        same parallelism takes each instance's part whole (only a rescale hashes keys).

        With ``context.incremental``: ``{"changes": {key: entry or None}}`` for the keys changed
        since the previous snapshot only (a record, a timer), costing those keys, not the state
        (never None). An entry is ``{"windows": {window: contents}, "trigger_state": {window:
        {...}}, "event": [(time, window, sequence)], "processing": [...]}`` (the sequence orders
        timers of one time); None means the key holds nothing any more.
        """
        if self.changed_keys is not None:
            return {"changes": self._changes(self.changed_keys)}
        windows, triggers = self._export()
        timers = (self.event_timers.next_time, self.processing_timers.next_time)
        if not (windows or triggers) and timers == (None, None):
            return None
        owned = self.context.key_groups
        return {
            "key_groups": (owned.start, owned.stop),
            "windows": windows,
            "trigger_state": by_scope(triggers),
            "event_timers": self.event_timers.export(),
            "processing_timers": self.processing_timers.export(),
        }

    async def checkpoint_state_async(self, checkpoint_id: int) -> Any:
        """On RocksDB: a native, incremental checkpoint of the tables (see
        :mod:`~actorflow.state.rocksdb_checkpoint`), a :class:`SnapshotPart` whose data is the
        pickled ``{"key_groups": (start, stop), "rocksdb": description, "event_timers": ([times],
        [(key, window)]), "processing_timers": (...)}`` and whose shared files are the store's SST
        files; the local checkpoint is deleted once the checkpoint completes or aborts. On the
        heap, for incremental snapshots, and on RocksDB before the store opened (no record, no
        restore: nothing to checkpoint, None): :meth:`snapshot_state`.
        """
        native = self.native_checkpoints
        if native is None or self.changed_keys is not None:
            return await self.snapshot_state_async()
        description, shared = await native.take(checkpoint_id)
        owned = self.context.key_groups
        state = {
            "key_groups": (owned.start, owned.stop),
            "rocksdb": description,
            "event_timers": self.event_timers.export(),
            "processing_timers": self.processing_timers.export(),
        }
        return SnapshotPart(dumps(state), shared)

    def _changes(self, changed: set[Hashable]) -> dict[Hashable, dict[str, Any] | None]:
        windows = self.windows
        triggers = self.triggers
        event: IndexedTimerQueue = self.event_timers  # type: ignore[assignment]
        processing: IndexedTimerQueue = self.processing_timers  # type: ignore[assignment]
        changes: dict[Hashable, dict[str, Any] | None] = {}
        # The entries are live objects (on RocksDB, reading the next key may evict this one: it is
        # written back, not changed): the chain pickles them before the state changes again.
        for key in changed:
            per_key = windows.get(key)
            trigger_state = triggers.get(key)
            event_timers = timers_of(event, key)
            processing_timers = timers_of(processing, key)
            if per_key or trigger_state or event_timers or processing_timers:
                changes[key] = {
                    "windows": per_key if per_key is not None else {},
                    "trigger_state": trigger_state if trigger_state is not None else {},
                    "event": event_timers,
                    "processing": processing_timers,
                }
            else:
                changes[key] = None
        changed.clear()
        return changes

    def restore_state(self, states: list[Any]) -> None:
        """Load every instance's :meth:`snapshot_state`: full states (this instance keeps the keys
        it owns), or incremental ones (``{"changes": ...}``, applied in order: a later entry of a
        key replaces an earlier one, None removes it; taken whole, not filtered by key group: the
        caller hands this instance its own keys). A list mixes neither kind with the other
        (:class:`StateError`). Either restores on either state backend.

        In incremental mode, keys restored from full states count as changed (the next snapshot
        holds them all); keys restored from changes do not.
        """
        if self._unopened is not None:
            self._open_store()
        changes = incremental_changes(self.name, states)
        if changes is not None:
            self._restore_changes(changes)
            return
        self._restore_full(states)
        if self.changed_keys is not None:  # timers marked their keys as the queues took them
            self.changed_keys.update(self.windows)
            self.changed_keys.update(self.triggers)

    def _restore_changes(self, changes: list[dict[Hashable, dict[str, Any] | None]]) -> None:
        latest: dict[Hashable, dict[str, Any] | None] = {}
        for part in changes:
            latest.update(part)
        windows: dict[Hashable, dict[TimeWindow, Any]] = {}
        triggers: dict[Hashable, dict[TimeWindow, dict[str, Any]]] = {}
        event: list[tuple[int, int, Hashable]] = []
        processing: list[tuple[int, int, Hashable]] = []
        for key, entry in latest.items():
            if entry is None:
                continue
            if entry["windows"]:
                windows[key] = entry["windows"]
            if entry["trigger_state"]:
                triggers[key] = entry["trigger_state"]
            event.extend((time, sequence, (key, window)) for time, window, sequence in entry["event"])
            processing.extend(
                (time, sequence, (key, window)) for time, window, sequence in entry["processing"]
            )
        self.windows.update(windows)  # RocksDB: one write batch
        self.triggers.update(triggers)
        self.event_timers.add_sequenced(event)
        self.processing_timers.add_sequenced(processing)
        if self.changed_keys is not None:
            self.changed_keys.clear()

    def _restore_full(self, states: list[Any]) -> None:
        owned = self.context.key_groups
        native = [state for state in states if "rocksdb" in state]
        if native:  # first: one of them may become the store itself
            restore_native(
                self.name,
                self.context,
                [(state["rocksdb"], range(*state["key_groups"])) for state in native],
                self._load,
                self.native_checkpoints,
            )
        for state in states:  # just unpickled: nobody else holds these objects
            if "key_groups" not in state:  # cut by key group (the format before session 3)
                self.restore(state, owned, copy_values=False)
                continue
            keep = KeyGroupFilter(range(*state["key_groups"]), owned, self.context.max_parallelism)
            if keep.takes_none:
                continue
            everything = keep.takes_all
            if "rocksdb" in state:  # its tables are restored: its timers are not
                self._restore_timers(state, keep)
                continue
            windows = state["windows"]
            trigger_state = state["trigger_state"]
            if everything:
                self.windows.update(windows)
                self.triggers.update(by_key(trigger_state.items()))
            else:
                self.windows.update({key: per_key for key, per_key in windows.items() if keep(key)})
                self.triggers.update(by_key(item for item in trigger_state.items() if keep(item[0][0])))
            self._restore_timers(state, keep)

    def _restore_timers(self, state: dict[str, Any], keep: KeyGroupFilter) -> None:
        """The timers of a full snapshot ``state`` whose key ``keep`` accepts."""
        for queue, saved in (
            (self.event_timers, state["event_timers"]),
            (self.processing_timers, state["processing_timers"]),
        ):
            timers = zip(*saved, strict=True)
            queue.add_all(timers if keep.takes_all else (t for t in timers if keep(t[1][0])))

    def _load(self, name: str, entries: dict[Hashable, Any]) -> None:
        """Restored entries of table ``name`` (the :data:`~actorflow.state.rocksdb_checkpoint.
        LoadEntries` of a native restore)."""
        if name == "windows":
            self.windows.update(entries)
        elif name == "trigger_state":
            self.triggers.update(entries)
        else:
            raise StateError(f"{self.name}: a checkpoint holds table {name!r}, which windows do not have")

    def restore(self, groups: dict[int, dict[str, Any]], owned: range, *, copy_values: bool = True) -> None:
        """Load the key groups in ``owned`` from a :meth:`snapshot` (others belong to other instances)."""
        if self._unopened is not None:
            self._open_store()
        for group, parts in groups.items():
            if group not in owned:
                continue
            if copy_values:
                parts = copy.deepcopy(parts)
            self.windows.update(parts["windows"])
            self.triggers.update(by_key(parts["trigger_state"].items()))
            self.event_timers.add_all(parts["event_timers"])
            self.processing_timers.add_all(parts["processing_timers"])

    # --- The rules -------------------------------------------------------------------------------
    # Each shape's record path below applies them; the tumbling fast path inlines them (and says so).

    def cleanup_time(self, window: TimeWindow) -> int:
        """When ``window``'s contents, trigger state and timers go: its max timestamp plus the allowed
        lateness (which is 0 in processing time).

        >>> from actorflow.operators.windows import TumblingEventTimeWindows
        >>> from actorflow.operators.windows.functions import ReduceContents
        >>> windows = TumblingEventTimeWindows.of(10)
        >>> op = WindowOperator("w", len, windows, ReduceContents(max), allowed_lateness=5)
        >>> op.cleanup_time(TimeWindow(0, 10))
        14
        """
        return window.end - 1 + self.allowed_lateness

    def is_late(self, window: TimeWindow) -> bool:
        """Whether ``window`` can no longer take records: in event time, the watermark has reached its
        :meth:`cleanup_time` (a processing-time window is never late).

        >>> from actorflow.operators.windows import TumblingEventTimeWindows
        >>> from actorflow.operators.windows.functions import ReduceContents
        >>> op = WindowOperator("w", len, TumblingEventTimeWindows.of(10), ReduceContents(max))
        >>> op.watermark = 9
        >>> op.is_late(TimeWindow(0, 10)), op.is_late(TimeWindow(10, 20))
        (True, False)
        """
        return window.end - 1 <= self._late_bound()

    def _late_bound(self) -> int:
        """The max timestamp at or below which a window :meth:`is_late`: the watermark less the
        allowed lateness in event time; below every time in processing time."""
        return self.watermark - self.allowed_lateness if self.assigner.is_event_time else MIN_WATERMARK

    def _drop_if_late(self, value: Any, timestamp: int | None) -> None:
        """A record no window took: dropped as late (counted, and sent to ``late_data``) if it is
        past the allowed lateness itself (in event time)."""
        if self.assigner.is_event_time and timestamp + self.allowed_lateness <= self.watermark:  # type: ignore[operator]
            self._drop_late(value, timestamp)

    def _drop_late(self, value: Any, timestamp: int | None) -> None:
        self.late_records += 1
        if self.late_data is not None:
            self.emit_side(self.late_data, value, timestamp)

    def _apply(
        self, result: TriggerResult, key: Hashable, per_key: dict[TimeWindow, Any], window: TimeWindow
    ) -> None:
        """Do what the trigger decided for ``key``'s ``window``: FIRE emits its contents, PURGE drops
        them (a merging assigner's window stays in the key's set, empty, until its cleanup)."""
        if result.fire:
            self._emit(key, window, per_key[window])
        if result.purge:
            if self._merging:
                per_key[window] = EMPTY
            else:
                del per_key[window]

    # --- One record path per window shape, chosen once (see _choose_paths) --------------------------

    def _choose_paths(self) -> None:
        """Pick the record path and the event-timer path of this operator's window shape: tumbling
        event-time windows with the default trigger (the fast path), other windows with the
        default event-time trigger (its rules applied here), and the rest (merging windows, custom
        triggers, processing time), which call the trigger."""
        self._fire_event_timers: Callable[[int], None] = self._fire_event_time
        if self._tumbling:
            self._process_batch: Callable[[Batch], Batch] = self._process_tumbling
            self._fire_event_timers = self._fire_tumbling
        elif self._default_event_trigger:
            self._process_batch = self._process_default
        else:
            self._process_batch = self._process_triggered

    def process(self, batch: Batch) -> Batch:
        if self._unopened is not None and batch.values:
            self._open_store()
        return self._process_batch(batch)

    def _begin(self, batch: Batch) -> list[tuple[int, int]]:
        """Start a batch: a fresh output, and a check that event time has its timestamps."""
        if batch.values and batch.timestamps is None and self.assigner.is_event_time:
            raise StateError(
                f"{self.name}: event-time windows need timestamps: "
                "use assign_timestamps_and_watermarks() or a source with watermarks"
            )
        self._out.bind()
        return []

    def _runs(self, batch: Batch, out_marks: list[tuple[int, int]]) -> Iterator[range]:
        """The positions of the batch's records, in runs between its watermarks: when a run comes,
        the operator has advanced to the watermarks before it (those after the last record follow
        the last run)."""
        start = 0
        for position, watermark in batch.marks or ():
            if position > start:
                yield range(start, position)
                start = position
            self._advance(watermark, out_marks)
        if start < len(batch.values):
            yield range(start, len(batch.values))

    def _end(
        self, batch: Batch, marks: Sequence[tuple[int, int]], out_marks: list[tuple[int, int]]
    ) -> Batch:
        """End a batch: the ``marks`` after its last record, the changed keys, the output."""
        for _, watermark in marks:
            self._advance(watermark, out_marks)
        self.keys.current = NO_KEY
        if self.changed_keys is not None:
            self.changed_keys.update(map(self.key_of, batch.values))
        out = self._out
        return Batch(out.values, out.timestamps, out_marks or None)

    def _process_default(self, batch: Batch) -> Batch:
        """:meth:`process` of non-merging event-time windows with the default trigger, whose rules
        are applied here: a window fires once at its max timestamp (one timer, set with its first
        record; its cleanup timer is the same timer without lateness), and again at once with each
        record inside the allowed lateness (:meth:`_fire_late`)."""
        out_marks = self._begin(batch)
        values = batch.values
        timestamps: list[int] = batch.timestamps  # type: ignore[assignment]
        key_of = self.key_of
        assign = self.assigner.assign
        add = self.contents.add
        add_timer = self.event_timers.add
        lateness = self.allowed_lateness
        state = self.windows
        keys = self.keys
        for run in self._runs(batch, out_marks):
            watermark = self.watermark
            late_bound = watermark - lateness  # _late_bound() in event time
            for position in run:
                value = values[position]
                keys.current = key = key_of(value)  # before the key's windows are read
                per_key = state.get(key)
                accepted = False
                for window in assign(value, timestamps[position]):
                    last = window.end - 1
                    if last <= late_bound:
                        continue  # is_late(window)
                    accepted = True
                    if per_key is None:
                        per_key = state[key] = {}
                    previous = per_key.get(window, EMPTY)
                    contents = per_key[window] = add(previous, value)
                    if last <= watermark:
                        self._fire_late(key, window, contents, previous is EMPTY)
                    elif previous is EMPTY:  # the window's first record: its timers
                        add_timer(last, (key, window))
                        if lateness and last + lateness < MAX_WATERMARK:
                            add_timer(last + lateness, (key, window))  # its cleanup
                if not accepted:
                    self._drop_if_late(value, timestamps[position])
        return self._end(batch, (), out_marks)

    def _fire_late(self, key: Hashable, window: TimeWindow, contents: Any, new: bool) -> None:
        """A record inside the allowed lateness joined ``window``, whose max timestamp the watermark
        has passed: under the default trigger it fires again at once; a ``new`` window's only timer
        is its cleanup."""
        if new:
            cleanup = window.end - 1 + self.allowed_lateness  # cleanup_time(window)
            if cleanup < MAX_WATERMARK:
                self.event_timers.add(cleanup, (key, window))
        self._emit(key, window, contents)

    def _process_triggered(self, batch: Batch) -> Batch:
        """:meth:`process` of the shapes whose trigger is called: merging windows (sessions), custom
        triggers, processing time. A merging assigner's new window first merges with the key's
        windows it touches; the merged window then takes the record unless late (so a record whose
        own window is late still joins a live session)."""
        out_marks = self._begin(batch)
        values = batch.values
        timestamps = batch.timestamps
        event_time = self.assigner.is_event_time
        now = 0 if event_time else self.context.clock.now()  # processing time: once per batch
        key_of = self.key_of
        assign = self.assigner.assign
        merging = self._merging
        state = self.windows
        keys = self.keys
        for run in self._runs(batch, out_marks):
            late_bound = self._late_bound()
            for position in run:
                value = values[position]
                timestamp = None if timestamps is None else timestamps[position]
                keys.current = key = key_of(value)  # before the key's windows are read
                per_key = state.get(key)
                if per_key is None:
                    per_key = state[key] = {}
                accepted = False
                for window in assign(value, timestamp if event_time else now):  # type: ignore[arg-type]
                    if merging:
                        window = self._merge(key, per_key, window)
                    if window.end - 1 > late_bound:  # not is_late(window)
                        accepted = True
                        self._add_to_window(key, per_key, window, value, timestamp)
                if not per_key:  # no window (left), or the record was late
                    del state[key]
                if not accepted:
                    self._drop_if_late(value, timestamp)
        return self._end(batch, (), out_marks)

    def _add_to_window(
        self,
        key: Hashable,
        per_key: dict[TimeWindow, Any],
        window: TimeWindow,
        value: Any,
        timestamp: int | None,
    ) -> None:
        """``value`` joins ``window``'s contents; the trigger decides; the cleanup timer is set."""
        per_key[window] = self.contents.add(per_key.get(window, EMPTY), value)
        scope = self._scope
        scope.window = window
        result = self.trigger.on_element(value, timestamp, window, scope)
        if result is not CONTINUE:
            self._apply(result, key, per_key, window)
        cleanup = window.end - 1 + self.allowed_lateness  # cleanup_time(window)
        if cleanup < MAX_WATERMARK:
            self._cleanup_timers.add(cleanup, (key, window))

    # --- The tumbling fast path (Q2) ----------------------------------------------------------------

    def _process_tumbling(self, batch: Batch) -> Batch:
        """:meth:`process` for epoch-aligned tumbling event-time windows with the default trigger.

        The rules of :meth:`_process_default`, unrolled for on-time records (see
        :meth:`_tumbling_run`). Watermarks cost nothing per record: the batch is cut at the marks
        that fire a timer (the first whose watermark reaches the earliest timer, found by bisection:
        a batch's watermarks only rise), and the records between two such marks run in one loop.
        The marks in between fire nothing and produce no output, so only the last of them is
        written to the output, before the next result or at the end of the batch.
        """
        out_marks = self._begin(batch)
        if self._panes is None and self._pane_capable:
            self._gather()
        if self._panes is None:
            run = self._tumbling_run
        else:
            run = self._pane_run if _compiled is None else self._pane_run_compiled
        marks = batch.marks or []
        count = len(batch.values)
        timers = self._event_timers
        start = 0  # the next record
        passed = 0  # the marks before this one are the operator's watermark (written out or not)
        while True:
            next_time = timers.next_time
            due = len(marks)  # the first mark that fires a timer
            if next_time is not None:
                due = bisect_left(marks, next_time, passed, key=_watermark_of)
            end = marks[due][0] if due < len(marks) else count
            start, passed = run(batch, start, end, passed, due, out_marks)
            if start < end or timers.next_time != next_time:
                continue  # the run set a timer before every other: the due mark may come sooner
            self._pass(marks, passed, due, out_marks)
            if due == len(marks):
                return self._end(batch, (), out_marks)
            self._advance(marks[due][1], out_marks)
            passed = due + 1

    def _tumbling_run(
        self, batch: Batch, start: int, end: int, passed: int, due: int, out_marks: list[tuple[int, int]]
    ) -> tuple[int, int]:
        """The records ``start..end`` of :meth:`_process_tumbling`, between whose marks
        ``passed..due`` no timer fires; return where it stopped and the marks passed by then.

        The window is computed inline (the last one is reused, as out-of-order records mostly fall
        in the window of the record before them; an open window is one object, kept by its max
        timestamp until it fires), the keys are taken in C, an aggregate function is called
        directly, and a window's timer (its trigger timer, and its cleanup timer with lateness) is
        set with its first record. A record is on time if its window ends after the run's highest watermark;
        otherwise :meth:`_tumbling_late` looks its watermark up. The run stops after a record that
        opens a window firing before every other timer: a mark before ``end`` may fire it.
        """
        if start == end:
            return end, passed  # no record (an empty batch may have no timestamps)
        values = batch.values
        timestamps: list[int] = batch.timestamps  # type: ignore[assignment]
        size = self._size
        offset = self._offset
        lateness = self.allowed_lateness
        key_of = self.key_of
        state = self._windows
        keys = self.keys
        next_time = self._event_timers.next_time
        if next_time is None:
            next_time = MAX_WATERMARK
        create, add = self._tumbling_adders()
        # The timers of the run's new windows by time, set at its end (or before a late record):
        # those of the window in hand go to ``fires`` (and ``cleans``, its cleanup timers).
        new_timers: dict[int, list[tuple[Hashable, TimeWindow]]] = {}
        fires = cleans = []
        empty = EMPTY
        # The watermark before any record of the run is at most this.
        highest = batch.marks[due - 1][1] if due > passed else self.watermark  # type: ignore[index]
        window = GLOBAL_WINDOW
        time = MIN_WATERMARK  # the max timestamp of ``window``
        # The window of the last record, by its first and last timestamp (none yet). Only a window
        # after ``highest`` is kept: its records need no lateness check (nor arithmetic on big ints).
        first, last = 1, 0
        # The open windows by max timestamp: one object per window, so the dicts that hold it find
        # it by identity (a tuple's hash is not cached, its comparison costs two big ints).
        open_windows = self._open_windows
        run = values[start:end]
        # The keys are taken in C, a record at a time (the loop may stop early). A record's position,
        # needed off the common path only, is the run's end less the records not taken yet.
        records = iter(run)
        for value, timestamp, key in zip(records, timestamps[start:end], map(key_of, run), strict=True):
            if timestamp > last or timestamp < first:  # another window than the last record's
                time = timestamp - (timestamp - offset) % size + size - 1  # its max timestamp
                first = time - size + 1
                last = time
                window = open_windows.get(time) or TimeWindow(first, time + 1)
                if time <= highest:  # perhaps its window fired, or is gone: the general rules
                    first, last = 1, 0  # the run's watermarks may pass it: not kept
                    self._set_timers(new_timers)
                    position = end - 1 - length_hint(records)
                    late, passed = self._tumbling_late(batch, position, window, passed, due, out_marks)
                    if late:
                        if self._event_timers.next_time != next_time:  # a late window's cleanup
                            return position + 1, passed  # may come first: the due mark, sooner
                        continue
                open_windows[time] = window  # until it fires
                fires = new_timers.setdefault(time, [])
                cleans = new_timers.setdefault(time + lateness, []) if lateness else fires
            keys.current = key  # before the key's windows are read
            per_key = state.get(key)
            previous = empty if per_key is None else per_key.get(window, empty)
            if previous is empty:  # the window's first record: its contents start, its timers are set
                previous = create()
                if per_key is None:  # the key's only window
                    per_key = state[key] = {window: previous}
                else:
                    per_key[window] = previous
                fires.append((key, window))
                if lateness:
                    cleans.append((key, window))
                if time < next_time:  # the earliest timer now
                    per_key[window] = add(value, previous)
                    self._set_timers(new_timers)
                    return end - length_hint(records), passed  # after this record
            contents = add(value, previous)
            if contents is not previous:  # an accumulator updated in place is there already
                per_key[window] = contents  # type: ignore[index]  # the key has a window: a dict
        self._set_timers(new_timers)
        return end, passed

    def _pane_run(
        self, batch: Batch, start: int, end: int, passed: int, due: int, out_marks: list[tuple[int, int]]
    ) -> tuple[int, int]:
        """:meth:`_tumbling_run` over the panes (see :meth:`_gather`): a record's contents are
        its key's in the pane of its window's max timestamp, and a new pane sets the one timer
        of its windows. Without lateness a record past the watermark is dropped: it opens nothing.
        """
        if start == end:
            return end, passed
        values = batch.values
        timestamps: list[int] = batch.timestamps  # type: ignore[assignment]
        size = self._size
        offset = self._offset
        panes: dict[int, dict[Hashable, Any]] = self._panes  # type: ignore[assignment]
        add_timer = self._event_timers.add
        next_time = self._event_timers.next_time
        if next_time is None:
            next_time = MAX_WATERMARK
        create, add = self._tumbling_adders()
        empty = EMPTY
        highest = batch.marks[due - 1][1] if due > passed else self.watermark  # type: ignore[index]
        pane: dict[Hashable, Any] = {}
        first, last = 1, 0  # the window of the last record, after ``highest`` (none yet)
        key_of = self.key_of
        run = values[start:end]
        records = iter(run)
        for value, timestamp, key in zip(records, timestamps[start:end], map(key_of, run), strict=True):
            if timestamp > last or timestamp < first:  # another window than the last record's
                time = timestamp - (timestamp - offset) % size + size - 1  # its max timestamp
                first = time - size + 1
                last = time
                if time <= highest:  # perhaps late: the general rules
                    window = TimeWindow(first, time + 1)
                    first, last = 1, 0
                    position = end - 1 - length_hint(records)
                    late, passed = self._tumbling_late(batch, position, window, passed, due, out_marks)
                    if late:
                        continue
                found = panes.get(time)
                if found is None:  # the first window of its time: a new pane, and its timer
                    pane = panes[time] = {key: add(value, create())}
                    add_timer(time, _PANE)
                    if time < next_time:  # the earliest timer now: a mark before ``end`` may fire it
                        return end - length_hint(records), passed
                    continue
                pane = found
            contents = pane.get(key, empty)
            if contents is empty:  # the window's first record
                pane[key] = add(value, create())
            elif (updated := add(value, contents)) is not contents:  # else updated in place
                pane[key] = updated
        return end, passed

    def _pane_run_compiled(
        self, batch: Batch, start: int, end: int, passed: int, due: int, out_marks: list[tuple[int, int]]
    ) -> tuple[int, int]:
        """:meth:`_pane_run` with its common case in C: a record of a window after the run's
        highest watermark whose pane exists joins its key's contents there. The C loop hands a
        record it leaves (a new pane, a record perhaps late, a timestamp that is not a 64-bit int)
        back before taking its key; :meth:`_pane_run` runs that one record (from an empty window
        cache, which only costs a lookup: no pane goes during a run), and the C loop goes on
        after it. As in :meth:`_pane_run`, the run ends after a record whose new pane sets the
        earliest timer.
        """
        if start == end:
            return end, passed
        kernel: ModuleType = _compiled  # type: ignore[assignment]  # chosen with it
        values = batch.values
        timestamps = batch.timestamps
        size = self._size
        offset = self._offset
        highest = batch.marks[due - 1][1] if due > passed else self.watermark  # type: ignore[index]
        if (
            type(values) is not list
            or type(timestamps) is not list
            or len(values) != len(timestamps)
            or type(size) is not int
            or type(offset) is not int
            or type(highest) is not int
            or not 0 < size < MAX_WATERMARK
            or not MIN_WATERMARK <= offset <= MAX_WATERMARK
            or not MIN_WATERMARK <= highest <= MAX_WATERMARK
        ):  # what the C loop does not take: the reference's rules (and errors) throughout
            return self._pane_run(batch, start, end, passed, due, out_marks)
        timers = self._event_timers
        next_time = timers.next_time
        if next_time is None:
            next_time = MAX_WATERMARK
        create, add = self._tumbling_adders()
        panes = self._panes
        key_of = self.key_of
        run = kernel.run
        while True:
            start = run(
                values, timestamps, start, end, key_of, create, add, EMPTY, panes, size, offset, highest
            )
            if start >= end:
                return end, passed
            start, passed = self._pane_run(batch, start, start + 1, passed, due, out_marks)
            now = timers.next_time
            if now is not None and now < next_time:  # its new pane's timer is the earliest now
                return start, passed

    def _set_timers(self, new_timers: dict[int, list[tuple[Hashable, TimeWindow]]]) -> None:
        """Register the timers of :meth:`_tumbling_run` (``{time: [(key, window)]}``), and forget them."""
        add_keys = self._event_timers.add_keys
        for time, scopes in new_timers.items():
            add_keys(time, scopes)
        new_timers.clear()

    def _tumbling_late(
        self,
        batch: Batch,
        position: int,
        window: TimeWindow,
        passed: int,
        due: int,
        out_marks: list[tuple[int, int]],
    ) -> tuple[bool, int]:
        """Whether the record at ``position`` (of ``window``) is past the watermark before it, and
        the marks passed then: for such a record, the marks before it are passed (written out: the
        record may fire its window) and :meth:`_add_late` takes it."""
        marks: list[tuple[int, int]] = batch.marks  # type: ignore[assignment]
        before = bisect_right(marks, position, passed, due, key=_position_of)  # marks before the record
        if window.end - 1 > (marks[before - 1][1] if before > passed else self.watermark):
            return False, passed
        self._pass(marks, passed, before, out_marks)
        self._add_late(batch.values[position], batch.timestamps[position])  # type: ignore[index]
        return True, before

    def _pass(
        self, marks: list[tuple[int, int]], passed: int, stop: int, out_marks: list[tuple[int, int]]
    ) -> None:
        """The marks ``passed..stop`` fire no timer: the last of them becomes the operator's
        watermark and goes to the output (after the results so far)."""
        if stop > passed:
            self.watermark = watermark = marks[stop - 1][1]
            self._mark(watermark, out_marks)

    def _add_late(self, value: Any, timestamp: int) -> None:
        """A record of :meth:`_process_tumbling` whose window the watermark has passed: inside the
        allowed lateness, its window takes it and fires again; past it, it is dropped (a tumbling
        window holds its records' timestamps, so the record is past the lateness too)."""
        window = self.assigner.assign(value, timestamp)[0]
        if self.is_late(window):
            self._drop_late(value, timestamp)
            return
        self.keys.current = key = self.key_of(value)  # before the key's windows are read
        per_key = self.windows.get(key)
        if per_key is None:
            per_key = self.windows[key] = {}
        previous = per_key.get(window, EMPTY)
        contents = per_key[window] = self.contents.add(previous, value)
        self._fire_late(key, window, contents, previous is EMPTY)

    def _tumbling_adders(self) -> tuple[Callable[[], Any], Callable[[Any, Any], Any]]:
        """``(create, add)`` of :meth:`_process_tumbling`: a new window's empty contents, and
        ``add(value, contents)``; an aggregate function's own, called directly, when there is one."""
        contents = self.contents
        if type(contents) is AggregateContents:
            function = contents.function
            return function.create_accumulator, function.add
        add = contents.add
        return itertools.repeat(EMPTY).__next__, lambda value, previous: add(previous, value)

    def _fire_tumbling(self, limit: int) -> None:
        """Event-time timers of :meth:`_process_tumbling`, a time at a time (firing a window sets
        or removes no timer): fire at the window's max timestamp, clean up at ``max timestamp +
        lateness`` (the same timer without lateness). Results are stamped with the timer's time."""
        if self._panes is not None:
            self._fire_panes(limit)
            return
        out = self._out
        values = out.values
        timestamps = out.timestamps
        context = self._window_context
        context._watermark = self.watermark
        state = self._windows
        keys = self.keys
        lateness = self.allowed_lateness
        emit_contents = self.contents.emit
        get_result, process = self._aggregate_emitters()
        pop_time = self._event_timers.pop_time
        key: Hashable
        window: TimeWindow
        open_windows = self._open_windows
        while (due := pop_time(limit)) is not None:
            time, scopes = due
            open_windows.pop(time, None)  # its windows fire: a record of theirs is late from now on
            fires = time + 1  # the end of the windows whose trigger timer this is
            cleans = fires - lateness  # the end of those whose cleanup timer this is
            for key, window in scopes:  # type: ignore[misc]
                keys.current = key  # before the key's windows are read
                if lateness:  # its trigger timer fires it, its cleanup timer (lateness later) drops it
                    per_key = state.get(key)
                    if per_key is None:
                        continue
                    end = window.end
                    if end == cleans:
                        per_key.pop(window, None)
                        if not per_key:
                            del state[key]
                    contents = per_key.get(window, EMPTY) if end == fires else EMPTY
                else:  # its trigger timer is its cleanup timer: the window goes
                    # The key goes with it (mostly its only window): one lookup, and back if it has others.
                    per_key = state.pop(key, None)
                    if per_key is None:
                        continue
                    contents = per_key.pop(window, EMPTY)
                    if per_key:
                        state[key] = per_key
                if contents is EMPTY:
                    continue
                context.window = window
                if get_result is None:
                    emit_contents(key, context, contents, out)
                elif process is None:
                    values.append(get_result(contents))
                else:
                    process(key, context, [get_result(contents)], out)
            timestamps.extend([time] * (len(values) - len(timestamps)))

    def _aggregate_emitters(self) -> tuple[Callable[[Any], Any] | None, Callable[..., None] | None]:
        """``(get_result, process)`` of the tumbling path's firing: an aggregate's result goes
        straight to the window function (``process``) or the output (None); neither is there for
        other contents, which emit themselves."""
        contents = self.contents
        if type(contents) is not AggregateContents:
            return None, None
        window_function = contents.window_function
        return contents.function.get_result, None if window_function is None else window_function.process

    def _fire_panes(self, limit: int) -> None:
        """:meth:`_fire_tumbling` of the panes (see :meth:`_gather`): a pane's windows fire, in the
        order they opened, and go."""
        out = self._out
        values = out.values
        timestamps = out.timestamps
        context = self._window_context
        context._watermark = self.watermark
        keys = self.keys
        panes: dict[int, dict[Hashable, Any]] = self._panes  # type: ignore[assignment]
        size = self._size
        emit_contents = self.contents.emit
        get_result, process = self._aggregate_emitters()
        pop_time = self._event_timers.pop_time
        while (due := pop_time(limit)) is not None:
            time = due[0]
            context.window = TimeWindow(time - size + 1, time + 1)
            for key, contents in panes.pop(time).items():
                keys.current = key
                if get_result is None:
                    emit_contents(key, context, contents, out)
                elif process is None:
                    values.append(get_result(contents))
                else:
                    process(key, context, [get_result(contents)], out)
            timestamps.extend([time] * (len(values) - len(timestamps)))

    def _merge(self, key: Hashable, per_key: dict[TimeWindow, Any], new: TimeWindow) -> TimeWindow:
        """Add ``new`` to the key's windows and merge what the assigner merges (Flink's merging
        window set); return the window the record goes to. ``new`` itself is not stored here: the
        caller adds it with the record unless it is late."""
        merges = self.assigner.merge_windows([*per_key, new])  # type: ignore[attr-defined]
        actual = new
        for merged, members in merges:
            members = list(members)
            if new in members:
                members.remove(new)  # it has no contents or trigger state yet
                actual = merged
            if members != [merged]:  # else the new window lies inside an existing one
                self._merge_windows(key, per_key, merged, members)
        return actual

    def _merge_windows(
        self, key: Hashable, per_key: dict[TimeWindow, Any], merged: TimeWindow, members: list[TimeWindow]
    ) -> None:
        """``members`` of the key become ``merged``: trigger state, contents, timers."""
        event_time = self.assigner.is_event_time
        lateness = self.allowed_lateness
        if event_time and merged.end - 1 + lateness <= self.watermark:
            raise StateError(
                f"{self.name}: merging {members} gave {merged}, which ends before the watermark "
                f"{self.watermark}: merging must not make an event-time window end earlier"
            )
        scope = self._scope
        trigger = self.trigger
        triggers = self.triggers
        cleanup_timers = self.event_timers if event_time else self.processing_timers
        merge = self.contents.merge
        assert self.keys.current == key  # the scope reads the key's trigger state through it
        scope.window = merged
        scope.merged = members
        trigger.on_merge(merged, scope)  # reads the members' state: before they are cleared
        combined = per_key.get(merged, EMPTY)
        for window in members:
            scope.window = window
            trigger.clear(window, scope)
            clear_trigger_state(triggers, key, window)
            cleanup_timers.remove(window.end - 1 + lateness, (key, window))
            combined = merge(combined, per_key.pop(window, EMPTY))
        per_key[merged] = combined
        scope.window = merged
        scope.merged = []

    def _emit(self, key: Hashable, window: TimeWindow, contents: Any) -> None:
        context = self._window_context
        context.window = window
        context._watermark = self.watermark
        out = self._out
        self.contents.emit(key, context, contents, out)
        out.stamp(window.end - 1)

    def _advance(self, watermark: int, out_marks: list[tuple[int, int]]) -> None:
        """The watermark moved: fire the event-time timers it passed, then pass it on."""
        self.watermark = watermark
        next_time = self._event_timers.next_time
        if next_time is not None and next_time <= watermark:
            self._fire_event_timers(watermark)
        self._mark(watermark, out_marks)

    def _mark(self, watermark: int, out_marks: list[tuple[int, int]]) -> None:
        """Pass ``watermark`` on after the results so far."""
        position = len(self._out.values)
        if out_marks and out_marks[-1][0] == position:
            out_marks[-1] = (position, watermark)  # no record since the last mark: replace it
        else:
            out_marks.append((position, watermark))

    def _fire_event_time(self, limit: int) -> None:
        self._fire(self.event_timers, limit, event=True)

    def _fire(self, queue: TimerQueue, limit: int, *, event: bool) -> None:
        """Fire ``queue``'s timers due at ``limit``: the trigger decides, and a window whose cleanup
        time it is goes."""
        scope = self._scope
        trigger = self.trigger
        on_timer = trigger.on_event_time if event else trigger.on_processing_time
        cleans = event is self.assigner.is_event_time
        lateness = self.allowed_lateness
        state = self.windows
        keys = self.keys
        merging = self._merging
        key: Hashable
        window: TimeWindow
        for time, scoped in queue.pop_due(limit):
            key, window = scoped  # type: ignore[misc]
            keys.current = key  # before the key's windows are read
            scope.window = window
            per_key = state.get(key)
            if merging and (per_key is None or window not in per_key):
                continue  # a window that merged into another: a trigger left its timer behind
            contents = EMPTY if per_key is None else per_key.get(window, EMPTY)
            result = on_timer(time, window, scope)
            if contents is not EMPTY and result is not CONTINUE:
                self._apply(result, key, per_key, window)  # type: ignore[arg-type]
                if not per_key:
                    del state[key]
            if cleans and time == window.end - 1 + lateness:  # cleanup_time(window)
                self._clear(key, window)

    def _clear(self, key: Hashable, window: TimeWindow) -> None:
        """The cleanup of ``key``'s ``window`` (the current key): contents, trigger state, timers."""
        per_key = self.windows.get(key)
        if per_key is not None:
            per_key.pop(window, None)
            if not per_key:
                del self.windows[key]
        self.trigger.clear(window, self._scope)
        clear_trigger_state(self.triggers, key, window)

    def next_processing_time(self) -> int | None:
        return self.processing_timers.next_time

    def on_processing_time(self, now: int) -> Batch | None:
        out = self._out
        out.bind()
        self._fire(self.processing_timers, now, event=False)
        self.keys.current = NO_KEY
        if not out.values:
            return None
        return Batch(out.values, out.timestamps)
