"""Clocks, watermark generators and strategies, timer queues."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actorflow.time.clock import ManualClock, SystemClock
from actorflow.time.timers import TimerQueue
from actorflow.time.watermarks import (
    BoundedOutOfOrdernessGenerator,
    PunctuatedGenerator,
    WatermarkStrategy,
)


async def settle(turns: int = 5) -> None:
    for _ in range(turns):
        await asyncio.sleep(0)


# -- ManualClock -----------------------------------------------------------------------------------


async def test_manual_clock_resolves_due_waits_in_time_order() -> None:
    clock = ManualClock(start=0)
    resolved: list[int] = []
    futures = {}
    for due in (30, 10, 20, 40):
        future = clock.at(due)
        future.add_done_callback(lambda _, due=due: resolved.append(due))
        futures[due] = future
    assert clock.waiters == 4

    clock.advance(25)
    await settle()
    assert resolved == [10, 20]
    assert not futures[30].done()
    assert clock.waiters == 2

    clock.set(29)  # one millisecond short: not yet
    await settle()
    assert not futures[30].done()

    clock.set(40)  # reaching a time exactly resolves it
    await settle()
    assert resolved == [10, 20, 30, 40]
    assert clock.now() == 40
    assert clock.waiters == 0


async def test_manual_clock_wait_at_or_before_now_is_done_at_once() -> None:
    clock = ManualClock(start=100)
    assert clock.at(100).done()
    assert clock.at(50).done()
    assert clock.waiters == 0


async def test_manual_clock_does_not_go_backwards() -> None:
    clock = ManualClock(start=100)
    with pytest.raises(ValueError, match="backwards"):
        clock.set(99)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    assert clock.now() == 100
    clock.set(100)  # standing still is allowed
    assert clock.now() == 100


async def test_manual_clock_ignores_cancelled_waits() -> None:
    clock = ManualClock()
    cancelled = clock.at(10)
    kept = clock.at(10)
    cancelled.cancel()
    assert clock.waiters == 1
    clock.advance(10)  # must not try to resolve the cancelled future
    assert cancelled.cancelled()
    assert kept.done() and not kept.cancelled()


async def test_sleep_until_returns_once_the_clock_gets_there() -> None:
    clock = ManualClock(start=0)
    sleeper = asyncio.create_task(clock.sleep_until(1000))
    await settle()
    assert not sleeper.done()
    clock.advance(999)
    await settle()
    assert not sleeper.done()
    clock.advance(1)
    await sleeper


async def test_system_clock_at_a_past_time_resolves() -> None:
    clock = SystemClock()
    before = time.time_ns() // 1_000_000
    now = clock.now()
    assert before <= now <= time.time_ns() // 1_000_000
    await clock.at(now - 1000)  # already due: resolves on the next loop turn
    await clock.sleep_until(now - 1)


async def test_system_clock_wait_can_be_cancelled() -> None:
    clock = SystemClock()
    future = clock.at(clock.now() + 3_600_000)
    await settle()
    assert not future.done()
    future.cancel()
    await settle()
    assert future.cancelled()


# -- watermark generators --------------------------------------------------------------------------


def test_bounded_generator_emits_max_minus_bound_minus_one_once_per_batch() -> None:
    generator = BoundedOutOfOrdernessGenerator(100)
    assert generator.on_batch([1000, 1500, 1200]) == [(3, 1399)]
    assert generator.on_batch([1400, 1100]) == []  # the maximum did not rise
    assert generator.on_batch([1500]) == []  # equal is not a rise
    assert generator.on_batch([10, 1600, 20, 30]) == [(4, 1499)]  # at the end of the batch
    assert generator.on_batch([]) == []


def test_bounded_generator_with_zero_bound() -> None:
    assert BoundedOutOfOrdernessGenerator(0).on_batch([7, 5]) == [(2, 6)]


def test_punctuated_generator_marks_after_each_record_that_raises_the_max() -> None:
    generator = PunctuatedGenerator(2000)
    # positions are 1-based: (1, ...) means "after the first record"
    assert generator.on_batch([5000, 4000, 7000]) == [(1, 3000), (3, 5000)]
    assert generator.on_batch([6000, 7000, 8000, 7500]) == [(3, 6000)]  # the max carries over
    assert generator.on_batch([]) == []


def test_punctuated_generator_without_lag_is_the_max_itself() -> None:
    assert PunctuatedGenerator(0).on_batch([3, 1, 4, 1, 5]) == [(1, 3), (3, 4), (5, 5)]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    batches=st.lists(st.lists(st.integers(0, 10_000), max_size=8), max_size=6),
    bound=st.integers(0, 500),
)
def test_generators_follow_the_running_maximum(batches: list[list[int]], bound: int) -> None:
    bounded = BoundedOutOfOrdernessGenerator(bound)
    punctuated = PunctuatedGenerator(bound)
    highest: int | None = None
    for batch in batches:
        expected_punctuated = []
        before = highest
        for position, stamp in enumerate(batch, 1):
            if highest is None or stamp > highest:
                highest = stamp
                expected_punctuated.append((position, stamp - bound))
        assert punctuated.on_batch(batch) == expected_punctuated
        rose = highest is not None and highest != before
        expected_bounded = [(len(batch), highest - bound - 1)] if rose and highest is not None else []
        assert bounded.on_batch(batch) == expected_bounded


# -- WatermarkStrategy -----------------------------------------------------------------------------


def stamp(record: dict[str, int]) -> int:
    return record["ts"]


def test_strategy_validation_errors() -> None:
    with pytest.raises(ValueError, match="negative"):
        WatermarkStrategy.bounded_out_of_orderness(-1, stamp)
    with pytest.raises(ValueError, match="negative"):
        WatermarkStrategy.punctuated(stamp, lag_ms=-1)
    strategy = WatermarkStrategy.punctuated(stamp)
    for timeout in (0, -5):
        with pytest.raises(ValueError, match="positive"):
            strategy.with_idleness(timeout)


def test_strategies_build_fresh_generators() -> None:
    bounded = WatermarkStrategy.bounded_out_of_orderness(100, stamp)
    first, second = bounded.generator(), bounded.generator()
    assert isinstance(first, BoundedOutOfOrdernessGenerator)
    assert first is not second
    assert first.on_batch([1000]) == [(1, 899)]
    assert second.on_batch([500]) == [(1, 399)]  # its own maximum, not the first one's

    punctuated = WatermarkStrategy.punctuated(stamp, lag_ms=5)
    assert isinstance(punctuated.generator(), PunctuatedGenerator)
    assert punctuated.generator().on_batch([10]) == [(1, 5)]
    assert punctuated.timestamp({"ts": 42}) == 42


def test_with_idleness_returns_a_new_strategy_keeping_the_rest() -> None:
    strategy = WatermarkStrategy.bounded_out_of_orderness(0, stamp)
    idle = strategy.with_idleness(30_000)
    assert idle.idle_timeout_ms == 30_000
    assert strategy.idle_timeout_ms is None  # the original is unchanged
    assert idle.timestamp is strategy.timestamp
    assert idle.generator is strategy.generator


# -- TimerQueue ------------------------------------------------------------------------------------


def test_timer_add_deduplicates_and_tracks_next_time() -> None:
    queue = TimerQueue()
    assert queue.next_time is None
    assert queue.add(20, "a")
    assert queue.next_time == 20
    assert queue.add(10, "b")
    assert queue.next_time == 10
    assert not queue.add(20, "a")  # same (time, key): once
    assert queue.add(20, "b")  # same key, other time: a timer of its own
    assert queue.add(30, "a")
    assert queue.next_time == 10
    assert len(queue) == 4
    assert queue.keys_at(20) == ["a", "b"]
    assert queue.keys_at(99) == []


def test_timer_remove() -> None:
    queue = TimerQueue()
    queue.add(10, "a")
    queue.add(10, "b")
    queue.add(20, "c")
    assert not queue.remove(10, "z")
    assert not queue.remove(15, "a")
    assert queue.remove(10, "a")
    assert queue.next_time == 10  # "b" still at 10
    assert queue.remove(10, "b")
    assert queue.next_time == 20
    assert not queue.remove(10, "b")
    assert queue.remove(20, "c")
    assert queue.next_time is None
    assert len(queue) == 0


def test_removing_a_later_timer_keeps_next_time() -> None:
    queue = TimerQueue()
    queue.add(10, "a")
    queue.add(20, "b")
    queue.remove(20, "b")
    assert queue.next_time == 10


def test_pop_due_yields_due_timers_in_time_order_up_to_the_limit() -> None:
    queue = TimerQueue()
    for time_, key in [(30, "x"), (10, "b"), (20, "c"), (10, "a"), (40, "d")]:
        queue.add(time_, key)
    assert list(queue.pop_due(30)) == [(10, "b"), (10, "a"), (20, "c"), (30, "x")]  # limit inclusive
    assert queue.next_time == 40
    assert list(queue.pop_due(39)) == []
    assert len(queue) == 1


def test_pop_due_fires_timers_added_while_iterating_if_due() -> None:
    queue = TimerQueue()
    queue.add(10, "a")
    fired = []
    for time_, key in queue.pop_due(25):
        fired.append((time_, key))
        if key == "a":
            queue.add(20, "from-a")  # due: fires in this pass
            queue.add(30, "late")  # not due
        if key == "from-a":
            queue.add(20, "same-time")  # the time being fired: fires too
            queue.add(15, "earlier")  # already passed: fires too
    assert fired == [(10, "a"), (20, "from-a"), (15, "earlier"), (20, "same-time")]
    assert queue.snapshot() == [(30, ["late"])]


def test_removing_a_pending_timer_at_the_time_being_fired_stops_it() -> None:
    queue = TimerQueue()
    queue.add(10, "a")
    queue.add(10, "b")
    fired = []
    for _, key in queue.pop_due(10):
        fired.append(key)
        if key == "a":
            assert queue.remove(10, "b"), "(10, 'b') has not fired yet, so it can be removed"
    assert fired == ["a"]


def test_timer_snapshot_and_restore() -> None:
    queue = TimerQueue()
    for time_, key in [(30, ("k", 1)), (10, "b"), (10, "a"), (20, 7)]:
        queue.add(time_, key)
    snapshot = queue.snapshot()
    assert snapshot == [(10, ["b", "a"]), (20, [7]), (30, [("k", 1)])]

    restored = TimerQueue()
    restored.restore(snapshot)
    assert restored.next_time == 10
    assert len(restored) == 4
    assert list(restored.pop_due(100)) == list(queue.pop_due(100))


timer_ops = st.lists(
    st.tuples(st.sampled_from(["add", "remove", "pop"]), st.integers(0, 20), st.sampled_from("abcd")),
    max_size=40,
)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(timer_ops)
def test_timer_queue_matches_a_dict_model(operations: list[tuple[str, int, str]]) -> None:
    queue = TimerQueue()
    model: dict[int, dict[Hashable, None]] = {}  # time -> keys in registration order
    for kind, time_, key in operations:
        if kind == "add":
            fresh = key not in model.get(time_, {})
            assert queue.add(time_, key) == fresh
            model.setdefault(time_, {})[key] = None
        elif kind == "remove":
            present = key in model.get(time_, {})
            assert queue.remove(time_, key) == present
            if present:
                del model[time_][key]
                if not model[time_]:
                    del model[time_]
        else:
            expected = [(t, k) for t in sorted(model) if t <= time_ for k in model[t]]
            assert list(queue.pop_due(time_)) == expected
            model = {t: keys for t, keys in model.items() if t > time_}
        assert queue.next_time == (min(model) if model else None)
        assert len(queue) == sum(len(keys) for keys in model.values())
    assert queue.snapshot() == [(t, list(model[t])) for t in sorted(model)]
