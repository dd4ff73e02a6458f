"""actorflow.graph against networkx: components, degrees (edges added and removed) and top-k
degrees per window on random graphs, at parallelism 1 and 3; savepoints and rescales on the heap
and in RocksDB; bad records named."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import networkx as nx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actorflow import CollectSink, Flow, OutputTag, PlanError, WatermarkStrategy
from actorflow.graph import (
    Degree,
    Edge,
    Forest,
    component_labels,
    connected_components,
    degree_distribution,
    degrees,
    top_k_degrees,
)
from actorflow.graph.components import Strategy
from actorflow.graph.propagation import Labels
from tests.faults import StoppingSource

PARALLELISM = pytest.mark.parametrize("parallelism", [1, 3], ids=["p1", "p3"])
#: RocksDB opens a database per keyed operator instance and flow (13 in the degrees test at
#: parallelism 3), a second each on a loaded machine: its rerun of the suite checks the state
#: backend on fewer graphs; the heap run checks the semantics on more.
ON_ROCKSDB = os.environ.get("ACTORFLOW_STATE_BACKEND", "heap") == "rocksdb"
FEW = settings(
    max_examples=4 if ON_ROCKSDB else 15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

#: Small random graphs: edges between 12 vertices, with repeats and self-loops.
EDGES = st.lists(st.tuples(st.integers(0, 11), st.integers(0, 11)), max_size=30)


def networkx_labels(graph: nx.Graph) -> dict[Any, Any]:
    """Each vertex's component named by its smallest vertex, as connected_components names it."""
    return {v: min(c) for c in nx.connected_components(graph) for v in c}


def in_order(stream: Any) -> CollectSink:
    """Collect in one instance, so the records keep the order they were emitted in."""
    return stream.sink(CollectSink(), parallelism=1)  # type: ignore[no-any-return]


# -- connected components ----------------------------------------------------------------------


@FEW
@given(edges=st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), max_size=80))
def test_the_forest_and_the_labels_have_networkx_components(edges: list[tuple[int, int]]) -> None:
    forest, labels, graph = Forest(), Labels(), nx.Graph()
    for u, v in edges:
        union = forest.add(u, v)
        assert labels.add(u, v) == union
        graph.add_edge(u, v)
        component = nx.node_connected_component(graph, u)
        assert (union.component, union.size) == (min(component), len(component))
    assert {min(c): c for c in nx.connected_components(graph)} == forest.components()
    assert labels.label == networkx_labels(graph)


STRATEGIES = pytest.mark.parametrize("strategy", ["union-find", "label-propagation"])


@STRATEGIES
@PARALLELISM
@FEW
@given(edges=EDGES)
def test_components_after_each_edge_are_networkx_components(
    strategy: Strategy, parallelism: int, edges: list[tuple[int, int]]
) -> None:
    flow = Flow("cc", parallelism=parallelism)
    changes = in_order(connected_components(flow.from_iterable(edges), strategy=strategy))
    flow.execute()
    assert len(changes.values) == len(edges), "one change per edge"
    graph = nx.Graph()
    for (u, v), change in zip(edges, changes.values, strict=True):
        before = networkx_labels(graph)
        sizes = {min(c): len(c) for c in nx.connected_components(graph)}
        graph.add_edge(u, v)
        component = nx.node_connected_component(graph, u)
        assert (change.u, change.v) == (u, v)
        assert (change.component, change.size) == (min(component), len(component))
        # What merged: the other end's old component, or a vertex new to the graph, or nothing.
        old = {before.get(u, u), before.get(v, v)} - {change.component}
        assert change.absorbed == (old.pop() if old else None)
        assert change.absorbed_size == (0 if change.absorbed is None else sizes.get(change.absorbed, 1))
    assert component_labels(changes.values) == networkx_labels(graph)


def test_an_unknown_strategy_is_a_plan_error() -> None:
    flow = Flow("cc")
    with pytest.raises(PlanError, match="strategy is 'union-find' or 'label-propagation', got 'bfs'"):
        connected_components(flow.from_iterable([(1, 2)]), strategy="bfs")  # type: ignore[arg-type]


def test_removing_an_edge_from_the_components_fails_naming_the_operator_and_the_record() -> None:
    flow = Flow("cc")
    connected_components(flow.from_iterable([(1, 2), Edge(1, 2, removed=True)]), name="cc").collect()
    with pytest.raises(ValueError) as failure:
        flow.execute()
    message = str(failure.value)
    assert "cc" in message and "cannot remove an edge" in message
    assert "Edge(u=1, v=2, removed=True)" in message


def test_bad_edges_go_to_dead_letters_and_the_forest_goes_on_without_them() -> None:
    flow = Flow("cc")
    dead: OutputTag[Any] = OutputTag("dead")
    edges = [(1, 2), (3,), (2, "x"), Edge(2, 3, removed=True), (3, 4), (2, 3)]
    changes = connected_components(flow.from_iterable(edges), name="cc", dead_letters=dead)
    out = in_order(changes)
    failed = changes.get_side_output(dead).collect()
    flow.execute()
    assert [f.value for f in failed.values] == [(3,), (2, "x"), Edge(2, 3, removed=True)]
    assert all("cc" in str(f.error) for f in failed.values)
    assert "an Edge or a pair" in str(failed.values[0].error)
    assert "compare" in str(failed.values[1].error)
    assert component_labels(out.values) == {1: 1, 2: 1, 3: 1, 4: 1}


# -- degrees -----------------------------------------------------------------------------------


@st.composite
def edges_coming_and_going(draw: st.DrawFn) -> list[Edge[int]]:
    """Additions, and removals of edges that are in the graph at that point."""
    present: set[tuple[int, int]] = set()
    out: list[Edge[int]] = []
    for _ in range(draw(st.integers(0, 40))):
        if present and draw(st.booleans()):
            u, v = draw(st.sampled_from(sorted(present)))
            present.discard((u, v))
            out.append(Edge(*draw(st.permutations([u, v])), removed=True))
        else:
            u, v = draw(st.integers(0, 9)), draw(st.integers(0, 9))
            present.add((min(u, v), max(u, v)))
            out.append(Edge(u, v))
    return out


def apply(graph: nx.Graph, edge: Edge[int]) -> None:
    if edge.removed:
        graph.remove_edge(edge.u, edge.v)
    else:
        graph.add_edge(edge.u, edge.v)


@PARALLELISM
@FEW
@given(edges=edges_coming_and_going())
def test_degrees_and_their_distribution_are_networkx_degrees(
    parallelism: int, edges: list[Edge[int]]
) -> None:
    flow = Flow("degrees", parallelism=parallelism)
    source = flow.from_iterable(edges)
    changes = degrees(source).collect()
    histogram = in_order(degree_distribution(source))
    flow.execute()
    graph = nx.Graph()
    for edge in edges:
        apply(graph, edge)
    latest: dict[int, int] = {}
    per_vertex: dict[int, list[Degree]] = {}
    for change in changes.values:
        per_vertex.setdefault(change.vertex, []).append(change)
    for vertex, steps in per_vertex.items():
        # Each vertex's changes are in order (one key, one instance): each starts where the last ended.
        assert [s.previous for s in steps] == [0] + [s.degree for s in steps[:-1]]
        latest[vertex] = steps[-1].degree
    assert latest == dict(graph.degree)  # a vertex whose edges all went says 0, as networkx keeps it
    distribution = {c.degree: c.vertices for c in histogram.values}
    expected: dict[int, int] = {}
    for _, degree in graph.degree:
        if degree:
            expected[degree] = expected.get(degree, 0) + 1
    assert {d: n for d, n in distribution.items() if n} == expected


def test_removing_an_edge_that_is_not_there_fails_naming_the_operator_and_the_record() -> None:
    flow = Flow("degrees")
    degrees(flow.from_iterable([(1, 2), Edge(2, 3, removed=True)]), name="deg").collect()
    with pytest.raises(ValueError) as failure:
        flow.execute()
    assert "deg.edges[1/1]: no edge (2, 3) to remove: Edge(u=2, v=3, removed=True)" in str(failure.value)


def test_a_record_that_is_no_edge_fails_the_degrees_naming_the_record() -> None:
    flow = Flow("degrees")
    degrees(flow.from_iterable([(1, 2), "1-3"]), name="deg").collect()
    with pytest.raises(
        ValueError, match=r"deg.edges\[1/1\]: an edge is an Edge or a pair \(u, v\), got '1-3'"
    ):
        flow.execute()


# -- top-k degrees per window -------------------------------------------------------------------

WINDOW = 10


@PARALLELISM
@FEW
@given(
    edges=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7), st.integers(0, 39)), max_size=40),
    k=st.integers(1, 4),
)
def test_top_k_per_window_is_a_sort_of_networkx_degrees(
    parallelism: int, edges: list[tuple[int, int, int]], k: int
) -> None:
    flow = Flow("top", parallelism=parallelism)
    watermarks = WatermarkStrategy.punctuated(lambda e: e[2], lag_ms=40)  # any order is on time
    source = flow.from_iterable(edges, watermarks=watermarks).map(lambda e: (e[0], e[1]))
    top = top_k_degrees(source, k=k, window=WINDOW).collect()
    flow.execute()
    windows: dict[int, nx.Graph] = {}
    for u, v, ts in edges:
        windows.setdefault(ts - ts % WINDOW, nx.Graph()).add_edge(u, v)
    expected = {
        start: tuple(sorted(graph.degree, key=lambda p: (-p[1], p[0]))[:k])
        for start, graph in windows.items()
    }
    assert {t.start: t.vertices for t in top.values} == expected
    assert len(top.values) == len(expected), "one result per window"
    assert all(t.end == t.start + WINDOW for t in top.values)


def test_top_k_refuses_removals_and_bad_settings() -> None:
    flow = Flow("top")
    source = flow.from_iterable([Edge(1, 2, removed=True)])
    with pytest.raises(PlanError, match="k must be"):
        top_k_degrees(source, k=0, window=10)
    with pytest.raises(PlanError, match="window must be"):
        top_k_degrees(source, k=1, window=0)
    top_k_degrees(source, k=1, window=10, name="top").collect()
    with pytest.raises(ValueError, match=r"top: cannot remove an edge here, only add: Edge\(u=1"):
        flow.execute()


# -- savepoints, restores and rescales ------------------------------------------------------------

N = 600


def stamped_edges() -> list[tuple[int, int, int]]:
    """A seeded random graph of 150 vertices; some edges repeat, one per millisecond."""
    rng = random.Random(17)
    return [(rng.randrange(150), rng.randrange(150), ts) for ts in range(N)]


def build(
    parallelism: int, checkpoints: Path, target: Path, stop_at: int | None, backend: str | None
) -> tuple[Flow, StoppingSource]:
    """Components, degrees and the top 3 per 100 ms, into one exactly-once file."""
    flow = Flow("graph-restore", parallelism=parallelism, batch_size=20)
    if backend is not None:
        flow.set_state_backend(backend, cache_entries=4)  # fewer entries than keys: evictions
    flow.enable_checkpointing(checkpoints)
    source = StoppingSource(stamped_edges(), flow, stop_at)
    stamped = flow.from_source(source, watermarks=WatermarkStrategy.punctuated(lambda e: e[2]))
    edges = stamped.map(lambda e: (e[0], e[1]), parallelism=1)  # in the source's order
    components = connected_components(edges).map(
        lambda c: ["cc", c.u, c.v, c.component, c.size, c.absorbed]
    )
    labelled = connected_components(edges, strategy="label-propagation").map(
        lambda c: ["lp", c.u, c.v, c.component, c.size, c.absorbed]
    )
    vertex_degrees = degrees(edges).map(lambda d: ["deg", d.vertex, d.degree, d.previous])
    top = top_k_degrees(edges, k=3, window=100).map(lambda t: ["top", t.start, t.vertices])
    components.union(labelled, vertex_degrees, top).sink_to_json_lines(target, exactly_once=True)
    return flow, source


def summary(target: Path) -> tuple[list[Any], list[Any], dict[int, tuple[int, int]]]:
    """The components' changes and the windows' top 3 (both in an order of their own), and per
    vertex its final degree and number of changes (the steps between may come in another order:
    a vertex's edges are counted in several instances)."""
    records = [orjson.loads(line) for line in sorted(target.read_bytes().splitlines())]
    degrees: dict[int, tuple[int, int]] = {}
    for kind, *fields in records:
        if kind == "deg":
            vertex, degree, _ = fields
            final, changes = degrees.get(vertex, (0, 0))
            degrees[vertex] = (max(final, degree), changes + 1)  # edges only come: degrees only grow
    components = [r for r in records if r[0] == "cc"]
    assert [["cc", *r[1:]] for r in records if r[0] == "lp"] == components, "the strategies agree"
    return components, [r for r in records if r[0] == "top"], degrees


@pytest.mark.parametrize(
    "backend", [pytest.param(None, id="default"), pytest.param("rocksdb", id="rocksdb")]
)
def test_stopped_with_a_savepoint_and_resumed_at_other_parallelisms_the_results_are_the_same(
    tmp_path: Path, backend: str | None
) -> None:
    whole = tmp_path / "whole.jsonl"
    build(2, tmp_path / "whole-checkpoints", whole, None, backend)[0].execute()
    target = tmp_path / "out.jsonl"
    resumed_at = 0
    for parallelism, stop_at in [(1, N // 3), (3, 2 * N // 3), (2, None)]:
        flow, source = build(parallelism, tmp_path / "checkpoints", target, stop_at, backend)
        flow.execute()
        assert source.stopped == (stop_at is not None)
        assert source._skip >= resumed_at, "the run resumed from the previous run's savepoint"
        resumed_at = stop_at or 0
    components, top, vertex_degrees = summary(target)
    assert (components, top, vertex_degrees) == summary(whole)
    assert len(components) == N and top, "every edge changed the components; windows fired"
    # And they are networkx's: a component's name only falls and its size only grows, so the
    # largest size reported under each networkx component's name is its size.
    graph = nx.Graph((u, v) for u, v, _ in stamped_edges())
    assert {v: final for v, (final, _) in vertex_degrees.items()} == dict(graph.degree)
    sizes: dict[int, int] = {}
    for _, _, _, name, size, _ in components:
        sizes[name] = max(sizes.get(name, 0), size)
    for component in nx.connected_components(graph):
        assert sizes[min(component)] == len(component)
