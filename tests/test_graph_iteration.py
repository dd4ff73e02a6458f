"""Connected components by label propagation round an iteration, against networkx and the
union-find forest, at parallelism 1 and 3."""

from __future__ import annotations

import random
from typing import Any

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actorflow import Flow
from actorflow.graph import Edge, Forest, VertexLabel, final_labels, propagate_labels

PARALLELISM = pytest.mark.parametrize("parallelism", [1, 3], ids=["p1", "p3"])
FEW = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def networkx_labels(edges: list[tuple[int, int]]) -> dict[int, int]:
    graph = nx.Graph()
    graph.add_edges_from(edges)
    return dict(sorted((v, min(c)) for c in nx.connected_components(graph) for v in c))


def propagated(edges: list[Any], parallelism: int, batch_size: int = 4) -> list[VertexLabel]:
    flow = Flow(parallelism=parallelism, batch_size=batch_size, mailbox_capacity=2)
    labels = propagate_labels(flow.from_iterable(edges)).collect()
    flow.execute()
    return labels.values


@PARALLELISM
@FEW
@given(edges=st.lists(st.tuples(st.integers(0, 15), st.integers(0, 15)), max_size=40))
def test_the_final_labels_are_networkx_components(edges: list[tuple[int, int]], parallelism: int) -> None:
    labels = propagated(edges, parallelism)
    assert final_labels(labels) == networkx_labels(edges)
    # Labels only fall: per vertex (one instance, one channel on), each is below the one before.
    seen: dict[int, int] = {}
    for each in labels:
        assert each.vertex not in seen or each.label < seen[each.vertex]
        seen[each.vertex] = each.label


@PARALLELISM
def test_a_random_graph_gets_the_components_of_the_forest(parallelism: int) -> None:
    rng = random.Random(5)
    edges = [(rng.randrange(1_500), rng.randrange(1_500)) for _ in range(3_000)]
    forest = Forest()
    for u, v in edges:
        forest.add(u, v)
    labels = final_labels(propagated(edges, parallelism, batch_size=64))
    assert labels == {vertex: forest.component(vertex) for vertex in labels}
    assert labels == networkx_labels(edges)


def test_removing_an_edge_fails_naming_the_operator_and_the_record() -> None:
    with pytest.raises(
        ValueError, match=r"propagate_labels.halves: label propagation cannot remove an edge: Edge\(u=1"
    ):
        propagated([(1, 2), Edge(1, 2, removed=True)], 1)
