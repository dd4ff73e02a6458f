"""The benchmark queries of BENCHMARK.md written as ordinary actorflow flows.

Nothing here is tuned for the benchmark: it is the code a user would write. Q2 uses a keyed process
function with event-time timers (tumbling windows by hand); Q3 is the fraud pattern.

Engine contract (shared with ``benchmarks.baseline``)::

    run(query, input_path, output_path, parallelism) -> number of input events
"""

from __future__ import annotations

from typing import Any

import orjson

from actorflow import (
    Collector,
    Context,
    Flow,
    JsonLinesSource,
    KeyedProcessFunction,
    MapStateDescriptor,
    RuntimeContext,
    Sink,
    ValueState,
    ValueStateDescriptor,
    WatermarkStrategy,
)

__all__ = ["run"]

LAG_MS = 2_000
WINDOW_MS = 10_000
FRAUD_SPAN_MS = 60_000

#: What Q2's window function emits for a late record, so the sink can count them.
LATE = "late"


def _watermarks() -> WatermarkStrategy:
    return WatermarkStrategy.punctuated("ts", lag_ms=LAG_MS)


def q1(flow: Flow, source: JsonLinesSource, output_path: str) -> None:
    (
        flow.from_source(source, name="transactions")
        .filter(lambda r: r["amount"] > 100.0, name="large")
        .map(lambda r: {"tx_id": r["tx_id"], "card_id": r["card_id"], "amount": r["amount"]})
        .sink_to_json_lines(output_path)
    )


class TumblingCount(KeyedProcessFunction[dict[str, Any], Any]):
    """Per card: count and sum of cents in 10 s event-time windows; late records reported."""

    def open(self, ctx: RuntimeContext) -> None:
        self.windows = ctx.get_map_state(MapStateDescriptor("windows"))

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        ts = value["ts"]
        start = ts - ts % WINDOW_MS
        timers = ctx.timer_service()
        if start + WINDOW_MS - 1 <= timers.current_watermark():
            out.collect(LATE)
            return
        cents = round(value["amount"] * 100)
        acc = self.windows.get(start)
        if acc is None:
            self.windows.put(start, [1, cents])
            timers.register_event_time_timer(start + WINDOW_MS - 1)
        else:
            # State values are live heap objects: updating the accumulator in place is enough.
            acc[0] += 1
            acc[1] += cents

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        start = timestamp + 1 - WINDOW_MS
        count, cents = self.windows.get(start)
        self.windows.remove(start)
        out.collect(
            {
                "card_id": ctx.current_key,
                "window_start": start,
                "window_end": start + WINDOW_MS,
                "count": count,
                "sum_cents": cents,
            }
        )


class WindowFileSink(Sink):
    """Writes windows as JSON lines, counts late markers, ends with ``{"late": N}``."""

    max_parallelism = 1

    def __init__(self, path: str) -> None:
        super().__init__("windows")
        self.path = path
        self.late = 0

    def open(self, context: Any) -> None:
        super().open(context)
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed in close()

    def write(self, values: list[Any]) -> None:
        dumps = orjson.dumps
        newline = orjson.OPT_APPEND_NEWLINE
        lines = []
        for value in values:
            if value is LATE:
                self.late += 1
            else:
                lines.append(dumps(value, option=newline))
        self._file.write(b"".join(lines))

    def close(self) -> None:
        self._file.write(orjson.dumps({"late": self.late}, option=orjson.OPT_APPEND_NEWLINE))
        self._file.close()


def q2(flow: Flow, source: JsonLinesSource, output_path: str) -> None:
    (
        flow.from_source(source, name="transactions", watermarks=_watermarks())
        .key_by("card_id")
        .process(TumblingCount(), name="windows")
        .sink(WindowFileSink(output_path))
    )


class SmallThenLarge(KeyedProcessFunction[dict[str, Any], dict[str, Any]]):
    """Per card: a transaction under 1.00 directly followed by one over 500.00 within 60 s."""

    def open(self, ctx: RuntimeContext) -> None:
        self.armed: ValueState[tuple[int, int]] = ctx.get_state(ValueStateDescriptor("armed"))

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        armed = self.armed.value()
        amount = value["amount"]
        if armed is not None:
            small_id, small_ts = armed
            if amount > 500.0 and 0 <= value["ts"] - small_ts <= FRAUD_SPAN_MS:
                out.collect(
                    {"card_id": value["card_id"], "small_tx_id": small_id, "large_tx_id": value["tx_id"]}
                )
            if amount >= 1.0:
                self.armed.clear()
        if amount < 1.0:
            self.armed.update((value["tx_id"], value["ts"]))
            ctx.timer_service().register_event_time_timer(value["ts"] + FRAUD_SPAN_MS)

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        armed = self.armed.value()
        if armed is not None and armed[1] + FRAUD_SPAN_MS <= timestamp:
            self.armed.clear()


def q3(flow: Flow, source: JsonLinesSource, output_path: str) -> None:
    (
        flow.from_source(source, name="transactions", watermarks=_watermarks())
        .key_by("card_id")
        .process(SmallThenLarge(), name="fraud")
        .sink_to_json_lines(output_path)
    )


QUERIES = {"q1": q1, "q2": q2, "q3": q3}


def run(query: str, input_path: str, output_path: str, parallelism: int, *, batch_size: int = 1024) -> int:
    """Build the flow for ``query``, run it to the end of the input, return the events read."""
    flow = Flow(query, parallelism=parallelism, batch_size=batch_size)
    source = JsonLinesSource(input_path)
    QUERIES[query](flow, source, output_path)
    flow.execute()
    return source.records_read
