"""Deleting a state's directory without holding the event loop.

A closed RocksDB store leaves a directory of SST files behind, gigabytes for millions of keys;
``shutil.rmtree`` of it held the event loop 72-83 ms at 10 million keys (docs/benchmarks.md).
:func:`remove_later` renames the directory at once (one system call: the path is free as soon as
it returns, so nothing sees a half-deleted store) and deletes the renamed one in a worker thread,
which the interpreter waits for when it exits (the thread is not a daemon; once the interpreter is
exiting, finalizers included, the deletion happens at once, in the caller). A process killed
meanwhile leaves the renamed directory, whose name still carries its process id, for
:func:`~actorflow.state.rocksdb.sweep_stale` to find.

>>> import os, tempfile
>>> path = tempfile.mkdtemp()
>>> open(os.path.join(path, "data"), "w").close()
>>> remove_later(path)
>>> os.path.exists(path)
False
>>> wait_removed()
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import uuid
from typing import Final

__all__ = ["SUFFIX", "remove_later", "removed", "wait_removed"]

#: Appended to a directory's name while a worker thread deletes it.
SUFFIX: Final = ".removing"

_lock = threading.Lock()
_pending: list[str] = []
_worker: threading.Thread | None = None
_idle = threading.Condition(_lock)


def remove_later(path: str) -> None:
    """Take the directory ``path`` away now and delete it in a worker thread (nothing happens if
    it does not exist). Use it where a loop must not wait for a large directory's deletion."""
    if not threading.main_thread().is_alive():  # the interpreter exits: no thread would be waited for
        shutil.rmtree(path, ignore_errors=True)
        return
    renamed = f"{path}-{uuid.uuid4().hex[:8]}{SUFFIX}"
    try:
        os.rename(path, renamed)
    except FileNotFoundError:
        return
    except OSError:  # another file system, or a name taken: delete in place, later all the same
        renamed = path
    global _worker
    with _lock:
        _pending.append(renamed)
        if _worker is None:
            _worker = threading.Thread(target=_remove_pending, name="actorflow-remove", daemon=False)
            _worker.start()


def wait_removed() -> None:
    """Block until every directory handed to :func:`remove_later` is deleted."""
    with _idle:
        _idle.wait_for(lambda: _worker is None)


async def removed() -> None:
    """Wait, without holding the event loop, until every directory handed to :func:`remove_later`
    is deleted (a flow's run does before it returns, so its state's files are gone by then).

    >>> asyncio.run(removed())
    """
    if _worker is not None:
        await asyncio.to_thread(wait_removed)


def _remove_pending() -> None:
    global _worker
    while True:
        with _lock:
            if not _pending:
                _worker = None
                _idle.notify_all()
                return
            path = _pending.pop()
        shutil.rmtree(path, ignore_errors=True)
