"""Keyed state: per state name, a table from key to value, scoped to the current key.

A keyed operator sets :attr:`KeyContext.current` before it calls user code; every state handle reads
and writes the entry of that key only. The tables come from a
:class:`~actorflow.state.backends.StateTables`: dicts on the heap (the default), or mappings over
an embedded RocksDB (:mod:`actorflow.state.rocksdb`). Snapshots are cut per key group
(:meth:`KeyedStateBackend.snapshot`), so a restore can hand key groups to a different parallelism;
the hot path never computes a key group.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Iterable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

from actorflow.compiled import load
from actorflow.errors import StateError
from actorflow.state.backends import HEAP, StateTables
from actorflow.state.descriptors import (
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateDescriptor,
    ValueStateDescriptor,
)
from actorflow.state.keygroups import DEFAULT_MAX_PARALLELISM, KeyGroupFilter, KeyGroups
from actorflow.time.clock import Clock, SystemClock

__all__ = [
    "AggregatingState",
    "KeyContext",
    "KeyedStateBackend",
    "ListState",
    "MapState",
    "NO_KEY",
    "ReducingState",
    "ValueState",
]

T = TypeVar("T")


class _NoKey:
    def __repr__(self) -> str:
        return "NO_KEY"


#: The current key outside any keyed call.
NO_KEY: Final = _NoKey()


class _PyKeyContext:
    """Holds the key the state handles work on; set by the keyed operator per record and timer."""

    __slots__ = ("current",)

    def __init__(self) -> None:
        self.current: Any = NO_KEY


def _no_key(name: str) -> StateError:
    return StateError(
        f"state {name!r} was used without a current key: keyed state works only inside a keyed "
        "operator's process_element or on_timer"
    )


# The handles' per-record methods, in Python: the reference of the compiled ones in
# actorflow/state/_keyed.c (a hypothesis test checks they answer the same), and the fallback
# without them. Only what a keyed function calls per record is here; the public classes below add
# the rest in Python on top of whichever base is taken.


class _PyHandle:
    __slots__ = ("_keys", "_name", "_table")

    def __init__(self, name: str, keys: KeyContext, table: MutableMapping[Any, Any]) -> None:
        self._name = name
        self._keys = keys
        self._table = table

    def _key(self) -> Any:
        key = self._keys.current
        if key is NO_KEY:
            raise _no_key(self._name)
        return key

    def clear(self) -> None:
        """Remove the current key's entry."""
        key = self._keys.current  # the check of _key(), without a call
        if key is NO_KEY:
            raise _no_key(self._name)
        self._table.pop(key, None)


class _PyValueHandle(_PyHandle):
    __slots__ = ("_default",)

    def __init__(self, name: str, keys: KeyContext, table: MutableMapping[Any, Any], default: Any) -> None:
        super().__init__(name, keys, table)
        self._default = default

    def value(self) -> Any:
        """The stored value, or the descriptor's default."""
        key = self._keys.current
        if key is NO_KEY:
            raise _no_key(self._name)
        return self._table.get(key, self._default)

    def update(self, value: Any) -> None:
        key = self._keys.current
        if key is NO_KEY:
            raise _no_key(self._name)
        self._table[key] = value


class _PyListHandle(_PyHandle):
    __slots__ = ()

    def get(self) -> list[Any]:
        """The stored values (a new list; empty when nothing was stored)."""
        return list(self._table.get(self._key(), ()))

    def add(self, value: Any) -> None:
        key = self._key()
        entry = self._table.get(key)
        if entry is None:
            self._table[key] = [value]
        else:
            entry.append(value)


class _PyMapHandle(_PyHandle):
    __slots__ = ()

    def get(self, key: Hashable, default: Any = None) -> Any:
        current = self._keys.current
        if current is NO_KEY:
            raise _no_key(self._name)
        entry = self._table.get(current)
        return default if entry is None else entry.get(key, default)

    def put(self, key: Hashable, value: Any) -> None:
        current = self._keys.current
        if current is NO_KEY:
            raise _no_key(self._name)
        entry = self._table.get(current)
        if entry is None:
            self._table[current] = {key: value}
        else:
            entry[key] = value


#: The version of ``actorflow.state._keyed`` this module expects (its ``VERSION``).
_KERNEL_VERSION = 2

#: The compiled handles, or None (then the Python ones above run). Chosen once, here.
_kernel = load("actorflow.state._keyed", _KERNEL_VERSION)

if TYPE_CHECKING or _kernel is None:
    KeyContext = _PyKeyContext
    _Handle = _PyHandle
    _ValueHandle = _PyValueHandle
    _ListHandle = _PyListHandle
    _MapHandle = _PyMapHandle
else:
    _kernel.configure(NO_KEY, _no_key)
    KeyContext = _kernel.KeyContext
    _Handle = _kernel.Handle
    _ValueHandle = _kernel.ValueHandle
    _ListHandle = _kernel.ListHandle
    _MapHandle = _kernel.MapHandle


class ValueState(_ValueHandle, Generic[T]):
    """One value for the current key."""

    __slots__ = ()

    if TYPE_CHECKING:  # the base's methods, typed

        def value(self) -> T:
            """The stored value, or the descriptor's default."""

        def update(self, value: T) -> None: ...


class ListState(_ListHandle, Generic[T]):
    """A list of values for the current key."""

    __slots__ = ()

    if TYPE_CHECKING:  # the base's methods, typed

        def get(self) -> list[T]:
            """The stored values (a new list; empty when nothing was stored)."""

        def add(self, value: T) -> None: ...

    def add_all(self, values: Iterable[T]) -> None:
        key = self._key()
        items = list(values)
        if items:
            self._table.setdefault(key, []).extend(items)

    def update(self, values: Iterable[T]) -> None:
        """Replace the list; an empty one clears the entry."""
        key = self._key()
        items = list(values)
        if items:
            self._table[key] = items
        else:
            self._table.pop(key, None)


class MapState(_MapHandle):
    """A dict for the current key."""

    __slots__ = ()

    def _entry(self) -> dict[Any, Any]:
        return self._table.get(self._key(), {})  # type: ignore[no-any-return]

    def put_all(self, items: dict[Any, Any]) -> None:
        key = self._key()
        if items:
            self._table.setdefault(key, {}).update(items)

    def remove(self, key: Hashable) -> None:
        current = self._key()
        entry = self._table.get(current)
        if entry is not None:
            entry.pop(key, None)
            if not entry:
                del self._table[current]

    def contains(self, key: Hashable) -> bool:
        return key in self._entry()

    def keys(self) -> list[Any]:
        return list(self._entry())

    def values(self) -> list[Any]:
        return list(self._entry().values())

    def items(self) -> list[tuple[Any, Any]]:
        return list(self._entry().items())

    def is_empty(self) -> bool:
        return not self._entry()

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys())


class ReducingState(_Handle, Generic[T]):
    """One value for the current key, folded with every added value."""

    __slots__ = ("_reduce",)

    def __init__(self, name: str, keys: KeyContext, table: MutableMapping[Any, Any], reduce: Any) -> None:
        super().__init__(name, keys, table)
        self._reduce = reduce

    def get(self) -> T | None:
        value: T | None = self._table.get(self._key())
        return value

    def add(self, value: T) -> None:
        key = self._key()
        table = self._table
        if key in table:
            table[key] = self._reduce(table[key], value)
        else:
            table[key] = value


class AggregatingState(_Handle):
    """One accumulator for the current key; :meth:`get` returns the aggregate's result."""

    __slots__ = ("_aggregate",)

    def __init__(
        self, name: str, keys: KeyContext, table: MutableMapping[Any, Any], aggregate: Any
    ) -> None:
        super().__init__(name, keys, table)
        self._aggregate = aggregate

    def get(self) -> Any:
        key = self._key()
        if key not in self._table:
            return None
        return self._aggregate.get_result(self._table[key])

    def add(self, value: Any) -> None:
        key = self._key()
        table = self._table
        aggregate = self._aggregate
        accumulator = table[key] if key in table else aggregate.create_accumulator()
        table[key] = aggregate.add(value, accumulator)


class KeyedStateBackend:
    """The heap keyed state of one operator instance.

    >>> backend = KeyedStateBackend()
    >>> count = backend.get_state(ValueStateDescriptor("count", default=0))
    >>> backend.keys.current = "card-1"
    >>> count.update(count.value() + 1)
    >>> count.value()
    1
    """

    def __init__(
        self,
        max_parallelism: int = DEFAULT_MAX_PARALLELISM,
        clock: Clock | None = None,
        tables: StateTables | None = None,
        keys: KeyContext | None = None,
    ) -> None:
        self.keys = keys if keys is not None else KeyContext()
        self.max_parallelism = max_parallelism
        #: The processing time TTL states expire by (the operator's clock).
        self.clock: Clock = clock if clock is not None else SystemClock()
        #: Where the tables come from: the heap's dicts unless a backend was chosen.
        self.store: StateTables = tables if tables is not None else HEAP
        self._tables: dict[str, MutableMapping[Any, Any]] = {}
        self._descriptors: dict[str, StateDescriptor] = {}
        #: The names of the states with a time to live: their entries are ``(value, expires_at)``.
        self._ttl: set[str] = set()

    def _table(self, descriptor: StateDescriptor) -> MutableMapping[Any, Any]:
        name = descriptor.name
        known = self._descriptors.get(name)
        if known is not None and known != descriptor:
            raise StateError(f"state {name!r} is already declared as {known!r}, not {descriptor!r}")
        self._descriptors[name] = descriptor
        table = self._tables.get(name)
        if table is None:
            table = self._tables[name] = self.store.table(name, descriptor)
        elif known is None:  # restored before it was declared
            self.store.declare(table, descriptor)
        return table

    def _table_named(self, name: str) -> MutableMapping[Any, Any]:
        """State ``name``'s table, made when a restore brings a state not declared yet."""
        table = self._tables.get(name)
        if table is None:
            table = self._tables[name] = self.store.table(name, self._descriptors.get(name))
        return table

    def close(self) -> None:
        """Release the state (the RocksDB backend deletes its files); it is unusable after."""
        self.store.close()

    def get_state(self, descriptor: ValueStateDescriptor[T]) -> ValueState[T]:
        table = self._table(descriptor)
        if descriptor.ttl is not None:
            from actorflow.state.ttl import TtlValueState  # it builds on this module

            self._ttl.add(descriptor.name)
            return TtlValueState(
                descriptor.name, self.keys, table, descriptor.default, self.clock, descriptor.ttl
            )
        return ValueState(descriptor.name, self.keys, table, descriptor.default)

    def get_list_state(self, descriptor: ListStateDescriptor[T]) -> ListState[T]:
        table = self._table(descriptor)
        if descriptor.ttl is not None:
            from actorflow.state.ttl import TtlListState

            self._ttl.add(descriptor.name)
            return TtlListState(descriptor.name, self.keys, table, self.clock, descriptor.ttl)
        return ListState(descriptor.name, self.keys, table)

    def get_map_state(self, descriptor: MapStateDescriptor) -> MapState:
        table = self._table(descriptor)
        if descriptor.ttl is not None:
            from actorflow.state.ttl import TtlMapState

            self._ttl.add(descriptor.name)
            return TtlMapState(descriptor.name, self.keys, table, self.clock, descriptor.ttl)
        return MapState(descriptor.name, self.keys, table)

    def get_reducing_state(self, descriptor: ReducingStateDescriptor[T]) -> ReducingState[T]:
        return ReducingState(descriptor.name, self.keys, self._table(descriptor), descriptor.reduce)

    def get_aggregating_state(self, descriptor: AggregatingStateDescriptor) -> AggregatingState:
        return AggregatingState(descriptor.name, self.keys, self._table(descriptor), descriptor.aggregate)

    def state_size(self, name: str) -> int:
        """How many keys have an entry in state ``name``."""
        return len(self._tables.get(name, {}))

    def largest_state(self) -> int:
        """How many keys the state with the most entries has (0 with no state).

        >>> backend = KeyedStateBackend()
        >>> backend.keys.current = "a"
        >>> backend.get_state(ValueStateDescriptor("n")).update(1)
        >>> backend.largest_state()
        1
        """
        return max(map(len, self._tables.values()), default=0)

    def keys_in(self, name: str) -> list[Any]:
        """The keys that have an entry in state ``name`` (a copy: safe to change state meanwhile)."""
        return list(self._tables.get(name, ()))

    def states_of(self, key: Hashable) -> dict[str, Any]:
        """Every state that has an entry for ``key``, by state name: for reading one key from
        outside the operator (queryable state), whatever the current key is.

        The dict is new, the values are the live ones (a list or dict in state is the object the
        operator updates): read or copy them before the operator runs again. Costs one dict
        lookup per state name; a key without any entry gives ``{}``.

        >>> backend = KeyedStateBackend()
        >>> count = backend.get_state(ValueStateDescriptor("count", default=0))
        >>> seen = backend.get_list_state(ListStateDescriptor("seen"))
        >>> backend.keys.current = "card-1"
        >>> count.update(2)
        >>> seen.add(40)
        >>> backend.keys.current = "card-2"
        >>> count.update(1)
        >>> backend.states_of("card-1"), backend.states_of("card-2"), backend.states_of("card-3")
        ({'count': 2, 'seen': [40]}, {'count': 1}, {})
        """
        found = {name: table[key] for name, table in self._tables.items() if key in table}
        if self._ttl:
            now = self.clock.now()
            for name in self._ttl & found.keys():
                value, expires_at = found.pop(name)
                if expires_at > now:
                    found[name] = value
        return found

    def entry_of(self, key: Hashable) -> dict[str, Any]:
        """Every state's entry for ``key`` as stored, ``{state name: value}`` (a TTL state's is
        ``(value, expires_at)``): for an incremental snapshot, which :meth:`load_entries` takes
        back. An expired TTL entry is removed and left out. The values are the live ones (the
        caller pickles them at once); one dict lookup per state name.

        >>> backend = KeyedStateBackend()
        >>> backend.keys.current = "a"
        >>> backend.get_state(ValueStateDescriptor("n")).update(1)
        >>> backend.entry_of("a"), backend.entry_of("b")
        ({'n': 1}, {})
        """
        found = {name: table[key] for name, table in self._tables.items() if key in table}
        if self._ttl and found:
            now = self.clock.now()
            for name in self._ttl & found.keys():
                if found[name][1] <= now:
                    del found[name]
                    del self._tables[name][key]
        return found

    def entries_of(self, keys: set[Hashable]) -> dict[str, dict[Hashable, Any]]:
        """Every state's entries for ``keys`` as stored, ``{state name: {key: value}}`` (a TTL
        state's value is ``(value, expires_at)``; expired ones are left out), for an incremental
        heap checkpoint's change; one dict lookup per key and state name.

        >>> backend = KeyedStateBackend()
        >>> backend.keys.current = "a"
        >>> backend.get_state(ValueStateDescriptor("n")).update(1)
        >>> backend.entries_of({"a", "b"})
        {'n': {'a': 1}}
        """
        found: dict[str, dict[Hashable, Any]] = {}
        now = self.clock.now() if self._ttl else 0
        for name, table in self._tables.items():
            entries = {key: table[key] for key in keys if key in table}
            if name in self._ttl:
                entries = {key: entry for key, entry in entries.items() if entry[1] > now}
            if entries:
                found[name] = entries
        return found

    def load_entries(self, entries: Iterable[tuple[Hashable, dict[str, Any]]]) -> None:
        """Take over ``(key, entry)`` pairs of :meth:`entry_of` (just unpickled: nobody else holds
        them): each named state's entry for the key is set (nothing else is removed).

        >>> restored = KeyedStateBackend()
        >>> restored.load_entries([("a", {"n": 1})])
        >>> restored.states_of("a")
        {'n': 1}
        """
        tables = self._tables
        for key, entry in entries:
            for name, value in entry.items():
                table = tables.get(name)
                if table is None:
                    table = self._table_named(name)
                table[key] = value

    def snapshot(
        self, *, copy_values: bool = True, groups_of: KeyGroups | None = None
    ) -> dict[int, dict[str, dict[Any, Any]]]:
        """A deep copy of all state, cut by key group: ``{key_group: {state: {key: value}}}``.

        Later updates of the state never show in the snapshot. ``copy_values=False`` shares the
        values: for a caller that serialises the result before the state changes again (a
        checkpoint pickles it at once, which is a copy already). ``groups_of`` is a memo of key
        groups to share with the caller (timers are cut by the same keys).
        """
        groups: dict[int, dict[str, dict[Any, Any]]] = {}
        group_of = KeyGroups(self.max_parallelism) if groups_of is None else groups_of
        for name, table in self._tables.items():
            by_group: dict[int, dict[Any, Any]] = {}
            for key, value in table.items():
                group = group_of[key]
                entries = by_group.get(group)
                if entries is None:
                    entries = by_group[group] = {}
                    groups.setdefault(group, {})[name] = entries
                entries[key] = value
        return copy.deepcopy(groups) if copy_values else groups

    def tables(self) -> dict[str, dict[Any, Any]]:
        """Every state's table, ``{state name: {key: value}}``, not cut by key group: for a
        checkpoint, which pickles it before the state changes again. On the heap these are the
        live dicts (no copy); the RocksDB backend flushes its cache and reads every state back into
        dicts of the same shape, so a snapshot restores on either backend. Expired entries of TTL
        states are removed first (their entries are ``(value, expires_at)``)."""
        if self._ttl:
            from actorflow.state.ttl import purge_expired

            now = self.clock.now()
            for name in self._ttl:
                purge_expired(self._tables[name], now)
        return self.store.export(self._tables)

    def load_tables(self, tables: dict[str, dict[Any, Any]], keep: KeyGroupFilter | None = None) -> None:
        """Take over the entries of a checkpoint's :meth:`tables` (just unpickled: nobody else holds
        them), only those ``keep`` accepts unless it is None or takes all.

        >>> saved = KeyedStateBackend()
        >>> saved.keys.current = "a"
        >>> saved.get_state(ValueStateDescriptor("n")).update(1)
        >>> restored = KeyedStateBackend()
        >>> restored.load_tables(saved.tables())
        >>> restored.states_of("a")
        {'n': 1}
        """
        for name, entries in tables.items():
            table = self._table_named(name)
            if keep is None or keep.takes_all:
                table.update(entries)
            elif not keep.takes_none:
                table.update({key: value for key, value in entries.items() if keep(key)})

    def restore(
        self, groups: dict[int, dict[str, dict[Any, Any]]], owned: range, *, copy_values: bool = True
    ) -> None:
        """Load the key groups in ``owned`` from a snapshot (others belong to other instances).
        ``copy_values=False`` takes the values over (they were just unpickled: nobody else has them)."""
        for group, tables in groups.items():
            if group in owned:
                for name, entries in tables.items():
                    self._table_named(name).update(copy.deepcopy(entries) if copy_values else entries)
