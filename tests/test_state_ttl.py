"""Keyed state with a time to live: expiry in processing time, refreshes, cleanup, checkpoints."""

from __future__ import annotations

import pickle
from operator import itemgetter
from typing import Any

import pytest

from actorflow import (
    Collector,
    Context,
    KeyedProcessFunction,
    ListStateDescriptor,
    ManualClock,
    MapStateDescriptor,
    RuntimeContext,
    StateTtl,
    ValueStateDescriptor,
)
from actorflow.errors import StateError
from actorflow.operators.process import KeyedProcessOperator
from actorflow.runtime.messages import Batch
from actorflow.state.keyed import KeyedStateBackend
from actorflow.state.ttl import PURGE_EVERY
from tests.state_backends import new_backend, operator_context

TTL = StateTtl(1_000)


def backend_on(clock: ManualClock) -> KeyedStateBackend:
    backend = new_backend(clock=clock)
    backend.keys.current = "card"
    return backend


def test_a_value_expires_ttl_after_its_last_write() -> None:
    clock = ManualClock()
    backend = backend_on(clock)
    value = backend.get_state(ValueStateDescriptor("v", default=0, ttl=TTL))
    value.update(1)
    clock.advance(600)
    value.update(2)  # a write gives it the whole ttl again
    clock.advance(600)
    assert value.value() == 2
    clock.advance(400)
    assert value.value() == 0  # the default: expired entries are never returned
    assert backend.state_size("v") == 0, "read after expiry: removed"


def test_refresh_on_read_keeps_a_value_alive_while_it_is_read() -> None:
    clock = ManualClock()
    backend = backend_on(clock)
    read_too = backend.get_state(ValueStateDescriptor("r", ttl=StateTtl(1_000, refresh_on_read=True)))
    write_only = backend.get_state(ValueStateDescriptor("w", ttl=StateTtl(1_000)))
    read_too.update("kept")
    write_only.update("gone")
    for _ in range(3):
        clock.advance(900)
        assert read_too.value() == "kept"
    assert write_only.value() is None


def test_a_list_and_a_map_expire_whole_and_every_write_refreshes_them() -> None:
    clock = ManualClock()
    backend = backend_on(clock)
    items = backend.get_list_state(ListStateDescriptor("l", ttl=TTL))
    table = backend.get_map_state(MapStateDescriptor("m", ttl=TTL))
    items.add(1)
    table.put("a", 1)
    clock.advance(900)
    items.add_all([2, 3])
    table.put("b", 2)
    clock.advance(900)
    assert items.get() == [1, 2, 3]
    assert table.items() == [("a", 1), ("b", 2)] and table.contains("a")
    table.remove("a")
    clock.advance(900)
    assert table.keys() == ["b"]  # the remove was a write: still alive
    assert items.get() == []  # 1,800 ms since its last write
    clock.advance(100)
    assert table.is_empty() and not table.contains("b") and table.get("b", "none") == "none"
    items.update([7])
    assert items.get() == [7]
    items.update([])
    assert items.get() == [] and backend.state_size("l") == 0


def test_queryable_reads_and_checkpoints_never_see_expired_entries() -> None:
    clock = ManualClock()
    backend = backend_on(clock)
    value = backend.get_state(ValueStateDescriptor("v", ttl=TTL))
    plain = backend.get_state(ValueStateDescriptor("plain"))
    for key in ("a", "b"):
        backend.keys.current = key
        value.update(key.upper())
        plain.update(key)
        clock.advance(600)
    # "a" was written 1,200 ms ago, "b" 600 ms ago.
    assert backend.states_of("a") == {"plain": "a"}
    assert backend.states_of("b") == {"v": "B", "plain": "b"}
    assert set(backend.tables()["v"]) == {"b"}, "a checkpoint takes the table without expired keys"


def test_handles_purge_keys_that_are_never_read_again() -> None:
    clock = ManualClock()
    backend = backend_on(clock)
    value = backend.get_state(ValueStateDescriptor("v", ttl=TTL))
    for n in range(PURGE_EVERY):
        backend.keys.current = n
        value.update(n)
    clock.advance(1_000)  # all of them expire; nobody reads them
    for n in range(PURGE_EVERY, 2 * PURGE_EVERY):
        backend.keys.current = n
        value.update(n)
    assert backend.state_size("v") <= PURGE_EVERY, "the expired keys were removed by writes"


class Remember(KeyedProcessFunction[tuple[str, int], Any]):
    """Keeps each key's last number with a TTL; emits what it still remembered."""

    def open(self, ctx: RuntimeContext) -> None:
        self.last = ctx.get_state(ValueStateDescriptor("last", ttl=TTL))

    def process_element(self, value: tuple[str, int], ctx: Context, out: Collector) -> None:
        out.collect((value[0], self.last.value()))
        self.last.update(value[1])


def remembering(clock: ManualClock) -> KeyedProcessOperator:
    operator = KeyedProcessOperator("remember", Remember(), itemgetter(0))
    operator.open(operator_context("remember", clock=clock, checkpointing=True))
    return operator


def test_an_entry_keeps_its_expiry_across_a_checkpoint_and_restore() -> None:
    clock = ManualClock()
    before = remembering(clock)
    before.process(Batch([("a", 1)]))
    clock.advance(500)
    before.process(Batch([("b", 2)]))
    saved = pickle.loads(pickle.dumps(before.snapshot_state()))
    clock.advance(600)  # "a" is 1,100 ms old, "b" 600 ms
    after = remembering(clock)
    after.restore_state([saved])
    assert after.process(Batch([("a", 3), ("b", 4)])).values == [("a", None), ("b", 2)]


def test_the_same_state_cannot_be_declared_with_another_ttl() -> None:
    backend = new_backend()
    backend.get_state(ValueStateDescriptor("v", ttl=TTL))
    with pytest.raises(StateError, match="already declared"):
        backend.get_state(ValueStateDescriptor("v", ttl=StateTtl(5)))


@pytest.mark.parametrize("ttl_ms", [0, -1, 1.5])
def test_a_ttl_is_a_positive_number_of_milliseconds(ttl_ms: Any) -> None:
    with pytest.raises(ValueError, match="positive int"):
        StateTtl(ttl_ms)
