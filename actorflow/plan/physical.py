"""Compiling the logical graph: parallelism, partitioners and operator chains.

Chaining rule: a node joins the chain of its input when it has exactly one input, that input has no
other consumer, both have the same parallelism, and the edge is forward, or both sides have a
parallelism of 1 (then every partitioner is forward). A user can break a chain
(``start_new_chain``). Each chain instance becomes one actor; each edge between two actor instances
becomes one bounded mailbox.

``compile_graph`` makes the plan once per flow; :mod:`actorflow.plan.deploy` makes a run's actors
from it.

Iterations: the back edge of an iteration (tail to head, ``Edge.feedback``) is left out of the
order and of the chaining rule (a head has at least two inputs, so it always starts a chain), and
goes forward (equal parallelism) or by key (``key_by`` on the feedback). The chains on a path from
a head back to it are that iteration's :class:`LoopPlan`; iterations whose bodies meet are one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from actorflow.errors import PlanError
from actorflow.operators.side_outputs import OutputTag
from actorflow.plan.graph import Edge, LogicalGraph, Node
from actorflow.plan.partitioners import Forward, Hash, Partitioner, Rebalance

__all__ = ["ChainPlan", "InputPlan", "LoopPlan", "PhysicalPlan", "compile_graph"]


@dataclass(eq=False)
class InputPlan:
    upstream: ChainPlan
    partitioner: Partitioner
    #: The upstream's side output this input reads, or None for its main output.
    tag: OutputTag[Any] | None = None
    #: Which input of a two-input head operator this is (0 for everything else).
    input: int = 0
    #: The back edge of an iteration, from its tail (``upstream``) to this chain's head.
    feedback: bool = False


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


@dataclass(eq=False)
class LoopPlan:
    """The chains of one loop: its heads (those a back edge reads) and every chain on a path from
    a head back to it, heads included."""

    name: str
    heads: list[ChainPlan]
    members: list[ChainPlan]


@dataclass
class PhysicalPlan:
    """The chains in dependency order (back edges aside), with their parallelism and input
    partitioners, and the loops of its iterations."""

    chains: list[ChainPlan]
    loops: list[LoopPlan] = field(default_factory=list)

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
    if plan.feedback:
        text = f"feedback {text}"
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
    _check_iterations(graph)
    parallelism = _parallelisms(graph, default_parallelism, one_instance)
    consumers = {node: graph.consumers(node) for node in graph.nodes}
    _check_ends(graph, consumers)
    chains = _chains(graph, parallelism, consumers)
    return PhysicalPlan(chains, _loops(graph, chains))


def _check_iterations(graph: LogicalGraph) -> None:
    """Raise :class:`PlanError` for an iteration that was never closed."""
    for node in graph.nodes:
        if node.iteration and not any(edge.feedback for edge in node.inputs):
            raise PlanError(
                f"iteration {node.name!r} is never closed: call close_with(feedback) on the stream "
                "iterate() returned"
            )


def _loops(graph: LogicalGraph, chains: list[ChainPlan]) -> list[LoopPlan]:
    """Every loop: the chains on a path from a head to the tail of its back edge (and back)."""
    chain_of = {node: chain for chain in chains for node in chain.nodes}
    loops: list[LoopPlan] = []
    for head in graph.nodes:
        tails = [edge.upstream for edge in head.inputs if edge.feedback]
        if not tails:
            continue
        reaching: set[Node] = set()
        for tail in tails:
            reaching |= graph.upstream_of(tail)
        nodes = graph.downstream_of(head) & reaching
        members = {chain_of[node] for node in nodes}
        heads = [chain_of[head]]
        for other in [loop for loop in loops if members & set(loop.members)]:  # bodies meet: one loop
            loops.remove(other)
            members |= set(other.members)
            heads = other.heads + heads
        ordered = [chain for chain in chains if chain in members]
        loops.append(LoopPlan(" + ".join(h.head.name for h in heads), heads, ordered))
    return loops


def _parallelisms(graph: LogicalGraph, default: int, one_instance: bool) -> dict[Node, int]:
    """Every node's number of instances: its own, else its input's behind ``forward()``, else
    ``default``; capped by what the node allows (``one_instance``: 1 for every node)."""
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
            parallelism[node] = _parallelism(node, default)
    return parallelism


def _check_ends(graph: LogicalGraph, consumers: Mapping[Node, list[Node]]) -> None:
    """Raise :class:`PlanError` unless every node but a source has an input and every node but a
    sink has a consumer."""
    for node in graph.nodes:
        if node.kind != "source" and not node.inputs:
            raise PlanError(f"operator {node.name!r} has no input")
        if node.kind != "sink" and not consumers[node]:
            raise PlanError(
                f"the output of {node.name!r} goes nowhere: end it with a sink "
                "(sink, print, collect, sink_to_json_lines)"
            )


def _chains(
    graph: LogicalGraph, parallelism: Mapping[Node, int], consumers: Mapping[Node, list[Node]]
) -> list[ChainPlan]:
    """Fuse the nodes into chains by the chaining rule (see the module's docstring)."""
    chain_of: dict[Node, ChainPlan] = {}
    chains: list[ChainPlan] = []
    back_edges: list[tuple[ChainPlan, Edge, Partitioner]] = []
    for node in graph.nodes:
        partitioners = [
            _feedback_partitioner(edge, parallelism, node)
            if edge.feedback
            else _partitioner(edge.partitioner, parallelism[edge.upstream], parallelism[node], node)
            for edge in node.inputs
        ]
        if _joins_input_chain(node, partitioners, parallelism, consumers):
            chain = chain_of[node.inputs[0].upstream]
            chain.nodes.append(node)
        else:
            inputs = [
                InputPlan(chain_of[edge.upstream], partitioner, edge.tag, edge.input)
                for edge, partitioner in zip(node.inputs, partitioners, strict=True)
                if not edge.feedback
            ]
            chain = ChainPlan([node], parallelism[node], inputs)
            chains.append(chain)
            back_edges += [
                (chain, edge, partitioner)
                for edge, partitioner in zip(node.inputs, partitioners, strict=True)
                if edge.feedback
            ]
        chain_of[node] = chain
    for chain, edge, partitioner in back_edges:  # their tails have chains now
        chain.inputs.append(
            InputPlan(chain_of[edge.upstream], partitioner, edge.tag, edge.input, feedback=True)
        )
    return chains


def _feedback_partitioner(edge: Edge, parallelism: Mapping[Node, int], head: Node) -> Partitioner:
    """The back edge's partitioner: forward between equal parallelism, or the feedback's key_by."""
    tail = edge.upstream
    if isinstance(edge.partitioner, Hash):
        return edge.partitioner
    if parallelism[tail] != parallelism[head]:
        raise PlanError(
            f"the feedback of iteration {head.name!r} runs at parallelism {parallelism[tail]} "
            f"({tail.name!r}), the head at {parallelism[head]}: key_by the feedback or set equal "
            "parallelism"
        )
    return Forward()


def _joins_input_chain(
    node: Node,
    partitioners: list[Partitioner],
    parallelism: Mapping[Node, int],
    consumers: Mapping[Node, list[Node]],
) -> bool:
    """Whether ``node`` runs in the chain of its input (``partitioners``: those of its edges)."""
    if len(node.inputs) != 1 or not node.chainable or node.inputs[0].tag is not None:
        return False
    upstream = node.inputs[0].upstream
    same = parallelism[upstream] == parallelism[node]
    forwardish = isinstance(partitioners[0], Forward) or parallelism[node] == 1
    return same and forwardish and len(consumers[upstream]) == 1


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
