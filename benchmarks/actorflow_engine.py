"""The benchmark queries of BENCHMARK.md written as ordinary actorflow flows.

Nothing here is tuned for the benchmark: it is the code a user would write. Q2 uses the window API
(tumbling event-time windows, an aggregate function, late records to a side output); Q3 is the fraud
pattern as a keyed process function; Q4 the fraud pattern in event-time order through the Pattern
API (late events to a side output).

Engine contract (shared with ``benchmarks.baseline``)::

    run(query, input_path, output_path, parallelism) -> number of input events

With ``checkpoint_dir`` the flow takes checkpoints into that directory (every
``checkpoint_interval_ms``, and a final one at the end of the input), writes its output through the
exactly-once file sink, and resumes from the newest complete checkpoint there: running the same call
again after the process was killed completes the same output.
"""

from __future__ import annotations

from typing import Any

import orjson

from actorflow import (
    AfterMatchSkip,
    AggregateFunction,
    Collector,
    Context,
    DataStream,
    Flow,
    JsonLinesSource,
    KeyedProcessFunction,
    OutputTag,
    Pattern,
    ProcessWindowFunction,
    RuntimeContext,
    Sink,
    TumblingEventTimeWindows,
    ValueState,
    ValueStateDescriptor,
    WatermarkStrategy,
    WindowContext,
)
from actorflow.checkpoint.filesystem import FileSystemStorage
from actorflow.checkpoint.storage import CheckpointStorage
from actorflow.operators.base import OperatorContext
from actorflow.operators.file_sink import ExactlyOnceJsonLinesSink, PartHandle

__all__ = ["run"]

LAG_MS = 2_000
WINDOW_MS = 10_000
FRAUD_SPAN_MS = 60_000

#: What Q2's and Q4's late records become on their way to the sink, so the sink can count them.
LATE = "late"
#: The side output of Q2's and Q4's late records.
LATE_RECORDS: OutputTag[dict[str, Any]] = OutputTag("late")


def _watermarks() -> WatermarkStrategy:
    return WatermarkStrategy.punctuated("ts", lag_ms=LAG_MS)


def q1(flow: Flow, source: JsonLinesSource, output_path: str, exactly_once: bool = False) -> None:
    (
        flow.from_source(source, name="transactions")
        .filter(lambda r: r["amount"] > 100.0, name="large")
        .map(lambda r: {"tx_id": r["tx_id"], "card_id": r["card_id"], "amount": r["amount"]})
        .sink_to_json_lines(output_path, exactly_once=exactly_once)
    )


class CountCents(AggregateFunction[dict[str, Any], list[int], list[int]]):
    """Per window: ``[count, sum of cents]``, updated in place (the accumulator is the window's own)."""

    def create_accumulator(self) -> list[int]:
        return [0, 0]

    def add(self, value: dict[str, Any], accumulator: list[int]) -> list[int]:
        accumulator[0] += 1
        accumulator[1] += round(value["amount"] * 100)
        return accumulator

    def get_result(self, accumulator: list[int]) -> list[int]:
        return accumulator

    def merge(self, a: list[int], b: list[int]) -> list[int]:
        return [a[0] + b[0], a[1] + b[1]]


class WindowRecord(ProcessWindowFunction[list[int], dict[str, Any], Any]):
    """The result record of one card's window."""

    def process(self, key: Any, context: WindowContext, elements: list[list[int]], out: Collector) -> None:
        count, cents = elements[0]
        window = context.window
        out.collect(
            {
                "card_id": key,
                "window_start": window.start,
                "window_end": window.end,
                "count": count,
                "sum_cents": cents,
            }
        )


class WindowFileSink(Sink):
    """Writes windows (Q2) or matches (Q4) as JSON lines, counts late markers, ends with
    ``{"late": N}``."""

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


class ExactlyOnceWindowFileSink(ExactlyOnceJsonLinesSink):
    """:class:`WindowFileSink` through the exactly-once file sink: windows as JSON lines, then
    ``{"late": N}`` once, at the end of the input.

    The late count is part of the sink's checkpointed state, so after a restore it counts on from
    the restored checkpoint's position, like everything else. Whether the count line is already
    written is checkpointed too: a run resumed from the final checkpoint (the process was killed
    after it, before it exited) must not write it a second time.
    """

    def open(self, context: OperatorContext) -> None:
        super().open(context)
        self.late = 0
        self._counted = False

    def write_to(self, txn: Any, values: list[Any]) -> None:
        windows = [value for value in values if value is not LATE]
        self.late += len(values) - len(windows)
        super().write_to(txn, windows)

    def finish(self) -> None:
        if not self._counted:
            # Written into the open transaction: it commits with the final checkpoint (or, without
            # checkpoints, in the commit at the end of the input below).
            self._counted = True
            self.write([{"late": self.late}])
        super().finish()

    def sink_state(self) -> dict[str, Any]:
        return {**super().sink_state(), "late": self.late, "counted": self._counted}

    def abort_leftovers(self, recovered: list[PartHandle], state: dict[str, Any] | None) -> None:
        super().abort_leftovers(recovered, state)
        if state is not None:
            self.late = state["late"]
            self._counted = state["counted"]


def q2(flow: Flow, source: JsonLinesSource, output_path: str, exactly_once: bool = False) -> None:
    windows = (
        flow.from_source(source, name="transactions", watermarks=_watermarks())
        .key_by("card_id")
        .window(TumblingEventTimeWindows.of(WINDOW_MS))
        .side_output_late_data(LATE_RECORDS)
        .aggregate(CountCents(), WindowRecord(), name="windows")
    )
    late = windows.get_side_output(LATE_RECORDS).map(lambda _: LATE, name="late")
    sink = ExactlyOnceWindowFileSink(output_path) if exactly_once else WindowFileSink(output_path)
    windows.union(late).sink(sink, name="output")


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


def q3(flow: Flow, source: JsonLinesSource, output_path: str, exactly_once: bool = False) -> None:
    (
        flow.from_source(source, name="transactions", watermarks=_watermarks())
        .key_by("card_id")
        .process(SmallThenLarge(), name="fraud")
        .sink_to_json_lines(output_path, exactly_once=exactly_once)
    )


#: Q4's pattern: a transaction under 1.00 whose card's next event (in event time) is over 500.00,
#: less than 60 s later.
SMALL_THEN_LARGE = (
    Pattern.begin("small")
    .where(lambda tx: tx["amount"] < 1.0)
    .next("large")
    .where(lambda tx: tx["amount"] > 500.0)
    .within(FRAUD_SPAN_MS)
)


def alert(match: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Q4's result record of one match."""
    small = match["small"][0]
    return {
        "card_id": small["card_id"],
        "small_tx_id": small["tx_id"],
        "large_tx_id": match["large"][0]["tx_id"],
    }


def q4(flow: Flow, source: JsonLinesSource, output_path: str, exactly_once: bool = False) -> None:
    alerts: DataStream[Any] = (
        flow.from_source(source, name="transactions", watermarks=_watermarks())
        .key_by("card_id")
        .pattern(SMALL_THEN_LARGE, skip=AfterMatchSkip.skip_past_last_event(), late=LATE_RECORDS)
        .select(alert, name="fraud")
    )
    late = alerts.get_side_output(LATE_RECORDS).map(lambda _: LATE, name="late")
    sink = ExactlyOnceWindowFileSink(output_path) if exactly_once else WindowFileSink(output_path)
    alerts.union(late).sink(sink, name="output")


QUERIES = {"q1": q1, "q2": q2, "q3": q3, "q4": q4}


def run(
    query: str,
    input_path: str,
    output_path: str,
    parallelism: int,
    *,
    batch_size: int = 1024,
    checkpoint_dir: str | None = None,
    checkpoint_interval_ms: int | None = None,
    storage: CheckpointStorage | None = None,
) -> int:
    """Build the flow for ``query``, run it to the end of the input, return the events read.

    With ``checkpoint_dir`` (or a ready ``storage``, which the report uses to count what the
    checkpoints cost) the flow checkpoints every ``checkpoint_interval_ms`` (None: only the final
    checkpoint), writes through the exactly-once file sink and resumes from the newest complete
    checkpoint it finds; the events returned are then those read by this run, after the resumed
    position. Raises ``ValueError`` for an interval without a checkpoint directory.
    """
    if checkpoint_dir is not None and storage is None:
        storage = FileSystemStorage(checkpoint_dir)
    if checkpoint_interval_ms is not None and storage is None:
        raise ValueError("a checkpoint interval needs a checkpoint directory")
    flow = Flow(query, parallelism=parallelism, batch_size=batch_size)
    if storage is not None:
        flow.enable_checkpointing(storage, interval_ms=checkpoint_interval_ms)
    source = JsonLinesSource(input_path)
    QUERIES[query](flow, source, output_path, storage is not None)
    flow.execute()
    return source.records_read
