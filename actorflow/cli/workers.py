"""``actorflow run --workers N``: N worker processes of one flow on this machine, supervised.

Scale-out goes through Kafka: the workers of a flow join one consumer group, and Kafka shares the
partitions out among them. This module starts those processes and keeps them running.

- Worker ``i`` is ``python -m actorflow run ...`` with the supervisor's own arguments but
  ``--workers`` and ``--http-port``, and the environment variables ``ACTORFLOW_WORKER_INDEX``
  (``i``), ``ACTORFLOW_WORKERS`` (``N``) and, with an HTTP port ``P``, ``ACTORFLOW_HTTP_PORT``
  (``P + i``; ``0`` stays ``0``). The flow reads the first two with :func:`worker_index` and
  :func:`worker_count`. A process with ``ACTORFLOW_WORKER_INDEX`` set is a worker: it runs the flow
  itself, whatever ``workers`` says.
- Workers run in a session of their own (Ctrl-C reaches the supervisor only, which passes the stop
  on), with stdin from ``/dev/null``; on Linux they get SIGTERM if the supervisor dies. Their stdout
  and stderr reach the supervisor's whole lines at a time, so lines of two workers never mix.
- A worker that fails (an exit code other than 0 and 2, or a signal) is started again after a
  delay (:class:`Backoff`); one that exits 0 (its input ended) is done; one that exits 2 (bad usage:
  a restart would fail the same way) stops the others, and the supervisor exits 2 with the line the
  worker printed (``actorflow: ...``), once however many workers printed it.
- SIGTERM / SIGINT: SIGTERM to every worker (each takes its graceful stop); the supervisor waits for
  them. A second one kills them (SIGKILL) and exits at once, 143 / 130. SIGUSR1 is passed on to every
  worker (each takes a savepoint).

Exit codes, as for one process: 0 when every worker ended 0 (its input ended, or it stopped with its
final savepoint); 2 when a worker exited 2; 130 / 143 when stopped by SIGINT / SIGTERM and a worker
stopped without a savepoint (or was waiting to be restarted); 1 when a worker failed during the
stop, or a worker could not be started; 141 when stdout was closed early.

>>> worker_index(), worker_count()  # not a worker: the only one
(0, 1)
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import enum
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from actorflow.cli.config import Config
from actorflow.cli.errors import UsageError
from actorflow.cli.logs import configure_logging
from actorflow.cli.signals import DaemonSignals, exit_code

__all__ = [
    "COUNT_ENV",
    "INDEX_ENV",
    "Backoff",
    "Supervisor",
    "needs_supervisor",
    "supervise",
    "worker_arguments",
    "worker_count",
    "worker_index",
]

log = logging.getLogger("actorflow.workers")

INDEX_ENV = "ACTORFLOW_WORKER_INDEX"
COUNT_ENV = "ACTORFLOW_WORKERS"
PORT_ENV = "ACTORFLOW_HTTP_PORT"

#: The flags the supervisor sets per worker, taken out of the workers' arguments.
_PER_WORKER_FLAGS = ("--workers", "--http-port")
#: How ``actorflow`` begins the line it prints before exiting 2 (or on another error).
_ERROR_PREFIX = b"actorflow: "
#: Bytes read from a worker's pipe at a time; a line longer than this is passed on in pieces.
_CHUNK = 65536
#: How long the output of a worker that has exited may keep its pipes open (a child of its own).
_DRAIN_S = 5.0


def _number(variable: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"${variable} should be a whole number, not {text!r}") from None


def worker_index() -> int:
    """This process's index among the workers of its flow: 0 to :func:`worker_count` - 1.

    In a worker of ``actorflow run --workers N``, ``$ACTORFLOW_WORKER_INDEX``; in any other process
    (one ``actorflow run``, a script), 0. Raises :class:`ValueError` if the variable is not a number.
    """
    text = os.environ.get(INDEX_ENV, "")
    return _number(INDEX_ENV, text) if text else 0


def worker_count() -> int:
    """How many workers run this flow: ``N`` in a worker of ``actorflow run --workers N``
    (``$ACTORFLOW_WORKERS``), 1 in any other process. Raises :class:`ValueError` if not a number."""
    if not os.environ.get(INDEX_ENV):
        return 1
    return _number(COUNT_ENV, os.environ.get(COUNT_ENV, ""))


def needs_supervisor(config: Config) -> bool:
    """Whether ``actorflow run`` starts workers: more than one asked for, and this is not a worker."""
    return config.workers > 1 and not os.environ.get(INDEX_ENV)


def worker_arguments(argv: Sequence[str]) -> list[str]:
    """The command line of a worker: ``argv`` without the flags set per worker; what follows ``--``
    is the flow's and stays.

    >>> worker_arguments(["run", "--workers", "4", "f.py", "--http-port=8081", "--", "--workers", "x"])
    ['run', 'f.py', '--', '--workers', 'x']
    """
    kept: list[str] = []
    rest = iter(argv)
    for argument in rest:
        if argument == "--":
            kept += [argument, *rest]
        elif argument in _PER_WORKER_FLAGS:
            next(rest, None)  # its value
        elif argument.partition("=")[0] not in _PER_WORKER_FLAGS:
            kept.append(argument)
    return kept


def _ports(config: Config) -> list[int | None]:
    port, count = config.http_port, config.workers
    if port is None or port == 0:
        return [port] * count
    if port + count - 1 > 65535:
        raise UsageError(f"http_port {port} and {count} workers need ports up to {port + count - 1}")
    return [port + index for index in range(count)]


@dataclass
class Backoff:
    """The delays between the starts of a worker that keeps failing: ``initial`` seconds, doubled
    after each failure up to ``maximum``, and ``initial`` again once a run lasted ``healthy`` seconds.

    >>> backoff = Backoff()
    >>> [backoff.after(ran_for=0.5) for _ in range(7)], backoff.after(ran_for=90)
    ([1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0], 1.0)
    """

    initial: float = 1.0
    maximum: float = 30.0
    healthy: float = 60.0
    _next: float = field(default=0.0, init=False, repr=False)

    def after(self, ran_for: float) -> float:
        """The delay before the next start of a worker whose run ended after ``ran_for`` seconds."""
        if ran_for >= self.healthy or self._next == 0.0:
            self._next = self.initial
        delay = self._next
        self._next = min(delay * 2, self.maximum)
        return delay


class Outcome(enum.Enum):
    """How a worker ended for good."""

    DONE = "done"  # exit 0: its input ended, or it stopped with its final savepoint
    UNSAVED = "stopped without a savepoint"  # 130 / 143, or stopped while waiting to restart
    FAILED = "failed"
    BAD_USAGE = "bad usage"


@dataclass
class _Worker:
    index: int
    port: int | None
    process: asyncio.subprocess.Process | None = None
    #: A pidfd of ``process`` while it runs (Linux), the way :meth:`Supervisor._send` signals it.
    pidfd: int | None = None
    outcome: Outcome | None = None
    #: Its last stderr line while it starts with ``actorflow: ``: what it said before exiting.
    last_word: bytes | None = None


def _how(code: int) -> str:
    if code >= 0:
        return f"exited {code}"
    try:
        return f"died of {signal.Signals(-code).name}"
    except ValueError:  # a real-time signal has no name of its own
        return f"died of signal {-code}"


def _die_with(parent: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux for SIGTERM when ``parent`` (the supervisor) dies."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    pr_set_pdeathsig = 1

    def in_child() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() != parent:  # it died between the fork and here
            os._exit(exit_code(signal.SIGTERM))

    return in_child


def _pidfd(pid: int) -> int | None:
    """A pidfd of child ``pid`` (Linux 5.3+), or None where there are none or it has been reaped.

    A signal sent through it reaches that process or none: never one that got the pid after it."""
    if sys.platform != "linux":
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:  # reaped already (ProcessLookupError), or a kernel without pidfds
        return None


class Supervisor:
    """Keeps a worker ``command`` running per port in ``ports`` (None: no HTTP; see the module
    docstring); :meth:`run` returns the supervisor's exit code."""

    def __init__(
        self, command: Sequence[str], ports: Sequence[int | None], *, host: str = "127.0.0.1"
    ) -> None:
        self.command = list(command)
        self.host = host
        self._workers = [_Worker(index, port) for index, port in enumerate(ports)]
        self._stopping = asyncio.Event()
        self._signal: int | None = None
        #: The exit code the cause of a stop decides (bad usage, stdout closed, a worker not started).
        self._verdict: int | None = None
        self._stdout_closed = False
        self._said: set[bytes] = set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        log.info("starting %d workers: %s", len(self._workers), " ".join(self.command))
        with DaemonSignals(loop, self._on_stop_signal, self._on_savepoint_signal, exit_now=self._kill_now):
            await asyncio.gather(*(self._keep(worker) for worker in self._workers))
        code = self._exit_code()
        log.info("every worker has ended (%s); exit %d", self._summary(), code)
        return code

    async def _keep(self, worker: _Worker) -> None:
        loop = asyncio.get_running_loop()
        backoff = Backoff()
        while True:
            started = loop.time()
            try:
                code = await self._run_once(worker)
            except OSError as error:
                log.error("worker %d could not be started: %s", worker.index, error)
                worker.outcome = Outcome.FAILED
                self._stop(verdict=1)
                return
            pid = worker.process.pid if worker.process is not None else -1
            if self._stopping.is_set() or code in (0, 2):
                self._settle(worker, pid, code)
                return
            self._say(worker)
            delay = backoff.after(loop.time() - started)
            log.warning("worker %d (pid %d) %s; restarting in %g s", worker.index, pid, _how(code), delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                worker.outcome = Outcome.UNSAVED
                return

    async def _run_once(self, worker: _Worker) -> int:
        """Start ``worker``, pass its output on until it ends; its exit code (negative: a signal)."""
        environ = {**os.environ, INDEX_ENV: str(worker.index), COUNT_ENV: str(len(self._workers))}
        if worker.port is not None:
            environ[PORT_ENV] = str(worker.port)
        process = worker.process = await asyncio.create_subprocess_exec(
            *self.command,
            env=environ,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_die_with(os.getpid()),
        )
        worker.pidfd = _pidfd(process.pid)
        try:
            if self._stopping.is_set():  # the stop began while it was starting
                self._send(worker, signal.SIGTERM)
            where = ""
            if worker.port is not None:
                where = f"; HTTP on {self.host}:{worker.port}" if worker.port else "; HTTP on a free port"
            log.info("worker %d (pid %d) started%s", worker.index, process.pid, where)
            assert process.stdout is not None and process.stderr is not None
            pumps = asyncio.gather(
                self._pass_stdout(process.stdout), self._pass_stderr(process.stderr, worker)
            )
            code = await process.wait()
            try:
                await asyncio.wait_for(pumps, _DRAIN_S)
            except TimeoutError:
                log.warning(
                    "worker %d (pid %d) ended, but something still writes to its output",
                    worker.index,
                    process.pid,
                )
            return code
        finally:
            pidfd, worker.pidfd = worker.pidfd, None  # None before closed: see _kill_now
            if pidfd is not None:
                os.close(pidfd)

    def _settle(self, worker: _Worker, pid: int, code: int) -> None:
        """Record how ``worker`` ended for good (no restart). Its last line is printed once: workers
        stopped after a bad usage may have said the same before their end."""
        said = self._say(worker, once=True)
        if code == 2:
            worker.outcome = Outcome.BAD_USAGE
            stopping = "" if self._stopping.is_set() else "; stopping the others"
            level = logging.INFO if said else logging.ERROR
            log.log(level, "worker %d (pid %d) exited 2 (bad usage)%s", worker.index, pid, stopping)
            self._stop(verdict=2)
            return
        if code == 0:
            worker.outcome = Outcome.DONE
        elif code in (exit_code(signal.SIGTERM), exit_code(signal.SIGINT), -signal.SIGTERM, -signal.SIGINT):
            worker.outcome = Outcome.UNSAVED
        else:
            worker.outcome = Outcome.FAILED
        level = logging.INFO if worker.outcome is not Outcome.FAILED else logging.WARNING
        log.log(level, "worker %d (pid %d) %s", worker.index, pid, _how(code))

    def _say(self, worker: _Worker, *, once: bool = False) -> bool:
        """Print the worker's held-back last line, if it had one (with ``once``: unless the same line
        was printed already, as when every worker fails on the same typo); whether it had one."""
        line, worker.last_word = worker.last_word, None
        if line is None:
            return False
        if not (once and line in self._said):
            self._said.add(line)
            self._write(2, line)
        return True

    def _stop(self, verdict: int | None = None) -> None:
        if self._verdict is None:
            self._verdict = verdict
        if not self._stopping.is_set():
            self._stopping.set()
            self._signal_workers(signal.SIGTERM)

    def _on_stop_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        log.info("%s: stopping the workers (%s again kills them)", name, name)
        self._signal = signum
        self._stop()

    def _on_savepoint_signal(self) -> None:
        log.info("SIGUSR1: asking every worker for a savepoint")
        self._signal_workers(signal.SIGUSR1)

    def _signal_workers(self, signum: int) -> None:
        for worker in self._workers:
            self._send(worker, signum)

    @staticmethod
    def _send(worker: _Worker, signum: int) -> None:
        """Send ``signum`` to ``worker``'s process unless it is known to have ended.

        Not with ``Process.send_signal``: that polls the process first (``waitpid(pid, WNOHANG)``),
        which reaps a worker that has just exited before asyncio's child watcher does; the watcher
        then finds no child and reports exit code 255, and a worker that exited 2 (or 0) passes for
        a failed one. Here the process is left to the watcher: a signal to a process that has exited
        but is not yet reaped is harmless, and through a pidfd none can reach another process that
        got the pid after it was reaped."""
        process, pidfd = worker.process, worker.pidfd
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            if pidfd is not None and sys.platform == "linux":
                signal.pidfd_send_signal(pidfd, signum)
            else:
                os.kill(process.pid, signum)

    def _kill_now(self, code: int) -> None:
        """The second stop signal, in the signal handler: kill every worker, exit ``code``."""
        for worker in self._workers:
            self._send(worker, signal.SIGKILL)
        os._exit(code)

    def _exit_code(self) -> int:
        if self._verdict is not None:
            return self._verdict
        outcomes = {worker.outcome for worker in self._workers}
        if Outcome.FAILED in outcomes:
            return 1
        if Outcome.UNSAVED in outcomes:
            return exit_code(self._signal) if self._signal is not None else 1
        return 0

    def _summary(self) -> str:
        counts: dict[str, int] = {}
        for worker in self._workers:
            name = worker.outcome.value if worker.outcome is not None else "unknown"
            counts[name] = counts.get(name, 0) + 1
        return ", ".join(f"{count} {name}" for name, count in counts.items())

    # Output: whole lines, so that lines of two workers never mix.

    def _write(self, fd: int, data: bytes) -> None:
        if fd == 1 and self._stdout_closed:
            return
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except BrokenPipeError:
            if fd == 1:  # ``actorflow run ... | head``: stop, as one process would
                self._stdout_closed = True
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                os.close(devnull)
                log.info("stdout was closed: stopping the workers")
                self._stop(verdict=141)

    async def _pass_stdout(self, stream: asyncio.StreamReader) -> None:
        pending = b""
        while chunk := await stream.read(_CHUNK):
            pending += chunk
            cut = pending.rfind(b"\n") + 1 or (len(pending) if len(pending) >= _CHUNK else 0)
            if cut:
                self._write(1, pending[:cut])
                pending = pending[cut:]
        if pending:
            self._write(1, pending)

    async def _pass_stderr(self, stream: asyncio.StreamReader, worker: _Worker) -> None:
        """Pass stderr on line by line, holding back a line ``actorflow: ...`` until the next one: if
        it is the last (the worker exits 2 after it), :meth:`_settle` decides whether to print it.

        A last line without its end of line is a line all the same: ``print()`` writes the end of
        line on its own, and a worker stopped between the two writes (the others are stopped when
        one exits 2) leaves ``actorflow: ...`` without it, to be printed once like the others."""
        worker.last_word = None
        pending = b""
        while True:
            chunk = await stream.read(_CHUNK)
            if not chunk:  # the end: what is left is its last line
                if not pending:
                    break
                chunk = b"\n"
            *lines, pending = (pending + chunk).split(b"\n")
            out: list[bytes] = []
            for line in lines:
                if worker.last_word is not None:
                    out.append(worker.last_word)
                    worker.last_word = None
                if line.startswith(_ERROR_PREFIX):
                    worker.last_word = line + b"\n"
                else:
                    out.append(line + b"\n")
            if len(pending) >= _CHUNK:  # no end of line in sight (a progress line rewritten with \r)
                if worker.last_word is not None:
                    out.append(worker.last_word)
                    worker.last_word = None
                out.append(pending)
                pending = b""
            self._write(2, b"".join(out))


def supervise(argv: Sequence[str], config: Config) -> int:
    """``actorflow run`` with ``config.workers`` workers: runs them until they have ended; returns
    the exit code. ``argv`` is the supervisor's command line (``run ...``); raises
    :class:`UsageError` if the HTTP ports would run past 65535."""
    ports = _ports(config)
    configure_logging(config.log_format, config.log_level, None)
    command = [sys.executable, "-m", "actorflow", *worker_arguments(argv)]
    supervisor = Supervisor(command, ports, host=config.http_host)
    return asyncio.run(supervisor.run())
