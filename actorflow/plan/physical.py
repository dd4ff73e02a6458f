"""Compiling the logical graph: parallelism, partitioners and operator chains.

Chaining rule: a node joins the chain of its input when it has exactly one input, that input has no
other consumer, both have the same parallelism, and the edge is forward, or both sides have a
parallelism of 1 (then every partitioner is forward). A user can break a chain
(``start_new_chain``). Each chain instance becomes one actor; each edge between two actor instances
becomes one bounded mailbox.

``compile_graph`` makes the plan once per flow; :mod:`actorflow.plan.deploy` makes a run's actors
from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from actorflow.errors import PlanError
from actorflow.operators.side_outputs import OutputTag
from actorflow.plan.graph import LogicalGraph, Node
from actorflow.plan.partitioners import Forward, Partitioner, Rebalance

__all__ = ["ChainPlan", "InputPlan", "PhysicalPlan", "compile_graph"]


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
    parallelism = _parallelisms(graph, default_parallelism, one_instance)
    consumers = {node: graph.consumers(node) for node in graph.nodes}
    _check_ends(graph, consumers)
    return PhysicalPlan(_chains(graph, parallelism, consumers))


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
    for node in graph.nodes:
        partitioners = [
            _partitioner(edge.partitioner, parallelism[edge.upstream], parallelism[node], node)
            for edge in node.inputs
        ]
        if _joins_input_chain(node, partitioners, parallelism, consumers):
            chain = chain_of[node.inputs[0].upstream]
            chain.nodes.append(node)
        else:
            inputs = [
                InputPlan(chain_of[edge.upstream], partitioner, edge.tag, edge.input)
                for edge, partitioner in zip(node.inputs, partitioners, strict=True)
            ]
            chain = ChainPlan([node], parallelism[node], inputs)
            chains.append(chain)
        chain_of[node] = chain
    return chains


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
