"""KafkaSource's read loop pauses the garbage collector while it decodes a poll (the records in
hand would be gone through for no garbage), and only then: the flow's operators, the sinks and
everything after the run see it enabled, also when a record turns into a dead letter.
"""

from __future__ import annotations

import gc
from typing import Any

from actorflow import DeadLetter, Flow
from actorflow_kafka import KafkaSource
from tests.kafka_fixtures import KafkaEndpoint, TopicFactory
from tests.kafka_helpers import Message, produce


async def test_the_collector_runs_while_the_flow_works_and_after_the_source_ends(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    servers = kafka_broker.bootstrap_servers
    topic = await kafka_topic(partitions=2)
    messages = [Message(f'{{"n": {n}}}'.encode(), key=str(n % 5).encode()) for n in range(3_000)]
    messages[1_234] = Message(b"not json", key=b"1")  # a dead letter in the middle of a poll
    await produce(servers, topic, messages)
    enabled_in_flow: set[bool] = set()
    enabled_for_letters: list[bool] = []
    letters: list[DeadLetter] = []

    def dead_letter(letter: DeadLetter) -> None:
        enabled_for_letters.append(gc.isenabled())
        letters.append(letter)

    def seen(value: dict[str, Any]) -> dict[str, Any]:
        enabled_in_flow.add(gc.isenabled())
        return value

    assert gc.isenabled()
    flow = Flow("gc-pause", batch_size=256)
    source = KafkaSource(topic, bootstrap_servers=servers, bounded=True, dead_letters=dead_letter)
    results = flow.from_source(source).map(seen).collect()
    await flow.run()

    assert gc.isenabled()
    assert enabled_in_flow == {True}
    assert sorted(value["n"] for value in results.values) == [n for n in range(3_000) if n != 1_234]
    assert [letter.raw for letter in letters] == [b"not json"]
    assert enabled_for_letters == [False]  # decoding, where the collector waits
    assert source.records_read == 2_999
