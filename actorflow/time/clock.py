"""Clocks: every reading of processing time goes through one, so tests can drive time by hand.

Processing time is wall-clock epoch milliseconds, as in Flink. :class:`SystemClock` reads the real
time; :class:`ManualClock` only moves when a test calls :meth:`ManualClock.advance`, and resolves
the futures waiting on it in time order.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from abc import ABC, abstractmethod
from itertools import count

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(ABC):
    """The source of processing time, in epoch milliseconds."""

    @abstractmethod
    def now(self) -> int:
        """The current processing time in milliseconds."""

    @abstractmethod
    def at(self, time_ms: int) -> asyncio.Future[None]:
        """A future that resolves once :meth:`now` has reached ``time_ms``. Cancel it to forget it."""

    async def sleep_until(self, time_ms: int) -> None:
        """Wait until :meth:`now` has reached ``time_ms``."""
        await self.at(time_ms)


class SystemClock(Clock):
    """The real wall clock.

    >>> SystemClock().now() > 1_600_000_000_000
    True
    """

    def now(self) -> int:
        return time.time_ns() // 1_000_000

    def at(self, time_ms: int) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        delay = max(0.0, (time_ms - self.now()) / 1000)
        handle = loop.call_later(delay, _resolve, future)
        future.add_done_callback(lambda _: handle.cancel())
        return future


class ManualClock(Clock):
    """A clock that moves only when told to: deterministic processing time for tests.

    >>> clock = ManualClock(start=1000)
    >>> clock.advance(500)
    >>> clock.now()
    1500
    """

    def __init__(self, start: int = 0) -> None:
        self._now = start
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = count()

    def now(self) -> int:
        return self._now

    def at(self, time_ms: int) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if time_ms <= self._now:
            future.set_result(None)
        else:
            heapq.heappush(self._waiting, (time_ms, next(self._order), future))
        return future

    def advance(self, milliseconds: int) -> None:
        """Move time forward by ``milliseconds`` and resolve every wait that is now due."""
        if milliseconds < 0:
            raise ValueError("a clock does not go backwards")
        self.set(self._now + milliseconds)

    def set(self, time_ms: int) -> None:
        """Move time forward to ``time_ms`` (never backwards)."""
        if time_ms < self._now:
            raise ValueError(f"a clock does not go backwards ({time_ms} < {self._now})")
        self._now = time_ms
        waiting = self._waiting
        while waiting and waiting[0][0] <= time_ms:
            _resolve(heapq.heappop(waiting)[2])

    @property
    def waiters(self) -> int:
        """How many futures are waiting on a future time (cancelled ones excluded)."""
        return sum(1 for _, _, future in self._waiting if not future.done())


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
