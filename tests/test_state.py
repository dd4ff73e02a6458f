"""Keyed state through KeyedStateBackend, key groups, stable hashing, snapshots and rescaling."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actorflow.errors import StateError
from actorflow.state.descriptors import (
    AggregateFunction,
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    ValueStateDescriptor,
)
from actorflow.state.keyed import NO_KEY, KeyedStateBackend
from actorflow.state.keygroups import (
    DEFAULT_MAX_PARALLELISM,
    key_group,
    key_group_range,
    operator_index,
    stable_hash,
)
from tests.state_backends import new_backend


class Mean(AggregateFunction[float, tuple[float, int], float]):
    def create_accumulator(self) -> tuple[float, int]:
        return (0.0, 0)

    def add(self, value: float, accumulator: tuple[float, int]) -> tuple[float, int]:
        return (accumulator[0] + value, accumulator[1] + 1)

    def get_result(self, accumulator: tuple[float, int]) -> float:
        return accumulator[0] / accumulator[1]


def add(a: int, b: int) -> int:
    return a + b


# -- each kind of state ----------------------------------------------------------------------------


def test_value_state_with_default() -> None:
    backend = new_backend()
    count = backend.get_state(ValueStateDescriptor("count", default=0))
    backend.keys.current = "k"
    assert count.value() == 0
    count.update(count.value() + 1)
    count.update(count.value() + 1)
    assert count.value() == 2
    count.clear()
    assert count.value() == 0
    assert backend.state_size("count") == 0


def test_value_state_without_default_is_none() -> None:
    backend = new_backend()
    state = backend.get_state(ValueStateDescriptor("v"))
    backend.keys.current = 1
    assert state.value() is None


def test_list_state() -> None:
    backend = new_backend()
    items = backend.get_list_state(ListStateDescriptor("items"))
    backend.keys.current = "k"
    assert items.get() == []
    items.add(1)
    items.add(2)
    items.add_all([3, 4])
    assert items.get() == [1, 2, 3, 4]
    items.get().append(99)  # get returns a copy
    assert items.get() == [1, 2, 3, 4]
    items.update([7])
    assert items.get() == [7]
    items.update([])  # an empty list clears the entry
    assert items.get() == []
    assert backend.state_size("items") == 0
    items.add_all([5])
    items.clear()
    assert items.get() == []
    assert backend.state_size("items") == 0


def test_list_add_all_of_nothing_stores_no_entry() -> None:
    backend = new_backend()
    items = backend.get_list_state(ListStateDescriptor("items"))
    backend.keys.current = "k"
    items.add_all([])
    assert backend.state_size("items") == 0
    assert backend.snapshot() == {}


def test_map_state() -> None:
    backend = new_backend()
    seen = backend.get_map_state(MapStateDescriptor("seen"))
    backend.keys.current = "k"
    assert seen.is_empty()
    assert seen.get("x") is None
    assert seen.get("x", 0) == 0
    seen.put("x", 1)
    seen.put("y", 2)
    seen.put_all({"z": 3, "x": 10})
    assert seen.get("x") == 10
    assert seen.contains("y")
    assert not seen.contains("w")
    assert seen.keys() == ["x", "y", "z"]
    assert seen.values() == [10, 2, 3]
    assert seen.items() == [("x", 10), ("y", 2), ("z", 3)]
    assert list(seen) == ["x", "y", "z"]
    assert not seen.is_empty()
    seen.remove("y")
    seen.remove("nothing")
    assert seen.keys() == ["x", "z"]
    seen.remove("x")
    seen.remove("z")
    assert seen.is_empty()
    assert backend.state_size("seen") == 0  # the last remove drops the entry
    seen.put("a", 1)
    seen.clear()
    assert seen.is_empty()


def test_reducing_state() -> None:
    backend = new_backend()
    total = backend.get_reducing_state(ReducingStateDescriptor("total", add))
    backend.keys.current = "k"
    assert total.get() is None
    total.add(5)
    assert total.get() == 5  # the first value is kept as is
    total.add(3)
    total.add(2)
    assert total.get() == 10
    total.clear()
    assert total.get() is None


def test_aggregating_state() -> None:
    backend = new_backend()
    mean = backend.get_aggregating_state(AggregatingStateDescriptor("mean", Mean()))
    backend.keys.current = "k"
    assert mean.get() is None
    mean.add(1.0)
    mean.add(3.0)
    mean.add(8.0)
    assert mean.get() == 4.0
    mean.clear()
    assert mean.get() is None


def test_state_is_scoped_to_the_current_key() -> None:
    backend = new_backend()
    value = backend.get_state(ValueStateDescriptor("v", default=0))
    items = backend.get_list_state(ListStateDescriptor("l"))
    table = backend.get_map_state(MapStateDescriptor("m"))
    total = backend.get_reducing_state(ReducingStateDescriptor("r", add))
    mean = backend.get_aggregating_state(AggregatingStateDescriptor("a", Mean()))

    backend.keys.current = "alice"
    value.update(1)
    items.add("a1")
    table.put("from", "alice")
    total.add(10)
    mean.add(2.0)

    backend.keys.current = "bob"
    assert (value.value(), items.get(), table.is_empty(), total.get(), mean.get()) == (
        0,
        [],
        True,
        None,
        None,
    )
    value.update(2)
    items.add("b1")
    table.put("from", "bob")
    total.add(1)
    mean.add(4.0)

    backend.keys.current = "alice"
    assert (value.value(), items.get(), table.items(), total.get(), mean.get()) == (
        1,
        ["a1"],
        [("from", "alice")],
        10,
        2.0,
    )
    value.clear()
    backend.keys.current = "bob"
    assert value.value() == 2  # clearing alice's entry left bob's alone


def test_states_of_reads_one_keys_entries_whatever_the_current_key() -> None:
    backend = new_backend()
    value = backend.get_state(ValueStateDescriptor("v", default=0))
    items = backend.get_list_state(ListStateDescriptor("l"))
    table = backend.get_map_state(MapStateDescriptor("m"))
    total = backend.get_reducing_state(ReducingStateDescriptor("r", add))
    mean = backend.get_aggregating_state(AggregatingStateDescriptor("a", Mean()))
    assert backend.states_of("alice") == {}  # before any key: nothing, and no StateError

    backend.keys.current = "alice"
    value.update(1)
    items.add("a1")
    table.put("from", "alice")
    total.add(10)
    mean.add(2.0)
    backend.keys.current = ("bob", 2)
    items.add("b1")
    value.update(5)
    value.clear()  # a cleared entry is no state

    assert backend.states_of("alice") == {
        "v": 1,
        "l": ["a1"],
        "m": {"from": "alice"},
        "r": 10,
        "a": (2.0, 1),
    }
    assert backend.states_of(("bob", 2)) == {"l": ["b1"]}
    assert backend.states_of("carol") == {}
    assert backend.keys.current == ("bob", 2)  # reading moved no key
    backend.states_of("alice").clear()  # the dict is the caller's: state keeps its entries
    backend.keys.current = NO_KEY
    assert backend.states_of("alice")["v"] == 1


def test_two_handles_on_the_same_descriptor_share_the_entries() -> None:
    backend = new_backend()
    descriptor = ValueStateDescriptor("v", default=0)
    first, second = backend.get_state(descriptor), backend.get_state(descriptor)
    backend.keys.current = "k"
    first.update(5)
    assert second.value() == 5


Use = Callable[[KeyedStateBackend], object]
USES_WITHOUT_KEY: dict[str, Use] = {
    "value.value": lambda b: b.get_state(ValueStateDescriptor("v")).value(),
    "value.update": lambda b: b.get_state(ValueStateDescriptor("v")).update(1),
    "value.clear": lambda b: b.get_state(ValueStateDescriptor("v")).clear(),
    "list.get": lambda b: b.get_list_state(ListStateDescriptor("l")).get(),
    "list.add": lambda b: b.get_list_state(ListStateDescriptor("l")).add(1),
    "list.add_all": lambda b: b.get_list_state(ListStateDescriptor("l")).add_all([1]),
    "list.update": lambda b: b.get_list_state(ListStateDescriptor("l")).update([1]),
    "map.get": lambda b: b.get_map_state(MapStateDescriptor("m")).get("x"),
    "map.put": lambda b: b.get_map_state(MapStateDescriptor("m")).put("x", 1),
    "map.remove": lambda b: b.get_map_state(MapStateDescriptor("m")).remove("x"),
    "map.contains": lambda b: b.get_map_state(MapStateDescriptor("m")).contains("x"),
    "map.is_empty": lambda b: b.get_map_state(MapStateDescriptor("m")).is_empty(),
    "reducing.get": lambda b: b.get_reducing_state(ReducingStateDescriptor("r", add)).get(),
    "reducing.add": lambda b: b.get_reducing_state(ReducingStateDescriptor("r", add)).add(1),
    "aggregating.get": lambda b: b.get_aggregating_state(AggregatingStateDescriptor("a", Mean())).get(),
    "aggregating.add": lambda b: b.get_aggregating_state(AggregatingStateDescriptor("a", Mean())).add(1.0),
}


@pytest.mark.parametrize("use", USES_WITHOUT_KEY.values(), ids=USES_WITHOUT_KEY.keys())
def test_state_without_a_current_key_raises_state_error(use: Use) -> None:
    backend = new_backend()
    assert backend.keys.current is NO_KEY
    with pytest.raises(StateError, match="without a current key"):
        use(backend)


def test_state_after_the_key_is_reset_raises_state_error() -> None:
    backend = new_backend()
    state = backend.get_state(ValueStateDescriptor("v"))
    backend.keys.current = "k"
    state.update(1)
    backend.keys.current = NO_KEY
    with pytest.raises(StateError):
        state.value()


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (ValueStateDescriptor("s", default=0), ValueStateDescriptor("s", default=1)),
        (ValueStateDescriptor("s"), ListStateDescriptor("s")),
        (ListStateDescriptor("s"), MapStateDescriptor("s")),
        (ReducingStateDescriptor("s", add), ReducingStateDescriptor("s", max)),
    ],
    ids=["value-default", "value-list", "list-map", "reduce-function"],
)
def test_redeclaring_a_name_with_another_descriptor_raises_state_error(first: Any, second: Any) -> None:
    getters = {
        ValueStateDescriptor: KeyedStateBackend.get_state,
        ListStateDescriptor: KeyedStateBackend.get_list_state,
        MapStateDescriptor: KeyedStateBackend.get_map_state,
        ReducingStateDescriptor: KeyedStateBackend.get_reducing_state,
    }
    backend = new_backend()
    getters[type(first)](backend, first)
    with pytest.raises(StateError, match="already declared"):
        getters[type(second)](backend, second)
    getters[type(first)](backend, first)  # the same descriptor again is fine


# -- snapshots and rescaling -----------------------------------------------------------------------


def filled_backend(keys: list[Any], max_parallelism: int = DEFAULT_MAX_PARALLELISM) -> KeyedStateBackend:
    backend = new_backend(max_parallelism)
    value = backend.get_state(ValueStateDescriptor("v"))
    items = backend.get_list_state(ListStateDescriptor("l"))
    for n, key in enumerate(keys):
        backend.keys.current = key
        value.update(n)
        items.add_all([key, n])
    backend.keys.current = NO_KEY
    return backend


KEYS: list[Any] = [f"card-{i}" for i in range(40)] + list(range(20)) + [("a", 1), b"raw", None]


def test_snapshot_groups_entries_by_key_group() -> None:
    snapshot = filled_backend(KEYS).snapshot()
    seen = set()
    for group, tables in snapshot.items():
        assert 0 <= group < DEFAULT_MAX_PARALLELISM
        assert set(tables) == {"v", "l"}
        for key in tables["v"]:
            assert key_group(key) == group
            seen.add(key)
        assert set(tables["l"]) == set(tables["v"])
    assert seen == set(KEYS)
    assert snapshot[key_group("card-3")]["v"]["card-3"] == 3
    assert snapshot[key_group("card-3")]["l"]["card-3"] == ["card-3", 3]


@pytest.mark.parametrize("parallelism", [2, 3])
def test_restore_loads_only_the_owned_key_groups(parallelism: int) -> None:
    max_p = 16  # few groups, so several keys share one and every instance owns some
    snapshot = filled_backend(KEYS, max_p).snapshot()
    instances = []
    for index in range(parallelism):
        backend = new_backend(max_p)
        value = backend.get_state(ValueStateDescriptor("v"))
        items = backend.get_list_state(ListStateDescriptor("l"))
        backend.restore(snapshot, key_group_range(index, max_p, parallelism))
        instances.append((backend, value, items))

    for n, key in enumerate(KEYS):
        holders = []
        for index, (backend, value, items) in enumerate(instances):
            backend.keys.current = key
            if value.value() is not None:
                holders.append(index)
                assert value.value() == n
                assert items.get() == [key, n]
        assert holders == [operator_index(key_group(key, max_p), max_p, parallelism)], key
    assert sum(backend.state_size("v") for backend, _, _ in instances) == len(KEYS)


def test_snapshot_is_not_changed_by_later_updates() -> None:
    backend = new_backend()
    items = backend.get_list_state(ListStateDescriptor("l"))
    table = backend.get_map_state(MapStateDescriptor("m"))
    backend.keys.current = "k"
    items.add(1)
    table.put("x", 1)
    snapshot = backend.snapshot()
    items.add(2)
    table.put("y", 2)
    group = snapshot[key_group("k")]
    assert group["l"]["k"] == [1]
    assert group["m"]["k"] == {"x": 1}


def test_state_restored_from_a_snapshot_does_not_change_it() -> None:
    snapshot = filled_backend(["k"]).snapshot()
    backend = new_backend()
    items = backend.get_list_state(ListStateDescriptor("l"))
    backend.restore(snapshot, range(DEFAULT_MAX_PARALLELISM))
    backend.keys.current = "k"
    items.add("after")
    assert snapshot[key_group("k")]["l"]["k"] == ["k", 0]


# -- key groups ------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.integers(1, 512).flatmap(lambda m: st.tuples(st.just(m), st.integers(1, m))))
def test_every_key_group_is_owned_by_exactly_one_instance(case: tuple[int, int]) -> None:
    max_p, parallelism = case
    ranges = [key_group_range(index, max_p, parallelism) for index in range(parallelism)]
    # contiguous, in order, covering 0..max_p-1 without overlap, none empty
    assert [group for r in ranges for group in r] == list(range(max_p))
    assert all(len(r) > 0 for r in ranges)
    for index, owned in enumerate(ranges):
        assert all(operator_index(group, max_p, parallelism) == index for group in owned)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    st.one_of(st.text(), st.binary(), st.integers(), st.booleans(), st.none(), st.floats(allow_nan=False)),
    st.integers(1, 1024),
)
def test_key_group_is_in_range_and_deterministic(key: Any, max_p: int) -> None:
    group = key_group(key, max_p)
    assert 0 <= group < max_p
    assert group == stable_hash(key) % max_p == key_group(key, max_p)
    assert 0 <= stable_hash(key) < 2**32


# Fixed values: if the hash ever changes, keys move to other key groups and old snapshots restore
# onto the wrong instances. Change these only together with a snapshot migration.
KNOWN_HASHES: list[tuple[Any, int]] = [
    ("", 0),
    ("a", 0xE8B7BE43),  # the CRC-32 of b"a"
    (b"a", 0xE8B7BE43),
    ("card-1", 1693242260),
    (0, 0),
    (1, 269157861),
    (-1, 4073438587),
    (2**40, 2082894840),
    (("a", 1), 2147133133),
    ((), 3430008),
    (None, 0),
    (1.5, 2270993338),
]


@pytest.mark.parametrize(("key", "expected"), KNOWN_HASHES, ids=[repr(k) for k, _ in KNOWN_HASHES])
def test_stable_hash_known_values(key: Any, expected: int) -> None:
    assert stable_hash(key) == expected


def test_equal_keys_of_different_types_hash_alike() -> None:
    # Python treats them as the same dict key, so they must land in the same key group
    assert stable_hash(True) == stable_hash(1)
    assert stable_hash(False) == stable_hash(0)
    assert stable_hash(2.0) == stable_hash(2)
    assert stable_hash(-0.0) == stable_hash(0)


@pytest.mark.parametrize("key", [[1], {"a": 1}, object(), frozenset({1}), ("ok", [1])])
def test_stable_hash_refuses_keys_it_cannot_hash_stably(key: Any) -> None:
    with pytest.raises(TypeError, match="stably"):
        stable_hash(key)


def test_stable_hash_is_the_same_in_another_process() -> None:
    keys = [k for k, _ in KNOWN_HASHES] + ["card-42", ("user", "x", 3), "ß-ünïcode"]
    code = (
        "import sys; from actorflow.state.keygroups import stable_hash\n"
        f"keys = {keys!r}\n"
        "print([stable_hash(k) for k in keys]); print(hash('card-42'))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=30
    )
    hashes, salted = result.stdout.splitlines()
    assert hashes == repr([stable_hash(k) for k in keys])
    if os.environ.get("PYTHONHASHSEED") != "12345":
        assert int(salted) != hash("card-42")  # the child really had another str hash salt
