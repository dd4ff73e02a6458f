"""Keyed state with a time to live (:class:`~actorflow.state.descriptors.StateTtl`).

A TTL state stores ``(value, expires_at)`` per key in its table, ``expires_at`` in the operator's
processing time. The handles here wrap and unwrap it; everything else (snapshots, restores,
rescaling) moves the tables as they are, so an entry keeps its expiry across a restore, as in
Flink. Expired entries are never returned; they are removed when read, when a checkpoint takes
the tables (:func:`purge_expired`), and by the handle every so many writes, so a table of keys
that are never read again does not grow without bound.

>>> from actorflow.state.descriptors import StateTtl, ValueStateDescriptor
>>> from actorflow.state.keyed import KeyedStateBackend
>>> from actorflow.time.clock import ManualClock
>>> clock = ManualClock()
>>> backend = KeyedStateBackend(clock=clock)
>>> seen = backend.get_state(ValueStateDescriptor("seen", ttl=StateTtl(1_000)))
>>> backend.keys.current = "card-1"
>>> seen.update("yes")
>>> clock.advance(999)
>>> seen.value()
'yes'
>>> clock.advance(1)
>>> seen.value() is None
True
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, MutableMapping
from typing import Any, TypeVar

from actorflow.state.descriptors import StateTtl
from actorflow.state.keyed import KeyContext, ListState, MapState, ValueState, _Handle
from actorflow.time.clock import Clock

__all__ = ["TtlListState", "TtlMapState", "TtlValueState", "purge_expired"]

T = TypeVar("T")

#: A handle purges its table after this many writes, or, if more, as many as the table had entries
#: after the last purge: the work is a constant per write, and the table stays within about twice
#: its live entries plus what was written since.
PURGE_EVERY = 1_000


def purge_expired(table: MutableMapping[Any, tuple[Any, int]], now: int) -> int:
    """Remove the entries of a TTL table that have expired at ``now``; return how many.

    >>> table = {"a": ("x", 10), "b": ("y", 20)}
    >>> purge_expired(table, 15), table
    (1, {'b': ('y', 20)})
    """
    expired = [key for key, (_, expires_at) in table.items() if expires_at <= now]
    for key in expired:
        del table[key]
    return len(expired)


class _Ttl(_Handle):
    """What every TTL handle shares: the clock, the config, and the write count for purges."""

    _clock: Clock
    _ttl: StateTtl
    _writes: int
    _purge_at: int

    def __init__(
        self, name: str, keys: KeyContext, table: MutableMapping[Any, Any], clock: Clock, ttl: StateTtl
    ) -> None:
        super().__init__(name, keys, table)
        self._setup(clock, ttl)

    def _setup(self, clock: Clock, ttl: StateTtl) -> None:
        self._clock = clock
        self._ttl = ttl
        self._writes = 0
        self._purge_at = PURGE_EVERY

    def _live(self, key: Any) -> Any:
        """The key's stored value if it has not expired (refreshed on read if so configured),
        else None (and the expired entry is removed)."""
        entry = self._table.get(key)
        if entry is None:
            return None
        value, expires_at = entry
        now = self._clock.now()
        if expires_at <= now:
            del self._table[key]
            return None
        if self._ttl.refresh_on_read:
            self._table[key] = (value, now + self._ttl.ttl_ms)
        return value

    def _write(self, key: Any, value: Any) -> None:
        table = self._table
        now = self._clock.now()
        table[key] = (value, now + self._ttl.ttl_ms)
        self._writes += 1
        if self._writes >= self._purge_at:
            purge_expired(table, now)
            # Next purge after as many writes as entries are left: constant work per write.
            self._writes = 0
            self._purge_at = max(PURGE_EVERY, len(table))


class TtlValueState(_Ttl, ValueState[T]):
    """A :class:`~actorflow.state.keyed.ValueState` whose entry expires (see the module docstring)."""

    def __init__(
        self,
        name: str,
        keys: KeyContext,
        table: MutableMapping[Any, Any],
        default: Any,
        clock: Clock,
        ttl: StateTtl,
    ) -> None:
        ValueState.__init__(self, name, keys, table, default)
        self._setup(clock, ttl)

    def value(self) -> T:
        value = self._live(self._key())
        return self._default if value is None else value  # type: ignore[no-any-return]

    def update(self, value: T) -> None:
        self._write(self._key(), value)


class TtlListState(_Ttl, ListState[T]):
    """A :class:`~actorflow.state.keyed.ListState` whose whole list expires; every write (add,
    add_all, update) gives it ``ttl_ms`` again."""

    def get(self) -> list[T]:
        return list(self._live(self._key()) or ())

    def add(self, value: T) -> None:
        self.add_all((value,))

    def add_all(self, values: Iterable[T]) -> None:
        key = self._key()
        items = list(values)
        if items:
            entry = self._live(key)
            if entry is None:
                entry = []
            entry.extend(items)
            self._write(key, entry)

    def update(self, values: Iterable[T]) -> None:
        key = self._key()
        items = list(values)
        if items:
            self._write(key, items)
        else:
            self._table.pop(key, None)


class TtlMapState(_Ttl, MapState):
    """A :class:`~actorflow.state.keyed.MapState` whose whole map expires; every write (put,
    put_all, remove) gives it ``ttl_ms`` again."""

    def _entry(self) -> dict[Any, Any]:
        return self._live(self._key()) or {}

    def get(self, key: Hashable, default: Any = None) -> Any:
        return self._entry().get(key, default)

    def put(self, key: Hashable, value: Any) -> None:
        self.put_all({key: value})

    def put_all(self, items: dict[Any, Any]) -> None:
        current = self._key()
        if items:
            entry = self._live(current) or {}
            entry.update(items)
            self._write(current, entry)

    def remove(self, key: Hashable) -> None:
        current = self._key()
        entry = self._live(current)
        if entry is not None:
            entry.pop(key, None)
            if entry:
                self._write(current, entry)
            else:
                del self._table[current]
