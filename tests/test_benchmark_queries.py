"""The benchmark queries written with actorflow give exactly the baseline's results.

The data is the benchmark generator's: skewed cards, events out of order by seconds, some late for
Q2. Each query runs at parallelism 1 and 3 and with small batches, so watermarks fall in the middle
of batches and cross hash exchanges.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import actorflow_engine, baseline
from benchmarks.generate import write
from benchmarks.results import compare, load


@pytest.fixture(scope="module", params=[11, 29])
def transactions(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / f"tx-{request.param}.jsonl"
    write(8_000, request.param, str(path), cards=300)
    return path


@pytest.mark.parametrize("query", ["q1", "q2", "q3"])
@pytest.mark.parametrize(("parallelism", "batch_size"), [(1, 1024), (1, 7), (3, 64)])
def test_actorflow_matches_baseline(
    transactions: Path, tmp_path: Path, query: str, parallelism: int, batch_size: int
) -> None:
    expected = tmp_path / "baseline.jsonl"
    actual = tmp_path / "actorflow.jsonl"
    assert baseline.run(query, str(transactions), str(expected), 1) == 8_000
    events = actorflow_engine.run(query, str(transactions), str(actual), parallelism, batch_size=batch_size)
    assert events == 8_000
    assert compare(query, str(expected), str(actual)) is None


def test_the_data_exercises_late_records_and_alerts(transactions: Path, tmp_path: Path) -> None:
    # Guard against a generator change that would make the comparison above vacuous.
    out = tmp_path / "q2.jsonl"
    actorflow_engine.run("q2", str(transactions), str(out), 1)
    windows = load("q2", str(out))
    assert windows.late > 0  # type: ignore[attr-defined]
    alerts = tmp_path / "q3.jsonl"
    actorflow_engine.run("q3", str(transactions), str(alerts), 1)
    assert alerts.read_bytes().count(b"\n") > 0
