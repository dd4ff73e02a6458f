"""``actorflow run --workers N``: a supervisor of N worker processes of one flow.

The supervisor and its workers are real subprocesses. Tests wait for what they print (a line on the
supervisor's stderr, where the workers' lines arrive too) with a deadline, never for a fixed time;
the fixture kills whatever still runs at the end.
"""

from __future__ import annotations

import ast
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from actorflow.cli.config import resolve
from actorflow.cli.main import main
from actorflow.cli.show_config import render_toml
from actorflow.cli.workers import needs_supervisor, worker_arguments, worker_count, worker_index

ROOT = Path(__file__).resolve().parent.parent
DEADLINE_S = 30.0

FLOWS = textwrap.dedent(
    """
    import asyncio
    import os
    import sys

    from actorflow import Flow
    from actorflow.cli.errors import UsageError
    from actorflow.cli.workers import worker_count, worker_index
    from actorflow.operators.sources import Source


    class Forever(Source):
        '''Runs until stopped; says on stderr which worker reads it.'''

        async def read(self, context):
            print(
                f"reading: worker {worker_index()} of {worker_count()}, pid {os.getpid()}",
                file=sys.stderr,
                flush=True,
            )
            while True:
                yield [1]
                await asyncio.sleep(0.01)


    def forever():
        flow = Flow("forever")
        flow.from_source(Forever(), name="forever").sink_to_callback(lambda n: None, name="drop")
        return flow


    def printing():
        flow = Flow("printing")
        flow.from_source(Forever(), name="forever").print()
        return flow


    def saving():
        '''Each worker checkpoints into a directory of its own.'''
        return forever().enable_checkpointing(f"state-{worker_index()}")


    async def hang(n):
        print(f"hanging: pid {os.getpid()}", file=sys.stderr, flush=True)
        await asyncio.Event().wait()  # never set: no savepoint passes this sink


    def stuck():
        flow = Flow("stuck")
        flow.from_source(Forever(), name="forever").sink_to_callback(hang, name="hang")
        return flow.enable_checkpointing(f"state-{worker_index()}")


    def bounded():
        seen = (
            worker_index(),
            worker_count(),
            os.environ.get("ACTORFLOW_WORKER_INDEX"),
            os.environ.get("ACTORFLOW_WORKERS"),
            os.getpid(),
        )
        flow = Flow("bounded")
        flow.from_iterable([seen]).print()
        return flow


    def refusing():
        if worker_index() == 1:
            raise UsageError("worker 1 refuses")
        return forever()
    """
)


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment with ``extra``, and this checkout first on the path: the command under test
    is this tree's, whatever another checkout installed meanwhile."""
    path = os.pathsep.join(part for part in (str(ROOT), os.environ.get("PYTHONPATH")) if part)
    return {**os.environ, "PYTHONPATH": path, **(extra or {})}


def actorflow(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "actorflow", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
        env=environment(),
    )


class Supervisor:
    """An ``actorflow run --workers N`` subprocess whose stderr lines can be waited for."""

    def __init__(self, *args: str, cwd: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "actorflow", "run", *args],
            cwd=cwd,
            env=environment(),
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

    def wait_for(self, pattern: str) -> re.Match[str]:
        """The next stderr line matching ``pattern``; fails if the process ends first."""
        deadline = time.monotonic() + DEADLINE_S
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no line matching {pattern!r} in time; stderr:\n{''.join(self.stderr)}")
            if line is None:
                pytest.fail(f"ended before a line matching {pattern!r}; stderr:\n{''.join(self.stderr)}")
            found = re.search(pattern, line)
            if found:
                return found

    def readers(self, count: int) -> dict[int, int]:
        """The pid of each of ``count`` workers, once each has said it reads."""
        pids: dict[int, int] = {}
        while len(pids) < count:
            found = self.wait_for(rf"reading: worker (\d+) of {count}, pid (\d+)")
            pids[int(found[1])] = int(found[2])
        return pids

    def send(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self) -> int:
        code = self.process.wait(timeout=DEADLINE_S)
        self._reader.join(timeout=5)
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._reader.join(timeout=5)
        assert self.process.stderr is not None
        self.process.stderr.close()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "flows.py").write_text(FLOWS)
    return tmp_path


@pytest.fixture
def supervisors(project: Path) -> Iterator[Callable[..., Supervisor]]:
    started: list[Supervisor] = []

    def start(*args: str) -> Supervisor:
        supervisor = Supervisor(*args, cwd=project)
        started.append(supervisor)
        return supervisor

    yield start
    for supervisor in started:
        supervisor.close()  # a killed supervisor's workers get SIGTERM from the kernel (Linux)


def running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not: nobody may be there to reap an orphan)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def all_gone(pids: Iterable[int]) -> bool:
    """Whether every one of ``pids`` has ended, waiting for it up to the deadline."""
    waiting = list(pids)
    deadline = time.monotonic() + DEADLINE_S
    while any(running(pid) for pid in waiting):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_each_worker_gets_its_own_index_and_a_bounded_flow_ends_with_exit_0(project: Path) -> None:
    done = actorflow(project, "run", "--workers", "3", "flows.py:bounded")
    assert done.returncode == 0, done.stderr
    seen = sorted(ast.literal_eval(line) for line in done.stdout.splitlines())
    assert [entry[:4] for entry in seen] == [(i, 3, str(i), "3") for i in range(3)]
    assert len({entry[4] for entry in seen}) == 3  # three processes
    # A healthy run says only its life cycle at the default log level: each worker its start and end.
    lines = [line.partition(" actorflow.daemon: ")[2] for line in done.stderr.splitlines()]
    assert (
        sorted(lines)
        == ["bounded done: 1 record read"] * 3 + ["started bounded (no checkpoints, parallelism 1)"] * 3
    ), done.stderr


def test_workers_can_be_asked_for_by_the_environment_and_auto_is_one_per_core(project: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "actorflow", "run", "flows.py:bounded"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
        env=environment({"ACTORFLOW_WORKERS": "2"}),
    )
    assert done.returncode == 0, done.stderr
    assert sorted(ast.literal_eval(line)[:2] for line in done.stdout.splitlines()) == [(0, 2), (1, 2)]
    assert resolve({"workers": "auto"}, {}).workers == (os.cpu_count() or 1)


def test_one_worker_runs_the_flow_in_this_process(project: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "actorflow", "run", "--workers", "1", "flows.py:bounded"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    out, err = process.communicate(timeout=DEADLINE_S)
    assert process.returncode == 0, err
    assert ast.literal_eval(out) == (0, 1, None, None, process.pid)  # no supervisor: no variables, same pid


def test_a_worker_killed_is_restarted_and_sigint_stops_them_all(
    supervisors: Callable[..., Supervisor],
) -> None:
    supervisor = supervisors("--workers", "2", "flows.py:forever")
    pids = supervisor.readers(2)
    os.kill(pids[1], signal.SIGKILL)
    supervisor.wait_for(rf"worker 1 \(pid {pids[1]}\) died of SIGKILL; restarting in 1 s")
    again = int(supervisor.wait_for(r"reading: worker 1 of 2, pid (\d+)")[1])
    assert again != pids[1]
    assert running(pids[0])  # the other one was left alone
    supervisor.send(signal.SIGINT)
    assert supervisor.wait() == 0, "".join(supervisor.stderr)  # without checkpoints: each drains
    assert all_gone([pids[0], again])


def test_sigusr1_takes_a_savepoint_in_each_worker_and_sigterm_stops_them_with_one_exit_0(
    project: Path, supervisors: Callable[..., Supervisor]
) -> None:
    supervisor = supervisors("--workers", "2", "--log-level", "info", "flows.py:saving")
    pids = supervisor.readers(2)
    supervisor.send(signal.SIGUSR1)
    for _ in pids:
        supervisor.wait_for(r"job 'forever': savepoint \d+ written")
    supervisor.send(signal.SIGTERM)
    assert supervisor.wait() == 0, "".join(supervisor.stderr)
    assert all_gone(pids.values())
    for index in range(2):  # the one asked for, and the final one
        assert len(list((project / f"state-{index}").glob("sp-*/MANIFEST.json"))) == 2, index


def test_a_second_signal_kills_the_workers_at_once(supervisors: Callable[..., Supervisor]) -> None:
    supervisor = supervisors("--workers", "2", "--log-level", "info", "flows.py:stuck")
    pids = [int(supervisor.wait_for(r"hanging: pid (\d+)")[1]) for _ in range(2)]
    supervisor.send(signal.SIGTERM)
    supervisor.wait_for(r"SIGTERM: stopping the workers")
    for _ in pids:
        supervisor.wait_for(r"with a final savepoint")  # which cannot pass the hanging sink
    supervisor.send(signal.SIGTERM)
    assert supervisor.wait() == 143
    assert all_gone(pids)


def test_a_worker_exiting_2_stops_the_others_and_the_supervisor_exits_2(
    supervisors: Callable[..., Supervisor],
) -> None:
    supervisor = supervisors("--workers", "2", "--log-level", "info", "flows.py:refusing")
    pids = [int(supervisor.wait_for(rf"worker {i} \(pid (\d+)\) started")[1]) for i in range(2)]
    assert supervisor.wait() == 2
    assert "".join(supervisor.stderr).count("actorflow: worker 1 refuses\n") == 1
    assert all_gone(pids)


def test_bad_usage_in_every_worker_prints_its_one_line(project: Path) -> None:
    done = actorflow(project, "run", "--workers", "3", "missing.py")
    assert done.returncode == 2
    assert done.stderr == "actorflow: no such file: missing.py\n"


def test_stdout_closed_early_stops_the_workers_with_141(project: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "actorflow", "run", "--workers", "2", "flows.py:printing"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment(),
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline() == b"1\n"
    process.stdout.close()  # as ``| head -1`` does
    assert process.wait(timeout=DEADLINE_S) == 141
    assert b"Traceback" not in process.stderr.read()
    process.stderr.close()


def test_killing_the_supervisor_stops_its_workers(supervisors: Callable[..., Supervisor]) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("workers learn of their supervisor's death from Linux (PR_SET_PDEATHSIG)")
    supervisor = supervisors("--workers", "2", "flows.py:forever")
    pids = supervisor.readers(2)
    supervisor.send(signal.SIGKILL)
    supervisor.wait()
    assert all_gone(pids.values())


def free_ports(count: int) -> int:
    """A port P such that P to P + count - 1 are free (as far as one can tell before using them)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = int(probe.getsockname()[1])
        if first + count > 65536:
            continue
        try:
            for port in range(first, first + count):
                with socket.socket() as taken:
                    taken.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    pytest.fail("no run of free ports")


def test_worker_i_serves_http_on_port_p_plus_i(supervisors: Callable[..., Supervisor]) -> None:
    pytest.importorskip("aiohttp")
    port = free_ports(2)
    supervisor = supervisors(
        "--workers", "2", "--http-port", str(port), "--log-level", "info", "flows.py:forever"
    )
    for index in range(2):
        supervisor.wait_for(rf"worker {index} \(pid \d+\) started; HTTP on 127.0.0.1:{port + index}")
    for _ in range(2):
        supervisor.wait_for(r"dashboard of flow 'forever' at")
    for index in range(2):
        with urllib.request.urlopen(f"http://127.0.0.1:{port + index}/metrics", timeout=10) as answer:
            assert b"actorflow_flow_info" in answer.read()
    supervisor.send(signal.SIGTERM)
    assert supervisor.wait() == 0  # no checkpoints: each worker drains


def test_http_ports_past_65535_are_bad_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--workers", "3", "--http-port", "65534", "flows.py"]) == 2
    assert "http_port 65534 and 3 workers need ports up to 65536" in capsys.readouterr().err


def test_the_worker_index_and_count_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACTORFLOW_WORKER_INDEX", raising=False)
    monkeypatch.setenv("ACTORFLOW_WORKERS", "4")  # asked for, but this process is no worker
    assert (worker_index(), worker_count()) == (0, 1)
    assert needs_supervisor(resolve({}, os.environ))
    monkeypatch.setenv("ACTORFLOW_WORKER_INDEX", "2")
    assert (worker_index(), worker_count()) == (2, 4)
    assert not needs_supervisor(resolve({}, os.environ))  # a worker runs its flow itself
    monkeypatch.setenv("ACTORFLOW_WORKER_INDEX", "two")
    with pytest.raises(ValueError, match=r"\$ACTORFLOW_WORKER_INDEX should be a whole number"):
        worker_index()


def test_workers_is_a_setting_like_the_others(tmp_path: Path) -> None:
    config_file = tmp_path / "actorflow.toml"
    config_file.write_text('workers = "auto"\n')
    config = resolve({"config": str(config_file)}, {})
    assert config.workers == (os.cpu_count() or 1)
    assert f"workers = {config.workers}  # file {config_file}" in render_toml(config)
    assert "workers = 1  # default" in render_toml(resolve({}, {}))
    with pytest.raises(Exception, match=r"workers \(env ACTORFLOW_WORKERS\): expected at least 1"):
        resolve({}, {"ACTORFLOW_WORKERS": "0"})


def test_a_workers_command_line_keeps_all_but_the_per_worker_flags() -> None:
    argv = ["run", "-p", "2", "--workers=auto", "flow.py", "--http-port", "80", "--limit", "9"]
    assert worker_arguments([*argv, "--", "--workers", "3"]) == [
        "run",
        "-p",
        "2",
        "flow.py",
        "--limit",
        "9",
        "--",
        "--workers",
        "3",
    ]
