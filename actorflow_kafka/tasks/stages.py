"""Stages: a task flow cut where its records change partition.

A partition task holds the keys of its partition, so a keyed step may run in the input's tasks only
if the input topic is partitioned by that step's key: the source declares it
(``KafkaSource(..., partitioned_by="card_id")``), and a ``key_by("card_id")`` then stays in the
input's tasks. Every other ``key_by`` goes through a **repartition topic** that actorflow creates,
``<group>-<operator>-repartition`` (named after the keyed operator, as Kafka Streams names its
own), with as many partitions as the input topic: the stage before it writes each record to the
partition of its new key (see :mod:`actorflow_kafka.tasks.repartition`), and the operators after
it form a new **stage**, whose tasks (one per partition of that topic) keep their own state,
timers and changelogs. Within a stage a ``key_by`` on the key the stage is partitioned by stays in
the stage.

>>> from actorflow import Flow, TumblingEventTimeWindows
>>> from actorflow_kafka import KafkaSource
>>> flow = Flow("spend")
>>> source = KafkaSource("tx", bootstrap_servers="k:9092", group_id="g", tasks=True,
...                      partitioned_by="merchant_id")
>>> minute = TumblingEventTimeWindows.of(60_000)
>>> _ = (flow.from_source(source, name="tx")
...      .key_by("merchant_id").window(minute).reduce(max, name="by-merchant")
...      .key_by("card_id").window(minute).reduce(max, name="by-card").print(name="out"))
>>> for stage in cut_stages(flow.graph, source, "g"):
...     print(stage.topic, stage.plan.describe())
tx [tx -> by-merchant -> by-card.repartition] x1
g-by-card-repartition [by-card.in -> by-card -> out] x1
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actorflow.errors import PlanError
from actorflow.operators.snapshots import ended_owner, watermark_owner
from actorflow.plan.graph import Edge, LogicalGraph, Node
from actorflow.plan.partitioners import Hash
from actorflow.plan.physical import PhysicalPlan, compile_graph
from actorflow_kafka.tasks.changelog import topic_name

__all__ = ["Stage", "cut_stages", "repartition_topic"]


def repartition_topic(group: str, operator: str) -> str:
    """The repartition topic in front of keyed operator ``operator`` of group ``group``'s job.

    >>> repartition_topic("fraud", "windows")
    'fraud-windows-repartition'
    """
    return topic_name(f"{group}-{operator}-repartition")


@dataclass(eq=False)
class Stage:
    """Operators that run in the tasks of one topic's partitions."""

    #: The topic whose partitions are this stage's tasks: the input topic or a repartition topic.
    topic: str
    #: The stage's operators at one instance each (a task's plan).
    plan: PhysicalPlan
    #: The node reading ``topic`` (its feed replaces it in each task).
    source_name: str
    #: Sources every task of the stage reads whole (its own copy each): ``{node name: source}``.
    side_inputs: dict[str, Any] = field(default_factory=dict)
    #: Reads a repartition topic: event time comes from the upstream stage's tasks.
    repartitioned: bool = False
    #: The repartition topics this stage writes (for the job to create).
    writes: list[str] = field(default_factory=list)

    @property
    def state_names(self) -> list[str]:
        """Every operator that may keep state: each has a changelog topic once it wrote some."""
        return [node.name for chain in self.plan.chains for node in chain.nodes]

    def source_of(self, owner: str) -> str | None:
        """The source whose watermark or end part ``owner`` names (``transactions@watermark``),
        or None for an operator's own part."""
        for source in (self.source_name, *self.side_inputs):
            if owner in (watermark_owner(source), ended_owner(source)):
                return source
        return None


def cut_stages(graph: LogicalGraph, source: Any, group: str) -> list[Stage]:
    """Cut ``graph``, whose partitioned input is ``source``, into stages at its repartitions (the
    input's stage first, then in the order of the graph); raises :class:`PlanError` for what a task
    flow cannot run."""
    from actorflow_kafka.tasks.repartition import RepartitionInput, RepartitionSink

    main = [node for node in graph.nodes if node.kind == "source" and node.source is source]
    if len(main) != 1:
        raise PlanError("a flow run as partition tasks reads its partitioned KafkaSource once")
    stage_of: dict[Node, int] = {main[0]: 0}
    #: Per stage (by index): the key it is partitioned by (None: unknown), and the keyed operator
    #: and the edge it starts with (None for the input's stage).
    keys: list[Callable[[Any], Any] | str | None] = [source.partitioned_by]
    entries: list[tuple[Node, Edge] | None] = [None]
    # What the partitioned input does not reach is beside it (side inputs and their operators):
    # it runs in the stage of what it feeds.
    reached = {main[0]}
    for node in graph.nodes:
        if any(edge.upstream in reached for edge in node.inputs):
            reached.add(node)
    for node in graph.nodes:
        if node not in reached or node is main[0]:
            continue
        ins = [edge for edge in node.inputs if edge.upstream in reached]
        cuts = [
            edge
            for edge in ins
            if isinstance(edge.partitioner, Hash)
            and not _same_key(edge.partitioner.key_of, keys[stage_of[edge.upstream]])
        ]
        within = {stage_of[edge.upstream] for edge in ins if edge not in cuts}
        if cuts and (len(cuts) > 1 or within):
            raise PlanError(
                f"operator {node.name!r} takes records keyed anew together with other records: a "
                "flow run as partition tasks repartitions one input per operator for now"
            )
        if len(within) > 1:
            raise PlanError(
                f"operator {node.name!r} joins records of two repartitioned parts of the flow: "
                "not supported in a flow run as partition tasks yet"
            )
        if cuts:
            partitioner = cuts[0].partitioner
            assert isinstance(partitioner, Hash)
            stage_of[node] = len(keys)
            keys.append(partitioner.key_of)
            entries.append((node, cuts[0]))
        else:
            stage_of[node] = within.pop()
    side = [node for node in graph.nodes if node not in reached]
    for node in reversed(side):
        owners = {stage_of[consumer] for consumer in graph.consumers(node)}
        if len(owners) > 1:
            raise PlanError(
                f"{node.name!r} feeds operators on both sides of a repartition: read its source "
                "once for each side (two sources)"
            )
        stage_of[node] = owners.pop()

    graphs = [LogicalGraph() for _ in keys]
    copies: dict[Node, Node] = {}
    stages: list[Stage] = []
    for index, entry in enumerate(entries):
        if entry is None:
            stages.append(Stage(source.topics[0], PhysicalPlan([]), main[0].name))
            continue
        node, edge = entry
        topic = repartition_topic(group, node.name)
        reader = graphs[index].add(
            "source", f"{node.name}.in", source=RepartitionInput(topic), chainable=True
        )
        stages.append(Stage(topic, PhysicalPlan([]), reader.name, repartitioned=True))
        copies[node] = _copy(graphs[index], node, [Edge(reader, edge.partitioner, None, edge.input)])
    for node in graph.nodes:
        if node in copies:
            continue
        index = stage_of[node]
        inputs = []
        for edge in node.inputs:
            if stage_of[edge.upstream] == index:
                inputs.append(dataclasses.replace(edge, upstream=copies[edge.upstream]))
        copies[node] = _copy(graphs[index], node, inputs)
    for index, entry in enumerate(entries):
        if entry is None:
            continue
        node, edge = entry
        upstream = stage_of[edge.upstream]
        topic = stages[index].topic
        key_of = keys[index]
        assert key_of is not None and not isinstance(key_of, str)
        graphs[upstream].add(
            "sink",
            f"{node.name}.repartition",
            make_operator=lambda topic=topic, key_of=key_of: RepartitionSink(topic, key_of),
            inputs=[Edge(copies[edge.upstream], None, edge.tag)],
        )
        stages[upstream].writes.append(topic)
    for index, stage in enumerate(stages):
        stage.plan = compile_graph(graphs[index], 1, one_instance=True)
        stage.side_inputs = {
            node.name: node.source for node in side if node.kind == "source" and stage_of[node] == index
        }
    return stages


def _copy(graph: LogicalGraph, node: Node, inputs: list[Edge]) -> Node:
    """``node`` in ``graph`` (same name and operator), reading ``inputs``."""
    fields = {
        f.name: getattr(node, f.name)
        for f in dataclasses.fields(node)
        if f.name not in ("id", "name", "kind", "inputs")
    }
    return graph.add(node.kind, node.name, inputs=inputs, **fields)


def _same_key(key_of: Callable[[Any], Any], partitioned_by: Callable[[Any], Any] | str | None) -> bool:
    """Whether ``key_of`` selects what ``partitioned_by`` (a field name or a function) does."""
    if partitioned_by is None:
        return False
    if isinstance(partitioned_by, str):
        return isinstance(key_of, operator.itemgetter) and key_of.__reduce__() == (
            operator.itemgetter,
            (partitioned_by,),
        )
    if isinstance(key_of, operator.itemgetter) and isinstance(partitioned_by, operator.itemgetter):
        return key_of.__reduce__() == partitioned_by.__reduce__()
    return key_of is partitioned_by
