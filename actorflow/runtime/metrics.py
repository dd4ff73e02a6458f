"""What a running job shows to metrics, the dashboard and queryable state.

Counting is kept off the per-record path: an actor's :class:`ActorMetrics` is bumped once per
batch by its chain (records in, records out, the watermark its input reached), a mailbox counts
its puts and, only when a put has to wait, the time the sender spent waiting (see
:class:`~actorflow.runtime.mailbox.MailboxStats`). Everything else (rates, fills, lags) is computed
when somebody looks, from these counters.

:class:`JobMetrics` is the map of one run, filled by the deployment: every actor with its counters
and operators, every channel (mailbox) with its sender and receiver. It is read on the event loop's
thread, like everything in the job, so a reader sees values between two batches, never in the
middle of one.

>>> from actorflow.runtime.mailbox import Mailbox
>>> job = JobMetrics()
>>> source, sink = ActorMetrics(), ActorMetrics()
>>> job.add_actor(ActorEntry("source[1/1]", "source", 0, 1, source, kind="source"))
>>> job.add_actor(ActorEntry("sink[1/1]", "sink", 0, 1, sink, kind="sink"))
>>> job.add_channel("source[1/1]", "sink[1/1]", Mailbox(8))
>>> job.ready
False
>>> source.opened = sink.opened = True
>>> job.ready
True
>>> [channel.receiver for channel in job.outputs_of("source[1/1]")]
['sink[1/1]']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from actorflow.runtime.mailbox import Mailbox
from actorflow.runtime.messages import MIN_WATERMARK

__all__ = ["ActorEntry", "ActorMetrics", "Channel", "JobMetrics"]


class ActorMetrics:
    """The counters of one actor (one chain instance), updated once per batch.

    ``records_in`` counts records the chain was handed (for a source chain: records read),
    ``records_out`` records its last operator sent on (a sink sends none), ``watermark`` the last
    watermark of its input (``MIN_WATERMARK`` until one arrives). ``opened`` is set once every
    operator has opened and restored its state, ``closed`` when the actor stops.
    """

    __slots__ = ("closed", "opened", "records_in", "records_out", "watermark")

    def __init__(self) -> None:
        self.records_in = 0
        self.records_out = 0
        self.watermark = MIN_WATERMARK
        self.opened = False
        self.closed = False


@dataclass(frozen=True, slots=True)
class Channel:
    """One mailbox between two actors, named by them."""

    sender: str
    receiver: str
    mailbox: Mailbox


@dataclass(eq=False)
class ActorEntry:
    """One actor of a run: where it sits in the job, its counters, and its operator instances."""

    #: ``chain name[instance/parallelism]``, as in logs.
    name: str
    #: The chain's name: its operators' names joined by `` -> ``.
    chain: str
    #: 0-based, like ``RuntimeContext.index``.
    index: int
    parallelism: int
    metrics: ActorMetrics
    #: ``"source"`` (reads a source), ``"sink"`` (ends in a sink) or ``"operator"``.
    kind: str = "operator"
    #: The operator instances this actor runs, by operator name (the runtime does not look inside).
    operators: dict[str, Any] = field(default_factory=dict)
    #: For a source actor: ``(source name, source object)``.
    source: tuple[str, Any] | None = None


class JobMetrics:
    """The actors and channels of one run, for reading while it runs (see the module docstring)."""

    def __init__(self) -> None:
        self.actors: list[ActorEntry] = []
        self.channels: list[Channel] = []
        self._outputs: dict[str, list[Channel]] = {}
        self._inputs: dict[str, list[Channel]] = {}

    def add_actor(self, entry: ActorEntry) -> None:
        self.actors.append(entry)

    def add_channel(self, sender: str, receiver: str, mailbox: Mailbox) -> None:
        channel = Channel(sender, receiver, mailbox)
        self.channels.append(channel)
        self._outputs.setdefault(sender, []).append(channel)
        self._inputs.setdefault(receiver, []).append(channel)

    def inputs_of(self, actor: str) -> list[Channel]:
        """The channels ``actor`` reads."""
        return self._inputs.get(actor, [])

    def outputs_of(self, actor: str) -> list[Channel]:
        """The channels ``actor`` writes to."""
        return self._outputs.get(actor, [])

    @property
    def ready(self) -> bool:
        """Every actor has opened (state restored) and the run is not over (some actor still runs)."""
        actors = self.actors
        return (
            bool(actors)
            and all(entry.metrics.opened for entry in actors)
            and not all(entry.metrics.closed for entry in actors)
        )
