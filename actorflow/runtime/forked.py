"""Pickling objects in a forked child, so the event loop does not wait for it.

A checkpoint needs a consistent copy of an operator's state, taken between two batches. Pickling a
heap of ten million entries takes about eleven seconds; ``os.fork()`` of such a process takes
20-30 ms, and the child's memory *is* that consistent copy, for free (copy-on-write: a page is
copied only when the parent or the child writes to it), as Redis's ``BGSAVE`` does. So
:func:`pickle_in_child` forks, the child pickles the objects straight into pipes and exits, and the
parent goes on at once; a worker thread reads the pipes and reaps the child, and the futures it
returns resolve with the bytes, exactly ``pickle.dumps(obj, protocol=5)`` of each object as it was
at the fork, whatever the parent changes afterwards.

>>> import asyncio
>>> async def demo():
...     state = {"a": [1, 2]}
...     part = start_pickling(state, label="counts/0")
...     state["a"].append(3)  # after the fork: not in the copy
...     return pickle.loads(await part)
>>> asyncio.run(demo())
{'a': [1, 2]}

**The child** only pickles and writes: it ignores SIGINT (Ctrl-C goes to the whole process group
and the parent handles it), takes SIGTERM's default action, never writes into the parent's asyncio
wake-up fd (``signal.set_wakeup_fd(-1)``), runs no collector, takes no lock the parent's other
threads may have held, logs nothing, and leaves with ``os._exit`` (no ``atexit``, no finalisers,
no buffered output of the parent's flushed twice). On Linux it asks for SIGKILL when the parent
dies (``PR_SET_PDEATHSIG``; elsewhere a write into a pipe nobody reads fails and ends it), so a
parent killed with SIGKILL leaves no child behind. An exception while pickling (an object that
cannot be pickled) comes back as a one-line message on a status pipe; every future then fails with
:class:`~actorflow.errors.CheckpointError` naming the object's label. Cancelling a future kills the
child (SIGKILL); the reader thread reaps it in every case, so no zombie remains.

**The collector.** The parent runs a young collection and calls ``gc.freeze()`` before forking:
while a child runs, a collection in the parent would write to the header of every old object and
so copy every page of the state. The objects stay frozen after the child ends, until :func:`thaw`
(a flow's run calls it when it ends): unfreezing 10 million keys' objects after every checkpoint
cost a 650 ms full collection right after the child, more than the fork. The price: cyclic garbage
that was already old at a fork waits for :func:`thaw` (garbage without cycles goes at once, by
reference counting, frozen or not). An object pickled must not be changed by a ``__reduce__`` that
takes locks or does I/O: the child runs one thread.

Where ``os.fork`` does not exist (Windows), :func:`can_fork` is False and callers pickle inline.
``ACTORFLOW_SNAPSHOT_FORK`` set to ``off`` makes :func:`can_fork` False everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from actorflow.errors import CheckpointError

__all__ = [
    "PROTOCOL",
    "ChildPickling",
    "can_fork",
    "freeze",
    "pickle_in_child",
    "reaped",
    "start_pickling",
    "thaw",
]

#: The pickle protocol of the parts (the same bytes as ``pickle.dumps(obj, PROTOCOL)``).
PROTOCOL = 5
#: The environment variable that turns forking off (``off``) for the whole process.
FORK_ENV = "ACTORFLOW_SNAPSHOT_FORK"
#: Bytes the child hands the kernel per write, and the pipe's size it asks for (Linux).
_CHUNK = 1 << 20
#: Exit statuses of the child (the parent trusts the status pipe, not these: someone else may reap).
_FAILED = 70

# Read ends of pipes whose child still runs: a child forked meanwhile closes them, so that a
# parent's death reaches every child through its pipe, not only through PR_SET_PDEATHSIG.
_open_read_ends: set[int] = set()
_children = 0  # children not yet reaped
_froze = False  # whether gc.freeze() was called since the last thaw()
_thaw_when_reaped = False  # thaw() was called while children ran
_children_lock = threading.Lock()
# The collecting tasks, referenced until done (the event loop keeps only weak references).
_running: set[asyncio.Future[None]] = set()


def can_fork() -> bool:
    """Whether :func:`pickle_in_child` may fork here: ``os.fork`` exists (POSIX) and
    ``$ACTORFLOW_SNAPSHOT_FORK`` is not ``off``."""
    return hasattr(os, "fork") and os.environ.get(FORK_ENV, "").lower() != "off"


@dataclass(eq=False)
class ChildPickling:
    """One child pickling several objects: ``parts[i]`` resolves with the pickle of object ``i``.

    ``durations_ms[i]`` is how long the child took to pickle object ``i`` (filled in before the
    parts resolve, for callers that choose between pickling inline and forking by it);
    ``fork_ms`` is how long ``os.fork()`` held the caller.
    """

    pid: int
    labels: list[str]
    parts: list[asyncio.Future[bytes]]
    fork_ms: float
    durations_ms: list[float] = field(default_factory=list)
    _reaped: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def kill(self) -> None:
        """End the child now (SIGKILL) unless it was reaped; every unresolved part is cancelled."""
        with self._lock:
            if not self._reaped:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
        for part in self.parts:
            part.cancel()


def start_pickling(obj: Any, *, label: str = "object") -> asyncio.Future[bytes]:
    """Pickle ``obj`` in a forked child; the future resolves with ``pickle.dumps(obj, protocol=5)``
    as ``obj`` was now. Must be called on a running event loop; see :func:`pickle_in_child`.

    >>> import asyncio
    >>> async def demo():
    ...     return await start_pickling([1, 2, 3], label="numbers")
    >>> asyncio.run(demo()) == pickle.dumps([1, 2, 3], protocol=5)
    True
    """
    return pickle_in_child([(label, obj)]).parts[0]


def pickle_in_child(objects: Sequence[tuple[str, Any]]) -> ChildPickling:
    """Fork once and pickle every ``(label, object)`` of ``objects`` in the child, each into a
    pipe of its own; return at once (after the fork).

    The parts resolve in order, each with exactly ``pickle.dumps(object, protocol=5)`` of the object
    as it was at the fork. If the child fails (an object cannot be pickled, the child is killed),
    every part fails with :class:`~actorflow.errors.CheckpointError` whose message names the
    label of the object that failed. Raises :class:`RuntimeError` without a running event loop,
    and OSError if the fork itself fails (no memory for the page tables, too many processes).

    >>> import asyncio
    >>> async def demo():
    ...     pickling = pickle_in_child([("a/0", {"x": 1}), ("b/0", "text")])
    ...     return [pickle.loads(data) for data in await asyncio.gather(*pickling.parts)]
    >>> asyncio.run(demo())
    [{'x': 1}, 'text']
    """
    loop = asyncio.get_running_loop()
    labels = [label for label, _ in objects]
    pipes: list[tuple[int, int]] = []
    try:
        for _ in range(len(objects) + 1):  # the last one carries the status line
            pipes.append(_pipe())
    except OSError:  # out of file descriptors
        _close(pipes)
        raise
    global _children, _froze
    with _children_lock:
        gc.collect(1)  # young garbage cycles go now, not frozen (the young generations are small)
        gc.freeze()  # O(1): the collector's generations move to the permanent one
        _froze = True
        _children += 1
    parent = os.getpid()
    started = time.perf_counter()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        pid = os.fork()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        _close(pipes)
        _child_ended()
        raise
    if pid == 0:  # the child: never returns
        _child(parent, [obj for _, obj in objects], pipes, blocked)
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    fork_ms = (time.perf_counter() - started) * 1000
    for read_end, write_end in pipes:
        os.close(write_end)
        _open_read_ends.add(read_end)
    pickling = ChildPickling(pid, labels, [loop.create_future() for _ in objects], fork_ms)
    for part in pickling.parts:
        part.add_done_callback(_kill_if_cancelled(pickling))
    _spawn(_collect(pickling, [read_end for read_end, _ in pipes]))
    return pickling


def _spawn(work: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(work)
    _running.add(task)
    task.add_done_callback(_running.discard)


async def reaped() -> None:
    """Wait until every child forked so far from this event loop has ended and been reaped (its
    pipes read, its parts resolved, failed or cancelled).

    >>> import asyncio
    >>> async def demo():
    ...     part = start_pickling("x")
    ...     part.cancel()  # kills the child
    ...     await reaped()
    ...     return part.cancelled()
    >>> asyncio.run(demo())
    True
    """
    loop = asyncio.get_running_loop()
    while mine := [task for task in _running if task.get_loop() is loop]:
        await asyncio.wait(mine)


def _close(pipes: list[tuple[int, int]]) -> None:
    for read_end, write_end in pipes:
        os.close(read_end)
        os.close(write_end)


def _pipe() -> tuple[int, int]:
    read_end, write_end = os.pipe()  # not inheritable: a subprocess started meanwhile gets neither
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):  # fewer wake-ups for large parts
            import fcntl

            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, _CHUNK)
    return read_end, write_end


def _kill_if_cancelled(pickling: ChildPickling) -> Callable[[asyncio.Future[bytes]], None]:
    def check(part: asyncio.Future[bytes]) -> None:
        if part.cancelled():
            pickling.kill()

    return check


def _child_ended() -> None:
    global _children, _thaw_when_reaped
    with _children_lock:
        _children -= 1
        if _children == 0 and _thaw_when_reaped:
            _thaw_when_reaped = False
            _unfreeze()


def _unfreeze() -> None:
    global _froze
    if _froze:
        _froze = False
        gc.unfreeze()


def freeze() -> None:
    """Move every object alive now out of the collector's sight until :func:`thaw`: a flow's
    run calls it once an attempt's actors exist. The interpreter's modules and classes, the plan,
    the operators and the mailboxes are tens of thousands of objects that every full collection
    walked, and none of them becomes garbage while the attempt runs.

    >>> freeze(); thaw()
    """
    global _froze
    with _children_lock:
        gc.freeze()
        _froze = True


def thaw() -> None:
    """Give the objects frozen for forked snapshots back to the collector (now, or when the
    children still running have ended), so cyclic garbage among them is collected again: called
    when a flow's run ends, and when an attempt fails (its actors are garbage then).

    >>> thaw()
    >>> gc.get_freeze_count() == 0 or _children > 0
    True
    """
    global _thaw_when_reaped
    with _children_lock:
        if _children:
            _thaw_when_reaped = True
        else:
            _unfreeze()


async def _collect(pickling: ChildPickling, read_ends: list[int]) -> None:
    """Read the child's pipes and reap it in a worker thread, then resolve the parts."""
    reading = asyncio.ensure_future(asyncio.to_thread(_read_and_reap, pickling, read_ends))
    try:
        datas, status, exit_status = await asyncio.shield(reading)
    except asyncio.CancelledError:  # the loop is closing: end the child; the thread reaps it
        pickling.kill()
        raise
    finally:
        _child_ended()
    error = _failure(pickling, status, exit_status)
    if error is None and len(datas) == len(pickling.parts):
        for part, data in zip(pickling.parts, datas, strict=True):
            if not part.done():
                part.set_result(data)
        return
    for part in pickling.parts:
        if not part.done():
            part.set_exception(CheckpointError(error or "the pickling child sent too few parts"))


def _read_and_reap(pickling: ChildPickling, read_ends: list[int]) -> tuple[list[bytes], bytes, int | None]:
    """In a worker thread: every part's bytes (until a pipe is cut short), the status line, and the
    child's exit status (None when someone else reaped it)."""
    datas: list[bytes] = []
    try:
        for read_end in read_ends[:-1]:
            with io.FileIO(read_end, "rb", closefd=False) as pipe:
                datas.append(pipe.readall())
        with io.FileIO(read_ends[-1], "rb", closefd=False) as pipe:
            status = pipe.readall()
    finally:
        for read_end in read_ends:
            _open_read_ends.discard(read_end)
            os.close(read_end)
        with pickling._lock:
            exit_status: int | None
            try:
                _, exit_status = os.waitpid(pickling.pid, 0)
            except ChildProcessError:  # reaped by someone else (a waitpid(-1) child watcher)
                exit_status = None
            pickling._reaped = True
    if status.startswith(b"ok "):
        with contextlib.suppress(ValueError):
            pickling.durations_ms = [float(ms) for ms in status[3:].split()]
    return datas, status, exit_status


def _failure(pickling: ChildPickling, status: bytes, exit_status: int | None) -> str | None:
    """The error message for a child that did not pickle everything, or None if it did."""
    if status.startswith(b"ok "):
        return None
    if status.startswith(b"error "):
        index_text, _, reason = status[6:].decode("utf-8", "replace").strip().partition(" ")
        try:
            label = pickling.labels[int(index_text)]
        except (ValueError, IndexError):
            label = "?"
        return f"cannot pickle the state of {label} (in a forked child): {reason}"
    if exit_status is not None and os.WIFSIGNALED(exit_status):
        how = f"was killed by signal {signal.Signals(os.WTERMSIG(exit_status)).name}"
    elif exit_status is not None and os.WIFEXITED(exit_status):
        how = f"exited with status {os.WEXITSTATUS(exit_status)}"
    else:
        how = "ended"
    labels = ", ".join(pickling.labels)
    return f"the child pickling the state of {labels} {how} before it finished"


def _child(parent: int, objects: list[Any], pipes: list[tuple[int, int]], blocked: set[Any]) -> None:
    """The forked child: pickle ``objects`` into their pipes, report on the last one, exit."""
    code = _FAILED
    status_fd = pipes[-1][1]
    index = -1
    try:
        gc.disable()
        with contextlib.suppress(ValueError):  # not the main thread: then it had no wake-up fd
            signal.set_wakeup_fd(-1)
        with contextlib.suppress(ValueError, OSError):
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _die_with_parent()
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        if os.getppid() != parent:
            os._exit(code)  # the parent died before the death signal was asked for
        for read_end in [*_open_read_ends, *(read_end for read_end, _ in pipes)]:
            with contextlib.suppress(OSError):
                os.close(read_end)
        durations = []
        for index, obj in enumerate(objects):
            started = time.perf_counter()
            with open(pipes[index][1], "wb", buffering=_CHUNK) as pipe:
                pickle.Pickler(pipe, protocol=PROTOCOL).dump(obj)
            durations.append(f"{(time.perf_counter() - started) * 1000:.3f}")
        index = -1
        os.write(status_fd, b"ok " + " ".join(durations).encode() + b"\n")
        code = 0
    except BaseException as error:
        with contextlib.suppress(BaseException):
            reason = " ".join(f"{type(error).__name__}: {error}".split())[:500]
            os.write(status_fd, f"error {index} {reason}\n".encode("utf-8", "replace"))
    finally:
        os._exit(code)


def _die_with_parent() -> None:
    """Linux: be sent SIGKILL when the parent (the thread that forked) ends."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


_PR_SET_PDEATHSIG = 1
_prctl: Callable[..., int] | None = None
if sys.platform == "linux":  # loaded here, in the parent: the child loads nothing
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        _prctl = ctypes.CDLL(None, use_errno=True).prctl
