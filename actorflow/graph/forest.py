"""A union-find forest: which component each vertex is in, for a graph whose edges only come.

Union by size with path halving keeps every operation close to constant time (amortised). Each
root also keeps its component's size and smallest vertex, the component's name. Edges cannot be
taken out again: a forest does not know which edges joined two of its trees.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["Forest", "Union"]


class Union(NamedTuple):
    """What adding an edge did: the component the edge is in now (by its smallest vertex), the
    component's size, the name of the component that joined it (None when the edge joined
    nothing new: both ends were in one component, or a new vertex looped on itself) and that
    component's size before (0 for none)."""

    component: Any
    size: int
    absorbed: Any
    absorbed_size: int


class Forest:
    """The components of the edges added so far.

    >>> forest = Forest()
    >>> forest.add(3, 4)
    Union(component=3, size=2, absorbed=4, absorbed_size=1)
    >>> forest.add(5, 6)
    Union(component=5, size=2, absorbed=6, absorbed_size=1)
    >>> forest.add(6, 3)
    Union(component=3, size=4, absorbed=5, absorbed_size=2)
    >>> forest.component(6), forest.add(4, 5)
    (3, Union(component=3, size=4, absorbed=None, absorbed_size=0))
    """

    __slots__ = ("parent", "size", "smallest")

    def __init__(self) -> None:
        #: Every vertex's parent; a root is its own parent.
        self.parent: dict[Any, Any] = {}
        #: The size of each root's component.
        self.size: dict[Any, int] = {}
        #: The smallest vertex of each root's component: the component's name.
        self.smallest: dict[Any, Any] = {}

    def __len__(self) -> int:
        """The number of vertices."""
        return len(self.parent)

    def root(self, vertex: Any) -> Any:
        """The root of ``vertex``'s tree (a new vertex becomes a tree of its own)."""
        parent = self.parent
        if vertex not in parent:
            parent[vertex] = vertex
            self.size[vertex] = 1
            self.smallest[vertex] = vertex
            return vertex
        while (up := parent[vertex]) != vertex:
            grand = parent[up]
            parent[vertex] = grand  # path halving: every other step points one level higher
            vertex = grand
        return vertex

    def component(self, vertex: Any) -> Any:
        """The name (smallest vertex) of ``vertex``'s component."""
        return self.smallest[self.root(vertex)]

    def add(self, u: Any, v: Any) -> Union:
        """Add the edge ``(u, v)``: the two components become one."""
        ru, rv = self.root(u), self.root(v)
        if ru == rv:
            return Union(self.smallest[ru], self.size[ru], None, 0)
        size = self.size
        if size[ru] < size[rv]:
            ru, rv = rv, ru  # the larger tree's root stays a root
        keep, gone = self.smallest[ru], self.smallest.pop(rv)
        kept, moved = size[ru], size.pop(rv)
        if gone < keep:  # the component keeps the smaller name, whichever tree stays the root
            keep, gone, kept, moved = gone, keep, moved, kept
        self.parent[rv] = ru
        size[ru] = kept + moved
        self.smallest[ru] = keep
        return Union(keep, kept + moved, gone, moved)

    def components(self) -> dict[Any, set[Any]]:
        """Every component's vertices, by the component's name."""
        out: dict[Any, set[Any]] = {}
        for vertex in self.parent:
            out.setdefault(self.component(vertex), set()).add(vertex)
        return out
