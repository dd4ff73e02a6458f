"""run_actors: every actor in one task group; a failure cancels the rest and is re-raised as is."""

from __future__ import annotations

import asyncio

import pytest

from actorflow.runtime.job import run_actors


class Quick:
    """Finishes at once, recording that it ran."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self._log = log

    async def run(self) -> None:
        await asyncio.sleep(0)
        self._log.append(self.name)


class Forever:
    """Waits on a future nobody resolves; records the cancellation it gets."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = asyncio.Event()
        self.cancelled = False

    async def run(self) -> None:
        self.started.set()
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


class Failing:
    """Raises ``error`` once ``after`` is set (at once without one)."""

    def __init__(self, name: str, error: BaseException, after: asyncio.Event | None = None) -> None:
        self.name = name
        self._error = error
        self._after = after

    async def run(self) -> None:
        if self._after is not None:
            await self._after.wait()
        raise self._error


class FailsWhenCancelled(Forever):
    """Waits forever, and fails with ``error`` while being cancelled (a broken cleanup)."""

    def __init__(self, name: str, error: Exception) -> None:
        super().__init__(name)
        self._error = error

    async def run(self) -> None:
        try:
            await super().run()
        except asyncio.CancelledError:
            raise self._error from None


def no_other_tasks() -> bool:
    return asyncio.all_tasks() == {asyncio.current_task()}


async def test_all_actors_succeed() -> None:
    log: list[str] = []
    await run_actors([Quick("a", log), Quick("b", log), Quick("c", log)])
    assert sorted(log) == ["a", "b", "c"]
    assert no_other_tasks()


async def test_no_actors_is_fine() -> None:
    await run_actors([])


async def test_a_failure_cancels_the_others_and_propagates_with_its_note() -> None:
    waiting = Forever("map[1]")
    error = KeyError("card-9")
    failing = Failing("sink[0]", error, after=waiting.started)

    with pytest.raises(KeyError) as raised:
        await run_actors([waiting, failing])

    assert raised.value is error  # the actor's own exception, not a group or a wrapper
    assert waiting.cancelled
    notes = getattr(raised.value, "__notes__", [])
    assert any("sink[0]" in note for note in notes), notes
    assert not any("map[1]" in note for note in notes)
    assert no_other_tasks()


async def test_two_failures_raise_the_first_with_a_note_about_the_other() -> None:
    first_error = ValueError("bad record")
    second_error = RuntimeError("cleanup failed")
    # the second actor only fails because the first one's failure cancels it
    second = FailsWhenCancelled("window[2]", second_error)
    first = Failing("parse[0]", first_error, after=second.started)

    with pytest.raises(ValueError) as raised:
        await run_actors([second, first])

    assert raised.value is first_error
    notes = raised.value.__notes__
    assert any("parse[0]" in note for note in notes), notes
    other = [note for note in notes if "more actor" in note]
    assert len(other) == 1, notes
    assert "RuntimeError" in other[0] and "cleanup failed" in other[0]
    assert no_other_tasks()


async def test_two_failures_at_once() -> None:
    errors = [OSError("disk"), LookupError("key")]
    with pytest.raises(OSError) as raised:
        await run_actors([Failing("a", errors[0]), Failing("b", errors[1])])
    assert raised.value is errors[0]
    assert any("LookupError: key" in note for note in raised.value.__notes__)
    assert no_other_tasks()


async def test_the_note_about_another_failure_names_its_actor() -> None:
    second = FailsWhenCancelled("window[2]", RuntimeError("cleanup failed"))
    first = Failing("parse[0]", ValueError("bad record"), after=second.started)
    with pytest.raises(ValueError) as raised:
        await run_actors([second, first])
    other = [note for note in raised.value.__notes__ if "more actor" in note]
    assert other
    assert "window[2]" in other[0]


async def test_cancelling_the_caller_cancels_every_actor_and_propagates() -> None:
    actors = [Forever("a"), Forever("b"), Forever("c")]
    job = asyncio.create_task(run_actors(actors))
    for actor in actors:
        await actor.started.wait()

    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job

    assert job.cancelled()  # the cancellation was not swallowed or turned into something else
    assert all(actor.cancelled for actor in actors)
    assert no_other_tasks()
