"""The keyed window operator: assigns records to windows, asks the trigger, emits window results.

Per record (with its key as the current key): the assigner gives its windows. In event time, a window
with ``max_timestamp + allowed_lateness <= watermark`` can no longer fire: the record is not added to
it, and a record none of whose windows accepted it is counted in ``late_records`` (dropped). Otherwise
the record joins each window's contents, the trigger decides (FIRE emits the window function's
results, PURGE drops the contents), and a cleanup timer is set at ``max_timestamp +
allowed_lateness`` (event time) or ``max_timestamp`` (processing time). When the cleanup timer fires,
the window's contents, trigger state and trigger timers are gone: state never outlives a window that
can no longer fire (except :class:`GlobalWindows`, which never ends).

Results are stamped with ``window.max_timestamp``. Contents and trigger state are kept per key and
window in dicts of the operator; timers are in the operator's timer queues keyed by (key, window).
A late record inside the allowed lateness fires its window again with the updated result (the
default event-time trigger fires at once for a window the watermark has passed), as in Flink.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable
from typing import Any

from actorflow.errors import StateError
from actorflow.operators.base import Collector, Operator, OperatorContext
from actorflow.operators.windows.assigners import GLOBAL_WINDOW, TimeWindow, WindowAssigner
from actorflow.operators.windows.functions import EMPTY, WindowContents, WindowContext
from actorflow.operators.windows.triggers import (
    EventTimeTrigger,
    Trigger,
    TriggerContext,
    TriggerResult,
)
from actorflow.runtime.messages import MAX_WATERMARK, MIN_WATERMARK, Batch
from actorflow.state.keygroups import key_group
from actorflow.time.timers import TimerQueue

__all__ = ["WindowOperator"]

CONTINUE = TriggerResult.CONTINUE


class _Scope(TriggerContext):
    """The trigger's view of the current key and window (one object, re-pointed per call)."""

    __slots__ = ("key", "operator", "window")

    def __init__(self, operator: WindowOperator) -> None:
        self.operator = operator
        self.key: Hashable = None
        self.window: TimeWindow = GLOBAL_WINDOW

    @property
    def current_watermark(self) -> int:
        return self.operator.watermark

    def current_processing_time(self) -> int:
        return self.operator.context.clock.now()

    def register_event_time_timer(self, time: int) -> None:
        self.operator.event_timers.add(time, (self.key, self.window))

    def delete_event_time_timer(self, time: int) -> None:
        self.operator.event_timers.remove(time, (self.key, self.window))

    def register_processing_time_timer(self, time: int) -> None:
        self.operator.processing_timers.add(time, (self.key, self.window))

    def delete_processing_time_timer(self, time: int) -> None:
        self.operator.processing_timers.remove(time, (self.key, self.window))

    def get_state(self, name: str, default: Any = None) -> Any:
        state = self.operator.trigger_state.get((self.key, self.window))
        return default if state is None else state.get(name, default)

    def set_state(self, name: str, value: Any) -> None:
        self.operator.trigger_state.setdefault((self.key, self.window), {})[name] = value

    def clear_state(self, name: str) -> None:
        scope = (self.key, self.window)
        state = self.operator.trigger_state.get(scope)
        if state is not None:
            state.pop(name, None)
            if not state:
                del self.operator.trigger_state[scope]


class _Out(Collector):
    """Appends results with the firing window's ``max_timestamp`` as their timestamp."""

    __slots__ = ("stamp", "timestamps", "values")

    def __init__(self) -> None:
        super().__init__(self._append)
        self.values: list[Any] = []
        self.timestamps: list[Any] = []
        self.stamp = 0

    def _append(self, value: Any) -> None:
        self.values.append(value)
        self.timestamps.append(self.stamp)

    def bind(self) -> None:
        self.values = []
        self.timestamps = []


class WindowOperator(Operator):
    """Keyed windows: ``assigner`` + ``trigger`` + ``contents`` (the window function).

    ``late_records`` counts records dropped because all their windows were past the allowed
    lateness. ``state_size()`` counts the (key, window) entries held, for tests and metrics.
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
    ) -> None:
        super().__init__(name)
        self.key_of = key_of
        self.assigner = assigner
        self.contents = contents
        self.trigger = trigger if trigger is not None else assigner.default_trigger()
        self.allowed_lateness = allowed_lateness if assigner.is_event_time else 0
        self._reset()

    def _reset(self) -> None:
        self.windows: dict[Hashable, dict[TimeWindow, Any]] = {}
        self.trigger_state: dict[tuple[Hashable, TimeWindow], dict[str, Any]] = {}
        self.event_timers = TimerQueue()
        self.processing_timers = TimerQueue()
        self.watermark = MIN_WATERMARK
        self.late_records = 0
        self._scope = _Scope(self)
        self._out = _Out()

    def open(self, context: OperatorContext) -> None:
        super().open(context)
        self._reset()
        self._window_context = WindowContext(context.clock, GLOBAL_WINDOW)

    def state_size(self) -> int:
        """(key, window) entries with contents, plus those with trigger state."""
        return sum(len(windows) for windows in self.windows.values()) + len(self.trigger_state)

    def snapshot(self) -> dict[int, dict[str, Any]]:
        """A deep copy of the window state, cut by key group of the key: ``{group: {"windows":
        {key: {window: contents}}, "trigger_state": {(key, window): {...}}, "event_timers":
        [(time, (key, window))], "processing_timers": [...]}}``.

        The watermark and ``late_records`` are not part of it (the watermark is re-established by
        the inputs; the late count is a metric). Later updates never show in the snapshot.
        """
        max_parallelism = self.context.max_parallelism
        groups: dict[int, dict[str, Any]] = {}

        def part(key: Hashable) -> dict[str, Any]:
            group = key_group(key, max_parallelism)
            found = groups.get(group)
            if found is None:
                found = groups[group] = {
                    "windows": {},
                    "trigger_state": {},
                    "event_timers": [],
                    "processing_timers": [],
                }
            return found

        for key, per_key in self.windows.items():
            part(key)["windows"][key] = per_key
        for scope, state in self.trigger_state.items():
            part(scope[0])["trigger_state"][scope] = state
        for name, queue in (
            ("event_timers", self.event_timers),
            ("processing_timers", self.processing_timers),
        ):
            for time, timer_scopes in queue.snapshot():
                for timer_scope in timer_scopes:
                    key = timer_scope[0]  # type: ignore[index]
                    part(key)[name].append((time, timer_scope))
        return copy.deepcopy(groups)

    def restore(self, groups: dict[int, dict[str, Any]], owned: range) -> None:
        """Load the key groups in ``owned`` from a :meth:`snapshot` (others belong to other instances)."""
        for group, parts in groups.items():
            if group not in owned:
                continue
            parts = copy.deepcopy(parts)
            self.windows.update(parts["windows"])
            self.trigger_state.update(parts["trigger_state"])
            for time, scope in parts["event_timers"]:
                self.event_timers.add(time, scope)
            for time, scope in parts["processing_timers"]:
                self.processing_timers.add(time, scope)

    def process(self, batch: Batch) -> Batch:
        out = self._out
        out.bind()
        out_marks: list[tuple[int, int]] = []
        values = batch.values
        timestamps = batch.timestamps
        marks = batch.marks or ()
        event_time = self.assigner.is_event_time
        if event_time and values and timestamps is None:
            raise StateError(
                f"{self.name}: event-time windows need timestamps: "
                "use assign_timestamps_and_watermarks() or a source with watermarks"
            )
        now = 0 if event_time else self.context.clock.now()
        key_of = self.key_of
        assign = self.assigner.assign
        add = self.contents.add
        on_element = self.trigger.on_element
        state = self.windows
        scope = self._scope
        lateness = self.allowed_lateness
        cleanup_timers = self.event_timers if event_time else self.processing_timers
        # The default event-time trigger registers a timer at max_timestamp for every record it
        # accepts: without lateness, that is the cleanup timer already.
        fast_event_trigger = event_time and type(self.trigger) is EventTimeTrigger
        set_cleanup = not (fast_event_trigger and lateness == 0)
        emit = self._emit
        mark_index = 0
        mark_count = len(marks)
        next_position = marks[0][0] if marks else -1
        timestamp: int | None = None
        for position, value in enumerate(values):
            while position == next_position:
                self._advance(marks[mark_index][1], out_marks)
                mark_index += 1
                next_position = marks[mark_index][0] if mark_index < mark_count else -1
            key = key_of(value)
            if timestamps is not None:
                timestamp = timestamps[position]
            windows = assign(value, timestamp if event_time else now)  # type: ignore[arg-type]
            per_key = state.get(key)
            if per_key is None:
                per_key = state[key] = {}
            scope.key = key
            watermark = self.watermark
            accepted = False
            for window in windows:
                cleanup = window.end - 1 + lateness
                if event_time and cleanup <= watermark:
                    continue  # this window can no longer fire
                accepted = True
                previous = per_key.get(window, EMPTY)
                contents = per_key[window] = add(previous, value)
                if fast_event_trigger:
                    # EventTimeTrigger.on_element inlined: its timer is set once per window.
                    if cleanup - lateness <= watermark:
                        emit(key, window, contents)  # a late record inside the lateness
                    elif previous is EMPTY:
                        cleanup_timers.add(cleanup - lateness, (key, window))
                else:
                    scope.window = window
                    result = on_element(value, timestamp, window, scope)
                    if result is not CONTINUE:
                        if result.fire:
                            emit(key, window, contents)
                        if result.purge:
                            del per_key[window]
                if (
                    set_cleanup
                    and cleanup < MAX_WATERMARK
                    and (previous is EMPTY or not fast_event_trigger)
                ):
                    cleanup_timers.add(cleanup, (key, window))
            if not per_key:
                del state[key]
            if not accepted and event_time and timestamp + lateness <= watermark:  # type: ignore[operator]
                self.late_records += 1
        for _, watermark in marks[mark_index:]:
            self._advance(watermark, out_marks)
        return Batch(out.values, out.timestamps, out_marks or None)

    def _emit(self, key: Hashable, window: TimeWindow, contents: Any) -> None:
        context = self._window_context
        context.window = window
        context.current_watermark = self.watermark
        self._out.stamp = window.end - 1
        self.contents.emit(key, context, contents, self._out)

    def _advance(self, watermark: int, out_marks: list[tuple[int, int]]) -> None:
        """The watermark moved: fire the event-time timers it passed, then pass it on."""
        self.watermark = watermark
        next_time = self.event_timers.next_time
        if next_time is not None and next_time <= watermark:
            self._fire(self.event_timers, watermark, event=True)
        position = len(self._out.values)
        if out_marks and out_marks[-1][0] == position:
            out_marks[-1] = (position, watermark)  # no record since the last mark: replace it
        else:
            out_marks.append((position, watermark))

    def _fire(self, queue: TimerQueue, limit: int, *, event: bool) -> None:
        scope = self._scope
        trigger = self.trigger
        on_timer = trigger.on_event_time if event else trigger.on_processing_time
        cleans = event is self.assigner.is_event_time
        lateness = self.allowed_lateness
        state = self.windows
        key: Hashable
        window: TimeWindow
        for time, scoped in queue.pop_due(limit):
            key, window = scoped  # type: ignore[misc]
            scope.key = key
            scope.window = window
            per_key = state.get(key)
            contents = EMPTY if per_key is None else per_key.get(window, EMPTY)
            result = on_timer(time, window, scope)
            if per_key is not None and contents is not EMPTY and result is not CONTINUE:
                if result.fire:
                    self._emit(key, window, contents)
                if result.purge:
                    del per_key[window]
                    if not per_key:
                        del state[key]
            if cleans and time == window.end - 1 + lateness:
                self._clear(key, window)

    def _clear(self, key: Hashable, window: TimeWindow) -> None:
        per_key = self.windows.get(key)
        if per_key is not None:
            per_key.pop(window, None)
            if not per_key:
                del self.windows[key]
        self.trigger.clear(window, self._scope)
        self.trigger_state.pop((key, window), None)

    def next_processing_time(self) -> int | None:
        return self.processing_timers.next_time

    def on_processing_time(self, now: int) -> Batch | None:
        out = self._out
        out.bind()
        self._fire(self.processing_timers, now, event=False)
        if not out.values:
            return None
        return Batch(out.values, out.timestamps)
