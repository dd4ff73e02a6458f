"""The ``actorflow`` command: run a flow from a file or a module, print its plan, report failures."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

FLOWS = textwrap.dedent(
    """
    from actorflow import Flow

    def build(parallelism=1):
        flow = Flow("tiny", parallelism=parallelism)
        flow.from_iterable(range(5)).map(lambda n: n * 10, name="times-ten").print(prefix="out: ")
        return flow

    flow = build()
    wide = build(3)

    def make():
        return build()

    async def make_async():
        return build()

    not_a_flow = 42

    failing = Flow("failing")
    failing.from_iterable(range(5)).map(lambda n: 1 // (n - 3), name="divide").print()
    """
)

EXPECTED = [f"out: {n * 10}" for n in range(5)]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "tiny_flows.py").write_text(FLOWS)
    return tmp_path


def actorflow(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "actorflow", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_run_a_file(project: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    done = actorflow("run", str(project / "tiny_flows.py"), cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == EXPECTED
    assert done.stderr == ""


def test_run_a_file_with_an_attribute(project: Path) -> None:
    done = actorflow("run", "tiny_flows.py:wide", cwd=project)
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == EXPECTED


@pytest.mark.parametrize("attribute", ["flow", "make", "make_async"])
def test_run_a_module_attribute(project: Path, attribute: str) -> None:
    done = actorflow("run", f"tiny_flows:{attribute}", cwd=project)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == EXPECTED


def test_the_console_script_runs_a_file(project: Path) -> None:
    script = Path(sys.executable).parent / "actorflow"
    if not script.exists():
        pytest.skip("the actorflow console script is not installed next to this interpreter")
    done = subprocess.run(
        [str(script), "run", "tiny_flows.py"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == EXPECTED


def test_a_failing_flow_exits_1_with_the_traceback(project: Path) -> None:
    done = actorflow("run", "tiny_flows:failing", cwd=project)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert "ZeroDivisionError" in done.stderr
    assert "divide[" in done.stderr  # the note naming the operator instance


def test_a_missing_attribute_exits_with_a_clear_message(project: Path) -> None:
    done = actorflow("run", "tiny_flows:nope", cwd=project)
    assert done.returncode != 0
    assert "tiny_flows has no attribute 'nope'" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("missing.py", "no such file: missing.py"),
        ("tiny_flows:not_a_flow", "is not a Flow (got int)"),
    ],
)
def test_a_bad_target_exits_with_a_clear_message(project: Path, target: str, message: str) -> None:
    done = actorflow("run", target, cwd=project)
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_attribute_exits_2_for_bad_usage(project: Path) -> None:
    assert actorflow("run", "tiny_flows:nope", cwd=project).returncode == 2


def test_an_unknown_command_is_bad_usage(project: Path) -> None:
    done = actorflow("fly", "tiny_flows", cwd=project)
    assert done.returncode == 2
    assert "usage:" in done.stderr


def test_plan_prints_the_chains(project: Path) -> None:
    one = actorflow("plan", "tiny_flows.py", cwd=project)
    assert one.returncode == 0, one.stderr
    assert one.stdout.splitlines() == ["[source -> times-ten -> print] x1"]

    wide = actorflow("plan", "tiny_flows:wide", cwd=project)
    assert wide.returncode == 0, wide.stderr
    assert wide.stdout.splitlines() == [
        "[source] x1",
        "[times-ten -> print] x3 <- rebalance from [source]",
    ]
