"""Per-operator counts inside a chain: records in and out and the input watermark of every operator,
counted once per batch, whichever way a batch enters the chain (its input, a two-input head, timers,
async results that leave on a wake-up, the end of input)."""

from __future__ import annotations

import asyncio
from typing import Any

from actorflow import (
    Collector,
    Context,
    Flow,
    KeyedProcessFunction,
    ManualClock,
    PushSource,
)
from actorflow.operators.async_io import AsyncMapOperator, AsyncMapSpec
from actorflow.operators.base import OperatorContext
from actorflow.operators.chain import Chain
from actorflow.operators.sinks import CollectSink
from actorflow.operators.stateless import MapOperator
from actorflow.runtime.messages import MAX_WATERMARK, MIN_WATERMARK, Batch
from actorflow.runtime.metrics import JobMetrics
from tests.recorder import Recorder


def per_operator(job: JobMetrics | None) -> dict[str, tuple[int, int]]:
    """``{operator: (records in, records out)}``, summed over the operator's instances."""
    assert job is not None
    totals: dict[str, tuple[int, int]] = {}
    for entry in job.actors:
        for counts in entry.operator_metrics():
            records_in, records_out = totals.get(counts.name, (0, 0))
            totals[counts.name] = (records_in + counts.records_in, records_out + counts.records_out)
    return totals


async def test_each_chained_operator_counts_its_own_records(parallelism: int) -> None:
    flow = Flow("counts", parallelism=parallelism, batch_size=4)
    (
        flow.from_iterable(range(10), name="numbers")
        .map(lambda n: n * 2, name="double")
        .filter(lambda n: n % 3 == 0, name="thirds")  # 0, 6, 12, 18
        .collect(name="out")
    )
    await flow.run()
    counts = per_operator(flow.metrics)
    assert counts == {
        "numbers": (10, 10),  # a source: the records it read, in and out
        "double": (10, 10),
        "thirds": (10, 4),
        "out": (4, 0),  # a sink passes nothing on
    }
    assert flow.metrics is not None
    double = next(entry for entry in flow.metrics.actors if "double" in entry.operators)
    assert double.metrics.operators == ("double", "thirds", "out")[: len(double.operators)]
    # The actor's own counters, which progress and the dashboard read, stay the chain's ends.
    first, *_, last = double.operator_metrics()
    assert (double.metrics.records_in, double.metrics.records_out) == (first.records_in, last.records_out)
    if parallelism > 1:  # the source has a chain of its own, with no operator in it
        (source,) = (entry for entry in flow.metrics.actors if entry.kind == "source")
        assert source.metrics.operators == ()
        assert [(c.name, c.records_in, c.records_out) for c in source.operator_metrics()] == [
            ("numbers", 10, 10)
        ]
        assert source.metrics.records_out == 10


class Reminder(KeyedProcessFunction[dict[str, Any], tuple[str, Any]]):
    """Emits each record, and ``("timer", key)`` when the processing-time timer it asks for fires."""

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        ctx.timer_service().register_processing_time_timer(value["at"])
        out.collect(("record", value["k"]))

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        out.collect(("timer", ctx.current_key))


async def test_what_timers_emit_counts_as_the_firing_operators_output(parallelism: int) -> None:
    clock = ManualClock(1_000)
    source = PushSource()
    recorder = Recorder()
    flow = Flow("timers", parallelism=parallelism, clock=clock)
    (
        flow.from_source(source, name="in")
        .key_by(lambda value: value["k"])
        .process(Reminder(), name="remind")
        .map(lambda item: item, name="after")
        .sink_to_callback(recorder, name="out")
    )
    running = asyncio.create_task(flow.run())
    for key in ("a", "b"):
        await source.send({"k": key, "at": 1_500})
    await recorder.wait_for(lambda item: item == ("record", "b"), running)
    clock.set(1_500)  # the timers fire on the clock, with no record to carry them
    await recorder.wait_for(lambda item: item == ("timer", "a"), running)
    await recorder.wait_for(lambda item: item == ("timer", "b"), running)
    counts = per_operator(flow.metrics)
    assert counts["remind"] == (2, 4)  # two records in; two records and two firings out
    assert counts["after"] == (4, 4)
    assert counts["out"] == (4, 0)
    source.close()
    await running


async def test_a_two_input_head_counts_both_inputs(parallelism: int) -> None:
    flow = Flow("two-inputs", parallelism=parallelism)
    left = flow.from_iterable(range(5), name="left")
    right = flow.from_iterable(["x", "y", "z"], name="right")
    (
        left.connect(right)
        .map(lambda n: n, lambda s: s, name="both")
        .filter(lambda value: isinstance(value, int), name="numbers")
        .collect(name="out")
    )
    await flow.run()
    counts = per_operator(flow.metrics)
    assert counts["both"] == (8, 8)
    assert counts["numbers"] == (8, 5)
    assert counts["out"] == (5, 0)


async def test_each_operator_keeps_the_watermark_its_input_reached() -> None:
    # parse -> lookup (async) -> collect: the lookup holds the watermark back behind its request, so
    # the sink's input watermark stays behind the lookup's until the result leaves on a wake-up.
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def lookup(record: str) -> str:
        return await answer

    sink = CollectSink()
    operators = [MapOperator("parse", str.upper), AsyncMapOperator("lookup", AsyncMapSpec(lookup)), sink]
    clock = ManualClock(0)
    contexts = [OperatorContext(operator.name, clock=clock) for operator in operators]
    chain = Chain(operators, contexts, [], clock)
    await chain.open()

    def seen() -> list[tuple[str, int, int, int]]:
        return [
            (c.name, c.records_in, c.records_out, c.watermark) for c in chain.metrics.operator_metrics()
        ]

    assert seen() == [
        ("parse", 0, 0, MIN_WATERMARK),
        ("lookup", 0, 0, MIN_WATERMARK),
        ("collect", 0, 0, MIN_WATERMARK),
    ]
    await chain.on_batch(Batch(["a"], [10], [(1, 10)]))
    assert seen() == [("parse", 1, 1, 10), ("lookup", 1, 0, 10), ("collect", 0, 0, MIN_WATERMARK)]
    answer.set_result("A")
    wakeup = chain.wakeup()
    assert wakeup is not None
    await wakeup  # the request has its answer: the result and the watermark behind it may leave
    await chain.on_time()
    assert seen() == [("parse", 1, 1, 10), ("lookup", 1, 1, 10), ("collect", 1, 0, 10)]
    await chain.on_batch(Batch([], None, [(0, MAX_WATERMARK)]))
    await chain.on_end()
    assert [c.watermark for c in chain.metrics.operator_metrics()] == [MAX_WATERMARK] * 3
    assert sink.values == ["A"]
    assert chain.metrics.watermark == MAX_WATERMARK
    await chain.close()
