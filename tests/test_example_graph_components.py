"""``examples/graph_components.py``: its components and its windows' top 3 are networkx's on the
generated friendships, and it runs from the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import networkx as nx

from actorflow import CollectSink, Flow, WatermarkStrategy
from actorflow.graph import component_labels
from examples import graph_components
from examples.graph_components import WINDOW_MS, Friendships

ROOT = Path(__file__).resolve().parent.parent
COUNT = 2_000


def test_the_groups_and_the_most_connected_people_are_networkx_s(parallelism: int) -> None:
    friendships = list(Friendships(count=COUNT, people=300, groups=6))
    flow = Flow("graph-components", parallelism=parallelism)
    source = flow.from_iterable(friendships, watermarks=WatermarkStrategy.punctuated("ts"))
    changes, top = graph_components.analyse(source)
    in_order = changes.sink(CollectSink(), parallelism=1)
    tops = top.collect()
    flow.execute()

    graph = nx.Graph((f["a"], f["b"]) for f in friendships)
    expected = {v: min(c) for c in nx.connected_components(graph) for v in c}
    assert component_labels(in_order.values) == expected
    assert len(set(expected.values())) == 1, "the bridges join every circle by the end"
    assert max(c.absorbed_size for c in in_order.values) > 20, "large groups merged on the way"

    windows: dict[int, nx.Graph] = {}
    for f in friendships:
        windows.setdefault(f["ts"] - f["ts"] % WINDOW_MS, nx.Graph()).add_edge(f["a"], f["b"])
    assert {t.start: t.vertices for t in tops.values} == {
        start: tuple(sorted(g.degree, key=lambda p: (-p[1], p[0]))[:3]) for start, g in windows.items()
    }


def test_the_example_runs_from_the_command_line_and_prints_merges_and_windows() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "actorflow", "run", "examples/graph_components.py", "--limit", "3000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    merges = [line for line in lines if "became friends: a group of" in line]
    windows = [line for line in lines if "most new friends:" in line]
    # 3,000 s of friendships from 22:13:20: the 10-minute windows from 22:10 to 23:00
    assert merges and len(windows) == 6, done.stdout
    assert all(line.count("(") == 3 for line in windows)
