"""Deploying a compiled plan: a run's actors, with fresh operators, mailboxes and restored state.

``deploy`` makes a run's actors from a :class:`~actorflow.plan.physical.PhysicalPlan`, once per run
(and again at every restart): it creates an ``_Instance`` per chain instance, wires every edge
into them (a mailbox per pair of instances a partitioner reaches), then builds each instance's
actor with fresh operators and their restored state.

Iterations: a back edge is a :class:`~actorflow.runtime.feedback.FeedbackMailbox` per pair of
instances (its puts never wait), counted in one :class:`~actorflow.runtime.feedback.Backlog` per
head instance; a head instance becomes an :class:`~actorflow.runtime.iteration.IterationHead`, and
every other actor of a loop reads through a :class:`~actorflow.runtime.loop.LoopInbox`, so that
the run's :class:`~actorflow.runtime.loop.Loop` knows when the loop is over. Actors outside loops
are built as they always were.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from actorflow.checkpoint.coordinator import CheckpointCoordinator
from actorflow.checkpoint.storage import SharedFiles
from actorflow.operators.base import Operator, OperatorContext
from actorflow.operators.chain import Chain, SourceActor
from actorflow.operators.side_outputs import OutputTag
from actorflow.operators.snapshots import (
    CheckpointHooks,
    Part,
    ended_at,
    part_name,
    states_of,
    watermark_owner,
)
from actorflow.operators.sources import Source
from actorflow.plan.graph import Node
from actorflow.plan.partitioners import Forward, Hash
from actorflow.plan.physical import ChainPlan, InputPlan, LoopPlan, PhysicalPlan
from actorflow.runtime.actor import Actor, Runnable
from actorflow.runtime.feedback import Backlog, FeedbackMailbox
from actorflow.runtime.iteration import IterationHead
from actorflow.runtime.loop import Loop, LoopInbox
from actorflow.runtime.mailbox import Inbox, Mailbox
from actorflow.runtime.messages import Batch
from actorflow.runtime.metrics import ActorEntry, JobMetrics
from actorflow.runtime.output import Output
from actorflow.state.backends import StateBackendConfig
from actorflow.time.clock import Clock

__all__ = ["deploy"]


def deploy(
    plan: PhysicalPlan,
    *,
    clock: Clock,
    batch_size: int,
    mailbox_capacity: int,
    max_parallelism: int,
    checkpoints: CheckpointCoordinator | None = None,
    restore: Mapping[str, Part] | None = None,
    metrics: JobMetrics | None = None,
    sources: Mapping[str, Source] | None = None,
    incremental: bool = False,
    instance: tuple[int, int] | None = None,
    state_backend: StateBackendConfig | None = None,
    restored_files: SharedFiles | None = None,
) -> list[Runnable]:
    """Create the actors of one run: fresh operators per instance, a mailbox per edge.

    With ``checkpoints``, every actor snapshots at barriers and reports to the coordinator;
    ``restore`` (a checkpoint's parts) gives every operator and source its state back;
    ``metrics`` is filled with every actor and channel created (for metrics and queryable state).
    ``sources`` reads another source for a source node of that name (a partition task reads its
    partition's feed instead of the flow's Kafka source); ``incremental`` makes keyed operators
    snapshot only the keys changed since their previous snapshot (``OperatorContext.incremental``).
    ``instance`` ``(i, n)`` names and counts a plan of one instance per chain as instance ``i`` of
    ``n`` in actor names and ``metrics`` (a partition task is partition ``i`` of ``n``); its
    operators still own every key group. ``state_backend``: where keyed operators keep their
    state (``OperatorContext.state_backend``; None: the heap). ``restored_files``: the shared
    files of the checkpoint ``restore`` comes from (``OperatorContext.restored_files``).

    In three steps: one :class:`_Instance` per chain instance; every edge wired, a mailbox per
    (sending instance, receiving instance) pair its partitioner can reach; then one actor per
    instance, its operators fresh and handed their restored state. The coordinator learns the
    actors last.
    """
    run = _Run(
        clock=clock,
        batch_size=batch_size,
        mailbox_capacity=mailbox_capacity,
        max_parallelism=max_parallelism,
        hooks=None if checkpoints is None else _hooks(checkpoints),
        restored=_Restored(restore, restored_files, max_parallelism),
        metrics=metrics,
        sources=sources,
        incremental=incremental,
        state_backend=state_backend,
    )
    instances = _create_instances(plan, instance)
    for chain in plan.chains:
        for edge in chain.inputs:
            _wire_edge(edge, instances[edge.upstream], instances[chain], run)
    _join_loops(plan.loops, instances)
    actors = [_build_actor(each, run) for chain in plan.chains for each in instances[chain]]
    if checkpoints is not None:
        checkpoints.begin_run(
            [actor.name for actor in actors], [actor for actor in actors if isinstance(actor, SourceActor)]
        )
    return actors


@dataclass(eq=False)
class _Instance:
    """One instance of a chain while ``deploy`` wires it: what feeds it and where it sends."""

    chain: ChainPlan
    #: 0-based, among the chain's ``parallelism`` instances.
    index: int
    #: ``(index, count)`` as actor names, mailbox names and metrics show it: ``(index,
    #: parallelism)``, or the partition task's ``instance`` for a plan of one task.
    shown: tuple[int, int]
    #: The mailboxes that feed it, in input order.
    mailboxes: list[Mailbox] = field(default_factory=list)
    #: For each of ``mailboxes``: which input of a two-input head operator it feeds (else 0).
    inputs: list[int] = field(default_factory=list)
    #: The instance that sends into each of ``mailboxes``.
    senders: list[_Instance] = field(default_factory=list)
    #: Its main output's edges, and the edges that read a side output of its last operator.
    outputs: list[Output] = field(default_factory=list)
    side_outputs: list[tuple[OutputTag[Any], Output]] = field(default_factory=list)
    #: An iteration head's back edges (none for other instances) and their shared count.
    back_edges: list[FeedbackMailbox] = field(default_factory=list)
    backlog: Backlog = field(default_factory=Backlog)
    #: The loop it is an actor of (None: none).
    loop: Loop | None = None

    @cached_property
    def name(self) -> str:
        """``chain name[i/n]``: its actor's name, as in logs and metrics."""
        return _actor_name(self.chain, *self.shown)

    @cached_property
    def end_name(self) -> str:
        """``chain name[i]``: how the names of its mailboxes show it."""
        return f"{self.chain.name}[{self.shown[0] + 1}]"


@dataclass(frozen=True)
class _Run:
    """What every actor of one run is built with."""

    clock: Clock
    batch_size: int
    mailbox_capacity: int
    max_parallelism: int
    #: How actors reach the checkpoint coordinator (None: the job takes no checkpoints).
    hooks: CheckpointHooks | None
    restored: _Restored
    metrics: JobMetrics | None
    #: Sources read instead of a source node's own, by node name.
    sources: Mapping[str, Source] | None
    incremental: bool
    state_backend: StateBackendConfig | None

    def context(self, node: Node, instance: _Instance) -> OperatorContext:
        """Where the operator of ``node`` runs in ``instance``."""
        return OperatorContext(
            node.name,
            index=instance.index,
            parallelism=instance.chain.parallelism,
            max_parallelism=self.max_parallelism,
            clock=self.clock,
            batch_size=self.batch_size,
            watermarks=node.watermarks,
            checkpointing=self.hooks is not None,
            incremental=self.incremental,
            state_backend=self.state_backend,
            restored_files=self.restored.files,
        )

    def source_of(self, node: Node) -> Source:
        """The source a source node reads: the one ``sources`` names for it, else its own."""
        source = self.sources.get(node.name) if self.sources is not None else None
        if source is None:
            source = node.source
        assert source is not None
        return source


class _Restored:
    """The state a checkpoint hands back to a run's operators and sources (none without a restore).

    Every instance of an operator gets the states of all its instances at the checkpoint, so the
    parallelism may have changed since; they are unpickled once per operator.
    """

    def __init__(
        self, parts: Mapping[str, Part] | None, files: SharedFiles | None, max_parallelism: int
    ) -> None:
        self.parts = parts
        self.max_parallelism = max_parallelism
        #: The checkpoint's shared files (``OperatorContext.restored_files``).
        self.files = files
        self._states: dict[str, list[Any]] = {}

    def states(self, node: Node) -> list[Any] | None:
        """The states of every instance of ``node`` at the checkpoint (None: no restore)."""
        if self.parts is None:
            return None
        if node.name not in self._states:
            self._states[node.name] = states_of(node.name, self.parts)
        return self._states[node.name]

    def of_chain(self, nodes: list[Node]) -> list[list[Any]] | None:
        """The states of each of ``nodes``, as a :class:`Chain` takes them (None: no restore)."""
        if self.parts is None:
            return None
        return [self.states(node) or [] for node in nodes]

    def watermark(self, source: Node) -> int | None:
        """The watermark ``source`` had put out at the checkpoint: the lowest of its instances'
        (after a change of parallelism an instance may read what any of them read)."""
        if self.parts is None:
            return None
        saved = states_of(watermark_owner(source.name), self.parts)
        return min(saved) if saved else None

    def feedback_log(self, head: Node, instance: _Instance) -> list[Batch]:
        """The batches the instances of iteration ``head`` had logged on their back edges at the
        checkpoint that ``instance`` puts into its body again: its own at the same parallelism;
        after a change, a keyed back edge's records by key (as the back edge would route them),
        a forward one's logs of the instances ``j`` with ``j % parallelism == index``."""
        if self.parts is None:
            return []
        owner = feedback_owner(head.name)
        index, parallelism = instance.index, instance.chain.parallelism
        logs: dict[int, Any] = {}
        for name in self.parts:
            part_owner, _, position = name.rpartition("/")
            if part_owner == owner:
                logs[int(position)] = states_of(owner, {name: self.parts[name]})[0]
        back_edge = next(edge for edge in instance.chain.inputs if edge.feedback)
        router = None
        if isinstance(back_edge.partitioner, Hash) and parallelism > 1:
            router = back_edge.partitioner.router(parallelism, self.max_parallelism)
        batches = []
        for number in sorted(logs):
            if router is None and number % parallelism != index:
                continue
            for values, timestamps in logs[number]:
                batch = Batch(values, timestamps)
                if router is not None:
                    part = router.split(batch, parallelism)[index]
                    if part is None or not part.values:
                        continue
                    batch = Batch(part.values, part.timestamps)
                batches.append(batch)
        return batches

    def ended(self, source: Node) -> bool:
        """Whether every instance of ``source`` had ended at the checkpoint."""
        return self.parts is not None and ended_at(source.name, self.parts)


def _hooks(checkpoints: CheckpointCoordinator) -> CheckpointHooks:
    return CheckpointHooks(
        checkpoints.acknowledge,
        checkpoints.actor_finished,
        checkpoints.source_finished,
        checkpoints.add_participant,
        checkpoints.kind_of,
    )


def _create_instances(
    plan: PhysicalPlan, instance: tuple[int, int] | None
) -> dict[ChainPlan, list[_Instance]]:
    """Every chain's instances, not yet wired."""
    return {
        chain: [
            _Instance(chain, index, (index, chain.parallelism) if instance is None else instance)
            for index in range(chain.parallelism)
        ]
        for chain in plan.chains
    }


def _wire_edge(edge: InputPlan, senders: list[_Instance], receivers: list[_Instance], run: _Run) -> None:
    """Give every sender one output for ``edge``: a forward edge goes to the receiver of the same
    index through one mailbox, any other partitioner routes over a mailbox to every receiver."""
    forward = isinstance(edge.partitioner, Forward)
    channel = _back_edge if edge.feedback else _channel
    for sender in senders:
        reached = [receivers[sender.index]] if forward else receivers
        mailboxes = [channel(sender, receiver, edge.input, run) for receiver in reached]
        router = None if forward else edge.partitioner.router(len(receivers), run.max_parallelism)
        output = Output(mailboxes, router)
        if edge.tag is None:
            sender.outputs.append(output)
        else:
            sender.side_outputs.append((edge.tag, output))


def _channel(sender: _Instance, receiver: _Instance, input: int, run: _Run) -> Mailbox:
    """A new mailbox from ``sender`` to ``receiver``'s input ``input``, counted in the metrics."""
    mailbox = Mailbox(
        run.mailbox_capacity,
        name=f"{sender.end_name} => {receiver.end_name}",
    )
    receiver.mailboxes.append(mailbox)
    receiver.inputs.append(input)
    receiver.senders.append(sender)
    if run.metrics is not None:
        run.metrics.add_channel(sender.name, receiver.name, mailbox)
    return mailbox


def _back_edge(sender: _Instance, receiver: _Instance, input: int, run: _Run) -> Mailbox:
    """A new back edge from the tail ``sender`` to the head ``receiver`` (its puts never wait)."""
    mailbox = FeedbackMailbox(
        receiver.backlog,
        run.mailbox_capacity,
        name=f"{sender.end_name} => {receiver.end_name} (feedback)",
        iteration=receiver.chain.head.name,
    )
    receiver.back_edges.append(mailbox)
    if run.metrics is not None:
        run.metrics.add_channel(sender.name, receiver.name, mailbox)
    return mailbox


def _join_loops(loops: list[LoopPlan], instances: Mapping[ChainPlan, list[_Instance]]) -> None:
    """One :class:`Loop` per loop of the plan, for this run; each of its actors knows it."""
    for plan in loops:
        loop = Loop(plan.name)
        for chain in plan.members:
            for each in instances[chain]:
                each.loop = loop


def _build_actor(instance: _Instance, run: _Run) -> Runnable:
    """The actor of a wired instance: a :class:`Chain` of fresh operators, driven by a
    :class:`SourceActor` when the chain starts at a source, else by an :class:`Actor` reading
    the instance's mailboxes."""
    chain = instance.chain
    body = chain.nodes[1:] if chain.head.kind == "source" else chain.nodes
    operators: list[Operator] = [node.make_operator() for node in body]  # type: ignore[misc]
    runner = Chain(
        operators,
        [run.context(node, instance) for node in body],
        instance.outputs,
        run.clock,
        instance.side_outputs,
        name=instance.name,
        hooks=run.hooks,
        restore=run.restored.of_chain(body),
    )
    if run.metrics is not None:
        run.metrics.add_actor(_actor_entry(instance, runner, body, operators))
    if chain.head.kind == "source":
        return _source_actor(instance, runner, run)
    if instance.back_edges:
        return _iteration_head(instance, runner, run)
    two_inputs = any(instance.inputs)
    inbox = Inbox(instance.mailboxes) if instance.loop is None else _loop_inbox(instance, instance.loop)
    return Actor(instance.name, inbox, runner, instance.inputs if two_inputs else None)


def _outside(instance: _Instance) -> list[bool]:
    """For each of ``instance``'s mailboxes: whether its sender is outside ``instance``'s loop."""
    return [sender.loop is None or sender.loop is not instance.loop for sender in instance.senders]


def _loop_inbox(instance: _Instance, loop: Loop) -> LoopInbox:
    mailboxes = instance.mailboxes
    return LoopInbox(mailboxes, loop.member(mailboxes, _outside(instance)))


def _iteration_head(instance: _Instance, runner: Chain, run: _Run) -> IterationHead:
    """The actor of an iteration head's instance: its input, its back edges, its restored log."""
    assert instance.loop is not None
    head = instance.chain.head
    mailboxes = instance.mailboxes
    member = instance.loop.member(
        [*mailboxes, *instance.back_edges], [*_outside(instance), *[False] * len(instance.back_edges)]
    )
    return IterationHead(
        instance.name,
        Inbox(mailboxes),
        instance.back_edges,
        runner,
        member,
        connected=any(edge.feedback and edge.input for edge in instance.chain.inputs),
        log_part=part_name(feedback_owner(head.name), instance.index),
        restored=run.restored.feedback_log(head, instance),
    )


def feedback_owner(head: str) -> str:
    """Whose parts hold the records an iteration head logged on its back edges at a checkpoint.

    >>> part_name(feedback_owner("iterate"), 1)
    'iterate@feedback/1'
    """
    return f"{head}@feedback"


def _source_actor(instance: _Instance, runner: Chain, run: _Run) -> SourceActor:
    """The actor that reads the source at the head of ``instance``'s chain into ``runner``."""
    head = instance.chain.head
    return SourceActor(
        instance.name,
        run.source_of(head),
        run.context(head, instance),
        head.watermarks,
        runner,
        restore=run.restored.states(head),
        restore_watermark=run.restored.watermark(head),
        restore_ended=run.restored.ended(head),
    )


def _actor_entry(
    instance: _Instance, runner: Chain, body: list[Node], operators: list[Operator]
) -> ActorEntry:
    """What the metrics show of ``instance``'s actor (and queryable state reads)."""
    chain = instance.chain
    head = chain.head
    return ActorEntry(
        instance.name,
        chain.name,
        *instance.shown,
        runner.metrics,
        _kind(chain),
        {node.name: operator for node, operator in zip(body, operators, strict=True)},
        (head.name, head.source) if head.kind == "source" else None,
    )


def _actor_name(chain: ChainPlan, index: int, parallelism: int | None = None) -> str:
    return f"{chain.name}[{index + 1}/{parallelism or chain.parallelism}]"


def _kind(chain: ChainPlan) -> str:
    """What an actor of ``chain`` is drawn as: a source, a sink, or an operator in between."""
    if chain.head.kind == "source":
        return "source"
    return "sink" if chain.tail.kind == "sink" else "operator"
