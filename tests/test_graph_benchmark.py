"""``python -m benchmarks graph`` runs and says what it measured (no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("strategy", ["union-find", "label-propagation"])
def test_the_graph_benchmark_prints_one_line_with_edges_per_second(strategy: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "graph", "--edges", "400", "--strategy", strategy],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    measured = orjson.loads(line)
    assert measured["edges"] == 400 and measured["strategy"] == strategy
    assert measured["edges_per_s"] > 0 and measured["bare_edges_per_s"] > 0
    assert 0 < measured["largest_component"] <= measured["vertices"] <= 400
    assert len(measured["load_average"]) == 3
