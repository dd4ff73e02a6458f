"""Waiting for a poll unless the reader is stopped meanwhile.

aiokafka's ``getmany()`` waits out a rebalance whatever its timeout, and a rebalance may itself
wait for this job (a checkpoint's commit, a task's commit): a stop must not wait behind it. The poll
races the stop; the loser is cancelled and awaited, so no task is left behind.

>>> import asyncio
>>> async def demo():
...     stopped = asyncio.get_running_loop().create_future()
...     stopped.set_result(None)
...     return await unless_stopped(asyncio.sleep(10, "records"), stopped)
>>> asyncio.run(demo())
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

__all__ = ["unless_stopped"]

T = TypeVar("T")


async def unless_stopped(work: Awaitable[T], stopped: asyncio.Future[Any]) -> T | None:
    """``work``'s result, or None if ``stopped`` resolves first (``work`` is cancelled then)."""
    poll = asyncio.ensure_future(work)
    try:
        await asyncio.wait((poll, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not poll.done():
            poll.cancel()
            await asyncio.wait((poll,))
    if poll.cancelled():
        return None
    return poll.result()
