"""Incremental connected components: one union-find forest for the whole graph, in keyed state.

Every edge goes to one instance (the stream is keyed by a constant, as ``window_all`` is), whose
forest is the value state ``"forest"``: checkpointed, restored and moved between backends like any
keyed state. Each added edge emits a :class:`ComponentChange`. Removing an edge is refused: a
union-find forest only merges, and splitting a component again needs the edges it no longer has.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

from actorflow.api import nodes
from actorflow.errors import PlanError
from actorflow.graph.edges import read_edge
from actorflow.graph.forest import Forest
from actorflow.graph.propagation import Labels
from actorflow.operators.base import Collector
from actorflow.operators.process import Context, KeyedProcessFunction, RuntimeContext
from actorflow.state.descriptors import ValueStateDescriptor

if TYPE_CHECKING:
    from actorflow.api.stream import DataStream
    from actorflow.operators.failures import FailedRecord
    from actorflow.operators.side_outputs import OutputTag

__all__ = ["ComponentChange", "ConnectedComponents", "component_labels", "connected_components"]

#: The keyed state that holds the forest (or the labels).
FOREST = "forest"

#: How the components are kept: a union-find forest, or labels propagated along the edges
#: (:mod:`actorflow.graph.propagation`, measured next to it; it keeps every edge).
Strategy = Literal["union-find", "label-propagation"]


@dataclass(frozen=True, slots=True)
class ComponentChange:
    """What an added edge ``(u, v)`` did: both ends are in ``component`` (named by its smallest
    vertex) of ``size`` vertices now; ``absorbed`` is the name of the component that merged into it
    and is gone (a vertex seen for the first time counts as a component of its own), or None when
    the edge changed no component, and ``absorbed_size`` its size (0 for none)."""

    u: Any
    v: Any
    component: Any
    size: int
    absorbed: Any = None
    absorbed_size: int = 0


def _one_graph(record: Any) -> None:
    """The key of every edge: one forest for the whole graph."""
    return None


class ConnectedComponents(KeyedProcessFunction[Any, ComponentChange]):
    """Adds each edge to the forest and says what changed (see :func:`connected_components`)."""

    def __init__(self, strategy: Strategy = "union-find") -> None:
        self.label = "connected_components"
        self.make = Forest if strategy == "union-find" else Labels

    def open(self, ctx: RuntimeContext) -> None:
        self.label = ctx.operator.label
        self.forest = ctx.get_state(ValueStateDescriptor[Forest | Labels](FOREST))

    def process_element(self, value: Any, ctx: Context, out: Collector) -> None:
        edge = read_edge(value, self.label)
        if edge.removed:
            raise ValueError(
                f"{self.label}: connected components cannot remove an edge (a union-find forest "
                f"only merges): {value!r}"
            )
        forest = self.forest.value()
        if forest is None:
            forest = self.make()
        union = forest.add(edge.u, edge.v)
        self.forest.update(forest)  # changed in place: the update says so to any backend
        out.collect(ComponentChange(edge.u, edge.v, *union))


def connected_components(
    edges: DataStream[Any],
    *,
    strategy: Strategy = "union-find",
    name: str | None = None,
    dead_letters: OutputTag[FailedRecord[Any]] | None = None,
) -> DataStream[ComponentChange]:
    """The connected components of a stream of added edges, kept up to date edge by edge.

    ``edges`` holds :class:`~actorflow.graph.edges.Edge` records or pairs ``(u, v)``. Each edge
    emits a :class:`ComponentChange` (with the edge's timestamp): the component both its ends are
    in now, its size, and the component that merged into it, if any; :func:`component_labels`
    folds the changes into each vertex's component. All edges go through one instance (at
    parallelism 1) whose forest is keyed state, so it is checkpointed and restored with the flow.
    ``strategy="label-propagation"`` keeps every edge and each vertex's label instead, with the
    same results: slower, and there to be measured (``python -m benchmarks graph``). Raises
    :class:`PlanError` for another strategy.

    A removed edge, a record that is not an edge, or vertices that do not compare raise ValueError
    naming the operator and the record: the job fails, or with ``dead_letters`` the record goes
    there and the forest stays as it was.

    >>> from actorflow import Flow
    >>> flow = Flow()
    >>> changes = connected_components(flow.from_iterable([(1, 2), (3, 4), (4, 1), (2, 3)])).collect()
    >>> flow.execute()
    >>> [(c.component, c.size, c.absorbed, c.absorbed_size) for c in changes.values]
    [(1, 2, 2, 1), (3, 2, 4, 1), (1, 4, 3, 2), (1, 4, None, 0)]
    >>> component_labels(changes.values)
    {1: 1, 2: 1, 3: 1, 4: 1}
    """
    if strategy not in get_args(Strategy):
        choices = " or ".join(repr(choice) for choice in get_args(Strategy))
        raise PlanError(f"connected_components: strategy is {choices}, got {strategy!r}")
    name = name if name is not None else nodes.free_name(edges.flow, "connected_components")
    return edges.key_by(_one_graph).process(
        ConnectedComponents(strategy), name=name, parallelism=1, dead_letters=dead_letters
    )


def component_labels(changes: Iterable[ComponentChange]) -> dict[Any, Any]:
    """Each vertex's component after ``changes`` (in the order they were emitted), by name.

    >>> component_labels([ComponentChange(5, 6, 5, 2, 6, 1), ComponentChange(6, 2, 2, 3, 5, 2)])
    {2: 2, 5: 2, 6: 2}
    """
    members: dict[Any, set[Any]] = {}
    for change in changes:
        vertices = members.setdefault(change.component, set())
        if change.absorbed is not None:
            vertices |= members.pop(change.absorbed, set())
        vertices.add(change.u)
        vertices.add(change.v)
    return {vertex: name for name, vertices in members.items() for vertex in sorted(vertices)}
