"""When an iteration is over: exact termination of a loop of actors, without timeouts.

A loop (an iteration's head, its body and its tail, every actor on a path from the head back to
it) is over when its input has ended and no record is in it any more, nor can come: no message
waits in any of its mailboxes, no actor of it holds a batch, and no operator of it has work that
will emit later (a processing-time timer, an async request in flight). Then nothing can ever put a
record into the loop again, so its heads end their output and the body ends behind them.

All actors of a job run on one event loop, so this is decided by looking, not by counting messages
or sending markers round: a :class:`Loop` knows its :class:`LoopMember` actors, each of which says
when it *parks* (waits for input with nothing to do: no message, and no timer or background work
pending, which would make it wait on those instead) and when it wakes. When the last busy member
parks, the loop looks at every member at once, with no other code running: every mailbox empty
(blocked ones included), every input from outside the loop ended. If so, the loop is over. Any
change that could make it over ends with some member parking, so nothing is missed; and a member
that wakes is busy until it parks again, so nothing is decided early. Flows without an iteration
never meet this module: only actors in a loop read through a :class:`LoopInbox`.

>>> from actorflow.runtime.mailbox import Mailbox
>>> loop = Loop("iterate")
>>> outside = Mailbox(1)  # the loop's input, into its one member (the head)
>>> head = loop.member([outside], [True])
>>> head.park()  # nothing to do, but the input has not ended
>>> loop.done
False
>>> head.wake()
>>> head.input_ended(0)  # it took the input's end of stream
>>> head.park()
>>> loop.done
True
"""

from __future__ import annotations

import asyncio

from actorflow.runtime.mailbox import Inbox, Mailbox
from actorflow.runtime.messages import EndOfStream, Message

__all__ = ["Loop", "LoopInbox", "LoopMember"]


class Loop:
    """The actors of one loop (several iterations whose bodies meet are one loop), and whether it
    is over (module docstring)."""

    __slots__ = ("_busy", "_finished", "_members", "done", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._members: list[LoopMember] = []
        #: Members not parked: the loop is only looked at when this falls to 0.
        self._busy = 0
        #: The loop is over: its heads end their output.
        self.done = False
        self._finished: asyncio.Future[None] | None = None

    def member(self, mailboxes: list[Mailbox], outside: list[bool]) -> LoopMember:
        """A new member reading ``mailboxes``; ``outside[i]`` says whether mailbox ``i`` comes from
        outside the loop (its end of stream counts toward the loop's input having ended)."""
        member = LoopMember(self, mailboxes, outside)
        self._members.append(member)
        self._busy += 1
        return member

    @property
    def finished(self) -> asyncio.Future[None]:
        """A future resolved when the loop is over (for a head to wait on beside its input)."""
        if self._finished is None:
            self._finished = asyncio.get_running_loop().create_future()
            if self.done:
                self._finished.set_result(None)
        return self._finished

    def _parked(self) -> None:
        self._busy -= 1
        if not self._busy and not self.done:
            self._look()

    def _woke(self) -> None:
        self._busy += 1

    def _look(self) -> None:
        """Every member parked: is every mailbox of the loop empty and its outside input ended?"""
        for member in self._members:
            if member.outside_open:
                return
            for mailbox in member.mailboxes:
                if len(mailbox):
                    return
        self.done = True
        if self._finished is not None and not self._finished.done():
            self._finished.set_result(None)


class LoopMember:
    """One actor of a loop: its mailboxes, its open inputs from outside the loop, parked or not."""

    __slots__ = ("_loop", "_outside", "mailboxes", "outside_open", "parked")

    def __init__(self, loop: Loop, mailboxes: list[Mailbox], outside: list[bool]) -> None:
        if len(outside) != len(mailboxes):
            raise ValueError("a loop member needs one outside flag per mailbox")
        self._loop = loop
        self.mailboxes = mailboxes
        self._outside = outside
        #: Inputs from outside the loop that have not ended yet.
        self.outside_open = sum(outside)
        self.parked = False

    @property
    def loop(self) -> Loop:
        return self._loop

    def input_ended(self, index: int) -> None:
        """Mailbox ``index`` delivered its end of stream."""
        if self._outside[index]:
            self.outside_open -= 1

    def park(self) -> None:
        """The actor waits for input with nothing else to do (the loop may be over now)."""
        if not self.parked:
            self.parked = True
            self._loop._parked()

    def wake(self) -> None:
        """The actor runs again."""
        if self.parked:
            self.parked = False
            self._loop._woke()


class LoopInbox(Inbox):
    """The inbox of an actor in a loop's body: an :class:`Inbox` that tells its
    :class:`LoopMember` when the actor parks (:meth:`wait`, which an actor calls only when it has
    no timer or background work pending) and which inputs from outside the loop ended."""

    __slots__ = ("_member",)

    def __init__(self, mailboxes: list[Mailbox], member: LoopMember) -> None:
        super().__init__(mailboxes)
        self._member = member

    def get_nowait(self) -> tuple[int, Message] | None:
        item = super().get_nowait()
        if item is not None and type(item[1]) is EndOfStream:
            self._member.input_ended(item[0])
        return item

    async def wait(self) -> None:
        if self._has_message():
            return
        member = self._member
        member.park()
        try:
            await super().wait()
        finally:
            member.wake()
