"""The k vertices of highest degree in each tumbling event-time window.

Each window's graph is made of the edges whose timestamps fall in it (a simple graph: an edge seen
twice in a window counts once). Two window stages, as Flink's window Top-N: per vertex (keyed, at
the flow's parallelism) the set of its neighbours in the window gives its degree; then one
instance ranks the window's degrees. Both stamp their results with the window's last millisecond,
so the second stage puts them in the same window.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from actorflow.api import nodes
from actorflow.errors import PlanError
from actorflow.graph.edges import Edge, EdgeReader
from actorflow.operators.base import Collector
from actorflow.operators.windows.assigners import TumblingEventTimeWindows
from actorflow.operators.windows.functions import ProcessWindowFunction, WindowContext
from actorflow.state.descriptors import AggregateFunction

if TYPE_CHECKING:
    from actorflow.api.stream import DataStream

__all__ = ["Neighbours", "RankDegrees", "TopDegrees", "top_k_degrees"]


@dataclass(frozen=True, slots=True)
class TopDegrees:
    """The window ``[start, end)``'s ``k`` vertices of highest degree, as ``(vertex, degree)``
    pairs, highest first; vertices of equal degree in vertex order."""

    start: int
    end: int
    vertices: tuple[tuple[Any, int], ...]


def _ends(edge: Edge[Any]) -> Iterable[tuple[Any, Any]]:
    yield (edge.u, edge.v)
    if edge.u != edge.v:
        yield (edge.v, edge.u)


def _vertex(pair: tuple[Any, Any]) -> Any:
    return pair[0]


def _one_graph(record: Any) -> None:
    return None


class Neighbours(AggregateFunction[tuple[Any, Any], set[Any], set[Any]]):
    """A vertex's distinct neighbours in a window (the window function makes them a degree)."""

    def create_accumulator(self) -> set[Any]:
        return set()

    def add(self, value: tuple[Any, Any], accumulator: set[Any]) -> set[Any]:
        accumulator.add(value[1])
        return accumulator

    def get_result(self, accumulator: set[Any]) -> set[Any]:
        return accumulator

    def merge(self, a: set[Any], b: set[Any]) -> set[Any]:
        return a | b


class _VertexDegree(ProcessWindowFunction[set[Any], tuple[Any, int], Any]):
    """A vertex's degree from its neighbours: a self-loop counts twice (``Graph.degree``)."""

    def process(self, key: Any, context: WindowContext, elements: list[Any], out: Collector) -> None:
        neighbours = elements[0]
        out.collect((key, len(neighbours) + (key in neighbours)))


class RankDegrees(ProcessWindowFunction[tuple[Any, int], TopDegrees, None]):
    """Ranks one window's ``(vertex, degree)`` pairs and emits the first ``k``."""

    def __init__(self, k: int) -> None:
        self.k = k

    def process(
        self, key: None, context: WindowContext, elements: list[tuple[Any, int]], out: Collector
    ) -> None:
        ranked = sorted(elements, key=lambda pair: (-pair[1], pair[0]))[: self.k]
        window = context.window
        out.collect(TopDegrees(window.start, window.end, tuple(ranked)))


def top_k_degrees(
    edges: DataStream[Any],
    k: int,
    window: int,
    *,
    name: str | None = None,
    parallelism: int | None = None,
) -> DataStream[TopDegrees]:
    """The ``k`` vertices of highest degree in each tumbling event-time window of ``window`` ms.

    ``edges`` holds pairs ``(u, v)`` or added :class:`~actorflow.graph.edges.Edge` records with
    event time (a watermark strategy on the source). A window's graph is the edges of its
    timestamps, each once; each window that had edges emits one :class:`TopDegrees` when the
    watermark passes its end. Window contents are keyed state, checkpointed like any other.

    Raises :class:`PlanError` for ``k`` or ``window`` below 1. A removed edge (a window's graph
    only gains edges) or a record that is not an edge raises ValueError naming the operator
    (``name.read``'s function names ``name``) and the record, and the job fails (no
    ``dead_letters=``: the first stage's side outputs are out of the returned stream's reach).

    >>> from actorflow import Flow, WatermarkStrategy
    >>> flow = Flow()
    >>> stamped = [(1, 2, 0), (1, 3, 5), (2, 3, 7), (1, 2, 9), (4, 5, 12)]
    >>> source = flow.from_iterable(stamped, watermarks=WatermarkStrategy.punctuated(lambda e: e[2]))
    >>> top = top_k_degrees(source.map(lambda e: (e[0], e[1])), k=2, window=10).collect()
    >>> flow.execute()
    >>> [(t.start, t.vertices) for t in top.values]
    [(0, ((1, 2), (2, 2))), (10, ((4, 1), (5, 1)))]
    """
    if not isinstance(k, int) or k < 1:
        raise PlanError(f"top_k_degrees: k must be a whole number of at least 1, got {k!r}")
    if not isinstance(window, int) or window < 1:
        raise PlanError(f"top_k_degrees: window must be at least 1 ms, got {window!r}")
    name = name if name is not None else nodes.free_name(edges.flow, "top_k_degrees")
    read = edges.map(EdgeReader(name, removals=False), name=f"{name}.read")
    ends = read.flat_map(_ends, name=f"{name}.ends")
    per_vertex = (
        ends.key_by(_vertex)
        .window(TumblingEventTimeWindows.of(window))
        .aggregate(Neighbours(), _VertexDegree(), name=f"{name}.degrees", parallelism=parallelism)
    )
    ranked = per_vertex.key_by(_one_graph).window(TumblingEventTimeWindows.of(window))
    return ranked.process(RankDegrees(k), name=name, parallelism=1)
