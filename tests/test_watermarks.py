"""Watermarks through the actor mesh: the minimum over inputs, idleness, and +inf at the end."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from actorflow import (
    MAX_WATERMARK,
    MIN_WATERMARK,
    Collector,
    Context,
    Flow,
    KeyedProcessFunction,
    ManualClock,
    PushSource,
    WatermarkStrategy,
)
from tests.recorder import Recorder as BaseRecorder


def by_ts(lag_ms: int = 0) -> WatermarkStrategy:
    return WatermarkStrategy.punctuated(lambda r: r["ts"], lag_ms=lag_ms)


class WatermarkLog(KeyedProcessFunction[dict[str, Any], tuple[Any, ...]]):
    """Logs ``("rec", src, id, ts, watermark)`` per record and ``("timer", time, watermark)`` per firing.

    A record's ``timers`` are registered as event-time timers.
    """

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        timers = ctx.timer_service()
        out.collect(("rec", value["src"], value.get("id"), value["ts"], timers.current_watermark()))
        for time in value.get("timers", ()):
            timers.register_event_time_timer(time)

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        out.collect(("timer", timestamp, ctx.timer_service().current_watermark()))


class Recorder(BaseRecorder):
    def timers(self) -> list[tuple[Any, ...]]:
        return [item for item in self.items if item[0] == "timer"]


def is_record(record_id: int) -> Callable[[Any], bool]:
    return lambda item: item[0] == "rec" and item[2] == record_id


# -- the minimum over inputs -------------------------------------------------------------------------


async def test_watermark_is_the_minimum_over_unioned_inputs(parallelism: int) -> None:
    fast, slow = PushSource(), PushSource()
    recorder = Recorder()
    flow = Flow(parallelism=parallelism)
    a = flow.from_source(fast, name="fast", watermarks=by_ts())
    b = flow.from_source(slow, name="slow", watermarks=by_ts())
    # One key: every record meets in one instance, so the order of the log is the order of sending.
    a.union(b).key_by(lambda r: 0).process(WatermarkLog()).sink_to_callback(recorder)
    running = asyncio.create_task(flow.run())

    sends = [
        (fast, {"src": "fast", "ts": 0, "timers": [5_000]}),
        (slow, {"src": "slow", "ts": 0}),
        (fast, {"src": "fast", "ts": 3_000}),
        (fast, {"src": "fast", "ts": 9_000}),  # far ahead: the slow input holds event time back
        (slow, {"src": "slow", "ts": 4_000}),
        (fast, {"src": "fast", "ts": 9_500}),
        (slow, {"src": "slow", "ts": 6_000}),  # now both are past 5000: the timer fires
        (fast, {"src": "fast", "ts": 9_600}),
    ]
    highest = {"fast": MIN_WATERMARK, "slow": MIN_WATERMARK}
    for record_id, (source, record) in enumerate(sends):
        await source.send({**record, "id": record_id})
        # Processed in one call with the watermark right after it: a timer due then would be logged
        # in the same batch, before the test resumes.
        _, _, _, _, watermark = await recorder.wait_for(is_record(record_id), running)
        assert watermark == min(highest.values()), record
        highest[record["src"]] = max(highest[record["src"]], record["ts"])
        if record_id < 6:
            assert recorder.timers() == [], f"fired before the slow input reached 5000 (after {record})"
    assert recorder.timers() == [("timer", 5_000, 6_000)]
    assert (
        recorder.items.index(("timer", 5_000, 6_000))
        == recorder.items.index(next(item for item in recorder.items if is_record(6)(item))) + 1
    )

    fast.close()  # an ended input holds nothing back: the slow one alone decides now
    await slow.send({"src": "slow", "ts": 7_000, "id": 100})
    await slow.send({"src": "slow", "ts": 7_001, "id": 101})
    *_, watermark = await recorder.wait_for(is_record(101), running)
    assert watermark == 7_000
    slow.close()
    await running


async def test_a_far_behind_input_holds_back_timers_until_it_ends(parallelism: int) -> None:
    fast_records = [{"src": "fast", "ts": 10 * i} for i in range(600)]
    slow_records = [{"src": "slow", "ts": i // 100} for i in range(600)]
    fast_records[0]["timers"] = [2_000]
    flow = Flow(parallelism=parallelism, batch_size=8)
    a = flow.from_iterable(fast_records, name="fast", watermarks=by_ts())
    b = flow.from_iterable(slow_records, name="slow", watermarks=by_ts())
    out = a.union(b).key_by(lambda r: 0).process(WatermarkLog()).collect()
    await flow.run()

    log = out.values
    assert [item for item in log if item[0] == "timer"] != []
    fired_at = next(i for i, item in enumerate(log) if item[0] == "timer")
    slow_seen = [i for i, item in enumerate(log) if item[0] == "rec" and item[1] == "slow"]
    assert len(slow_seen) == len(slow_records)
    assert max(slow_seen) < fired_at, "the timer fired while the slow input was still at ts <= 5"
    # Every watermark a record sees is at most the minimum of what each input's records reached
    # so far (an input counts as +inf only once all its records are through: its end comes last).
    highest = {"fast": MIN_WATERMARK, "slow": MIN_WATERMARK}
    seen = {"fast": 0, "slow": 0}
    total = {"fast": len(fast_records), "slow": len(slow_records)}
    for item in log:
        if item[0] != "rec":
            continue
        _, src, _, ts, watermark = item
        bound = min(MAX_WATERMARK if seen[s] == total[s] else highest[s] for s in highest)
        assert watermark <= bound, item
        highest[src] = max(highest[src], ts)
        seen[src] += 1


async def test_bounded_out_of_orderness_trails_the_highest_timestamp(parallelism: int) -> None:
    bound = 100
    records = [{"src": "s", "ts": 10 * i + (7 if i % 3 == 0 else 0)} for i in range(100)]
    records[0]["timers"] = [500]
    strategy = WatermarkStrategy.bounded_out_of_orderness(bound, lambda r: r["ts"])
    flow = Flow(parallelism=parallelism, batch_size=4)
    stream = flow.from_iterable(records, watermarks=strategy)
    out = stream.key_by(lambda r: 0).process(WatermarkLog()).collect()
    await flow.run()

    highest = MIN_WATERMARK
    for item in out.values:
        if item[0] == "rec":
            assert item[4] == MIN_WATERMARK or item[4] <= highest - bound - 1
            highest = max(highest, item[3])
        else:
            assert item == ("timer", 500, item[2]) and 500 <= item[2] <= highest - bound - 1
    assert len([item for item in out.values if item[0] == "timer"]) == 1


# -- idleness ----------------------------------------------------------------------------------------


async def test_an_idle_input_stops_holding_event_time_back(parallelism: int) -> None:
    clock = ManualClock(0)
    strategy = by_ts().with_idleness(1_000)
    busy, quiet = PushSource(), PushSource()
    recorder = Recorder()
    flow = Flow(parallelism=parallelism, clock=clock)
    a = flow.from_source(busy, name="busy", watermarks=strategy)
    b = flow.from_source(quiet, name="quiet", watermarks=strategy)
    a.union(b).key_by(lambda r: 0).process(WatermarkLog()).sink_to_callback(recorder)
    running = asyncio.create_task(flow.run())

    await busy.send({"src": "busy", "id": 1, "ts": 0, "timers": [500]})
    await quiet.send({"src": "quiet", "id": 2, "ts": 0})  # quiet's last record: at clock 0
    await recorder.wait_for(is_record(1), running)
    await recorder.wait_for(is_record(2), running)

    clock.set(500)
    await busy.send({"src": "busy", "id": 3, "ts": 2_000})  # busy's own timeout moves to 1500
    await recorder.wait_for(is_record(3), running)
    assert recorder.timers() == []  # quiet, at 0, holds event time back

    clock.set(999)  # just before quiet's timeout: it still counts
    await busy.send({"src": "busy", "id": 4, "ts": 2_000})
    *_, watermark = await recorder.wait_for(is_record(4), running)
    assert watermark == 0
    assert recorder.timers() == []

    clock.set(1_000)  # quiet has been quiet for the timeout: busy alone moves event time
    assert await recorder.wait_for(lambda item: item[0] == "timer", running) == ("timer", 500, 2_000)

    # Back from idleness with an old timestamp: event time does not go backwards.
    await quiet.send({"src": "quiet", "id": 5, "ts": 100})
    await busy.send({"src": "busy", "id": 6, "ts": 2_500})
    *_, watermark = await recorder.wait_for(is_record(6), running)
    assert watermark == 2_000
    busy.close()
    quiet.close()
    await running


# -- the end of a bounded input ----------------------------------------------------------------------


async def test_a_bounded_input_ends_with_an_infinite_watermark(parallelism: int) -> None:
    keys = ["alice", "bob", "carol", "dave", "erin", "frank", "grace"]
    records = [{"src": keys[i % 7], "ts": i, "timers": [10**12 + i]} for i in range(50)]
    flow = Flow(parallelism=parallelism, batch_size=4)
    out = (
        flow.from_iterable(records, watermarks=by_ts())
        .key_by(lambda r: r["src"])
        .process(WatermarkLog())
        .collect()
    )
    await flow.run()
    assert sorted(item for item in out.values if item[0] == "timer") == [
        ("timer", 10**12 + i, MAX_WATERMARK) for i in range(50)
    ]


async def test_assigned_watermarks_keep_the_infinite_watermark_at_the_end(parallelism: int) -> None:
    records = [{"src": "s", "ts": i, "timers": [10**12 + i]} for i in range(20)]
    flow = Flow(parallelism=parallelism, batch_size=4)
    out = (
        flow.from_iterable(records)
        .rebalance()
        .assign_timestamps_and_watermarks(by_ts())
        .key_by(lambda r: r["ts"] % 5)
        .process(WatermarkLog())
        .collect()
    )
    await flow.run()
    assert sorted(item for item in out.values if item[0] == "timer") == [
        ("timer", 10**12 + i, MAX_WATERMARK) for i in range(20)
    ]
