"""What a running job shows to metrics, the dashboard and queryable state.

Counting is kept off the per-record path: an actor's :class:`ActorMetrics` is bumped once per
batch and operator by its chain (records into each operator, records sent on, the watermark each
operator's input reached), a mailbox counts its puts and, only when a put has to wait, the time the
sender spent waiting (see :class:`~actorflow.runtime.mailbox.MailboxStats`). Everything else (rates,
fills, lags, an operator's output, which is the next one's input) is computed when somebody looks,
from these counters.

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

Per operator, for a chain ``double -> positive`` that was handed 4 records and sent 3 on:

>>> chain = ActorMetrics(["double", "positive"])
>>> chain.records[:] = [4, 4, 3]
>>> [(op.name, op.records_in, op.records_out) for op in chain.operator_metrics()]
[('double', 4, 4), ('positive', 4, 3)]
>>> chain.records_in, chain.records_out
(4, 3)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from actorflow.runtime.mailbox import Mailbox
from actorflow.runtime.messages import MIN_WATERMARK

__all__ = ["ActorEntry", "ActorMetrics", "Channel", "JobMetrics", "OperatorMetrics"]


@dataclass(frozen=True, slots=True)
class OperatorMetrics:
    """One operator instance's counts, read from its actor's counters (see :class:`ActorMetrics`).

    ``records_in``: records handed to the operator; ``records_out``: records it passed on (its
    main output, timer firings and end-of-input output included; side outputs are not counted);
    ``watermark``: the last watermark of its input, ``MIN_WATERMARK`` before one arrived,
    ``MAX_WATERMARK`` once its input ended. A source counts the records it read both in and out,
    and its watermark is the one it put out.
    """

    name: str
    records_in: int
    records_out: int
    watermark: int


class ActorMetrics:
    """The counters of one actor (one chain instance), updated once per batch and operator.

    The chain of ``n`` operators counts at its ``n + 1`` boundaries: ``records[i]`` is the records
    handed to operator ``i`` (for ``i = 0``: to the chain, which for a source chain means the
    records read), ``records[n]`` the records its last operator sent on (a sink sends none);
    ``watermarks[i]`` is the last watermark that crossed boundary ``i`` (``MIN_WATERMARK`` until
    one does). Whatever enters operator ``i + 1`` is output of operator ``i`` (its results, its
    timers' and its end of input's), so operator ``i``'s output is ``records[i + 1]``: one count
    per operator and batch covers both. ``opened`` is set once every operator has opened and
    restored its state, ``closed`` when the actor stops.
    """

    __slots__ = ("closed", "opened", "operators", "records", "watermarks")

    def __init__(self, operators: Sequence[str] = ()) -> None:
        #: The chain's operator names, in chain order.
        self.operators = tuple(operators)
        self.records = [0] * (len(self.operators) + 1)
        self.watermarks = [MIN_WATERMARK] * (len(self.operators) + 1)
        self.opened = False
        self.closed = False

    @property
    def records_in(self) -> int:
        """Records handed to the chain (a source chain: records read)."""
        return self.records[0]

    @property
    def records_out(self) -> int:
        """Records the chain's last operator sent downstream."""
        return self.records[-1]

    @property
    def watermark(self) -> int:
        """The last watermark of the chain's input (``MIN_WATERMARK`` until one arrived)."""
        return self.watermarks[0]

    def operator_metrics(self) -> list[OperatorMetrics]:
        """Each operator's counts, in chain order."""
        records = self.records
        watermarks = self.watermarks
        return [
            OperatorMetrics(name, records[i], records[i + 1], watermarks[i])
            for i, name in enumerate(self.operators)
        ]


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

    def operator_metrics(self) -> list[OperatorMetrics]:
        """The counts of the actor's source (if it reads one) and of its chain's operators, in
        chain order. The source's records are those it handed the chain, in and out alike."""
        chained = self.metrics.operator_metrics()
        if self.source is None:
            return chained
        metrics = self.metrics
        read = OperatorMetrics(self.source[0], metrics.records_in, metrics.records_in, metrics.watermark)
        return [read, *chained]


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

    def extend(self, other: JobMetrics) -> None:
        """Add the actors and channels of ``other`` (the runs of several partition tasks shown as
        one job)."""
        self.actors += other.actors
        for channel in other.channels:
            self.add_channel(channel.sender, channel.receiver, channel.mailbox)

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
