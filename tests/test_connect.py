"""Two-input operators: connect + co-process (keyed and not) and the broadcast state pattern."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actorflow import (
    BroadcastContext,
    BroadcastProcessFunction,
    Collector,
    Context,
    CoProcessFunction,
    Flow,
    KeyedBroadcastProcessFunction,
    KeyedCoProcessFunction,
    ListStateDescriptor,
    MapStateDescriptor,
    PlanError,
    PushSource,
    RuntimeContext,
    ValueStateDescriptor,
    WatermarkStrategy,
)
from tests.recorder import Recorder

# -- connect + co-process --------------------------------------------------------------------------


class Sides(CoProcessFunction[int, str, tuple[int, Any]]):
    """Tags each record with the input it came through."""

    def process_element1(self, value: int, ctx: Context, out: Collector) -> None:
        out.collect((1, value))

    def process_element2(self, value: str, ctx: Context, out: Collector) -> None:
        out.collect((2, value))


async def test_each_input_reaches_its_own_method(parallelism: int) -> None:
    flow = Flow(parallelism=parallelism, batch_size=3)
    numbers = flow.from_iterable(range(20)).rebalance()
    words = flow.from_iterable([f"w{i}" for i in range(10)])
    out = numbers.connect(words).process(Sides()).collect()
    await flow.run()
    assert sorted(v for side, v in out.values if side == 1) == list(range(20))
    assert sorted(v for side, v in out.values if side == 2) == sorted(f"w{i}" for i in range(10))


async def test_a_union_on_one_side_is_still_one_input(parallelism: int) -> None:
    flow = Flow(parallelism=parallelism)
    a = flow.from_iterable([1, 2])
    b = flow.from_iterable([3])
    words = flow.from_iterable(["x"])
    out = a.union(b).connect(words).process(Sides()).collect()
    await flow.run()
    assert sorted(out.values, key=repr) == [(1, 1), (1, 2), (1, 3), (2, "x")]


class Enrich(KeyedCoProcessFunction[dict[str, Any], dict[str, Any], tuple[int, str]]):
    """Orders (input 1) wait in keyed state for their customer (input 2), whichever comes first."""

    def open(self, ctx: RuntimeContext) -> None:
        self.name = ctx.get_state(ValueStateDescriptor("name"))
        self.waiting = ctx.get_list_state(ListStateDescriptor("waiting"))

    def process_element1(self, order: dict[str, Any], ctx: Context, out: Collector) -> None:
        name = self.name.value()
        if name is None:
            self.waiting.add(order["id"])
        else:
            out.collect((order["id"], name))

    def process_element2(self, customer: dict[str, Any], ctx: Context, out: Collector) -> None:
        assert ctx.current_key == customer["cid"]
        self.name.update(customer["name"])
        for order_id in self.waiting.get():
            out.collect((order_id, customer["name"]))
        self.waiting.clear()


@settings(max_examples=15, deadline=None)
@given(
    orders=st.lists(st.integers(0, 9), max_size=40),
    batch_size=st.integers(1, 8),
    parallelism=st.sampled_from([1, 3]),
)
def test_keyed_inputs_share_state_per_key(orders: list[int], batch_size: int, parallelism: int) -> None:
    flow = Flow(parallelism=parallelism, batch_size=batch_size)
    order_stream = flow.from_iterable([{"id": i, "cid": c} for i, c in enumerate(orders)])
    customers = flow.from_iterable([{"cid": c, "name": f"n{c}"} for c in range(10)])
    out = order_stream.connect(customers).key_by("cid", "cid").process(Enrich()).collect()
    flow.execute()
    assert sorted(out.values) == [(i, f"n{c}") for i, c in enumerate(orders)]


class Expiry(KeyedCoProcessFunction[dict[str, Any], dict[str, Any], tuple[str, int, int]]):
    """Input 1 opens a session per key with a timer; input 2 counts hits; the timer reports."""

    def open(self, ctx: RuntimeContext) -> None:
        self.hits = ctx.get_state(ValueStateDescriptor("hits", default=0))

    def process_element1(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        ctx.timer_service().register_event_time_timer(value["ts"] + 100)

    def process_element2(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        self.hits.update(self.hits.value() + 1)

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        out.collect((ctx.current_key, timestamp, self.hits.value()))


async def test_timers_of_a_keyed_co_process_fire_on_the_lower_watermark(parallelism: int) -> None:
    # Input 1 races ahead in event time; the timers must wait for input 2's watermark, so every
    # hit of input 2 (all before ts 100) is counted when the timer at 100 fires.
    opens = [{"k": k, "ts": 0} for k in "ab"] + [{"k": "z", "ts": 10_000}]
    hits = [{"k": k, "ts": ts} for ts in range(0, 100, 10) for k in "ab"]
    by_ts = WatermarkStrategy.punctuated("ts", lag_ms=0)
    flow = Flow(parallelism=parallelism, batch_size=2)
    first = flow.from_iterable(opens, watermarks=by_ts).key_by("k")
    second = flow.from_iterable(hits, watermarks=by_ts).key_by("k")
    out = first.connect(second).process(Expiry()).collect()
    await flow.run()
    assert sorted(out.values) == [("a", 100, 10), ("b", 100, 10), ("z", 10_100, 0)]


def test_a_keyed_co_process_function_needs_two_keyed_streams() -> None:
    flow = Flow()
    a = flow.from_iterable([1])
    b = flow.from_iterable([2])
    with pytest.raises(PlanError, match="two keyed streams"):
        a.connect(b).process(Expiry())
    with pytest.raises(PlanError, match="CoProcessFunction"):
        a.connect(b).process(lambda x: x)  # type: ignore[arg-type]
    with pytest.raises(PlanError, match="different flows"):
        a.connect(Flow().from_iterable([3]))


def test_the_plan_shows_both_inputs() -> None:
    flow = Flow(parallelism=2)
    a = flow.from_iterable([1], name="a")
    b = flow.from_iterable(["x"], name="b")
    a.key_by(str).connect(b.key_by(str)).process(Enrich(), name="enrich").collect(name="out")
    plan = flow.plan().describe()
    assert "[enrich -> out] x2 <- hash from [a], hash from [b] (input 2)" in plan, plan


# -- broadcast state -------------------------------------------------------------------------------

RULES = MapStateDescriptor("rules")
COUNT = ValueStateDescriptor("count", default=0)


class Threshold(KeyedBroadcastProcessFunction[dict[str, Any], dict[str, Any], Any]):
    """Alerts on a card's transaction over the current limit; rules acknowledge themselves."""

    def open(self, ctx: RuntimeContext) -> None:
        self.index = ctx.index
        self.count = ctx.get_state(COUNT)

    def process_element(self, tx: dict[str, Any], ctx: BroadcastContext, out: Collector) -> None:
        self.count.update(self.count.value() + 1)
        limit = ctx.get_broadcast_state(RULES).get("limit")
        if limit is not None and tx["amount"] > limit:
            out.collect(("alert", tx["id"], limit, self.count.value()))
        out.collect(("seen", tx["id"]))

    def process_broadcast_element(
        self, rule: dict[str, Any], ctx: BroadcastContext, out: Collector
    ) -> None:
        ctx.get_broadcast_state(RULES)["limit"] = rule["limit"]
        if rule.get("reset"):
            ctx.apply_to_keyed_state(COUNT, lambda key, state: state.clear())
        out.collect(("rule", rule["version"], self.index))


async def test_rules_change_at_run_time_on_every_instance(parallelism: int) -> None:
    rules = PushSource()
    transactions = PushSource()
    seen = Recorder()
    flow = Flow(parallelism=parallelism, batch_size=4)
    (
        flow.from_source(transactions)
        .key_by("card")
        .connect(flow.from_source(rules).broadcast(RULES))
        .process(Threshold())
        .sink_to_callback(seen)
    )
    running = asyncio.create_task(flow.run())

    async def apply(rule: dict[str, Any]) -> None:
        await rules.send(rule)
        for index in range(parallelism):  # every instance applies every rule
            await seen.wait_for(lambda item, i=index: item == ("rule", rule["version"], i), running)

    async def pay(ids: range, amount: int) -> None:
        for i in ids:
            await transactions.send({"id": i, "card": i % 5, "amount": amount})
        for i in ids:
            await seen.wait_for(lambda item, i=i: item == ("seen", i), running)

    await apply({"version": 1, "limit": 100})
    await pay(range(0, 10), 50)
    await apply({"version": 2, "limit": 10})
    await pay(range(10, 20), 50)
    await apply({"version": 3, "limit": 10, "reset": True})
    await pay(range(20, 25), 50)
    rules.close()
    transactions.close()
    await running
    alerts = sorted(item[1:] for item in seen.items if item[0] == "alert")
    # Under limit 100 nothing; under limit 10 all; after the reset, counts start again at 1.
    assert alerts == [(i, 10, 3) for i in range(10, 15)] + [(i, 10, 4) for i in range(15, 20)] + [
        (i, 10, 1) for i in range(20, 25)
    ]


class Writer(KeyedBroadcastProcessFunction[Any, Any, Any]):
    def process_element(self, value: Any, ctx: BroadcastContext, out: Collector) -> None:
        ctx.get_broadcast_state(RULES)["x"] = value

    def process_broadcast_element(self, value: Any, ctx: BroadcastContext, out: Collector) -> None:
        pass


async def test_the_main_side_cannot_change_broadcast_state() -> None:
    flow = Flow()
    main = flow.from_iterable([1]).key_by(str)
    main.connect(flow.from_iterable([]).broadcast(RULES)).process(Writer(), name="writer").collect()
    with pytest.raises(TypeError) as failure:
        await flow.run()
    assert any("writer" in note for note in failure.value.__notes__)


class Undeclared(BroadcastProcessFunction[Any, Any, Any]):
    def process_element(self, value: Any, ctx: BroadcastContext, out: Collector) -> None:
        out.collect(ctx.get_broadcast_state(MapStateDescriptor("other")).get(value))

    def process_broadcast_element(self, value: Any, ctx: BroadcastContext, out: Collector) -> None:
        pass


async def test_undeclared_broadcast_state_is_an_error() -> None:
    flow = Flow()
    flow.from_iterable([1]).connect(flow.from_iterable([]).broadcast(RULES)).process(Undeclared()).collect()
    with pytest.raises(Exception, match="'other' was not declared"):
        await flow.run()


class Lookup(BroadcastProcessFunction[str, tuple[str, str], tuple[str, Any]]):
    """Non-keyed: a dictionary broadcast to every instance, read by the main side."""

    def open(self, ctx: RuntimeContext) -> None:
        self.index = ctx.index

    def process_element(self, value: str, ctx: BroadcastContext, out: Collector) -> None:
        out.collect((value, ctx.get_broadcast_state(RULES).get(value)))

    def process_broadcast_element(
        self, value: tuple[str, str], ctx: BroadcastContext, out: Collector
    ) -> None:
        ctx.get_broadcast_state(RULES)[value[0]] = value[1]
        with pytest.raises(Exception, match="keyed process_broadcast_element"):
            ctx.apply_to_keyed_state(RULES, lambda key, state: None)
        out.collect(("rule", self.index))


async def test_a_non_keyed_stream_reads_broadcast_state(parallelism: int) -> None:
    rules = PushSource()
    words = PushSource()
    seen = Recorder()
    flow = Flow(parallelism=parallelism)
    dictionary = flow.from_source(rules).broadcast(RULES)
    flow.from_source(words).rebalance().connect(dictionary).process(Lookup()).sink_to_callback(seen)
    running = asyncio.create_task(flow.run())
    await rules.send(("a", "alpha"))
    for index in range(parallelism):
        await seen.wait_for(lambda item, i=index: item == ("rule", i), running)
    await words.send_all(["a", "b"] * 6)
    rules.close()
    words.close()
    await running
    looked_up = sorted(item for item in seen.items if item[0] != "rule")
    assert looked_up == [("a", "alpha")] * 6 + [("b", None)] * 6


def test_broadcast_misuse_is_a_plan_error() -> None:
    flow = Flow()
    main = flow.from_iterable([1])
    with pytest.raises(PlanError, match="MapStateDescriptor"):
        main.broadcast(ValueStateDescriptor("x"))  # type: ignore[call-overload]
    with pytest.raises(PlanError, match="must differ"):
        main.broadcast(RULES, MapStateDescriptor("rules"))
    rules = flow.from_iterable([2]).broadcast(RULES)
    with pytest.raises(PlanError, match="needs a keyed main stream"):
        main.connect(rules).process(Threshold())
    with pytest.raises(PlanError, match="takes a KeyedBroadcastProcessFunction"):
        main.key_by(str).connect(rules).process(Lookup())
