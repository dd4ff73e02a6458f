"""Components by label propagation round an iteration: each vertex holds its label and neighbours
as keyed state, and a label that falls goes to the neighbours through the loop's back edge.

The distributed form of :mod:`actorflow.graph.propagation` (which runs the same propagation as a
work list inside one instance): the graph is keyed by vertex, so it spreads over any number of
instances, and the messages between vertices are records that go round a connected iteration
(:meth:`~actorflow.api.stream.DataStream.iterate_with`):

- each edge ``(u, v)`` enters as two halves, ``(u, v)`` at ``u`` and ``(v, u)`` at ``v``; a half
  adds the neighbour and offers the vertex's label to it;
- an offer (fed back, keyed by the vertex it is for) that is smaller than the vertex's label
  replaces it, and the new label is offered to every neighbour in turn;
- every label a vertex takes (its own when it is new, then each smaller one) is emitted as a
  :class:`VertexLabel`: labels only fall, so a vertex's component is the smallest label emitted for
  it (:func:`final_labels`), its component's smallest vertex.

The loop ends when the edges have ended and no offer is on its way (the iteration's exact end);
with checkpoints, offers on their way round are part of them. Edges are only added: removing one
would need the labels recomputed from scratch, which a fall-only label cannot do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from actorflow.api import nodes
from actorflow.graph.edges import read_edge
from actorflow.operators.base import Collector
from actorflow.operators.co_process import KeyedCoProcessFunction
from actorflow.operators.process import Context, RuntimeContext
from actorflow.operators.side_outputs import OutputTag
from actorflow.state.descriptors import ValueStateDescriptor

if TYPE_CHECKING:
    from actorflow.api.stream import DataStream

__all__ = ["VertexLabel", "final_labels", "propagate_labels"]

#: The offers ``(vertex, label)`` the head sends round the loop, to the vertex's instance.
OFFERS: OutputTag[tuple[Any, Any]] = OutputTag("offers")


@dataclass(frozen=True, slots=True)
class VertexLabel:
    """``vertex`` is in the component named ``label`` (its smallest vertex seen so far)."""

    vertex: Any
    label: Any


def _vertex(pair: tuple[Any, Any]) -> Any:
    """The key of a half edge and of an offer: the vertex it is for."""
    return pair[0]


class _Halves:
    """An edge as its two halves, one for each end (a map function that pickles)."""

    def __init__(self, operator: str) -> None:
        self.operator = operator

    def __call__(self, record: Any) -> list[tuple[Any, Any]]:
        edge = read_edge(record, self.operator)
        if edge.removed:
            raise ValueError(f"{self.operator}: label propagation cannot remove an edge: {record!r}")
        return [(edge.u, edge.v), (edge.v, edge.u)]


class Propagate(KeyedCoProcessFunction[tuple[Any, Any], tuple[Any, Any], VertexLabel]):
    """The loop's head, keyed by vertex: halves of edges on input 1, offers on input 2."""

    def open(self, ctx: RuntimeContext) -> None:
        self.label = ctx.get_state(ValueStateDescriptor[Any]("label"))
        self.neighbours = ctx.get_state(ValueStateDescriptor[set[Any]]("neighbours"))

    def process_element1(self, value: tuple[Any, Any], ctx: Context, out: Collector) -> None:
        vertex, neighbour = value
        label = self.label.value()
        if label is None:  # a new vertex: a component of its own
            label = vertex
            self.label.update(label)
            out.collect(VertexLabel(vertex, label))
        neighbours = self.neighbours.value()
        if neighbours is None:
            neighbours = set()
        elif neighbour in neighbours:
            return  # an edge seen before: its ends have each other's labels already
        neighbours.add(neighbour)
        self.neighbours.update(neighbours)
        if neighbour != vertex:
            ctx.output(OFFERS, (neighbour, label))

    def process_element2(self, value: tuple[Any, Any], ctx: Context, out: Collector) -> None:
        vertex, offered = value
        current = self.label.value()
        label = min(vertex if current is None else current, offered)
        if label == current:
            return
        self.label.update(label)
        out.collect(VertexLabel(vertex, label))
        for neighbour in self.neighbours.value() or ():
            if neighbour != vertex:
                ctx.output(OFFERS, (neighbour, label))


def propagate_labels(
    edges: DataStream[Any], *, name: str | None = None, parallelism: int | None = None
) -> DataStream[VertexLabel]:
    """The connected components of a stream of added edges, by labels propagated round a loop
    (module docstring): a :class:`VertexLabel` each time a vertex takes a label.

    ``edges`` holds :class:`~actorflow.graph.edges.Edge` records or pairs ``(u, v)``; the vertices'
    state is keyed by vertex, at ``parallelism`` instances. A removed edge, a record that is not an
    edge, or vertices that do not compare raise ValueError naming the operator and the record.

    >>> from actorflow import Flow
    >>> flow = Flow(parallelism=2)
    >>> labels = propagate_labels(flow.from_iterable([(3, 4), (5, 6), (6, 3), (8, 9)])).collect()
    >>> flow.execute()
    >>> final_labels(labels.values)
    {3: 3, 4: 3, 5: 3, 6: 3, 8: 8, 9: 8}
    """
    name = name if name is not None else nodes.free_name(edges.flow, "propagate_labels")
    halves = edges.flat_map(_Halves(f"{name}.halves"), name=f"{name}.halves")
    loop = halves.iterate_with(tuple).key_by(_vertex, _vertex)
    labels = loop.process(Propagate(), name=name, parallelism=parallelism)
    loop.close_with(labels.get_side_output(OFFERS, name=f"{name}.offers"))
    return labels


def final_labels(labels: Iterable[VertexLabel]) -> dict[Any, Any]:
    """Each vertex's component after ``labels`` (in any order: a vertex's smallest label), by
    vertex.

    >>> final_labels([VertexLabel(2, 2), VertexLabel(1, 1), VertexLabel(2, 1)])
    {1: 1, 2: 1}
    """
    smallest: dict[Any, Any] = {}
    for each in labels:
        known = smallest.get(each.vertex)
        if known is None or each.label < known:
            smallest[each.vertex] = each.label
    return dict(sorted(smallest.items()))
