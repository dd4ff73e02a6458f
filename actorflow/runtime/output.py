"""The sending side of an actor: a router splits each batch over the receivers' mailboxes.

A :class:`Router` decides which receiver gets which record (forward, hash by key group, rebalance,
broadcast: the plan layer provides them). Watermarks inside a batch go to *every* receiver, at the
position matching the records that receiver got, so each receiver sees exactly the watermark
sequence the sender saw.
"""

from __future__ import annotations

from typing import Protocol

from actorflow.runtime.mailbox import Mailbox
from actorflow.runtime.messages import Batch, Message

__all__ = ["ForwardRouter", "Output", "Router", "compact"]


class Router(Protocol):
    """Splits a batch into one part per receiver (``None`` where a receiver gets nothing)."""

    def split(self, batch: Batch, receivers: int) -> list[Batch | None]: ...


class ForwardRouter:
    """Everything to the single receiver (receiver ``i`` of a one-to-one edge)."""

    def split(self, batch: Batch, receivers: int) -> list[Batch | None]:
        return [batch]


def compact(batch: Batch) -> Batch | None:
    """Drop a batch with nothing in it; reduce a watermark-only batch to its last watermark."""
    if batch.values:
        return batch
    marks = batch.marks
    if not marks:
        return None
    if len(marks) == 1:
        return batch
    return Batch([], None, [(0, marks[-1][1])])


class Output:
    """One outgoing edge of an actor instance: a router over the receivers' mailboxes.

    >>> import asyncio
    >>> box = Mailbox(2)
    >>> out = Output([box])
    >>> asyncio.run(out.send(Batch([1, 2])))
    >>> len(box)
    1
    """

    __slots__ = ("_mailboxes", "_router")

    def __init__(self, mailboxes: list[Mailbox], router: Router | None = None) -> None:
        if router is None and len(mailboxes) != 1:
            raise ValueError("an output to several mailboxes needs a router")
        self._mailboxes = mailboxes
        self._router: Router = router if router is not None else ForwardRouter()

    @property
    def mailboxes(self) -> list[Mailbox]:
        return self._mailboxes

    async def send(self, batch: Batch) -> None:
        """Route ``batch`` and put each non-empty part into its mailbox (waits while one is full)."""
        mailboxes = self._mailboxes
        if len(mailboxes) == 1:
            part = compact(batch)
            if part is not None:
                await mailboxes[0].put(part)
            return
        for mailbox, routed in zip(mailboxes, self._router.split(batch, len(mailboxes)), strict=True):
            if routed is not None:
                part = compact(routed)
                if part is not None:
                    await mailbox.put(part)

    async def send_control(self, message: Message) -> None:
        """Put a control message (status, barrier, end of stream) into every mailbox, in order."""
        for mailbox in self._mailboxes:
            await mailbox.put(message)
