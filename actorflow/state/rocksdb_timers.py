"""Timers in RocksDB: a timer queue whose timers live in two column families of the operator
instance's store, so a job with a timer per key keeps them out of memory, and firing reads only
what is due.

The same contract as :class:`~actorflow.time.timers.TimerQueue` (at most one timer per ``(time,
key)``, fired in time order, keys of one time in registration order, ``next_time`` read on every
watermark), laid out as:

- ``timers:<domain>``: ``time`` (plus 2**63, as 8 big-endian bytes: negative times sort
  first) and a sequence number (8 bytes) -> the key, encoded with its key group first
  (:func:`~actorflow.state.keycodec.encode_key`). Iterating it from the start gives the timers
  in firing order; firing seeks to ``next_time``, past the deleted timers before it.
- ``timer-index:<domain>``: the encoded key and the time -> the sequence number: finds a timer by
  ``(time, key)`` to deduplicate and to remove it.

Only ``next_time`` stays in memory. Savepoints take the timers as the heap queue exports them (two
flat lists in firing order), so they move between backends. A native checkpoint of the store
(:mod:`~actorflow.state.rocksdb_checkpoint`) holds the two families already: it records only
:meth:`RocksDBTimerQueue.native_state` (how many timers, the next sequence number), so taking it
reads no timer; a restore that opens its files adopts them (:meth:`RocksDBTimerQueue.adopt`), one
that reads key groups reads the timers with :func:`stored_timers`.

>>> from actorflow.state.backends import StateBackendConfig
>>> from actorflow.state.rocksdb import RocksDBTables
>>> tables = RocksDBTables(StateBackendConfig("rocksdb"), "doc", 0)
>>> queue = RocksDBTimerQueue(tables, "event")
>>> queue.add(20, "a"), queue.add(-5, "b"), queue.add(20, "a")
(True, True, False)
>>> list(queue.pop_due(15)), queue.next_time, len(queue)
([(-5, 'b')], 20, 1)
>>> tables.close()
"""

from __future__ import annotations

import struct
from collections.abc import Hashable, Iterable, Iterator
from operator import itemgetter

import rocksdict

from actorflow.state.keycodec import decode_key, encode_key
from actorflow.state.rocksdb import RocksDBTables
from actorflow.time.timers import TimerQueue

__all__ = ["RocksDBTimerQueue", "stored_timers", "timer_columns"]

_TIME = struct.Struct(">Q")
_TIME_AND_SEQUENCE = struct.Struct(">QQ")
_SIGN = 1 << 63
_time_and_sequence = itemgetter(0, 1)


def timer_columns(name: str) -> tuple[str, str]:
    """The column families of time domain ``name``'s timers and of their index.

    >>> timer_columns("event")
    ('timers:event', 'timer-index:event')
    """
    return f"timers:{name}", f"timer-index:{name}"


def stored_timers(entries: Iterable[tuple[bytes, bytes]], groups: range) -> Iterator[tuple[int, Hashable]]:
    """``(time, key)`` of the timers in ``entries`` (a timer family's items, in order) whose key's
    key group is in ``groups``, in firing order: how a restore reads another store's timers."""
    start, stop = groups.start, groups.stop
    for timer_key, encoded in entries:
        if start <= int.from_bytes(encoded[:2], "big") < stop:
            yield _time_of(timer_key), decode_key(encoded)


def _timer_key(time: int, sequence: int) -> bytes:
    return _TIME_AND_SEQUENCE.pack(time + _SIGN, sequence)


def _time_of(data: bytes) -> int:
    return int(_TIME.unpack_from(data)[0]) - _SIGN


class RocksDBTimerQueue(TimerQueue):
    """The timers of one time domain (``name``: ``"event"`` or ``"processing"``) in ``tables``'
    store (see the module docstring). A :class:`TimerQueue` to its users; it overrides every
    method and keeps none of the heap queue's structures."""

    def __init__(self, tables: RocksDBTables, name: str) -> None:  # no heap structures: no super()
        self._columns = timer_columns(name)
        #: ``[column family, handle]`` each, updated in place if a restore replaces the store.
        self._timers_family = tables.column_family(self._columns[0])
        self._index_family = tables.column_family(self._columns[1])
        self._tables = tables
        self._max_parallelism = tables.max_parallelism
        #: The next sequence number: orders the timers of one time as they were registered.
        self._sequence = 0
        #: How many timers there are (kept here: len() is read after the store closed, too).
        self._count = 0
        #: The earliest time with a timer, or None. Read on every watermark: kept as an attribute.
        self.next_time: int | None = None
        #: The key of the timer :meth:`pop_due` removed last: the next one of its time comes after
        #: it (later ones get higher sequence numbers), so a seek starts there, not before the
        #: deletes of every timer of that time already fired (a seek steps over each: quadratic).
        self._resume: bytes | None = None

    def __len__(self) -> int:
        return self._count

    @property
    def columns(self) -> tuple[str, str]:
        """The column families of the timers and of their index."""
        return self._columns

    def native_state(self) -> dict[str, int]:
        """What a native checkpoint of the store records of this queue beside its families:
        ``{"count": timers, "sequence": the next sequence number}``."""
        return {"count": self._count, "sequence": self._sequence}

    def adopt(self, native: dict[str, int]) -> None:
        """The store was replaced by a checkpoint's files, timer families included, which
        recorded ``native`` (:meth:`native_state`): take them as this queue's timers."""
        self._count = native["count"]
        self._sequence = native["sequence"]
        self._resume = None
        self.next_time = None
        self._refresh()

    def _index_key(self, time: int, key: Hashable) -> bytes:
        return encode_key(key, self._max_parallelism) + _TIME.pack(time + _SIGN)

    def add(self, time: int, key: Hashable) -> bool:
        """Register a timer; return False if the same (time, key) was already registered."""
        index_key = self._index_key(time, key)
        if self._index_family[0].get(index_key) is not None:
            return False
        self._put(time, key, index_key)
        self._count += 1
        next_time = self.next_time
        if next_time is None or time < next_time:
            self.next_time = time
        return True

    def _put(self, time: int, key: Hashable, index_key: bytes) -> None:
        sequence = self._sequence
        self._sequence = sequence + 1
        batch = rocksdict.WriteBatch(raw_mode=True)
        batch.put(_timer_key(time, sequence), index_key[:-8], self._timers_family[1])
        batch.put(index_key, _TIME.pack(sequence), self._index_family[1])
        self._tables.write(batch)

    def remove(self, time: int, key: Hashable) -> bool:
        """Forget a timer; return False if there was none."""
        index_key = self._index_key(time, key)
        sequence = self._index_family[0].get(index_key)
        if sequence is None:
            return False
        self._delete(_timer_key(time, _TIME.unpack(sequence)[0]), index_key)
        self._count -= 1
        if time == self.next_time:
            self._refresh()
        return True

    def _delete(self, timer_key: bytes, index_key: bytes) -> None:
        batch = rocksdict.WriteBatch(raw_mode=True)
        batch.delete(timer_key, self._timers_family[1])
        batch.delete(index_key, self._index_family[1])
        self._tables.write(batch)

    def _first(self) -> tuple[bytes, bytes] | None:
        """The earliest timer's key and value, seeking from ``next_time`` (deleted timers before
        it are not scanned again)."""
        iterator = self._timers_family[0].iter()
        next_time = self.next_time
        resume = self._resume
        if next_time is None:
            iterator.seek_to_first()
        elif resume is not None and _time_of(resume) == next_time:
            iterator.seek(resume)
        else:
            iterator.seek(_timer_key(next_time, 0))
        if not iterator.valid():
            return None
        return iterator.key(), iterator.value()

    def _refresh(self) -> None:
        first = self._first()
        if first is None and self.next_time is not None:
            self.next_time = None  # a seek from next_time found nothing: look from the start
            first = self._first()
        self.next_time = None if first is None else _time_of(first[0])

    def pop_due(self, limit: int) -> Iterator[tuple[int, Hashable]]:
        """Yield and remove every timer with time ``<= limit``, in time order, one at a time.

        Each timer is removed just before it is yielded, so while it fires it may remove other
        due timers (they then do not fire) or add new ones (they fire in this pass if due).
        """
        while self.next_time is not None and self.next_time <= limit:
            first = self._first()
            if first is None:
                self._refresh()
                continue
            timer_key, encoded = first
            time = _time_of(timer_key)
            if time > limit:
                self.next_time = time
                return
            self._delete(timer_key, encoded + timer_key[:8])
            self._count -= 1
            self._resume = timer_key
            self.next_time = time
            yield time, decode_key(encoded)
        return

    def _items(self) -> Iterator[tuple[int, Hashable]]:
        for timer_key, encoded in self._timers_family[0].items():
            yield _time_of(timer_key), decode_key(encoded)

    def keys_at(self, time: int) -> list[Hashable]:
        start = _timer_key(time, 0)
        keys = []
        for timer_key, encoded in self._timers_family[0].items(from_key=start):
            if _time_of(timer_key) != time:
                break
            keys.append(decode_key(encoded))
        return keys

    def snapshot(self) -> list[tuple[int, list[Hashable]]]:
        """All timers as ``[(time, [keys...]), ...]`` in time order."""
        grouped: list[tuple[int, list[Hashable]]] = []
        for time, key in self._items():
            if grouped and grouped[-1][0] == time:
                grouped[-1][1].append(key)
            else:
                grouped.append((time, [key]))
        return grouped

    def export(self) -> tuple[list[int], list[Hashable]]:
        """Every timer as two flat lists, times and keys, in firing order (the heap queue's
        format)."""
        times: list[int] = []
        keys: list[Hashable] = []
        for time, key in self._items():
            times.append(time)
            keys.append(key)
        return times, keys

    def restore(self, timers: list[tuple[int, list[Hashable]]]) -> None:
        self.add_all((time, key) for time, keys in timers for key in keys)

    def add_sequenced(self, timers: Iterable[tuple[int, int, Hashable]]) -> None:
        """Register ``(time, sequence, key)`` timers in the order they were registered (sorted
        by time, then sequence)."""
        self.add_all((time, key) for time, _, key in sorted(timers, key=_time_and_sequence))

    def add_all(self, timers: Iterable[tuple[int, Hashable]]) -> None:
        """Register many timers at once (a restore), through one write batch per thousand."""
        batch = rocksdict.WriteBatch(raw_mode=True)
        pending: set[bytes] = set()
        index_get = self._index_family[0].get
        earliest = self.next_time
        for time, key in timers:
            index_key = self._index_key(time, key)
            if index_key in pending or index_get(index_key) is not None:
                continue
            pending.add(index_key)
            sequence = self._sequence
            self._sequence = sequence + 1
            batch.put(_timer_key(time, sequence), index_key[:-8], self._timers_family[1])
            batch.put(index_key, _TIME.pack(sequence), self._index_family[1])
            if earliest is None or time < earliest:
                earliest = time
            if len(pending) >= 1024:
                self._count += len(pending)
                self._tables.write(batch)
                batch = rocksdict.WriteBatch(raw_mode=True)
                pending.clear()
        self._count += len(pending)
        self._tables.write(batch)
        self.next_time = earliest

    def clear(self) -> None:
        """Forget every timer."""
        batch = rocksdict.WriteBatch(raw_mode=True)
        for timer_key in self._timers_family[0].keys():  # noqa: SIM118
            batch.delete(timer_key, self._timers_family[1])
        for index_key in self._index_family[0].keys():  # noqa: SIM118
            batch.delete(index_key, self._index_family[1])
        self._tables.write(batch)
        self.next_time = None
        self._resume = None
        self._count = 0

    def __repr__(self) -> str:
        return f"RocksDBTimerQueue(next_time={self.next_time!r})"
