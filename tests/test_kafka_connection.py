"""Kafka that cannot be reached, aiokafka's expected start-up noise, and outages (issue 12, item 6)."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import textwrap
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from actorflow import Flow
from actorflow_kafka import DeadLetterTopic, KafkaSink, KafkaSource
from actorflow_kafka.connection import KafkaUnreachable
from actorflow_kafka.transactions import TransactionLink
from tests.kafka_fixtures import KafkaEndpoint, TopicFactory
from tests.kafka_helpers import eventually, produce_json, read_topic, run_until, running
from tests.test_cli import actorflow

FLOW = """\
import os
from actorflow import Flow
from actorflow_kafka import KafkaSink, KafkaSource

servers = os.environ["KAFKA_DOWN_AT"]
flow = Flow("kafka-down")
flow.from_source(KafkaSource("in", bootstrap_servers=servers, group_id="g")).sink(
    KafkaSink("out", bootstrap_servers=servers)
)
"""


def _closed_port() -> int:
    """A port that nothing listens on (it was free a moment ago, and is closed again)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_unreachable_kafka_fails_the_run_with_one_line_after_the_connect_timeout(tmp_path: Path) -> None:
    (tmp_path / "kafka_down.py").write_text(textwrap.dedent(FLOW))
    servers = f"127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    done = actorflow(
        "run",
        "kafka_down.py",
        cwd=tmp_path,
        env={"KAFKA_DOWN_AT": servers, "ACTORFLOW_KAFKA_CONNECT_TIMEOUT": "1"},
    )
    took = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert (
        done.stderr.splitlines()[-1]
        == f"actorflow: cannot reach Kafka at {servers} after 1 s: connection refused"
    )
    assert "Traceback" not in done.stderr
    assert "Unclosed" not in done.stderr  # the clients were closed
    assert " ERROR " not in done.stderr  # aiokafka's retries are not the user's concern
    assert took >= 1.0  # it waited for the broker before giving up


def _dead_letter_producer(servers: str) -> Awaitable[None]:
    return DeadLetterTopic("dead").start(servers, {})


def _committed_offsets_admin(servers: str) -> Awaitable[object]:
    return KafkaSource("in", bootstrap_servers=servers, group_id="g")._committed_offsets([])


def _fencing_producer(servers: str) -> Awaitable[None]:
    return TransactionLink("sink-1", servers, {}).fence()


@pytest.mark.parametrize(
    "start", [_dead_letter_producer, _committed_offsets_admin, _fencing_producer], ids=lambda f: f.__name__
)
async def test_every_client_waits_for_kafka_then_fails_with_one_line(
    start: Callable[[str], Awaitable[object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # These clients used to fail at once with aiokafka's error (and the fencing producer was left
    # unclosed: a ResourceWarning, an error here).
    monkeypatch.setenv("ACTORFLOW_KAFKA_CONNECT_TIMEOUT", "0.5")
    servers = f"127.0.0.1:{_closed_port()}"
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(KafkaUnreachable) as raised:
        await start(servers)
    assert str(raised.value) == f"cannot reach Kafka at {servers} after 0.5 s: connection refused"
    assert loop.time() - started >= 0.5  # it waited for the broker before giving up


def test_a_wrong_connect_timeout_names_itself(tmp_path: Path) -> None:
    (tmp_path / "kafka_down.py").write_text(textwrap.dedent(FLOW))
    servers = f"127.0.0.1:{_closed_port()}"
    done = actorflow(
        "run",
        "kafka_down.py",
        cwd=tmp_path,
        env={"KAFKA_DOWN_AT": servers, "ACTORFLOW_KAFKA_CONNECT_TIMEOUT": "soon"},
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[-1] == (
        "actorflow: $ACTORFLOW_KAFKA_CONNECT_TIMEOUT='soon': not a number of seconds"
    )
    assert "Unclosed" not in done.stderr


def test_the_group_coordinator_error_of_a_start_is_demoted_to_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import actorflow_kafka.connection  # noqa: F401  # installs the filter (as importing actorflow_kafka does)

    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    with caplog.at_level(logging.INFO):
        coordinator.error("Group Coordinator Request failed: %s", "[Error 15] CoordinatorNotAvailableError")
        coordinator.error("Error sending JoinGroupRequest_v5 to node 1 [%s]", "boom")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("ERROR", "Error sending JoinGroupRequest_v5 to node 1 [boom]")  # only the expected one goes
    ]
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        coordinator.error("Group Coordinator Request failed: %s", "[Error 15] CoordinatorNotAvailableError")
    assert [r.levelname for r in caplog.records if r.name == coordinator.name] == ["DEBUG"]


async def test_a_normal_start_logs_no_error_from_aiokafka(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory, caplog: pytest.LogCaptureFixture
) -> None:
    servers = kafka_broker.bootstrap_servers
    topic = await kafka_topic(partitions=2)
    output = await kafka_topic(partitions=1)
    await produce_json(servers, topic, ({"n": n} for n in range(20)), key=lambda v: str(v["n"]))
    seen: list[int] = []
    flow = Flow("quiet-start")
    source = KafkaSource(topic, bootstrap_servers=servers, group_id=f"quiet-{uuid.uuid4().hex[:8]}")
    stream = flow.from_source(source).map(lambda r: r["n"])
    stream.sink_to_callback(seen.append)
    stream.map(lambda n: {"n": n}).sink(KafkaSink(output, bootstrap_servers=servers))
    with caplog.at_level(logging.INFO):
        await run_until(flow, source, lambda: len(seen) >= 20)
    assert sorted(seen) == list(range(20))
    assert len(await read_topic(servers, output, at_least=20)) == 20
    loud = [r for r in caplog.records if r.name.startswith("aiokafka") and r.levelno >= logging.ERROR]
    assert not loud, [r.getMessage() for r in loud]


@pytest.mark.timeout(120)
@pytest.mark.asyncio(loop_factories=["uvloop"])  # the run-time loop, whose errors name no address
async def test_an_outage_is_one_line_when_kafka_goes_and_one_when_it_is_back(
    kafka_broker: KafkaEndpoint,
    kafka_topic: TopicFactory,
    caplog: pytest.LogCaptureFixture,
    loop_errors: list[dict[str, object]],
) -> None:
    if not kafka_broker.restartable:
        pytest.skip("the broker at $KAFKA_BOOTSTRAP_SERVERS is not ours to restart")
    servers = kafka_broker.bootstrap_servers
    topic = await kafka_topic(partitions=2)
    output = await kafka_topic(partitions=1)
    await produce_json(servers, topic, ({"n": n} for n in range(10)))
    seen: list[int] = []
    flow = Flow("outage")
    source = KafkaSource(topic, bootstrap_servers=servers, group_id=f"outage-{uuid.uuid4().hex[:8]}")
    stream = flow.from_source(source).map(lambda r: r["n"])
    stream.sink_to_callback(seen.append)
    stream.map(lambda n: {"n": n}).sink(KafkaSink(output, bootstrap_servers=servers))

    def said(word: str) -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.name == "actorflow_kafka.outages" and f" {word} " in r.getMessage()
        ]

    # DEBUG for aiokafka, to count the lines it logged (demoted) during the outage.
    with caplog.at_level(logging.INFO), caplog.at_level(logging.DEBUG, logger="aiokafka"):
        async with running(flow, source) as job:
            await job.until(lambda: len(seen) >= 10)
            caplog.clear()
            restart = asyncio.ensure_future(asyncio.to_thread(kafka_broker.restart))
            # Said while the broker is down (the restart waits until it answers again).
            await eventually(lambda: bool(said("unreachable")) or restart.done(), within=60)
            assert not restart.done(), "the broker was back before the outage was reported"
            await restart
            await produce_json(servers, topic, ({"n": n} for n in range(10, 20)))
            await job.until(lambda: len(seen) >= 20 and bool(said("back")), within=30)
    assert sorted(seen) == list(range(20))

    outage_lines = [r.getMessage() for r in caplog.records if r.name == "actorflow_kafka.outages"]
    assert len(outage_lines) == 2, outage_lines
    assert re.fullmatch(
        rf"Kafka at {re.escape(servers)} unreachable since \d\d:\d\d:\d\d \(connection refused\)",
        outage_lines[0],
    ), outage_lines
    assert re.fullmatch(rf"Kafka at {re.escape(servers)} back after \d+(\.\d)? s", outage_lines[1])
    aiokafka_lines = [r for r in caplog.records if r.name.startswith("aiokafka")]
    failures = [r for r in aiokafka_lines if r.getMessage().startswith("Unable connect to")]
    assert len(failures) >= 5, "aiokafka retried throughout the outage (the flood is still there)"
    loud = [r for r in aiokafka_lines if r.levelno >= logging.WARNING]
    assert not loud, [r.getMessage() for r in loud]  # ... but at DEBUG
    assert not loop_errors


def test_a_failure_to_reach_a_broker_that_cannot_be_named_is_let_through_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import actorflow_kafka.outages  # noqa: F401  # installs the filter (as importing actorflow_kafka does)

    client = logging.getLogger("aiokafka")
    node = f"unknown-{uuid.uuid4().hex[:8]}"  # no client's metadata knows it, no address in the error
    with caplog.at_level(logging.INFO):
        for _ in range(5):
            client.error("Unable connect to node with id %s: %s", node, TimeoutError())
    assert [(r.name, r.levelname) for r in caplog.records] == [("aiokafka", "ERROR")]


async def test_a_broker_down_then_back_is_two_lines_and_the_group_churn_after_it_is_demoted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import actorflow_kafka.outages  # noqa: F401  # installs the filter (as importing actorflow_kafka does)

    client = logging.getLogger("aiokafka")
    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")

    def said() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "actorflow_kafka.outages"]

    with socket.socket() as sock, caplog.at_level(logging.INFO):
        sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        host, port = sock.getsockname()
        # A node no client's metadata knows: the address comes from the error, as asyncio words it.
        refused = ConnectionRefusedError(111, f"Connect call failed ('{host}', {port})")
        for _ in range(20):
            client.error("Unable connect to node with id %s: %s", 4242, refused)
        await eventually(lambda: len(said()) == 1)
        server = await asyncio.start_server(lambda _reader, writer: writer.close(), sock=sock)
        async with server:
            await eventually(lambda: len(said()) == 2)
        coordinator.warning(
            "Heartbeat failed for group %s: coordinator (node %s) is either not started or not valid",
            "g",
            4242,
        )
        coordinator.warning("Marking the coordinator dead (node %s)for group %s.", 4242, "g")
    assert re.fullmatch(
        rf"Kafka at 127\.0\.0\.1:{port} unreachable since \d\d:\d\d:\d\d \(connection refused\)", said()[0]
    )
    assert re.fullmatch(rf"Kafka at 127\.0\.0\.1:{port} back after \d\.\d s", said()[1])
    assert [r for r in caplog.records if r.name.startswith("aiokafka")] == []
