"""Vertex degrees and the degree distribution of a graph whose edges come and go.

Two keyed stages: the first, keyed by the edge (its ends in order), keeps whether the edge is in
the graph, so an edge added twice counts once and only an edge that is there can be removed (the
graph is simple, as networkx's ``Graph``); each change goes on as a +1 or -1 to both ends. The
second, keyed by the vertex, keeps each vertex's degree and emits it when it changes. Both run at
the flow's parallelism. The distribution is a third stage, in one instance: how many vertices
have each degree.

Each edge's own changes keep their order (one key, one instance); the changes of one vertex that
come through different edge instances (parallelism above 1) may arrive in another order than the
input's, so a vertex may pass through other degrees on the way, but never below 0, and its latest
degree is exact once the edges before it have been read. The same holds for the distribution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from actorflow.api import nodes
from actorflow.graph.edges import read_edge
from actorflow.operators.base import Collector
from actorflow.operators.process import Context, KeyedProcessFunction, RuntimeContext
from actorflow.state.descriptors import MapStateDescriptor, ValueStateDescriptor

if TYPE_CHECKING:
    from actorflow.api.stream import DataStream

__all__ = [
    "Degree",
    "DegreeCount",
    "DegreeCounter",
    "DegreeHistogram",
    "EdgeSet",
    "degree_distribution",
    "degrees",
]


@dataclass(frozen=True, slots=True)
class Degree:
    """``vertex`` has ``degree`` edges now (a self-loop counts twice), ``previous`` before."""

    vertex: Any
    degree: int
    previous: int


@dataclass(frozen=True, slots=True)
class DegreeCount:
    """``vertices`` vertices have ``degree`` edges now (0 when the last one left the degree)."""

    degree: int
    vertices: int


def _edge_key(record: Any) -> tuple[Any, Any] | None:
    """The edge's ends in order; None for a record that is no edge (its stage names it)."""
    try:
        return read_edge(record, "").key
    except ValueError:
        return None


def _vertex(change: tuple[Any, int]) -> Any:
    return change[0]


def _one_graph(record: Any) -> None:
    return None


class EdgeSet(KeyedProcessFunction[Any, tuple[Any, int]]):
    """Per edge: whether it is in the graph. Emits ``(vertex, +1 or -1)`` for both ends of an
    edge that came or went; an edge added again changes nothing, and removing an edge that is not
    there raises ValueError naming the operator and the record."""

    def __init__(self) -> None:
        self.label = "degrees"

    def open(self, ctx: RuntimeContext) -> None:
        self.label = ctx.operator.label
        self.present = ctx.get_state(ValueStateDescriptor[bool]("present", default=False))

    def process_element(self, value: Any, ctx: Context, out: Collector) -> None:
        edge = read_edge(value, self.label)
        if edge.removed:
            if not self.present.value():
                raise ValueError(f"{self.label}: no edge ({edge.u!r}, {edge.v!r}) to remove: {value!r}")
            self.present.clear()
            step = -1
        elif self.present.value():
            return  # in the graph already: a simple graph has each edge once
        else:
            self.present.update(True)
            step = 1
        out.collect((edge.u, step))
        out.collect((edge.v, step))  # a self-loop: the same vertex twice, so it counts 2


class DegreeCounter(KeyedProcessFunction[tuple[Any, int], Degree]):
    """Per vertex: its degree, emitted as a :class:`Degree` at every change."""

    def open(self, ctx: RuntimeContext) -> None:
        self.degree = ctx.get_state(ValueStateDescriptor[int]("degree", default=0))

    def process_element(self, value: tuple[Any, int], ctx: Context, out: Collector) -> None:
        vertex, step = value
        previous = self.degree.value()
        degree = previous + step
        if degree:
            self.degree.update(degree)
        else:
            self.degree.clear()  # no edges left: no state left
        out.collect(Degree(vertex, degree, previous))


class DegreeHistogram(KeyedProcessFunction[Degree, DegreeCount]):
    """The whole graph's count of vertices per degree; emits the counts a change moved."""

    def open(self, ctx: RuntimeContext) -> None:
        self.counts = ctx.get_map_state(MapStateDescriptor("vertices-per-degree"))

    def process_element(self, value: Degree, ctx: Context, out: Collector) -> None:
        counts = self.counts
        if value.previous:
            left = counts.get(value.previous, 0) - 1
            if left:
                counts.put(value.previous, left)
            else:
                counts.remove(value.previous)
            out.collect(DegreeCount(value.previous, left))
        if value.degree:
            now = counts.get(value.degree, 0) + 1
            counts.put(value.degree, now)
            out.collect(DegreeCount(value.degree, now))


def degrees(
    edges: DataStream[Any],
    *,
    name: str | None = None,
    parallelism: int | None = None,
) -> DataStream[Degree]:
    """Each vertex's degree, emitted as a :class:`Degree` whenever an edge changes it.

    ``edges`` holds :class:`~actorflow.graph.edges.Edge` records (added or removed) or pairs
    ``(u, v)`` (added). The graph is simple and undirected: an edge added twice is there once, a
    self-loop adds 2 to its vertex (networkx's ``Graph.degree``), and a vertex whose last edge is
    removed emits degree 0. The state is keyed by edge and by vertex at ``parallelism`` (the
    flow's by default), checkpointed and rescaled with the flow.

    A record that is not an edge, and removing an edge that is not in the graph, raise ValueError
    naming the operator (``name.edges``) and the record, and the job fails (or restarts, by its
    restart strategy). There is no ``dead_letters=`` here: the records fail in the first of the
    stages, whose side outputs the returned stream cannot reach.

    >>> from actorflow import Flow
    >>> flow = Flow()
    >>> from actorflow.graph import Edge
    >>> edges = [(1, 2), (2, 3), (2, 1), Edge(1, 2, removed=True)]
    >>> out = degrees(flow.from_iterable(edges)).collect()
    >>> flow.execute()
    >>> [(d.vertex, d.degree) for d in out.values]
    [(1, 1), (2, 1), (2, 2), (3, 1), (1, 0), (2, 1)]
    """
    name = name if name is not None else nodes.free_name(edges.flow, "degrees")
    # Keyed straight from the input, with no stage between that could reorder an edge's addition
    # and its removal (a map at another parallelism would rebalance them to different instances).
    steps = edges.key_by(_edge_key).process(EdgeSet(), name=f"{name}.edges", parallelism=parallelism)
    return steps.key_by(_vertex).process(DegreeCounter(), name=name, parallelism=parallelism)


def degree_distribution(
    edges: DataStream[Any],
    *,
    name: str | None = None,
    parallelism: int | None = None,
) -> DataStream[DegreeCount]:
    """The degree distribution: how many vertices have each degree, kept up to date.

    Each change of a vertex's degree (see :func:`degrees`, which takes the same arguments) emits a
    :class:`DegreeCount` for the degree it left and the one it reached (vertices of degree 0 are
    not counted); the latest count per degree is the distribution. The counts live in one
    instance's keyed state.

    >>> from actorflow import Flow
    >>> flow = Flow()
    >>> out = degree_distribution(flow.from_iterable([(1, 2), (2, 3)])).collect()
    >>> flow.execute()
    >>> {count.degree: count.vertices for count in out.values}
    {1: 2, 2: 1}
    """
    name = name if name is not None else nodes.free_name(edges.flow, "degree_distribution")
    changes = degrees(edges, name=f"{name}.degrees", parallelism=parallelism)
    return changes.key_by(_one_graph).process(DegreeHistogram(), name=name, parallelism=1)
