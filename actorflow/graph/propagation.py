"""Components by label propagation: each vertex carries its component's name, and a merge pushes
the smaller name through the other side's vertices along the edges.

A second strategy, measured next to the union-find forest. Without an iteration operator, the loop a
distributed label propagation runs over the edges (each vertex tells its neighbours its label until
no label falls) runs here as a work list inside the one instance that holds the graph. It keeps
every edge (the adjacency), where the forest keeps one parent per vertex, and a merge costs the size
of the side that is renamed, where the forest's is nearly constant: ``python -m benchmarks graph
--strategy label-propagation`` shows what that costs.
"""

from __future__ import annotations

from typing import Any

from actorflow.graph.forest import Union

__all__ = ["Labels"]


class Labels:
    """Each vertex's component name (its smallest vertex), kept by propagating labels.

    >>> labels = Labels()
    >>> labels.add(3, 4)
    Union(component=3, size=2, absorbed=4, absorbed_size=1)
    >>> labels.add(5, 6)
    Union(component=5, size=2, absorbed=6, absorbed_size=1)
    >>> labels.add(6, 3), labels.label[5]
    (Union(component=3, size=4, absorbed=5, absorbed_size=2), 3)
    """

    __slots__ = ("adjacent", "label", "size")

    def __init__(self) -> None:
        #: Every vertex's neighbours.
        self.adjacent: dict[Any, set[Any]] = {}
        #: Every vertex's label: the smallest vertex of its component.
        self.label: dict[Any, Any] = {}
        #: Each label's number of vertices.
        self.size: dict[Any, int] = {}

    def __len__(self) -> int:
        return len(self.label)

    def _vertex(self, vertex: Any) -> Any:
        if vertex not in self.label:
            self.label[vertex] = vertex
            self.size[vertex] = 1
            self.adjacent[vertex] = set()
        return self.label[vertex]

    def add(self, u: Any, v: Any) -> Union:
        """Add the edge ``(u, v)``; a merge renames the side with the larger name."""
        lu, lv = self._vertex(u), self._vertex(v)
        self.adjacent[u].add(v)
        self.adjacent[v].add(u)
        if lu == lv:
            return Union(lu, self.size[lu], None, 0)
        keep, gone, start = (lu, lv, v) if lu < lv else (lv, lu, u)
        label = self.label
        label[start] = keep
        pending = [start]
        while pending:  # the propagation: a renamed vertex tells its neighbours still named ``gone``
            vertex = pending.pop()
            for neighbour in self.adjacent[vertex]:
                if label[neighbour] == gone:
                    label[neighbour] = keep
                    pending.append(neighbour)
        moved = self.size.pop(gone)
        self.size[keep] += moved
        return Union(keep, self.size[keep], gone, moved)
