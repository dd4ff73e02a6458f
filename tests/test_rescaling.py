"""Savepoints and rescaling: stop at parallelism 1, resume at 3, stop again, finish at 1."""

from __future__ import annotations

import pickle
from operator import itemgetter
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
from actorflow.operators.base import OperatorContext
from actorflow.operators.process import KeyedProcessOperator
from actorflow.runtime.messages import Batch
from actorflow.state.keygroups import key_group
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


# -- the keyed snapshot format, operator by operator -------------------------------------------------

KEYS_N = 2_000


class ArmEveryKey(KeyedProcessFunction[tuple[str, int], Any]):
    """A value and an event-time timer per key (Q3's state)."""

    def open(self, ctx: RuntimeContext) -> None:
        self.last = ctx.get_state(ValueStateDescriptor[int]("last"))

    def process_element(self, value: tuple[str, int], ctx: Context, out: Collector) -> None:
        self.last.update(value[1])
        ctx.timer_service().register_event_time_timer(value[1] + 60_000)


def keyed_operator(index: int = 0, parallelism: int = 1) -> KeyedProcessOperator:
    operator = KeyedProcessOperator("arm", ArmEveryKey(), itemgetter(0))
    operator.open(OperatorContext("arm", index, parallelism, checkpointing=True))
    return operator


def filled() -> KeyedProcessOperator:
    operator = keyed_operator()
    operator.process(Batch([(f"card-{n}", n) for n in range(KEYS_N)]))
    return operator


def contents(operators: list[KeyedProcessOperator]) -> tuple[dict[Any, Any], list[tuple[int, Any]]]:
    states: dict[Any, Any] = {}
    timers: list[tuple[int, Any]] = []
    for operator in operators:
        states.update(operator.backend.tables().get("last", {}))
        timers += [(time, key) for time, keys in operator.event_timers.snapshot() for key in keys]
    return states, sorted(timers)


def test_a_keyed_snapshot_restores_whole_at_the_same_parallelism_and_split_at_another() -> None:
    before = filled()
    saved = pickle.loads(pickle.dumps(before.snapshot_state()))
    assert saved["key_groups"] == (0, 128)
    same = keyed_operator()
    same.restore_state([saved])
    assert contents([same]) == contents([before])
    # Three instances: each takes exactly the keys of its own key groups.
    split = [keyed_operator(index, 3) for index in range(3)]
    for operator in split:
        operator.restore_state([pickle.loads(pickle.dumps(before.snapshot_state()))])
        owned = operator.context.key_groups
        assert all(key_group(key) in owned for key in operator.backend.tables()["last"])
    assert contents(split) == contents([before])
    # And back to one: the three parts (disjoint ranges) are merged again.
    merged = keyed_operator()
    merged.restore_state([pickle.loads(pickle.dumps(part.snapshot_state())) for part in split])
    assert contents([merged]) == contents([before])


def test_a_keyed_checkpoint_cut_by_key_group_still_restores() -> None:
    # The format before session 3: {"groups": {group: {"state", "event", "processing"}}}.
    before = filled()
    states, timers = contents([before])
    groups: dict[int, dict[str, Any]] = {}
    for key, value in states.items():
        part = groups.setdefault(key_group(key), {"state": {}, "event": [], "processing": []})
        part["state"].setdefault("last", {})[key] = value
    for time, key in timers:
        groups[key_group(key)]["event"].append((time, key))
    restored = [keyed_operator(index, 2) for index in range(2)]
    for operator in restored:
        operator.restore_state([pickle.loads(pickle.dumps({"groups": groups}))])
    assert contents(restored) == (states, timers)
