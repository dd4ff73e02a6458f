"""A flow's run and the cyclic collector: what exists once the actors are built is frozen (full
collections do not walk it), a restart gives the failed attempt's objects back to the collector,
and the end of the run thaws everything."""

from __future__ import annotations

import gc
import weakref
from typing import Any

from actorflow import Flow
from actorflow.checkpoint.restart import FixedDelayRestart
from actorflow.checkpoint.storage import MemoryStorage
from actorflow.operators.base import Collector
from actorflow.operators.process import Context, KeyedProcessFunction, RuntimeContext


class FailsOnce(KeyedProcessFunction[int, tuple[str, Any]]):
    """Its first attempt fails at record 5; the second reports whether the first attempt's
    function, kept alive only by a reference cycle, was collected, and whether objects are frozen."""

    def __init__(self, attempts: list[weakref.ref[FailsOnce]]) -> None:
        self.attempts = attempts

    def __deepcopy__(self, memo: dict[int, Any]) -> FailsOnce:
        return FailsOnce(self.attempts)  # one list of attempts across restarts

    def open(self, ctx: RuntimeContext) -> None:
        self.itself = self  # only the cyclic collector can free it
        self.attempts.append(weakref.ref(self))

    def process_element(self, value: int, ctx: Context, out: Collector) -> None:
        if len(self.attempts) == 1 and value == 5:
            raise RuntimeError("the first attempt fails")
        if len(self.attempts) == 2 and value == 0:
            out.collect(("frozen while running", gc.get_freeze_count() > 0))
            gc.collect()
            out.collect(("first attempt collected", self.attempts[0]() is None))


def test_a_restart_lets_the_collector_take_the_failed_attempt_and_the_end_thaws_all() -> None:
    flow = Flow("collector")
    flow.enable_checkpointing(MemoryStorage())
    flow.set_restart_strategy(FixedDelayRestart(attempts=1, delay_ms=0))
    attempts: list[weakref.ref[FailsOnce]] = []
    out = flow.from_iterable(range(10)).key_by(lambda n: 0).process(FailsOnce(attempts)).collect()
    flow.execute()
    assert flow.restarts == 1
    assert out.values == [("frozen while running", True), ("first attempt collected", True)]
    assert gc.get_freeze_count() == 0
