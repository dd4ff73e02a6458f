"""Edges: the records the graph functions read, and how a record becomes one.

A record is an :class:`Edge` (``Edge(u, v)`` adds the edge, ``Edge(u, v, removed=True)`` removes
it) or a pair ``(u, v)``, which adds it. The graph is undirected: ``(u, v)`` and ``(v, u)`` are one
edge, and ``(u, u)`` is a self-loop. Vertices are any hashable values of one ordered type (ints,
strings...): a component is named by its smallest vertex and ties in a ranking are broken by
vertex, so vertices must compare with each other.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["Edge", "EdgeReader", "read_edge"]

V = TypeVar("V", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Edge(Generic[V]):
    """An undirected edge between ``u`` and ``v``, added (the default) or ``removed``.

    >>> Edge(2, 1).key, Edge(1, 2, removed=True).removed
    ((1, 2), True)
    """

    u: V
    v: V
    removed: bool = False

    @property
    def key(self) -> tuple[V, V]:
        """The edge's endpoints in order, the same for ``(u, v)`` and ``(v, u)``."""
        u, v = self.u, self.v
        return (u, v) if u <= v else (v, u)  # type: ignore[operator]


def read_edge(record: Any, operator: str) -> Edge[Any]:
    """``record`` as an :class:`Edge`: an Edge as it is, a pair ``(u, v)`` as an added edge.

    Raises ValueError naming ``operator`` and the record for anything else: another shape, an
    unhashable vertex, or two vertices that cannot be compared.

    >>> read_edge((1, 2), "cc")
    Edge(u=1, v=2, removed=False)
    >>> read_edge((1, "a"), "cc")
    Traceback (most recent call last):
    ...
    ValueError: cc: the vertices of an edge must compare with each other (int and str): (1, 'a')
    """
    if isinstance(record, Edge):
        edge = record
    elif isinstance(record, tuple | list) and len(record) == 2:
        edge = Edge(record[0], record[1])
    else:
        raise ValueError(f"{operator}: an edge is an Edge or a pair (u, v), got {record!r}")
    try:
        hash(edge.u)
        hash(edge.v)
    except TypeError:
        raise ValueError(f"{operator}: the vertices of an edge must be hashable: {record!r}") from None
    try:
        edge.u <= edge.v  # noqa: B015 (only whether they compare)
    except TypeError:
        kinds = f"{type(edge.u).__name__} and {type(edge.v).__name__}"
        raise ValueError(
            f"{operator}: the vertices of an edge must compare with each other ({kinds}): {record!r}"
        ) from None
    return edge


class EdgeReader:
    """``read_edge`` for one operator, as a map function (it pickles, unlike a lambda)."""

    def __init__(self, operator: str, *, removals: bool = True) -> None:
        self.operator = operator
        self.removals = removals

    def __call__(self, record: Any) -> Edge[Any]:
        edge = read_edge(record, self.operator)
        if edge.removed and not self.removals:
            raise ValueError(f"{self.operator}: cannot remove an edge here, only add: {record!r}")
        return edge
