"""The stateless operators, non-keyed process functions, partitioners and the plan they compile to."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from actorflow import (
    MIN_WATERMARK,
    Collector,
    Context,
    Flow,
    KeyedProcessFunction,
    PlanError,
    ProcessFunction,
    RuntimeContext,
    WatermarkStrategy,
)

N = 40


def stamped(n: int = N) -> list[dict[str, int]]:
    """Records with out-of-order event timestamps (a fixed permutation, so runs are deterministic)."""
    return [{"id": i, "ts": 1000 + (i * 7) % n * 10} for i in range(n)]


def by_ts(lag_ms: int = 0) -> WatermarkStrategy:
    return WatermarkStrategy.punctuated(lambda r: r["ts"], lag_ms=lag_ms)


class Tag(ProcessFunction[Any, tuple[int, Any]]):
    """Emits ``(instance index, value)``: which instance processed each record."""

    def open(self, ctx: RuntimeContext) -> None:
        self.index = ctx.index

    def process_element(self, value: Any, ctx: Context, out: Collector) -> None:
        out.collect((self.index, value))


class Stamp(ProcessFunction[Any, tuple[Any, int | None, int]]):
    """Emits ``(value, ctx.timestamp, current watermark)`` for every record."""

    def process_element(self, value: Any, ctx: Context, out: Collector) -> None:
        out.collect((value, ctx.timestamp, ctx.timer_service().current_watermark()))


class Passthrough(KeyedProcessFunction[Any, Any]):
    def process_element(self, value: Any, ctx: Context, out: Collector) -> None:
        out.collect(value)


# -- map, filter, flat_map ---------------------------------------------------------------------------


async def test_map_applies_the_function_to_every_record(parallelism: int) -> None:
    flow = Flow(parallelism=parallelism, batch_size=4)
    out = flow.from_iterable(range(N)).map(lambda n: n * n).collect()
    await flow.run()
    assert sorted(out.values) == [n * n for n in range(N)]


async def test_filter_keeps_only_matching_records(parallelism: int) -> None:
    flow = Flow(parallelism=parallelism, batch_size=4)
    out = flow.from_iterable(range(N)).filter(lambda n: n % 3 == 0).collect()
    await flow.run()
    assert sorted(out.values) == list(range(0, N, 3))


async def test_filter_that_drops_everything_yields_nothing(parallelism: int) -> None:
    flow = Flow(parallelism=parallelism, batch_size=4)
    out = flow.from_iterable(range(N)).filter(lambda n: False).collect()
    await flow.run()
    assert out.values == []


async def test_flat_map_emits_zero_one_or_many_records_per_input(parallelism: int) -> None:
    flow = Flow(parallelism=parallelism, batch_size=4)
    # n % 3 == 0 gives an empty output: whole batches can come out empty.
    out = flow.from_iterable(range(N)).flat_map(lambda n: [n] * (n % 3)).collect()
    await flow.run()
    assert Counter(out.values) == Counter({n: n % 3 for n in range(N) if n % 3})


async def test_flat_map_with_only_empty_outputs_ends_cleanly(parallelism: int) -> None:
    flow = Flow(parallelism=parallelism, batch_size=4)
    out = flow.from_iterable(stamped(), watermarks=by_ts()).flat_map(lambda r: ()).collect()
    await flow.run()
    assert out.values == []


# -- process functions -------------------------------------------------------------------------------


async def test_process_function_sees_record_timestamp_and_watermark_before_it(parallelism: int) -> None:
    records = stamped()
    lag = 15
    flow = Flow(parallelism=parallelism, batch_size=4)
    out = flow.from_iterable(records, watermarks=by_ts(lag)).rebalance().process(Stamp()).collect()
    await flow.run()
    # Punctuated: after each record the watermark is (highest timestamp so far - lag); a record sees
    # the watermark left by the records before it.
    expected = []
    highest = None
    for record in records:
        watermark = MIN_WATERMARK if highest is None else highest - lag
        expected.append((record["id"], record["ts"], watermark))
        highest = record["ts"] if highest is None else max(highest, record["ts"])
    assert sorted((r["id"], ts, wm) for r, ts, wm in out.values) == expected


async def test_process_function_without_event_time_sees_no_timestamp(parallelism: int) -> None:
    flow = Flow(parallelism=parallelism, batch_size=4)
    out = flow.from_iterable(range(N)).rebalance().process(Stamp()).collect()
    await flow.run()
    assert sorted(out.values) == [(n, None, MIN_WATERMARK) for n in range(N)]


async def test_records_without_event_time_see_no_timestamp_next_to_records_with_it(
    parallelism: int,
) -> None:
    flow = Flow(parallelism=parallelism, batch_size=2)
    timed = flow.from_iterable(stamped(10), watermarks=by_ts())
    untimed = flow.from_iterable([{"id": -1 - i} for i in range(10)], name="untimed")
    out = timed.union(untimed).process(Stamp()).collect()
    await flow.run()
    assert sorted(ts for r, ts, _ in out.values if r["id"] >= 0) == sorted(r["ts"] for r in stamped(10))
    assert [ts for r, ts, _ in out.values if r["id"] < 0] == [None] * 10


async def test_process_function_instances_each_get_their_own_copy(parallelism: int) -> None:
    class Count(ProcessFunction[int, tuple[int, int]]):
        def __init__(self) -> None:
            self.seen = 0

        def open(self, ctx: RuntimeContext) -> None:
            self.index = ctx.index

        def process_element(self, value: int, ctx: Context, out: Collector) -> None:
            self.seen += 1
            out.collect((self.index, self.seen))

    function = Count()
    flow = Flow(parallelism=parallelism, batch_size=4)
    out = flow.from_iterable(range(N)).rebalance().process(function).collect()
    await flow.run()
    per_instance: dict[int, list[int]] = {}
    for index, seen in out.values:
        per_instance.setdefault(index, []).append(seen)
    # Each instance counts only its own records, from 1; the function given to the API is untouched.
    assert sorted(per_instance) == list(range(parallelism))
    assert all(seen == list(range(1, len(seen) + 1)) for seen in per_instance.values())
    assert function.seen == 0


# -- union and partitioners --------------------------------------------------------------------------


@pytest.mark.parametrize("streams", [2, 3])
async def test_union_merges_every_record_of_every_stream(parallelism: int, streams: int) -> None:
    flow = Flow(parallelism=parallelism, batch_size=4)
    sources = [flow.from_iterable([(s, n) for n in range(N)], name=f"s{s}") for s in range(streams)]
    out = sources[0].union(*sources[1:]).map(lambda r: r).collect()
    await flow.run()
    assert sorted(out.values) == [(s, n) for s in range(streams) for n in range(N)]


async def test_union_of_streams_of_different_flows_is_refused() -> None:
    one, two = Flow(), Flow()
    with pytest.raises(PlanError):
        one.from_iterable([1]).union(two.from_iterable([2]))


async def test_rebalance_spreads_records_evenly_over_instances(parallelism: int) -> None:
    flow = Flow(parallelism=parallelism, batch_size=5)
    out = flow.from_iterable(range(N)).rebalance().process(Tag()).collect()
    await flow.run()
    counts = Counter(index for index, _ in out.values)
    assert sorted(value for _, value in out.values) == list(range(N))
    assert sorted(counts) == list(range(parallelism))
    assert max(counts.values()) - min(counts.values()) <= 1


async def test_broadcast_sends_every_record_to_every_instance(parallelism: int) -> None:
    flow = Flow(parallelism=parallelism, batch_size=4)
    out = flow.from_iterable(range(N)).broadcast().process(Tag()).collect()
    await flow.run()
    per_instance: dict[int, list[int]] = {}
    for index, value in out.values:
        per_instance.setdefault(index, []).append(value)
    assert sorted(per_instance) == list(range(parallelism))
    # A single source sends in order, and every instance gets all of it in that order.
    assert all(values == list(range(N)) for values in per_instance.values())


async def test_forward_connects_instance_i_to_instance_i(parallelism: int) -> None:
    flow = Flow(parallelism=parallelism, batch_size=4)
    tagged = flow.from_iterable(range(N)).rebalance().process(Tag(), name="first")
    # A new chain makes the forward edge a real mailbox between actors.
    out = tagged.forward().start_new_chain().process(Tag(), name="second").collect()
    await flow.run()
    assert (
        flow.plan()
        .describe()
        .splitlines()[-1]
        .endswith("forward from [source -> first]" if parallelism == 1 else "forward from [first]")
    )
    assert sorted(value for _, (_, value) in out.values) == list(range(N))
    assert all(second == first for second, (first, _) in out.values)


async def test_forward_with_unequal_parallelism_is_a_plan_error(parallelism: int) -> None:
    flow = Flow(parallelism=parallelism)
    flow.from_iterable(range(3)).forward().map(lambda n: n, parallelism=parallelism + 1).collect()
    with pytest.raises(PlanError, match="forward"):
        flow.plan()
    with pytest.raises(PlanError, match="forward"):
        await flow.run()


# -- plans: chains, names, parallelism ---------------------------------------------------------------


def test_plan_chains_source_map_filter_sink_into_one_actor_at_parallelism_1() -> None:
    flow = Flow(parallelism=1)
    flow.from_iterable(range(3)).map(lambda n: n).filter(bool).collect()
    plan = flow.plan()
    assert [(chain.name, chain.parallelism) for chain in plan.chains] == [
        ("source -> map -> filter -> collect", 1)
    ]
    assert plan.describe() == "[source -> map -> filter -> collect] x1"


def test_plan_at_parallelism_3_rebalances_after_the_single_source() -> None:
    flow = Flow(parallelism=3)
    flow.from_iterable(range(3)).map(lambda n: n).filter(bool).collect()
    assert flow.plan().describe().splitlines() == [
        "[source] x1",
        "[map -> filter -> collect] x3 <- rebalance from [source]",
    ]


async def test_start_new_chain_splits_the_chain(parallelism: int) -> None:
    flow = Flow(parallelism=parallelism)
    out = flow.from_iterable(range(N)).map(lambda n: n + 1).start_new_chain().filter(bool).collect()
    chains = [chain.name for chain in flow.plan().chains]
    assert "map" in chains[-2] and chains[-1] == "filter -> collect"
    assert any(
        line.startswith("[filter -> collect]") and "from [" in line and "map]" in line
        for line in flow.plan().describe().splitlines()
    )
    await flow.run()
    assert sorted(out.values) == list(range(1, N + 1))


@pytest.mark.parametrize("partition", ["forward", "rebalance", "broadcast", "key_by"])
def test_start_new_chain_survives_a_following_partitioner(partition: str) -> None:
    flow = Flow(parallelism=1)
    stream = flow.from_iterable(range(3)).map(lambda n: n).start_new_chain()
    if partition == "key_by":
        stream.key_by(lambda n: n).process(Passthrough(), name="next").collect()
    else:
        getattr(stream, partition)().map(lambda n: n, name="next").collect()
    assert [chain.name for chain in flow.plan().chains] == ["source -> map", "next -> collect"]


async def test_operator_names_and_parallelism_show_in_the_plan(parallelism: int) -> None:
    flow = Flow(parallelism=parallelism)
    out = (
        flow.from_iterable(range(N), name="numbers")
        .map(lambda n: n * 2, name="double", parallelism=2)
        .filter(lambda n: n % 4 == 0, name="quarter", parallelism=2)
        .process(Tag(), name="tag", parallelism=4)
        .collect(name="results")
    )
    assert flow.plan().describe().splitlines() == [
        "[numbers] x1",
        "[double -> quarter] x2 <- rebalance from [numbers]",
        "[tag] x4 <- rebalance from [double -> quarter]",
        f"[results] x{parallelism} <- rebalance from [tag]",
    ]
    await flow.run()
    assert sorted(value for _, value in out.values) == list(range(0, 2 * N, 4))
    assert {index for index, _ in out.values} <= set(range(4))


def test_duplicate_operator_names_are_a_plan_error() -> None:
    flow = Flow()
    stream = flow.from_iterable(range(3), name="numbers").map(lambda n: n, name="step")
    with pytest.raises(PlanError, match="step"):
        stream.map(lambda n: n, name="step")
    with pytest.raises(PlanError, match="numbers"):
        flow.from_iterable(range(3), name="numbers")


def test_unnamed_operators_get_distinct_names() -> None:
    flow = Flow()
    flow.from_iterable(range(3)).map(abs).map(abs).collect()
    assert flow.plan().describe() == "[source -> map -> map-2 -> collect] x1"


async def test_a_stream_that_goes_nowhere_is_a_plan_error(parallelism: int) -> None:
    flow = Flow(parallelism=parallelism)
    numbers = flow.from_iterable(range(3))
    numbers.collect()
    numbers.map(lambda n: n, name="dangling")
    with pytest.raises(PlanError, match="dangling"):
        flow.plan()
    with pytest.raises(PlanError, match="dangling"):
        await flow.run()


def test_an_empty_flow_is_a_plan_error() -> None:
    with pytest.raises(PlanError):
        Flow().plan()


@pytest.mark.parametrize("bad", [{"parallelism": 0}, {"batch_size": 0}, {"mailbox_capacity": 0}])
def test_flow_refuses_nonsense_settings(bad: dict[str, int]) -> None:
    with pytest.raises(PlanError):
        Flow(**bad)


def test_operator_parallelism_below_one_is_a_plan_error() -> None:
    flow = Flow()
    flow.from_iterable(range(3)).map(abs, parallelism=0).collect()
    with pytest.raises(PlanError):
        flow.plan()


@pytest.mark.parametrize("method", ["map", "filter", "flat_map", "key_by"])
def test_a_coroutine_function_is_refused_at_plan_time(method: str) -> None:
    async def lookup(value: int) -> int:
        return value

    stream = Flow().from_iterable(range(3))
    with pytest.raises(PlanError, match="coroutine"):
        getattr(stream, method)(lookup)


# -- event time through stateless steps --------------------------------------------------------------


async def test_records_keep_their_timestamps_through_map_filter_and_flat_map(parallelism: int) -> None:
    records = stamped()
    flow = Flow(parallelism=parallelism, batch_size=4)
    out = (
        flow.from_iterable(records, watermarks=by_ts())
        .rebalance()
        .map(lambda r: {**r, "double": r["id"] * 2})
        .filter(lambda r: r["id"] % 2 == 0)
        .flat_map(lambda r: [(r["id"], "a"), (r["id"], "b")] if r["id"] % 4 == 0 else [(r["id"], "c")])
        .process(Stamp())
        .collect()
    )
    await flow.run()
    # Each output keeps its input's timestamp, and sees the watermark its input saw at the source:
    # the highest timestamp of the records before it (dropped ones included).
    expected = []
    highest = MIN_WATERMARK
    for record in records:
        if record["id"] % 2 == 0:
            tags = "ab" if record["id"] % 4 == 0 else "c"
            expected.extend(((record["id"], tag), record["ts"], highest) for tag in tags)
        highest = max(highest, record["ts"])
    assert sorted(out.values) == sorted(expected)
