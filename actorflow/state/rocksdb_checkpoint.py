"""Native, incremental checkpoints of a RocksDB keyed state, and their restore.

A checkpoint of an operator instance's :class:`~actorflow.state.rocksdb.RocksDBTables` is a
RocksDB checkpoint of its store: :meth:`NativeCheckpoints.take` writes the cache back (in chunks,
letting the event loop run between them), then, in a worker thread, flushes the memtables and
hard-links the SST files into a local directory next to the store. What it returns is plain data:

- ``description``, the part's ``"rocksdb"`` entry (pickled by the caller with the timers)::

      {"format": 1,
       "lineage": "<hex>",                      # the database's lineage (see below)
       "max_parallelism": 128,
       "files": {"000012.sst": "rocksdb/<lineage>/000012.sst", ...},  # SST -> shared key
       "small": {"CURRENT": b"...", "MANIFEST-000005": b"...", "OPTIONS-000009": b"...", ...},
       "families": {state name: {"column": "state:<name>", "codec": "pickle", "ttl": False}},
       "timers": {"event": {"count": 3, "sequence": 7}, ...}}  # optional, see below

  ``small`` holds every file that is not an SST, whole: they are rewritten by every checkpoint
  and small (the MANIFEST is kept under 64 KiB, see :data:`~actorflow.state.rocksdb.MAX_MANIFEST_BYTES`).
- ``shared``: ``{shared key: local path}`` of the SST files, for the checkpoint storage, which
  copies a key only if it does not hold it yet. An SST file never changes and its number is never
  reused within one database, so ``rocksdb/<lineage>/<name>`` names one content forever, and a
  checkpoint costs the SST files written since the previous one: the incremental part.

The local directory stays until the checkpoint completes or aborts (:meth:`NativeCheckpoints.release`)
or the store closes (it lives inside the instance's directory).

*Timers* of a :class:`~actorflow.state.rocksdb_timers.RocksDBTimerQueue` are in the store's
families already: the operator adds their ``native_state()`` as ``"timers"`` (per time domain) and
exports none, so taking a checkpoint reads no timer. A restore hands :func:`restore` the queues.

*Lineage.* Each opened database gets a fresh lineage id. A database restored from a checkpoint's
files keeps those files' keys (:meth:`NativeCheckpoints.inherit`), so its first checkpoint uploads
only what it wrote since; the SST files it writes itself take its new lineage, so they can never be
mistaken for files a crashed run wrote under the old one after that checkpoint.

*Restore* (:func:`restore`): at the same parallelism, a part whose key groups lie inside this
instance's is taken whole: its files are hard-linked (or copied) from the storage into a fresh
directory, and the store is opened there; nothing is re-inserted. Any other part that overlaps
(after a change of parallelism, or onto the heap) is opened read-only in a scratch directory, and
only the key groups this instance owns are read: keys start with their key group (two big-endian
bytes, :mod:`~actorflow.state.keycodec`), so that is one seek and a scan per column family.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Hashable, Iterator, Mapping
from typing import Any, Final, TypeVar

from actorflow.errors import StateError
from actorflow.state.keycodec import decode_key
from actorflow.state.rocksdb import COLUMN_PREFIX, PREFIX, RocksDBTables, open_db, value_codec
from actorflow.state.rocksdb_timers import RocksDBTimerQueue, stored_timers, timer_columns
from actorflow.state.shared_files import RestoredFiles
from actorflow.time.timers import TimerQueue

__all__ = [
    "FORMAT",
    "WRITE_BACK_CHUNK",
    "LoadEntries",
    "NativeCheckpoints",
    "RestoredFiles",
    "restore",
    "takes_whole",
]

T = TypeVar("T")

#: The version of the ``"rocksdb"`` entry's shape.
FORMAT: Final = 1
#: Cached entries serialized per step of a checkpoint's write-back (the loop runs between steps).
#: A step serializes one chunk and writes the previous one's changes: with 4,096 entries of a
#: small profile, 6 ms and 3.5 ms of CPU (the write holds the GIL throughout); with 1,024, about
#: 1 ms each, for about a hundred more hops to the worker thread per checkpoint (~0.1 ms each).
WRITE_BACK_CHUNK: Final = 1024


#: ``load(name, entries)``: put decoded ``{key: value}`` entries into state ``name``'s table of
#: the operator being restored, making the table if it has none (``{}`` only makes it): how
#: :func:`restore` hands over what it read, whatever holds the operator's state.
LoadEntries = Callable[[str, dict[Hashable, Any]], None]


async def _in_thread(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in a worker thread. Cancelled, it still waits for the thread, which
    cannot be stopped, so nobody closes the store under it; then it raises."""
    work = asyncio.ensure_future(asyncio.to_thread(function, *args))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        await asyncio.wait({work})
        raise


class NativeCheckpoints:
    """Takes the native checkpoints of one :class:`RocksDBTables` and keeps their local
    directories until they are released (see the module docstring)."""

    def __init__(self, tables: RocksDBTables) -> None:
        self.tables = tables
        #: This database's lineage: the shared keys of the SST files it writes.
        self.lineage = uuid.uuid4().hex
        #: SST name -> shared key, for files a restore brought in (they keep their keys).
        self.inherited: dict[str, str] = {}
        #: Checkpoint id -> its local directory, until released.
        self.pending: dict[int, str] = {}

    async def take(self, checkpoint_id: int) -> tuple[dict[str, Any], dict[str, str]]:
        """Checkpoint the store: ``(description, {shared key: local path})`` (see the module
        docstring). The caller changes no state until this returns; the event loop runs
        meanwhile (while the store's bytes of a write-back chunk are read, and during the flush:
        worker threads do both).
        """
        tables = self.tables
        self.release(checkpoint_id)  # a leftover of an earlier try with this id
        directory = os.path.join(tables.path, f"checkpoint-{checkpoint_id}")
        self.pending[checkpoint_id] = directory
        for table, keys, values in tables.serialized(WRITE_BACK_CHUNK):
            # The store's bytes are read in a worker thread (rocksdict lets go of the GIL): the
            # loop runs meanwhile, and pays for serializing a chunk and writing what changed.
            stored = await _in_thread(table.family.get, keys)
            tables.write_changed(table, keys, values, stored)
        taken = await _in_thread(self._create, directory)
        if self.pending.get(checkpoint_id) != directory:  # aborted meanwhile: nobody reads it
            shutil.rmtree(directory, ignore_errors=True)
        return taken

    def _create(self, directory: str) -> tuple[dict[str, Any], dict[str, str]]:
        """In a worker thread: the RocksDB checkpoint, its small files read, its SSTs named."""
        tables = self.tables
        tables.checkpoint(directory)
        files: dict[str, str] = {}
        small: dict[str, bytes] = {}
        shared: dict[str, str] = {}
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            if name.endswith(".sst"):
                key = self.inherited.get(name) or f"rocksdb/{self.lineage}/{name}"
                files[name] = key
                shared[key] = path
            else:
                with open(path, "rb") as file:
                    small[name] = file.read()
        families = {
            name: {"column": column_of(name), "codec": codec, "ttl": ttl}
            for name, (codec, ttl) in tables.formats.items()
        }
        description = {
            "format": FORMAT,
            "lineage": self.lineage,
            "max_parallelism": tables.max_parallelism,
            "files": files,
            "small": small,
            "families": families,
        }
        return description, shared

    def inherit(self, description: dict[str, Any]) -> None:
        """The store was opened from the checkpoint ``description`` describes: its files keep
        their shared keys."""
        self.inherited.update(description["files"])

    def release(self, checkpoint_id: int) -> None:
        """Delete checkpoint ``checkpoint_id``'s local directory (complete or aborted: the storage
        has what it needs, or will never need it)."""
        directory = self.pending.pop(checkpoint_id, None)
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)

    def release_all(self) -> None:
        """Delete every local checkpoint directory."""
        for checkpoint_id in list(self.pending):
            self.release(checkpoint_id)


def column_of(name: str) -> str:
    """State ``name``'s column family.

    >>> column_of("profile")
    'state:profile'
    """
    return COLUMN_PREFIX + name


def _check(description: dict[str, Any]) -> None:
    if description.get("format") != FORMAT:
        found = description.get("format")
        raise StateError(f"a RocksDB checkpoint of format {found!r}: this version reads {FORMAT}")


def _fill(description: dict[str, Any], files: RestoredFiles | None, directory: str) -> None:
    """Write the checkpoint's files into ``directory``: SSTs hard-linked from the storage when it
    is local (copied across file systems), fetched otherwise; the small files from the part."""
    _check(description)
    if files is None and description["files"]:
        raise StateError("a RocksDB checkpoint is restored without its files (the storage gave none)")
    for name, key in description["files"].items():
        dest = os.path.join(directory, name)
        assert files is not None
        source = files.path(key)
        if source is None:
            files.copy(key, dest)
            continue
        try:
            os.link(source, dest)
        except OSError:
            shutil.copyfile(source, dest)
    for name, data in description["small"].items():
        with open(os.path.join(directory, name), "wb") as file:
            file.write(data)


def takes_whole(key_groups: range, owned: range) -> bool:
    """Whether a part of ``key_groups`` lies inside ``owned`` (a restore may take its files).

    >>> takes_whole(range(0, 64), range(0, 128)), takes_whole(range(0, 64), range(32, 96))
    (True, False)
    """
    return owned.start <= key_groups.start and key_groups.stop <= owned.stop and len(key_groups) > 0


class _Reader:
    """A checkpoint's database opened read-only in a scratch directory (deleted on close)."""

    def __init__(self, description: dict[str, Any], files: RestoredFiles | None, base: str) -> None:
        self.directory = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-restore-", dir=base)
        self.db: Any = None
        self.families: list[Any] = []
        try:
            _fill(description, files, self.directory)
            columns = [family["column"] for family in description["families"].values()]
            columns += [timer_columns(name)[0] for name in description.get("timers", ())]
            self.db = open_db(self.directory, columns, read_only=True)
        except BaseException:
            self.close()
            raise

    def items(self, column: str) -> Iterator[tuple[bytes, bytes]]:
        """Every ``(key, value)`` of ``column``, in order."""
        family = self.db.get_column_family(column)
        self.families.append(family)
        return iter(family.items())

    def entries(self, column: str, groups: range) -> Iterator[tuple[bytes, bytes]]:
        """The encoded ``(key, value)`` pairs of ``column`` whose key group is in ``groups``."""
        family = self.db.get_column_family(column)
        self.families.append(family)
        stop = groups.stop.to_bytes(2, "big") if groups.stop < 1 << 16 else None
        cursor = family.iter()
        cursor.seek(groups.start.to_bytes(2, "big"))
        while cursor.valid():
            key = cursor.key()
            if stop is not None and key >= stop:
                break
            yield key, cursor.value()
            cursor.next()

    def close(self) -> None:
        for family in self.families:
            family.close()
        self.families.clear()
        if self.db is not None:
            self.db.close()
            self.db = None
        shutil.rmtree(self.directory, ignore_errors=True)


def restore(
    parts: list[tuple[dict[str, Any], range]],
    load: LoadEntries,
    owned: range,
    files: RestoredFiles | None,
    checkpoints: NativeCheckpoints | None,
    scratch: str | None = None,
    timers: Mapping[str, TimerQueue] | None = None,
) -> bool:
    """Load the native checkpoint parts ``parts`` (``(description, their key groups)``, the parts
    that overlap ``owned``) into an operator's state, whatever holds it: ``load(name, entries)``
    puts decoded ``{key: value}`` entries into state ``name``'s table (made if it has none; ``{}``
    just makes it). With ``checkpoints`` (the operator's store is RocksDB and it accepts the parts'
    bytes as they are), the first part inside ``owned`` is taken whole if the store was not used
    yet, and the key groups in ``owned`` of every other part are copied into its column families
    undecoded when their codec matches; without (the heap, or an operator that wants every entry
    decoded), every owned entry goes through ``load``. ``scratch``: where a read-only copy of a
    part is made for reading it (default: next to the store, else the system's temporary
    directory). ``timers``: the operator's timer queues by time domain, for parts that keep their
    timers in the store (module docstring): a part taken whole hands its timer families to the
    :class:`~actorflow.state.rocksdb_timers.RocksDBTimerQueue` of their domain; any other part's
    owned timers are added to the queue. Returns whether a part was taken whole. Raises
    :class:`StateError` when the parts' files are not available, or a part's timers have no queue.

    >>> loaded: dict[str, dict[Any, Any]] = {}
    >>> def load(name, entries):
    ...     loaded.setdefault(name, {}).update(entries)
    >>> restore([], load, range(0, 128), None, None), loaded  # no part overlaps: nothing read
    (False, {})
    """
    tables = checkpoints.tables if checkpoints is not None else None
    whole = None
    if tables is not None and checkpoints is not None and tables.cached == 0:
        whole = next((part for part in parts if takes_whole(part[1], owned)), None)
    if whole is not None:
        assert tables is not None and checkpoints is not None
        description = whole[0]
        stored = _stored_timers(description, timers)
        keep = [
            column
            for name, queue in stored
            if isinstance(queue, RocksDBTimerQueue)
            for column in queue.columns
        ]
        tables.reopen(lambda directory: _fill(description, files, directory), keep)
        checkpoints.inherit(description)
        _declare_families(description, load, tables)
        for name, queue in stored:
            if isinstance(queue, RocksDBTimerQueue):
                queue.adopt(description["timers"][name])
            else:  # a queue on the heap: the timers are read out of the store
                family = tables.column_family(timer_columns(name)[0])[0]
                queue.add_all(stored_timers(family.items(), owned))
    base = scratch or (tables.path if tables is not None else tempfile.gettempdir())
    for part in parts:
        if part is whole:
            continue
        description, key_groups = part
        groups = range(max(key_groups.start, owned.start), min(key_groups.stop, owned.stop))
        if not groups:
            continue
        reader = _Reader(description, files, base)
        try:
            _read_into(reader, description, groups, load, tables)
            for name, queue in _stored_timers(description, timers):
                queue.add_all(stored_timers(reader.items(timer_columns(name)[0]), groups))
        finally:
            reader.close()
    return whole is not None


def _stored_timers(
    description: dict[str, Any], timers: Mapping[str, TimerQueue] | None
) -> list[tuple[str, TimerQueue]]:
    """``(time domain, queue)`` for each domain whose timers ``description``'s store holds."""
    names = list(description.get("timers", ()))
    if not names:
        return []
    if timers is None:
        raise StateError("a RocksDB checkpoint holds timers, but the operator restoring it has none")
    return [(name, timers[name]) for name in names]


def _declare_families(description: dict[str, Any], load: LoadEntries, tables: RocksDBTables) -> None:
    """After the store was opened from ``description``'s files: every family has its table, whose
    values read as they were stored."""
    families = description["families"]
    for name in families:
        load(name, {})  # makes the tables not declared yet
    for name, family in families.items():
        tables.adopt_format(name, family["codec"], family["ttl"])


def _read_into(
    reader: _Reader,
    description: dict[str, Any],
    groups: range,
    load: LoadEntries,
    tables: RocksDBTables | None,
) -> None:
    for name, family in description["families"].items():
        entries = reader.entries(family["column"], groups)
        stored = (family["codec"], family["ttl"])
        if tables is not None:
            load(name, {})  # its table, if it has none yet
            if name not in tables.declared:
                tables.adopt_format(name, *stored)  # not declared yet: it reads them as stored
            if tables.formats[name] == stored:  # copied as they are, neither decoded nor encoded
                tables.put_raw(name, entries)
                continue
        if stored[0] == "custom":
            raise StateError(
                f"state {name!r} was checkpointed in RocksDB with a codec of its own, which only "
                "RocksDB restores: restore it from a savepoint"
            )
        loads = value_codec(stored[0], stored[1])[1]
        load(name, {decode_key(key): loads(value) for key, value in entries})
