"""Compiling the logical graph: parallelism, partitioners and operator chains; then deploying it.

Chaining rule: a node joins the chain of its input when it has exactly one input, that input has no
other consumer, both have the same parallelism, and the edge is forward, or both sides have a
parallelism of 1 (then every partitioner is forward). A user can break a chain
(``start_new_chain``). Each chain instance becomes one actor; each edge between two actor instances
becomes one bounded mailbox.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from actorflow.checkpoint.coordinator import CheckpointCoordinator
from actorflow.checkpoint.storage import SharedFiles
from actorflow.errors import PlanError
from actorflow.operators.base import Operator, OperatorContext
from actorflow.operators.chain import Chain, SourceActor
from actorflow.operators.side_outputs import OutputTag
from actorflow.operators.snapshots import CheckpointHooks, Part, ended_at, states_of, watermark_owner
from actorflow.operators.sources import Source
from actorflow.plan.graph import LogicalGraph, Node
from actorflow.plan.partitioners import Forward, Partitioner, Rebalance
from actorflow.runtime.actor import Actor, Runnable
from actorflow.runtime.mailbox import Inbox, Mailbox
from actorflow.runtime.metrics import ActorEntry, JobMetrics
from actorflow.runtime.output import Output
from actorflow.state.backends import StateBackendConfig
from actorflow.time.clock import Clock

__all__ = ["ChainPlan", "InputPlan", "PhysicalPlan", "compile_graph", "deploy"]


@dataclass(eq=False)
class InputPlan:
    upstream: ChainPlan
    partitioner: Partitioner
    #: The upstream's side output this input reads, or None for its main output.
    tag: OutputTag[Any] | None = None
    #: Which input of a two-input head operator this is (0 for everything else).
    input: int = 0


@dataclass(eq=False)
class ChainPlan:
    """Operators that run fused in one actor per instance."""

    nodes: list[Node]
    parallelism: int
    inputs: list[InputPlan] = field(default_factory=list)

    @property
    def name(self) -> str:
        return " -> ".join(node.name for node in self.nodes)

    @property
    def head(self) -> Node:
        return self.nodes[0]

    @property
    def tail(self) -> Node:
        return self.nodes[-1]


@dataclass
class PhysicalPlan:
    """The chains in dependency order, with their parallelism and input partitioners."""

    chains: list[ChainPlan]

    def describe(self) -> str:
        """A readable outline: one line per chain with its instances and inputs.

        >>> print(PhysicalPlan([]).describe())
        <BLANKLINE>
        """
        lines = []
        for chain in self.chains:
            inputs = ", ".join(_describe_input(i) for i in chain.inputs)
            line = f"[{chain.name}] x{chain.parallelism}"
            lines.append(f"{line} <- {inputs}" if inputs else line)
        return "\n".join(lines)


def _describe_input(plan: InputPlan) -> str:
    text = f"{plan.partitioner!r} from [{plan.upstream.name}]"
    if plan.tag is not None:
        text += f" side {plan.tag.name!r}"
    if plan.input:
        text += f" (input {plan.input + 1})"
    return text


def compile_graph(
    graph: LogicalGraph, default_parallelism: int, *, one_instance: bool = False
) -> PhysicalPlan:
    """Decide each node's parallelism and partitioners, and fuse nodes into chains.

    ``one_instance`` gives every node one instance, whatever it asked for: the plan of one
    partition task, whose parallelism is the number of partitions (see ``actorflow_kafka.tasks``).
    """
    if default_parallelism < 1:
        raise PlanError("parallelism must be at least 1")
    if not graph.nodes:
        raise PlanError("the flow is empty: add a source and a sink")
    parallelism: dict[Node, int] = {}
    for node in graph.nodes:  # in the order they were added: inputs first
        if one_instance:
            parallelism[node] = 1
        elif (
            node.parallelism is None
            and len(node.inputs) == 1
            and isinstance(node.inputs[0].partitioner, Forward)
        ):  # behind forward(): as many instances as its input, unless it says otherwise
            parallelism[node] = _parallelism(node, parallelism[node.inputs[0].upstream])
        else:
            parallelism[node] = _parallelism(node, default_parallelism)
    consumers = {node: graph.consumers(node) for node in graph.nodes}
    for node in graph.nodes:
        if node.kind != "source" and not node.inputs:
            raise PlanError(f"operator {node.name!r} has no input")
        if node.kind != "sink" and not consumers[node]:
            raise PlanError(
                f"the output of {node.name!r} goes nowhere: end it with a sink "
                "(sink, print, collect, sink_to_json_lines)"
            )
    chain_of: dict[Node, ChainPlan] = {}
    chains: list[ChainPlan] = []
    for node in graph.nodes:
        partitioners = [
            _partitioner(edge.partitioner, parallelism[edge.upstream], parallelism[node], node)
            for edge in node.inputs
        ]
        if len(node.inputs) == 1 and node.chainable and node.inputs[0].tag is None:
            upstream = node.inputs[0].upstream
            same = parallelism[upstream] == parallelism[node]
            forwardish = isinstance(partitioners[0], Forward) or parallelism[node] == 1
            if same and forwardish and len(consumers[upstream]) == 1:
                chain = chain_of[upstream]
                chain.nodes.append(node)
                chain_of[node] = chain
                continue
        chain = ChainPlan([node], parallelism[node])
        chain.inputs = [
            InputPlan(chain_of[edge.upstream], partitioner, edge.tag, edge.input)
            for edge, partitioner in zip(node.inputs, partitioners, strict=True)
        ]
        chain_of[node] = chain
        chains.append(chain)
    return PhysicalPlan(chains)


def _parallelism(node: Node, default: int) -> int:
    cap = node.max_parallelism
    if node.parallelism is not None:
        if node.parallelism < 1:
            raise PlanError(f"operator {node.name!r}: parallelism must be at least 1")
        if cap is not None and node.parallelism > cap:
            raise PlanError(
                f"operator {node.name!r} can run at most {cap} instance(s), not {node.parallelism}"
            )
        return node.parallelism
    return default if cap is None else min(default, cap)


def _partitioner(chosen: Partitioner | None, upstream: int, downstream: int, node: Node) -> Partitioner:
    if chosen is None:
        return Forward() if upstream == downstream else Rebalance()
    if isinstance(chosen, Forward) and upstream != downstream:
        raise PlanError(
            f"a forward edge into {node.name!r} needs equal parallelism on both sides "
            f"({upstream} != {downstream}): use rebalance() or set the parallelism"
        )
    return chosen


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
    """

    def actor_name(chain: ChainPlan, index: int) -> str:
        return _actor_name(chain, index) if instance is None else _actor_name(chain, *instance)

    hooks = None
    if checkpoints is not None:
        hooks = CheckpointHooks(
            checkpoints.acknowledge,
            checkpoints.actor_finished,
            checkpoints.source_finished,
            checkpoints.add_participant,
            checkpoints.kind_of,
        )
    restored: dict[str, list[Any]] = {}

    def states(node: Node) -> list[Any] | None:
        if restore is None:
            return None
        if node.name not in restored:
            restored[node.name] = states_of(node.name, restore)
        return restored[node.name]

    def watermark(node: Node) -> int | None:
        """The watermark a source put out at the checkpoint (the lowest of its instances': after
        a change of parallelism an instance may read what any of them read)."""
        if restore is None:
            return None
        saved = states_of(watermark_owner(node.name), restore)
        return min(saved) if saved else None

    # inboxes[chain][instance] collects the mailboxes that feed that instance, in input order.
    inboxes: dict[ChainPlan, list[list[Mailbox]]] = {
        chain: [[] for _ in range(chain.parallelism)] for chain in plan.chains
    }
    # input_of[chain][instance][i]: which input of a two-input head the i-th mailbox feeds.
    input_of: dict[ChainPlan, list[list[int]]] = {
        chain: [[] for _ in range(chain.parallelism)] for chain in plan.chains
    }
    outputs: dict[ChainPlan, list[list[Output]]] = {
        chain: [[] for _ in range(chain.parallelism)] for chain in plan.chains
    }
    side_outputs: dict[ChainPlan, list[list[tuple[OutputTag[Any], Output]]]] = {
        chain: [[] for _ in range(chain.parallelism)] for chain in plan.chains
    }
    for chain in plan.chains:
        for edge in chain.inputs:
            upstream = edge.upstream
            one_to_one = isinstance(edge.partitioner, Forward)
            for sender in range(upstream.parallelism):
                receivers = [sender] if one_to_one else list(range(chain.parallelism))
                boxes = []
                for receiver in receivers:
                    shown = (sender, receiver) if instance is None else (instance[0], instance[0])
                    box = Mailbox(
                        mailbox_capacity,
                        name=f"{upstream.name}[{shown[0] + 1}] => {chain.name}[{shown[1] + 1}]",
                    )
                    inboxes[chain][receiver].append(box)
                    if metrics is not None:
                        metrics.add_channel(actor_name(upstream, sender), actor_name(chain, receiver), box)
                    input_of[chain][receiver].append(edge.input)
                    boxes.append(box)
                router = None if one_to_one else edge.partitioner.router(chain.parallelism, max_parallelism)
                output = Output(boxes, router)
                if edge.tag is None:
                    outputs[upstream][sender].append(output)
                else:
                    side_outputs[upstream][sender].append((edge.tag, output))
    actors: list[Runnable] = []
    for chain in plan.chains:
        for index in range(chain.parallelism):

            def context(node: Node, index: int = index, chain: ChainPlan = chain) -> OperatorContext:
                return OperatorContext(
                    node.name,
                    index,
                    chain.parallelism,
                    max_parallelism,
                    clock,
                    batch_size,
                    node.watermarks,
                    checkpoints is not None,
                    incremental,
                    state_backend,
                    restored_files,
                )

            head = chain.head
            body = chain.nodes[1:] if head.kind == "source" else chain.nodes
            operators: list[Operator] = [node.make_operator() for node in body]  # type: ignore[misc]
            name = actor_name(chain, index)
            runner = Chain(
                operators,
                [context(node) for node in body],
                outputs[chain][index],
                clock,
                side_outputs[chain][index],
                name=name,
                hooks=hooks,
                restore=None if restore is None else [states(node) or [] for node in body],
            )
            if metrics is not None:
                metrics.add_actor(
                    ActorEntry(
                        name,
                        chain.name,
                        *((index, chain.parallelism) if instance is None else instance),
                        runner.metrics,
                        _kind(chain),
                        {node.name: operator for node, operator in zip(body, operators, strict=True)},
                        (head.name, head.source) if head.kind == "source" else None,
                    )
                )
            if head.kind == "source":
                source = sources.get(head.name) if sources is not None else None
                if source is None:
                    source = head.source
                assert source is not None
                actors.append(
                    SourceActor(
                        name,
                        source,
                        context(head),
                        head.watermarks,
                        runner,
                        restore=states(head),
                        restore_watermark=watermark(head),
                        restore_ended=restore is not None and ended_at(head.name, restore),
                    )
                )
            else:
                inputs = input_of[chain][index]
                two_inputs = any(inputs)
                actors.append(
                    Actor(name, Inbox(inboxes[chain][index]), runner, inputs if two_inputs else None)
                )
    if checkpoints is not None:
        checkpoints.begin_run(
            [actor.name for actor in actors], [actor for actor in actors if isinstance(actor, SourceActor)]
        )
    return actors


def _actor_name(chain: ChainPlan, index: int, parallelism: int | None = None) -> str:
    return f"{chain.name}[{index + 1}/{parallelism or chain.parallelism}]"


def _kind(chain: ChainPlan) -> str:
    """What an actor of ``chain`` is drawn as: a source, a sink, or an operator in between."""
    if chain.head.kind == "source":
        return "source"
    return "sink" if chain.tail.kind == "sink" else "operator"
