"""The API layer's builder (actorflow/api/nodes.py): node names, the name each operator gets, wiring.

Savepoints key an operator's state by its node's name, so the names a flow's nodes get are pinned
here for a flow that goes through every way the API adds a node.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from actorflow import (
    BroadcastProcessFunction,
    Collector,
    Context,
    CoProcessFunction,
    DataStream,
    Flow,
    KeyedBroadcastProcessFunction,
    KeyedCoProcessFunction,
    KeyedProcessFunction,
    MapStateDescriptor,
    OutputTag,
    Pattern,
    PlanError,
    ProcessFunction,
    ProcessWindowFunction,
    TumblingEventTimeWindows,
    WatermarkStrategy,
)
from actorflow.api import nodes
from actorflow.operators.stateless import MapOperator
from actorflow.plan.partitioners import Hash

LATE: OutputTag[Any] = OutputTag("late")
RULES = MapStateDescriptor("rules")


class Pass(ProcessFunction[Any, Any]):
    def process_element(self, value: Any, ctx: Context, out: Collector) -> None:
        out.collect(value)


class KeyedPass(KeyedProcessFunction[Any, Any]):
    def process_element(self, value: Any, ctx: Context, out: Collector) -> None:
        out.collect(value)


class CoPass(CoProcessFunction[Any, Any, Any]):
    def process_element1(self, value: Any, ctx: Context, out: Collector) -> None:
        out.collect(value)

    def process_element2(self, value: Any, ctx: Context, out: Collector) -> None:
        out.collect(value)


class KeyedCoPass(KeyedCoProcessFunction[Any, Any, Any]):
    def process_element1(self, value: Any, ctx: Context, out: Collector) -> None:
        out.collect(value)

    def process_element2(self, value: Any, ctx: Context, out: Collector) -> None:
        out.collect(value)


class BroadcastPass(BroadcastProcessFunction[Any, Any, Any]):
    def process_element(self, value: Any, ctx: Any, out: Collector) -> None:
        out.collect(value)

    def process_broadcast_element(self, value: Any, ctx: Any, out: Collector) -> None:
        pass


class KeyedBroadcastPass(KeyedBroadcastProcessFunction[Any, Any, Any]):
    def process_element(self, value: Any, ctx: Any, out: Collector) -> None:
        out.collect(value)

    def process_broadcast_element(self, value: Any, ctx: Any, out: Collector) -> None:
        pass


class Count(ProcessWindowFunction[Any, int, Any]):
    def process(self, key: Any, context: Any, elements: list[Any], out: Collector) -> None:
        out.collect(len(elements))


async def identity(value: Any) -> Any:
    return value


def every_way_to_add_a_node() -> Flow:
    """A flow whose nodes come from every API method that adds one, default names colliding."""
    flow = Flow("every-node", parallelism=2)
    stamped = WatermarkStrategy.punctuated(lambda n: n)
    numbers = flow.from_iterable(range(10), watermarks=stamped)
    words = flow.from_iterable(["a"], name="words")
    mapped = numbers.map(lambda n: n).map(lambda n: n, parallelism=1).filter(bool).flat_map(lambda n: [n])
    processed = mapped.process(Pass()).map_async(identity).assign_timestamps_and_watermarks(stamped)
    keyed = processed.key_by(lambda n: n % 2)
    windowed = keyed.window(TumblingEventTimeWindows.of(5)).side_output_late_data(LATE).process(Count())
    windowed.get_side_output(LATE).print()
    summed = keyed.window(TumblingEventTimeWindows.of(5)).reduce(lambda a, b: a + b, name="sums")
    whole = processed.window_all(TumblingEventTimeWindows.of(5)).reduce(lambda a, b: a + b)
    kept = keyed.process(KeyedPass()).start_new_chain().map(lambda n: n, name="after-break")
    co = kept.connect(words).process(CoPass())
    co_mapped = kept.connect(words).map(lambda n: n, lambda w: w)
    keyed_co = kept.connect(words).key_by(lambda n: n, lambda w: w).process(KeyedCoPass())
    ruled = kept.connect(words.broadcast(RULES)).process(BroadcastPass())
    keyed_ruled = kept.key_by(lambda n: n).connect(words.broadcast(RULES)).process(KeyedBroadcastPass())
    pattern = Pattern.begin("one").where(lambda n: n > 0)
    found = keyed.pattern(pattern).select(lambda match: match)
    found_all = processed.pattern(pattern).flat_select(lambda match: [match])
    window = TumblingEventTimeWindows.of(5)
    joined = numbers.join(summed).where(lambda n: n).equal_to(lambda n: n).window(window)
    join = joined.apply(lambda a, b: (a, b))
    join_2 = numbers.join(summed).where(lambda n: n).equal_to(lambda n: n).window(window).apply(max)
    co_group = numbers.co_group(whole).where(lambda n: n).equal_to(lambda n: n).window(window)
    grouped = co_group.apply(lambda lefts, rights, out: None)
    interval = keyed.interval_join(summed.key_by(lambda n: n)).between(-1, 1)
    intervals: DataStream[Any] = interval.process(lambda a, b, ctx, out: out.collect(a))
    streams = [windowed, whole, co, co_mapped, keyed_co, ruled, keyed_ruled, found, found_all]
    streams += [join, join_2, grouped, intervals]
    streams[0].union(*streams[1:]).collect()
    summed.sink_to_callback(print, name="callback")
    return flow


#: The names (and kinds) the flow above gets; they must not change: savepoints are keyed by them.
NAMES = [
    ("source", "source"),
    ("words", "source"),
    ("map", "map"),
    ("map-2", "map"),
    ("filter", "filter"),
    ("flat_map", "flat_map"),
    ("process", "process"),
    ("map_async", "map_async"),
    ("timestamps", "timestamps"),
    ("window", "window"),
    ("window.late", "side"),
    ("print", "sink"),
    ("sums", "window"),
    ("window-2", "window"),
    ("process-2", "process"),
    ("after-break", "map"),
    ("co_process", "co_process"),
    ("co_map", "co_process"),
    ("co_process-2", "co_process"),
    ("broadcast_process", "broadcast_process"),
    ("broadcast_process-2", "broadcast_process"),
    ("pattern", "pattern"),
    ("pattern-2", "pattern"),
    ("join.left", "map"),
    ("join.right", "map"),
    ("join", "window"),
    ("join-2.left", "map"),
    ("join-2.right", "map"),
    ("join-2", "window"),
    ("co_group.left", "map"),
    ("co_group.right", "map"),
    ("co_group", "window"),
    ("interval_join.left", "map"),
    ("interval_join.right", "map"),
    ("interval_join", "process"),
    ("collect", "sink"),
    ("callback", "sink"),
]

#: Its plan: chains (so chaining flags), parallelism and partitioners; a chain's inputs one a line.
PLAN = [
    "[source] x1",
    "[words] x1",
    "[map] x2 <- rebalance from [source]",
    "[map-2] x1 <- rebalance from [map]",
    "[filter -> flat_map -> process -> map_async -> timestamps] x2 <- rebalance from [map-2]",
    "[window] x2 <- hash from [filter -> flat_map -> process -> map_async -> timestamps]",
    "[window.late -> print] x2 <- forward from [window] side 'late'",
    "[sums] x2 <- hash from [filter -> flat_map -> process -> map_async -> timestamps]",
    "[window-2] x1 <- hash from [filter -> flat_map -> process -> map_async -> timestamps]",
    "[process-2] x2 <- hash from [filter -> flat_map -> process -> map_async -> timestamps]",
    "[after-break] x2 <- forward from [process-2]",
    "[co_process] x2 <- forward from [after-break]",
    "rebalance from [words] (input 2)",
    "[co_map] x2 <- forward from [after-break]",
    "rebalance from [words] (input 2)",
    "[co_process-2] x2 <- hash from [after-break]",
    "hash from [words] (input 2)",
    "[broadcast_process] x2 <- forward from [after-break]",
    "broadcast from [words] (input 2)",
    "[broadcast_process-2] x2 <- hash from [after-break]",
    "broadcast from [words] (input 2)",
    "[pattern] x2 <- hash from [filter -> flat_map -> process -> map_async -> timestamps]",
    "[pattern-2] x1 <- hash from [filter -> flat_map -> process -> map_async -> timestamps]",
    "[join.left] x2 <- rebalance from [source]",
    "[join.right] x2 <- forward from [sums]",
    "[join] x2 <- hash from [join.left]",
    "hash from [join.right]",
    "[join-2.left] x2 <- rebalance from [source]",
    "[join-2.right] x2 <- forward from [sums]",
    "[join-2] x2 <- hash from [join-2.left]",
    "hash from [join-2.right]",
    "[co_group.left] x2 <- rebalance from [source]",
    "[co_group.right] x2 <- rebalance from [window-2]",
    "[co_group] x2 <- hash from [co_group.left]",
    "hash from [co_group.right]",
    "[interval_join.left] x2 <- forward from [filter -> flat_map -> process -> map_async -> timestamps]",
    "[interval_join.right] x2 <- forward from [sums]",
    "[interval_join] x2 <- hash from [interval_join.left]",
    "hash from [interval_join.right]",
    "[collect] x2 <- forward from [window]",
    "rebalance from [window-2]",
    "forward from [co_process]",
    "forward from [co_map]",
    "forward from [co_process-2]",
    "forward from [broadcast_process]",
    "forward from [broadcast_process-2]",
    "forward from [pattern]",
    "rebalance from [pattern-2]",
    "forward from [join]",
    "forward from [join-2]",
    "forward from [co_group]",
    "forward from [interval_join]",
    "[callback] x2 <- forward from [sums]",
]


def test_every_way_to_add_a_node_keeps_its_names_and_plan() -> None:
    flow = every_way_to_add_a_node()
    assert [(node.name, node.kind) for node in flow.graph.nodes] == NAMES
    assert flow.plan().describe().replace(", ", "\n").split("\n") == PLAN


def test_every_operator_carries_its_nodes_name() -> None:
    flow = every_way_to_add_a_node()
    for node in flow.graph.nodes:
        if node.kind in ("source", "sink"):
            continue
        assert node.make_operator is not None
        first, second = node.make_operator(), node.make_operator()
        assert first.name == second.name == node.name
        assert first is not second  # one operator per instance


def test_add_names_the_node_and_hands_the_name_to_the_factory() -> None:
    flow = Flow()
    numbers = flow.from_iterable([1])
    made: list[str] = []

    def make(node_name: str) -> MapOperator:
        made.append(node_name)
        return MapOperator(node_name, str, None)

    first = nodes.add(numbers, "map", None, make, default_name="tag")
    second = nodes.add(numbers, "map", None, make, default_name="tag", parallelism=3, max_parallelism=4)
    third = nodes.add(numbers, "map", "mine", make)
    ((node, partitioner),) = nodes.inputs_of(second)
    assert partitioner is None
    assert (node.name, node.parallelism, node.max_parallelism) == ("tag-2", 3, 4)
    assert [nodes.inputs_of(s)[0][0].name for s in (first, third)] == ["tag", "mine"]
    assert made == []  # the plan makes the operators, not the builder
    assert node.make_operator is not None and node.make_operator().name == "tag-2"
    assert made == ["tag-2"]
    with pytest.raises(PlanError, match="an operator named 'mine' already exists in this flow"):
        nodes.add(numbers, "map", "mine", make)


def test_add_wires_the_streams_partitioners_and_chaining() -> None:
    flow = Flow()
    source = flow.from_iterable([1])
    keyed = source.key_by(lambda n: n)
    node = nodes.inputs_of(keyed.start_new_chain().map(str))[0][0]
    assert not node.chainable
    assert [(edge.upstream.name, type(edge.partitioner)) for edge in node.inputs] == [("source", Hash)]
    assert nodes.inputs_of(source.map(str))[0][0].chainable


def test_rewired_reads_other_inputs_and_keeps_chaining() -> None:
    flow = Flow()
    broken = flow.from_iterable([1]).key_by(lambda n: n).start_new_chain()
    plain = nodes.rewired(broken, tuple((node, None) for node, _ in nodes.inputs_of(broken)))
    node = nodes.inputs_of(plain.map(str))[0][0]
    assert (node.inputs[0].partitioner, node.chainable) == (None, False)


def test_two_input_nodes_number_their_inputs() -> None:
    flow = Flow()
    left = flow.from_iterable([1], name="left")
    right = flow.from_iterable([2], name="right").union(flow.from_iterable([3], name="more"))
    out = nodes.add_two_input(left, right, "co", None, lambda name: MapOperator(name, str, None))
    node = nodes.inputs_of(out)[0][0]
    assert [(edge.upstream.name, edge.input) for edge in node.inputs] == [
        ("left", 0),
        ("right", 1),
        ("more", 1),
    ]
    with pytest.raises(PlanError, match="cannot connect streams of different flows"):
        nodes.add_two_input(left, Flow().from_iterable([1]), "co", None, str)  # type: ignore[arg-type]


def test_a_side_output_needs_the_stream_of_one_operator() -> None:
    flow = Flow()
    source = flow.from_iterable([1])
    mapped = source.map(str, name="m")
    side = nodes.add_side_output(mapped, LATE, None)
    node = nodes.inputs_of(side)[0][0]
    assert (node.name, node.inputs[0].tag) == ("m.late", LATE)
    for stream in (source, mapped.union(mapped), mapped.rebalance()):
        with pytest.raises(PlanError, match="needs the stream of one operator"):
            nodes.add_side_output(stream, LATE, None)


def test_free_name_is_the_name_a_default_would_get() -> None:
    flow = Flow()
    numbers = flow.from_iterable([1])
    assert nodes.free_name(flow, "map") == "map"
    numbers.map(str)
    numbers.map(str)
    assert nodes.free_name(flow, "map") == "map-3" == nodes.inputs_of(numbers.map(str))[0][0].name


#: Reaching into a stream's or a flow's wiring, by the private names the builder keeps to itself.
PRIVATE = re.compile(r"(\w+)\.(_add|_follow|_graph|_inputs|_chainable)\b")
#: Who may read them: the builder, and a class its own (``self``; ``other`` in ``DataStream.union``).
OWNERS = {"nodes.py": None, "stream.py": {"self", "other"}}


@pytest.mark.parametrize("layer", ["api", "sql"])
def test_only_the_builder_reaches_into_a_streams_wiring(layer: str) -> None:
    root = Path(nodes.__file__).resolve().parent.parent / layer
    found = []
    for path in sorted(root.glob("*.py")):
        allowed = OWNERS.get(path.name, {"self"}) if layer == "api" else {"self"}
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for match in PRIVATE.finditer(line):
                if allowed is not None and match.group(1) not in allowed:
                    found.append(f"{path.name}:{number}: {line.strip()}")
    assert found == []
