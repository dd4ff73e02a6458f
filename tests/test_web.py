"""The HTTP endpoint against running flows: health, readiness, Prometheus metrics, the JSON API,
queryable state and the bearer token.

Every flow here reads a ``PushSource``, so it runs until the test closes it; the tests wait on what
they can observe (records arriving at a sink, a mailbox's counters), never on time passing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import urllib.parse
from collections.abc import AsyncIterator, Callable, Hashable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from actorflow import (
    BrokenResourceError,
    Collector,
    Context,
    Flow,
    KeyedProcessFunction,
    ListStateDescriptor,
    ManualClock,
    MapStateDescriptor,
    PushSource,
    RuntimeContext,
    TumblingEventTimeWindows,
    ValueStateDescriptor,
    WatermarkStrategy,
)
from actorflow.checkpoint.restart import FixedDelayRestart
from actorflow.checkpoint.storage import MemoryStorage
from actorflow.operators.base import OperatorContext
from actorflow.operators.sinks import Sink
from actorflow.runtime.metrics import ActorEntry, ActorMetrics, JobMetrics
from actorflow.state.keygroups import DEFAULT_MAX_PARALLELISM, key_group, operator_index
from actorflow.web import HttpConfig, HttpServer, run_with_http, serve_http
from actorflow.web.prometheus import FlowCollector
from actorflow.web.queryable import to_json
from actorflow.web.views import RateTracker

# -- helpers (the dashboard test uses them too) -------------------------------------------------


class Arrivals:
    """A sink callback that keeps what arrives and lets a test wait for the n-th record."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self._waiting: list[tuple[int, asyncio.Future[None]]] = []

    def __call__(self, value: Any) -> None:
        self.values.append(value)
        for count, future in self._waiting:
            if len(self.values) >= count and not future.done():
                future.set_result(None)

    async def wait_for(self, count: int) -> None:
        if len(self.values) >= count:
            return
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((count, future))
        try:
            await asyncio.wait_for(future, 10)
        finally:
            self._waiting.remove((count, future))


class Gate:
    """An async sink callback that holds every record until :meth:`open` (a stuck sink)."""

    def __init__(self, arrivals: Arrivals) -> None:
        self.arrivals = arrivals
        self.opened = asyncio.Event()
        self.opened.set()

    def close(self) -> None:
        self.opened.clear()

    def open(self) -> None:
        self.opened.set()

    async def receive(self, value: Any) -> None:
        await self.opened.wait()
        self.arrivals(value)


async def until(predicate: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    """Wait until ``predicate()`` holds: state the test can observe but not await (a counter)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def running(
    flow: Flow, config: HttpConfig | None = None
) -> AsyncIterator[tuple[HttpServer, aiohttp.ClientSession, asyncio.Future[None]]]:
    """Serve ``flow`` on a free port, run it until it is up, and hand out a client; stop both
    afterwards."""
    async with (
        serve_http(flow, config or HttpConfig(port=0)) as server,
        aiohttp.ClientSession(server.url.rstrip("/")) as client,
    ):
        job = asyncio.ensure_future(flow.run())
        try:
            await until(
                lambda: job.done() or (flow.metrics is not None and flow.metrics.ready), "the job is up"
            )
            yield server, client, job
        finally:
            if not job.done():
                job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job


async def scrape(client: aiohttp.ClientSession, **headers: str) -> dict[tuple[str, frozenset[Any]], float]:
    """``/metrics`` parsed: ``{(sample name, labels): value}``."""
    async with client.get("/metrics", headers=headers) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def collected(flow: Flow) -> dict[tuple[str, frozenset[Any]], float]:
    """What ``/metrics`` would say about ``flow`` now, parsed as :func:`scrape` does, without a server."""
    registry = CollectorRegistry()
    registry.register(FlowCollector(flow))
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
    }


def metric(samples: dict[tuple[str, frozenset[Any]], float], name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def get_json(client: aiohttp.ClientSession, path: str) -> tuple[int, Any]:
    async with client.get(path) as response:
        return response.status, await response.json()


class Profile(KeyedProcessFunction[dict[str, Any], dict[str, Any]]):
    """A card's risk profile: purchases, total, the largest, the merchants seen."""

    def open(self, ctx: RuntimeContext) -> None:
        self.profile = ctx.get_state(ValueStateDescriptor("profile"))
        self.recent = ctx.get_list_state(ListStateDescriptor("recent"))
        self.merchants = ctx.get_map_state(MapStateDescriptor("merchants"))

    def process_element(self, tx: dict[str, Any], ctx: Context, out: Collector) -> None:
        profile = self.profile.value() or {"count": 0, "total": 0, "largest": 0}
        profile = {
            "count": profile["count"] + 1,
            "total": profile["total"] + tx["amount"],
            "largest": max(profile["largest"], tx["amount"]),
        }
        self.profile.update(profile)
        self.recent.add(tx["amount"])
        self.merchants.put(tx.get("merchant", "shop"), True)
        out.collect((tx["card"], profile))


def payments_flow(parallelism: int, sink: Callable[[Any], Any], **options: Any) -> tuple[Flow, PushSource]:
    """transactions -> parse -> (keyed by card) risk -> alerts: the flow most tests serve."""
    flow = Flow("payments", parallelism=parallelism, **options)
    source = PushSource()
    (
        flow.from_source(source, name="transactions")
        .map(dict, name="parse")
        .key_by(lambda tx: tx["card"])
        .process(Profile(), name="risk")
        .sink_to_callback(sink, name="alerts")
    )
    return flow, source


def keys_per_instance(parallelism: int, make: Callable[[int], Hashable]) -> list[Hashable]:
    """One key owned by each instance of an operator with ``parallelism`` instances."""
    found: dict[int, Hashable] = {}
    n = 0
    while len(found) < parallelism:
        key = make(n)
        found.setdefault(operator_index(key_group(key), DEFAULT_MAX_PARALLELISM, parallelism), key)
        n += 1
    return [found[index] for index in range(parallelism)]


# -- health and readiness -----------------------------------------------------------------------


class SlowToOpen(Sink):
    """A sink whose ``open_async`` waits for the test: the job is deployed but not up yet."""

    def __init__(self, release: asyncio.Event) -> None:
        super().__init__("slow")
        self.release = release

    async def open_async(self, context: OperatorContext) -> None:
        await self.release.wait()
        self.open(context)

    def write(self, values: list[Any]) -> None:
        pass


async def test_healthz_always_and_readyz_only_once_every_actor_has_opened() -> None:
    release = asyncio.Event()
    flow = Flow("slow-start", parallelism=2)
    source = PushSource()
    arrivals = Arrivals()
    stream = flow.from_source(source, name="in").map(lambda v: v, name="pass")
    stream.sink_to_callback(arrivals, name="seen")
    stream.sink(SlowToOpen(release), name="slow")
    async with serve_http(flow, HttpConfig(port=0)) as server, aiohttp.ClientSession(server.url) as client:
        assert await get_json(client, "/healthz") == (200, {"status": "alive"})
        assert await get_json(client, "/readyz") == (503, {"ready": False, "status": "not started"})
        job = asyncio.ensure_future(flow.run())
        await source.send(1)
        await arrivals.wait_for(1)  # the job runs, but the slow sink is still opening
        assert await get_json(client, "/readyz") == (503, {"ready": False, "status": "starting"})
        assert await get_json(client, "/healthz") == (200, {"status": "alive"})
        release.set()
        await until(lambda: flow.metrics is not None and flow.metrics.ready, "the job is ready")
        assert await get_json(client, "/readyz") == (200, {"ready": True, "status": "running"})
        source.close()
        await job
        assert await get_json(client, "/readyz") == (503, {"ready": False, "status": "stopped"})
        assert await get_json(client, "/healthz") == (200, {"status": "alive"})


async def test_readiness_comes_back_after_a_restart_and_restarts_are_counted() -> None:
    failed = asyncio.Event()

    def explode_once(value: int) -> int:
        if value < 0 and not failed.is_set():
            failed.set()
            raise RuntimeError("bad record")
        return value

    flow = Flow("restarting")
    flow.enable_checkpointing(MemoryStorage())
    flow.set_restart_strategy(FixedDelayRestart(attempts=3, delay_ms=0))
    source = PushSource()
    arrivals = Arrivals()
    flow.from_source(source, name="in").map(explode_once, name="check").sink_to_callback(
        arrivals, name="out"
    )
    async with running(flow) as (_, client, _job):
        await source.send(1)
        await arrivals.wait_for(1)
        first_run = flow.metrics
        assert metric(await scrape(client), "actorflow_restarts_total") == 0
        await source.send(-1)
        await failed.wait()
        await until(lambda: flow.metrics is not first_run, "the job was deployed again")

        def resent() -> bool:
            # The source refuses records from the failure until the new run reads it again.
            try:
                source.send_nowait(2)
            except BrokenResourceError:
                return False
            return True

        await until(resent, "the restarted job reads the source")
        await arrivals.wait_for(2)
        assert await get_json(client, "/readyz") == (200, {"ready": True, "status": "running"})
        samples = await scrape(client)
        assert metric(samples, "actorflow_restarts_total") == 1
        assert metric(samples, "actorflow_ready") == 1
        source.close()


# -- metrics ------------------------------------------------------------------------------------


async def test_metrics_count_records_per_operator_as_they_flow(parallelism: int) -> None:
    arrivals = Arrivals()
    flow, source = payments_flow(parallelism, arrivals)
    async with running(flow) as (_, client, _job):
        for n in range(10):
            await source.send({"card": f"card-{n % 4}", "amount": n})
        await arrivals.wait_for(10)
        samples = await scrape(client)
        assert all(name.startswith("actorflow_") for name, _ in samples)
        assert metric(samples, "actorflow_flow_info", flow="payments") == 1
        head = "transactions" if parallelism > 1 else "transactions -> parse -> risk -> alerts"
        tail = "risk -> alerts" if parallelism > 1 else head
        read = {"task": head, "operator": "transactions", "instance": "0"}
        assert metric(samples, "actorflow_records_in_total", **read) == 10
        assert metric(samples, "actorflow_records_out_total", **read) == 10

        def total(name: str, operator: str, task: str) -> float:
            """Summed over the operator's instances."""
            found = [
                value
                for (sample, labels), value in samples.items()
                if sample == name and ("operator", operator) in labels and ("task", task) in labels
            ]
            assert len(found) == (1 if task == head else parallelism), (name, operator, found)
            return sum(found)

        for operator, task, records_out in (
            ("parse", "parse" if parallelism > 1 else head, 10),
            ("risk", tail, 10),
            ("alerts", tail, 0),
        ):
            assert total("actorflow_records_in_total", operator, task) == 10
            assert total("actorflow_records_out_total", operator, task) == records_out
        for n in range(5):
            await source.send({"card": "card-9", "amount": n})
        await arrivals.wait_for(15)
        samples = await scrape(client)
        assert metric(samples, "actorflow_records_out_total", **read) == 15
        assert total("actorflow_records_in_total", "alerts", tail) == 15
        # Back-pressure stays per actor, mailboxes per channel.
        assert metric(samples, "actorflow_backpressured_seconds_total", task=head, instance="0") == 0
        mailboxes = [labels for name, labels in samples if name == "actorflow_mailbox_capacity"]
        assert flow.metrics is not None
        assert len(mailboxes) == len(flow.metrics.channels) == (0 if parallelism == 1 else 3 + 9)
        source.close()


async def test_a_filter_in_a_chain_shows_in_its_own_counts() -> None:
    arrivals = Arrivals()
    flow = Flow("filtering")
    source = PushSource()
    (
        flow.from_source(source, name="in")
        .map(lambda n: n * 10, name="scale")
        .filter(lambda n: n >= 50, name="large")
        .sink_to_callback(arrivals, name="out")
    )
    async with running(flow) as (_, client, _job):
        await source.send_all(range(8))
        await arrivals.wait_for(3)
        samples = await scrape(client)
        task = "in -> scale -> large -> out"

        def count(name: str, operator: str) -> float:
            return metric(samples, name, task=task, operator=operator, instance="0")

        assert count("actorflow_records_out_total", "scale") == count("actorflow_records_in_total", "large")
        assert count("actorflow_records_in_total", "large") == 8
        assert (
            count("actorflow_records_out_total", "large") == 3 == count("actorflow_records_in_total", "out")
        )
        source.close()


async def test_watermark_and_its_lag_per_actor() -> None:
    clock = ManualClock(start=1_700_000_060_000)
    arrivals = Arrivals()
    flow = Flow("event-time", parallelism=2, clock=clock)
    source = PushSource()
    (
        flow.from_source(source, name="in", watermarks=WatermarkStrategy.punctuated("ts"))
        .rebalance()
        .map(lambda tx: tx, name="pass")
        .sink_to_callback(arrivals, name="out")
    )
    async with running(flow) as (_, client, _job):
        await source.send({"ts": 1_700_000_000_000})
        await arrivals.wait_for(1)
        samples = await scrape(client)
        source_labels = {"task": "in", "operator": "in", "instance": "0"}
        assert metric(samples, "actorflow_watermark_seconds", **source_labels) == 1_700_000_000
        assert metric(samples, "actorflow_watermark_lag_seconds", **source_labels) == 60
        # The instance that got the record has a watermark; both do once the watermark reaches them.
        await until(
            lambda: all(
                entry.metrics.watermark == 1_700_000_000_000
                for entry in flow.metrics.actors  # type: ignore[union-attr]
            ),
            "every actor saw the watermark",
        )
        clock.advance(30_000)
        samples = await scrape(client)
        for instance in ("0", "1"):
            for operator in ("pass", "out"):
                labels = {"task": "pass -> out", "operator": operator, "instance": instance}
                assert metric(samples, "actorflow_watermark_seconds", **labels) == 1_700_000_000
                assert metric(samples, "actorflow_watermark_lag_seconds", **labels) == 90
        source.close()


async def test_mailbox_fill_and_backpressure_time_while_a_sink_is_stuck() -> None:
    arrivals = Arrivals()
    gate = Gate(arrivals)
    flow = Flow("stuck", batch_size=1, mailbox_capacity=2)
    source = PushSource(capacity=4)
    (
        flow.from_source(source, name="in")
        .map(lambda v: v, name="work")
        .start_new_chain()
        .sink_to_callback(gate.receive, name="out")
    )
    async with running(flow) as (_, client, _job):
        gate.close()
        sender = asyncio.ensure_future(source.send_all(range(20)))
        assert flow.metrics is not None
        channel = flow.metrics.channels[0]
        await until(lambda: channel.mailbox.stats().waits > 0, "the sender waits on a full mailbox")
        samples = await scrape(client)
        labels = {"sender": channel.sender, "receiver": channel.receiver}
        assert metric(samples, "actorflow_mailbox_fill_ratio", **labels) == 1.0
        assert metric(samples, "actorflow_mailbox_size", **labels) == 2
        blocked = metric(samples, "actorflow_backpressured_seconds_total", task="in -> work", instance="0")
        assert blocked > 0  # counted while the wait is still going on
        assert metric(samples, "actorflow_mailbox_blocked_seconds_total", **labels) == pytest.approx(
            blocked, abs=0.05
        )
        assert metric(samples, "actorflow_backpressured_seconds_total", task="out", instance="0") == 0
        status, graph = await get_json(client, "/api/graph")
        assert status == 200
        assert {a["name"]: a["fill"] for a in graph["actors"]} == {"in -> work[1/1]": 0.0, "out[1/1]": 1.0}
        gate.open()
        await sender
        await arrivals.wait_for(20)
        later = await scrape(client)
        assert metric(later, "actorflow_mailbox_fill_ratio", **labels) == 0.0
        assert (
            metric(later, "actorflow_backpressured_seconds_total", task="in -> work", instance="0")
            >= blocked
        )
        source.close()


async def test_checkpoint_metrics_and_history() -> None:
    arrivals = Arrivals()
    flow, source = payments_flow(1, arrivals)
    flow.enable_checkpointing(MemoryStorage())
    async with running(flow) as (_, client, _job):
        assert await get_json(client, "/api/checkpoints") == (
            200,
            {"enabled": True, "completed": 0, "failed": 0, "last_failure": None, "history": []},
        )
        samples = await scrape(client)
        assert metric(samples, "actorflow_checkpoints_completed_total") == 0
        assert ("actorflow_checkpoint_last_size_bytes", frozenset()) not in samples
        await source.send({"card": "a", "amount": 3})
        await arrivals.wait_for(1)
        first = await flow.checkpoint()
        second = await flow.checkpoint("savepoint")
        samples = await scrape(client)
        assert metric(samples, "actorflow_checkpoints_completed_total") == 2
        assert metric(samples, "actorflow_checkpoints_failed_total") == 0
        size = metric(samples, "actorflow_checkpoint_last_size_bytes")
        assert size == flow.checkpoint_stats.history[-1][3] > 0
        assert metric(samples, "actorflow_checkpoint_last_duration_seconds") >= 0
        sizes = [size for _, _, _, size in flow.checkpoint_stats.history]
        durations = [duration / 1000 for _, _, duration, _ in flow.checkpoint_stats.history]
        assert metric(samples, "actorflow_checkpoint_size_bytes_count") == 2
        assert metric(samples, "actorflow_checkpoint_size_bytes_sum") == sum(sizes)
        assert metric(samples, "actorflow_checkpoint_size_bytes_bucket", le="+Inf") == 2
        assert metric(samples, "actorflow_checkpoint_duration_seconds_count") == 2
        assert metric(samples, "actorflow_checkpoint_duration_seconds_sum") == pytest.approx(sum(durations))
        for name, observed in (
            ("actorflow_checkpoint_size_bytes_bucket", sizes),
            ("actorflow_checkpoint_duration_seconds_bucket", durations),
        ):
            for (sample, labels), value in samples.items():
                if sample == name:
                    bound = float(dict(labels)["le"])
                    assert value == sum(1 for seen in observed if seen <= bound), (name, bound)
        status, data = await get_json(client, "/api/checkpoints")
        assert status == 200
        assert [(h["id"], h["kind"]) for h in data["history"]] == [
            (first.checkpoint_id, "checkpoint"),
            (second.checkpoint_id, "savepoint"),
        ]
        assert data["completed"] == 2
        source.close()


def test_checkpoint_histograms_count_every_checkpoint_not_only_the_recent_history() -> None:
    flow = Flow("many-checkpoints")
    stats = flow.checkpoint_stats
    for checkpoint_id in range(1, 151):
        # Checkpoints 1-100 take 20 ms and write 2 KiB; 101-150 take 3 s and write 2 MiB.
        slow = checkpoint_id > 100
        stats.record_completed(
            checkpoint_id,
            "checkpoint",
            duration_ms=3_000 if slow else 20,
            size=(2 << 20) if slow else (2 << 10),
        )
    assert len(stats.history) == 100
    samples = collected(flow)
    durations = {
        float(dict(labels)["le"]): value
        for (name, labels), value in samples.items()
        if name == "actorflow_checkpoint_duration_seconds_bucket"
    }
    assert durations[0.01] == 0 and durations[0.05] == 100 and durations[2.5] == 100
    assert durations[5.0] == 150 and durations[float("inf")] == 150
    assert list(durations.values()) == sorted(durations.values())  # cumulative
    assert metric(samples, "actorflow_checkpoint_duration_seconds_sum") == pytest.approx(
        100 * 0.02 + 50 * 3
    )
    sizes = {
        float(dict(labels)["le"]): value
        for (name, labels), value in samples.items()
        if name == "actorflow_checkpoint_size_bytes_bucket"
    }
    assert sizes[1024.0] == 0 and sizes[4096.0] == 100 and sizes[float(1 << 20)] == 100
    assert sizes[float(4 << 20)] == 150 and sizes[float("inf")] == 150
    assert metric(samples, "actorflow_checkpoint_size_bytes_count") == 150
    assert metric(samples, "actorflow_checkpoint_last_duration_seconds") == 3
    assert metric(samples, "actorflow_checkpoints_completed_total") == 150


class DecodingSource(PushSource):
    """A push source that counts records it could not decode, as the Kafka source does."""

    def __init__(self) -> None:
        super().__init__()
        self.dead_letter_count = 0


async def test_dead_letters_of_a_source_are_exported() -> None:
    flow = Flow("letters")
    source = DecodingSource()
    arrivals = Arrivals()
    flow.from_source(source, name="kafka-ish").sink_to_callback(arrivals, name="out")
    async with running(flow) as (_, client, _job):
        await source.send(1)
        await arrivals.wait_for(1)
        assert metric(await scrape(client), "actorflow_dead_letters_total", operator="kafka-ish") == 0
        source.dead_letter_count = 3
        assert metric(await scrape(client), "actorflow_dead_letters_total", operator="kafka-ish") == 3
        source.close()


async def test_dead_letters_of_sources_and_operators_are_one_family(
    tmp_path: Path, parallelism: int
) -> None:
    lines = tmp_path / "in.jsonl"
    lines.write_text('{"n": 1}\nnot json\n{"n": 2}\n{"n": 3}\n{"n": 4}\n{oops\n')

    async def lookup(record: dict[str, int]) -> int:
        if record["n"] % 2:
            raise LookupError(record["n"])
        return record["n"]

    letters: list[Any] = []
    flow = Flow("letters", parallelism=parallelism)
    (
        flow.from_json_lines(lines, name="lines", dead_letters=letters.append)
        .map_async(lookup, dead_letters=letters.append, name="lookup")
        .collect(name="out")
    )
    await flow.run()
    assert len(letters) == 2 + 2
    samples = collected(flow)
    # Summed over the operator's instances; the source's count is the source's own.
    assert metric(samples, "actorflow_dead_letters_total", operator="lines") == 2
    assert metric(samples, "actorflow_dead_letters_total", operator="lookup") == 2
    assert [labels for name, labels in samples if name == "actorflow_dead_letters_total"] == [
        frozenset({("operator", "lines")}),
        frozenset({("operator", "lookup")}),
    ]


def test_the_kafka_sources_dead_letters_are_exported() -> None:
    from actorflow_kafka import KafkaSource  # constructing one connects to nothing

    kafka = KafkaSource("payments", bootstrap_servers="127.0.0.1:9", group_id="g")
    flow = Flow("kafka-letters")
    job = JobMetrics()
    for index in range(2):  # one source object reads for both instances: its count is counted once
        job.add_actor(
            ActorEntry(
                f"payments[{index + 1}/2]",
                "payments",
                index,
                2,
                ActorMetrics(),
                "source",
                {},
                ("payments", kafka),
            )
        )
    flow.metrics = job
    kafka.dead_letter_count = 5
    samples = collected(flow)
    assert metric(samples, "actorflow_dead_letters_total", operator="payments") == 5


# -- the JSON API -------------------------------------------------------------------------------


async def test_api_graph_describes_the_mesh_with_columns_and_live_numbers() -> None:
    arrivals = Arrivals()
    flow, source = payments_flow(3, arrivals)
    async with running(flow) as (_, client, _job):
        for n in range(6):
            await source.send({"card": f"c{n}", "amount": n})
        await arrivals.wait_for(6)
        status, graph = await get_json(client, "/api/graph")
        assert status == 200
        assert (graph["flow"], graph["status"], graph["ready"], graph["restarts"]) == (
            "payments",
            "running",
            True,
            0,
        )
        assert [(c["name"], c["parallelism"], c["depth"], c["operators"]) for c in graph["chains"]] == [
            ("transactions", 1, 0, ["transactions"]),
            ("parse", 3, 1, ["parse"]),
            ("risk -> alerts", 3, 2, ["risk", "alerts"]),
        ]
        actors = {a["name"]: a for a in graph["actors"]}
        assert sorted(actors) == sorted(
            ["transactions[1/1]"]
            + [f"parse[{i}/3]" for i in (1, 2, 3)]
            + [f"risk -> alerts[{i}/3]" for i in (1, 2, 3)]
        )
        assert actors["transactions[1/1]"]["records_out"] == 6
        assert sum(actors[f"risk -> alerts[{i}/3]"]["records_in"] for i in (1, 2, 3)) == 6
        # Every actor lists its operators (a source actor: the source) with their own numbers.
        assert [
            (op["name"], op["records_in"], op["records_out"])
            for op in actors["transactions[1/1]"]["operators"]
        ] == [("transactions", 6, 6)]
        for i in (1, 2, 3):
            risk, alerts = actors[f"risk -> alerts[{i}/3]"]["operators"]
            assert (risk["name"], alerts["name"]) == ("risk", "alerts")
            assert risk["records_out"] == alerts["records_in"] == risk["records_in"]
            assert alerts["records_out"] == 0
            assert {"rate_in", "rate_out", "watermark", "watermark_lag_ms", "ended"} <= set(risk)
        assert sum(actors[f"risk -> alerts[{i}/3]"]["operators"][0]["records_in"] for i in (1, 2, 3)) == 6
        assert actors["risk -> alerts[2/3]"]["kind"] == "sink"
        assert actors["transactions[1/1]"]["kind"] == "source"
        assert len(graph["channels"]) == 3 + 9
        assert graph["queryable"] == ["risk"]
        source.close()


async def test_dashboard_page_is_served_self_contained() -> None:
    flow, source = payments_flow(1, Arrivals())
    async with running(flow) as (_, client, _job):
        async with client.get("/") as response:
            assert response.status == 200
            assert response.content_type == "text/html"
            page = await response.text()
        assert '<svg id="mesh"' in page and "api/graph" in page
        # Nothing from elsewhere: no external script, style, font or image.
        assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in page and "src=" not in page
        source.close()


# -- queryable state ----------------------------------------------------------------------------


async def test_queryable_state_finds_keys_on_every_instance() -> None:
    arrivals = Arrivals()
    flow, source = payments_flow(3, arrivals)
    text_keys = keys_per_instance(3, lambda n: f"card-{n}")
    int_keys = keys_per_instance(3, lambda n: n)
    tuple_keys = keys_per_instance(3, lambda n: ("eu", n))
    keys = [*text_keys, *int_keys, *tuple_keys]
    async with running(flow) as (_, client, _job):
        for amount in (5, 70, 20):
            for key in keys:
                await source.send({"card": key, "amount": amount, "merchant": f"m{amount}"})
        await arrivals.wait_for(3 * len(keys))
        for index, key in enumerate(text_keys):
            status, body = await get_json(client, f"/state/risk/{key}")
            assert status == 200, body
            assert body == {
                "operator": "risk",
                "key": key,
                "key_group": key_group(key),
                "instance": index,
                "parallelism": 3,
                "state": {
                    "profile": {"count": 3, "total": 95, "largest": 70},
                    "recent": [5, 70, 20],
                    "merchants": {"m5": True, "m70": True, "m20": True},
                },
            }
        for index, key in enumerate(int_keys):
            status, body = await get_json(client, f"/state/risk/{key}?type=int")
            assert (status, body["key"], body["instance"]) == (200, key, index)
            assert body["state"]["profile"]["count"] == 3
        for index, key in enumerate(tuple_keys):
            encoded = urllib.parse.quote(json.dumps(list(key)))  # type: ignore[arg-type]
            status, body = await get_json(client, f"/state/risk/{encoded}?type=json")
            assert (status, body["key"], body["instance"]) == (200, list(key), index)  # type: ignore[arg-type]
        source.close()


async def test_queryable_state_says_what_is_wrong() -> None:
    arrivals = Arrivals()
    flow, source = payments_flow(3, arrivals)
    async with running(flow) as (_, client, _job):
        await source.send({"card": "card-1", "amount": 1})
        await source.send({"card": 7, "amount": 1})
        await arrivals.wait_for(2)
        cases = {
            "/state/risk/card-2": (404, "no state for key 'card-2'"),
            "/state/risk/7": (404, "no state for key '7'"),  # keyed by int: the text "7" is another key
            "/state/nothing/card-1": (404, "no operator named 'nothing'"),
            "/state/parse/card-1": (404, "keeps no keyed state"),
            "/state/risk/seven?type=int": (400, "invalid literal for int()"),
            "/state/risk/card-1?type=bytes": (400, "unknown key type 'bytes'"),
            "/state/risk/%7B%22a%22%3A1%7D?type=json": (400, "a JSON object cannot be a key"),
            "/state/risk/%5B1%2C?type=json": (400, "not valid JSON"),
        }
        for path, (expected_status, message) in cases.items():
            status, body = await get_json(client, path)
            assert status == expected_status, (path, body)
            assert message in body["error"], (path, body)
        assert (await get_json(client, "/state/risk/7?type=int"))[0] == 200
        source.close()


async def test_queryable_state_shows_a_keys_open_windows() -> None:
    arrivals = Arrivals()
    flow = Flow("windows", parallelism=2)
    source = PushSource()
    (
        flow.from_source(source, name="in", watermarks=WatermarkStrategy.punctuated("ts"))
        .key_by(lambda tx: tx["card"])
        .window(TumblingEventTimeWindows.of(1_000))
        .reduce(lambda a, b: {**a, "amount": a["amount"] + b["amount"]}, name="per-second")
        .sink_to_callback(arrivals, name="out")
    )
    async with running(flow) as (_, client, _job):
        for ts, amount in ((100, 2), (900, 3), (1_200, 4)):
            await source.send({"card": "a", "ts": ts, "amount": amount})
        await source.send({"card": "b", "ts": 1_500, "amount": 1})
        await until(
            lambda: sum(e.metrics.records_in for e in flow.metrics.actors[1:]) == 4,  # type: ignore[union-attr]
            "every record reached the windows",
        )
        status, body = await get_json(client, "/state/per-second/a")
        assert status == 200, body
        # Watermark 1,500: the first window fired and was cleaned up; the second is open.
        assert body["windows"] == [
            {"start": 1_000, "end": 2_000, "contents": {"card": "a", "ts": 1_200, "amount": 4}}
        ]
        await source.send({"card": "a", "ts": 1_700, "amount": 5})
        await until(
            lambda: sum(e.metrics.records_in for e in flow.metrics.actors[1:]) == 5,  # type: ignore[union-attr]
            "the fifth record reached the windows",
        )
        status, body = await get_json(client, "/state/per-second/a")
        assert body["windows"][0]["contents"]["amount"] == 9
        assert (await get_json(client, "/state/per-second/zzz"))[0] == 404
        source.close()


def test_state_values_json_cannot_say_are_still_written() -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    value = {"tuple keys": {("a", 1): {1, 2}}, "thing": Opaque(), 3: (1, 2)}
    assert json.loads(to_json(value)) == {
        "tuple keys": {"('a', 1)": [1, 2]},
        "thing": "<opaque>",
        "3": [1, 2],
    }


# -- the token ----------------------------------------------------------------------------------


async def test_a_token_protects_everything_but_healthz() -> None:
    arrivals = Arrivals()
    flow, source = payments_flow(1, arrivals)
    async with running(flow, HttpConfig(port=0, token="s3cret")) as (_, client, _job):
        await source.send({"card": "a", "amount": 1})
        await arrivals.wait_for(1)
        paths = ["/", "/readyz", "/metrics", "/api/graph", "/api/checkpoints", "/state/risk/a"]
        for path in paths:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
                async with client.get(path, headers=headers) as response:
                    assert response.status == 401, (path, headers)
                    assert response.headers["WWW-Authenticate"].startswith("Bearer")
            async with client.get(path, headers={"Authorization": "Bearer s3cret"}) as response:
                assert response.status == 200, path
            async with client.get(path, params={"token": "s3cret"}) as response:
                # In the URL only for the page itself (how a browser opens the dashboard): a URL
                # ends up in logs and histories, a scraper sends the header.
                assert response.status == (200 if path == "/" else 401), path
        async with client.get("/healthz") as response:
            assert response.status == 200
        source.close()


async def test_only_requests_naming_the_server_by_an_allowed_name_are_answered() -> None:
    arrivals = Arrivals()
    flow, source = payments_flow(1, arrivals)
    config = HttpConfig(port=0, allowed_hosts=("flow.internal",))
    async with running(flow, config) as (server, client, _job):
        await source.send({"card": "a", "amount": 1})
        await arrivals.wait_for(1)
        port = server.port
        paths = ["/", "/readyz", "/metrics", "/api/graph", "/api/checkpoints", "/state/risk/a"]
        for path in paths:
            # A page of attacker.example whose name resolves to 127.0.0.1 (DNS rebinding).
            for refused in (
                f"attacker.example:{port}",
                "attacker.example",
                f"localhost.attacker.example:{port}",
            ):
                async with client.get(path, headers={"Host": refused}) as response:
                    assert response.status == 403, (path, refused)
                    assert "http_allowed_hosts" in (await response.json())["error"]
            for name in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "flow.internal:80"):
                async with client.get(path, headers={"Host": name}) as response:
                    assert response.status == 200, (path, name)
        async with client.get("/healthz", headers={"Host": "attacker.example"}) as response:
            assert response.status == 200  # says nothing but "alive"
        source.close()
    assert HttpConfig(allowed_hosts=("*",)).allows("anything.example:1")


# -- the entry points ---------------------------------------------------------------------------


async def test_run_with_http_serves_while_the_flow_runs_and_closes_after(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="actorflow.web.server")
    seen: list[int] = []
    probe: dict[str, Any] = {}

    async def look(value: int) -> None:
        # Inside the job: the server it announced is up and reports the job as running.
        (url,) = [r.args[1] for r in caplog.records if r.msg.startswith("dashboard")]  # type: ignore[index]
        probe["url"] = url
        async with aiohttp.ClientSession() as client, client.get(f"{url}readyz") as response:
            probe["status"] = response.status
        seen.append(value)

    flow = Flow("bounded")
    flow.from_iterable([1]).sink_to_callback(look, name="look")
    await run_with_http(flow, HttpConfig(port=0))
    assert (seen, probe["status"]) == ([1], 200)
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as client:
            await client.get(f"{probe['url']}healthz")
    again = Flow("plain")
    collected = again.from_iterable([1, 2]).collect()
    await run_with_http(again, None)
    assert collected.values == [1, 2]


def test_rate_tracker_starts_again_from_zero_after_a_restart() -> None:
    rates = RateTracker(min_interval=1.0)
    rates.update(0.0, {"a": (100.0,)})
    assert rates.update(1.0, {"a": (300.0,)}) == {"a": (200.0,)}
    assert rates.update(3.0, {"a": (50.0,), "b": (10.0,)}) == {"a": (25.0,), "b": (5.0,)}


def test_http_config_refuses_an_empty_token() -> None:
    with pytest.raises(ValueError, match="empty token"):
        HttpConfig(token="")
