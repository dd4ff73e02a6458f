"""The back edge of an iteration: a mailbox whose put never waits, counted in records.

Every other mailbox is bounded and parks its sender when full (backpressure). A back edge cannot
be: the iteration's head feeds the body, the body feeds the tail, and the tail feeds the head, so a
tail parked on a full back edge waits for the head, which may be parked on the full body, which
waits for the tail: a cycle of waits, a deadlock. A :class:`FeedbackMailbox` therefore takes every
message at once, and counts the records it holds in a :class:`Backlog` shared by the back edges
into one head instance. The head keeps that backlog bounded itself (see
:mod:`actorflow.runtime.iteration`): it takes records off the back edge before anything else, and
new input only while the back edge is empty, so backpressure reaches the sources, not the loop.

Once the head has ended, its back edges are *sealed*: control messages are dropped (nobody reads
them), and records are refused with :class:`~actorflow.errors.ClosedResourceError` naming the
iteration, since records that can no longer go round the loop would be lost silently.

>>> from actorflow.runtime.messages import Batch
>>> backlog = Backlog()
>>> box = FeedbackMailbox(backlog, 1, name="tail => head", iteration="iterate")
>>> for n in range(3):  # never full: the sender never waits
...     box.put_nowait(Batch([n, n]))
>>> backlog.records, backlog.high_water, len(box)
(6, 6, 3)
>>> box.get_nowait().values, backlog.records
([0, 0], 4)
"""

from __future__ import annotations

from actorflow.errors import ClosedResourceError
from actorflow.runtime.mailbox import Mailbox
from actorflow.runtime.messages import Batch, Message

__all__ = ["Backlog", "FeedbackMailbox"]


class Backlog:
    """The records waiting on the back edges into one head instance, and the most there ever were."""

    __slots__ = ("high_water", "records")

    def __init__(self) -> None:
        self.records = 0
        self.high_water = 0

    def __repr__(self) -> str:
        return f"Backlog(records={self.records}, high_water={self.high_water})"


class FeedbackMailbox(Mailbox):
    """A back edge from one tail instance to one head instance (module docstring).

    ``capacity`` is only what :meth:`stats` reports the fill against (the flow's mailbox bound):
    puts never wait and never raise :class:`~actorflow.errors.WouldBlock`.
    """

    __slots__ = ("_iteration", "_sealed", "backlog")

    def __init__(self, backlog: Backlog, capacity: int, *, name: str = "", iteration: str = "") -> None:
        super().__init__(capacity, name=name)
        self.backlog = backlog
        self._iteration = iteration
        self._sealed = False

    def put_nowait(self, message: Message) -> None:
        """Append ``message``; never waits. After :meth:`seal`, drop control messages and raise
        :class:`ClosedResourceError` for records."""
        if self._sealed:
            if type(message) is Batch and message.values:
                raise ClosedResourceError(
                    f"iteration {self._iteration!r}: {len(message.values)} record(s) reached the back "
                    f"edge after the loop ended (emitted at the end of input): they cannot go round "
                    f"again, first {message.values[0]!r}"
                )
            return
        self._items.append(message)
        self._puts += 1
        if type(message) is Batch:
            backlog = self.backlog
            backlog.records += len(message.values)
            if backlog.records > backlog.high_water:
                backlog.high_water = backlog.records
        inbox = self._inbox
        if inbox is not None:
            inbox._wake()

    async def put(self, message: Message) -> None:
        """The same as :meth:`put_nowait`: a back edge never parks its sender."""
        self.put_nowait(message)

    def get_nowait(self) -> Message:
        message = self._items.popleft()
        if type(message) is Batch:
            self.backlog.records -= len(message.values)
        return message

    def seal(self) -> None:
        """The head has ended: nothing is read from here any more (module docstring)."""
        self._sealed = True
        self._items.clear()
        self.backlog.records = 0
