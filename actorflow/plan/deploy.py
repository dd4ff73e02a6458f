"""Deploying a compiled plan: a run's actors, with fresh operators, mailboxes and restored state.

``deploy`` makes a run's actors from a :class:`~actorflow.plan.physical.PhysicalPlan`, once per run
(and again at every restart): it creates an ``_Instance`` per chain instance, wires every edge
into them (a mailbox per pair of instances a partitioner reaches), then builds each instance's
actor with fresh operators and their restored state.
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
from actorflow.operators.snapshots import CheckpointHooks, Part, ended_at, states_of, watermark_owner
from actorflow.operators.sources import Source
from actorflow.plan.graph import Node
from actorflow.plan.partitioners import Forward
from actorflow.plan.physical import ChainPlan, InputPlan, PhysicalPlan
from actorflow.runtime.actor import Actor, Runnable
from actorflow.runtime.mailbox import Inbox, Mailbox
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
        restored=_Restored(restore, restored_files),
        metrics=metrics,
        sources=sources,
        incremental=incremental,
        state_backend=state_backend,
    )
    instances = _create_instances(plan, instance)
    for chain in plan.chains:
        for edge in chain.inputs:
            _wire_edge(edge, instances[edge.upstream], instances[chain], run)
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
    #: Its main output's edges, and the edges that read a side output of its last operator.
    outputs: list[Output] = field(default_factory=list)
    side_outputs: list[tuple[OutputTag[Any], Output]] = field(default_factory=list)

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

    def __init__(self, parts: Mapping[str, Part] | None, files: SharedFiles | None) -> None:
        self.parts = parts
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
    for sender in senders:
        reached = [receivers[sender.index]] if forward else receivers
        mailboxes = [_channel(sender, receiver, edge.input, run) for receiver in reached]
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
    if run.metrics is not None:
        run.metrics.add_channel(sender.name, receiver.name, mailbox)
    return mailbox


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
    two_inputs = any(instance.inputs)
    return Actor(instance.name, Inbox(instance.mailboxes), runner, instance.inputs if two_inputs else None)


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
