"""Joins: window joins and co-groups (tumbling, sliding, session windows) and interval joins.

Results are checked against brute-force references written plainly here: nested loops over both
sides, Flink's window firing, and the lateness rules applied record by record.

*Why the flow tests read the join's watermark from the run.* The two inputs are sources running as
independent actors; when a record of one reaches the join, the other input may be anywhere, and the
join's event time is the minimum of both. Which records are late is therefore the scheduler's
choice, not the data's. So a spy around each join instance's ``process`` records the records in the
order the instance received them, with the watermark it had before each. The test checks that this
watermark never exceeds the one the record's own source had produced before it (the minimum rule),
and that every record of both sources arrived exactly once; the references then apply the lateness
rule to exactly that sequence, and compute everything else (windows, pairs, bounds, timestamps) from
scratch. The operator-level tests drive the interval join with interleavings and watermarks the test
chooses itself.
"""

from __future__ import annotations

import copy
import pickle
from collections import Counter
from collections.abc import Callable
from operator import itemgetter
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from actorflow import (
    MAX_WATERMARK,
    MIN_WATERMARK,
    CoGroupFunction,
    Collector,
    Context,
    CountTrigger,
    DataStream,
    EventTimeSessionWindows,
    FlatJoinFunction,
    Flow,
    JoinFunction,
    KeyedStream,
    ManualClock,
    OutputTag,
    PlanError,
    ProcessFunction,
    ProcessJoinContext,
    ProcessJoinFunction,
    SlidingEventTimeWindows,
    StateError,
    TumblingEventTimeWindows,
    WatermarkStrategy,
    WindowAssigner,
)
from actorflow.operators.base import Operator, OperatorContext
from actorflow.operators.joins import (
    LEFT,
    LEFT_BUFFER,
    RIGHT,
    RIGHT_BUFFER,
    IntervalJoinFunction,
    Tagger,
    process_join_function,
)
from actorflow.operators.process import KeyedProcessOperator
from actorflow.operators.windows.operator import WindowOperator
from actorflow.runtime.messages import Batch
from actorflow.state.keygroups import key_group, operator_index

Record = dict[str, Any]
#: What a join instance received: (side, record, timestamp, watermark before the record).
Arrival = tuple[int, Record, int, int]

#: Hypothesis runs a whole flow per example: a fixture of plain ints is safe to share between them.
FLOW_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


# -- data, flows and the spy ---------------------------------------------------------------------------


def key_of(record: Record) -> str:
    """Left records keep their key in ``k``, right ones in ``rk``: a join that applied one side's
    key to the other side's records would fail."""
    return str(record["k"] if record["id"][0] == "L" else record["rk"])


def side_records(data: st.DataObject, name: str, max_size: int = 20) -> list[Record]:
    """One out-of-order stream: random keys and timestamps, ids ``name0``, ``name1``..."""
    n = data.draw(st.integers(0, max_size), label=f"{name} records")
    return [
        {
            "k" if name == "L" else "rk": data.draw(st.sampled_from("abc"), label="key"),
            "ts": data.draw(st.integers(0, 50), label="ts"),
            "id": f"{name}{i}",
        }
        for i in range(n)
    ]


def own_watermarks(records: list[Record], lag: int) -> dict[str, int]:
    """The watermark a punctuated strategy with ``lag`` has emitted before each record."""
    before: dict[str, int] = {}
    highest = MIN_WATERMARK
    for record in records:
        before[record["id"]] = highest if highest == MIN_WATERMARK else highest - lag
        highest = max(highest, record["ts"])
    return before


class Stamped(ProcessFunction[Any, tuple[Any, int | None]]):
    """Pairs every result with its timestamp."""

    def process_element(self, value: Any, ctx: Context, out: Collector) -> None:
        out.collect((value, ctx.timestamp))


class Spy:
    """Wraps the operators a stream's node creates, recording what each instance receives."""

    def __init__(self, stream: DataStream[Any]) -> None:
        node = stream._inputs[0][0]
        make = node.make_operator
        assert make is not None
        self.instances: list[tuple[Any, list[Arrival]]] = []
        #: Per instance (by id): the sizes of the join's buffers as it closed (a RocksDB backend
        #: deletes its state on close, so they are read just before).
        self.buffered_at_close: dict[int, tuple[int, int]] = {}

        def spied() -> Operator:
            op = make()
            seen: list[Arrival] = []
            self.instances.append((op, seen))
            process = op.process
            close = op.close

            def closing() -> None:
                backend = getattr(op, "backend", None)  # keyed process operators only
                if backend is not None:
                    sizes = (backend.state_size(LEFT_BUFFER), backend.state_size(RIGHT_BUFFER))
                    self.buffered_at_close[id(op)] = sizes
                close()

            op.close = closing  # type: ignore[method-assign]
            watermark = MIN_WATERMARK

            def record(batch: Batch) -> Batch | None:
                nonlocal watermark
                marks = batch.marks or []
                index = 0
                for position, (side, _, value) in enumerate(batch.values):
                    while index < len(marks) and marks[index][0] <= position:
                        watermark = marks[index][1]
                        index += 1
                    assert batch.timestamps is not None
                    seen.append((side, value, batch.timestamps[position], watermark))
                for _, mark in marks[index:]:
                    watermark = mark
                return process(batch)

            op.process = record  # type: ignore[method-assign]
            return op

        node.make_operator = spied

    def arrivals(self) -> list[list[Arrival]]:
        return [seen for _, seen in self.instances]

    def check_arrivals(
        self, lefts: list[Record], rights: list[Record], left_lag: int, right_lag: int
    ) -> None:
        """Every record arrived once, never behind a watermark its own source had not produced."""
        own = own_watermarks(lefts, left_lag) | own_watermarks(rights, right_lag)
        arrived = Counter(record["id"] for seen in self.arrivals() for _, record, _, _ in seen)
        assert arrived == Counter(record["id"] for record in lefts + rights)
        for seen in self.arrivals():
            for side, record, timestamp, watermark in seen:
                assert record["id"][0] == ("L" if side == LEFT else "R")
                assert timestamp == record["ts"]
                assert watermark <= own[record["id"]]


def two_sources(
    flow: Flow, lefts: list[Record], rights: list[Record], left_lag: int, right_lag: int
) -> tuple[DataStream[Record], DataStream[Record]]:
    left = flow.from_iterable(lefts, watermarks=WatermarkStrategy.punctuated("ts", lag_ms=left_lag))
    right = flow.from_iterable(rights, watermarks=WatermarkStrategy.punctuated("ts", lag_ms=right_lag))
    return left, right


# -- window references -----------------------------------------------------------------------------------

Window = tuple[int, int]  # [start, end)
Emit = Callable[[list[Record], list[Record], Window], list[Any]]


def fixed_windows(kind: str, size: int, slide: int) -> Callable[[int], list[Window]]:
    if kind == "tumbling":
        return lambda ts: [(ts - ts % size, ts - ts % size + size)]
    return lambda ts: [(s, s + size) for s in range(ts - size + 1, ts + 1) if s % slide == 0]


def window_reference(
    arrivals: list[Arrival], windows_of: Callable[[int], list[Window]], lateness: int, emit: Emit
) -> Counter[Any]:
    """What one instance emits: a window fires when the watermark reaches its last millisecond;
    a record is added to a window unless ``end - 1 + lateness <= watermark``; one added to a window
    that already fired fires it again with everything it holds."""
    contents: dict[tuple[str, Window], tuple[list[Record], list[Record]]] = {}
    fired: set[tuple[str, Window]] = set()
    emitted: Counter[Any] = Counter()
    watermark = MIN_WATERMARK

    def fire(scope: tuple[str, Window]) -> None:
        fired.add(scope)
        lefts, rights = contents[scope]
        emitted.update(emit(lefts, rights, scope[1]))

    def advance(to: int) -> None:
        for scope in list(contents):
            if scope not in fired and scope[1][1] - 1 <= to:
                fire(scope)

    for side, record, ts, before in arrivals:
        if before > watermark:
            watermark = before
            advance(watermark)
        for window in windows_of(ts):
            if window[1] - 1 + lateness <= watermark:
                continue  # too late for this window
            scope = (key_of(record), window)
            lefts, rights = contents.setdefault(scope, ([], []))
            (lefts if side == LEFT else rights).append(record)
            if window[1] - 1 <= watermark:
                fire(scope)
    advance(MAX_WATERMARK)
    return emitted


def session_reference(arrivals: list[Arrival], gap: int, emit: Emit) -> Counter[Any]:
    """Sessions without allowed lateness: a record opens ``[ts, ts + gap)``, which merges with the
    key's open sessions it overlaps or touches; a record whose window merges with none and has
    already ended (``ts + gap - 1 <= watermark``) is late. A session fires (and is gone) once the
    watermark reaches its last millisecond."""
    sessions: dict[str, list[tuple[int, int, list[Record], list[Record]]]] = {}
    emitted: Counter[Any] = Counter()
    watermark = MIN_WATERMARK

    def advance(to: int) -> None:
        for open_sessions in sessions.values():
            for session in [s for s in open_sessions if s[1] - 1 <= to]:
                open_sessions.remove(session)
                emitted.update(emit(session[2], session[3], (session[0], session[1])))

    for side, record, ts, before in arrivals:
        if before > watermark:
            watermark = before
            advance(watermark)
        start, end = ts, ts + gap
        lefts: list[Record] = [record] if side == LEFT else []
        rights: list[Record] = [record] if side == RIGHT else []
        open_sessions = sessions.setdefault(key_of(record), [])
        touching = [s for s in open_sessions if s[0] <= end and start <= s[1]]
        if not touching and end - 1 <= watermark:
            continue  # late
        for session in touching:
            open_sessions.remove(session)
            start, end = min(start, session[0]), max(end, session[1])
            lefts += session[2]
            rights += session[3]
        open_sessions.append((start, end, lefts, rights))
    advance(MAX_WATERMARK)
    return emitted


def join_pairs(lefts: list[Record], rights: list[Record], window: Window) -> list[Any]:
    return [((left["id"], right["id"]), window[1] - 1) for left in lefts for right in rights]


def co_groups(lefts: list[Record], rights: list[Record], window: Window) -> list[Any]:
    ids = (tuple(sorted(r["id"] for r in lefts)), tuple(sorted(r["id"] for r in rights)))
    return [(ids, window[1] - 1)]


# -- window join and co-group: the user's function in each form ---------------------------------------


class PairJoin(JoinFunction[Record, Record, tuple[str, str]]):
    def join(self, left: Record, right: Record) -> tuple[str, str]:
        return (left["id"], right["id"])


class PairFlatJoin(FlatJoinFunction[Record, Record, tuple[str, str]]):
    def join(self, left: Record, right: Record, out: Collector) -> None:
        out.collect((left["id"], right["id"]))


class IdsCoGroup(CoGroupFunction[Record, Record, Any]):
    def co_group(self, lefts: list[Record], rights: list[Record], out: Collector) -> None:
        assert lefts or rights
        out.collect((tuple(sorted(r["id"] for r in lefts)), tuple(sorted(r["id"] for r in rights))))


def pair(left: Record, right: Record) -> tuple[str, str]:
    return (left["id"], right["id"])


def flat_pair(left: Record, right: Record, out: Collector) -> None:
    out.collect((left["id"], right["id"]))


def ids_co_group(lefts: list[Record], rights: list[Record], out: Collector) -> None:
    out.collect((tuple(sorted(r["id"] for r in lefts)), tuple(sorted(r["id"] for r in rights))))


def draw_windows(data: st.DataObject) -> tuple[WindowAssigner, str, Callable[[int], list[Window]], int]:
    """An assigner, its kind, the reference's windows of a timestamp, and the session gap."""
    kind = data.draw(st.sampled_from(["tumbling", "sliding", "session"]), label="windows")
    if kind == "tumbling":
        size = data.draw(st.sampled_from([1, 5, 10, 25]), label="size")
        return TumblingEventTimeWindows.of(size), kind, fixed_windows(kind, size, size), 0
    if kind == "sliding":
        slide = data.draw(st.sampled_from([2, 5, 10]), label="slide")
        size = slide * data.draw(st.integers(1, 3), label="slides per window")
        return SlidingEventTimeWindows.of(size, slide), kind, fixed_windows(kind, size, slide), 0
    gap = data.draw(st.integers(1, 15), label="gap")
    return EventTimeSessionWindows.with_gap(gap), kind, fixed_windows("tumbling", 1, 1), gap


def run_window_join(
    data: st.DataObject, parallelism: int, *, co_group: bool
) -> tuple[Counter[Any], Counter[Any]]:
    """(emitted, expected) of one random window join or co-group."""
    lefts = side_records(data, "L")
    rights = side_records(data, "R")
    left_lag = data.draw(st.integers(0, 25), label="left lag")
    right_lag = data.draw(st.integers(0, 25), label="right lag")
    assigner, kind, windows_of, gap = draw_windows(data)
    # Sessions are checked without allowed lateness: their reference stays a plain one.
    lateness = 0 if kind == "session" else data.draw(st.sampled_from([0, 0, 4, 15]), label="lateness")
    flow = Flow(parallelism=parallelism, batch_size=data.draw(st.integers(1, 5), label="batch size"))
    left, right = two_sources(flow, lefts, rights, left_lag, right_lag)
    if co_group:
        builder: Any = left.co_group(right)
    else:
        builder = left.join(right)
    windowed = builder.where("k").equal_to(itemgetter("rk")).window(assigner)
    if lateness or data.draw(st.booleans(), label="set lateness 0"):
        windowed = windowed.allowed_lateness(lateness)
    if co_group:
        how = data.draw(st.sampled_from(["function", "CoGroupFunction"]), label="form")
        joined = windowed.apply(ids_co_group if how == "function" else IdsCoGroup())
    else:
        how = data.draw(st.sampled_from(["function", "JoinFunction", "FlatJoinFunction", "flat"]))
        if how == "flat":
            joined = windowed.flat_apply(flat_pair)
        else:
            joined = windowed.apply(
                {"function": pair, "JoinFunction": PairJoin(), "FlatJoinFunction": PairFlatJoin()}[how]
            )
    spy = Spy(joined)
    out = joined.process(Stamped()).collect()
    flow.execute()

    spy.check_arrivals(lefts, rights, left_lag, right_lag)
    emit = co_groups if co_group else join_pairs
    expected: Counter[Any] = Counter()
    for arrivals in spy.arrivals():
        if kind == "session":
            expected += session_reference(arrivals, gap, emit)
        else:
            expected += window_reference(arrivals, windows_of, lateness, emit)
    ops = [op for op, _ in spy.instances]
    assert len(ops) == parallelism
    for op in ops:
        assert isinstance(op, WindowOperator)
        assert op.state_size() == 0  # the final watermark cleaned every window up
        assert len(op.event_timers) == 0
    late = sum(op.late_records for op in ops)
    event(f"{kind}: late records {'yes' if late else 'no'}")
    return Counter(out.values), expected


@FLOW_SETTINGS
@given(data=st.data())
def test_window_joins_match_the_reference(parallelism: int, data: st.DataObject) -> None:
    got, expected = run_window_join(data, parallelism, co_group=False)
    assert got == expected


@FLOW_SETTINGS
@given(data=st.data())
def test_co_groups_match_the_reference(parallelism: int, data: st.DataObject) -> None:
    got, expected = run_window_join(data, parallelism, co_group=True)
    assert got == expected


def test_the_window_references_on_a_hand_checked_sequence() -> None:
    # Tumbling windows of 10, allowed lateness 5; the watermark before each record is given.
    l1, l2, l3 = ({"k": "a", "id": f"L{i}"} for i in range(1, 4))
    r1, r2 = ({"rk": "a", "id": f"R{i}"} for i in range(1, 3))
    arrivals: list[Arrival] = [
        (LEFT, l1, 3, MIN_WATERMARK),
        (RIGHT, r1, 5, 0),
        (LEFT, l2, 12, 9),  # watermark 9: [0, 10) fires with L1 x R1
        (RIGHT, r2, 8, 12),  # 9 + 5 > 12: fires again, now with L1 x R1 and L1 x R2
        (LEFT, l3, 7, 14),  # 9 + 5 <= 14: late, dropped
    ]
    expected = Counter({(("L1", "R1"), 9): 2, (("L1", "R2"), 9): 1})
    assert window_reference(arrivals, fixed_windows("tumbling", 10, 10), 5, join_pairs) == expected
    co_grouped = window_reference(arrivals, fixed_windows("tumbling", 10, 10), 5, co_groups)
    assert co_grouped == Counter(
        {((("L1",), ("R1",)), 9): 1, ((("L1",), ("R1", "R2")), 9): 1, ((("L2",), ()), 19): 1}
    )
    # Sessions of gap 5: L1 [3, 8) and R1 [5, 10) merge and fire at 9. R2's own window [8, 13) has
    # ended for watermark 12, but it touches L2's open session [12, 17) and joins it (sessions merge
    # before the lateness check, as in Flink). L3's [1, 6) touches no open session: late.
    in_sessions: list[Arrival] = [*arrivals[:3], (RIGHT, r2, 8, 12), (LEFT, l3, 1, 14)]
    sessions = session_reference(in_sessions, 5, join_pairs)
    assert sessions == Counter({(("L1", "R1"), 9): 1, (("L2", "R2"), 16): 1})


# -- window joins by hand ------------------------------------------------------------------------------

# The records of each input here are in timestamp order, so none is behind its own input's watermark,
# and so none is late at the join, whatever the interleaving (the join's watermark is never ahead).


def stamped(records: list[tuple[str, int, Any]]) -> list[Record]:
    return [{"k": k, "ts": ts, "v": v} for k, ts, v in records]


async def test_a_window_join_emits_each_pair_once_stamped_with_the_window_end(parallelism: int) -> None:
    flow = Flow(parallelism=parallelism)
    punctuated = WatermarkStrategy.punctuated("ts")
    left = flow.from_iterable(
        stamped([("a", 1, 1), ("a", 2, 2), ("b", 3, 3), ("a", 15, 4)]), watermarks=punctuated
    )
    right = flow.from_iterable(stamped([("a", 4, 10), ("a", 9, 30), ("b", 12, 20)]), watermarks=punctuated)
    out = (
        left.join(right)
        .where("k")
        .equal_to("k")
        .window(TumblingEventTimeWindows.of(10))
        .apply(lambda a, b: a["v"] + b["v"])
        .process(Stamped())
        .collect()
    )
    await flow.run()
    # [0, 10) of "a": lefts 1, 2 x rights 10, 30; "b" has a left in [0, 10) and a right in [10, 20).
    assert sorted(out.values) == [(11, 9), (12, 9), (31, 9), (32, 9)]


async def test_a_co_group_sees_windows_with_one_side_only(parallelism: int) -> None:
    flow = Flow(parallelism=parallelism)
    punctuated = WatermarkStrategy.punctuated("ts")
    left = flow.from_iterable(stamped([("a", 1, 1), ("b", 3, 3)]), watermarks=punctuated)
    right = flow.from_iterable(stamped([("a", 4, 10), ("c", 12, 20)]), watermarks=punctuated)
    out = (
        left.co_group(right)
        .where("k")
        .equal_to("k")
        .window(TumblingEventTimeWindows.of(10))
        .apply(lambda ls, rs, out: out.collect(([r["v"] for r in ls], [r["v"] for r in rs])))
        .process(Stamped())
        .collect()
    )
    await flow.run()
    assert sorted(out.values) == [(([], [20]), 19), (([1], [10]), 9), (([3], []), 9)]


def test_a_stream_joins_itself() -> None:
    flow = Flow()
    records = flow.from_iterable(
        stamped([("a", 1, 1), ("a", 2, 2)]), watermarks=WatermarkStrategy.punctuated("ts")
    )
    out = (
        records.join(records)
        .where("k")
        .equal_to("k")
        .window(TumblingEventTimeWindows.of(10))
        .apply(lambda a, b: (a["v"], b["v"]))
        .collect()
    )
    flow.execute()
    assert sorted(out.values) == [(1, 1), (1, 2), (2, 1), (2, 2)]


def test_a_trigger_passes_through_to_the_join_window() -> None:
    def run(count: int) -> list[int]:
        flow = Flow()
        punctuated = WatermarkStrategy.punctuated("ts")
        left = flow.from_iterable(stamped([("a", 1, 1), ("a", 2, 2)]), watermarks=punctuated)
        right = flow.from_iterable(stamped([("a", 3, 10)]), watermarks=punctuated)
        out = (
            left.join(right)
            .where("k")
            .equal_to("k")
            .window(TumblingEventTimeWindows.of(100))
            .trigger(CountTrigger.of(count))
            .apply(lambda a, b: a["v"] + b["v"])
            .collect()
        )
        flow.execute()
        return sorted(out.values)

    # The count trigger replaces the event-time one: the window fires at its third record, whichever
    # input it comes from, and never with a count of four (the end of time does not fire it).
    assert run(3) == [11, 12]
    assert run(4) == []


def test_the_plan_names_the_join_and_its_inputs() -> None:
    flow = Flow(parallelism=2)
    a = flow.from_iterable([{"k": 1, "ts": 1}], watermarks=WatermarkStrategy.punctuated("ts"))
    window = TumblingEventTimeWindows.of(10)
    a.join(a).where("k").equal_to("k").window(window).apply(pair).collect()
    a.join(a).where("k").equal_to("k").window(window).apply(pair, name="again").collect()
    a.key_by("k").interval_join(a.key_by("k")).between(0, 1).process(flat_process).collect()
    described = flow.plan().describe()
    for name in ("join.left", "join.right", "[join ", "again.left", "[again ", "interval_join.right"):
        assert name in described
    assert "join-2" not in described


# -- interval joins in flows ---------------------------------------------------------------------------

LEFT_LATE: OutputTag[Record] = OutputTag("left late")
RIGHT_LATE: OutputTag[Record] = OutputTag("right late")


class PairProcess(ProcessJoinFunction[Record, Record, Any]):
    """Emits the pair with the timestamps the context gives."""

    def process_element(self, left: Record, right: Record, ctx: ProcessJoinContext, out: Collector) -> None:
        assert ctx.timestamp == max(ctx.left_timestamp, ctx.right_timestamp)
        assert ctx.current_key == left["k"] == right["rk"]
        out.collect(((left["id"], right["id"]), ctx.left_timestamp, ctx.right_timestamp))


def flat_process(left: Record, right: Record, ctx: ProcessJoinContext, out: Collector) -> None:
    out.collect(((left["id"], right["id"]), ctx.left_timestamp, ctx.right_timestamp))


def in_bounds(
    left: int, right: int, lower: int, upper: int, lower_exclusive: bool, upper_exclusive: bool
) -> bool:
    low_ok = left + lower < right if lower_exclusive else left + lower <= right
    high_ok = right < left + upper if upper_exclusive else right <= left + upper
    return low_ok and high_ok


def interval_reference(
    arrivals: list[Arrival], lower: int, upper: int, lower_exclusive: bool, upper_exclusive: bool
) -> tuple[Counter[Any], set[str]]:
    """(results with their timestamps, ids of late records): a record strictly below the watermark
    before it is late; every other left and right of the same key within the bounds is a pair."""
    on_time = [(side, record, ts) for side, record, ts, watermark in arrivals if ts >= watermark]
    late = {record["id"] for _, record, ts, watermark in arrivals if ts < watermark}
    expected: Counter[Any] = Counter()
    for left_side, left, left_ts in on_time:
        for right_side, right, right_ts in on_time:
            if left_side != LEFT or right_side != RIGHT or key_of(left) != key_of(right):
                continue
            if in_bounds(left_ts, right_ts, lower, upper, lower_exclusive, upper_exclusive):
                expected[(((left["id"], right["id"]), left_ts, right_ts), max(left_ts, right_ts))] += 1
    return expected, late


@FLOW_SETTINGS
@given(data=st.data())
def test_interval_joins_match_the_reference(parallelism: int, data: st.DataObject) -> None:
    lefts = side_records(data, "L")
    rights = side_records(data, "R")
    left_lag = data.draw(st.integers(0, 25), label="left lag")
    right_lag = data.draw(st.integers(0, 25), label="right lag")
    lower = data.draw(st.integers(-20, 20), label="lower")
    upper = lower + data.draw(st.integers(0, 25), label="width")
    lower_exclusive = data.draw(st.booleans(), label="lower exclusive")
    upper_exclusive = data.draw(st.booleans(), label="upper exclusive")
    if upper - lower < lower_exclusive + upper_exclusive:
        upper += 2  # exclusive ends must leave a timestamp (the empty case is a PlanError, below)
    flow = Flow(parallelism=parallelism, batch_size=data.draw(st.integers(1, 5), label="batch size"))
    left, right = two_sources(flow, lefts, rights, left_lag, right_lag)
    between = left.key_by("k").interval_join(right.key_by(itemgetter("rk"))).between(lower, upper)
    if lower_exclusive:
        between = between.lower_bound_exclusive()
    if upper_exclusive:
        between = between.upper_bound_exclusive()
    between = between.side_output_left_late_data(LEFT_LATE).side_output_right_late_data(RIGHT_LATE)
    form: Any = data.draw(st.sampled_from([PairProcess(), flat_process]), label="form")
    joined: DataStream[Any] = between.process(form)
    spy = Spy(joined)
    out = joined.process(Stamped()).collect()
    late_lefts = joined.get_side_output(LEFT_LATE).process(Stamped()).collect()
    late_rights = joined.get_side_output(RIGHT_LATE).process(Stamped()).collect()
    flow.execute()

    spy.check_arrivals(lefts, rights, left_lag, right_lag)
    expected, late = interval_reference(
        [a for arrivals in spy.arrivals() for a in arrivals], lower, upper, lower_exclusive, upper_exclusive
    )
    assert Counter(out.values) == expected
    dropped = late_lefts.values + late_rights.values
    assert sorted(record["id"] for record, _ in dropped) == sorted(late)
    assert all(record["ts"] == ts for record, ts in dropped)
    assert all(record["id"][0] == "L" for record, _ in late_lefts.values)
    assert all(record["id"][0] == "R" for record, _ in late_rights.values)
    event(f"late records {'yes' if late else 'no'}")
    for op, _ in spy.instances:
        assert isinstance(op, KeyedProcessOperator)
        assert spy.buffered_at_close[id(op)] == (0, 0)
        assert len(op.event_timers) == 0


# -- the interval join operator, driven directly -------------------------------------------------------


def record(side: int, key: str, ts: int) -> Record:
    """A record of the operator tests: its id is the side's letter and its timestamp."""
    return {"k" if side == LEFT else "rk": key, "id": f"{'LR'[side]}{ts}"}


class Join:
    """An interval join operator with tagged input built by hand."""

    def __init__(self, lower: int, upper: int, index: int = 0, parallelism: int = 1) -> None:
        self.op = KeyedProcessOperator(
            "j", IntervalJoinFunction(process_join_function(flat_process), lower, upper), itemgetter(1)
        )
        self.op.open(OperatorContext("j", index=index, parallelism=parallelism, clock=ManualClock(0)))
        self.tag = {LEFT: Tagger(LEFT, itemgetter("k")), RIGHT: Tagger(RIGHT, itemgetter("rk"))}

    def feed(self, items: list[tuple[int, str, int]], watermark: int | None = None) -> list[Any]:
        """``items`` are (side, key, ts); the record's id is side letter + ts. ``watermark`` comes
        after them. Returns (left id, right id, result timestamp) triples."""
        values = [self.tag[side](record(side, key, ts)) for side, key, ts in items]
        marks = [(len(values), watermark)] if watermark is not None else None
        out = self.op.process(Batch(values, [ts for _, _, ts in items], marks))
        assert out.timestamps is not None
        return [(ids[0], ids[1], ts) for (ids, _, _), ts in zip(out.values, out.timestamps, strict=True)]

    def buffered(self) -> dict[int, list[int]]:
        """The timestamps each side holds, over all keys."""
        held: dict[int, list[int]] = {LEFT: [], RIGHT: []}
        for tables in self.op.backend.snapshot().values():
            for name, side in ((LEFT_BUFFER, LEFT), (RIGHT_BUFFER, RIGHT)):
                for buffer in tables.get(name, {}).values():
                    held[side].extend(buffer)
        return {side: sorted(held[side]) for side in held}


def test_a_record_is_kept_until_the_watermark_passes_its_last_possible_partner() -> None:
    join = Join(0, 5)  # left l joins right r when l <= r <= l + 5
    assert join.feed([(LEFT, "a", 10)], watermark=15) == []
    # Watermark 15: a right record at 15 is not late (late means strictly below the watermark) and
    # still finds the left one at 10. Flink would have cleaned it up at 15 already.
    assert join.buffered() == {LEFT: [10], RIGHT: []}
    assert join.feed([(RIGHT, "a", 15)]) == [("L10", "R15", 15)]
    assert join.buffered() == {LEFT: [10], RIGHT: [15]}
    join.feed([], watermark=16)  # no right record at 15 or below can come any more
    assert join.buffered() == {LEFT: [], RIGHT: []}
    assert join.op.backend.state_size(LEFT_BUFFER) == 0
    assert join.op.backend.state_size(RIGHT_BUFFER) == 0
    assert len(join.op.event_timers) == 0


def test_records_strictly_below_the_watermark_are_late() -> None:
    join = Join(-5, 5)
    join.feed([(RIGHT, "a", 12)], watermark=10)
    # The left at 9 is late (dropped, even though a partner is buffered); the left at 10 is on time.
    assert join.feed([(LEFT, "a", 9), (LEFT, "a", 10)]) == [("L10", "R12", 12)]
    assert join.op.function.late_records == 1  # type: ignore[attr-defined]
    assert join.buffered() == {LEFT: [10], RIGHT: [12]}


def test_a_record_no_later_record_can_join_is_not_buffered() -> None:
    join = Join(-10, -5)  # right r joins left l when l - 10 <= r <= l - 5
    join.feed([(RIGHT, "a", 12), (RIGHT, "a", 14)], watermark=20)
    # A right record stays while a left record up to r + 10 may come: both are still there.
    assert join.buffered() == {LEFT: [], RIGHT: [12, 14]}
    assert join.feed([(LEFT, "a", 20)]) == [("L20", "R12", 20), ("L20", "R14", 20)]
    # The left at 20 can only meet rights at 15 or below, which are late now: it is not kept.
    assert join.buffered() == {LEFT: [], RIGHT: [12, 14]}
    join.feed([], watermark=23)  # lefts up to 22 are late: the right at 12 is done
    assert join.buffered() == {LEFT: [], RIGHT: [14]}


def test_state_stays_bounded_on_an_endless_in_order_stream() -> None:
    join = Join(-3, 3)
    most = 0
    for ts in range(1_000):
        pairs = join.feed([(LEFT, "a", ts), (RIGHT, "a", ts)], watermark=ts - 2)
        assert {(l_id, r_id) for l_id, r_id, _ in pairs} == {
            (f"L{ts}", f"R{ts}"),
            *((f"L{ts}", f"R{t}") for t in range(max(0, ts - 3), ts)),
            *((f"L{t}", f"R{ts}") for t in range(max(0, ts - 3), ts)),
        }
        held = join.buffered()
        most = max(most, len(held[LEFT]) + len(held[RIGHT]))
    assert most <= 12  # a record leaves once the watermark is 3 ms past it: a few per side
    join.feed([], watermark=MAX_WATERMARK)
    assert join.buffered() == {LEFT: [], RIGHT: []}
    assert len(join.op.event_timers) == 0


def test_buffers_and_timers_survive_a_snapshot_restored_on_two_instances() -> None:
    whole = Join(-4, 6)
    keys = "abcdefgh"
    first = [(LEFT if i % 3 else RIGHT, keys[i % 8], (i * 7) % 30) for i in range(40)]
    whole.feed(first, watermark=12)
    state = pickle.loads(pickle.dumps(whole.op.snapshot_state()))  # a checkpoint is pickled
    rest = [(RIGHT if i % 3 else LEFT, keys[(i * 5) % 8], 12 + (i * 11) % 20) for i in range(40)]
    expected = Counter(whole.feed(rest, watermark=MAX_WATERMARK))
    assert expected  # the rest joins buffered records, so the buffers must come back

    got: Counter[Any] = Counter()
    max_parallelism = whole.op.context.max_parallelism
    for index in range(2):
        half = Join(-4, 6, index, 2)
        half.op.restore_state([state])
        half.op.timers.watermark = 12  # not part of a snapshot: the inputs bring it back
        mine = [
            item
            for item in rest
            if operator_index(key_group(item[1], max_parallelism), max_parallelism, 2) == index
        ]
        got.update(half.feed(mine, watermark=MAX_WATERMARK))
        assert half.buffered() == {LEFT: [], RIGHT: []}
        assert len(half.op.event_timers) == 0
    assert got == expected


@settings(max_examples=150, deadline=None, derandomize=True)
@given(data=st.data())
def test_the_operator_matches_the_reference_and_holds_only_joinable_records(data: st.DataObject) -> None:
    lower = data.draw(st.integers(-15, 15), label="lower")
    upper = lower + data.draw(st.integers(0, 20), label="width")
    join = Join(lower, upper)
    # Any interleaving, any batches, and a watermark that moves by its own rules (the test's): about
    # one event in four moves it. Timestamps are dense, so bounds are hit exactly and often.
    records = st.tuples(st.sampled_from([LEFT, RIGHT]), st.sampled_from("ab"), st.integers(0, 30))
    events = data.draw(
        st.lists(st.one_of(records, records, records, st.integers(-5, 40)), max_size=60),
        label="records and watermarks",
    )
    arrivals: list[Arrival] = []
    got: Counter[Any] = Counter()
    watermark = MIN_WATERMARK
    batch: list[tuple[int, str, int]] = []
    for item in [*events, MAX_WATERMARK]:
        if isinstance(item, tuple):
            side, key, ts = item
            # Ids are side letter + timestamp, so records alike share one: compare multiplicities.
            arrivals.append((side, record(side, key, ts), ts, watermark))
            batch.append(item)
            continue
        if item <= watermark:
            continue
        watermark = item
        for left_id, right_id, ts in join.feed(batch, watermark=watermark):
            got[(left_id, right_id, ts)] += 1
        batch = []
        held = join.buffered()
        if watermark < MAX_WATERMARK:
            assert all(ts + upper >= watermark for ts in held[LEFT])
            assert all(ts - lower >= watermark for ts in held[RIGHT])
    expected, _ = interval_reference(arrivals, lower, upper, False, False)
    projected: Counter[Any] = Counter()
    for ((ids, _, _), ts), n in expected.items():
        projected[(ids[0], ids[1], ts)] += n
    assert got == projected
    assert join.buffered() == {LEFT: [], RIGHT: []}
    assert len(join.op.event_timers) == 0


# -- misuse --------------------------------------------------------------------------------------------


def streams() -> tuple[DataStream[Record], DataStream[Record]]:
    flow = Flow()
    return flow.from_iterable([{"k": 1, "ts": 1}]), flow.from_iterable([{"k": 1, "ts": 2}])


@pytest.mark.parametrize("what", ["join", "co_group"])
def test_window_join_steps_out_of_order_are_plan_errors(what: str) -> None:
    a, b = streams()
    window = TumblingEventTimeWindows.of(10)

    def start() -> Any:
        return getattr(a, what)(b)

    with pytest.raises(PlanError, match="where"):
        start().equal_to("k")
    with pytest.raises(PlanError, match="equal_to"):
        start().window(window)
    with pytest.raises(PlanError, match="equal_to"):
        start().where("k").window(window)
    with pytest.raises(PlanError, match="window"):
        start().where("k").equal_to("k").apply(pair)
    with pytest.raises(PlanError, match="window"):
        start().where("k").equal_to("k").allowed_lateness(5)
    with pytest.raises(PlanError, match="window"):
        start().where("k").equal_to("k").trigger(CountTrigger.of(2))
    with pytest.raises(PlanError, match="WindowAssigner"):
        start().where("k").equal_to("k").window(CountTrigger.of(2))
    with pytest.raises(PlanError, match="negative"):
        start().where("k").equal_to("k").window(window).allowed_lateness(-1)
    with pytest.raises(PlanError, match="Trigger"):
        start().where("k").equal_to("k").window(window).trigger(window)
    with pytest.raises(PlanError, match="key function"):
        start().where(42)
    with pytest.raises(PlanError, match="apply"):
        start().where("k").equal_to("k").window(window).apply(42)

    async def coroutine(*args: Any) -> None: ...

    with pytest.raises(PlanError, match="coroutine"):
        start().where(coroutine)
    with pytest.raises(PlanError, match="coroutine"):
        start().where("k").equal_to("k").window(window).apply(coroutine)


def test_joining_streams_of_different_flows_is_a_plan_error() -> None:
    a, _ = streams()
    b, _ = streams()
    with pytest.raises(PlanError, match="different flows"):
        a.join(b)
    with pytest.raises(PlanError, match="different flows"):
        a.co_group(b)
    with pytest.raises(PlanError, match="different flows"):
        a.key_by("k").interval_join(b.key_by("k"))


def test_interval_join_misuse_is_a_plan_error() -> None:
    a, b = streams()
    keyed_a: KeyedStream[Record, Any] = a.key_by("k")
    with pytest.raises(PlanError, match="lower <= upper"):
        keyed_a.interval_join(b.key_by("k")).between(5, 1)
    with pytest.raises(PlanError, match="keyed stream"):
        keyed_a.interval_join(b)  # type: ignore[arg-type]
    with pytest.raises(PlanError, match="integer"):
        keyed_a.interval_join(b.key_by("k")).between(0.5, 1)  # type: ignore[arg-type]
    empty = (
        keyed_a.interval_join(b.key_by("k")).between(0, 1).lower_bound_exclusive().upper_bound_exclusive()
    )
    with pytest.raises(PlanError, match="empty"):
        empty.process(flat_process)
    with pytest.raises(PlanError, match="ProcessJoinFunction"):
        keyed_a.interval_join(b.key_by("k")).between(0, 1).process(42)  # type: ignore[arg-type]
    with pytest.raises(PlanError, match="OutputTag"):
        keyed_a.interval_join(b.key_by("k")).between(0, 1).side_output_left_late_data("late")  # type: ignore[arg-type]
    # between(0, 0) joins equal timestamps; one exclusive end leaves nothing.
    keyed_a.interval_join(b.key_by("k")).between(0, 0).process(flat_process).collect()
    with pytest.raises(PlanError, match="empty"):
        keyed_a.interval_join(b.key_by("k")).between(0, 0).upper_bound_exclusive().process(flat_process)


def test_an_interval_join_without_event_time_fails_the_job() -> None:
    a, b = streams()
    a.key_by("k").interval_join(b.key_by("k")).between(0, 1).process(flat_process).collect()
    with pytest.raises(StateError, match="event time"):
        a.flow.execute()


def test_the_operator_rejects_empty_bounds_and_copies_cleanly() -> None:
    with pytest.raises(ValueError, match="lower <= upper"):
        IntervalJoinFunction(process_join_function(flat_process), 1, 0)
    function = IntervalJoinFunction(PairProcess(), -1, 1)
    assert copy.deepcopy(function).lower == -1
