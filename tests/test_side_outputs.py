"""Side outputs: ``ctx.output(tag, value)`` in process functions, ``get_side_output(tag)`` downstream."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from actorflow import (
    Collector,
    Context,
    Flow,
    KeyedProcessFunction,
    OutputTag,
    PlanError,
    ProcessFunction,
    TumblingEventTimeWindows,
    WatermarkStrategy,
)

ODD: OutputTag[int] = OutputTag("odd")
BIG: OutputTag[int] = OutputTag("big")


class Split(ProcessFunction[int, int]):
    """Evens to the main output, odds to ``odd``, and multiples of 10 also to ``big``."""

    def process_element(self, value: int, ctx: Context, out: Collector) -> None:
        if value % 2:
            ctx.output(ODD, value)
        else:
            out.collect(value)
        if value % 10 == 0:
            ctx.output(BIG, value)


async def test_main_and_side_outputs_split_the_records(parallelism: int) -> None:
    flow = Flow(parallelism=parallelism, batch_size=7)
    main = flow.from_iterable(range(100)).rebalance().process(Split())
    evens = main.collect()
    odds = main.get_side_output(ODD).collect()
    bigs = main.get_side_output(BIG).map(lambda n: n // 10).collect()
    await flow.run()
    assert sorted(evens.values) == list(range(0, 100, 2))
    assert sorted(odds.values) == list(range(1, 100, 2))
    assert sorted(bigs.values) == list(range(10))


async def test_only_a_side_output_may_be_consumed(parallelism: int) -> None:
    flow = Flow(parallelism=parallelism)
    odds = flow.from_iterable(range(20)).process(Split()).get_side_output(ODD).collect()
    await flow.run()
    assert sorted(odds.values) == list(range(1, 20, 2))


async def test_a_tag_nobody_consumes_is_dropped() -> None:
    flow = Flow()
    main = flow.from_iterable(range(10)).process(Split(), name="split")
    evens = main.collect()
    await flow.run()
    assert evens.values == [0, 2, 4, 6, 8]


class Expire(KeyedProcessFunction[dict[str, Any], str]):
    """Emits each record; a timer one tick after it sends ``expired:<key>`` to a side output."""

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        out.collect(value["k"])
        assert ctx.timestamp is not None
        ctx.timer_service().register_event_time_timer(ctx.timestamp + 1)

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        ctx.output(EXPIRED, (ctx.current_key, timestamp))


EXPIRED: OutputTag[tuple[str, int]] = OutputTag("expired")


async def test_timers_emit_to_side_outputs_with_the_timer_time(parallelism: int) -> None:
    records = [{"k": k, "ts": ts} for ts, k in enumerate("abcabc")]
    flow = Flow(parallelism=parallelism, batch_size=2)
    main = (
        flow.from_iterable(records, watermarks=WatermarkStrategy.punctuated("ts", lag_ms=0))
        .key_by("k")
        .process(Expire())
    )
    main.collect()
    expired = main.get_side_output(EXPIRED).collect()
    await flow.run()
    assert sorted(expired.values) == sorted((k, ts + 1) for ts, k in enumerate("abcabc"))


class Route(ProcessFunction[dict[str, Any], dict[str, Any]]):
    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        ctx.output(ODD, value)


async def test_side_outputs_carry_timestamps_and_watermarks_for_windows_downstream(
    parallelism: int,
) -> None:
    # Event-time windows over a side output only fire if its watermarks reach them, and only
    # hold the right values if its records keep their timestamps.
    records = [{"k": i % 3, "v": i, "ts": i * 5} for i in range(60)]
    flow = Flow(parallelism=parallelism, batch_size=4)
    side = (
        flow.from_iterable(records, watermarks=WatermarkStrategy.punctuated("ts", lag_ms=0))
        .process(Route())
        .get_side_output(ODD)
    )
    sums = (
        side.key_by("k")
        .window(TumblingEventTimeWindows.of(100))
        .reduce(lambda a, b: {**a, "v": a["v"] + b["v"]})
        .map(lambda r: (r["k"], r["v"]))
        .collect()
    )
    await flow.run()
    expected: Counter[tuple[int, int]] = Counter()
    for r in records:
        expected[(r["k"], r["ts"] // 100)] += r["v"]
    assert sorted(sums.values) == sorted((k, v) for (k, _), v in expected.items())


def test_get_side_output_needs_one_operator() -> None:
    flow = Flow()
    source = flow.from_iterable([1])
    with pytest.raises(PlanError, match="one operator"):
        source.get_side_output(ODD)
    with pytest.raises(PlanError, match="one operator"):
        source.map(str).union(source.map(str)).get_side_output(ODD)
    with pytest.raises(PlanError, match="OutputTag"):
        source.map(str).get_side_output("odd")  # type: ignore[arg-type]


def test_output_tags_need_a_name() -> None:
    with pytest.raises(ValueError, match="non-empty name"):
        OutputTag("")


def test_the_plan_shows_the_side_edge() -> None:
    flow = Flow()
    main = flow.from_iterable([1]).process(Split(), name="split")
    main.collect(name="evens")
    main.get_side_output(ODD, name="odds").collect(name="odd-sink")
    plan = flow.plan().describe()
    assert "from [source -> split] side 'odd'" in plan, plan
