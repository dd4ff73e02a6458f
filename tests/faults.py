"""Fault injection for checkpoint tests: a source that checkpoints at set points, planned faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from actorflow import Flow
from actorflow.operators.base import OperatorContext
from actorflow.operators.sinks import CollectSink
from actorflow.operators.sources import IterableSource

__all__ = ["Faults", "FaultySink", "GatedSource", "StoppingSource"]


class GatedSource(IterableSource):
    """A list that takes a checkpoint (and waits for it to complete) at each of its ``gates``: the
    first time it has yielded that many records."""

    def __init__(self, items: list[int], flow: Flow, gates: list[int]) -> None:
        super().__init__(items)
        self.flow = flow
        self.gates = gates
        self.passed: set[int] = set()

    @property
    def checkpointed(self) -> bool:
        return bool(self.passed)

    async def read(self, context: OperatorContext) -> AsyncIterator[list[Any]]:
        async for batch in super().read(context):
            yield batch
            for gate in self.gates:
                if gate not in self.passed and self._emitted >= gate:
                    await self.flow.checkpoint()  # a failure here fails the job: no pass then
                    self.passed.add(gate)


class Faults:
    """Raises in the planned places, in order, once the source's checkpoint has completed."""

    def __init__(self, plan: list[str]) -> None:
        self.plan = list(plan)
        self.source: GatedSource | None = None
        self.raised: list[str] = []

    def check(self, where: str) -> None:
        source = self.source
        ready = source is not None and source.checkpointed
        # One fault per run: other instances may still be running while the first fault stops it.
        attempt = source.flow.restarts if source is not None else 0
        if ready and self.plan and self.plan[0] == where and attempt == len(self.raised):
            self.raised.append(self.plan.pop(0))
            raise RuntimeError(f"injected fault in {where}")


class FaultySink(CollectSink):
    """Collects; its snapshot and restore fail when the plan says so."""

    def __init__(self, faults: Faults) -> None:
        super().__init__()
        self.faults = faults

    def snapshot_state(self) -> Any:
        self.faults.check("snapshot")
        return None

    def restore_state(self, states: list[Any]) -> None:
        self.faults.check("restore")


class StoppingSource(IterableSource):
    """A list that stops its flow gracefully (a savepoint, then the actors stop) once it has
    yielded ``stop_at`` records."""

    def __init__(self, items: list[Any], flow: Flow, stop_at: int | None) -> None:
        super().__init__(items)
        self.flow = flow
        self.stop_at = stop_at
        self.stopped = False

    async def read(self, context: OperatorContext) -> AsyncIterator[list[Any]]:
        async for batch in super().read(context):
            yield batch
            if self.stop_at is not None and not self.stopped and self._emitted >= self.stop_at:
                self.stopped = True
                await self.flow.stop()
