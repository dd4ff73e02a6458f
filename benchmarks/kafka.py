"""The ``kafka`` command: Q1 end to end through Kafka, actorflow beside a raw aiokafka loop.

::

    python -m benchmarks kafka [--events N] [--partitions P] [--seed S] [--repeat R] [--linger-ms L]

It uses the broker at ``$KAFKA_BOOTSTRAP_SERVERS``, else starts the project's own
(``scripts/kafka/broker.py``). It generates ``N`` seeded transactions and pre-loads them into
a new input topic of ``P`` partitions (keyed by ``card_id``; not timed). Then Q1 of
``shared/BENCHMARK.md`` runs twice, each engine in its own ``python -m benchmarks kafka-run``
subprocess so that its peak RSS is its own:

* ``actorflow``: ``KafkaSource(input, bounded=True)`` -> ``filter(amount > 100.0)`` ->
  ``map`` to ``{"tx_id", "card_id", "amount"}`` -> ``KafkaSink(output)``, at parallelism 1:
  the flow a user would write.
* ``loop``: the practical limit, a hand-written aiokafka consume -> produce loop doing the same
  work (``getmany`` until the end offsets, ``orjson.loads``, filter, ``orjson.dumps``,
  ``producer.send`` without waiting for each acknowledgement, one ``flush`` at the end).

Both use the same client settings (``PRODUCER_OPTIONS``: acks=1, linger_ms=5, 1 MiB batches, no
compression; ``CONSUMER_OPTIONS``: aiokafka's fetch sizes; ``--linger-ms`` changes linger_ms for
both) and the same event loop (uvloop). Each run is timed from the first record read (the first
non-empty fetch in the loop; the first batch the source hands to the flow in actorflow) to the
last result acknowledged by the broker (the loop's ``flush`` returned; the sink's ``finish_async``,
which waits for the acknowledgement of every record it wrote, returned). Client start-up and
shutdown are excluded from both; ``kafka-run`` prints the wall time including them on stderr.
The same span's CPU time of the process is ``cpu_seconds``: the measure to compare on a busy
machine (the broker shares the cores).

Both output topics are read back and compared, as multisets, with the Q1 result computed
from the generated data (so also with each other). One JSON line per engine goes to stdout,
with the keys of ``run`` plus ``"equal"``; the ratio actorflow/loop goes to stderr. The exit
status is 1 if a run failed or an output differs.

Delivery errors: the loop does not look at each send's future (that is what makes it the
limit); a lost record would show as an output that differs from the expected result.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner

from actorflow import Flow
from actorflow.api.flow import new_event_loop
from actorflow.operators.base import OperatorContext
from actorflow.runtime.messages import Batch
from actorflow_kafka import KafkaSink, KafkaSource
from benchmarks import results
from benchmarks.generate import DEFAULT_CARDS, generate
from benchmarks.runner import Measurement, peak_rss_mb

__all__ = [
    "BOOTSTRAP_ENV",
    "CONSUMER_OPTIONS",
    "DEFAULT_LINGER_MS",
    "ENGINES",
    "PRODUCER_OPTIONS",
    "KafkaMeasurement",
    "Stamps",
    "Topics",
    "create_topics",
    "delete_topics",
    "kafka_measurement",
    "main",
    "measure",
    "preload",
    "producer_options",
    "read_topic",
    "run_actorflow",
    "run_engine",
    "run_loop",
    "run_queue_seconds",
    "write_result",
]

BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"
ENGINES = ("actorflow", "loop")
REPO_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_LINGER_MS = 5
"""Kafka's own producer default since 4.0 (KIP-1030); aiokafka's is 0. ``--linger-ms`` changes it."""

PRODUCER_OPTIONS: Mapping[str, Any] = {
    "acks": 1,  # the partition leader has the record (aiokafka's default)
    "linger_ms": DEFAULT_LINGER_MS,  # wait up to this long for a batch to fill before sending it
    "max_batch_size": 1 << 20,  # 1 MiB batches per partition (aiokafka's default is 16 KiB)
    "compression_type": None,
}
"""The producer settings of both engines (and of the pre-load)."""


def producer_options(linger_ms: int | None = None) -> dict[str, Any]:
    """``PRODUCER_OPTIONS``, with ``linger_ms`` instead of the default when given."""
    options = dict(PRODUCER_OPTIONS)
    if linger_ms is not None:
        options["linger_ms"] = linger_ms
    return options


CONSUMER_OPTIONS: Mapping[str, Any] = {
    "fetch_max_bytes": 50 << 20,  # aiokafka's defaults, spelled out
    "max_partition_fetch_bytes": 1 << 20,
}
"""The consumer settings of both engines."""

POLL_TIMEOUT_MS = 100
"""How long one ``getmany`` may wait for records (both engines)."""

MIN_AMOUNT = 100.0
"""Q1 keeps records with ``amount > MIN_AMOUNT``."""


class KafkaMeasurement(Measurement):
    """The JSON line printed by ``python -m benchmarks kafka``: ``run``'s keys plus ``equal``."""

    equal: bool


@dataclass
class Stamps:
    """When the first record was read and the last result acknowledged (``perf_counter``)."""

    first_read: float | None = None
    last_ack: float | None = None
    first_read_cpu: float | None = None
    last_ack_cpu: float | None = None
    """The process's CPU time (``process_time``) at the same two moments."""
    first_read_queued: float | None = None
    last_ack_queued: float | None = None
    """How long the main thread had waited for a core (runnable, not running) at the same two
    moments (``run_queue_seconds``; None where the system does not say)."""

    def read(self) -> None:
        """Note the first read (later calls change nothing)."""
        if self.first_read is None:
            self.first_read = time.perf_counter()
            self.first_read_cpu = time.process_time()
            self.first_read_queued = run_queue_seconds()

    def acknowledged(self) -> None:
        """Note an acknowledgement (the last call counts)."""
        self.last_ack = time.perf_counter()
        self.last_ack_cpu = time.process_time()
        self.last_ack_queued = run_queue_seconds()

    def queued_seconds(self) -> float | None:
        """From the first read to the last ack: how long the process waited for a core (the wall
        time neither spent on the CPU nor waiting for the broker); None if unknown."""
        if self.first_read_queued is None or self.last_ack_queued is None:
            return None
        return max(self.last_ack_queued - self.first_read_queued, 0.0)

    def seconds(self, ended: float) -> float:
        """From the first read to the last ack (``ended`` when nothing was written)."""
        if self.first_read is None:
            return 0.0
        return max((self.last_ack or ended) - self.first_read, 0.0)

    def cpu_seconds(self, ended: float) -> float:
        """CPU time of the process from the first read to the last ack (``ended``: ``process_time``
        when nothing was written)."""
        if self.first_read_cpu is None:
            return 0.0
        return max((self.last_ack_cpu or ended) - self.first_read_cpu, 0.0)


def run_queue_seconds() -> float | None:
    """The calling thread's total wait on the run queue (Linux ``/proc/thread-self/schedstat``),
    or None elsewhere. On a busy machine it, not the engine, decides much of the wall time."""
    try:
        with open("/proc/thread-self/schedstat") as stat:
            return int(stat.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


# -- topics -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Topics:
    """The topics of one benchmark run."""

    input: str
    outputs: dict[str, str]
    """Engine -> its output topic."""

    @classmethod
    def fresh(cls, engines: Sequence[str] = ENGINES) -> Topics:
        """New, unique topic names."""
        tag = uuid.uuid4().hex[:10]
        return cls(f"bench-q1-in-{tag}", {engine: f"bench-q1-{engine}-{tag}" for engine in engines})

    @property
    def all(self) -> list[str]:
        return [self.input, *self.outputs.values()]


@contextlib.asynccontextmanager
async def _admin(bootstrap_servers: str) -> AsyncIterator[Any]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def create_topics(bootstrap_servers: str, names: Sequence[str], partitions: int) -> None:
    """Create ``names`` with ``partitions`` partitions each; return once every partition has a leader."""
    async with _admin(bootstrap_servers) as admin:
        response = await admin.create_topics([NewTopic(name, partitions, 1) for name in names])
        failed = [t for t in response.to_object()["topic_errors"] if t.get("error_code", 0) != 0]
        if failed:
            raise RuntimeError(f"creating Kafka topics failed: {failed}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30.0
        for name in names:
            while True:
                described = await admin.describe_topics([name])
                found = described[0] if described else {}
                led = [p for p in found.get("partitions", []) if p.get("leader", -1) >= 0]
                if found.get("error_code", 0) == 0 and len(led) == partitions:
                    break
                if loop.time() > deadline:
                    raise TimeoutError(f"topic {name!r}: {len(led)} of {partitions} partitions led")
                await asyncio.sleep(0.05)


async def delete_topics(bootstrap_servers: str, names: Sequence[str]) -> None:
    """Delete ``names`` (errors are ignored: this is clean-up)."""
    with contextlib.suppress(Exception):
        async with _admin(bootstrap_servers) as admin:
            await admin.delete_topics(list(names))


async def _partitions(consumer: Any, topic: str) -> list[Any]:
    # As KafkaSource does: the whole metadata, since partitions_for_topic() answers from a cache.
    metadata = await consumer._client.fetch_all_metadata()
    found = metadata.partitions_for_topic(topic)
    if not found:
        raise LookupError(f"Kafka topic {topic!r} does not exist")
    return [TopicPartition(topic, p) for p in sorted(found)]


# -- data -------------------------------------------------------------------------------------


async def preload(
    bootstrap_servers: str, topic: str, events: int, seed: int, cards: int = DEFAULT_CARDS
) -> list[tuple[Any, ...]]:
    """Produce ``generate(events, seed, cards)`` to ``topic``, keyed by card; return Q1's result.

    Records go in whole batches of ``max_batch_size`` bytes per partition (``send_batch``), each
    to the partition Kafka's default partitioner picks for its key. The result is the sorted
    ``(tx_id, card_id, amount)`` tuples of ``results.FIELDS["q1"]``.
    """
    dumps = orjson.dumps
    expected: list[tuple[Any, ...]] = []
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, **PRODUCER_OPTIONS)
    await producer.start()
    try:
        metadata = await producer.client.fetch_all_metadata()
        partitions = sorted(metadata.partitions_for_topic(topic) or ())
        if not partitions:
            raise LookupError(f"Kafka topic {topic!r} does not exist")
        partitioner = DefaultPartitioner()
        partition_of: dict[bytes, int] = {}
        builders: dict[int, Any] = {}
        sent: list[asyncio.Future[Any]] = []
        for tx in generate(events, seed, cards):
            card = tx["card_id"]
            key = card.encode()
            value = dumps(tx)
            partition = partition_of.get(key)
            if partition is None:
                partition = partition_of[key] = partitioner(key, partitions, partitions)
            builder = builders.get(partition)
            if builder is None:
                builder = builders[partition] = producer.create_batch()
            if builder.append(timestamp=None, key=key, value=value) is None:  # full
                sent.append(await producer.send_batch(builder, topic, partition=partition))
                builder = builders[partition] = producer.create_batch()
                builder.append(timestamp=None, key=key, value=value)
            if tx["amount"] > MIN_AMOUNT:
                expected.append((tx["tx_id"], card, tx["amount"]))
        for partition, builder in builders.items():
            if builder.record_count():
                sent.append(await producer.send_batch(builder, topic, partition=partition))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    expected.sort()
    return expected


async def read_topic(bootstrap_servers: str, topic: str) -> list[bytes]:
    """Every record value of ``topic``, up to the end offsets it has now."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        partitions = await _partitions(consumer, topic)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        pending = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
        while pending:
            fetched = await consumer.getmany(*pending, timeout_ms=POLL_TIMEOUT_MS)
            for tp, records in fetched.items():
                values.extend(record.value for record in records)
                if records and records[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return values


def write_result(values: Sequence[bytes] | Sequence[tuple[Any, ...]], path: str | Path) -> str:
    """Write Q1 results (raw JSON values, or tuples of ``FIELDS["q1"]``) as JSON lines to ``path``."""
    fields = results.FIELDS["q1"]
    with open(path, "wb") as out:
        for value in values:
            if isinstance(value, tuple):
                value = orjson.dumps(dict(zip(fields, value, strict=True)))
            out.write(value + b"\n")
    return str(path)


# -- the two engines --------------------------------------------------------------------------


class _TimedKafkaSource(KafkaSource):
    """A KafkaSource that notes when it hands the flow its first batch."""

    def __init__(self, *args: Any, stamps: Stamps, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stamps = stamps

    async def read(self, context: OperatorContext) -> AsyncIterator[list[Any] | Batch]:
        stamps = self.stamps
        inner = super().read(context)
        assert isinstance(inner, AsyncGenerator)  # KafkaSource.read is an async generator
        async with contextlib.aclosing(inner) as batches:
            async for batch in batches:
                stamps.read()
                yield batch


class _TimedKafkaSink(KafkaSink):
    """A KafkaSink that notes when the broker acknowledged its last record."""

    def __init__(self, *args: Any, stamps: Stamps, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stamps = stamps  # shared by the copies the flow makes per instance

    async def finish_async(self) -> None:
        await super().finish_async()  # returns once every record written is acknowledged
        self.stamps.acknowledged()


async def run_actorflow(
    bootstrap_servers: str,
    input_topic: str,
    output_topic: str,
    stamps: Stamps | None = None,
    producer_config: Mapping[str, Any] = PRODUCER_OPTIONS,
) -> int:
    """Q1 as an actorflow flow from ``input_topic`` to ``output_topic``; return the events read."""
    stamps = stamps if stamps is not None else Stamps()
    flow = Flow("q1-kafka")
    source = _TimedKafkaSource(
        input_topic,
        bootstrap_servers=bootstrap_servers,
        bounded=True,
        value_deserializer="json",
        poll_timeout_ms=POLL_TIMEOUT_MS,
        client_options=CONSUMER_OPTIONS,
        stamps=stamps,
    )
    sink = _TimedKafkaSink(
        output_topic,
        bootstrap_servers=bootstrap_servers,
        value_serializer="json",
        producer_options=producer_config,
        stamps=stamps,
    )
    (
        flow.from_source(source, name="transactions")
        .filter(lambda r: r["amount"] > MIN_AMOUNT, name="large")
        .map(lambda r: {"tx_id": r["tx_id"], "card_id": r["card_id"], "amount": r["amount"]})
        .sink(sink)
    )
    await flow.run()
    return source.records_read


async def run_loop(
    bootstrap_servers: str,
    input_topic: str,
    output_topic: str,
    stamps: Stamps | None = None,
    producer_config: Mapping[str, Any] = PRODUCER_OPTIONS,
) -> int:
    """Q1 as a raw aiokafka consume -> produce loop; return the events read."""
    stamps = stamps if stamps is not None else Stamps()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **CONSUMER_OPTIONS,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, **producer_config)
    await consumer.start()
    try:
        await producer.start()
        try:
            partitions = await _partitions(consumer, input_topic)
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            pending = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
            await producer.client._wait_on_metadata(output_topic)  # as the sink does when it opens
            loads = orjson.loads
            dumps = orjson.dumps
            send = producer.send
            getmany = consumer.getmany
            events = 0
            while pending:
                fetched = await getmany(timeout_ms=POLL_TIMEOUT_MS)
                for tp, records in fetched.items():
                    if not records:
                        continue
                    stamps.read()
                    events += len(records)
                    for record in records:
                        r = loads(record.value)
                        amount = r["amount"]
                        if amount > 100.0:
                            await send(
                                output_topic,
                                dumps({"tx_id": r["tx_id"], "card_id": r["card_id"], "amount": amount}),
                            )
                    if records[-1].offset + 1 >= ends[tp]:
                        pending.discard(tp)
            await producer.flush()
            stamps.acknowledged()
        finally:
            await producer.stop()
    finally:
        await consumer.stop()
    return events


_RUNNERS = {"actorflow": run_actorflow, "loop": run_loop}


async def run_engine(
    engine: str,
    bootstrap_servers: str,
    input_topic: str,
    output_topic: str,
    producer_config: Mapping[str, Any] = PRODUCER_OPTIONS,
) -> Measurement:
    """Run ``engine`` once and measure it (first record read to last result acknowledged).

    Peak RSS is this process's high-water mark: meaningful in a process of its own (``kafka-run``).
    """
    try:
        runner = _RUNNERS[engine]
    except KeyError:
        raise ValueError(f"unknown engine {engine!r}; expected one of {list(ENGINES)}") from None
    stamps = Stamps()
    started = time.perf_counter()
    events = await runner(bootstrap_servers, input_topic, output_topic, stamps, producer_config)
    ended = time.perf_counter()
    seconds = stamps.seconds(ended)
    cpu_seconds = stamps.cpu_seconds(time.process_time())
    queued = stamps.queued_seconds()
    waited = f", {queued:.3f} s waiting for a core" if queued is not None else ""
    print(
        f"{engine}: {events} events in {seconds:.3f} s timed ({cpu_seconds:.3f} CPU s{waited}), "
        f"{ended - started:.3f} s with client start-up and shutdown",
        file=sys.stderr,
    )
    return {
        "query": "q1",
        "engine": engine,
        "events": events,
        "seconds": round(seconds, 6),
        "events_per_s": round(events / seconds, 1) if seconds > 0 else 0.0,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "cpu_seconds": round(cpu_seconds, 6),
    }


def kafka_measurement(measurement: Measurement, equal: bool) -> KafkaMeasurement:
    """The ``kafka`` command's JSON line: ``measurement`` plus whether its output was right."""
    return {**measurement, "equal": equal}


def measure(
    engine: str,
    bootstrap_servers: str,
    input_topic: str,
    output_topic: str,
    *,
    linger_ms: int | None = None,
    profile: str | None = None,
) -> Measurement:
    """``run_engine`` in a new event loop (uvloop), optionally under cProfile (stats to ``profile``)."""
    config = producer_options(linger_ms)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        if profile is None:
            return runner.run(run_engine(engine, bootstrap_servers, input_topic, output_topic, config))
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            return runner.run(run_engine(engine, bootstrap_servers, input_topic, output_topic, config))
        finally:
            profiler.disable()
            profiler.dump_stats(profile)


# -- the command ------------------------------------------------------------------------------


def _run_subprocess(
    engine: str, bootstrap_servers: str, input_topic: str, output_topic: str, linger_ms: int, timeout: float
) -> Measurement:
    """``python -m benchmarks kafka-run`` for one engine; raise ``RuntimeError`` if it fails."""
    command = [
        sys.executable, "-m", "benchmarks", "kafka-run", "--engine", engine,
        "--bootstrap-servers", bootstrap_servers, "--input", input_topic, "--output", output_topic,
        "--linger-ms", str(linger_ms),
    ]  # fmt: skip
    try:
        done = subprocess.run(
            command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{engine}: timed out after {timeout:g} s") from None
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise RuntimeError(f"{engine}: {last[0][:300]}")
    for line in reversed(done.stdout.strip().splitlines()):
        with contextlib.suppress(orjson.JSONDecodeError):
            measurement = orjson.loads(line)
            if isinstance(measurement, dict) and "events_per_s" in measurement:
                return measurement  # type: ignore[return-value]
    raise RuntimeError(f"{engine}: printed no measurement line")


@contextlib.contextmanager
def _bootstrap_servers() -> Iterator[str]:
    """``$KAFKA_BOOTSTRAP_SERVERS``, else a broker of our own for as long as the block runs."""
    external = os.environ.get(BOOTSTRAP_ENV)
    if external:
        yield external
        return
    from scripts.kafka.broker import KafkaBroker

    print("starting a Kafka broker (scripts/kafka/broker.py)", file=sys.stderr, flush=True)
    with KafkaBroker() as broker:
        yield broker.bootstrap_servers


def _check(bootstrap_servers: str, topic: str, expected_path: str, workdir: str, engine: str) -> str | None:
    """Read ``topic`` back; ``None`` if it holds the expected Q1 result, else what differs."""
    values = asyncio.run(read_topic(bootstrap_servers, topic))
    path = write_result(values, Path(workdir) / f"{engine}.jsonl")
    return results.compare("q1", path, expected_path)


def _cpu_ratio(cpu: Mapping[str, Sequence[float]]) -> str:
    """The CPU seconds of both engines (medians) and loop / actorflow: the ratio to read when other
    processes compete for the cores (the broker among them)."""
    actorflow, loop = statistics.median(cpu["actorflow"]), statistics.median(cpu["loop"])
    ratio = f"{loop / actorflow:.2f}" if actorflow > 0 else "n/a"
    return f"CPU s loop / actorflow = {loop:.3f} / {actorflow:.3f} = {ratio}"


def main(
    events: int = 200_000,
    partitions: int = 1,
    seed: int = 1,
    repeat: int = 1,
    linger_ms: int = DEFAULT_LINGER_MS,
    timeout: float = 600.0,
) -> int:
    """Run the benchmark, print one JSON line per engine; return the exit status.

    With ``repeat`` > 1 the engines take turns (actorflow, loop, actorflow, ...) and each
    engine's line is its median run, ``equal`` only if every run's output was right.
    """
    failed = False
    with _bootstrap_servers() as bootstrap, tempfile.TemporaryDirectory(prefix="bench-kafka-") as work:
        topics = Topics.fresh()
        asyncio.run(create_topics(bootstrap, [topics.input], partitions))
        try:
            print(f"pre-loading {events} events into {topics.input}", file=sys.stderr, flush=True)
            started = time.perf_counter()
            expected = asyncio.run(preload(bootstrap, topics.input, events, seed))
            expected_path = write_result(expected, Path(work) / "expected.jsonl")
            print(f"pre-loaded in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
            rates: dict[str, list[float]] = {engine: [] for engine in ENGINES}
            cpu: dict[str, list[float]] = {engine: [] for engine in ENGINES}
            lines: dict[str, list[KafkaMeasurement]] = {engine: [] for engine in ENGINES}
            for attempt in range(repeat):
                for engine in ENGINES:
                    output = f"{topics.outputs[engine]}-{attempt}"
                    asyncio.run(create_topics(bootstrap, [output], partitions))
                    try:
                        measurement = _run_subprocess(
                            engine, bootstrap, topics.input, output, linger_ms, timeout
                        )
                        difference = _check(bootstrap, output, expected_path, work, engine)
                    except RuntimeError as error:
                        print(f"FAILED {error}", file=sys.stderr, flush=True)
                        failed = True
                        continue
                    finally:
                        asyncio.run(delete_topics(bootstrap, [output]))
                    if difference is not None:
                        print(f"{engine}: wrong output: {difference}", file=sys.stderr, flush=True)
                        failed = True
                    if measurement["events"] != events:
                        print(f"{engine}: read {measurement['events']} of {events} events", file=sys.stderr)
                        failed = True
                    line = kafka_measurement(measurement, difference is None)
                    lines[engine].append(line)
                    rates[engine].append(float(measurement["events_per_s"]))
                    cpu[engine].append(float(measurement.get("cpu_seconds", 0.0)))
            for engine in ENGINES:
                if lines[engine]:
                    median = statistics.median_low(rates[engine])
                    chosen = next(m for m in lines[engine] if m["events_per_s"] == median)
                    chosen["equal"] = all(m["equal"] for m in lines[engine])
                    sys.stdout.buffer.write(orjson.dumps(chosen) + b"\n")
            sys.stdout.flush()
            if rates["actorflow"] and rates["loop"]:
                actorflow, loop = statistics.median(rates["actorflow"]), statistics.median(rates["loop"])
                print(
                    f"actorflow / loop = {actorflow:,.0f} / {loop:,.0f} events/s = {actorflow / loop:.2f} "
                    f"({events} events, {partitions} partition(s), linger_ms={linger_ms}, "
                    f"median of {repeat}); {_cpu_ratio(cpu)}",
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            asyncio.run(delete_topics(bootstrap, [topics.input]))
    return 1 if failed else 0
