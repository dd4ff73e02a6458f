"""Keyed state in an embedded RocksDB (``rocksdict``), behind a bounded cache of live objects.

One RocksDB per operator instance, in a fresh directory (deleted when the instance closes), one
column family per state. A state's table is a :class:`RocksDBTable`: a ``MutableMapping`` from key
to value, whose keys are stored as :func:`~actorflow.state.keycodec.encode_key` (key group
first) and values serialized by the state's codec (pickle by default; see
:data:`~actorflow.state.descriptors.Codec`).

*The cache.* A read deserializes the value into the cache, where it stays live: state handles and
user code update lists, dicts and accumulators in place, as on the heap, so every cached entry is
treated as dirty and written back (through one ``WriteBatch``) when it is evicted or flushed. The
cache holds at most ``cache_size`` entries over all the instance's states; when it is full, the
oldest entries are evicted (first in, first out), never the current key's (the operator's record or
timer may still hold them). So an object read from state is live until the operator moves to
another key: keep no reference to it beyond the record. The cache remembers absent keys too (a read
that found nothing, a delete): most records of a fraud rule read state their card does not have,
and reading that absence again costs a dict lookup, not a RocksDB get; a delete is written when its
entry leaves the cache.

*Checkpoints* are RocksDB's own, incremental (:mod:`actorflow.state.rocksdb_checkpoint`: the cache
written back, the SST files hard-linked, only new ones stored). *Savepoints* and the final
snapshot flush the cache and read every state back as plain dicts (:meth:`RocksDBTables.export`),
the heap's format, so a job moves between backends. RocksDB's own write-ahead log is off: the
checkpoint, not this directory, is what a restore reads.

>>> from actorflow.state.backends import StateBackendConfig
>>> tables = RocksDBTables(StateBackendConfig("rocksdb", cache_entries=2), "doc", 0)
>>> counts = tables.table("counts", None)
>>> for key in "abcde":
...     counts[key] = [key]
>>> counts["a"].append("again")  # evicted and read back: a new live object, updated in place
>>> sorted(tables.export({"counts": counts})["counts"].items())[0]
('a', ['a', 'again'])
>>> tables.close()
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import struct
import tempfile
import weakref
from collections.abc import Callable, Collection, Iterable, Iterator, MutableMapping
from functools import partial
from itertools import islice
from typing import Any, Final

import rocksdict

from actorflow.errors import StateError
from actorflow.state.backends import StateBackendConfig
from actorflow.state.descriptors import Codec, StateDescriptor
from actorflow.state.keycodec import decode_key, encode_key
from actorflow.state.keygroups import DEFAULT_MAX_PARALLELISM
from actorflow.state.removal import remove_later

__all__ = [
    "COLUMN_PREFIX",
    "PREFIX",
    "RocksDBTable",
    "RocksDBTables",
    "codec_name",
    "open_db",
    "sweep_stale",
    "value_codec",
]

_MISSING: Final[Any] = object()
#: A cached key that has no value in the store (read and not found, or deleted).
_ABSENT: Final[Any] = object()
_EXPIRY = struct.Struct(">q")

Dumps = Callable[[Any], bytes]
Loads = Callable[[bytes], Any]


def value_codec(codec: Codec, ttl: bool = False) -> tuple[Dumps, Loads]:
    """The ``(dumps, loads)`` pair for a descriptor's ``codec``. A TTL state stores ``(value,
    expires_at)``: pickle takes the pair as it is, another codec gets the value alone after eight
    bytes of expiry.

    >>> dumps, loads = value_codec("json", ttl=True)
    >>> loads(dumps(({"n": 1}, 99)))
    ({'n': 1}, 99)
    """
    if codec is None or codec == "pickle":
        return partial(pickle.dumps, protocol=5), pickle.loads
    dumps: Dumps
    loads: Loads
    if codec == "json":
        import orjson  # only for states that ask for it

        dumps, loads = orjson.dumps, orjson.loads
    elif isinstance(codec, tuple) and len(codec) == 2 and callable(codec[0]) and callable(codec[1]):
        dumps, loads = codec
    else:
        raise StateError(f"unknown state codec {codec!r}: use 'pickle', 'json' or a (dumps, loads) pair")
    if not ttl:
        return dumps, loads

    def dumps_ttl(entry: tuple[Any, int]) -> bytes:
        return _EXPIRY.pack(entry[1]) + dumps(entry[0])

    def loads_ttl(data: bytes) -> tuple[Any, int]:
        return loads(data[8:]), _EXPIRY.unpack_from(data)[0]

    return dumps_ttl, loads_ttl


def _close(store: list[Any], families: list[list[Any]]) -> None:
    # Every column family object keeps the database open, and one dropped after its directory is
    # gone stalls in RocksDB's destructor: let go of them all first, then close.
    for family in families:
        if family:
            family[0].close()
        family.clear()
    if store:
        store.pop().close()


def _remove(store: list[Any], families: list[list[Any]], path: str) -> None:
    _close(store, families)
    remove_later(path)  # gigabytes of SST files: not on the event loop


#: The prefix of an instance's directory: ``actorflow-rocksdb-<pid>-<operator>-<index>-<random>``.
PREFIX: Final = "actorflow-rocksdb-"
_OWNER = re.compile(re.escape(PREFIX) + r"(\d+)-")
_swept: set[str] = set()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's
        return True
    return True


def sweep_stale(base: str) -> list[str]:
    """Delete the instance directories in ``base`` whose process is gone (killed: it could not
    delete them itself); return their names. Directories of live processes stay.

    >>> import tempfile
    >>> base = tempfile.mkdtemp()
    >>> os.mkdir(os.path.join(base, PREFIX + "999999999-op-0-x"))
    >>> sweep_stale(base)
    ['actorflow-rocksdb-999999999-op-0-x']
    """
    removed = []
    with os.scandir(base) as entries:
        for entry in entries:
            owner = _OWNER.match(entry.name)
            if owner is not None and entry.is_dir() and not _alive(int(owner.group(1))):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(entry.name)
    return removed


def _options() -> Any:
    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(8 << 20)
    # A checkpoint carries the MANIFEST in its part's bytes (it is rewritten every time): keep it
    # small by starting a new one past this size.
    options.set_max_manifest_file_size(MAX_MANIFEST_BYTES)
    # Tiered ("universal") compaction, as Kafka Streams' stores use: a checkpoint stores the SST
    # files written since the previous one, and leveled compaction (the default) rewrites the
    # whole of level 1 (at these sizes, the whole state) every four flushes, so one checkpoint in
    # four stored the state again. Here up to TIERED_RUNS sorted runs wait, then at least eight
    # of them merge; the bloom filters keep a read from probing every run. docs/benchmarks.md
    # has the measurements (about a quarter of the bytes per checkpoint).
    options.set_compaction_style(rocksdict.DBCompactionStyle.universal())
    tiers = rocksdict.UniversalCompactOptions()
    tiers.size_ratio = 100  # a run joins a merge while at most twice the runs before it
    tiers.min_merge_width = 8
    options.set_universal_compaction_options(tiers)
    options.set_level_zero_file_num_compaction_trigger(TIERED_RUNS)
    options.set_level_zero_slowdown_writes_trigger(2 * TIERED_RUNS)
    options.set_level_zero_stop_writes_trigger(3 * TIERED_RUNS)
    table = rocksdict.BlockBasedOptions()
    table.set_bloom_filter(10, False)  # bits per key; a whole-file filter
    options.set_block_based_table_factory(table)
    return options


#: Past this size RocksDB starts a new MANIFEST (see :func:`_options`).
MAX_MANIFEST_BYTES: Final = 1 << 16
#: The most entries one eviction writes back: the event loop waits for it (about 6 us an entry at
#: 10M keys: serialized, encoded, put in a batch, written), so a whole eighth of the default cache
#: (16,384 entries) held it 95-130 ms; 2,048 hold it about 15 ms, for the same work in all.
EVICT_CHUNK: Final = 2048

#: Sorted runs (flushes not merged yet) that start a compaction (see :func:`_options`).
TIERED_RUNS: Final = 12
#: The column family of state ``name``: apart from RocksDB's ``default`` (and from what may come
#: later, such as timers).
COLUMN_PREFIX: Final = "state:"


def open_db(directory: str, columns: list[str], *, read_only: bool = False) -> Any:
    """Open the RocksDB in ``directory`` with its column families ``columns`` (``default`` aside)."""
    families = {column: _options() for column in columns if column != "default"}
    if read_only:
        return rocksdict.Rdict(
            directory, _options(), column_families=families, access_type=rocksdict.AccessType.read_only()
        )
    options = _options()
    options.set_db_write_buffer_size(64 << 20)  # all memtables together
    return rocksdict.Rdict(directory, options, column_families=families or None)


class RocksDBTables:
    """One operator instance's RocksDB and the cache its states share (see the module docstring).

    ``keys``: the instance's key context; the current key's entries are never evicted.

    The instance's directory (:attr:`path`) holds the database (:attr:`db_path`) and whatever is
    made next to it: the local checkpoints of :mod:`actorflow.state.rocksdb_checkpoint`, a
    restore's scratch files. All of it goes when the instance closes.
    """

    def __init__(
        self,
        config: StateBackendConfig,
        operator: str,
        index: int,
        *,
        max_parallelism: int = DEFAULT_MAX_PARALLELISM,
        keys: Any = None,
    ) -> None:
        base = config.path if config.path is not None else tempfile.gettempdir()
        os.makedirs(base, exist_ok=True)
        if base not in _swept:  # once per process and directory
            _swept.add(base)
            sweep_stale(base)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", operator)[:60]
        #: The instance's own directory, deleted by :meth:`close` (or when this is collected); one
        #: a killed process left is deleted by the next process that opens state in ``base``.
        self.path = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-{name}-{index}-", dir=base)
        #: The live database's directory, inside :attr:`path` (a restore opens another one).
        self.db_path = os.path.join(self.path, "db-0")
        #: The open database, alone in a list the finalizer shares (a restore replaces it).
        self._store: list[Any] = [open_db(self.db_path, [])]
        self._write_options = rocksdict.WriteOptions()
        self._write_options.disable_wal = True  # type: ignore[assignment,method-assign]
        self.db.set_write_options(self._write_options)
        #: ``[column family, handle]`` per state, shared with the tables (emptied on close).
        self._families: list[list[Any]] = []
        #: The column families the open database has (a restored one comes with its own).
        self._columns: set[str] = set()
        #: Column families that are not a state's, by name (see :meth:`column_family`).
        self._extra: dict[str, list[Any]] = {}
        self._finalizer = weakref.finalize(self, _remove, self._store, self._families, self.path)
        self.max_parallelism = max_parallelism
        self.keys = keys
        #: The cache's bound, in entries over all states, and how many it holds.
        self.capacity = config.cache_size
        self.cached = 0
        self.tables: list[RocksDBTable] = []
        #: How each state's values are stored: ``(codec, ttl)``, the codec named by
        #: :func:`codec_name`; what a checkpoint records, so that a restore reads them back.
        self.formats: dict[str, tuple[str, bool]] = {}
        #: States whose column family holds values of a codec of the user's own, restored before
        #: they were declared: their declaration brings the codec (see :meth:`adopt_format`).
        self._undeclared_custom: set[str] = set()
        #: The states declared so far (a restore may bring others).
        self.declared: set[str] = set()
        #: Reads that missed the cache (for metrics and tests; hits are not counted: they are the
        #: hot path).
        self.misses = 0

    @property
    def db(self) -> Any:
        """The open database (an ``Rdict``)."""
        if not self._store:
            raise StateError(f"the state of {self.path} was closed")
        return self._store[0]

    def table(self, name: str, descriptor: StateDescriptor | None) -> MutableMapping[Any, Any]:
        """A new table for state ``name`` in its own column family: empty, or what a restored
        database holds for it."""
        if self._finalizer.alive is False:
            raise StateError(f"the state of {self.path} was closed")
        table = RocksDBTable(self, name, self._family(COLUMN_PREFIX + name))
        self.formats[name] = ("pickle", False)
        if descriptor is not None:
            self.declare(table, descriptor)
        self.tables.append(table)
        return table

    def _family(self, column: str) -> list[Any]:
        """``[column family, handle]``: created, or the restored store's; closed with the store."""
        db = self.db
        if column in self._columns:
            family = [db.get_column_family(column), db.get_column_family_handle(column)]
        else:
            family = [db.create_column_family(column, _options()), db.get_column_family_handle(column)]
            self._columns.add(column)
        self._families.append(family)
        return family

    def column_family(self, column: str) -> list[Any]:
        """``[column family, handle]`` of the store, for what is not a state's table (timers),
        created empty. The list is updated in place when a restore replaces the store
        (:meth:`reopen`), where the family starts empty again unless the restore keeps it."""
        if self._finalizer.alive is False:
            raise StateError(f"the state of {self.path} was closed")
        family = self._family(column)
        self._extra[column] = family
        return family

    def declare(self, table: MutableMapping[Any, Any], descriptor: StateDescriptor) -> None:
        """``descriptor`` declares a table restored before it: its values take the declared codec."""
        assert isinstance(table, RocksDBTable)
        name = table.name
        self.declared.add(name)
        ttl = descriptor.time_to_live is not None
        if name in self._undeclared_custom:  # stored with this (the user's own) codec already
            self._undeclared_custom.discard(name)
            table.dumps, table.loads = value_codec(descriptor.value_codec, ttl)
            table._codec = descriptor.value_codec
        else:
            table.declare(descriptor)
        self.formats[name] = (codec_name(descriptor.value_codec), ttl)

    def adopt_format(self, name: str, codec: str, ttl: bool) -> None:
        """State ``name``'s column family now holds values stored as ``(codec, ttl)`` (a restored
        checkpoint's :attr:`formats`): its table reads them so. A declared state whose codec
        differs has its values re-encoded (a scan; only after its codec changed between runs),
        which a codec of the user's own cannot be (:class:`StateError`).
        """
        table = self.table_named(name)
        if self.formats[name] == (codec, ttl):
            return
        if name not in self.declared:
            if codec == "custom":
                self._undeclared_custom.add(name)
            else:
                table.dumps, table.loads = value_codec(codec, ttl)
                table._codec = None if codec == "pickle" else codec
            self.formats[name] = (codec, ttl)
            return
        if codec == "custom":
            raise StateError(
                f"state {name!r} was checkpointed with a codec of its own and is now declared with "
                "another: restore it from a savepoint"
            )
        loads = value_codec(codec, ttl)[1]
        dumps = table.dumps
        batch = table._batch()
        for key, data in table.family.items():
            batch.put(key, dumps(loads(data)), table.handle)
        self.write(batch)

    def table_named(self, name: str) -> RocksDBTable:
        """State ``name``'s table (:class:`StateError` if there is none)."""
        for table in self.tables:
            if table.name == name:
                return table
        raise StateError(f"the RocksDB state has no table {name!r}")

    def export(self, tables: dict[str, MutableMapping[Any, Any]]) -> dict[str, dict[Any, Any]]:
        """Every state as a dict, read back after a flush (the heap's snapshot format)."""
        return {name: dict(table.items()) for name, table in tables.items()}

    def flush(self) -> None:
        """Write every cached entry back (they stay cached)."""
        for table in self.tables:
            table.flush()

    def write_back(self, chunk: int) -> Iterator[int]:
        """Write the cached entries back, ``chunk`` entries at a time, yielding after each chunk
        how many it wrote (the entries stay cached and live): :meth:`serialized` and
        :meth:`write_changed` in one thread (a checkpoint reads the store's bytes in a worker
        thread instead).

        >>> from actorflow.state.backends import StateBackendConfig
        >>> tables = RocksDBTables(StateBackendConfig("rocksdb"), "doc", 0)
        >>> counts = tables.table("counts", None)
        >>> for key in range(5):
        ...     counts[key] = [key]
        >>> list(tables.write_back(2))
        [2, 2, 1]
        >>> counts[3].append("changed in place")
        >>> list(tables.write_back(2))
        [0, 1, 0]
        >>> tables.close()
        """
        for table, keys, values in self.serialized(chunk):
            yield self.write_changed(table, keys, values, table.family.get(keys))

    def serialized(self, chunk: int) -> Iterator[tuple[RocksDBTable, list[bytes], list[bytes | None]]]:
        """The cached entries, encoded and serialized, ``chunk`` at a time: ``(table, keys,
        values)``. Every cached entry may have changed in place, so each is serialized; the
        cache is read once, at the start, and the caller changes no state until the iteration
        ends. Then :meth:`write_changed` writes those that differ from the store's bytes."""
        max_parallelism = self.max_parallelism
        for table in self.tables:
            entries = list(table.cache.items())
            dumps = table.dumps
            encoded = table.encoded
            deleted = table.deleted
            for start in range(0, len(entries), chunk):
                keys = []
                values: list[bytes | None] = []
                for key, value in entries[start : start + chunk]:
                    data = encoded.get(key)
                    if data is None:
                        data = encoded[key] = encode_key(key, max_parallelism)
                    keys.append(data)
                    values.append(None if value is _ABSENT else dumps(value))
                yield table, keys, values
            deleted.clear()  # written by then, or never in the store

    def write_changed(
        self,
        table: RocksDBTable,
        keys: list[bytes],
        values: list[bytes | None],
        stored: list[bytes | None],
    ) -> int:
        """Write the entries of a :meth:`serialized` chunk whose bytes differ from ``stored``,
        the store's (``table.family.get(keys)``; equal bytes mean an equal value, so nothing
        changed is missed), in one batch; return how many. A checkpoint's flush then holds the
        entries that changed, not the whole cache. A value None is a key the cache knows absent:
        a delete where the store still has it."""
        batch = table._batch()
        handle = table.handle
        written = 0
        for data, value, old in zip(keys, values, stored, strict=True):
            if value != old:
                if value is None:
                    batch.delete(data, handle)
                else:
                    batch.put(data, value, handle)
                written += 1
        if written:
            self.write(batch)
        return written

    def put_raw(self, name: str, entries: Iterable[tuple[bytes, bytes]], chunk: int = 4096) -> int:
        """Store encoded ``(key, value)`` pairs, as another database of this state stored them
        (same encoding), in state ``name``'s column family, bypassing the cache (whose entries
        they must not meet: a restore writes before the first record); returns how many."""
        table = self.table_named(name)
        handle = table.handle
        count = 0
        batch = table._batch()
        for key, value in entries:
            batch.put(key, value, handle)
            count += 1
            if count % chunk == 0:
                self.write(batch)
                batch = table._batch()
        self.write(batch)
        return count

    def write(self, batch: Any) -> None:
        self.db.write(batch, self._write_options)

    def make_room(self) -> None:
        """Evict about an eighth of the cache, at most :data:`EVICT_CHUNK` entries, oldest first,
        from every state in proportion."""
        target = max(1, min(self.capacity // 8, EVICT_CHUNK))
        total = self.cached
        current = self.keys.current if self.keys is not None else _MISSING
        for table in self.tables:
            share = -(-len(table.cache) * target // total) if total else 0
            if share:
                table.evict(share, current)

    def checkpoint(self, directory: str) -> None:
        """Write a RocksDB checkpoint of the store into ``directory`` (which must not exist): the
        memtables are flushed, the SST files hard-linked, MANIFEST, OPTIONS and CURRENT copied.
        Run it in a worker thread, after :meth:`write_back`, while no state changes.

        The memtables are flushed first, family by family: a flush lets go of the GIL, while
        rocksdict's checkpoint holds it throughout, its own flush included (at 10M keys the event
        loop waited 45-83 ms for it); after the flush it only links files."""
        for family, _ in self._families:
            family.flush(True)
        self.db.flush(True)
        rocksdict.Checkpoint(self.db).create_checkpoint(directory)

    def reopen(self, fill: Callable[[str], None], keep: Collection[str] = ()) -> None:
        """Replace the (empty) store with the database ``fill(directory)`` writes into a fresh
        directory inside :attr:`path` (a restored checkpoint's files): the tables made so far
        read their column family there (one is made for a state it lacks); tables for its other
        column families come from :meth:`table`. The families of :meth:`column_family` start
        empty, except those named in ``keep`` that the files hold (timers the checkpoint kept
        in the store). Raises :class:`StateError` if the cache holds anything (a restore comes
        before the first record)."""
        if self.cached:
            raise StateError("a RocksDB state can be replaced only before it is used")
        generation = int(self.db_path.rpartition("-")[2]) + 1
        directory = os.path.join(self.path, f"db-{generation}")
        os.mkdir(directory)
        fill(directory)
        columns = rocksdict.Rdict.list_cf(directory, _options())
        _close(self._store, self._families)
        shutil.rmtree(self.db_path, ignore_errors=True)
        db = open_db(directory, columns)
        db.set_write_options(self._write_options)
        self._store.append(db)
        self.db_path = directory
        self._columns = set(columns)
        for table in self.tables:
            column = COLUMN_PREFIX + table.name
            if column not in self._columns:
                db.create_column_family(column, _options())
                self._columns.add(column)
            family = [db.get_column_family(column), db.get_column_family_handle(column)]
            table._family[:] = family
            self._families.append(table._family)
        for column, family in self._extra.items():
            if column in self._columns and column not in keep:
                db.drop_column_family(column)
                self._columns.discard(column)
            if column not in self._columns:
                db.create_column_family(column, _options())
                self._columns.add(column)
            family[:] = [db.get_column_family(column), db.get_column_family_handle(column)]
            self._families.append(family)

    def close(self) -> None:
        """Close the store and delete its directory (idempotent). The tables are unusable after."""
        self._finalizer()


def codec_name(codec: Codec) -> str:
    """How a codec is named where its values are recorded: ``"pickle"``, ``"json"`` or
    ``"custom"`` (a ``(dumps, loads)`` pair, which only the declaration can bring back).

    >>> codec_name(None), codec_name("json"), codec_name((repr, eval))
    ('pickle', 'json', 'custom')
    """
    if codec is None or codec == "pickle":
        return "pickle"
    return "json" if codec == "json" else "custom"


class RocksDBTable(MutableMapping[Any, Any]):
    """One state's entries: cached live objects in front of a column family (see the module).

    The cache also remembers keys that are absent (``_ABSENT``): a read that found nothing, or a
    delete. Reading such a key again costs a dict lookup, not a RocksDB get; a delete reaches the
    store when its entry is evicted or flushed (``deleted`` holds those not written yet).
    """

    def __init__(self, owner: RocksDBTables, name: str, family: list[Any]) -> None:
        self.owner = owner
        self.name = name
        #: ``[column family, handle]``: held only here and by the owner, which empties it on close.
        self._family = family
        #: key -> live value (or ``_ABSENT``), oldest first.
        self.cache: dict[Any, Any] = {}
        #: key -> its encoding, for cached keys read from the store or flushed.
        self.encoded: dict[Any, bytes] = {}
        #: Cached keys deleted whose delete is not in the store yet.
        self.deleted: set[Any] = set()
        self._max_parallelism = owner.max_parallelism
        self.dumps, self.loads = value_codec(None)
        self._codec: Codec = None

    def declare(self, descriptor: StateDescriptor) -> None:
        """Take the descriptor's codec; entries stored with another one are re-encoded."""
        codec = descriptor.value_codec
        if codec is None or codec == "pickle":
            codec = None
        if codec == self._codec:
            return
        dumps, loads = value_codec(codec, descriptor.time_to_live is not None)
        entries = list(self.items())
        self.dumps, self.loads, self._codec = dumps, loads, codec
        batch = self._batch()
        for key, value in entries:
            batch.put(self._encode(key), dumps(value), self.handle)
        self.owner.write(batch)

    @property
    def family(self) -> Any:
        """The column family (an ``Rdict``)."""
        if not self._family:
            raise StateError(f"state {self.name!r} was used after its operator closed")
        return self._family[0]

    @property
    def handle(self) -> Any:
        """The column family's handle, for write batches."""
        if not self._family:
            raise StateError(f"state {self.name!r} was used after its operator closed")
        return self._family[1]

    def _encode(self, key: Any) -> bytes:
        return encode_key(key, self._max_parallelism)

    def _batch(self) -> Any:
        return rocksdict.WriteBatch(raw_mode=True)

    def _load(self, key: Any) -> Any:
        """The key's value, cached or read; ``_ABSENT`` if it has none."""
        value = self.cache.get(key, _MISSING)
        if value is _MISSING:
            return self._read(key)
        return value

    def _read(self, key: Any) -> Any:
        """A key not cached: from the store into the cache (its value, or ``_ABSENT``, cached too)."""
        encoded = encode_key(key, self._max_parallelism)
        data = self.family.get(encoded)
        self.owner.misses += 1
        value = _ABSENT if data is None else self.loads(data)
        self.encoded[key] = encoded  # for the write-back: a key is encoded once per stay
        self.cache[key] = value
        owner = self.owner
        owner.cached += 1
        if owner.cached > owner.capacity:
            owner.make_room()
        return value

    def _cache(self, key: Any, value: Any) -> None:
        self.cache[key] = value
        owner = self.owner
        owner.cached += 1
        if owner.cached > owner.capacity:
            owner.make_room()

    def _write_back(self, keys: Any, batch: Any) -> None:
        """Put ``keys``' cached values (or their deletes) into ``batch``."""
        cache = self.cache
        dumps = self.dumps
        handle = self.handle
        encoded = self.encoded
        deleted = self.deleted
        max_parallelism = self._max_parallelism
        for key in keys:
            value = cache[key]
            data = encoded.get(key)
            if data is None:
                data = encoded[key] = encode_key(key, max_parallelism)
            if value is not _ABSENT:
                batch.put(data, dumps(value), handle)
            elif key in deleted:
                batch.delete(data, handle)

    def evict(self, count: int, current: Any) -> None:
        """Write the ``count`` oldest cached entries back and drop them (not ``current``'s)."""
        cache = self.cache
        victims = list(islice((key for key in cache if key != current), count))
        if not victims:
            return
        batch = self._batch()
        self._write_back(victims, batch)
        encoded = self.encoded
        deleted = self.deleted
        for key in victims:
            del cache[key]
            encoded.pop(key, None)
            deleted.discard(key)
        self.owner.cached -= len(victims)
        self.owner.write(batch)

    def flush(self) -> None:
        """Write every cached entry back; they stay cached (and live)."""
        if not self.cache:
            return
        batch = self._batch()
        self._write_back(self.cache, batch)
        self.deleted.clear()
        self.owner.write(batch)

    # -- the mapping ----------------------------------------------------------------------------

    # The cache is looked up inline: a hit is the hot path, and it costs one dict lookup and one
    # comparison more than the heap's.

    def get(self, key: Any, default: Any = None) -> Any:
        value = self.cache.get(key, _MISSING)
        if value is _MISSING:
            value = self._read(key)
        if value is _ABSENT:
            return default
        return value

    def __getitem__(self, key: Any) -> Any:
        value = self.cache.get(key, _MISSING)
        if value is _MISSING:
            value = self._read(key)
        if value is _ABSENT:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return self._load(key) is not _ABSENT

    def __setitem__(self, key: Any, value: Any) -> None:
        cache = self.cache
        if key in cache:
            cache[key] = value
        else:
            self._cache(key, value)

    def __delitem__(self, key: Any) -> None:
        if self._load(key) is _ABSENT:
            raise KeyError(key)
        self.cache[key] = _ABSENT
        self.deleted.add(key)

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        value = self._load(key)
        if value is _ABSENT:
            if default is _MISSING:
                raise KeyError(key)
            return default
        self.cache[key] = _ABSENT
        self.deleted.add(key)
        return value

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        """Set many entries at once, written through one batch (a restore's bulk load); entries
        already cached are replaced in the cache."""
        items = other.items() if hasattr(other, "items") else other
        batch = self._batch()
        dumps = self.dumps
        cache = self.cache
        for key, value in items:
            if key in cache:
                cache[key] = value
            else:
                batch.put(self._encode(key), dumps(value), self.handle)
        self.owner.write(batch)
        for key, value in kwargs.items():
            self[key] = value

    def __len__(self) -> int:
        self.flush()
        return sum(1 for _ in self.family.keys())  # noqa: SIM118 (an Rdict is not iterable)

    def __iter__(self) -> Iterator[Any]:
        """The keys in store order (key group, then encoded key), after a flush."""
        self.flush()
        for data in self.family.keys():  # noqa: SIM118
            yield decode_key(data)

    def items(self) -> Iterator[tuple[Any, Any]]:  # type: ignore[override]
        """``(key, value)`` in store order, after a flush: values are read back (copies of the
        cached ones, which stay live)."""
        self.flush()
        loads = self.loads
        for data, value in self.family.items():
            yield decode_key(data), loads(value)

    def values(self) -> Iterator[Any]:  # type: ignore[override]
        return (value for _, value in self.items())

    def clear(self) -> None:
        self.owner.cached -= len(self.cache)
        self.cache.clear()
        self.encoded.clear()
        self.deleted.clear()
        batch = self._batch()
        for data in self.family.keys():  # noqa: SIM118
            batch.delete(data, self.handle)
        self.owner.write(batch)
