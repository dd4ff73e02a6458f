"""Records a user function fails on: to a dead-letter output (``dead_letters=``) instead of a failed job."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from actorflow import (
    Collector,
    Context,
    FailedRecord,
    Flow,
    KeyedProcessFunction,
    OutputTag,
    PlanError,
    ProcessFunction,
    RuntimeContext,
    TumblingEventTimeWindows,
    ValueStateDescriptor,
    WatermarkStrategy,
)
from actorflow.web.views import dead_letter_counts

ERRORS: OutputTag[FailedRecord[Any]] = OutputTag("errors")
N = 3_000


def inverse(n: int) -> float:
    return 1 / (n % 7)  # every seventh record raises ZeroDivisionError


def failed(n: int) -> bool:
    return n % 7 == 0


def test_map_filter_and_flat_map_send_failed_records_to_the_error_output(parallelism: int) -> None:
    flow = Flow(parallelism=parallelism, batch_size=64)
    numbers = flow.from_iterable(range(N))
    mapped = numbers.map(inverse, name="inverse", dead_letters=ERRORS)
    kept = numbers.filter(lambda n: inverse(n) > 0.2, name="small", dead_letters=ERRORS)
    spread = numbers.flat_map(lambda n: [n] * int(inverse(n) * 2), name="spread", dead_letters=ERRORS)
    outputs = {stream: stream.collect() for stream in (mapped, kept, spread)}
    errors = {
        name: s.get_side_output(ERRORS).collect()
        for name, s in (("inverse", mapped), ("small", kept), ("spread", spread))
    }
    flow.execute()

    good = [n for n in range(N) if not failed(n)]
    assert sorted(outputs[mapped].values) == sorted(1 / (n % 7) for n in good)
    assert sorted(outputs[kept].values) == [n for n in good if 1 / (n % 7) > 0.2]
    assert sorted(outputs[spread].values) == sorted(n for n in good for _ in range(int(2 / (n % 7))))
    bad = [n for n in range(N) if failed(n)]
    for name, sink in errors.items():
        assert sorted(f.value for f in sink.values) == bad
        assert {type(f.error) for f in sink.values} == {ZeroDivisionError}
        assert {f.operator.split("[")[0] for f in sink.values} == {name}
        assert sink.values[0].describe().startswith(f"{name}[")
    assert flow.metrics is not None
    counts = dead_letter_counts(flow.metrics)
    assert {name: counts[name] for name in errors} == dict.fromkeys(errors, len(bad))


class RunningTotal(KeyedProcessFunction[int, int]):
    """Per key: the running total of 1 / n; an event-time timer per key reports it at the end."""

    def open(self, ctx: RuntimeContext) -> None:
        self.total = ctx.get_state(ValueStateDescriptor("total", default=0.0))

    def process_element(self, value: int, ctx: Context, out: Collector) -> None:
        out.collect(("seen", value))  # collected before the failure: it stays in the output
        self.total.update(self.total.value() + inverse(value))
        ctx.timer_service().register_event_time_timer(10**12)

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        out.collect(("total", ctx.current_key, round(self.total.value(), 6)))


def test_a_keyed_process_function_goes_on_after_a_failed_record_with_its_state(parallelism: int) -> None:
    flow = Flow(parallelism=parallelism, batch_size=50)
    records = flow.from_iterable(range(N), watermarks=WatermarkStrategy.punctuated(lambda n: n))
    totals = records.key_by(lambda n: n % 5).process(RunningTotal(), name="totals", dead_letters=ERRORS)
    out = totals.collect()
    bad = totals.get_side_output(ERRORS).collect()
    flow.execute()

    assert sorted(v for kind, v, *_ in out.values if kind == "seen") == list(range(N))
    expected = {
        key: round(sum(inverse(n) for n in range(N) if n % 5 == key and not failed(n)), 6)
        for key in range(5)
    }
    assert {v[1]: v[2] for v in out.values if v[0] == "total"} == expected
    assert sorted(f.value for f in bad.values) == [n for n in range(N) if failed(n)]


class WithTime(ProcessFunction[FailedRecord[int], tuple[int, int | None]]):
    def process_element(self, value: FailedRecord[int], ctx: Context, out: Collector) -> None:
        out.collect((value.value, ctx.timestamp))


class Halve(ProcessFunction[int, int]):
    def process_element(self, value: int, ctx: Context, out: Collector) -> None:
        out.collect(int(2 * inverse(value)))


def test_failed_records_keep_their_time_and_watermarks_stay_right(parallelism: int) -> None:
    # Dropping records from a batch must move its watermarks with them: windows downstream count
    # exactly the records that went through, and the failed ones keep their event time.
    flow = Flow(parallelism=parallelism, batch_size=32)
    records = flow.from_iterable(range(N), watermarks=WatermarkStrategy.punctuated(lambda n: n * 10))
    halved = records.process(Halve(), name="halve", dead_letters=ERRORS)
    counts = (
        halved.map(lambda n: 1)
        .key_by(lambda one: 0)
        .window(TumblingEventTimeWindows.of(1_000))
        .reduce(lambda a, b: a + b)
        .collect()
    )
    bad = halved.get_side_output(ERRORS).process(WithTime()).collect()
    flow.execute()
    expected = Counter(n * 10 // 1_000 for n in range(N) if not failed(n))
    assert sorted(counts.values) == sorted(expected.values())
    assert sorted(bad.values) == [(n, n * 10) for n in range(N) if failed(n)]


def test_an_error_output_nobody_reads_fails_the_job_instead_of_losing_records() -> None:
    flow = Flow()
    flow.from_iterable([1, 7, 2]).map(inverse, dead_letters=ERRORS).collect()
    with pytest.raises(ZeroDivisionError) as raised:
        flow.execute()
    assert any("nothing reads get_side_output()" in note for note in raised.value.__notes__)


def test_without_an_error_output_a_failure_fails_the_job() -> None:
    flow = Flow()
    flow.from_iterable([1, 7]).map(inverse).collect()
    with pytest.raises(ZeroDivisionError):
        flow.execute()


def test_dead_letters_takes_an_output_tag() -> None:
    with pytest.raises(PlanError, match="dead_letters= takes an OutputTag"):
        Flow().from_iterable([1]).map(inverse, dead_letters="errors")  # type: ignore[arg-type]
    with pytest.raises(PlanError, match="errors= takes an OutputTag"):
        Flow().from_iterable([1]).map(inverse, errors="errors")  # type: ignore[arg-type]


def test_errors_is_the_former_name_of_dead_letters_and_still_works_for_a_release() -> None:
    flow = Flow()
    numbers = flow.from_iterable([1, 7, 2])
    streams = [
        numbers.map(inverse, errors=ERRORS),
        numbers.filter(lambda n: inverse(n) > 0, errors=ERRORS),
        numbers.flat_map(lambda n: [inverse(n)], errors=ERRORS),
        numbers.process(Inverse(), errors=ERRORS),
        numbers.key_by(lambda n: n % 2).process(KeyedInverse(), errors=ERRORS),
    ]
    failures = [stream.get_side_output(ERRORS).collect() for stream in streams]
    flow.execute()
    assert [[f.value for f in sink.values] for sink in failures] == [[7]] * 5
    with pytest.raises(PlanError, match="give dead_letters= only"):
        numbers.map(inverse, dead_letters=ERRORS, errors=ERRORS)


class Inverse(ProcessFunction[int, float]):
    def process_element(self, value: int, ctx: Context, out: Collector) -> None:
        out.collect(inverse(value))


class KeyedInverse(KeyedProcessFunction[int, float]):
    def process_element(self, value: int, ctx: Context, out: Collector) -> None:
        out.collect(inverse(value))
