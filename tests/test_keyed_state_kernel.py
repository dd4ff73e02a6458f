"""The compiled keyed state handles (actorflow/state/_keyed.c) answer exactly as their Python
reference in actorflow/state/keyed.py: the same values (a ValueState's default object itself),
the same errors (no current key, unhashable keys), the same tables, on dicts and on other
mappings (tests/test_compiled.py checks that the handles take them when they are built and wanted)."""

from __future__ import annotations

import copy
import pickle
import sys
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actorflow.errors import StateError
from actorflow.state import keyed
from actorflow.state.descriptors import (
    ListStateDescriptor,
    MapStateDescriptor,
    StateTtl,
    ValueStateDescriptor,
)
from actorflow.state.keyed import NO_KEY, KeyedStateBackend, ValueState
from actorflow.time.clock import ManualClock

kernel = keyed._kernel

needs_compiled = pytest.mark.skipif(
    kernel is None,
    reason="actorflow.state._keyed is not built (no C compiler at install?) or ACTORFLOW_PURE_PYTHON "
    "is set: only the Python reference was tested; `pip install -e .` builds it",
)


class Mapping(MutableMapping[Any, Any]):
    """A mapping that is not a dict, as RocksDB's tables are: the handles go through its methods."""

    def __init__(self) -> None:
        self.data: dict[Any, Any] = {}

    def __getitem__(self, key: Any) -> Any:
        return self.data[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self.data[key] = value

    def __delitem__(self, key: Any) -> None:
        del self.data[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


class DictSubclass(dict[Any, Any]):
    """A dict, but not exactly: the handles call its methods, not the dict API."""


TABLES = {"dict": dict, "mapping": Mapping, "dict subclass": DictSubclass}

#: The default of the ValueState under test: value() must return this very object when unset.
DEFAULT = ["the default"]

keys = st.one_of(st.integers(0, 3), st.just(NO_KEY), st.just(("a", 1)), st.just([1]))  # [1]: unhashable
values = st.one_of(st.integers(-2, 2), st.tuples(st.integers(0, 2), st.integers(0, 2)), st.none())
operations = st.lists(
    st.one_of(
        st.tuples(st.just("key"), keys),
        st.tuples(st.sampled_from(["value", "clear", "_key", "list get", "list clear"])),
        st.tuples(st.sampled_from(["update", "list add"]), values),
        st.tuples(st.just("map get"), st.integers(0, 2)),
        st.tuples(st.just("map get or"), st.integers(0, 2), values),
        st.tuples(st.just("map put"), st.integers(0, 2), values),
        st.tuples(st.sampled_from(["update by name", "list add by name"]), values),
        st.tuples(st.sampled_from(["map get by name", "map put by name"]), st.integers(0, 2), values),
    ),
    max_size=40,
)


class World:
    """A key context and a value, a list and a map handle over tables of one kind."""

    def __init__(self, compiled: bool, context: type, table: type) -> None:
        self.keys = context()
        handles: Any = kernel if compiled else None
        value_type = handles.ValueHandle if compiled else keyed._PyValueHandle
        list_type = handles.ListHandle if compiled else keyed._PyListHandle
        map_type = handles.MapHandle if compiled else keyed._PyMapHandle
        self.tables = {"value": table(), "list": table(), "map": table()}
        self.value = value_type("value", self.keys, self.tables["value"], DEFAULT)
        self.list = list_type("list", self.keys, self.tables["list"])
        self.map = map_type("map", self.keys, self.tables["map"])

    def run(self, operation: tuple[Any, ...]) -> Any:
        """What the operation returned or raised (type and message), a default returned marked."""
        name, *args = operation
        calls = {
            "value": self.value.value,
            "update": self.value.update,
            "clear": self.value.clear,
            "_key": self.value._key,
            "list get": self.list.get,
            "list add": self.list.add,
            "list clear": self.list.clear,
            "map get": self.map.get,
            "map get or": self.map.get,
            "map put": self.map.put,
            # The parameters by name, as the Python signatures allow.
            "update by name": lambda value: self.value.update(value=value),
            "list add by name": lambda value: self.list.add(value=value),
            "map get by name": lambda key, default: self.map.get(key=key, default=default),
            "map put by name": lambda key, value: self.map.put(key=key, value=value),
        }
        if name == "key":
            self.keys.current = args[0]
            return None
        try:
            found = calls[name](*args)
        except (StateError, TypeError) as error:
            return (type(error), str(error))
        return "<the default>" if found is DEFAULT else found

    def contents(self) -> dict[str, dict[Any, Any]]:
        return {name: dict(table) for name, table in self.tables.items()}


def same_runs(operations: list[tuple[Any, ...]], table: type, context: type) -> None:
    reference = World(False, keyed._PyKeyContext, table)
    compiled = World(True, context, table)
    for operation in operations:
        assert compiled.run(operation) == reference.run(operation), operation
        assert compiled.contents() == reference.contents()


@needs_compiled
@pytest.mark.parametrize("table", TABLES.values(), ids=TABLES.keys())
@given(operations=operations)
def test_the_compiled_handles_answer_as_the_python_reference(
    table: type, operations: list[tuple[Any, ...]]
) -> None:
    assert kernel is not None
    same_runs(operations, table, kernel.KeyContext)


@needs_compiled
@given(operations=operations)
def test_the_compiled_handles_read_any_key_context_by_its_attribute(
    operations: list[tuple[Any, ...]],
) -> None:
    same_runs(operations, dict, keyed._PyKeyContext)


@needs_compiled
def test_the_compiled_handles_raise_the_state_error_without_a_current_key() -> None:
    world = World(True, keyed.KeyContext, dict)
    for call in (world.value.value, world.value.clear, world.list.get, world.value._key):
        with pytest.raises(StateError, match=r"state '(value|list)' was used without a current key"):
            call()
    with pytest.raises(StateError, match="state 'map'"):
        world.map.put(1, 2)
    assert world.contents() == {"value": {}, "list": {}, "map": {}}


@needs_compiled
@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python"])
def test_the_compiled_handles_reject_the_calls_the_python_signatures_reject(compiled: bool) -> None:
    world = World(compiled, keyed.KeyContext if compiled else keyed._PyKeyContext, dict)
    world.keys.current = 1
    wrong: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = [
        (world.value.update, (), {}),
        (world.value.update, (1, 2), {}),
        (world.value.update, (1,), {"value": 2}),
        (world.value.update, (), {"other": 1}),
        (world.list.add, (), {}),
        (world.map.get, (), {}),
        (world.map.get, (1, 2, 3), {}),
        (world.map.get, (1,), {"key": 1}),
        (world.map.put, (1,), {}),
        (world.map.put, (), {"value": 1}),
        (world.value.value, (1,), {}),
    ]
    for call, args, names in wrong:
        with pytest.raises(TypeError):
            call(*args, **names)
    assert world.contents() == {"value": {}, "list": {}, "map": {}}


@needs_compiled
def test_unset_fields_raise_attribute_errors_as_unset_slots_do() -> None:
    assert kernel is not None
    for handle_type in (kernel.ValueHandle, keyed._PyValueHandle):
        handle = handle_type.__new__(handle_type)
        with pytest.raises(AttributeError, match="_keys"):
            handle.value()
    context = keyed.KeyContext()
    del context.current
    handle = ValueState("n", context, {}, None)
    with pytest.raises(AttributeError, match="current"):
        handle.value()
    with pytest.raises(TypeError):
        keyed.KeyContext(1)  # type: ignore[call-arg]


@needs_compiled
def test_the_compiled_handles_keep_reference_counts() -> None:
    """Many calls leave the key, the default, the value and the table as referenced as before."""
    context = keyed.KeyContext()
    key, default, stored, table = ("card", 1), object(), object(), dict[Any, Any]()
    handle = ValueState[object]("n", context, table, default)
    context.current = key
    handle.value()
    before = [sys.getrefcount(item) for item in (key, default, stored, table, context)]
    for _ in range(1_000):
        handle.value()
        handle.update(stored)
        handle.value()
        handle.clear()
        handle.clear()
        handle._key()
    assert [sys.getrefcount(item) for item in (key, default, stored, table, context)] == before


def make_handles() -> tuple[KeyedStateBackend, list[Any]]:
    backend = KeyedStateBackend(clock=ManualClock())
    handles: list[Any] = [
        backend.get_state(ValueStateDescriptor("n", default=0)),
        backend.get_list_state(ListStateDescriptor("seen")),
        backend.get_map_state(MapStateDescriptor("m")),
        backend.get_state(ValueStateDescriptor("t", ttl=StateTtl(1_000))),
    ]
    backend.keys.current = "a"
    handles[0].update(3)
    handles[1].add(4)
    handles[2].put("x", 5)
    handles[3].update(6)
    return backend, handles


@pytest.mark.parametrize("copier", [copy.copy, copy.deepcopy, lambda h: pickle.loads(pickle.dumps(h))])
def test_handles_and_key_contexts_copy_and_pickle(copier: Any) -> None:
    """Whichever implementation runs, a copied handle reads the same entry of the same key."""
    backend, handles = make_handles()
    copies = copier(handles)
    assert [type(copied) for copied in copies] == [type(handle) for handle in handles]
    assert (copies[0].value(), copies[1].get(), copies[2].get("x"), copies[3].value()) == (3, [4], 5, 6)
    assert copies[3]._ttl == handles[3]._ttl  # a TTL handle's own attributes come along
    keys = copier(backend.keys)
    assert type(keys) is type(backend.keys) and keys.current == "a"


def test_value_state_stays_generic_and_its_subclasses_override_in_python() -> None:
    alias = ValueState[tuple[int, int]]
    assert alias.__origin__ is ValueState  # type: ignore[attr-defined]
    _, handles = make_handles()
    assert isinstance(handles[3], ValueState)
    assert type(handles[3]).__name__ == "TtlValueState"
