"""Young collections paced by records: replacing state values does not pile objects up."""

from __future__ import annotations

import gc
from typing import Any

from actorflow import (
    Collector,
    Context,
    Flow,
    KeyedProcessFunction,
    RuntimeContext,
    ValueState,
    ValueStateDescriptor,
)
from actorflow.runtime import collector

KEYS = 40_000
#: What the operator's copy of :class:`Replace` noted (the flow runs a copy of the function).
YOUNG: list[int] = []


class Replace(KeyedProcessFunction[Any, Any]):
    """Keeps a new list per key per record (the old one is freed: no growth in the collector's
    count); at the last record, notes how many objects wait in the young generations."""

    def __init__(self, total: int) -> None:
        self.total = total

    def open(self, ctx: RuntimeContext) -> None:
        self.seen = 0
        self.profile: ValueState[list[int]] = ctx.get_state(ValueStateDescriptor("profile"))

    def process_element(self, value: int, ctx: Context, out: Collector) -> None:
        old = self.profile.value() or [0]
        self.profile.update([old[0] + 1])
        self.seen += 1
        if self.seen == self.total:
            YOUNG.append(len(gc.get_objects(0)) + len(gc.get_objects(1)))


async def test_replacing_values_leaves_at_most_a_pace_of_young_objects() -> None:
    # The first pass adds keys (the count grows, collections start by themselves); the second
    # replaces every key's list: without pacing, all 40,000 new lists wait in generation 0.
    total = 2 * KEYS
    YOUNG.clear()
    flow = Flow(batch_size=512)
    flow.from_iterable(range(total)).key_by(lambda n: n % KEYS).process(Replace(total)).collect()
    gc.collect()
    await flow.run()
    assert YOUNG and YOUNG[0] < 2 * collector.PACE_RECORDS + 2_000, YOUNG


def test_a_disabled_collector_stays_disabled() -> None:
    seen: list[int] = []

    def note(phase: str, info: dict[str, Any]) -> None:
        seen.append(info["generation"])

    gc.callbacks.append(note)
    gc.disable()
    try:
        collector.records_done(collector.PACE_RECORDS)
    finally:
        gc.enable()
        gc.callbacks.remove(note)
    assert seen == []
