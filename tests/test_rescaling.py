"""Savepoints and rescaling: stop at parallelism 1, resume at 3, stop again, finish at 1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from actorflow import (
    Collector,
    Context,
    Flow,
    KeyedProcessFunction,
    RuntimeContext,
    TumblingEventTimeWindows,
    ValueStateDescriptor,
    WatermarkStrategy,
)
from tests.faults import StoppingSource

N = 9_000
KEYS = 23


class RunningCount(KeyedProcessFunction[dict[str, int], list[Any]]):
    def open(self, ctx: RuntimeContext) -> None:
        self.count = ctx.get_state(ValueStateDescriptor("count", default=0))

    def process_element(self, value: dict[str, int], ctx: Context, out: Collector) -> None:
        self.count.update(self.count.value() + 1)
        out.collect(["count", ctx.current_key, self.count.value()])


def build(
    parallelism: int, checkpoints: Path, target: Path, stop_at: int | None
) -> tuple[Flow, StoppingSource]:
    flow = Flow("rescale", parallelism=parallelism, batch_size=40)
    flow.enable_checkpointing(checkpoints)
    records = [{"k": n % KEYS, "v": n % 7, "ts": n} for n in range(N)]
    source = StoppingSource(records, flow, stop_at)
    stream = flow.from_source(source, watermarks=WatermarkStrategy.punctuated("ts", lag_ms=0))
    counts = stream.key_by("k").process(RunningCount())
    sums = (
        stream.key_by("k")
        .window(TumblingEventTimeWindows.of(500))
        .reduce(lambda a, b: {**a, "v": a["v"] + b["v"]})
        .map(lambda r: ["sum", r["k"], r["ts"] // 500, r["v"]])
    )
    counts.union(sums).sink_to_json_lines(target, exactly_once=True)
    return flow, source


def lines(target: Path) -> list[list[Any]]:
    return sorted(orjson.loads(line) for line in target.read_bytes().splitlines())


def test_a_savepoint_resumes_at_another_parallelism_with_the_same_results(tmp_path: Path) -> None:
    reference_target = tmp_path / "reference.jsonl"
    flow, _ = build(1, tmp_path / "reference-checkpoints", reference_target, None)
    flow.execute()

    checkpoints = tmp_path / "checkpoints"
    target = tmp_path / "out.jsonl"
    resumed_at = 0
    for parallelism, stop_at in ((1, N // 3), (3, 2 * N // 3), (1, None)):
        flow, source = build(parallelism, checkpoints, target, stop_at)
        flow.execute()
        assert source.stopped == (stop_at is not None)
        assert source._skip >= resumed_at, "each run resumed from the previous run's savepoint"
        resumed_at = stop_at or 0
    savepoints = sorted(p.name for p in checkpoints.iterdir() if p.name.startswith("sp-"))
    assert len(savepoints) == 2, savepoints
    assert lines(target) == lines(reference_target)


def test_a_flow_resumes_from_a_savepoint_path_into_a_new_checkpoint_directory(tmp_path: Path) -> None:
    import asyncio

    reference_target = tmp_path / "reference.jsonl"
    flow, _ = build(2, tmp_path / "reference-checkpoints", reference_target, None)
    flow.execute()

    target = tmp_path / "out.jsonl"
    first, _ = build(2, tmp_path / "first", target, N // 2)
    first.execute()
    (savepoint,) = [p for p in (tmp_path / "first").iterdir() if p.name.startswith("sp-")]
    second, source = build(3, tmp_path / "second", target, None)
    asyncio.run(second.run(from_savepoint=savepoint))
    assert source._skip >= N // 2
    assert lines(target) == lines(reference_target)
