"""``python -m benchmarks graph --edges N``: edges per second through connected components.

N seeded random edges among N / 2 vertices (mean degree 4: a giant component appears after a
quarter of them) go through :func:`actorflow.graph.connected_components` in one process: one
source, the components in one keyed instance, a sink that counts the changes. The same edges
through the bare strategy (a :class:`~actorflow.graph.forest.Forest`, or with ``--strategy
label-propagation`` :class:`~actorflow.graph.propagation.Labels`; no flow) give the algorithm's
own cost, so the line shows what the engine adds. The same edges then go through
:func:`actorflow.graph.propagate_labels`, label propagation round an iteration with the graph keyed
by vertex (``iterate_edges_per_s``), checked against the forest. Also printed: the machine's load
average, since other processes' load decides a wall time on a shared machine. One JSON line.
"""

from __future__ import annotations

import os
import platform
import random
import sys
import time
from typing import Any

import orjson

from actorflow import Flow
from actorflow.graph import ComponentChange, Forest, VertexLabel, connected_components, propagate_labels
from actorflow.graph.components import Strategy
from actorflow.graph.propagation import Labels

__all__ = ["main", "measure"]


def edges(count: int, seed: int) -> list[tuple[int, int]]:
    """``count`` random edges among ``count // 2`` vertices (at least 2)."""
    rng = random.Random(seed)
    vertices = max(2, count // 2)
    return [(rng.randrange(vertices), rng.randrange(vertices)) for _ in range(count)]


def measure(
    count: int, seed: int = 1, backend: str | None = None, strategy: Strategy = "union-find"
) -> dict[str, Any]:
    """Time ``count`` edges through the flow and through the bare strategy (no flow)."""
    graph = edges(count, seed)

    started = time.perf_counter()
    bare_strategy = Forest() if strategy == "union-find" else Labels()
    for u, v in graph:
        bare_strategy.add(u, v)
    bare = time.perf_counter() - started
    forest = Forest()
    for u, v in graph:
        forest.add(u, v)

    flow = Flow("graph-bench")
    if backend is not None:
        flow.set_state_backend(backend)
    seen = [0, 0]  # changes, and the largest component's size

    def count_change(change: ComponentChange) -> None:
        seen[0] += 1
        seen[1] = max(seen[1], change.size)

    connected_components(flow.from_iterable(graph), strategy=strategy).sink_to_callback(count_change)
    started = time.perf_counter()
    flow.execute()
    elapsed = time.perf_counter() - started
    if seen[0] != count or seen[1] != max(len(c) for c in forest.components().values()):
        raise RuntimeError(f"graph benchmark: the flow disagrees with the bare forest: {seen}")
    looped = measure_loop(graph, forest, backend)
    return {
        "benchmark": "connected_components",
        "edges": count,
        "vertices": len(forest),
        "largest_component": seen[1],
        "strategy": strategy,
        "backend": backend or "heap",
        "seconds": round(elapsed, 3),
        "edges_per_s": round(count / elapsed),
        "bare_edges_per_s": round(count / bare),
        "iterate_seconds": round(looped, 3),
        "iterate_edges_per_s": round(count / looped),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def measure_loop(graph: list[tuple[int, int]], forest: Forest, backend: str | None) -> float:
    """Seconds for ``graph`` through label propagation round an iteration (one instance), whose
    final labels must be ``forest``'s components."""
    flow = Flow("graph-loop-bench")
    if backend is not None:
        flow.set_state_backend(backend)
    smallest: dict[Any, Any] = {}

    def keep(label: VertexLabel) -> None:
        known = smallest.get(label.vertex)
        if known is None or label.label < known:
            smallest[label.vertex] = label.label

    propagate_labels(flow.from_iterable(graph)).sink_to_callback(keep)
    started = time.perf_counter()
    flow.execute()
    elapsed = time.perf_counter() - started
    if any(forest.component(vertex) != label for vertex, label in smallest.items()) or len(smallest) != len(
        forest
    ):
        raise RuntimeError("graph benchmark: label propagation round the loop disagrees with the forest")
    return elapsed


def main(count: int, seed: int = 1, backend: str | None = None, strategy: Strategy = "union-find") -> int:
    """Print :func:`measure`'s line; return the exit status."""
    sys.stdout.buffer.write(orjson.dumps(measure(count, seed, backend, strategy)) + b"\n")
    sys.stdout.flush()
    return 0
