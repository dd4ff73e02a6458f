"""Signals of the daemon: SIGTERM / SIGINT stop it, SIGUSR1 asks for a savepoint.

The first SIGTERM or SIGINT asks for a graceful stop (the daemon takes a final savepoint, lets the
sinks commit it, and exits 0). A second one exits at once with ``128 + signal`` (130 for SIGINT, 143
for SIGTERM), from inside the signal handler: it works even when the event loop is stuck in a user
function or a slow savepoint, and it is safe because checkpoints are written atomically (a
checkpoint cut short is cleaned up at the next start, which resumes from the last complete one).

The handlers are plain :func:`signal.signal` handlers, not ``loop.add_signal_handler``: Python runs
them between two bytecodes of the main thread whatever the loop is doing, and they only hand work
to the loop with ``call_soon_threadsafe`` (which is what asyncio's own SIGINT handling does).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["DaemonSignals", "exit_code"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def exit_code(signum: int) -> int:
    """The shell's exit code for a process ended by ``signum``: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + signum


class DaemonSignals:
    """Installs the daemon's handlers for the time of a ``with`` block and restores the old ones;
    but once a stop has begun, the stop signals keep exiting at once until the process has ended.

    ``on_stop(signum)`` and ``on_savepoint()`` run in ``loop``, soon after the signal.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_stop: Callable[[int], None],
        on_savepoint: Callable[[], None],
        *,
        exit_now: Callable[[int], Any] = os._exit,
    ) -> None:
        self._loop = loop
        self._on_stop = on_stop
        self._on_savepoint = on_savepoint
        self._exit_now = exit_now
        self._previous: dict[int, Any] = {}
        #: The first stop signal received, or None.
        self.stopping: int | None = None

    def __enter__(self) -> DaemonSignals:
        for signum in (*STOP_SIGNALS, signal.SIGUSR1):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            # Once a stop has begun, a stop signal exits at once until the process has ended.
            if self.stopping is None or signum not in STOP_SIGNALS:
                signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGUSR1:
            self._loop.call_soon_threadsafe(self._on_savepoint)
            return
        if self.stopping is not None:
            # The second stop signal: no more waiting, whatever the loop is doing. Not even for a
            # flush of stdout, which can block on a full pipe: output still buffered is dropped.
            self._exit_now(exit_code(signum))
            return
        self.stopping = signum
        self._loop.call_soon_threadsafe(self._on_stop, signum)
