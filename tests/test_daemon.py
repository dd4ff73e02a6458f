"""``actorflow run`` as a daemon: signals, savepoints of a running job, logs, progress.

Every daemon here is a real subprocess. Tests wait for what the daemon shows (a line on stderr, a
file), never for a fixed time, and the fixture kills whatever is still running at the end.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actorflow import Flow
from actorflow.cli.logs import configure_logging, set_job
from actorflow.cli.progress import Progress, Reading, probes_of
from actorflow.operators.sources import ReadProgress

ROOT = Path(__file__).resolve().parent.parent
TRANSACTIONS = ROOT / "examples" / "data" / "transactions.jsonl"

FLOWS = textwrap.dedent(
    """
    import asyncio
    import logging
    import sys

    from actorflow import Flow
    from actorflow.operators.sources import Source


    class Ticker(Source):
        '''Counts up for ever, ten numbers a batch; its position is its state.'''

        def __init__(self):
            self.position = 0

        def snapshot_state(self, context):
            return self.position

        def restore_state(self, context, states):
            self.position = states[0] if states else 0
            print(f"resumed at {self.position}", file=sys.stderr, flush=True)

        async def read(self, context):
            print(f"reading from {self.position}", file=sys.stderr, flush=True)
            while True:
                batch = list(range(self.position, self.position + 10))
                self.position += 10
                yield batch
                await asyncio.sleep(0.002)

        async def finish(self, context, *, completed):
            print(f"ticks ended at {self.position} (completed: {completed})", file=sys.stderr, flush=True)


    def shout(n):
        if n == 25:
            logging.getLogger("ticker").warning("reached %d", n)
        return n


    ticker = Flow("ticker")
    (
        ticker.from_source(Ticker(), name="ticks")
        .map(shout, name="shout")
        .sink_to_json_lines("out.jsonl", exactly_once=True)
    )


    async def hang(n):
        if n == 20:
            print("the sink hangs at 20", file=sys.stderr, flush=True)
            await asyncio.Event().wait()  # never set: the barrier never passes this sink


    stuck = Flow("stuck")
    stuck.from_source(Ticker(), name="ticks").sink_to_callback(hang, name="hang")

    class Rules(Source):
        '''A short list that ends at once (like a rules file) and says so.'''

        async def read(self, context):
            yield [-1, -2]

        async def finish(self, context, *, completed):
            print("rules ended", file=sys.stderr, flush=True)


    ruled = Flow("ruled")
    (
        ruled.from_source(Ticker(), name="ticks")
        .union(ruled.from_source(Rules(), name="rules"))
        .sink_to_json_lines("out.jsonl", exactly_once=True)
    )

    drained = Flow("drained", parallelism=2)  # the sink in actors of its own: records in flight
    (
        drained.from_source(Ticker(), name="ticks")
        .rebalance()
        .map(shout, name="shout")
        .sink_to_json_lines("out.jsonl")
    )

    transactions = Flow("transactions")
    transactions.from_json_lines("transactions.jsonl").map(
        lambda tx: tx["amount"], name="amounts"
    ).sink_to_callback(lambda amount: None, name="drop")
    """
)


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment with ``extra``, and this checkout first on the path: the command under test
    is this tree's, whatever another checkout installed meanwhile."""
    path = os.pathsep.join(part for part in (str(ROOT), os.environ.get("PYTHONPATH")) if part)
    return {**os.environ, "PYTHONPATH": path, **(extra or {})}


class Daemon:
    """An ``actorflow run`` subprocess whose stderr lines can be waited for."""

    def __init__(self, *args: str, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "actorflow", "run", *args],
            cwd=cwd,
            env=environment(env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, text: str, timeout: float = 30) -> str:
        """The next stderr line containing ``text``; fails if the process ends first."""
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                pytest.fail(f"no line with {text!r} within {timeout} s; stderr:\n{''.join(self.stderr)}")
            if line is None:
                pytest.fail(
                    f"the daemon ended before a line with {text!r}; stderr:\n{''.join(self.stderr)}"
                )
            if text in line:
                return line

    def send(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def close(self) -> None:
        """Kill the daemon if it still runs, and let go of its pipe."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._reader.join(timeout=5)
        assert self.process.stderr is not None
        self.process.stderr.close()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "flows.py").write_text(FLOWS)
    (tmp_path / "transactions.jsonl").write_bytes(TRANSACTIONS.read_bytes())
    return tmp_path


@pytest.fixture
def daemons(project: Path) -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.close()


def start(daemons: list[Daemon], project: Path, *args: str, env: dict[str, str] | None = None) -> Daemon:
    daemon = Daemon(*args, cwd=project, env=env)
    daemons.append(daemon)
    return daemon


def actorflow(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "actorflow", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=environment(),
    )


def output_of(project: Path) -> list[int]:
    return [json.loads(line) for line in (project / "out.jsonl").read_text().splitlines()]


def savepoints(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("sp-*") if (p / "MANIFEST.json").is_file())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_takes_a_savepoint_exits_0_and_the_next_start_resumes_there(
    project: Path, daemons: list[Daemon], signum: int
) -> None:
    checkpoints = project / "checkpoints"
    first = start(
        daemons, project, "flows.py:ticker", "--checkpoint-dir", str(checkpoints), "--log-level", "info"
    )
    first.wait_for("reading from 0")
    first.send(signum)
    assert first.wait() == 0, "".join(first.stderr)
    assert len(savepoints(checkpoints)) == 1
    assert any("stopped with savepoint" in line for line in first.stderr)
    written = output_of(project)
    assert written == list(range(len(written)))  # what the savepoint covers, committed

    second = start(daemons, project, "flows.py:ticker", "--checkpoint-dir", str(checkpoints))
    resumed = second.wait_for("resumed at ")
    assert resumed.strip() == f"resumed at {len(written)}"  # no periodic checkpoints: the savepoint
    second.wait_for(f"reading from {len(written)}")
    second.send(signal.SIGTERM)
    assert second.wait() == 0, "".join(second.stderr)
    after = output_of(project)
    assert len(after) > len(written)
    assert after == list(range(len(after)))  # nothing lost, nothing twice


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"]
)
def test_a_second_signal_exits_at_once(
    project: Path, daemons: list[Daemon], signum: int, code: int
) -> None:
    checkpoints = project / "checkpoints"
    daemon = start(
        daemons, project, "flows.py:stuck", "--checkpoint-dir", str(checkpoints), "--log-level", "info"
    )
    daemon.wait_for("the sink hangs at 20")
    daemon.send(signum)
    daemon.wait_for("with a final savepoint")  # the savepoint cannot pass the stuck sink
    daemon.send(signum)
    assert daemon.wait(timeout=10) == code, "".join(daemon.stderr)
    assert savepoints(checkpoints) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_without_checkpoints_a_stop_signal_drains_the_job_and_exits_0(
    project: Path, daemons: list[Daemon], signum: int
) -> None:
    daemon = start(daemons, project, "flows.py:drained")
    daemon.wait_for("reading from 0")
    daemon.send(signum)
    name = signal.Signals(signum).name
    line = daemon.wait_for("draining")
    assert line.split(" actorflow.daemon: ")[1].strip() == (
        f"{name}: draining job 'drained': its sources stop, what they read is finished and written "
        f"(no checkpoints to save; {name} again stops at once)"
    )
    ended = re.search(r"ticks ended at (\d+) \(completed: True\)", daemon.wait_for("ticks ended at"))
    assert ended is not None
    assert daemon.wait() == 0, "".join(daemon.stderr)
    assert "job 'drained' drained: " in "".join(daemon.stderr)
    # Every record the source read went through and was flushed: none lost on the way.
    assert sorted(output_of(project)) == list(range(int(ended.group(1))))


def test_a_second_signal_stops_a_draining_job_at_once(project: Path, daemons: list[Daemon]) -> None:
    daemon = start(daemons, project, "flows.py:stuck")
    daemon.wait_for("the sink hangs at 20")
    daemon.send(signal.SIGTERM)
    daemon.wait_for("draining")  # the stuck sink never lets the drain finish
    daemon.send(signal.SIGTERM)
    assert daemon.wait(timeout=10) == 143, "".join(daemon.stderr)


def test_savepoint_and_listing_against_a_running_job(project: Path, daemons: list[Daemon]) -> None:
    checkpoints = project / "checkpoints"
    daemon = start(daemons, project, "flows.py:ticker", "--checkpoint-dir", str(checkpoints))
    daemon.wait_for("reading from 0")

    taken = actorflow(project, "savepoint", "--checkpoint-dir", str(checkpoints))
    assert taken.returncode == 0, taken.stderr
    path = Path(taken.stdout.strip())
    assert path.parent == checkpoints and path.name.startswith("sp-")
    assert json.loads((path / "MANIFEST.json").read_text())["kind"] == "savepoint"
    assert "taken by the running job" in taken.stderr

    listed = actorflow(
        project, "checkpoints", "list", "--checkpoint-dir", str(checkpoints), "--format", "json"
    )
    assert listed.returncode == 0, listed.stderr
    listing = json.loads(listed.stdout)
    assert listing["running"]["pid"] == daemon.process.pid
    assert listing["running"]["job"] == "ticker"
    assert [(row["kind"], row["path"]) for row in listing["checkpoints"]] == [("savepoint", str(path))]

    again = start(daemons, project, "flows.py:ticker", "--checkpoint-dir", str(checkpoints))
    assert again.wait() == 2
    assert f"{checkpoints} is in use by another running job (pid {daemon.process.pid}" in "".join(
        again.stderr
    )

    daemon.send(signal.SIGTERM)
    assert daemon.wait() == 0
    assert not (checkpoints / "daemon" / "status.json").exists()
    stopped = actorflow(project, "checkpoints", "list", "--checkpoint-dir", str(checkpoints))
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.splitlines()[0] == f"{checkpoints}: no job running"
    assert len(savepoints(checkpoints)) == 2  # the one asked for and the final one


def test_checkpoints_and_the_stop_savepoint_go_on_after_one_source_ended(
    project: Path, daemons: list[Daemon]
) -> None:
    # The main example's shape: its rules come from a file that ends at once, its transactions
    # never end. Checkpoints, savepoints and the stop's savepoint must not need every source.
    checkpoints = project / "checkpoints"
    args = ("flows.py:ruled", "--checkpoint-dir", str(checkpoints), "--checkpoint-interval-ms", "50")
    first = start(daemons, project, *args, "--log-level", "info")
    first.wait_for("rules ended")
    taken = actorflow(project, "savepoint", "--checkpoint-dir", str(checkpoints))
    assert taken.returncode == 0, taken.stderr
    first.send(signal.SIGTERM)
    assert first.wait() == 0, "".join(first.stderr)
    assert any("stopped with savepoint" in line for line in first.stderr), "".join(first.stderr)
    written = output_of(project)

    second = start(daemons, project, *args)
    second.wait_for("resumed at ")
    second.wait_for("rules ended")
    second.send(signal.SIGTERM)
    assert second.wait() == 0, "".join(second.stderr)
    after = output_of(project)
    assert after[: len(written)] == written and len(after) > len(written)
    ticks = [n for n in after if n >= 0]
    assert ticks == list(range(len(ticks)))  # nothing lost, nothing twice
    assert sorted(n for n in after if n < 0) == [-2, -1]  # the ended source was not read again


def test_kill_usr1_takes_a_savepoint(project: Path, daemons: list[Daemon]) -> None:
    checkpoints = project / "checkpoints"
    daemon = start(
        daemons, project, "flows.py:ticker", "--checkpoint-dir", str(checkpoints), "--log-level", "info"
    )
    daemon.wait_for("reading from 0")
    daemon.send(signal.SIGUSR1)
    written = daemon.wait_for("savepoint 1 written to")
    assert str(checkpoints / "sp-0000000001") in written
    daemon.send(signal.SIGTERM)
    assert daemon.wait() == 0


def test_savepoint_of_a_stopped_job_copies_its_newest_checkpoint(project: Path) -> None:
    checkpoints = project / "checkpoints"
    done = actorflow(project, "run", "flows.py:transactions", "--checkpoint-dir", str(checkpoints))
    assert done.returncode == 0, done.stderr  # bounded: ends with a final checkpoint

    first = actorflow(project, "savepoint", "--checkpoint-dir", str(checkpoints))
    assert first.returncode == 0, first.stderr
    assert "copied from checkpoint 1" in first.stderr
    copy = Path(first.stdout.strip())
    manifest = json.loads((copy / "MANIFEST.json").read_text())
    original = json.loads((checkpoints / "chk-0000000001" / "MANIFEST.json").read_text())
    assert manifest["kind"] == "savepoint"
    assert manifest["parts"] == original["parts"]
    assert manifest["metadata"]["copied_from"] == 1

    second = actorflow(project, "savepoint", "--checkpoint-dir", str(checkpoints))
    assert second.returncode == 0, second.stderr
    assert Path(second.stdout.strip()) == copy
    assert "already a savepoint" in second.stderr


def test_savepoint_of_an_empty_directory_fails(project: Path) -> None:
    (project / "empty").mkdir()
    done = actorflow(project, "savepoint", "--checkpoint-dir", "empty")
    assert done.returncode == 1
    assert "has no complete checkpoint" in done.stderr


def test_savepoint_needs_a_directory(project: Path) -> None:
    done = actorflow(project, "savepoint")
    assert done.returncode == 2
    assert "--checkpoint-dir" in done.stderr


def test_json_log_lines_carry_the_job_and_the_operator(project: Path, daemons: list[Daemon]) -> None:
    daemon = start(
        daemons,
        project,
        "flows.py:ticker",
        "--checkpoint-dir",
        "checkpoints",
        "--log-format",
        "json",
        env={"ACTORFLOW_LOG_LEVEL": "info"},
    )
    daemon.wait_for("reading from 0")
    daemon.wait_for('"reached 25"')
    daemon.send(signal.SIGTERM)
    assert daemon.wait() == 0
    records = [json.loads(line) for line in daemon.stderr if line.startswith("{")]
    assert {record["job"] for record in records} == {"ticker"}
    reached = next(record for record in records if record["message"] == "reached 25")
    assert reached["level"] == "WARNING"
    assert reached["logger"] == "ticker"
    assert reached["operator"] == "ticks -> shout -> json-lines-exactly-once[1/1]"
    assert reached["pid"] == daemon.process.pid
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$", reached["time"])
    stopped = next(record for record in records if "stopped with savepoint" in record["message"])
    assert stopped["operator"] is None and stopped["logger"] == "actorflow.daemon"


def test_text_log_lines_carry_the_context(project: Path, daemons: list[Daemon]) -> None:
    daemon = start(daemons, project, "flows.py:ticker")
    line = daemon.wait_for("reached 25")
    daemon.send(signal.SIGTERM)
    daemon.wait()
    assert re.match(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING "
        r"\[ticker \| ticks -> shout -> json-lines-exactly-once\[1/1\]\] ticker: reached 25$",
        line.strip(),
    )


def test_a_failure_is_logged_as_json_with_its_traceback(project: Path) -> None:
    (project / "failing.py").write_text(
        "from actorflow import Flow\n"
        "flow = Flow('failing')\n"
        "flow.from_iterable(range(5)).map(lambda n: 1 // (n - 3), name='divide').print()\n"
    )
    done = actorflow(project, "run", "failing.py", "--log-format", "json")
    assert done.returncode == 1
    records = [json.loads(line) for line in done.stderr.splitlines()]
    assert [r["level"] for r in records] == ["NOTICE", "ERROR"]  # started, failed
    record = records[-1]
    assert record["job"] == "failing"
    assert record["message"].startswith("operator divide[1/1] failed on record 3: ZeroDivisionError: ")
    assert "ZeroDivisionError" in record["exception"]
    assert "raised in operator divide[1/1]" in record["exception"]


@pytest.mark.parametrize("how", ["flag", "env"])
def test_a_bounded_job_shows_progress_and_a_summary_when_asked(project: Path, how: str) -> None:
    args = ["--progress", "always"] if how == "flag" else []
    done = subprocess.run(
        [sys.executable, "-m", "actorflow", "run", "flows.py:transactions", *args],
        cwd=project,
        capture_output=True,  # bytes: text mode would turn the "\r" that redraws the line into "\n"
        timeout=60,
        check=False,
        env=environment({"ACTORFLOW_PROGRESS": "always"} if how == "env" else None),
    )
    stderr = done.stderr.decode()
    assert done.returncode == 0, stderr
    frames = stderr.split("\r")
    size = (project / "transactions.jsonl").stat().st_size
    # The first frame is drawn at the start, before anything was read.
    assert frames[1].startswith(f"transactions: 0 records, 0 rec/s, 0% of {size / 1000:.1f} kB")
    summary = stderr.splitlines()[-1]
    assert re.match(r"^transactions: 5,000 records in \d+\.\d s \([\d,]+ rec/s\), done$", summary), summary


def test_no_progress_when_stderr_is_not_a_terminal(project: Path) -> None:
    done = actorflow(project, "run", "flows.py:transactions")
    assert done.returncode == 0
    assert "\r" not in done.stderr
    assert [line.split(" actorflow.daemon: ")[1] for line in done.stderr.splitlines()] == [
        "started transactions (no checkpoints, parallelism 1)",
        "transactions done: 5,000 records read",
    ]


# -- the life cycle at the default log level (issue 12, item 7) ------------------------------------


def notices(lines: list[str]) -> list[str]:
    """The messages of the NOTICE lines (the life cycle) among ``lines``."""
    return [line.split(" actorflow.daemon: ")[1].strip() for line in lines if " NOTICE " in line]


def test_the_life_cycle_is_logged_at_the_default_level(project: Path, daemons: list[Daemon]) -> None:
    checkpoints = project / "checkpoints"
    first = start(daemons, project, "flows.py:ticker", "--checkpoint-dir", "checkpoints")
    first.wait_for("reading from 0")
    first.send(signal.SIGTERM)
    assert first.wait() == 0, "".join(first.stderr)
    sp = checkpoints / "sp-0000000001"
    assert notices(first.stderr) == [
        "started ticker (from the beginning, checkpoints in checkpoints, parallelism 1)",
        "SIGTERM: stopping job 'ticker' with a final savepoint (SIGTERM again stops at once)",
        f"job 'ticker' stopped with savepoint 1 at {Path('checkpoints') / sp.name}",
    ]
    second = start(daemons, project, "flows.py:ticker", "--checkpoint-dir", "checkpoints", "-p", "2")
    second.wait_for("reading from")
    second.send(signal.SIGINT)
    assert second.wait() == 0, "".join(second.stderr)
    assert notices(second.stderr)[0] == "started ticker (resumed from savepoint 1, parallelism 2)"


def test_a_finished_bounded_job_says_there_is_nothing_to_do(project: Path) -> None:
    args = ("run", "flows.py:transactions", "--checkpoint-dir", "checkpoints")
    first = actorflow(project, *args)
    assert first.returncode == 0, first.stderr
    assert notices(first.stderr.splitlines())[-1] == "transactions done: 5,000 records read"
    again = actorflow(project, *args)
    assert again.returncode == 0, again.stderr
    assert notices(again.stderr.splitlines()) == [
        f"transactions: nothing to do: the input ended in checkpoint 1 at "
        f"{Path('checkpoints') / 'chk-0000000001'} (to read it again, start with another checkpoint "
        "directory)"
    ]


def test_the_log_level_warning_keeps_a_healthy_run_quiet(project: Path) -> None:
    done = actorflow(project, "run", "flows.py:transactions", "--log-level", "warning")
    assert done.returncode == 0
    assert done.stderr == ""


# -- progress counts per source (issue 12, item 9) -------------------------------------------------


def test_progress_counts_each_source_apart(project: Path) -> None:
    (project / "two.py").write_text(
        textwrap.dedent(
            """
            from actorflow import Flow

            flow = Flow("two")
            main = flow.from_iterable(range(2_000), name="numbers")
            main.union(flow.from_iterable([-1, -2], name="rules")).sink_to_callback(lambda n: None)
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "actorflow", "run", "two.py", "--progress", "always"],
        cwd=project, capture_output=True, timeout=60, check=False, env=environment(),
    )  # fmt: skip
    stderr = done.stderr.decode()
    assert done.returncode == 0, stderr
    frames = [frame.split("\x1b[K")[0] for frame in stderr.split("\r")]
    first = next(frame for frame in frames if frame.startswith("two: "))
    assert first.startswith("two: 0 numbers + 0 rules, 0 rec/s, 0% of 2,000 numbers"), first
    summary = next(line for line in stderr.splitlines() if " in " in line and line.endswith(", done"))
    assert re.fullmatch(r"two: 2,000 numbers \+ 2 rules in \d+\.\d s \([\d,]+ rec/s\), done", summary), (
        summary
    )
    assert notices(stderr.splitlines())[-1] == "two done: 2,000 numbers + 2 rules read"


def test_the_http_endpoint_serves_while_the_daemon_runs(project: Path, daemons: list[Daemon]) -> None:
    daemon = start(
        daemons,
        project,
        "flows.py:ticker",
        "--checkpoint-dir",
        "checkpoints",
        "--http-port",
        "0",  # any free port: the log line says which
        "--log-level",
        "info",
        env={"ACTORFLOW_HTTP_TOKEN": "s3cret"},
    )
    url = re.search(r"dashboard of flow 'ticker' at (http://\S+/)", daemon.wait_for("dashboard of flow"))
    assert url is not None
    daemon.wait_for("reading from 0")
    with urllib.request.urlopen(url.group(1) + "healthz", timeout=10) as response:
        assert response.status == 200
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url.group(1) + "metrics", timeout=10)
    assert refused.value.code == 401
    refused.value.close()
    request = urllib.request.Request(url.group(1) + "metrics", headers={"Authorization": "Bearer s3cret"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert b'actorflow_flow_info{flow="ticker"} 1.0' in response.read()
    daemon.send(signal.SIGTERM)
    assert daemon.wait() == 0


# -- the progress line, on a clock of its own ------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_rates_come_from_the_last_seconds_and_the_eta_from_bytes() -> None:
    clock = FakeClock()
    state = {"records": 0, "bytes": 0}
    progress = Progress(
        "job",
        [
            lambda: Reading(state["records"]),
            lambda: Reading(None, ReadProgress(state["bytes"], 10_000_000, "B")),
        ],
        clock=clock,
    )
    # 10 s at 1,000 records and 100 kB a second, then 10 s at 4,000 and 400 kB.
    for second in range(1, 21):
        clock.now = 100.0 + second
        state["records"] += 1_000 if second <= 10 else 4_000
        state["bytes"] += 100_000 if second <= 10 else 400_000
        progress.sample()
    # The rate is over the last 5 s only; the ETA divides what is left by it: 5 MB at 400 kB/s.
    assert progress.line() == "job: 50,000 records, 4,000 rec/s, 50% of 10.0 MB, ETA 0:13"
    assert progress.summary("done") == "job: 50,000 records in 20.0 s (2,500 rec/s), done"


def test_progress_takes_the_eta_of_the_input_that_takes_longest() -> None:
    clock = FakeClock()
    state = {"file": 0, "list": 0}
    progress = Progress(
        "job",
        [
            lambda: Reading(state["file"] // 100 + state["list"]),
            lambda: Reading(None, ReadProgress(state["file"], 1_000_000, "B")),
            lambda: Reading(None, ReadProgress(state["list"], 20_000)),
        ],
        clock=clock,
    )
    for second in range(1, 6):  # the file: 100 kB/s, done in 10 s; the list: 1,000/s, in 20 s
        clock.now = 100.0 + second
        state["file"] += 100_000
        state["list"] += 1_000
        progress.sample()
    assert progress.line() == "job: 10,000 records, 2,000 rec/s, 25% of 20,000 records, ETA 0:15"


def test_every_source_must_know_its_size_for_an_eta(tmp_path: Path) -> None:
    data = tmp_path / "in.jsonl"
    data.write_text('{"n": 1}\n{"n": 2}\n')
    sized = Flow("sized")
    sized.from_json_lines(data).union(sized.from_iterable([1, 2, 3])).collect()
    readings = [probe() for probe in probes_of(sized)]
    assert [r.progress for r in readings] == [
        None,
        ReadProgress(0, data.stat().st_size, "B"),
        ReadProgress(0, 3),
    ]
    unbounded = Flow("unbounded")
    unbounded.from_json_lines(data).union(unbounded.from_iterable(iter([1, 2]))).collect()
    assert [probe().progress for probe in probes_of(unbounded)] == [None]  # records only


def test_progress_without_a_size_shows_no_share_and_draws_over_itself() -> None:
    clock = FakeClock()
    stream = io.StringIO()
    progress = Progress("job", [lambda: Reading(7)], stream, clock=clock)
    clock.now += 2
    progress.draw()
    progress.clear()
    clock.now += 1
    progress.finish("stopped with savepoint 3")
    assert stream.getvalue() == (
        "\rjob: 7 records, 4 rec/s\x1b[K"  # 7 records in the 2 s since the start
        "\r\x1b[K"
        "job: 7 records in 3.0 s (2 rec/s), stopped with savepoint 3\n"
    )


# -- log formatting, in process ---------------------------------------------------------------------


def test_log_lines_name_the_actor_task_they_come_from() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    handler = configure_logging("json", "info", "demo", stream)
    try:
        logger = logging.getLogger("test.daemon.logs")

        async def actor() -> None:
            logger.info("inside")

        async def main() -> None:
            logger.info("outside")
            await asyncio.get_running_loop().create_task(actor(), name="map -> print[2/3]")

        asyncio.run(main())
        set_job(handler, "renamed")
        logger.warning("after")
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        root.setLevel(saved[0])
        for old in saved[1]:
            root.addHandler(old)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["message"], line["job"], line["operator"]) for line in lines] == [
        ("outside", "demo", None),  # the main task is not an actor
        ("inside", "demo", "map -> print[2/3]"),
        ("after", "renamed", None),  # no event loop at all
    ]


# -- damaged checkpoints never strand a job (issue 12, items 13 and 14) ----------------------------


def _damage_max_parallelism(manifest: Path) -> None:
    document = json.loads(manifest.read_text())
    document["metadata"]["max_parallelism"] = 64  # still JSON, still a number: only the seal tells
    manifest.write_text(json.dumps(document))


def _truncate(manifest: Path) -> None:
    manifest.write_bytes(manifest.read_bytes()[:40])


@pytest.mark.parametrize("damage", [_damage_max_parallelism, _truncate], ids=["changed", "truncated"])
def test_a_damaged_newest_savepoint_is_skipped_kept_and_the_one_before_is_used(
    project: Path, daemons: list[Daemon], damage: Any
) -> None:
    args = ("flows.py:ticker", "--checkpoint-dir", "checkpoints")
    for _ in range(2):  # savepoints 1 and 2
        daemon = start(daemons, project, *args)
        daemon.wait_for("reading from")
        daemon.send(signal.SIGTERM)
        assert daemon.wait() == 0, "".join(daemon.stderr)
    newest = project / "checkpoints" / "sp-0000000002"
    damage(newest / "MANIFEST.json")
    damaged = (newest / "MANIFEST.json").read_bytes()

    third = start(daemons, project, *args)
    third.wait_for("started ticker (resumed from savepoint 1, parallelism 1)")
    third.send(signal.SIGTERM)
    assert third.wait() == 0, "".join(third.stderr)
    skipped = [line for line in third.stderr if "skipping savepoint 2: " in line]
    assert skipped and "(kept: delete it by hand)" in skipped[0], "".join(third.stderr)
    assert (newest / "MANIFEST.json").read_bytes() == damaged  # kept as it was, for a human to look at
    listed = actorflow(project, "checkpoints", "list", "--checkpoint-dir", "checkpoints")
    assert [line.split()[0] for line in listed.stdout.splitlines()[2:]] == ["1", "3"]


# -- the HTTP endpoint answers only to its own names (issue 12, item 12) ---------------------------


def _status(url: str, **headers: str) -> int:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.close()
        return int(error.code)


def test_the_daemons_http_endpoint_refuses_other_host_names(project: Path, daemons: list[Daemon]) -> None:
    daemon = start(
        daemons,
        project,
        "flows.py:ticker",
        "--http-port",
        "0",
        "--log-level",
        "info",
        env={"ACTORFLOW_HTTP_ALLOWED_HOSTS": "flow.internal, other.internal"},
    )
    found = re.search(r"dashboard of flow 'ticker' at (http://\S+/)", daemon.wait_for("dashboard of flow"))
    assert found is not None
    url = found.group(1)
    daemon.wait_for("reading from 0")
    assert _status(url + "metrics") == 200
    assert _status(url + "metrics", Host="rebound.attacker.example") == 403
    assert _status(url + "state/shout/1?type=int", Host="rebound.attacker.example") == 403
    assert _status(url + "metrics", Host="other.internal:8081") == 200
    assert _status(url + "healthz", Host="rebound.attacker.example") == 200
    daemon.send(signal.SIGTERM)
    assert daemon.wait() == 0  # no checkpoints: drained
