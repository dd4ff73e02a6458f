"""Bounded mailboxes: one per edge between two actor instances, read together through an inbox.

A :class:`Mailbox` follows the memory-channel pattern: a required bound, a non-blocking
:meth:`Mailbox.put_nowait` that raises :class:`~actorflow.errors.WouldBlock` when full, and an async
:meth:`Mailbox.put` built on it that parks the sender until the receiver makes room. That parking is
backpressure: a slow receiver suspends its senders, theirs suspend their sources.

An :class:`Inbox` is the receiving end of an actor: it reads its mailboxes fairly (round robin), and can
block a single mailbox (barrier alignment) without letting the others' memory grow.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass

from actorflow.errors import ClosedResourceError, WouldBlock
from actorflow.runtime.messages import Message

__all__ = ["Inbox", "Mailbox", "MailboxStats"]


@dataclass(frozen=True, slots=True)
class MailboxStats:
    """A snapshot of one mailbox, for metrics: how full it is, how often and how long senders waited.

    ``blocked_seconds`` is the time senders spent parked on this full mailbox (backpressure),
    including a wait still in progress; it only grows.
    """

    name: str
    capacity: int
    size: int
    puts: int
    waits: int
    blocked_seconds: float = 0.0

    @property
    def fill(self) -> float:
        """Fraction of the bound in use, 0.0 to 1.0: the backpressure signal."""
        return self.size / self.capacity


class Mailbox:
    """A bounded FIFO of messages from one sender to one receiver.

    >>> from actorflow.runtime.messages import EndOfStream
    >>> box = Mailbox(1, name="a->b")
    >>> box.put_nowait(EndOfStream())
    >>> box.put_nowait(EndOfStream())
    Traceback (most recent call last):
    ...
    actorflow.errors.WouldBlock: mailbox 'a->b' is full (1 messages)
    """

    __slots__ = (
        "_blocked",
        "_blocked_since",
        "_capacity",
        "_closed",
        "_inbox",
        "_items",
        "_puts",
        "_senders",
        "_waits",
        "name",
    )

    def __init__(self, capacity: int, *, name: str = "") -> None:
        if capacity < 1:
            raise ValueError(f"a mailbox needs a capacity of at least 1, got {capacity}")
        self.name = name
        self._capacity = capacity
        self._items: deque[Message] = deque()
        self._senders: deque[asyncio.Future[None]] = deque()
        self._inbox: Inbox | None = None
        self._closed = False
        self._puts = 0
        self._waits = 0
        # Seconds senders spent parked, and since when the current wait runs (None: no wait):
        # measured only when a put has to wait, so an unhindered put costs nothing extra. Real
        # elapsed time (perf_counter), not the job's clock: it is a cost, not processing time.
        self._blocked = 0.0
        self._blocked_since: float | None = None

    @property
    def capacity(self) -> int:
        return self._capacity

    def __len__(self) -> int:
        return len(self._items)

    def stats(self) -> MailboxStats:
        """Return a frozen snapshot of this mailbox's fill and counters."""
        blocked = self._blocked
        if self._blocked_since is not None:
            blocked += time.perf_counter() - self._blocked_since
        return MailboxStats(self.name, self._capacity, len(self._items), self._puts, self._waits, blocked)

    def put_nowait(self, message: Message) -> None:
        """Append ``message`` or raise :class:`WouldBlock` if the mailbox is at its bound.

        Raises :class:`ClosedResourceError` after :meth:`close`.
        """
        if self._closed:
            raise ClosedResourceError(f"mailbox {self.name!r} is closed")
        if len(self._items) >= self._capacity:
            raise WouldBlock(f"mailbox {self.name!r} is full ({self._capacity} messages)")
        self._items.append(message)
        self._puts += 1
        inbox = self._inbox
        if inbox is not None:
            inbox._wake()

    async def put(self, message: Message) -> None:
        """Append ``message``, waiting for room while the mailbox is full (backpressure)."""
        while True:
            try:
                self.put_nowait(message)
                return
            except WouldBlock:
                self._waits += 1
                waiter = asyncio.get_running_loop().create_future()
                self._senders.append(waiter)
                started = self._blocked_since = time.perf_counter()
                try:
                    await waiter
                except asyncio.CancelledError:
                    if waiter.done() and not waiter.cancelled():
                        # We were handed the free slot but will not use it: pass it on.
                        self._wake_sender()
                    raise
                finally:
                    self._blocked += time.perf_counter() - started
                    self._blocked_since = None
                    with contextlib.suppress(ValueError):
                        self._senders.remove(waiter)

    def _wake_sender(self) -> None:
        senders = self._senders
        while senders:
            waiter = senders.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def get_nowait(self) -> Message:
        """Pop the oldest message; raises :class:`IndexError` when empty. Wakes one waiting sender."""
        message = self._items.popleft()
        if self._senders:
            self._wake_sender()
        return message

    def close(self) -> None:
        """Refuse further puts and wake every parked sender (they then see the closed mailbox)."""
        self._closed = True
        while self._senders:
            waiter = self._senders.popleft()
            if not waiter.done():
                waiter.set_result(None)


class Inbox:
    """The receiving side of an actor: its input mailboxes, read fairly, any of them blockable.

    >>> import asyncio
    >>> from actorflow.runtime.messages import EndOfStream
    >>> a, b = Mailbox(4), Mailbox(4)
    >>> inbox = Inbox([a, b])
    >>> b.put_nowait(EndOfStream())
    >>> asyncio.run(inbox.get())
    (1, EndOfStream())
    """

    __slots__ = ("_blocked", "_cursor", "_mailboxes", "_waiter")

    def __init__(self, mailboxes: list[Mailbox]) -> None:
        self._mailboxes = mailboxes
        self._blocked: set[int] = set()
        self._cursor = 0
        self._waiter: asyncio.Future[None] | None = None
        for mailbox in mailboxes:
            if mailbox._inbox is not None:
                raise ValueError(f"mailbox {mailbox.name!r} already belongs to an inbox")
            mailbox._inbox = self

    @property
    def mailboxes(self) -> list[Mailbox]:
        return self._mailboxes

    def block(self, index: int) -> None:
        """Stop reading mailbox ``index`` until :meth:`unblock` (its sender fills it and then waits)."""
        self._blocked.add(index)

    def unblock(self, index: int) -> None:
        self._blocked.discard(index)
        self._wake()

    def get_nowait(self) -> tuple[int, Message] | None:
        """Return ``(mailbox index, message)`` from the next unblocked non-empty mailbox, or None."""
        mailboxes = self._mailboxes
        count = len(mailboxes)
        if count == 1:
            if mailboxes[0]._items and not self._blocked:
                return 0, mailboxes[0].get_nowait()
            return None
        start = self._cursor
        blocked = self._blocked
        for step in range(count):
            index = (start + step) % count
            mailbox = mailboxes[index]
            if mailbox._items and index not in blocked:
                self._cursor = (index + 1) % count
                return index, mailbox.get_nowait()
        return None

    async def get(self) -> tuple[int, Message]:
        """Wait for and return the next ``(mailbox index, message)``."""
        while True:
            item = self.get_nowait()
            if item is not None:
                return item
            await self.wait()

    async def wait(self) -> None:
        """Wait until some mailbox may have a message (returns at once if one already has)."""
        waiter = self.waiter()
        if waiter is None:
            return
        try:
            await waiter
        finally:
            self._waiter = None

    def waiter(self) -> asyncio.Future[None] | None:
        """A future resolved by the next put, or None when a message is already waiting.

        For racing the inbox against something else; :meth:`wait` is the plain way.
        """
        if self._has_message():
            return None
        waiter = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        return waiter

    def _has_message(self) -> bool:
        blocked = self._blocked
        return any(m._items and i not in blocked for i, m in enumerate(self._mailboxes))

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
