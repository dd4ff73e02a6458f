"""``deploy``: how a physical plan becomes actors, mailboxes and metrics entries.

The runs themselves are tested elsewhere; these tests pin the wiring: which instances a mailbox
joins, what the actors and mailboxes are called, and what every operator is told.
"""

from __future__ import annotations

from typing import Any

from actorflow import Flow, ManualClock, OutputTag, ProcessFunction
from actorflow.checkpoint.coordinator import CheckpointConfig, CheckpointCoordinator
from actorflow.checkpoint.storage import MemoryStorage
from actorflow.operators.base import Operator
from actorflow.operators.chain import Chain, SourceActor
from actorflow.operators.sources import IterableSource
from actorflow.plan.deploy import deploy
from actorflow.runtime.actor import Actor, Runnable
from actorflow.runtime.metrics import JobMetrics
from actorflow.state.backends import StateBackendConfig

ODD: OutputTag[int] = OutputTag("odd")


class Split(ProcessFunction[int, int]):
    def process_element(self, value: int, ctx: Any, out: Any) -> None:
        if value % 2:
            ctx.output(ODD, value)
        else:
            out.collect(value)


class Recording(CheckpointCoordinator):
    """A coordinator that remembers what ``begin_run`` was told."""

    def __init__(self) -> None:
        super().__init__(MemoryStorage(), CheckpointConfig(), ManualClock())
        self.began: tuple[list[str], list[str]] | None = None

    def begin_run(self, actors: list[str], sources: list[Any]) -> None:
        self.began = (actors, [source.name for source in sources])
        super().begin_run(actors, sources)


def deployed(
    flow: Flow, *, one_instance: bool = False, **options: Any
) -> tuple[list[Runnable], JobMetrics]:
    metrics = JobMetrics()
    actors = deploy(
        flow.plan(one_instance=one_instance),
        clock=ManualClock(),
        batch_size=flow.batch_size,
        mailbox_capacity=flow.mailbox_capacity,
        max_parallelism=flow.max_parallelism,
        metrics=metrics,
        **options,
    )
    return actors, metrics


def chain_of(actor: Runnable) -> Chain:
    """The chain an actor runs (an :class:`Actor` keeps it private: its handler)."""
    if isinstance(actor, SourceActor):
        return actor.chain
    assert isinstance(actor, Actor)
    return actor._handler  # type: ignore[return-value]


def three_stage_flow() -> Flow:
    """``src`` (one instance) -rebalance-> ``m`` x3 -forward, a new chain-> ``n -> out`` x3."""
    flow = Flow(parallelism=3, mailbox_capacity=5)
    mapped = flow.from_iterable(range(10), name="src").map(str, name="m")
    mapped.start_new_chain().map(str, name="n").collect(name="out")
    return flow


def test_one_actor_per_chain_instance_and_a_mailbox_per_pair_a_partitioner_reaches() -> None:
    actors, metrics = deployed(three_stage_flow())
    assert [actor.name for actor in actors] == [
        "src[1/1]",
        *(f"m[{i}/3]" for i in (1, 2, 3)),
        *(f"n -> out[{i}/3]" for i in (1, 2, 3)),
    ]
    assert [type(actor) for actor in actors] == [SourceActor] + [Actor] * 6
    channels = [(c.sender, c.receiver, c.mailbox.name, c.mailbox.capacity) for c in metrics.channels]
    assert channels == [
        *(("src[1/1]", f"m[{i}/3]", f"src[1] => m[{i}]", 5) for i in (1, 2, 3)),  # rebalance: all
        *((f"m[{i}/3]", f"n -> out[{i}/3]", f"m[{i}] => n -> out[{i}]", 5) for i in (1, 2, 3)),  # forward
    ]
    source_outputs = chain_of(actors[0]).outputs
    assert [[box.name for box in output.mailboxes] for output in source_outputs] == [
        ["src[1] => m[1]", "src[1] => m[2]", "src[1] => m[3]"]
    ]
    assert [(e.name, e.index, e.parallelism, e.kind) for e in metrics.actors] == [
        ("src[1/1]", 0, 1, "source"),
        *((f"m[{i + 1}/3]", i, 3, "operator") for i in range(3)),
        *((f"n -> out[{i + 1}/3]", i, 3, "sink") for i in range(3)),
    ]
    assert sorted(metrics.actors[6].operators) == ["n", "out"]
    assert all(isinstance(op, Operator) for entry in metrics.actors for op in entry.operators.values())


def test_a_side_output_edge_leaves_from_the_side_outputs_of_its_chain() -> None:
    flow = Flow(parallelism=2)
    main = flow.from_iterable(range(10), name="src").rebalance().process(Split(), name="split")
    main.collect(name="evens")
    main.get_side_output(ODD).collect(name="odds")
    actors, _ = deployed(flow)
    split = [chain_of(actor) for actor in actors if actor.name.startswith("split[")]
    assert len(split) == 2
    for index, chain in enumerate(split, 1):
        assert [[box.name for box in out.mailboxes] for out in chain.outputs] == [
            [f"split[{index}] => evens[{index}]"]
        ]
        assert [(tag.name, [box.name for box in out.mailboxes]) for tag, out in chain.side_outputs] == [
            ("odd", [f"split[{index}] => split.odd -> odds[{index}]"])
        ]


def test_a_partition_task_is_shown_as_its_partition_but_owns_every_key_group() -> None:
    flow = three_stage_flow()
    actors, metrics = deployed(flow, one_instance=True, instance=(2, 5))
    assert [actor.name for actor in actors] == ["src -> m[3/5]", "n -> out[3/5]"]
    assert [(c.sender, c.receiver, c.mailbox.name) for c in metrics.channels] == [
        ("src -> m[3/5]", "n -> out[3/5]", "src -> m[3] => n -> out[3]")
    ]
    assert {(e.index, e.parallelism) for e in metrics.actors} == {(2, 5)}
    contexts = [c for actor in actors for c in chain_of(actor).contexts]
    assert {(c.index, c.parallelism) for c in contexts} == {(0, 1)}
    assert all(len(c.key_groups) == flow.max_parallelism for c in contexts)


def test_sources_replaces_the_source_of_the_node_it_names_only() -> None:
    flow = Flow()
    flow.from_iterable([1], name="a").union(flow.from_iterable([2], name="b")).collect(name="out")
    feed = IterableSource([3])
    actors, _ = deployed(flow, sources={"b": feed, "nope": IterableSource([4])})
    sources = {actor.name: actor.source for actor in actors if isinstance(actor, SourceActor)}
    assert sources["b[1/1]"] is feed
    assert sources["a[1/1]"] is not feed
    assert isinstance(sources["a[1/1]"], IterableSource)


def test_every_operator_hears_of_checkpoints_incremental_snapshots_and_the_state_backend() -> None:
    coordinator = Recording()
    backend = StateBackendConfig("heap")
    actors, _ = deployed(
        three_stage_flow(), checkpoints=coordinator, incremental=True, state_backend=backend
    )
    contexts = [c for actor in actors for c in chain_of(actor).contexts]
    contexts += [actor.context for actor in actors if isinstance(actor, SourceActor)]
    assert contexts
    for context in contexts:
        assert (context.checkpointing, context.incremental, context.state_backend) == (True, True, backend)
        assert context.restored_files is None
    assert all(chain_of(actor).hooks is not None for actor in actors)
    assert coordinator.began == ([actor.name for actor in actors], ["src[1/1]"])


def test_without_checkpoints_nothing_is_told_of_them() -> None:
    actors, _ = deployed(three_stage_flow())
    assert all(chain_of(actor).hooks is None for actor in actors)
    assert not any(c.checkpointing for actor in actors for c in chain_of(actor).contexts)


def test_each_deploy_makes_fresh_operators() -> None:
    flow = three_stage_flow()
    first, _ = deployed(flow)
    second, _ = deployed(flow)
    ops = [id(op) for actors in (first, second) for actor in actors for op in chain_of(actor).operators]
    assert len(ops) == len(set(ops)) == 2 * 9  # m x3, n and out x3; a source is no operator
