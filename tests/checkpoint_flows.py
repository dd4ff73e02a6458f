"""Flows and helpers the checkpoint tests of both backends share: a keyed profile per card with
every kind of state and a timer, a source that checkpoints at given records and then crashes, and
readers of what the checkpoints stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson

from actorflow import Flow
from actorflow.checkpoint.filesystem import FileSystemStorage
from actorflow.checkpoint.storage import CheckpointInfo
from actorflow.operators.base import Collector, OperatorContext
from actorflow.operators.process import Context, KeyedProcessFunction, KeyedProcessOperator, RuntimeContext
from actorflow.operators.sources import IterableSource
from actorflow.runtime.messages import Batch
from actorflow.state.descriptors import ListStateDescriptor, StateTtl, ValueStateDescriptor

KEYS = 300


class Profile(KeyedProcessFunction[dict[str, Any], list[Any]]):
    """A count, a JSON-coded last value with a TTL, a list updated in place, and an event-time
    timer per key (which fires at the end: the final watermark)."""

    def open(self, ctx: RuntimeContext) -> None:
        self.count = ctx.get_state(ValueStateDescriptor[int]("count", default=0))
        self.last = ctx.get_state(ValueStateDescriptor[Any]("last", ttl=StateTtl(3_600_000), codec="json"))
        self.recent = ctx.get_list_state(ListStateDescriptor[int]("recent"))

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        self.count.update(self.count.value() + 1)
        self.last.update({"v": value["v"]})
        self.recent.add(value["v"])
        ctx.timer_service().register_event_time_timer(1_000_000 + len(str(ctx.current_key)))
        out.collect([ctx.current_key, self.count.value(), self.recent.get()[-3:]])

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        out.collect(["timer", ctx.current_key, timestamp, self.count.value(), self.last.value()])


def records(n: int, keys: int = KEYS) -> list[dict[str, Any]]:
    return [{"k": f"card-{i % keys}", "v": (i * 7) % 101, "ts": i} for i in range(n)]


class CheckpointingSource(IterableSource):
    """Checkpoints (and waits for it) after each of ``gates`` records; raises after ``crash_at``
    records (once every gate is passed), as a crash would end the run."""

    def __init__(self, items: list[Any], flow: Flow, gates: list[int], crash_at: int | None = None) -> None:
        super().__init__(items)
        self.flow = flow
        self.gates = gates
        self.crash_at = crash_at
        self.checkpointed: list[int] = []

    async def read(self, context: OperatorContext) -> AsyncIterator[list[Any]]:
        async for batch in super().read(context):
            yield batch
            for gate in self.gates:
                if gate not in self.checkpointed and self._emitted >= gate:
                    await self.flow.checkpoint()
                    self.checkpointed.append(gate)
            if self.crash_at is not None and self._emitted >= self.crash_at:
                raise RuntimeError("crash")


def lines(path: Path) -> list[Any]:
    return sorted((orjson.loads(line) for line in path.read_bytes().splitlines()), key=repr)


def completed(checkpoints: Path) -> list[CheckpointInfo]:
    return FileSystemStorage(checkpoints, retain=10).completed()


def new_shared_bytes(infos: list[CheckpointInfo]) -> list[int]:
    """Per checkpoint, the bytes of the shared files no earlier one listed (what it uploaded)."""
    seen: set[str] = set()
    sizes = []
    for info in infos:
        sizes.append(sum(entry["size"] for key, entry in info.shared.items() if key not in seen))
        seen |= info.shared.keys()
    return sizes


def feed(operator: KeyedProcessOperator, numbers: range) -> None:
    operator.process(Batch([{"k": f"card-{n % 37}", "v": n} for n in numbers]))


def contents(operators: list[KeyedProcessOperator]) -> tuple[dict[str, Any], list[Any]]:
    state: dict[str, Any] = {}
    timers: list[Any] = []
    for operator in operators:
        for name, table in operator.backend.tables().items():
            state.setdefault(name, {}).update(table)
        timers.extend(zip(*operator.event_timers.export(), strict=True))
    return state, sorted(timers)


def build(
    items: list[dict[str, Any]],
    checkpoints: Path,
    target: Path,
    *,
    parallelism: int,
    backend: str,
    rocks: Path | None = None,
    gates: list[int] = (),  # type: ignore[assignment]
    crash_at: int | None = None,
    cache_entries: int = 16,
) -> tuple[Flow, CheckpointingSource]:
    """The profile flow from ``items`` to ``target`` (exactly once), checkpointing into
    ``checkpoints`` at ``gates`` and crashing at ``crash_at``, with its state on ``backend``:
    ``heap``, ``heap-incremental`` or ``rocksdb`` (under ``rocks``, next to the checkpoints when
    None), whatever ``$ACTORFLOW_STATE_BACKEND`` says."""
    flow = Flow("profiles", parallelism=parallelism, batch_size=20)
    if backend == "rocksdb":
        path = checkpoints.parent / "rocks" if rocks is None else rocks
        flow.set_state_backend("rocksdb", path=path, cache_entries=cache_entries)
    else:
        flow.set_state_backend("heap", incremental=backend == "heap-incremental")
    flow.enable_checkpointing(FileSystemStorage(checkpoints, retain=10))
    source = CheckpointingSource(items, flow, list(gates), crash_at)
    flow.from_source(source).key_by("k").process(Profile()).sink_to_json_lines(target, exactly_once=True)
    return flow, source


def reference_run(tmp_path: Path) -> tuple[list[dict[str, Any]], list[Any]]:
    """2,400 records over 300 cards and the output of a run without failure, on the heap."""
    items = records(2_400)
    target = tmp_path / "reference.jsonl"
    flow, _ = build(items, tmp_path / "reference-checkpoints", target, parallelism=2, backend="heap")
    flow.execute()
    return items, lines(target)
