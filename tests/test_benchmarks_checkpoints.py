"""The checkpoint parts of the benchmark harness: ``run``'s checkpoint options and the report's rows.

Structure only, on tiny inputs: what the numbers are is the report's business, not a test's.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import generate, results, runner

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def transactions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tx.jsonl"
    generate.write(3_000, 4, str(path), cards=100)
    return path


def test_checkpoint_options_need_the_actorflow_engine_and_a_directory(
    transactions: Path, tmp_path: Path
) -> None:
    output = str(tmp_path / "out.jsonl")
    with pytest.raises(ValueError, match="cannot checkpoint"):
        runner.measure("q3", "baseline", str(transactions), output, checkpoint_dir=str(tmp_path / "c"))
    with pytest.raises(ValueError, match="needs a checkpoint directory"):
        runner.measure("q3", "actorflow", str(transactions), output, checkpoint_interval_ms=100)


@pytest.mark.parametrize("query", ["q1", "q2", "q3", "q4"])
def test_a_checkpointed_run_reports_its_checkpoints_and_the_same_result(
    query: str, transactions: Path, tmp_path: Path
) -> None:
    expected = tmp_path / "expected.jsonl"
    output = tmp_path / "out.jsonl"
    runner.measure(query, "baseline", str(transactions), str(expected))
    measured = runner.measure(
        query, "actorflow", str(transactions), str(output), checkpoint_dir=str(tmp_path / "chk")
    )
    assert results.compare(query, str(output), str(expected)) is None
    assert measured["events"] == 3_000
    checkpoints = measured["checkpoints"]
    assert checkpoints["resumed_from"] is None
    assert checkpoints["completed"] == 1  # no interval: only the final checkpoint
    assert checkpoints["bytes"] > 0
    assert checkpoints["interval_ms"] is None


def test_the_report_prints_checkpoint_overhead_and_state_rows(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "report", "--events", "500", "--repeat", "1",
         "--queries", "q1", "--engines", "baseline",
         "--checkpoint-events", "3000", "--checkpoint-queries", "q2", "q3",
         "--checkpoint-intervals-ms", "1000", "--state-keys", "300"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "Checkpoint overhead: 3,000 events, seed 1, median of 1 runs" in lines
    rows = [line.split(" | ") for line in lines if line.startswith(("| q2 | ", "| q3 | "))]
    assert [(row[0], row[1]) for row in rows] == [
        ("| q2", "none"),
        ("| q2", "every 1 s"),
        ("| q3", "none"),
        ("| q3", "every 1 s"),
    ]
    for row in rows:
        assert row[8] == "yes", row  # the result equals the baseline's
    assert rows[0][9:] == ["1.000", "1.000 |"]
    assert rows[1][5] == "1", "a run of 3,000 events only takes its final checkpoint"
    state = [line for line in lines if line.startswith(("| snapshot |", "| restore |"))]
    assert len(state) == 2
    assert any(line.startswith("Keyed state with 300 keys") for line in lines)
