"""Incremental checkpoints of keyed state on the heap: a whole base, then only the keys changed.

On the heap a checkpoint pickles an operator's whole state (in a forked child once it is large,
:mod:`actorflow.runtime.forked`), so a checkpoint after 1 % of ten million keys changed writes all
ten million again. With ``flow.set_state_backend("heap", incremental=True)`` a keyed process
operator notes the keys its records and timers touch (as a Kafka partition task does for its
changelog), and each checkpoint writes one of two things:

- a **base**, the operator's whole state as a full checkpoint holds it: the first time, after a
  restore, after a checkpoint was aborted, when 30 % of the keys or more changed (as while a
  state fills up), and once the changes written since the base add up to more than the base itself (a
  restore then reads at most about twice the state) or number :data:`MAX_CHANGES`;
- otherwise a **change**: ``{key: entry or None}`` for the keys changed since the previous
  checkpoint (None: the key holds nothing any more).

Each is a file the checkpoint shares with later ones, keyed ``heap/<lineage>/<n>`` (a lineage per
operator instance and run, so a key names the same bytes forever), stored once and listed by every
later checkpoint of its chain. The part itself is small: ``{"key_groups": (start, stop), "heap":
[base key, change keys...]}``. A restore reads the chain back (:func:`read_chain`) and folds the
changes into the base, which gives a full checkpoint's state: so it restores onto either backend
and at any parallelism, as a full checkpoint does. Savepoints stay whole (backend-neutral and
self-contained).

**Off the event loop.** A state of :data:`FORK_ENTRIES` entries or more is pickled in a forked
child, and a change is even computed there: the loop swaps the set of changed keys for a new
one, forks, and goes on; :class:`Deferred` makes the child build the change from its copy of the
state as it pickles it. The old set is let go of a chunk per turn of the loop once the file is
written (:meth:`HeapCheckpoints.release_later`). The child's bytes are written to a local file
under the instance's own scratch directory, which the checkpoint's storage copies; the file is
deleted once the checkpoint completes or aborts. A chain's earlier files are listed by later
checkpoints by key only: the storage has them already (a key it does not have is copied from its
local file, which is gone by then: the checkpoint fails, and the next one writes a base).

>>> import asyncio, pickle
>>> async def demo():
...     increments = HeapCheckpoints("counts/0")
...     chain, shared = increments.take(1, {"a": 1}, base=True, entries=1, changed={"a"})
...     path = await shared[chain[-1]]
...     with open(path, "rb") as file:
...         return chain[0].startswith("heap/"), pickle.load(file)
>>> asyncio.run(demo())
(True, {'a': 1})
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import shutil
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final

from actorflow.errors import StateError
from actorflow.runtime.forked import PROTOCOL, can_fork, start_pickling
from actorflow.state.shared_files import RestoredFiles

__all__ = [
    "BASE_SHARE",
    "Deferred",
    "FORK_ENTRIES",
    "HeapCheckpoints",
    "MAX_CHANGES",
    "REBASE_RATIO",
    "RELEASE_CHUNK",
    "read_chain",
]

#: A base or change of at least this many entries is pickled in a forked child (about 10 ms of
#: pickling on the loop: the chain's default threshold for whole states, too).
FORK_ENTRIES: Final = 10_000
#: At most this many changes follow a base before the next base.
MAX_CHANGES: Final = 100
#: A new base once the changes written since the last one are this many times its size.
REBASE_RATIO = 1.0
#: A base instead of a change once this share of the keys changed.
BASE_SHARE = 0.3
#: Keys let go of per turn of the event loop after a checkpoint (about a millisecond's work).
RELEASE_CHUNK: Final = 20_000


def _identity(value: Any) -> Any:
    return value


class Deferred:
    """An object that pickles as what ``make()`` returns, computed when it is pickled: in a forked
    child, from the child's copy of the state.

    >>> pickle.loads(pickle.dumps(Deferred(lambda: {"a": 1})))
    {'a': 1}
    """

    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make

    def __reduce__(self) -> tuple[Callable[[Any], Any], tuple[Any]]:
        return _identity, (self.make(),)


class HeapCheckpoints:
    """The chain of bases and changes of one operator instance's heap state (module docstring).

    ``label`` names the instance in errors; ``directory`` is where its scratch directory goes (the
    system's temporary directory when None).
    """

    def __init__(self, label: str, directory: str | None = None) -> None:
        self.label = label
        self.directory = directory
        #: This instance's lineage: the shared keys of the files it writes.
        self.lineage = uuid.uuid4().hex
        #: The shared keys of the current chain, its base first.
        self.chain: list[str] = []
        #: Sizes of the base and of the changes since, as far as written.
        self.base_bytes = 0
        self.changes_bytes = 0
        #: Whether the next checkpoint must write a base (no chain yet, or an abort broke it).
        self.rebase = True
        #: Checkpoint id -> its local file, until the checkpoint completes or aborts.
        self.pending: dict[int, str] = {}
        self._written = 0
        self._scratch: str | None = None
        #: Sets of changed keys being let go of, a chunk per turn of the loop (release_later).
        self._releasing: list[set[Any]] = []

    def wants_base(self, changed: int, keys: int) -> bool:
        """Whether the next checkpoint writes a base rather than a change, with ``changed`` of the
        state's ``keys`` changed: a change of 30 % of the keys (:data:`BASE_SHARE`) or more takes
        as long to build and pickle as a base (a key's entry is looked up in every table, where a
        base walks the tables in order)."""
        return (
            self.rebase
            or len(self.chain) > MAX_CHANGES
            or (self.base_bytes > 0 and self.changes_bytes > REBASE_RATIO * self.base_bytes)
            or changed >= BASE_SHARE * keys > 0
        )

    def take(
        self, checkpoint_id: int, state: Any, *, base: bool, entries: int, changed: set[Any]
    ) -> tuple[list[str], dict[str, str | Awaitable[str]]]:
        """Start writing ``state`` (a base when ``base``, else a change; ``entries`` says how large
        it is) for checkpoint ``checkpoint_id``: ``(the chain's keys, {shared key: local path or an
        awaitable of it})`` for the checkpoint's part. Pickles now, on the loop or in a forked
        child (:data:`FORK_ENTRIES`), so the state may change as soon as this returns. The set of
        ``changed`` keys the checkpoint was taken for is let go of once it is written
        (:meth:`release_later`): while a child shares its pages, every key let go of would copy
        one."""
        key = f"heap/{self.lineage}/{self._written}"
        path = os.path.join(self._directory(), f"{self._written}.pickle")
        self._written += 1
        data: bytes | asyncio.Future[bytes]
        if entries >= FORK_ENTRIES and can_fork():
            try:
                data = start_pickling(state, label=self.label)
            except OSError:  # no memory for the page tables, no processes: inline
                data = pickle.dumps(state, protocol=PROTOCOL)
        else:
            data = pickle.dumps(state, protocol=PROTOCOL)
        self.release(checkpoint_id)  # a leftover of an earlier try with this id
        self.pending[checkpoint_id] = path
        if base:
            self.chain = [key]
            self.base_bytes = self.changes_bytes = 0
            self.rebase = False
        else:
            self.chain.append(key)
        shared: dict[str, str | Awaitable[str]] = dict.fromkeys(self.chain[:-1], "")
        shared[key] = asyncio.ensure_future(self._write(data, path, base, changed))
        return list(self.chain), shared

    async def _write(self, data: bytes | Awaitable[bytes], path: str, base: bool, changed: set[Any]) -> str:
        try:
            pickled = data if isinstance(data, bytes) else await data
            await asyncio.to_thread(_write_file, path, pickled)
        finally:
            self.release_later(changed)
        if base:
            self.base_bytes = len(pickled)
        else:
            self.changes_bytes += len(pickled)
        return path

    def _directory(self) -> str:
        if self._scratch is None:
            self._scratch = tempfile.mkdtemp(prefix="actorflow-heap-", dir=self.directory)
        return self._scratch

    def release_later(self, keys: set[Any]) -> None:
        """Let go of ``keys`` (a checkpoint's changed keys) a chunk per turn of the event loop
        (:data:`RELEASE_CHUNK`): a set of millions dropped at once holds the loop while it lets go
        of each key (3M keys: 249 ms while a forked child shared their pages, when each key let go
        of copied a page; 20,000 keys then cost up to 135 ms)."""
        if len(keys) <= RELEASE_CHUNK:
            return
        self._releasing.append(keys)
        if len(self._releasing) == 1:
            asyncio.get_running_loop().call_soon(self._release_some)

    def _release_some(self) -> None:
        keys = self._releasing[0]
        pop = keys.pop
        for _ in range(min(RELEASE_CHUNK, len(keys))):
            pop()
        if not keys:
            self._releasing.pop(0)
        if self._releasing:
            asyncio.get_running_loop().call_soon(self._release_some)

    def release(self, checkpoint_id: int, *, aborted: bool = False) -> None:
        """Checkpoint ``checkpoint_id`` completed (or ``aborted``): delete its local file. After an
        abort the next checkpoint writes a base, since the aborted one's change may be lost."""
        path = self.pending.pop(checkpoint_id, None)
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        if aborted:
            self.rebase = True

    def close(self) -> None:
        """Delete the scratch directory and every local file in it."""
        self.pending.clear()
        self._releasing.clear()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


def _write_file(path: str, data: bytes) -> None:
    with open(path, "wb") as file:
        file.write(data)


def read_chain(files: RestoredFiles | None, chain: list[str], operator: str) -> list[Any]:
    """The unpickled base and changes of a restored part's ``chain``, in order, read from the
    checkpoint's shared ``files``; :class:`~actorflow.errors.StateError` when there are none (a
    part taken out of its checkpoint).

    >>> read_chain(None, [], "op")
    []
    """
    if not chain:
        return []
    if files is None:
        raise StateError(f"operator {operator!r}: its heap checkpoint lists files no restore gave it")
    loaded = []
    for key in chain:
        path = files.path(key)
        if path is not None:
            with open(path, "rb") as file:
                loaded.append(pickle.load(file))
            continue
        with tempfile.TemporaryDirectory(prefix="actorflow-heap-") as scratch:
            local = os.path.join(scratch, "part")
            files.copy(key, local)
            with open(local, "rb") as file:
                loaded.append(pickle.load(file))
    return loaded
