"""Job supervision: every actor of a job runs as a task in one task group.

If any actor fails, the task group cancels the others, waits for them to finish, and the job fails
with the first actor's own exception (its note names the operator instance). No task is left
pending, nothing is swallowed: a cancelled ``run`` propagates its cancellation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from actorflow.runtime.actor import Runnable

__all__ = ["run_actors"]


async def run_actors(actors: Sequence[Runnable]) -> None:
    """Run ``actors`` concurrently until all finish; on a failure, cancel the rest and re-raise it.

    >>> class Hello:
    ...     name = "hello"
    ...     async def run(self) -> None:
    ...         print("hi")
    >>> asyncio.run(run_actors([Hello()]))
    hi
    """
    failure: BaseException | None = None
    try:
        async with asyncio.TaskGroup() as group:
            for actor in actors:
                group.create_task(_guarded(actor), name=actor.name)
    except BaseExceptionGroup as group_error:
        failures = _leaves(group_error)
        failure = failures[0]
        if len(failures) > 1:
            others = "; ".join(
                f"{getattr(f, '_actorflow_actor', '?')}: {type(f).__name__}: {f}" for f in failures[1:]
            )
            failure.add_note(f"{len(failures) - 1} more actor(s) failed too: {others}")
    if failure is not None:
        raise failure


async def _guarded(actor: Runnable) -> None:
    try:
        await actor.run()
    except Exception as error:
        if not hasattr(error, "_actorflow_actor"):
            error._actorflow_actor = actor.name  # type: ignore[attr-defined]
        if not getattr(error, "_actorflow_located", False):
            error.add_note(f"actorflow: raised in {actor.name}")
            error._actorflow_located = True  # type: ignore[attr-defined]
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            leaves.extend(_leaves(error))
        else:
            leaves.append(error)
    return leaves
