"""Keyed process functions: every kind of keyed state, event-time and processing-time timers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Any

import pytest

from actorflow import (
    MAX_WATERMARK,
    MIN_WATERMARK,
    AggregateFunction,
    AggregatingStateDescriptor,
    Collector,
    Context,
    Flow,
    KeyedProcessFunction,
    ListStateDescriptor,
    ManualClock,
    MapStateDescriptor,
    ProcessFunction,
    PushSource,
    ReducingStateDescriptor,
    RuntimeContext,
    StateError,
    TimeDomain,
    ValueStateDescriptor,
    WatermarkStrategy,
)
from tests.recorder import Recorder

KEYS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace"]  # all three instances at p=3


def keyed_records(n: int = 70) -> list[dict[str, Any]]:
    """Interleaved keys, values that differ per record, increasing event time."""
    return [{"k": KEYS[(i * 3) % len(KEYS)], "v": (i * 13) % 17, "ts": 10 * i} for i in range(n)]


def by_ts() -> WatermarkStrategy:
    return WatermarkStrategy.punctuated(lambda r: r["ts"], lag_ms=0)


def per_key(values: list[tuple[Any, ...]]) -> dict[Hashable, list[tuple[Any, ...]]]:
    """Group outputs ``(key, ...)`` by key, keeping their order (the order within a key is defined)."""
    grouped: dict[Hashable, list[tuple[Any, ...]]] = {}
    for value in values:
        grouped.setdefault(value[0], []).append(value[1:])
    return grouped


async def run_keyed(
    function: KeyedProcessFunction[Any, Any],
    records: list[dict[str, Any]],
    parallelism: int,
    *,
    event_time: bool = False,
    batch_size: int = 4,
) -> list[Any]:
    flow = Flow(parallelism=parallelism, batch_size=batch_size)
    stream = flow.from_iterable(records, watermarks=by_ts() if event_time else None)
    out = stream.key_by(lambda r: r["k"]).process(function).collect()
    await flow.run()
    return out.values


def reference(records: list[dict[str, Any]], step: Callable[[Any, Any], tuple[Any, Any]]) -> dict[Any, Any]:
    """What a per-key fold gives: ``step(state, value) -> (new state, output)`` for each key alone."""
    states: dict[str, Any] = {}
    outputs: dict[str, list[tuple[Any, ...]]] = {}
    for record in records:
        state, output = step(states.get(record["k"]), record["v"])
        states[record["k"]] = state
        outputs.setdefault(record["k"], []).append((output,))
    return outputs


# -- every kind of keyed state -----------------------------------------------------------------------


class ValueCount(KeyedProcessFunction[dict[str, Any], tuple[str, Any]]):
    def open(self, ctx: RuntimeContext) -> None:
        self.count = ctx.get_state(ValueStateDescriptor("count", default=0))
        self.last = ctx.get_state(ValueStateDescriptor("last"))

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        self.count.update(self.count.value() + 1)
        out.collect((ctx.current_key, (self.count.value(), self.last.value())))
        if value["v"] == 0:
            self.last.clear()
        else:
            self.last.update(value["v"])


async def test_value_state(parallelism: int) -> None:
    records = keyed_records()

    def step(state: Any, v: int) -> tuple[Any, Any]:
        count, last = state or (0, None)
        return (count + 1, None if v == 0 else v), (count + 1, last)

    out = await run_keyed(ValueCount(), records, parallelism)
    assert per_key(out) == reference(records, step)


class ListHistory(KeyedProcessFunction[dict[str, Any], tuple[str, Any]]):
    def open(self, ctx: RuntimeContext) -> None:
        self.history = ctx.get_list_state(ListStateDescriptor("history"))

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        self.history.add(value["v"])
        items = self.history.get()
        if len(items) == 4:
            self.history.update([])  # an empty list clears the entry
        elif value["v"] % 5 == 0:
            self.history.add_all([-1, -2])
        out.collect((ctx.current_key, tuple(items)))


async def test_list_state(parallelism: int) -> None:
    records = keyed_records()

    def step(state: Any, v: int) -> tuple[Any, Any]:
        items = [*(state or []), v]
        output = tuple(items)
        if len(items) == 4:
            items = []
        elif v % 5 == 0:
            items += [-1, -2]
        return items, output

    out = await run_keyed(ListHistory(), records, parallelism)
    assert per_key(out) == reference(records, step)


class MapTally(KeyedProcessFunction[dict[str, Any], tuple[str, Any]]):
    def open(self, ctx: RuntimeContext) -> None:
        self.tally = ctx.get_map_state(MapStateDescriptor("tally"))

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        bucket = value["v"] % 3
        if bucket == 0 and self.tally.contains(1):
            self.tally.remove(1)
        else:
            self.tally.put(bucket, self.tally.get(bucket, 0) + 1)
        out.collect((ctx.current_key, tuple(sorted(self.tally.items()))))


async def test_map_state(parallelism: int) -> None:
    records = keyed_records()

    def step(state: Any, v: int) -> tuple[Any, Any]:
        tally = dict(state or {})
        bucket = v % 3
        if bucket == 0 and 1 in tally:
            del tally[1]
        else:
            tally[bucket] = tally.get(bucket, 0) + 1
        return tally, tuple(sorted(tally.items()))

    out = await run_keyed(MapTally(), records, parallelism)
    assert per_key(out) == reference(records, step)


class ReducingMax(KeyedProcessFunction[dict[str, Any], tuple[str, Any]]):
    def open(self, ctx: RuntimeContext) -> None:
        self.total = ctx.get_reducing_state(ReducingStateDescriptor("total", lambda a, b: a + b))
        self.highest = ctx.get_reducing_state(ReducingStateDescriptor("highest", max))

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        before = self.total.get()
        self.total.add(value["v"])
        self.highest.add(value["v"])
        out.collect((ctx.current_key, (before, self.total.get(), self.highest.get())))


async def test_reducing_state(parallelism: int) -> None:
    records = keyed_records()

    def step(state: Any, v: int) -> tuple[Any, Any]:
        total, highest = state if state is not None else (None, None)
        new_total = v if total is None else total + v
        new_highest = v if highest is None else max(highest, v)
        return (new_total, new_highest), (total, new_total, new_highest)

    out = await run_keyed(ReducingMax(), records, parallelism)
    assert per_key(out) == reference(records, step)


class Mean(AggregateFunction[int, tuple[int, int], float]):
    def create_accumulator(self) -> tuple[int, int]:
        return (0, 0)

    def add(self, value: int, accumulator: tuple[int, int]) -> tuple[int, int]:
        return (accumulator[0] + value, accumulator[1] + 1)

    def get_result(self, accumulator: tuple[int, int]) -> float:
        return accumulator[0] / accumulator[1]


class AggregatingMean(KeyedProcessFunction[dict[str, Any], tuple[str, Any]]):
    def open(self, ctx: RuntimeContext) -> None:
        self.mean = ctx.get_aggregating_state(AggregatingStateDescriptor("mean", Mean()))

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        before = self.mean.get()
        self.mean.add(value["v"])
        out.collect((ctx.current_key, (before, self.mean.get())))
        if value["v"] == 16:
            self.mean.clear()


async def test_aggregating_state(parallelism: int) -> None:
    records = keyed_records()

    def step(state: Any, v: int) -> tuple[Any, Any]:
        values = [*(state or []), v]
        before = sum(state) / len(state) if state else None
        return ([] if v == 16 else values), (before, sum(values) / len(values))

    out = await run_keyed(AggregatingMean(), records, parallelism)
    assert per_key(out) == reference(records, step)


async def test_state_results_are_identical_at_parallelism_1_and_3() -> None:
    records = keyed_records()
    functions: list[Callable[[], KeyedProcessFunction[Any, Any]]] = [
        ValueCount,
        ListHistory,
        MapTally,
        ReducingMax,
        AggregatingMean,
    ]
    for make in functions:
        one = await run_keyed(make(), records, 1)
        three = await run_keyed(make(), records, 3)
        assert per_key(one) == per_key(three), make.__name__
        assert one != [] and sorted(one, key=repr) == sorted(three, key=repr)


async def test_state_is_per_key_even_when_keys_share_an_instance(parallelism: int) -> None:
    # 300 keys over at most 3 instances: many keys share an instance (and some a key group).
    keys = [f"key-{i}" for i in range(300)]
    records = [{"k": keys[(i * 7) % len(keys)], "v": i} for i in range(1200)]

    class Count(KeyedProcessFunction[dict[str, Any], tuple[str, int, int]]):
        def open(self, ctx: RuntimeContext) -> None:
            self.count = ctx.get_state(ValueStateDescriptor("count", default=0))
            self.index = ctx.index

        def process_element(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
            self.count.update(self.count.value() + 1)
            out.collect((ctx.current_key, self.count.value(), self.index))

    out = await run_keyed(Count(), records, parallelism, batch_size=16)
    counts = per_key(out)
    assert sorted(counts) == sorted(keys)
    for key, seen in counts.items():
        assert [count for count, _ in seen] == [1, 2, 3, 4], key
        assert len({index for _, index in seen}) == 1, f"{key} moved between instances"
    assert len({index for *_, index in out}) == parallelism


async def test_a_state_name_declared_with_two_kinds_is_a_state_error(parallelism: int) -> None:
    class Confused(KeyedProcessFunction[Any, Any]):
        def open(self, ctx: RuntimeContext) -> None:
            ctx.get_state(ValueStateDescriptor("x"))
            ctx.get_list_state(ListStateDescriptor("x"))

        def process_element(self, value: Any, ctx: Context, out: Collector) -> None:
            out.collect(value)

    with pytest.raises(StateError, match="'x'"):
        await run_keyed(Confused(), keyed_records(5), parallelism)


# -- keyed state outside a keyed stream --------------------------------------------------------------


async def test_keyed_state_in_a_non_keyed_process_function_is_a_state_error(parallelism: int) -> None:
    class NotKeyed(ProcessFunction[Any, Any]):
        def open(self, ctx: RuntimeContext) -> None:
            self.count = ctx.get_state(ValueStateDescriptor("count", default=0))

        def process_element(self, value: Any, ctx: Context, out: Collector) -> None:
            out.collect(value)

    flow = Flow(parallelism=parallelism)
    flow.from_iterable(range(5)).rebalance().process(NotKeyed()).collect()
    with pytest.raises(StateError, match="key_by"):
        await flow.run()


@pytest.mark.parametrize("kind", ["list", "map", "reducing", "aggregating"])
async def test_every_state_kind_needs_a_keyed_stream(kind: str) -> None:
    class NotKeyed(ProcessFunction[Any, Any]):
        def open(self, ctx: RuntimeContext) -> None:
            if kind == "list":
                ctx.get_list_state(ListStateDescriptor("s"))
            elif kind == "map":
                ctx.get_map_state(MapStateDescriptor("s"))
            elif kind == "reducing":
                ctx.get_reducing_state(ReducingStateDescriptor("s", max))
            else:
                ctx.get_aggregating_state(AggregatingStateDescriptor("s", Mean()))

        def process_element(self, value: Any, ctx: Context, out: Collector) -> None:
            out.collect(value)

    flow = Flow()
    flow.from_iterable(range(5)).process(NotKeyed()).collect()
    with pytest.raises(StateError):
        await flow.run()


async def test_timers_in_a_non_keyed_process_function_are_a_state_error(parallelism: int) -> None:
    class NotKeyed(ProcessFunction[Any, Any]):
        def process_element(self, value: Any, ctx: Context, out: Collector) -> None:
            ctx.timer_service().register_event_time_timer(100)

    flow = Flow(parallelism=parallelism)
    flow.from_iterable(range(5)).rebalance().process(NotKeyed()).collect()
    with pytest.raises(StateError, match="key_by"):
        await flow.run()


async def test_current_key_outside_a_keyed_stream_is_a_state_error() -> None:
    class NotKeyed(ProcessFunction[Any, Any]):
        def process_element(self, value: Any, ctx: Context, out: Collector) -> None:
            out.collect(ctx.current_key)

    flow = Flow()
    flow.from_iterable(range(5)).process(NotKeyed()).collect()
    with pytest.raises(StateError):
        await flow.run()


# -- event-time timers -------------------------------------------------------------------------------


class TimerLog(KeyedProcessFunction[dict[str, Any], tuple[Any, ...]]):
    """Registers the timers a record lists; logs every record and every firing.

    ``("rec", key, ts, watermark, index, timers, time_domain)`` per record and
    ``("timer", key, time, watermark, index, ctx.timestamp, time_domain)`` per firing. In ``on_timer``
    a firing of a time listed in ``chain`` registers the times listed there for the same key.
    """

    def __init__(self, chain: dict[int, list[int]] | None = None, delete: bool = True) -> None:
        self.chain = chain or {}
        self.delete = delete

    def open(self, ctx: RuntimeContext) -> None:
        self.index = ctx.index

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        timers = ctx.timer_service()
        out.collect(
            (
                "rec",
                ctx.current_key,
                ctx.timestamp,
                timers.current_watermark(),
                self.index,
                tuple(value.get("timers", ())),
                ctx.time_domain,
            )
        )
        for time in value.get("timers", ()):
            timers.register_event_time_timer(time)
        for time in value.get("delete", ()):
            timers.delete_event_time_timer(time)

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        watermark = ctx.timer_service().current_watermark()
        out.collect(
            ("timer", ctx.current_key, timestamp, watermark, self.index, ctx.timestamp, ctx.time_domain)
        )
        for time in self.chain.get(timestamp, ()):
            ctx.timer_service().register_event_time_timer(time)


def key_view(out: list[tuple[Any, ...]]) -> dict[Hashable, list[tuple[Any, int, int]]]:
    """Per key, the ``(kind, time, watermark)`` sequence."""
    view: dict[Hashable, list[tuple[Any, int, int]]] = {}
    for kind, key, time, watermark, *_ in out:
        view.setdefault(key, []).append((kind, time, watermark))
    return view


async def test_event_time_timers_fire_when_the_watermark_passes_them(parallelism: int) -> None:
    records = [
        {"k": "a", "ts": 10, "timers": [30]},
        {"k": "b", "ts": 20, "timers": [25]},
        {"k": "a", "ts": 22, "timers": [30, 30]},  # the same (key, time) again: still one timer
        {"k": "b", "ts": 26},
        {"k": "a", "ts": 35, "timers": [100]},
    ]
    out = await run_keyed(TimerLog(), records, parallelism, event_time=True, batch_size=2)
    assert key_view(out) == {
        "a": [
            ("rec", 10, MIN_WATERMARK),
            ("rec", 22, 20),
            ("rec", 35, 26),
            ("timer", 30, 35),
            ("timer", 100, MAX_WATERMARK),  # the end of a bounded input fires what is left
        ],
        "b": [
            ("rec", 20, 10),
            ("rec", 26, 22),
            ("timer", 25, 26),
        ],
    }


async def test_timers_passed_by_one_watermark_fire_in_time_order(parallelism: int) -> None:
    records = [
        {"k": "a", "ts": 1, "timers": [300, 100, 250, 200]},
        {"k": "a", "ts": 2, "timers": [150, 100]},
        {"k": "a", "ts": 1000},
    ]
    out = await run_keyed(TimerLog(), records, parallelism, event_time=True)
    fired = [(time, watermark) for kind, time, watermark in key_view(out)["a"] if kind == "timer"]
    assert fired == [(100, 1000), (150, 1000), (200, 1000), (250, 1000), (300, 1000)]


async def test_event_time_timers_fire_once_in_order_and_neither_early_nor_late(parallelism: int) -> None:
    records = []
    for i in range(200):
        ts = 7 * i
        timers = [(ts // 50 + 1) * 50 + 20]  # consecutive records of a key repeat a time
        if i % 23 == 0:
            timers.append(10**9 + i)  # beyond the input: fires at the final watermark
        records.append({"k": KEYS[i % len(KEYS)], "ts": ts, "timers": timers})
    out = await run_keyed(TimerLog(), records, parallelism, event_time=True, batch_size=8)

    registered = {(r["k"], t) for r in records for t in r["timers"]}
    fired = [(key, time) for kind, key, time, *_ in out if kind == "timer"]
    assert sorted(fired) == sorted(registered), "every (key, time) fires exactly once"

    logs: dict[int, list[tuple[Any, ...]]] = {}
    for entry in out:
        logs.setdefault(entry[4], []).append(entry)
    assert len(logs) == parallelism
    for log in logs.values():
        pending: set[tuple[Hashable, int]] = set()
        last_fired = MIN_WATERMARK
        for kind, key, time, watermark, _, extra, domain in log:
            if kind == "rec":
                assert domain is None
                late = {timer for timer in pending if timer[1] <= watermark}
                assert not late, f"timers {late} passed by watermark {watermark} did not fire"
                pending.update((key, t) for t in extra if t > watermark)
            else:
                assert (key, time) in pending or time <= watermark
                pending.discard((key, time))
                assert watermark >= time, "fired early"
                assert time >= last_fired, "fired out of order"
                assert extra == time and domain is TimeDomain.EVENT_TIME
                last_fired = time
                if time > 10**9:
                    assert watermark == MAX_WATERMARK
        assert not pending


async def test_delete_event_time_timer(parallelism: int) -> None:
    records = [
        {"k": "a", "ts": 1, "timers": [50, 60]},
        {"k": "b", "ts": 2, "timers": [50]},
        {"k": "a", "ts": 3, "delete": [50, 70]},  # 70 was never registered: nothing happens
        {"k": "a", "ts": 100},
    ]
    out = await run_keyed(TimerLog(), records, parallelism, event_time=True)
    view = key_view(out)
    assert [entry for entry in view["a"] if entry[0] == "timer"] == [("timer", 60, 100)]
    assert [entry for entry in view["b"] if entry[0] == "timer"] == [("timer", 50, 100)]


async def test_timers_registered_in_on_timer_for_a_passed_time_fire_in_the_same_pass(
    parallelism: int,
) -> None:
    records = [
        {"k": "a", "ts": 10, "timers": [50]},
        {"k": "a", "ts": 100},
        {"k": "a", "ts": 110},
    ]
    # 50 fires at watermark 100 and registers 40 (already passed) and 1000; 1000 fires at the end
    # of the input and registers 2000, which the final watermark has passed too.
    function = TimerLog(chain={50: [40, 1000], 1000: [2000]})
    out = await run_keyed(function, records, parallelism, event_time=True)
    assert key_view(out)["a"] == [
        ("rec", 10, MIN_WATERMARK),
        ("rec", 100, 10),
        ("timer", 50, 100),
        ("timer", 40, 100),
        ("rec", 110, 100),
        ("timer", 1000, MAX_WATERMARK),
        ("timer", 2000, MAX_WATERMARK),
    ]


async def test_on_timer_context_has_key_timestamp_and_domain(parallelism: int) -> None:
    records = [{"k": key, "ts": i, "timers": [500 + i]} for i, key in enumerate(KEYS)]
    out = await run_keyed(TimerLog(), records, parallelism, event_time=True)
    firings = [entry for entry in out if entry[0] == "timer"]
    assert sorted((key, time, ts, domain) for _, key, time, _, _, ts, domain in firings) == [
        (key, 500 + i, 500 + i, TimeDomain.EVENT_TIME) for i, key in enumerate(KEYS)
    ]
    assert all(domain is None for kind, *_, domain in out if kind == "rec")


async def test_timer_output_carries_the_timer_time_as_its_timestamp(parallelism: int) -> None:
    class EmitOnTimer(KeyedProcessFunction[dict[str, Any], Any]):
        def process_element(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
            ctx.timer_service().register_event_time_timer(value["ts"] + 1000)

        def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
            out.collect(ctx.current_key)

    class Stamp(ProcessFunction[Any, Any]):
        def process_element(self, value: Any, ctx: Context, out: Collector) -> None:
            out.collect((value, ctx.timestamp))

    # Every timer lies beyond the input: they all fire at the final watermark.
    flow = Flow(parallelism=parallelism)
    records = [{"k": key, "ts": i * 10} for i, key in enumerate(KEYS)]
    stream = flow.from_iterable(records, watermarks=by_ts())
    fired = stream.key_by(lambda r: r["k"]).process(EmitOnTimer()).rebalance().process(Stamp())
    out = fired.collect()
    await flow.run()
    assert sorted(out.values) == [(key, i * 10 + 1000) for i, key in enumerate(KEYS)]


async def test_records_without_event_time_see_no_timestamp_next_to_records_with_it(
    parallelism: int,
) -> None:
    class Stamp(KeyedProcessFunction[dict[str, Any], Any]):
        def process_element(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
            out.collect((value["src"], ctx.timestamp))

    flow = Flow(parallelism=parallelism, batch_size=2)
    timed = flow.from_iterable([{"src": "timed", "ts": 100 + i} for i in range(10)], watermarks=by_ts())
    untimed = flow.from_iterable([{"src": "untimed"} for _ in range(10)], name="untimed")
    # One key: both inputs meet in the same instance.
    out = timed.union(untimed).key_by(lambda r: 0).process(Stamp()).collect()
    await flow.run()
    assert sorted(ts for src, ts in out.values if src == "timed") == list(range(100, 110))
    assert [ts for src, ts in out.values if src == "untimed"] == [None] * 10


# -- processing-time timers --------------------------------------------------------------------------


class ProcessingTimers(KeyedProcessFunction[dict[str, Any], tuple[Any, ...]]):
    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        timers = ctx.timer_service()
        for time in value.get("at", ()):
            timers.register_processing_time_timer(time)
        for time in value.get("delete", ()):
            timers.delete_processing_time_timer(time)
        out.collect(("rec", ctx.current_key, value["id"], ctx.time_domain))

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        now = ctx.timer_service().current_processing_time()
        out.collect(("timer", ctx.current_key, timestamp, ctx.timestamp, ctx.time_domain, now))


async def test_processing_time_timers_fire_when_the_clock_reaches_them(parallelism: int) -> None:
    clock = ManualClock(1_000)
    source = PushSource()
    recorder = Recorder()
    flow = Flow(parallelism=parallelism, clock=clock)
    flow.from_source(source).key_by(lambda r: r["k"]).process(ProcessingTimers()).sink_to_callback(recorder)
    running = asyncio.create_task(flow.run())

    def rec(record_id: int) -> Callable[[Any], bool]:
        return lambda item: item[0] == "rec" and item[2] == record_id

    def fired() -> list[tuple[Any, ...]]:
        return [item[1:] for item in recorder.items if item[0] == "timer"]

    await source.send({"k": "a", "id": 1, "at": [1_500]})
    await recorder.wait_for(rec(1), running)
    clock.set(1_499)
    # A record processed after the clock moved: a due timer would have fired with it.
    await source.send({"k": "a", "id": 2})
    await recorder.wait_for(rec(2), running)
    assert fired() == []

    clock.set(1_500)  # no record needed: the actor wakes up on the clock
    await recorder.wait_for(lambda item: item[0] == "timer", running)
    assert fired() == [("a", 1_500, None, TimeDomain.PROCESSING_TIME, 1_500)]

    # Deduplicated per (key, time), fired in time order, deletable.
    await source.send({"k": "b", "id": 3, "at": [3_000, 2_500, 3_000]})
    await source.send({"k": "c", "id": 4, "at": [2_500, 2_600]})
    await source.send({"k": "b", "id": 5, "at": [2_500], "delete": [3_000]})
    await recorder.wait_for(rec(5), running)
    clock.set(2_550)
    await recorder.wait_for(lambda item: item[0] == "timer" and item[1] == "c", running)
    await source.send({"k": "b", "id": 6})
    await recorder.wait_for(rec(6), running)
    assert sorted(fired()) == sorted(
        [
            ("a", 1_500, None, TimeDomain.PROCESSING_TIME, 1_500),
            ("b", 2_500, None, TimeDomain.PROCESSING_TIME, 2_550),
            ("c", 2_500, None, TimeDomain.PROCESSING_TIME, 2_550),
        ]
    )
    clock.set(5_000)
    await recorder.wait_for(lambda item: item[0] == "timer" and item[2] == 2_600, running)
    await source.send({"k": "b", "id": 7})
    await recorder.wait_for(rec(7), running)
    assert [f for f in fired() if f[0] == "b"] == [("b", 2_500, None, TimeDomain.PROCESSING_TIME, 2_550)]
    assert ("c", 2_600, None, TimeDomain.PROCESSING_TIME, 5_000) in fired()

    source.close()
    await running
    assert all(item[3] is None for item in recorder.items if item[0] == "rec")
