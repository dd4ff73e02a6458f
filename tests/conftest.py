"""Shared fixtures: every flow test runs with one instance per operator and with several."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest


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
