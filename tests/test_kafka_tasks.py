"""Partition tasks against the real broker: state that follows Kafka partitions between workers.

A flow whose ``KafkaSource`` has ``tasks=True`` runs one task per input partition, with keyed state,
timers and event time of that partition alone, kept in changelog topics, and output exactly once.
Every test compares what a ``read_committed`` reader sees with the plain reference implementation
(``benchmarks/reference.py``) run on each partition's records separately: results must not depend
on how many workers run, nor on when partitions move between them.

The workers are ``python -m benchmarks worker`` (Q2 and Q3 of the benchmark), in this process or as
processes of their own, stopped with SIGTERM or killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import (  # type: ignore[import-untyped, unused-ignore]  # aiokafka has no py.typed
    AIOKafkaConsumer,
    AIOKafkaProducer,
    TopicPartition,
)
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped, unused-ignore]

from actorflow.errors import PlanError
from benchmarks import reference
from benchmarks.generate import generate
from benchmarks.scale import LAG_MS, expected, read_partitions
from benchmarks.worker import build, parse_args
from tests.kafka_fixtures import KafkaEndpoint, TopicFactory

ROOT = Path(__file__).resolve().parent.parent
WINDOW_MS = 10_000


# -- topics ------------------------------------------------------------------------------------------


async def produce(
    bootstrap: str,
    topic: str,
    values: Sequence[dict[str, Any]],
    *,
    key: str = "card_id",
    partition: int | None = None,
) -> None:
    """Write ``values`` as JSON keyed by field ``key`` (Kafka's partitioner keeps a key's records on
    one partition), or all to ``partition``."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        sent = [
            await producer.send(topic, orjson.dumps(value), key=value[key].encode(), partition=partition)
            for value in values
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def read_output(bootstrap: str, topic: str) -> list[Any]:
    """What a ``read_committed`` reader of ``topic`` sees now."""
    return [value for values in (await read_partitions(bootstrap, topic)).values() for value in values]


async def wait_for_output(
    bootstrap: str, topic: str, count: int, *, within: float, alive: Callable[[], None]
) -> list[Any]:
    """Read ``topic`` until it holds ``count`` committed records; ``alive()`` raises if a worker died."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        values = await read_output(bootstrap, topic)
        if len(values) >= count:
            return values
        alive()
        if loop.time() >= deadline:
            raise AssertionError(f"{len(values)} of {count} results after {within} s")
        await asyncio.sleep(0.2)


# -- the reference, per partition ---------------------------------------------------------------------


def expected_q3(per_partition: dict[int, list[Any]]) -> list[Any]:
    return expected("q3", per_partition)


def expected_q2(per_partition: dict[int, list[Any]]) -> list[Any]:
    """The windows each partition's watermark (``max ts - 2000`` of that partition) has fired."""
    return expected("q2", per_partition)


def key(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def difference(results: list[Any], expected: list[Any]) -> str:
    """ "" when ``results`` are ``expected`` exactly (as multisets), else what is missing or extra."""
    got, wanted = collections.Counter(map(key, results)), collections.Counter(map(key, expected))
    if got == wanted:
        return ""
    missing = [e.decode() for e in (wanted - got).elements()]
    extra = [e.decode() for e in (got - wanted).elements()]
    return f"{len(missing)} missing {missing[:5]}, {len(extra)} extra (duplicates?) {extra[:5]}"


def worker_args(bootstrap: str, query: str, source: str, output: str, group: str) -> list[str]:
    return [
        *("--query", query),
        *("--bootstrap-servers", bootstrap),
        *("--input-topic", source),
        *("--output-topic", output),
        *("--group", group),
        *("--checkpoint-interval-ms", "200"),
        *("--max-records", "200"),
        *("--heartbeat-interval-ms", "250"),
        *("--session-timeout-ms", "6000"),  # the broker's least: a killed worker's partitions move
        *("--log-level", "DEBUG"),
    ]


# -- in this process -----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def in_process(argv: list[str]) -> AsyncIterator[Callable[[], None]]:
    """Run one worker in this process while the block runs; then stop it gracefully."""
    flow, source = build(parse_args(argv))
    job = asyncio.ensure_future(flow.run())

    def alive() -> None:
        if job.done():
            job.result()
            raise AssertionError("the worker ended on its own")

    try:
        yield alive
    finally:
        source.stop()
        await asyncio.wait_for(job, 60)


@pytest.mark.parametrize("query", ["q2", "q3"])
@pytest.mark.timeout(120)
async def test_one_worker_gives_the_per_partition_reference(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory, query: str
) -> None:
    """Each partition is a task with its own event time: Q2's windows are exactly those each
    partition's watermark fired, whatever order the consumer fetches partitions in."""
    bootstrap = kafka_broker.bootstrap_servers
    source = await kafka_topic(partitions=4)
    output = await kafka_topic(partitions=2)
    await produce(bootstrap, source, [dict(tx) for tx in generate(6_000, seed=3, cards=300)])
    per_partition = await read_partitions(bootstrap, source)
    expected = expected_q2(per_partition) if query == "q2" else expected_q3(per_partition)
    assert expected
    async with in_process(
        worker_args(bootstrap, query, source, output, f"g-{uuid.uuid4().hex[:8]}")
    ) as alive:
        await wait_for_output(bootstrap, output, len(expected), within=60, alive=alive)
    results = await read_output(bootstrap, output)
    assert not difference(results, expected)


@pytest.mark.timeout(120)
async def test_a_worker_gets_back_partitions_it_gave_away(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    """Worker A owns every partition; B joins (A keeps half: the other half's tasks close) and
    leaves again (A takes them all back: new tasks, restored from the changelog, not the closed
    ones); every result once."""
    bootstrap = kafka_broker.bootstrap_servers
    source = await kafka_topic(partitions=4)
    output = await kafka_topic(partitions=2)
    transactions = [dict(tx) for tx in generate(6_000, seed=7, cards=300)]
    argv = worker_args(bootstrap, "q3", source, output, f"g-{uuid.uuid4().hex[:8]}")

    async def settle(alive: Callable[[], None]) -> None:
        expected = expected_q3(await read_partitions(bootstrap, source))
        await wait_for_output(bootstrap, output, len(expected), within=60, alive=alive)

    async with in_process(argv) as a:
        await produce(bootstrap, source, transactions[:2_000])
        await settle(a)
        async with in_process(argv) as b:
            await produce(bootstrap, source, transactions[2_000:4_000])
            await settle(lambda: (a(), b()))
        await produce(bootstrap, source, transactions[4_000:])
        await settle(a)
    expected = expected_q3(await read_partitions(bootstrap, source))
    assert not difference(await read_output(bootstrap, output), expected)


def test_beside_its_partitioned_topic_a_task_flow_reads_only_kafka_topics_whole() -> None:
    from actorflow import Flow
    from actorflow_kafka import KafkaSource

    flow = Flow("two-sources")
    kafka = KafkaSource("t", bootstrap_servers="127.0.0.1:1", group_id="g", tasks=True)
    flow.from_source(kafka).union(flow.from_iterable([1])).print()
    with pytest.raises(PlanError, match="only Kafka topics every task reads whole"):
        asyncio.run(flow.run())


@pytest.mark.timeout(120)
async def test_a_worker_s_metrics_show_its_tasks_as_instances_per_partition(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    """``/metrics`` (and the dashboard, which reads the same) of a task worker: each operator of
    each stage once per partition task the worker runs, instance = partition, counting its records."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from actorflow.web.prometheus import FlowCollector

    bootstrap = kafka_broker.bootstrap_servers
    source = await kafka_topic(partitions=4)
    output = await kafka_topic(partitions=1)
    group = f"g-{uuid.uuid4().hex[:8]}"
    argv = [*worker_args(bootstrap, "q2", source, output, group), "--partitioned-by", "merchant_id"]
    transactions = [dict(tx) for tx in generate(2_000, seed=9, cards=50)]
    await produce(bootstrap, source, transactions, key="merchant_id")
    flow, kafka = build(parse_args(argv))
    job = asyncio.ensure_future(flow.run())

    def alive() -> None:
        if job.done():
            job.result()

    def scrape() -> dict[tuple[str, str, str], float]:
        """``{(sample, operator, instance): value}`` of ``/metrics`` now."""
        registry = CollectorRegistry()
        registry.register(FlowCollector(flow))
        return {
            (
                sample.name,
                sample.labels.get("operator", ""),
                sample.labels.get("instance", ""),
            ): sample.value
            for family in text_string_to_metric_families(generate_latest(registry).decode())
            for sample in family.samples
        }

    def into(samples: dict[tuple[str, str, str], float], operator: str) -> dict[str, float]:
        return {
            i: v
            for (name, o, i), v in samples.items()
            if name == "actorflow_records_in_total" and o == operator
        }

    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while sum(into(samples := scrape(), "windows").values()) < len(transactions):
            alive()
            assert loop.time() < deadline, into(samples, "windows")
            await asyncio.sleep(0.1)
    finally:
        kafka.stop()
        await asyncio.wait_for(job, 60)
    assert samples[("actorflow_ready", "", "")] == 1.0
    for operator in ("transactions", "windows.in", "windows"):
        counts = into(samples, operator)
        assert set(counts) == {"0", "1", "2", "3"}, counts
        assert sum(counts.values()) == len(transactions)


def test_a_key_by_on_the_declared_partitioning_stays_in_the_input_tasks_and_others_repartition() -> None:
    from actorflow import Flow, TumblingEventTimeWindows
    from actorflow_kafka import KafkaSource
    from actorflow_kafka.tasks.stages import cut_stages

    def stages(partitioned_by: str | None) -> list[tuple[str, str]]:
        flow = Flow("f")
        kafka = KafkaSource(
            "tx", bootstrap_servers="127.0.0.1:1", group_id="g", tasks=True, partitioned_by=partitioned_by
        )
        minute = TumblingEventTimeWindows.of(60_000)
        (
            flow.from_source(kafka, name="tx")
            .key_by("card_id").window(minute).reduce(max, name="per-card")
            .key_by("card_id").window(minute).reduce(max, name="again-per-card")
            .print(name="out")
        )  # fmt: skip
        return [(stage.topic, stage.plan.describe()) for stage in cut_stages(flow.graph, kafka, "g")]

    assert stages("card_id") == [("tx", "[tx -> per-card -> again-per-card -> out] x1")]
    assert (
        stages("merchant_id")
        == stages(None)
        == [
            ("tx", "[tx -> per-card.repartition] x1"),
            ("g-per-card-repartition", "[per-card.in -> per-card -> again-per-card -> out] x1"),
        ]
    )


def test_a_task_flow_refuses_what_it_cannot_repartition() -> None:
    from actorflow import Flow, TumblingEventTimeWindows
    from actorflow_kafka import KafkaSource
    from actorflow_kafka.tasks.stages import cut_stages

    minute = TumblingEventTimeWindows.of(60_000)
    flow = Flow("f")
    kafka = KafkaSource("tx", bootstrap_servers="127.0.0.1:1", group_id="g", tasks=True)
    tx = flow.from_source(kafka, name="tx")
    tx.key_by("card_id").union(tx.key_by("merchant_id")).key_by("card_id").window(minute).reduce(
        max
    ).print()
    with pytest.raises(PlanError, match="one input per operator"):
        cut_stages(flow.graph, kafka, "g")

    flow = Flow("f")
    kafka = KafkaSource("tx", bootstrap_servers="127.0.0.1:1", group_id="g", tasks=True)
    rules = flow.from_source(KafkaSource("rules", bootstrap_servers="127.0.0.1:1"), name="rules")
    tx = flow.from_source(kafka, name="tx").union(rules).map(dict)
    tx.key_by("card_id").window(minute).reduce(max).union(rules).print()
    with pytest.raises(PlanError, match="'rules' feeds operators on both sides of a repartition"):
        cut_stages(flow.graph, kafka, "g")


# -- worker processes ------------------------------------------------------------------------------------


class Worker:
    """``python -m benchmarks worker`` as a process of its own; its output goes to ``log``."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.argv = argv
        self.log = log
        self.process: asyncio.subprocess.Process | None = None
        #: Set once the worker printed ``ready``: its signal handlers are in place.
        self.ready = asyncio.Event()
        self._copying: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks",
            "worker",
            *self.argv,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self._copying = asyncio.ensure_future(self._copy_output(self.process))

    async def _copy_output(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        with self.log.open("ab") as out:
            async for line in process.stdout:
                out.write(line)
                out.flush()
                if line.strip() == b"ready":
                    self.ready.set()

    def alive(self) -> None:
        if self.process is not None and self.process.returncode is not None:
            raise AssertionError(f"a worker exited with {self.process.returncode}:\n{self.report()}")

    def report(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        """Send ``signum`` and wait for the exit status. A graceful stop waits until the worker is
        ready first: before that, SIGTERM would end it by default, not by its handler."""
        assert self.process is not None
        if signum != signal.SIGKILL:
            ready = asyncio.ensure_future(self.ready.wait())
            exited = asyncio.ensure_future(self.process.wait())
            await asyncio.wait({ready, exited}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
        if self.process.returncode is None:
            self.process.send_signal(signum)
        status = await asyncio.wait_for(self.process.wait(), 60)
        if self._copying is not None:
            await self._copying
        return status


@contextlib.asynccontextmanager
async def processes() -> AsyncIterator[list[Worker]]:
    started: list[Worker] = []
    try:
        yield started
    finally:
        for worker in started:
            if worker.process is not None and worker.process.returncode is None:
                worker.process.kill()
                await worker.process.wait()
            if worker._copying is not None:
                await worker._copying


SCENARIOS = {
    # seed: (query, events)
    11: ("q3", 12_000),
    12: ("q2", 12_000),
}


@pytest.mark.asyncio(loop_factories=["uvloop"])  # the test drives processes: one loop is enough
@pytest.mark.parametrize("seed", sorted(SCENARIOS))
@pytest.mark.timeout(240)
async def test_workers_join_leave_and_die_and_every_result_is_there_once(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory, tmp_path: Path, seed: int
) -> None:
    """Three workers of one job on a 4-partition topic while the input arrives in parts: a fourth
    joins, one stops with SIGTERM, one is killed with SIGKILL and replaced by a fresh one. The
    output a read_committed reader sees is the per-partition reference, one for one."""
    query, events = SCENARIOS[seed]
    bootstrap = kafka_broker.bootstrap_servers
    source = await kafka_topic(partitions=4)
    output = await kafka_topic(partitions=3)
    transactions = [dict(tx) for tx in generate(events, seed=seed, cards=500)]
    chunks = [transactions[i * events // 5 : (i + 1) * events // 5] for i in range(5)]
    argv = worker_args(bootstrap, query, source, output, f"g-{uuid.uuid4().hex[:8]}")
    async with processes() as workers:

        def alive() -> None:
            for worker in workers:
                if worker not in stopped:
                    worker.alive()

        stopped: list[Worker] = []

        async def start(name: str) -> Worker:
            worker = Worker(argv, tmp_path / f"{name}.log")
            workers.append(worker)
            await worker.start()
            return worker

        async def settle() -> None:
            """Until the committed output covers the reference of what was produced so far."""
            per_partition = await read_partitions(bootstrap, source)
            expected = expected_q2(per_partition) if query == "q2" else expected_q3(per_partition)
            await wait_for_output(bootstrap, output, len(expected), within=60, alive=alive)

        first = [await start(f"worker-{i}") for i in range(3)]
        await produce(bootstrap, source, chunks[0])
        await settle()
        await start("joins")
        await produce(bootstrap, source, chunks[1])
        await settle()
        assert await first[0].stop(signal.SIGTERM) == 0, first[0].report()
        stopped.append(first[0])
        await produce(bootstrap, source, chunks[2])
        await first[1].stop(signal.SIGKILL)
        stopped.append(first[1])
        await start("replaces-the-killed-one")
        await produce(bootstrap, source, chunks[3])
        await settle()
        await produce(bootstrap, source, chunks[4])
        await settle()
        for worker in workers:
            if worker not in stopped:
                assert await worker.stop(signal.SIGTERM) == 0, worker.report()
    per_partition = await read_partitions(bootstrap, source)
    expected = expected_q2(per_partition) if query == "q2" else expected_q3(per_partition)
    assert not difference(await read_output(bootstrap, output), expected)


# -- state in the changelog ------------------------------------------------------------------------------


async def changelog_records(bootstrap: str, group: str, operator: str) -> int:
    """How many committed records the changelog topic of ``operator`` holds now."""
    topic = f"{group}-{operator}-changelog"
    raw = await read_partitions(bootstrap, topic, lambda record: (record.key, record.value))
    return sum(len(values) for values in raw.values())


async def all_committed(bootstrap: str, group: str, topic: str, alive: Callable[[], None]) -> None:
    """Until the group's committed offsets reach the end of every partition of ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        metadata = await consumer._client.fetch_all_metadata()
        partitions = [TopicPartition(topic, p) for p in sorted(metadata.partitions_for_topic(topic))]
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while True:
            committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
            if all(tp in committed and committed[tp].offset >= end for tp, end in ends.items()):
                return
            alive()
            if loop.time() > deadline:
                raise AssertionError(f"committed {committed}, the ends are {ends}")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


@pytest.mark.timeout(120)
async def test_a_commit_writes_the_changed_keys_and_a_new_worker_restores_them(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    """After 300 cards' windows, records of two cards cost a few changelog records, not 300; and a
    worker started afterwards goes on with the windows' contents from the changelog alone (it
    reads no input before its committed offset)."""
    bootstrap = kafka_broker.bootstrap_servers
    source = await kafka_topic(partitions=4)
    output = await kafka_topic(partitions=1)
    group = f"g-{uuid.uuid4().hex[:8]}"
    argv = worker_args(bootstrap, "q2", source, output, group)
    start = 1_700_000_000_000
    cards = [f"c{n:03}" for n in range(300)]
    # Every card, once, all in the window [start, start + 10 s): 300 keys of state.
    await produce(
        bootstrap,
        source,
        [{"tx_id": n, "card_id": c, "amount": 1.0, "ts": start + n} for n, c in enumerate(cards)],
    )
    async with in_process(argv) as alive:
        await all_committed(bootstrap, group, source, alive)
        before = await changelog_records(bootstrap, group, "windows")
        assert before >= len(cards)  # every key was written at least once
        # Two cards, 20 records each, still in the same window: two keys change.
        await produce(
            bootstrap,
            source,
            [
                {"tx_id": 1_000 + n, "card_id": cards[n % 2], "amount": 1.0, "ts": start + 500 + n}
                for n in range(40)
            ],
        )
        await all_committed(bootstrap, group, source, alive)
        written = await changelog_records(bootstrap, group, "windows") - before
    # At most a record per changed key per commit (the 40 records may span a couple of commits).
    assert 1 <= written <= 2 * 4, f"{written} changelog records for 2 changed keys"
    # A fresh worker: card 0's window holds 1 + 20 records in the changelog; one more, then a record
    # of card 0 far ahead (same partition) moves that partition's watermark past the window.
    await produce(
        bootstrap,
        source,
        [
            {"tx_id": 2_000, "card_id": cards[0], "amount": 2.5, "ts": start + 900},
            {"tx_id": 2_001, "card_id": cards[0], "amount": 1.0, "ts": start + 60_000},
        ],
    )
    async with in_process(argv) as alive:
        windows = await wait_for_output(bootstrap, output, 1, within=60, alive=alive)
    first = [w for w in windows if w["card_id"] == cards[0] and w["window_start"] == start]
    assert first == [
        {"card_id": cards[0], "window_start": start, "window_end": start + WINDOW_MS, "count": 22,
         "sum_cents": 21 * 100 + 250}
    ]  # fmt: skip


# -- repartition topics ------------------------------------------------------------------------------------


def expected_repartitioned_q2(per_partition: dict[int, list[Any]]) -> list[Any]:
    """Q2 keyed by card over an input partitioned by merchant: the windows of all records (none
    is late: each partition's times only rise) that the stage after the repartition has fired, at
    the minimum over the input partitions' watermarks."""
    records = sorted((r for values in per_partition.values() for r in values), key=lambda r: r["ts"])
    if not all(per_partition.values()):
        return []
    watermark = min(max(r["ts"] for r in values) for values in per_partition.values()) - LAG_MS
    windows, late = reference.q2(records)
    assert late == 0
    return [w for w in windows if w["window_end"] - 1 <= watermark]


@pytest.mark.timeout(180)
async def test_a_repartitioned_flow_gives_the_reference_while_workers_join_and_leave(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    """Input keyed by merchant, windows keyed by card: the card's records go through the
    repartition topic to the tasks of a second stage. Workers join and leave while the input
    arrives; the committed output is the reference's windows, one for one."""
    bootstrap = kafka_broker.bootstrap_servers
    source = await kafka_topic(partitions=4)
    output = await kafka_topic(partitions=2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    transactions = sorted((dict(tx) for tx in generate(8_000, seed=5, cards=200)), key=lambda r: r["ts"])
    chunks = [transactions[i * 2_000 : (i + 1) * 2_000] for i in range(4)]
    argv = [*worker_args(bootstrap, "q2", source, output, group), "--partitioned-by", "merchant_id"]

    async def settle(*alive: Callable[[], None]) -> None:
        expected = expected_repartitioned_q2(await read_partitions(bootstrap, source))
        await wait_for_output(
            bootstrap, output, len(expected), within=60, alive=lambda: [a() for a in alive]
        )

    async with in_process(argv) as a:
        async with in_process(argv) as b:
            await produce(bootstrap, source, chunks[0], key="merchant_id")
            await settle(a, b)
            async with in_process(argv) as c:
                await produce(bootstrap, source, chunks[1], key="merchant_id")
                await settle(a, b, c)
            await produce(bootstrap, source, chunks[2], key="merchant_id")
            await settle(a, b)
        await produce(bootstrap, source, chunks[3], key="merchant_id")
        await settle(a)
    expected = expected_repartitioned_q2(await read_partitions(bootstrap, source))
    assert len(expected) > 50
    assert not difference(await read_output(bootstrap, output), expected)
    assert await changelog_records(bootstrap, group, "windows") > 0
    # What the second stage consumed was deleted from the repartition topic.
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        partitions = [TopicPartition(f"{group}-windows-repartition", p) for p in range(4)]
        assert any((await consumer.beginning_offsets(partitions)).values())
    finally:
        await consumer.stop()


@pytest.mark.timeout(120)
async def test_after_a_repartition_lateness_is_judged_by_the_slowest_input_partition(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    """The stage after a repartition topic has the minimum of the input partitions' watermarks: a
    record behind its own partition's watermark but not behind that minimum is on time there; one
    behind the minimum is late (dropped by the window)."""
    bootstrap = kafka_broker.bootstrap_servers
    source = await kafka_topic(partitions=4)
    output = await kafka_topic(partitions=1)
    group = f"g-{uuid.uuid4().hex[:8]}"
    argv = [*worker_args(bootstrap, "q2", source, output, group), "--partitioned-by", "merchant_id"]
    t = 1_700_000_000_000

    def tx(n: int, card: str, ts: int) -> dict[str, Any]:
        return {"tx_id": n, "card_id": card, "merchant_id": "m1", "amount": 1.0, "ts": t + ts}

    def window(card: str, start: int) -> dict[str, Any]:
        return {"card_id": card, "window_start": t + start, "window_end": t + start + WINDOW_MS,
                "count": 1, "sum_cents": 100}  # fmt: skip

    async with in_process(argv) as alive:
        # Partitions 0-2 reach 30 s (watermark 28 s), partition 3 only 15 s (watermark 13 s): the
        # second stage's watermark is 13 s, which closes card a's window [0, 10 s).
        await produce(bootstrap, source, [tx(0, "a", 1_000), tx(1, "x", 30_000)], key="merchant_id",
                      partition=0)  # fmt: skip
        for partition in (1, 2):
            await produce(bootstrap, source, [tx(1 + partition, "x", 30_000)], partition=partition)
        await produce(bootstrap, source, [tx(4, "x", 15_000)], partition=3)
        assert await wait_for_output(bootstrap, output, 1, within=60, alive=alive) == [window("a", 0)]
        # Behind partition 0's watermark (28 s) both; behind the minimum (13 s) only the first.
        await produce(bootstrap, source, [tx(5, "b", 5_000), tx(6, "b", 12_000)], partition=0)
        # Once committed, they are in the repartition topic before anything partition 3 sends next
        # (the partitions of a topic have no order between them).
        await all_committed(bootstrap, group, source, alive)
        # Partition 3 moves on: the minimum is 28 s, windows [10 s, 20 s) fire.
        await produce(bootstrap, source, [tx(7, "z", 40_000)], partition=3)
        results = await wait_for_output(bootstrap, output, 3, within=60, alive=alive)
    assert not difference(results, [window("a", 0), window("x", 10_000), window("b", 10_000)])
