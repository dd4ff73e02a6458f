"""The logical graph: what the user wired, before parallelism and chaining are decided."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actorflow.errors import PlanError
from actorflow.operators.base import Operator
from actorflow.operators.side_outputs import OutputTag
from actorflow.operators.sources import Source
from actorflow.plan.partitioners import Partitioner
from actorflow.time.watermarks import WatermarkStrategy

__all__ = ["Edge", "LogicalGraph", "Node"]


@dataclass(eq=False)
class Node:
    """One logical operator: a source, a transformation or a sink."""

    id: int
    name: str
    kind: str
    parallelism: int | None = None
    max_parallelism: int | None = None
    make_operator: Callable[[], Operator] | None = None
    source: Source | None = None
    watermarks: WatermarkStrategy | None = None
    inputs: list[Edge] = field(default_factory=list)
    chainable: bool = True
    #: The head of an iteration: it needs a back edge (an input with ``feedback``) to be planned.
    iteration: bool = False

    def __repr__(self) -> str:
        return f"Node({self.id}, {self.name!r})"


@dataclass(eq=False)
class Edge:
    """An input of a node: records from ``upstream``, distributed by ``partitioner``.

    ``partitioner`` None means forward when both sides have the same parallelism, else rebalance.
    ``tag`` set means the edge carries the upstream's side output of that tag, not its main output.
    ``input`` numbers the inputs of a two-input operator (0 or 1); a union's edges all share one.
    ``feedback`` marks the back edge of an iteration, from its tail to its head: the one kind of
    edge whose upstream comes later in the graph.
    """

    upstream: Node
    partitioner: Partitioner | None = None
    tag: OutputTag[Any] | None = None
    input: int = 0
    feedback: bool = False


class LogicalGraph:
    """The nodes of a flow in the order they were added (so upstream always comes first, but
    for the back edges of iterations)."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self._names: set[str] = set()

    def add(
        self, kind: str, name: str | None, *, default_name: str | None = None, **fields: object
    ) -> Node:
        """Add a node; ``name`` must be unique, a missing one is derived from ``default_name``
        (see :meth:`free_name`)."""
        if name is None:
            name = self.free_name(default_name or kind)
        elif name in self._names:
            raise PlanError(f"an operator named {name!r} already exists in this flow")
        self._names.add(name)
        node = Node(len(self.nodes), name, kind, **fields)  # type: ignore[arg-type]
        self.nodes.append(node)
        return node

    def free_name(self, base: str) -> str:
        """``base``, or ``base-2``, ``base-3``... whichever no node has yet.

        >>> graph = LogicalGraph()
        >>> _ = graph.add("map", None)
        >>> graph.free_name("map"), graph.free_name("filter")
        ('map-2', 'filter')
        """
        name = base
        serial = 2
        while name in self._names:
            name = f"{base}-{serial}"
            serial += 1
        return name

    def consumers(self, node: Node) -> list[Node]:
        return [n for n in self.nodes if any(edge.upstream is node for edge in n.inputs)]

    def downstream_of(self, node: Node) -> set[Node]:
        """``node`` and every node its output reaches, back edges not followed.

        >>> graph = LogicalGraph()
        >>> a = graph.add("source", "a")
        >>> b = graph.add("map", "b", inputs=[Edge(a)])
        >>> c = graph.add("map", "c", inputs=[Edge(a)])
        >>> sorted(n.name for n in graph.downstream_of(b)), len(graph.downstream_of(a))
        (['b'], 3)
        """
        reached = {node}
        for later in self.nodes[node.id + 1 :]:  # added in order: inputs come first
            if any(edge.upstream in reached for edge in later.inputs if not edge.feedback):
                reached.add(later)
        return reached

    def upstream_of(self, node: Node) -> set[Node]:
        """``node`` and every node whose output reaches it, back edges not followed."""
        reached = {node}
        for earlier in reversed(self.nodes[: node.id + 1]):
            if earlier in reached:
                reached.update(edge.upstream for edge in earlier.inputs if not edge.feedback)
        return reached
