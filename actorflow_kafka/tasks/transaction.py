"""The transaction of a partition task, as the operators inside the task see it.

A partition task writes everything it produces (its sinks' results and its changelog records) with
one transactional producer of its own, and commits at each of its checkpoints: results, state
changes and input offsets in one Kafka transaction. A :class:`~actorflow_kafka.KafkaSink` running
inside a task finds that transaction through :func:`current_transaction` (a context variable the
task sets for its actors) and writes into it instead of opening a producer of its own.

The sink's part of the protocol: it flushes at barrier ``n`` (every record of the interval
acknowledged), then waits in ``barrier_acknowledged(n)``, reading nothing, until the task has
committed or aborted checkpoint ``n`` (:meth:`TaskTransaction.outcome`), so that no record after
barrier ``n`` gets into the transaction of ``n``.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer

__all__ = ["TaskTransaction", "current_transaction"]


@dataclass(eq=False)
class TaskTransaction:
    """The producer of one task and the outcomes of its checkpoints."""

    producer: AIOKafkaProducer
    transactional_id: str
    #: The task's partition (of the topic its stage reads).
    partition: int = 0
    #: Records the task's sinks wrote into the open transaction (none: a commit may be skipped).
    written: int = 0
    #: The options the producer was made with (sinks batch records as it would).
    producer_options: Mapping[str, Any] = field(default_factory=dict)
    _outcomes: dict[int, asyncio.Future[bool]] = field(default_factory=dict)

    def _future(self, checkpoint_id: int) -> asyncio.Future[bool]:
        found = self._outcomes.get(checkpoint_id)
        if found is None:
            found = self._outcomes[checkpoint_id] = asyncio.get_running_loop().create_future()
        return found

    async def outcome(self, checkpoint_id: int) -> bool:
        """Wait until checkpoint ``checkpoint_id`` is committed (True) or aborted (False)."""
        try:
            return await self._future(checkpoint_id)
        finally:
            for older in [n for n in self._outcomes if n <= checkpoint_id]:
                del self._outcomes[older]

    def decide(self, checkpoint_id: int, committed: bool) -> None:
        """Checkpoint ``checkpoint_id`` was committed or aborted: release whoever waits for it."""
        future = self._future(checkpoint_id)
        if not future.done():
            future.set_result(committed)


_CURRENT: contextvars.ContextVar[TaskTransaction | None] = contextvars.ContextVar(
    "actorflow_kafka_task_transaction", default=None
)


def current_transaction() -> TaskTransaction | None:
    """The transaction of the partition task the caller runs in, or None outside tasks."""
    return _CURRENT.get()


def set_transaction(transaction: TaskTransaction | None) -> contextvars.Token[TaskTransaction | None]:
    """Make ``transaction`` the current one for tasks created from here on (the task's actors)."""
    return _CURRENT.set(transaction)


def reset_transaction(token: contextvars.Token[TaskTransaction | None]) -> None:
    _CURRENT.reset(token)
