"""SIGTERM on a Kafka job without checkpoints drains it and commits what it processed (issue 12, item 8).

``actorflow run`` of a small Kafka flow file, as a user runs it: stopped with SIGTERM in the middle of
a topic, it exits 0 with the group's committed offsets exactly at the records it wrote, and the next
run goes on from there, so that no record is processed twice and none is lost.
"""

from __future__ import annotations

import asyncio
import signal
import textwrap
import uuid
from pathlib import Path

import pytest
from aiokafka.admin import (  # type: ignore[import-untyped, unused-ignore]  # aiokafka has no py.typed
    AIOKafkaAdminClient,
)

from tests.kafka_fixtures import KafkaEndpoint, TopicFactory
from tests.kafka_helpers import Message, produce, read_topic, values_of
from tests.test_daemon import Daemon

FLOW = """\
import os
import sys
import time

from actorflow import Flow
from actorflow_kafka import KafkaSink, KafkaSource

servers = os.environ["KAFKA"]
handled = 0


def work(record):
    global handled
    time.sleep(0.002)  # slow enough that SIGTERM comes in the middle of the topic
    handled += 1
    if handled == 100:
        print("handled 100 records", file=sys.stderr, flush=True)
    return record


flow = Flow("drain")
source = KafkaSource(
    os.environ["TOPIC"], bootstrap_servers=servers, group_id=os.environ["GROUP"], max_records=20
)
flow.from_source(source).map(work).sink(KafkaSink(os.environ["OUTPUT"], bootstrap_servers=servers))
"""

N = 1_000
PARTITIONS = 2


async def committed_offsets(servers: str, group: str, topic: str) -> list[int]:
    """The group's committed offset of every partition of ``topic`` (0 where none is)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    offsets = [0] * PARTITIONS
    for tp, meta in found.items():
        if tp.topic == topic and meta.offset >= 0:
            offsets[tp.partition] = meta.offset
    return offsets


async def output_ids(servers: str, topic: str, at_least: int = 0) -> list[int]:
    return sorted(value["n"] for value in values_of(await read_topic(servers, topic, at_least=at_least)))


@pytest.mark.timeout(120)
@pytest.mark.asyncio(loop_factories=["uvloop"])  # the test drives processes: one loop is enough
async def test_sigterm_commits_the_offsets_of_what_was_processed_and_the_next_run_goes_on_there(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory, tmp_path: Path
) -> None:
    servers = kafka_broker.bootstrap_servers
    topic = await kafka_topic(partitions=PARTITIONS)
    output = await kafka_topic(partitions=1)
    group = f"drain-{uuid.uuid4().hex[:8]}"
    # Record n at offset n // 2 of partition n % 2: its offset says whether a commit covers it.
    await produce(
        servers,
        topic,
        (Message(f'{{"n": {n}}}'.encode(), partition=n % PARTITIONS) for n in range(N)),
    )
    (tmp_path / "drain.py").write_text(textwrap.dedent(FLOW))
    env = {"KAFKA": servers, "TOPIC": topic, "OUTPUT": output, "GROUP": group}

    def run() -> Daemon:
        return Daemon("drain.py", cwd=tmp_path, env=env)

    first = run()
    try:
        await asyncio.to_thread(first.wait_for, "handled 100 records")
        first.send(signal.SIGTERM)
        assert await asyncio.to_thread(first.wait) == 0, "".join(first.stderr)
    finally:
        first.close()
    committed = await committed_offsets(servers, group, topic)
    written = await output_ids(servers, output)
    # Exactly the records the commit covers were written, each once: none lost in flight, none
    # written without its offset committed.
    assert written == [n for n in range(N) if n // PARTITIONS < committed[n % PARTITIONS]]
    assert 100 <= len(written) < N, "SIGTERM came in the middle of the topic"

    second = run()
    try:
        everything = await output_ids(servers, output, at_least=N)
        second.send(signal.SIGTERM)
        assert await asyncio.to_thread(second.wait) == 0, "".join(second.stderr)
    finally:
        second.close()
    # The second run began at the committed offsets: nothing of the first run again, nothing skipped.
    assert everything == list(range(N))
    assert await output_ids(servers, output) == list(range(N))
    assert await committed_offsets(servers, group, topic) == [N // PARTITIONS] * PARTITIONS
