"""Routers split batches over receivers; watermarks reach every receiver at the right position."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actorflow.plan.partitioners import BroadcastRouter, HashRouter, RebalanceRouter, scatter
from actorflow.runtime.mailbox import Mailbox
from actorflow.runtime.messages import Barrier, Batch, EndOfStream
from actorflow.runtime.output import Output, compact
from actorflow.state.keygroups import key_group, operator_index

FAST = settings(max_examples=40, deadline=None, derandomize=True)


def parts_of(parts: list[Batch | None]) -> list[Batch]:
    assert all(part is not None for part in parts)
    return [part for part in parts if part is not None]


# -- scatter ---------------------------------------------------------------------------------------


def test_scatter_sends_each_record_to_its_target_in_order() -> None:
    parts = parts_of(scatter(Batch(["a", "b", "c", "d"]), [1, 0, 1, 2], 3))
    assert [part.values for part in parts] == [["b"], ["a", "c"], ["d"]]
    assert all(part.timestamps is None and part.marks is None for part in parts)


def test_scatter_moves_timestamps_with_their_records() -> None:
    parts = parts_of(scatter(Batch(["a", "b", "c"], [10, 20, 30]), [1, 0, 1], 2))
    assert [(p.values, p.timestamps) for p in parts] == [(["b"], [20]), (["a", "c"], [10, 30])]
    assert all(part.marks is None for part in parts)


def test_scatter_gives_every_receiver_the_marks_at_its_own_positions() -> None:
    # marks: before everything, after "a", twice after "b", after the end
    source = Batch(["a", "b", "c"], None, [(0, 1), (1, 5), (2, 6), (2, 7), (3, 9)])
    parts = parts_of(scatter(source, [1, 0, 1], 2))
    # marks with no record of the part between them collapse to the last one
    assert parts[0].values == ["b"]  # unfolded: (0, 1), (0, 5), (1, 6), (1, 7), (1, 9)
    assert parts[0].marks == [(0, 5), (1, 9)]
    assert parts[1].values == ["a", "c"]  # unfolded: (0, 1), (1, 5), (1, 6), (1, 7), (2, 9)
    assert parts[1].marks == [(0, 1), (1, 7), (2, 9)]


def test_scatter_of_a_watermark_only_batch() -> None:
    parts = parts_of(scatter(Batch([], None, [(0, 4)]), [], 3))
    assert [(p.values, p.marks) for p in parts] == [([], [(0, 4)])] * 3


@st.composite
def batches_with_targets(draw: st.DrawFn) -> tuple[Batch, list[int], int]:
    receivers = draw(st.integers(1, 5))
    size = draw(st.integers(0, 20))
    targets = draw(st.lists(st.integers(0, receivers - 1), min_size=size, max_size=size))
    timestamps = draw(st.none() | st.lists(st.integers(0, 1000), min_size=size, max_size=size))
    positions = sorted(draw(st.lists(st.integers(0, size), max_size=6)))
    marks = [(position, 100 + n) for n, position in enumerate(positions)] or None
    values = [f"r{i}" for i in range(size)]  # unique, so each record can be traced
    return Batch(values, timestamps, marks), targets, receivers


def collapse(marks: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Of marks at the same position (no record between them) only the last one matters."""
    return [mark for n, mark in enumerate(marks) if n + 1 == len(marks) or marks[n + 1][0] != mark[0]]


def check_split(source: Batch, parts: list[Batch], targets: list[int]) -> None:
    """The consistency rules every split keeps, for records routed to ``targets``."""
    values = source.values
    # concatenating the parts in any order gives a permutation of the input
    assert sorted(v for part in parts for v in part.values) == sorted(values)
    input_marks = source.marks or []
    for receiver, part in enumerate(parts):
        mine = [i for i, target in enumerate(targets) if target == receiver]
        assert part.values == [values[i] for i in mine]  # input order kept within a part
        if source.timestamps is None:
            assert part.timestamps is None
        else:
            assert part.timestamps == [source.timestamps[i] for i in mine]
        # every receiver gets the watermarks in order, each at the number of its own records
        # that came before the mark in the input; marks left with no record between them
        # collapse to the last one, so the last watermark always arrives
        expected = [(sum(1 for i in mine if i < position), w) for position, w in input_marks]
        assert (part.marks or []) == collapse(expected)


@FAST
@given(batches_with_targets())
def test_scatter_keeps_records_timestamps_and_marks_consistent(
    case: tuple[Batch, list[int], int],
) -> None:
    source, targets, receivers = case
    parts = parts_of(scatter(source, targets, receivers))
    assert len(parts) == receivers
    check_split(source, parts, targets)


# -- HashRouter ------------------------------------------------------------------------------------


keys = st.one_of(
    st.text(max_size=8), st.integers(-(2**40), 2**40), st.tuples(st.text(max_size=3), st.integers())
)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.lists(keys, max_size=20), st.sampled_from([16, 128]))
def test_hash_router_sends_a_key_to_the_owner_of_its_key_group(key_list: list[Any], max_p: int) -> None:
    records = [(key, n) for n, key in enumerate(key_list)]
    for receivers in range(1, 9):
        router = HashRouter(lambda record: record[0], max_p, receivers)
        # twice, in separate batches: the same key lands on the same receiver every time
        for _ in range(2):
            parts = parts_of(router.split(Batch(list(records)), receivers))
            assert len(parts) == receivers
            for receiver, part in enumerate(parts):
                for key, _ in part.values:
                    assert receiver == operator_index(key_group(key, max_p), max_p, receivers)
            assert sorted(n for part in parts for _, n in part.values) == list(range(len(records)))


def test_hash_router_carries_marks_and_timestamps() -> None:
    router = HashRouter(lambda record: record, 128, 3)
    values = ["a", "b", "c", "a"]
    source = Batch(values, [1, 2, 3, 4], [(2, 50), (4, 60)])
    parts = parts_of(router.split(source, 3))
    targets = [operator_index(key_group(v), 128, 3) for v in values]
    check_split(source, parts, targets)


# -- RebalanceRouter -------------------------------------------------------------------------------


def test_rebalance_continues_round_robin_across_batches() -> None:
    router = RebalanceRouter()
    first = parts_of(router.split(Batch([0, 1, 2, 3]), 3))
    assert [part.values for part in first] == [[0, 3], [1], [2]]
    second = parts_of(router.split(Batch([4, 5]), 3))
    assert [part.values for part in second] == [[], [4], [5]]  # record 4 is the 5th: receiver 1


@st.composite
def batch_sequences(draw: st.DrawFn) -> tuple[int, list[Batch]]:
    receivers = draw(st.integers(1, 5))
    batches = []
    counter = 0
    for _ in range(draw(st.integers(1, 6))):
        size = draw(st.integers(0, 7))
        values = list(range(counter, counter + size))
        counter += size
        timestamps = [v * 10 for v in values] if draw(st.booleans()) else None
        marks = [(p, 1000 + counter + p) for p in sorted(draw(st.lists(st.integers(0, size), max_size=3)))]
        batches.append(Batch(values, timestamps, marks or None))
    return receivers, batches


@FAST
@given(batch_sequences())
def test_rebalance_record_n_goes_to_receiver_n_mod_receivers(case: tuple[int, list[Batch]]) -> None:
    # mixes plain batches (fast path) with stamped and marked ones (scatter path)
    receivers, batches = case
    router = RebalanceRouter()
    start = 0
    for source in batches:
        parts = parts_of(router.split(source, receivers))
        assert len(parts) == receivers
        targets = [(start + i) % receivers for i in range(len(source))]
        check_split(source, parts, targets)
        for receiver, part in enumerate(parts):
            assert all(value % receivers == receiver for value in part.values)
        start += len(source)


# -- BroadcastRouter -------------------------------------------------------------------------------


def test_broadcast_gives_every_receiver_the_whole_batch() -> None:
    source = Batch([1, 2], [5, 6], [(1, 5)])
    parts = parts_of(BroadcastRouter().split(source, 3))
    assert len(parts) == 3
    for part in parts:
        assert (part.values, part.timestamps, part.marks) == ([1, 2], [5, 6], [(1, 5)])


# -- compact and Output ----------------------------------------------------------------------------


def test_compact_keeps_batches_with_records() -> None:
    source = Batch([1], None, [(0, 1), (1, 2)])
    assert compact(source) is source


def test_compact_drops_empty_batches() -> None:
    assert compact(Batch([])) is None
    assert compact(Batch([], None, [])) is None
    assert compact(Batch([], [], None)) is None


def test_compact_reduces_a_watermark_only_batch_to_its_last_mark() -> None:
    single = Batch([], None, [(0, 5)])
    assert compact(single) is single
    reduced = compact(Batch([], None, [(0, 3), (0, 5), (0, 9)]))
    assert reduced is not None
    assert (reduced.values, reduced.marks) == ([], [(0, 9)])


def drain(box: Mailbox) -> list[Any]:
    items = []
    while len(box):
        items.append(box.get_nowait())
    return items


async def test_output_to_one_mailbox_sends_compacted_batches_only() -> None:
    box = Mailbox(8)
    out = Output([box])
    await out.send(Batch([]))
    await out.send(Batch([], None, [(0, 1), (0, 2)]))
    await out.send(Batch([7]))
    sent = drain(box)
    assert [(b.values, b.marks) for b in sent] == [([], [(0, 2)]), ([7], None)]


async def test_output_does_not_send_empty_parts() -> None:
    boxes = [Mailbox(8), Mailbox(8)]
    out = Output(boxes, RebalanceRouter())
    await out.send(Batch(["only-one"]))
    assert [len(box) for box in boxes] == [1, 0]


async def test_output_sends_watermarks_to_receivers_without_records() -> None:
    boxes = [Mailbox(8), Mailbox(8), Mailbox(8)]
    out = Output(boxes, RebalanceRouter())
    await out.send(Batch(["x"], None, [(0, 1), (1, 2)]))
    received = [drain(box) for box in boxes]
    assert [(b.values, b.marks) for b in received[0]] == [(["x"], [(0, 1), (1, 2)])]
    # receivers 1 and 2 got no record: one watermark-only batch with the last mark
    assert [(b.values, b.marks) for b in received[1]] == [([], [(0, 2)])]
    assert [(b.values, b.marks) for b in received[2]] == [([], [(0, 2)])]


async def test_output_to_several_mailboxes_needs_a_router() -> None:
    with pytest.raises(ValueError, match="router"):
        Output([Mailbox(1), Mailbox(1)])


async def test_send_control_reaches_every_mailbox_in_order() -> None:
    boxes = [Mailbox(4), Mailbox(4)]
    out = Output(boxes, BroadcastRouter())
    await out.send_control(Barrier(3))
    await out.send_control(EndOfStream())
    for box in boxes:
        assert drain(box) == [Barrier(3), EndOfStream()]


async def test_send_waits_for_room_in_a_full_mailbox() -> None:
    box = Mailbox(1)
    out = Output([box])
    await out.send(Batch([1]))
    sending = asyncio.create_task(out.send(Batch([2])))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not sending.done()
    assert box.stats().waits == 1
    assert box.get_nowait().values == [1]  # type: ignore[union-attr]
    await sending
    assert box.get_nowait().values == [2]  # type: ignore[union-attr]
