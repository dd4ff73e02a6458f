"""A sink callback for tests that wait for a particular result of a running flow."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["Recorder"]


class Recorder:
    """A plain sink callback that keeps what it gets and lets a test wait for a particular item."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._waiters: list[tuple[Callable[[Any], bool], asyncio.Future[Any]]] = []

    def __call__(self, item: Any) -> None:
        self.items.append(item)
        for predicate, future in self._waiters:
            if not future.done() and predicate(item):
                future.set_result(item)

    async def wait_for(self, predicate: Callable[[Any], bool], running: asyncio.Task[None]) -> Any:
        """The first item matching ``predicate``; fails at once if the flow ends first."""
        for item in self.items:
            if predicate(item):
                return item
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, future))
        async with asyncio.timeout(10):  # a guard against a hang, not a synchronisation
            await asyncio.wait((future, running), return_when=asyncio.FIRST_COMPLETED)
        if future.done():
            return future.result()
        future.cancel()
        running.result()
        raise AssertionError(f"the flow ended before an item matched; got {self.items}")
