"""Iterations: loops with a back edge, their exact end, bounded back edges, event time, plan errors."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from actorflow import (
    Flow,
    KeyedProcessFunction,
    OutputTag,
    TumblingEventTimeWindows,
    ValueStateDescriptor,
    WatermarkStrategy,
)
from actorflow.errors import ClosedResourceError, PlanError
from actorflow.operators.base import Collector
from actorflow.operators.co_process import CoProcessFunction, KeyedCoProcessFunction
from actorflow.operators.process import Context, RuntimeContext
from actorflow.runtime.feedback import Backlog, FeedbackMailbox
from actorflow.runtime.loop import Loop
from actorflow.runtime.mailbox import Mailbox
from actorflow.runtime.messages import Batch, EndOfStream


def back_edges(flow: Flow) -> list[FeedbackMailbox]:
    """The back edges of the flow's last run."""
    assert flow.metrics is not None
    return [c.mailbox for c in flow.metrics.channels if isinstance(c.mailbox, FeedbackMailbox)]


@pytest.mark.parametrize("parallelism", [1, 2, 3])
def test_a_decrement_loop_lets_every_record_out_once_at_zero(parallelism: int) -> None:
    flow = Flow(parallelism=parallelism, batch_size=4)
    it = flow.from_iterable(range(200)).iterate()
    step = it.map(lambda n: n - 1)
    it.close_with(step.filter(lambda n: n > 0))
    out = step.filter(lambda n: n <= 0).collect()
    flow.execute()
    assert sorted(out.values) == [-1] + [0] * 199
    assert all(edge.backlog.records == 0 for edge in back_edges(flow))


@pytest.mark.parametrize("parallelism", [1, 2])
def test_a_loop_of_many_rounds_ends_exactly(parallelism: int) -> None:
    # 2,000 rounds for the largest record: each round is a trip through two actors.
    flow = Flow(parallelism=parallelism, batch_size=8, mailbox_capacity=2)
    it = flow.from_iterable([2_000, 5, 1_000]).iterate()
    step = it.map(lambda pair: pair, name="body").map(lambda n: n - 1).start_new_chain()
    counted = step.map(lambda n: n)
    it.close_with(counted.filter(lambda n: n > 0).key_by(lambda n: n % 7))
    out = counted.filter(lambda n: n == 0).collect()
    flow.execute()
    assert out.values == [0, 0, 0]


ROUNDS = 5


def spawn(fan_out: int) -> Any:
    """A record of round ``r`` makes ``fan_out`` of round ``r + 1``."""

    def next_round(record: tuple[int, int]) -> list[tuple[int, int]]:
        origin, round_ = record
        return [(origin, round_ + 1)] * fan_out

    return next_round


def loop_holds(flow: Flow, batch: int) -> int:
    """Records the loop's bounded mailboxes and actors can hold: a batch per mailbox (of one
    message each) between two actors of the loop, back edges aside, and a batch in each actor's hand."""
    assert flow.metrics is not None
    (loop,) = flow.plan().loops
    members = {entry.name for entry in flow.metrics.actors if entry.chain in {c.name for c in loop.members}}
    mailboxes = [
        c
        for c in flow.metrics.channels
        if c.sender in members and c.receiver in members and not isinstance(c.mailbox, FeedbackMailbox)
    ]
    return batch * (len(mailboxes) + len(members))


@pytest.mark.parametrize(
    ("parallelism", "keyed", "fan_out"),
    [(1, False, 1), (2, True, 1), (1, False, 2), (2, False, 2), (2, True, 2)],
)
def test_an_amplifying_loop_with_tiny_mailboxes_ends_exactly_with_a_bounded_back_edge(
    parallelism: int, keyed: bool, fan_out: int
) -> None:
    # Each record spawns fan_out for ROUNDS rounds (32 results per input record when it doubles).
    # Every mailbox holds one batch of two records: a back edge that parked its sender would
    # deadlock at once.
    records, batch = 1_000, 2
    flow = Flow(parallelism=parallelism, batch_size=batch, mailbox_capacity=1)
    it = flow.from_iterable((n, 0) for n in range(records)).iterate()
    spawned = it.flat_map(spawn(fan_out)).map(lambda record: record, name="pass")
    again = spawned.filter(lambda record: record[1] < ROUNDS)
    it.close_with(again.key_by(lambda record: record[0]) if keyed else again)
    out = spawned.filter(lambda record: record[1] == ROUNDS).collect()
    flow.execute()
    assert Counter(origin for origin, _ in out.values) == dict.fromkeys(range(records), fan_out**ROUNDS)
    # The head takes input only while its back edges are empty, so they hold at most what the
    # loop held then, multiplied by what the rounds after make of it: bounded by the loop's
    # mailboxes, not by the input (records * fan_out**ROUNDS records go round in all).
    high_water = max(edge.backlog.high_water for edge in back_edges(flow))
    assert 0 < high_water <= loop_holds(flow, batch) * fan_out**ROUNDS < records


class Later(KeyedProcessFunction[int, int]):
    """Holds each record in keyed state and lets it go, one less, from a processing-time timer 1 ms
    later: while a record waits there, no mailbox of the loop holds anything."""

    def open(self, ctx: RuntimeContext) -> None:
        self.held = ctx.get_state(ValueStateDescriptor[list[int]]("held"))

    def process_element(self, value: int, ctx: Context, out: Collector) -> None:
        held = self.held.value() or []
        self.held.update([*held, value])
        timers = ctx.timer_service()
        timers.register_processing_time_timer(timers.current_processing_time() + 1)

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        for value in self.held.value() or []:
            out.collect(value - 1)
        self.held.clear()


@pytest.mark.parametrize("parallelism", [1, 2])
def test_a_loop_waits_for_a_timer_in_its_body_and_ends_after_it(parallelism: int) -> None:
    flow = Flow(parallelism=parallelism, batch_size=2)
    it = flow.from_iterable([3, 6, 4]).iterate()
    later = it.key_by(lambda n: n % 2).process(Later())
    it.close_with(later.filter(lambda n: n > 0))
    out = later.filter(lambda n: n == 0).collect()
    flow.execute()
    assert out.values == [0, 0, 0]


class Stamps(KeyedProcessFunction[Any, Any]):
    """Emits each record with its timestamp and the watermark it was processed at."""

    def process_element(self, value: Any, ctx: Context, out: Collector) -> None:
        out.collect((value, ctx.timestamp, ctx.timer_service().current_watermark()))


def test_fed_back_records_keep_their_timestamps_and_the_watermark_is_the_inputs() -> None:
    events = [{"n": n, "ts": 1_000 * n} for n in range(1, 30)]
    flow = Flow(batch_size=1)
    stamped = flow.from_iterable(events, watermarks=WatermarkStrategy.punctuated(lambda e: e["ts"]))
    it = stamped.iterate()
    seen = it.key_by(lambda e: e["n"] % 3).process(Stamps())
    step = seen.map(lambda seen: {**seen[0], "left": seen[0].get("left", 3) - 1})
    it.close_with(step.filter(lambda e: e["left"] > 0))
    rounds = seen.collect()
    step.filter(lambda e: e["left"] == 0).sink_to_callback(lambda e: None)
    flow.execute()
    assert len(rounds.values) == 3 * len(events)
    assert all(ts == value["ts"] for value, ts, _ in rounds.values)  # every round keeps its time
    # The watermark follows the input even while old records still go round: nothing of the
    # back edge holds it at their (older) timestamps.
    late = [(value, ts, watermark) for value, ts, watermark in rounds.values if ts < watermark]
    assert late, "fed-back records come back behind the input's watermark"
    watermarks = [watermark for _, _, watermark in rounds.values]
    assert watermarks == sorted(watermarks) and watermarks[-1] >= events[-2]["ts"]


class Countdown(CoProcessFunction[str, tuple[str, int], tuple[str, int]]):
    """Input 1: words, which start at their length; input 2 (fed back): (word, count) pairs."""

    def process_element1(self, value: str, ctx: Context, out: Collector) -> None:
        out.collect((value, len(value)))

    def process_element2(self, value: tuple[str, int], ctx: Context, out: Collector) -> None:
        out.collect((value[0], value[1] - 1))


@pytest.mark.parametrize("parallelism", [1, 2])
def test_a_connected_iteration_feeds_back_another_type(parallelism: int) -> None:
    flow = Flow(parallelism=parallelism, batch_size=3)
    loop = flow.from_iterable(["a", "tree", "forest", "be"]).iterate_with(tuple)
    head = loop.process(Countdown())
    loop.close_with(head.filter(lambda pair: pair[1] > 0))
    out = head.filter(lambda pair: pair[1] == 0).collect()
    flow.execute()
    assert sorted(out.values) == [("a", 0), ("be", 0), ("forest", 0), ("tree", 0)]


class Visits(KeyedCoProcessFunction[str, str, str]):
    """Counts, per word, how often it came round (keyed state shared by both inputs)."""

    def open(self, ctx: RuntimeContext) -> None:
        self.visits = ctx.get_state(ValueStateDescriptor[int]("visits"))

    def process_element1(self, value: str, ctx: Context, out: Collector) -> None:
        self.visits.update(1)
        out.collect(value)

    def process_element2(self, value: str, ctx: Context, out: Collector) -> None:
        self.visits.update((self.visits.value() or 0) + 1)
        out.collect(value if self.visits.value() < len(value) else f"{value}:{self.visits.value()}")


@pytest.mark.parametrize("parallelism", [1, 3])
def test_a_keyed_connected_iteration_keeps_state_per_key_across_rounds(parallelism: int) -> None:
    words = ["ab", "abcde", "x", "abc", "mnop"]
    flow = Flow(parallelism=parallelism, batch_size=2)
    loop = flow.from_iterable(words).iterate_with(str).key_by(lambda w: w, lambda w: w)
    head = loop.process(Visits())
    loop.close_with(head.filter(lambda w: ":" not in w))
    out = head.filter(lambda w: ":" in w).collect()
    flow.execute()
    assert sorted(out.values) == sorted(f"{w}:{max(len(w), 2)}" for w in words)


def test_the_plan_shows_the_back_edge() -> None:
    flow = Flow(parallelism=2)
    it = flow.from_iterable([1]).iterate()
    step = it.map(lambda n: n - 1, name="step")
    it.close_with(step.filter(lambda n: n > 0, name="again").key_by(lambda n: n))
    step.filter(lambda n: n <= 0, name="done").collect()
    lines = flow.plan().describe().splitlines()
    assert "[iterate -> step] x2 <- rebalance from [source], feedback hash from [again]" in lines
    assert [loop.name for loop in flow.plan().loops] == ["iterate"]


def test_an_iteration_never_closed_is_a_plan_error() -> None:
    flow = Flow()
    it = flow.from_iterable([1]).iterate()
    it.map(lambda n: n).collect()
    with pytest.raises(PlanError, match="iteration 'iterate' is never closed: call close_with"):
        flow.plan()


def test_a_feedback_that_does_not_derive_from_the_iteration_is_refused() -> None:
    flow = Flow()
    numbers = flow.from_iterable([1])
    it = numbers.iterate()
    it.map(lambda n: n).collect()
    with pytest.raises(PlanError, match="'map-2' does not derive from it"):
        it.close_with(numbers.map(lambda n: n))
    other = Flow().from_iterable([1]).iterate()
    with pytest.raises(PlanError, match="another flow"):
        other.close_with(it.map(lambda n: n))


def test_a_loop_closes_once_forward_or_keyed_at_equal_parallelism() -> None:
    flow = Flow()
    it = flow.from_iterable([1]).iterate()
    step = it.map(lambda n: n - 1)
    with pytest.raises(PlanError, match="goes back forward or by key_by, not by rebalance"):
        it.close_with(step.rebalance())
    it.close_with(step.filter(lambda n: n > 0))
    with pytest.raises(PlanError, match="closed already"):
        it.close_with(step)
    step.collect()
    wide = Flow()
    it = wide.from_iterable([1]).iterate()
    step = it.map(lambda n: n - 1, parallelism=2)
    it.close_with(step)
    step.collect()
    with pytest.raises(
        PlanError, match=r"runs at parallelism 2 \('map'\), the head at 1: key_by the feedback"
    ):
        wide.plan()


def test_a_connected_iteration_needs_its_head_before_close_with() -> None:
    flow = Flow()
    loop = flow.from_iterable([1]).iterate_with(int)
    with pytest.raises(PlanError, match="call process"):
        loop.close_with(flow.from_iterable([2]))


def test_records_that_reach_a_sealed_back_edge_fail_rather_than_vanish() -> None:
    # Once the head has ended (the loop is over) nothing reads its back edges: an operator of the
    # body that emits at its own end of input cannot feed the loop any more, and is told so.
    edge = FeedbackMailbox(Backlog(), 1, name="tail => head", iteration="iterate")
    edge.seal()
    edge.put_nowait(EndOfStream())  # the tail's end of stream: nobody reads it, dropped
    with pytest.raises(
        ClosedResourceError, match=r"iteration 'iterate': 1 record\(s\) reached the back edge after"
    ):
        edge.put_nowait(Batch([7]))


def test_flows_without_a_loop_plan_no_loops() -> None:
    flow = Flow()
    flow.from_iterable([1]).map(lambda n: n).collect()
    assert flow.plan().loops == []


def test_nested_iterations_are_one_loop_and_end_exactly() -> None:
    # The inner loop counts each record down, the outer one restarts it until its rounds are done.
    flow = Flow(batch_size=2, mailbox_capacity=1)
    outer = flow.from_iterable([(n, 3) for n in range(20)]).iterate(name="outer")
    inner = outer.map(lambda r: r, name="into").iterate(name="inner")
    step = inner.map(lambda r: (r[0] - 1, r[1]), name="inner-step")
    inner.close_with(step.filter(lambda r: r[0] > 0))
    reset = step.filter(lambda r: r[0] <= 0).map(lambda r: (5, r[1] - 1), name="reset")
    outer.close_with(reset.filter(lambda r: r[1] > 0))
    out = reset.filter(lambda r: r[1] == 0).collect()
    assert [loop.name for loop in flow.plan().loops] == ["outer + inner"]
    flow.execute()
    assert out.values == [(5, 0)] * 20


def test_a_body_that_reads_another_input_ends_after_that_input_too() -> None:
    flow = Flow(batch_size=2)
    other = flow.from_iterable(range(100, 110), name="other")
    it = flow.from_iterable(range(5)).iterate()
    body = it.union(other).map(lambda n: n - 1)
    it.close_with(body.filter(lambda n: 0 < n < 100))
    out = body.filter(lambda n: n <= 0 or n >= 99).collect()
    flow.execute()
    # 99 both leaves and goes round again (down to 0): a fifth 0 besides those of 1, 2, 3, 4.
    assert sorted(out.values) == [-1, 0, 0, 0, 0, 0, *range(99, 109)]


async def slowly_less(n: int) -> int:
    await asyncio.sleep(0.001)  # a request in flight while every mailbox of the loop is empty
    return n - 1


def test_a_loop_waits_for_async_requests_in_its_body() -> None:
    flow = Flow(batch_size=2)
    it = flow.from_iterable(range(10)).iterate()
    body = it.map_async(slowly_less, capacity=3)
    it.close_with(body.filter(lambda n: n > 0))
    out = body.filter(lambda n: n <= 0).collect()
    flow.execute()
    assert sorted(out.values) == [-1] + [0] * 9


@pytest.mark.parametrize("parallelism", [1, 2])
def test_a_window_in_the_body_fires_and_what_it_feeds_back_arrives_late_not_lost(parallelism: int) -> None:
    # Every window result goes round once more. It comes back stamped with its window's last
    # millisecond, which the input's watermark has passed (that is why the window fired): late.
    # The windows still open when the input ends fire at its final watermark, after which the loop
    # must still take their results round before it ends.
    events = [(key, 1, ts) for ts in range(0, 5_000, 100) for key in "ab"]
    late: OutputTag[tuple[str, int, int]] = OutputTag("late")
    flow = Flow(parallelism=parallelism, batch_size=4)
    stamped = flow.from_iterable(events, watermarks=WatermarkStrategy.punctuated(lambda e: e[2]))
    it = stamped.iterate()
    windowed = it.key_by(lambda e: e[0]).window(TumblingEventTimeWindows.of(1_000))
    sums = windowed.side_output_late_data(late).reduce(lambda x, y: (x[0], x[1] + y[1], x[2]))
    it.close_with(sums)
    results = sums.collect()
    came_back = sums.get_side_output(late).collect()
    flow.execute()
    assert sorted(r[:2] for r in results.values) == [("a", 10)] * 5 + [("b", 10)] * 5
    assert sorted(came_back.values) == sorted(results.values)


def test_a_loop_is_not_over_while_a_blocked_mailbox_holds_a_message_or_a_member_runs() -> None:
    loop = Loop("iterate")
    inside, outside = Mailbox(2), Mailbox(2)
    head = loop.member([outside], [True])
    body = loop.member([inside], [False])
    head.input_ended(0)
    inside.put_nowait(Batch([1]))  # e.g. blocked for a barrier's alignment: still in the loop
    head.park()
    body.park()
    assert not loop.done
    body.wake()
    inside.get_nowait()
    head.wake()  # a member that runs is busy: nothing is decided while it does
    body.park()
    assert not loop.done
    head.park()
    assert loop.done
