"""The flow: sources, defaults for the whole job, and running it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from actorflow.api.stream import DataStream
from actorflow.errors import PlanError
from actorflow.operators.sources import DeadLetter, IterableSource, JsonLinesSource, Source
from actorflow.plan.graph import LogicalGraph
from actorflow.plan.physical import PhysicalPlan, compile_graph, deploy
from actorflow.runtime.job import run_actors
from actorflow.state.keygroups import DEFAULT_MAX_PARALLELISM
from actorflow.time.clock import Clock, SystemClock
from actorflow.time.watermarks import WatermarkStrategy

__all__ = ["Flow", "new_event_loop"]

T = TypeVar("T")


class Flow:
    """A streaming job: add sources, chain operators onto them, end in sinks, then run it.

    ``parallelism`` is the default number of instances per operator; ``batch_size`` the most records
    a batch carries; ``mailbox_capacity`` the bound, in batches, of every mailbox; ``clock`` the
    source of processing time (a :class:`~actorflow.time.clock.ManualClock` in tests).

    >>> flow = Flow("doubler")
    >>> doubled = flow.from_iterable([1, 2, 3]).map(lambda n: n * 2).collect()
    >>> flow.execute()
    >>> doubled.values
    [2, 4, 6]
    """

    def __init__(
        self,
        name: str = "flow",
        *,
        parallelism: int = 1,
        max_parallelism: int = DEFAULT_MAX_PARALLELISM,
        batch_size: int = 1024,
        mailbox_capacity: int = 8,
        clock: Clock | None = None,
    ) -> None:
        if parallelism < 1 or max_parallelism < parallelism:
            raise PlanError("need 1 <= parallelism <= max_parallelism")
        if batch_size < 1 or mailbox_capacity < 1:
            raise PlanError("batch_size and mailbox_capacity must be at least 1")
        self.name = name
        self.parallelism = parallelism
        self.max_parallelism = max_parallelism
        self.batch_size = batch_size
        self.mailbox_capacity = mailbox_capacity
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._graph = LogicalGraph()
        self._running = False

    # -- sources -------------------------------------------------------------------------------

    def from_source(
        self,
        source: Source,
        *,
        name: str | None = None,
        watermarks: WatermarkStrategy | None = None,
        parallelism: int | None = None,
    ) -> DataStream[Any]:
        """Read ``source``; with ``watermarks``, its records carry event time."""
        node = self._graph.add(
            "source",
            name,
            source=source,
            watermarks=watermarks,
            parallelism=parallelism,
            max_parallelism=source.max_parallelism,
        )
        return DataStream(self, ((node, None),))

    def from_iterable(
        self,
        items: Iterable[T],
        *,
        name: str | None = None,
        watermarks: WatermarkStrategy | None = None,
    ) -> DataStream[T]:
        """The records of ``items``, in order (a bounded stream if ``items`` ends)."""
        return self.from_source(IterableSource(items), name=name, watermarks=watermarks)

    def from_json_lines(
        self,
        path: str | Path,
        *,
        name: str | None = None,
        watermarks: WatermarkStrategy | None = None,
        dead_letters: Callable[[DeadLetter], None] | None = None,
    ) -> DataStream[Any]:
        """One record per line of a JSON-lines file; see :class:`JsonLinesSource` for bad lines."""
        return self.from_source(
            JsonLinesSource(path, dead_letters=dead_letters), name=name, watermarks=watermarks
        )

    # -- running -------------------------------------------------------------------------------

    def plan(self) -> PhysicalPlan:
        """Compile the flow: chains, their parallelism and the partitioners between them."""
        return compile_graph(self._graph, self.parallelism)

    async def run(self) -> None:
        """Run the flow in the running event loop until every source has ended.

        Raises the first exception a user function raised (with a note naming the operator),
        after every actor has stopped.
        """
        if self._running:
            raise PlanError(f"flow {self.name!r} is already running")
        actors = deploy(
            self.plan(),
            clock=self.clock,
            batch_size=self.batch_size,
            mailbox_capacity=self.mailbox_capacity,
            max_parallelism=self.max_parallelism,
        )
        self._running = True
        try:
            await run_actors(actors)
        finally:
            self._running = False

    def execute(self) -> None:
        """Run the flow to its end in a new event loop (uvloop when installed)."""
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(self.run())


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop's when it is installed, else asyncio's default."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a default dependency where it exists
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
