"""Exactly once from Kafka to Kafka, against the real broker: checkpoints, transactions, restarts.

A flow reads a topic with a :class:`KafkaSource` and writes through ``KafkaSink(exactly_once=True,
offsets_of=source)``: the results of each checkpoint and the source offsets of that checkpoint
commit in one Kafka transaction. Whatever fails, a ``read_committed`` reader of the output must see
every result exactly once, equal to a failure-free run:

- in-process faults (the restart strategy restarts the job from its last checkpoint): a fault while
  processing, and a fault between a checkpoint's manifest and its transaction's commit, after which
  the restart must take the checkpoint before (the one Kafka committed), at parallelism 1 and 3,
  with a consumer group whose partitions move between the instances;
- two jobs of one group taking partitions from each other while records keep coming: a partition
  leaves a job only once its last offset is committed with that job's results;
- the benchmark's Q3 (the fraud pattern) in a worker process killed with SIGKILL at random moments
  and restarted from its checkpoint directory, compared with the plain reference implementation;
- the source alone with checkpoints: its state is its offsets and its partitions' watermarks, it
  commits offsets to the group only for completed checkpoints, and a restart resumes exactly there;
- which checkpoint a restart accepts, and the configurations exactly-once refuses.

Nothing here sleeps to synchronise: the tests wait for records in the output or lines of a worker,
polling with a deadline. The random waits are the kill moments, which are the point, and one bounded
wait that gives a wrong move of partitions the time to show (see the two-jobs test).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import (  # type: ignore[import-untyped, unused-ignore]  # aiokafka has no py.typed
    AIOKafkaConsumer,
    AIOKafkaProducer,
    TopicPartition,
)
from aiokafka.admin import (  # type: ignore[import-untyped, unused-ignore]
    AIOKafkaAdminClient,
)

from actorflow import (
    MAX_WATERMARK,
    Collector,
    Context,
    Flow,
    KeyedProcessFunction,
    RuntimeContext,
    ValueState,
    ValueStateDescriptor,
    WatermarkStrategy,
)
from actorflow.checkpoint.restart import FixedDelayRestart
from actorflow.checkpoint.storage import MemoryStorage
from actorflow.errors import CheckpointError
from actorflow.operators.base import OperatorContext
from actorflow.operators.sinks import CollectSink
from actorflow_kafka import KafkaSink, KafkaSource
from actorflow_kafka.transactions import commit_metadata
from benchmarks import reference
from benchmarks.generate import generate
from tests.kafka_fixtures import KafkaEndpoint, TopicFactory

ROOT = Path(__file__).resolve().parent.parent

# Heartbeats every 250 ms instead of 3 s: consumers notice a rebalance sooner (the tests run faster).
GROUP_OPTIONS = {"heartbeat_interval_ms": 250}
PARTITIONS = 4
KEYS = 13


# -- reading and writing topics --------------------------------------------------------------------


async def produce(bootstrap: str, topic: str, values: Sequence[dict[str, Any]], key: str) -> None:
    """Write ``values`` as JSON, keyed by their field ``key`` (so one key stays in one partition)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        sent = [
            await producer.send(topic, orjson.dumps(value), key=str(value[key]).encode())
            for value in values
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


class OutputTopic:
    """A reader of a whole topic from outside the flows, ``read_committed`` (the default) or not.

    ``await until(n)`` reads on until ``n`` records are in, failing at the deadline or as soon as a
    watched flow has ended; ``await everything()`` reads from the beginning up to the current end
    (the last stable offset for ``read_committed``), so an exact count is an honest assertion.
    """

    def __init__(self, bootstrap: str, topic: str, *, committed: bool = True) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            isolation_level="read_committed" if committed else "read_uncommitted",
        )
        self.partitions: list[TopicPartition] = []
        self.records: list[dict[str, Any]] = []

    async def __aenter__(self) -> OutputTopic:
        await self.consumer.start()
        metadata = await self.consumer._client.fetch_all_metadata()
        self.partitions = [
            TopicPartition(self.topic, p) for p in sorted(metadata.partitions_for_topic(self.topic))
        ]
        self.consumer.assign(self.partitions)
        await self.consumer.seek_to_beginning(*self.partitions)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.consumer.stop()

    async def _read(self) -> None:
        fetched = await self.consumer.getmany(timeout_ms=100)
        for batch in fetched.values():
            self.records.extend(orjson.loads(record.value) for record in batch)

    async def until(
        self, count: int, *, watch: asyncio.Task[Any] | None = None, within: float = 60
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while len(self.records) < count:
            if watch is not None and watch.done():
                watch.result()  # the flow's failure
                raise AssertionError(f"the flow ended with {len(self.records)} of {count} results")
            if loop.time() > deadline:
                raise AssertionError(f"{len(self.records)} of {count} results after {within} s")
            await self._read()

    async def everything(self, within: float = 30) -> list[dict[str, Any]]:
        self.records = []
        await self.consumer.seek_to_beginning(*self.partitions)
        ends = await self.consumer.end_offsets(self.partitions)
        async with asyncio.timeout(within):
            while [tp for tp in self.partitions if await self.consumer.position(tp) < ends[tp]]:
                await self._read()
        return self.records


async def committed_offsets(bootstrap: str, group: str) -> dict[tuple[str, int], tuple[int, str]]:
    """The group's committed ``(offset, metadata)`` per partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {(tp.topic, tp.partition): (meta.offset, meta.metadata) for tp, meta in found.items()}


def assert_each_once(results: list[Any], expected: list[Any]) -> None:
    """``results`` holds every expected result exactly once and nothing else."""
    counts = Counter(map(orjson.dumps, results))
    wanted = set(map(orjson.dumps, expected))
    twice = [orjson.loads(r) for r, n in counts.items() if n > 1]
    missing = [e for e in expected if orjson.dumps(e) not in counts]
    extra = [orjson.loads(r) for r in counts if r not in wanted]
    assert not twice, f"{len(twice)} results more than once, e.g. {twice[:5]}"
    assert not missing, f"{len(missing)} results missing, e.g. {missing[:5]}"
    assert not extra, f"{len(extra)} unexpected results, e.g. {extra[:5]}"
    assert len(results) == len(expected)


# -- in-process faults -------------------------------------------------------------------------------


class Faults:
    """Faults the test arms one at a time: in processing, or between a checkpoint and its commit."""

    def __init__(self) -> None:
        self.process_after: int | None = None
        self.commit_armed = False
        self.seen = 0
        self.raised: list[str] = []
        self.sink: FaultySink | None = None

    def arm_processing(self, after: int) -> None:
        """Fail processing once ``after`` more records went through, with results in the open
        transaction (so the restart has written records to undo)."""
        self.process_after, self.seen = after, 0

    def arm_commit(self) -> None:
        """Fail when the next checkpoint completes: its manifest is written, its transaction not
        committed."""
        self.commit_armed = True

    def check_processing(self) -> None:
        if self.process_after is None:
            return
        self.seen += 1
        if self.sink is None or self.sink.uncommitted > 0:
            self.fire_if_due()

    def fire_if_due(self) -> None:
        """Raise the processing fault once ``after`` records went through since it was armed."""
        if self.process_after is not None and self.seen >= self.process_after:
            self.process_after = None
            self.raised.append("process")
            raise RuntimeError("injected fault in processing")


class FaultySink(KafkaSink):
    """An exactly-once KafkaSink whose commit fails when the plan says so, counting what it wrote
    since the last completed checkpoint."""

    def __init__(self, *args: Any, faults: Faults, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.faults = faults
        faults.sink = self
        self._acknowledged_at_completion = [0]  # shared by the per-instance copies

    @property
    def uncommitted(self) -> int:
        return self.records_written - self._acknowledged_at_completion[0]

    async def write_async(self, values: list[Any]) -> None:
        await super().write_async(values)
        # A processing fault that came due while every batch was written and committed before
        # the next one came (batches slower than the checkpoints: no output was open at any
        # check) fires here, right after results went into the open transaction.
        self.faults.fire_if_due()

    async def checkpoint_complete(self, checkpoint_id: int) -> None:
        if self.faults.commit_armed:
            self.faults.commit_armed = False
            self.faults.raised.append("commit")
            raise RuntimeError("injected fault between the checkpoint and its commit")
        self._acknowledged_at_completion[0] = self.records_written
        await super().checkpoint_complete(checkpoint_id)


class RecordingSource(KafkaSource):
    """Records every restore decision: ``(restart number, accepted)``."""

    def __init__(self, *args: Any, flow: Flow, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flow = flow
        self.decisions: list[tuple[int, bool]] = []

    async def accepts_restore(self, states: list[Any]) -> bool:
        accepted = await super().accepts_restore(states)
        self.decisions.append((self.flow.restarts, accepted))
        return accepted


class RunningCount(KeyedProcessFunction[dict[str, Any], dict[str, Any]]):
    """``{"key", "count", "id"}`` for every record, ``count`` being the key's count so far: a
    lost record or one counted twice shows in the output."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults

    def open(self, ctx: RuntimeContext) -> None:
        self.count: ValueState[int] = ctx.get_state(ValueStateDescriptor("count", default=0))

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        self.faults.check_processing()
        count = self.count.value() + 1
        self.count.update(count)
        out.collect({"key": ctx.current_key, "count": count, "id": value["id"]})

    def __deepcopy__(self, memo: dict[int, Any]) -> RunningCount:
        return RunningCount(self.faults)  # one Faults object for every instance and every run


def records(ids: range) -> list[dict[str, Any]]:
    """The input: ``{"id", "key"}``, produced keyed by ``key``, so each key's records keep their order
    (one partition) and its running counts are known."""
    return [{"id": i, "key": i % KEYS} for i in ids]


def expected_counts(ids: range) -> list[dict[str, Any]]:
    counts: Counter[int] = Counter()
    expected = []
    for i in ids:
        counts[i % KEYS] += 1
        expected.append({"key": i % KEYS, "count": counts[i % KEYS], "id": i})
    return expected


@pytest.mark.timeout(120)
async def test_faults_in_process_leave_every_result_in_the_output_once(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory, parallelism: int
) -> None:
    """Three phases of 1,000 records each: the second ends in a fault while processing (after
    results went into the open transaction), the third in a fault between a checkpoint's manifest
    and its commit. The job restarts from its last checkpoint each time; partitions move between
    the source's instances in the group as the consumers come and go."""
    bootstrap = kafka_broker.bootstrap_servers
    topic = await kafka_topic(partitions=PARTITIONS)
    output = await kafka_topic(partitions=3)
    group = f"eos-{uuid.uuid4().hex[:8]}"
    flow = Flow(f"eos-p{parallelism}", parallelism=parallelism, batch_size=50)
    flow.enable_checkpointing(MemoryStorage(), interval_ms=200)
    flow.set_restart_strategy(FixedDelayRestart(attempts=3))
    faults = Faults()
    source = RecordingSource(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        max_records=50,
        client_options=GROUP_OPTIONS,
        flow=flow,
    )
    sink = FaultySink(
        output,
        bootstrap_servers=bootstrap,
        key=lambda r: str(r["key"]),
        exactly_once=True,
        transactional_id=f"eos-{uuid.uuid4().hex[:8]}",
        offsets_of=source,
        faults=faults,
    )
    flow.from_source(source).key_by("key").process(RunningCount(faults)).sink(sink)

    job = asyncio.create_task(flow.run())
    try:
        async with OutputTopic(bootstrap, output) as out:
            await produce(bootstrap, topic, records(range(0, 1000)), key="key")
            await out.until(1000, watch=job)
            faults.arm_processing(after=300)
            await produce(bootstrap, topic, records(range(1000, 2000)), key="key")
            await out.until(2000, watch=job)
            faults.arm_commit()
            await produce(bootstrap, topic, records(range(2000, 3000)), key="key")
            await out.until(3000, watch=job)
        source.stop()
        await asyncio.wait_for(job, 30)
    finally:
        source.stop()
        if not job.done():
            job.cancel()
        await asyncio.gather(job, return_exceptions=True)

    assert faults.raised == ["process", "commit"]
    assert flow.restarts == 2
    # After the fault between manifest and commit, the newest checkpoint is not the one Kafka has:
    # the restart rejects it and takes the one before.
    after_commit_fault = [accepted for restart, accepted in source.decisions if restart == 2]
    assert after_commit_fault[:2] == [False, True], source.decisions
    async with OutputTopic(bootstrap, output) as committed:
        results = await committed.everything()
    assert_each_once(results, expected_counts(range(3000)))
    # The raw topic (read_uncommitted) holds more: the results of the aborted transactions.
    async with OutputTopic(bootstrap, output, committed=False) as raw:
        await raw.until(len(results) + 1, within=30)


class GatedFinalSink(KafkaSink):
    """An exactly-once KafkaSink whose final commit (after the end of its input) waits for ``gate``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = asyncio.Event()
        self.gate.set()
        self.input_ended = False

    async def finish_async(self) -> None:
        await super().finish_async()
        self.input_ended = True

    async def checkpoint_complete(self, checkpoint_id: int) -> None:
        if self.input_ended:
            await self.gate.wait()
        await super().checkpoint_complete(checkpoint_id)


class TaggingJob:
    """A job of the group: KafkaSource -> tag each record with the job's name -> an exactly-once
    KafkaSink of its own (its own transactional id and checkpoints), all into one output topic."""

    def __init__(self, name: str, *, bootstrap: str, topic: str, output: str, group: str) -> None:
        self.name = name
        self.flow = Flow(f"job-{name}", batch_size=50)
        self.flow.enable_checkpointing(MemoryStorage(), interval_ms=200)
        self.source = KafkaSource(
            topic, bootstrap_servers=bootstrap, group_id=group, max_records=50, client_options=GROUP_OPTIONS
        )
        sink = GatedFinalSink(
            output,
            bootstrap_servers=bootstrap,
            exactly_once=True,
            transactional_id=f"{group}-{name}",
            offsets_of=self.source,
        )
        self.final_commit = sink.gate
        self.flow.from_source(self.source).map(lambda r: {"id": r["id"], "by": name}).sink(sink)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        self.task = asyncio.create_task(self.flow.run(), name=f"job {self.name}")
        return self.task

    @property
    def partitions(self) -> set[int]:
        """The partitions the job reads right now (those it is releasing included)."""
        return {tp.partition for positions in self.source.positions.values() for tp in positions}

    async def stop(self) -> None:
        """The end of its input: the final checkpoint commits, then its consumer leaves the group."""
        assert self.task is not None
        self.source.stop()
        await asyncio.wait_for(self.task, 30)


class Feeder:
    """Produces ``records(...)`` in small bursts until told to stop, so that records are in flight
    whenever partitions move."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.sent = 0
        self.enough = asyncio.Event()

    async def run(self) -> None:
        while not self.enough.is_set():
            await produce(self.bootstrap, self.topic, records(range(self.sent, self.sent + 20)), key="key")
            self.sent += 20


@pytest.mark.timeout(90)
async def test_partitions_moving_between_jobs_keep_every_result_once(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    """Two jobs in one group, each with its own transactional sink, while records keep coming. When
    B joins, A must release partitions: it holds them until a checkpoint has committed their last
    offsets in A's transaction, and B starts exactly there. When B's input ends, its consumer stays
    in the group until its final transaction has committed, and A takes the partitions back from
    there. Not one result is lost or written twice."""
    bootstrap = kafka_broker.bootstrap_servers
    topic = await kafka_topic(partitions=PARTITIONS)
    output = await kafka_topic(partitions=3)
    group = f"move-{uuid.uuid4().hex[:8]}"
    where = {"bootstrap": bootstrap, "topic": topic, "output": output, "group": group}
    a, b = TaggingJob("A", **where), TaggingJob("B", **where)
    feeder = Feeder(bootstrap, topic)
    feeding = asyncio.create_task(feeder.run())
    jobs = [a.start()]
    try:
        async with OutputTopic(bootstrap, output) as out:
            await out.until(200, watch=jobs[0])
            jobs.append(b.start())
            await until(lambda: bool(b.partitions) and bool(a.partitions), jobs[1])
            assert not a.partitions & b.partitions
            await out.until(len(out.records) + 200, watch=jobs[1])
            # B's input ends. Its consumer must stay in the group until its final transaction has
            # committed the last offsets: hold that commit back, and A must not get B's partitions
            # meanwhile (A would read offsets committed before). The wait gives a wrong move every
            # chance to happen: A's heartbeats see a rebalance within 250 ms.
            b.final_commit.clear()
            b.source.stop()
            with contextlib.suppress(AssertionError):
                await until(lambda: a.partitions == set(range(PARTITIONS)), jobs[0], within=1.5)
            assert a.partitions != set(range(PARTITIONS)), "B left the group before its last commit"
            b.final_commit.set()
            await b.stop()
            await until(lambda: a.partitions == set(range(PARTITIONS)), jobs[0])
            await out.until(len(out.records) + 200, watch=jobs[0])
            feeder.enough.set()
            await feeding
            await out.until(feeder.sent, watch=jobs[0])
            await a.stop()
            results = await out.everything()
    finally:
        feeder.enough.set()
        for job in (a, b):
            job.final_commit.set()
            job.source.stop()
        await asyncio.gather(feeding, *jobs, return_exceptions=True)
    assert_each_once([r["id"] for r in results], list(range(feeder.sent)))
    by = Counter(r["by"] for r in results)
    assert by["A"] > 0 and by["B"] > 0, by


# -- SIGKILL: Q3 in a worker process ---------------------------------------------------------------


class Worker:
    """``python -m tests.kafka_eos_worker`` as a child process, its output in files."""

    def __init__(self, logs: Path, name: str, argv: list[str]) -> None:
        self.stdout = logs / f"{name}.stdout"
        self.stderr = logs / f"{name}.stderr"
        self.argv = argv
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.kafka_eos_worker", *self.argv, cwd=ROOT, stdout=out, stderr=err
            )

    def lines(self) -> list[str]:
        return self.stdout.read_text().splitlines()

    def report(self) -> str:
        return f"-- stdout:\n{self.stdout.read_text()[-3000:]}-- stderr:\n{self.stderr.read_text()[-3000:]}"

    async def wait_for(self, what: str, count: int = 1, within: float = 60) -> bool:
        """Until the worker printed ``count`` lines starting with ``what`` (True), or exited first
        (False)."""
        assert self.process is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while sum(line.startswith(what) for line in self.lines()) < count:
            if self.process.returncode is not None:
                return False
            if loop.time() > deadline:
                raise AssertionError(f"no {what!r} from the worker within {within} s\n{self.report()}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), 0.02)  # ends early if the worker exits
        return True

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

    async def finish(self, within: float = 60) -> int:
        assert self.process is not None
        try:
            return await asyncio.wait_for(self.process.wait(), within)
        except TimeoutError:
            raise AssertionError(f"the worker did not finish within {within} s\n{self.report()}") from None


@asynccontextmanager
async def workers() -> AsyncIterator[list[Worker]]:
    """Started workers are killed at the end, whatever happens."""
    started: list[Worker] = []
    try:
        yield started
    finally:
        for worker in started:
            await worker.kill()


SEEDS = {
    # seed: (events, input partitions, parallelism, first run dies between manifest and commit)
    # One partition: the arrival order is the reference's, so even timers firing mid-stream (the
    # input spans more than Q3's 60 s) give exactly the reference's alerts.
    1: (60_000, 1, 1, True),
    # Several partitions, events within 60 s of event time: no timer fires before the end, and the
    # alerts do not depend on how partitions interleave.
    2: (40_000, 3, 3, False),
    3: (40_000, 2, 2, False),
}
KILLS = 3


@pytest.mark.asyncio(loop_factories=["uvloop"])  # the test only drives processes: one loop is enough
@pytest.mark.parametrize("seed", sorted(SEEDS))
@pytest.mark.timeout(120)
async def test_q3_killed_at_random_moments_writes_every_alert_once(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory, tmp_path: Path, seed: int
) -> None:
    events, partitions, parallelism, die_before_commit = SEEDS[seed]
    bootstrap = kafka_broker.bootstrap_servers
    rng = random.Random(seed)
    transactions = list(generate(events, seed=seed, cards=2_000))
    expected = reference.q3(transactions)
    topic = await kafka_topic(partitions=partitions)
    output = await kafka_topic(partitions=3)
    await produce(bootstrap, topic, [dict(tx) for tx in transactions], key="card_id")
    argv = [
        *("--bootstrap-servers", bootstrap),
        *("--input", topic),
        *("--output", output),
        *("--group", f"q3-{uuid.uuid4().hex[:8]}"),
        *("--transactional-id", f"q3-{uuid.uuid4().hex[:8]}"),
        *("--checkpoints", str(tmp_path / "checkpoints")),
        *("--parallelism", str(parallelism)),
        # At most ~17,000 events a second however many instances read: the whole input takes
        # longer than the kills give it, so each kill lands mid-stream.
        *("--pause-ms", str(15 * parallelism)),
    ]
    async with workers() as started:
        if die_before_commit:
            # It dies when its third checkpoint is complete and its transaction not committed.
            worker = Worker(tmp_path, "dies-before-commit", [*argv, "--kill-at-checkpoint", "3"])
            started.append(worker)
            await worker.start()
            assert await worker.finish() == -signal.SIGKILL, worker.report()
            again = Worker(tmp_path, "after-the-commit-crash", argv)
            started.append(again)
            await again.start()
            # The newest checkpoint's transaction never committed: the one before is restored.
            assert await again.wait_for("restore accepted"), again.report()
            decisions = [line for line in again.lines() if line.startswith("restore")]
            assert decisions == ["restore rejected", "restore accepted"], again.report()
            await again.kill()
        kills = 0
        for attempt in range(KILLS):
            worker = Worker(tmp_path, f"killed-{attempt}", argv)
            started.append(worker)
            await worker.start()
            # Mid-stream: after a random number of this run's checkpoints, a random moment later.
            if await worker.wait_for("complete", count=rng.randint(1, 5)):
                await asyncio.sleep(rng.uniform(0.0, 0.15))
            await worker.kill()
            assert worker.returncode == -signal.SIGKILL, (
                f"the worker ended before the kill\n{worker.report()}"
            )
            kills += 1
        last = Worker(tmp_path, "last", argv)
        started.append(last)
        await last.start()
        assert await last.finish() == 0, last.report()
        assert "done" in last.lines(), last.report()
        print(
            f"seed {seed}: {kills} kills, checkpoints completed per run:",
            [sum(line.startswith("complete") for line in w.lines()) for w in started],
        )

    async with OutputTopic(bootstrap, output) as out:
        alerts = await out.everything()
    assert_each_once(alerts, expected)
    assert len(expected) > 200  # the test has something to lose


# -- the source alone with checkpoints ---------------------------------------------------------------


class CountAtEnd(KeyedProcessFunction[dict[str, Any], tuple[int, int]]):
    """Counts records per key; emits ``(key, count)`` once, when the input ends."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults

    def open(self, ctx: RuntimeContext) -> None:
        self.count: ValueState[int] = ctx.get_state(ValueStateDescriptor("count", default=0))

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        self.faults.check_processing()
        if self.count.value() == 0:
            ctx.timer_service().register_event_time_timer(MAX_WATERMARK)
        self.count.update(self.count.value() + 1)

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        out.collect((ctx.current_key, self.count.value()))

    def __deepcopy__(self, memo: dict[int, Any]) -> CountAtEnd:
        return CountAtEnd(self.faults)


@pytest.mark.timeout(90)
async def test_with_checkpoints_a_restart_resumes_at_the_checkpointed_offsets(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory, parallelism: int
) -> None:
    """With an at-least-once sink the state tells: after a fault the job restarts from the
    checkpoint's offsets (every instance's, whichever instance reads a partition now), so each
    key's count at the end is exact, partitions moving between the instances in the group."""
    bootstrap = kafka_broker.bootstrap_servers
    topic = await kafka_topic(partitions=PARTITIONS)
    flow = Flow(f"source-p{parallelism}", parallelism=parallelism, batch_size=50)
    flow.enable_checkpointing(MemoryStorage(), interval_ms=200)
    flow.set_restart_strategy(FixedDelayRestart(attempts=2))
    faults = Faults()
    source = KafkaSource(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"restore-{uuid.uuid4().hex[:8]}",
        max_records=50,
        client_options=GROUP_OPTIONS,
    )
    counts = CollectSink()
    flow.from_source(source).key_by("key").process(CountAtEnd(faults)).sink(counts)
    n = 2000
    job = asyncio.create_task(flow.run())
    try:
        await produce(bootstrap, topic, records(range(n // 2)), key="key")
        await until(lambda: source.records_read >= n // 2, job)
        await flow.checkpoint()
        faults.arm_processing(after=300)
        await produce(bootstrap, topic, records(range(n // 2, n)), key="key")
        await until(lambda: faults.raised == ["process"] and flow.restarts == 1, job)
        await until(lambda: sum(source.snapshot().values()) == n, job)
        source.stop()
        await asyncio.wait_for(job, 30)
    finally:
        source.stop()
        if not job.done():
            job.cancel()
        await asyncio.gather(job, return_exceptions=True)
    assert source.records_read > n, "the restart read nothing again: the fault tested nothing"
    assert sorted(counts.values) == sorted(Counter(i % KEYS for i in range(n)).items())


async def test_with_checkpoints_only_completed_checkpoints_commit_offsets(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    """A checkpoint commits the offsets it holds when it completes; the end of the input commits
    nothing (its final checkpoint is restored from the checkpoint storage, not from the group)."""
    bootstrap = kafka_broker.bootstrap_servers
    topic = await kafka_topic(partitions=2)
    group = f"commits-{uuid.uuid4().hex[:8]}"
    flow = Flow("commits", batch_size=50)
    flow.enable_checkpointing(MemoryStorage())  # only the checkpoints the test takes, and the final one
    source = KafkaSource(topic, bootstrap_servers=bootstrap, group_id=group, max_records=50)
    flow.from_source(source).collect()
    job = asyncio.create_task(flow.run())
    try:
        await produce(bootstrap, topic, [{"id": i} for i in range(100)], key="id")
        await until(lambda: source.records_read >= 100, job)
        assert await committed_offsets(bootstrap, group) == {}, "committed before any checkpoint"
        await flow.checkpoint()
        at_checkpoint = await committed_offsets(bootstrap, group)
        positions = {(topic, tp.partition): (offset, "") for tp, offset in source.positions[0].items()}
        assert at_checkpoint == positions
        assert sum(offset for offset, _ in at_checkpoint.values()) == 100
        await produce(bootstrap, topic, [{"id": i} for i in range(100, 200)], key="id")
        await until(lambda: source.records_read >= 200, job)
        source.stop()
        await asyncio.wait_for(job, 30)
    finally:
        source.stop()
        if not job.done():
            job.cancel()
        await asyncio.gather(job, return_exceptions=True)
    assert await committed_offsets(bootstrap, group) == at_checkpoint


class WatermarkSeen(KeyedProcessFunction[dict[str, Any], None]):
    """Notes ``(restarts so far, id, watermark)`` for every record."""

    def __init__(self, faults: Faults, flow: Flow, seen: list[tuple[int, int, int]]) -> None:
        self.faults = faults
        self.flow = flow
        self.seen = seen

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        self.faults.check_processing()
        self.seen.append((self.flow.restarts, value["id"], ctx.timer_service().current_watermark()))

    def __deepcopy__(self, memo: dict[int, Any]) -> WatermarkSeen:
        return WatermarkSeen(self.faults, self.flow, self.seen)


async def produce_to(bootstrap: str, topic: str, partition: int, values: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await asyncio.gather(
            *[await producer.send(topic, orjson.dumps(v), partition=partition) for v in values]
        )
    finally:
        await producer.stop()


async def test_a_restart_resumes_event_time_of_every_partition(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    """Each partition's watermark is part of the checkpoint. Before it, partition 0 reached event
    time 100 and partition 1 only 10 (the source's watermark is their minimum, 10). After the
    restore, partition 1 reaches 50 first: without a failure the watermark is min(100, 50) = 50,
    and so it must be after one, although partition 0's fresh generator has seen nothing yet."""
    bootstrap = kafka_broker.bootstrap_servers
    topic = await kafka_topic(partitions=2)
    flow = Flow("event-time", batch_size=20)
    flow.enable_checkpointing(MemoryStorage())
    flow.set_restart_strategy(FixedDelayRestart(attempts=1))
    faults = Faults()
    group = f"wm-{uuid.uuid4().hex[:8]}"
    source = KafkaSource(topic, bootstrap_servers=bootstrap, group_id=group, max_records=20)
    seen: list[tuple[int, int, int]] = []
    (
        flow.from_source(source, watermarks=WatermarkStrategy.punctuated("ts"))
        .key_by("key")
        .process(WatermarkSeen(faults, flow, seen))
        .collect()
    )
    job = asyncio.create_task(flow.run())
    try:
        await produce_to(bootstrap, topic, 0, [{"id": i, "key": 0, "ts": i} for i in range(101)])
        await produce_to(bootstrap, topic, 1, [{"id": 1000 + i, "key": 1, "ts": i} for i in range(11)])
        await until(lambda: len(seen) == 112, job)
        await flow.checkpoint()
        faults.arm_processing(after=1)
        await produce_to(
            bootstrap, topic, 1, [{"id": 2000, "key": 1, "ts": 50}, {"id": 2001, "key": 1, "ts": 51}]
        )
        await until(lambda: any(restart == 1 and i == 2001 for restart, i, _ in seen), job)
        source.stop()
        await asyncio.wait_for(job, 30)
    finally:
        source.stop()
        if not job.done():
            job.cancel()
        await asyncio.gather(job, return_exceptions=True)
    assert faults.raised == ["process"]
    after_restore = {i: watermark for restart, i, watermark in seen if restart == 1}
    assert after_restore == {2000: 10, 2001: 50}


async def until(condition: Any, job: asyncio.Task[Any], within: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if job.done():
            job.result()
            raise AssertionError("the flow ended early")
        if loop.time() > deadline:
            raise AssertionError(f"not true within {within} s")
        await asyncio.sleep(0.05)


# -- restore decisions and configuration errors ---------------------------------------------------------


async def test_a_first_run_accepts_no_checkpoint_that_kafka_never_committed(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    """Nothing committed yet (a crash before the first commit): a checkpoint with offsets is not
    the one Kafka has, and one without offsets proves nothing; once Kafka has the checkpoint's
    offsets and digest, it is accepted, and only that one."""
    bootstrap = kafka_broker.bootstrap_servers
    topic = await kafka_topic(partitions=2)
    output = await kafka_topic(partitions=1)
    group = f"first-{uuid.uuid4().hex[:8]}"
    transactional_id = f"first-{uuid.uuid4().hex[:8]}"
    source = KafkaSource(topic, bootstrap_servers=bootstrap, group_id=group)
    KafkaSink(
        output,
        bootstrap_servers=bootstrap,
        exactly_once=True,
        transactional_id=transactional_id,
        offsets_of=source,
    )
    checkpoint = [{"offsets": {(topic, 0): 5, (topic, 1): 2}, "pending": {}, "token": "run/0/1", "seq": 1}]
    empty = [{"offsets": {}, "pending": {}, "token": "run/0/1", "seq": 1}]
    assert not await source.accepts_restore(checkpoint)
    assert not await source.accepts_restore(empty)

    # Commit these offsets the way the sink does: in a transaction of its transactional id, with
    # the digest. (commit_transaction returns before the markers are written; the fence that
    # accepts_restore starts with waits for them, for this id only: another id's commit raced the
    # offsets read and failed this test now and then under load.)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=transactional_id)
    await producer.start()
    try:
        await producer.begin_transaction()
        metadata = commit_metadata(checkpoint)
        await producer.send_offsets_to_transaction(
            {TopicPartition(topic, 0): (5, metadata), TopicPartition(topic, 1): (2, metadata)}, group
        )
        await producer.commit_transaction()
    finally:
        await producer.stop()
    later = [{**checkpoint[0], "token": "run/0/2", "seq": 2}]  # same offsets, a later checkpoint
    assert await source.accepts_restore(checkpoint)
    assert not await source.accepts_restore(later)


async def test_exactly_once_needs_checkpoints_a_transactional_id_and_a_source_with_a_group(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    source = KafkaSource("in", bootstrap_servers=bootstrap, group_id="g")
    with pytest.raises(ValueError, match="transactional_id"):
        KafkaSink("out", bootstrap_servers=bootstrap, exactly_once=True, offsets_of=source)
    with pytest.raises(ValueError, match="offsets_of"):
        KafkaSink("out", bootstrap_servers=bootstrap, exactly_once=True, transactional_id="t")
    with pytest.raises(ValueError, match="group_id"):
        KafkaSink(
            "out",
            bootstrap_servers=bootstrap,
            exactly_once=True,
            transactional_id="t",
            offsets_of=KafkaSource("in", bootstrap_servers=bootstrap),
        )
    KafkaSink(
        "out", bootstrap_servers=bootstrap, exactly_once=True, transactional_id="t", offsets_of=source
    )
    with pytest.raises(ValueError, match="already has an exactly-once sink"):
        KafkaSink(
            "out", bootstrap_servers=bootstrap, exactly_once=True, transactional_id="u", offsets_of=source
        )

    output = await kafka_topic(partitions=1)
    sink = KafkaSink(
        output,
        bootstrap_servers=bootstrap,
        exactly_once=True,
        transactional_id=f"t-{uuid.uuid4().hex[:8]}",
        offsets_of=KafkaSource("in", bootstrap_servers=bootstrap, group_id="h"),
    ).copy()
    with pytest.raises(CheckpointError, match="enable_checkpointing"):
        await sink.open_async(OperatorContext("sink", checkpointing=False))


async def test_a_fenced_producer_says_which_transactional_id_and_what_to_do() -> None:
    # Two running jobs (or worker processes) given one transactional id fence each other: the
    # fenced one must say why and what to change, not just "ProducerFenced".
    from aiokafka.errors import ProducerFenced

    from actorflow_kafka.sink import _check

    failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    failed.set_exception(ProducerFenced())
    with pytest.raises(ProducerFenced) as raised:
        _check(failed, "alerts", 10, "fraud-alerts-0")
    notes = "".join(raised.value.__notes__)
    assert "transactional_id 'fraud-alerts-0'" in notes and "its own transactional_id" in notes
