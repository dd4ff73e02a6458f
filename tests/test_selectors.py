"""Field names work wherever a key or timestamp function does."""

from __future__ import annotations

from typing import Any

import pytest

from actorflow import Collector, Context, Flow, KeyedProcessFunction, WatermarkStrategy


class KeyAndTime(KeyedProcessFunction[dict[str, Any], tuple[Any, int | None, int]]):
    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        out.collect((ctx.current_key, ctx.timestamp, ctx.timer_service().current_watermark()))


async def test_key_by_and_timestamps_by_field_name(parallelism: int) -> None:
    records = [{"card": f"c{i % 4}", "ts": 1000 + i} for i in range(40)]
    flow = Flow(parallelism=parallelism, batch_size=8)
    by_name = (
        flow.from_iterable(records, watermarks=WatermarkStrategy.punctuated("ts", lag_ms=5))
        .key_by("card")
        .process(KeyAndTime())
        .collect()
    )
    await flow.run()

    other = Flow(parallelism=parallelism, batch_size=8)
    by_function = (
        other.from_iterable(records, watermarks=WatermarkStrategy.punctuated(lambda r: r["ts"], lag_ms=5))
        .key_by(lambda r: r["card"])
        .process(KeyAndTime())
        .collect()
    )
    await other.run()
    assert sorted(by_name.values) == sorted(by_function.values)
    assert {key for key, _, _ in by_name.values} == {"c0", "c1", "c2", "c3"}
    assert sorted(ts for _, ts, _ in by_name.values) == [1000 + i for i in range(40)]


def test_a_selector_that_is_neither_a_name_nor_a_function_is_refused() -> None:
    with pytest.raises(TypeError, match="function or a field name"):
        WatermarkStrategy.bounded_out_of_orderness(10, 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="function or a field name"):
        Flow().from_iterable([1]).key_by(3.5)  # type: ignore[arg-type]
