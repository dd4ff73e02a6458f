"""Kafka that cannot be reached, and aiokafka's expected start-up noise (issue 12, item 6)."""

from __future__ import annotations

import logging
import socket
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from actorflow import Flow
from actorflow_kafka import KafkaSink, KafkaSource
from tests.kafka_fixtures import KafkaEndpoint, TopicFactory
from tests.kafka_helpers import produce_json, read_topic, run_until
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
