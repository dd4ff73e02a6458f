"""Shared fixtures: every flow test runs with one instance per operator and with several, and every
async test runs on two event loops: asyncio's own in debug mode, and uvloop (the default at run time).
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import uvloop


def _debug_asyncio_loop() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    loop.set_debug(True)
    return loop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Run every async test on both loop flavours a user may run actorflow on."""
    return {"asyncio-debug": _debug_asyncio_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(params=[1, 3], ids=lambda p: f"p{p}")
def parallelism(request: pytest.FixtureRequest) -> int:
    """The flow's default parallelism: 1 (everything chained) and 3 (a real actor mesh)."""
    return int(request.param)


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """What reaches the event loop's exception handler during the test.

    "Task was destroyed but it is pending", "Task exception was never retrieved" and async-generator
    finalisation errors arrive here, not as warnings; a test asserts the list stays empty.
    """
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        yield errors
    finally:
        loop.set_exception_handler(previous)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Every process a test starts; whatever is still alive at its end is killed, pass or fail."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
            process.wait()
