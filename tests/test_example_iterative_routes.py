"""``examples/iterative_routes.py``: its cheapest routes are networkx's shortest paths from the
gateway, at parallelism 1 and 3, and it runs from the command line."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import networkx as nx
import pytest

from actorflow import Flow
from examples import iterative_routes
from examples.iterative_routes import GATEWAY, Links

ROOT = Path(__file__).resolve().parent.parent


def networkx_costs(links: list[iterative_routes.Link]) -> dict[str, int]:
    graph = nx.Graph()
    for link in links:
        if not graph.has_edge(link.a, link.b) or graph[link.a][link.b]["cost"] > link.cost:
            graph.add_edge(link.a, link.b, cost=link.cost)
    return dict(nx.single_source_dijkstra_path_length(graph, GATEWAY, weight="cost"))


@pytest.mark.parametrize("parallelism", [1, 3])
def test_the_cheapest_routes_are_networkx_shortest_paths(parallelism: int) -> None:
    links = list(Links(count=600, routers=150))
    flow = Flow("routes", parallelism=parallelism, batch_size=16)
    found = iterative_routes.routes(flow.from_iterable(links)).collect()
    flow.execute()
    expected = networkx_costs(links)
    assert iterative_routes.cheapest(found.values) == expected
    assert len(expected) > 100, "most routers are reachable"
    improved = Counter(route.router for route in found.values)
    assert max(improved.values()) > 1, "routes got cheaper on the way"


def test_the_example_runs_from_the_command_line_and_prints_routes() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "actorflow", "run", "examples/iterative_routes.py", "--limit", "400"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert f"{GATEWAY}: the gateway" in lines
    assert sum(" via router-" in line for line in lines) > 50
