"""``python -m benchmarks kafka``: both engines write Q1's result through a real broker.

The engines run here on a small input, in the test's event loop (the timing is not what is
tested); one test runs the whole command, subprocesses included, against the test broker.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from actorflow_kafka import KafkaSink
from benchmarks import kafka, results
from benchmarks.runner import Measurement
from tests.kafka_fixtures import KafkaEndpoint

REPO_ROOT = Path(__file__).resolve().parent.parent
EVENTS = 2_000
#: What every line has; the optional fields (checkpoints, CPU time) may come too.
ALL_KEYS = {*Measurement.__annotations__, "equal"}
KEYS = ALL_KEYS - {"checkpoints", "cpu_seconds"}


async def test_both_engines_write_the_q1_result(kafka_broker: KafkaEndpoint, tmp_path: Path) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topics = kafka.Topics.fresh()
    await kafka.create_topics(bootstrap, topics.all, partitions=2)
    try:
        expected = await kafka.preload(bootstrap, topics.input, EVENTS, seed=3)
        assert 0 < len(expected) < EVENTS
        assert expected == sorted(expected)
        expected_path = kafka.write_result(expected, tmp_path / "expected.jsonl")
        outputs = {}
        for engine in kafka.ENGINES:
            measurement = await kafka.run_engine(engine, bootstrap, topics.input, topics.outputs[engine])
            values = await kafka.read_topic(bootstrap, topics.outputs[engine])
            outputs[engine] = kafka.write_result(values, tmp_path / f"{engine}.jsonl")
            difference = results.compare("q1", outputs[engine], expected_path)
            assert difference is None, f"{engine}: {difference}"
            assert len(values) == len(expected)

            line = kafka.kafka_measurement(measurement, difference is None)
            assert KEYS <= set(line) <= ALL_KEYS
            assert line["query"] == "q1"
            assert line["engine"] == engine
            assert line["events"] == EVENTS
            assert line["equal"] is True
            assert line["seconds"] > 0
            assert line["events_per_s"] > 0
            assert line["peak_rss_mb"] > 0
            assert 0 < line["cpu_seconds"] < 60
            assert orjson.loads(orjson.dumps(line)) == line
        assert results.compare("q1", outputs["actorflow"], outputs["loop"]) is None
    finally:
        await kafka.delete_topics(bootstrap, topics.all)


def test_stamps_span_the_first_read_to_the_last_ack() -> None:
    stamps = kafka.Stamps()
    assert stamps.seconds(ended=10.0) == 0.0 and stamps.cpu_seconds(ended=10.0) == 0.0
    stamps.read()
    first, first_cpu = stamps.first_read, stamps.first_read_cpu
    assert first is not None and first_cpu is not None
    stamps.read()  # only the first read counts
    assert (stamps.first_read, stamps.first_read_cpu) == (first, first_cpu)
    sum(range(100_000))  # some CPU time
    stamps.acknowledged()
    assert stamps.last_ack is not None and stamps.last_ack_cpu is not None
    assert stamps.seconds(ended=first + 100) == stamps.last_ack - first
    assert stamps.cpu_seconds(ended=first_cpu + 100) == stamps.last_ack_cpu - first_cpu


async def test_actorflow_is_timed_to_its_sinks_last_acknowledgement(kafka_broker: KafkaEndpoint) -> None:
    """The sink keeps acknowledgements pending: the run ends when its end of input flushed them."""
    bootstrap = kafka_broker.bootstrap_servers
    topics = kafka.Topics.fresh(engines=["actorflow"])
    await kafka.create_topics(bootstrap, topics.all, partitions=1)
    try:
        expected = await kafka.preload(bootstrap, topics.input, 500, seed=5)
        stamps = kafka.Stamps()
        acknowledged: list[bool] = []
        flush = KafkaSink.flush

        async def watched_flush(sink: KafkaSink) -> None:
            await flush(sink)
            acknowledged.append(stamps.last_ack is None)  # the stamp comes after the last flush

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(KafkaSink, "flush", watched_flush)
            read = await kafka.run_actorflow(bootstrap, topics.input, topics.outputs["actorflow"], stamps)
        assert read == 500
        assert acknowledged and all(acknowledged)
        assert stamps.first_read is not None and stamps.last_ack is not None
        assert stamps.last_ack > stamps.first_read
        assert len(await kafka.read_topic(bootstrap, topics.outputs["actorflow"])) == len(expected)
    finally:
        await kafka.delete_topics(bootstrap, topics.all)


async def test_read_back_output_that_differs_is_caught(kafka_broker: KafkaEndpoint, tmp_path: Path) -> None:
    """A lost or changed record in an output topic makes the comparison fail."""
    bootstrap = kafka_broker.bootstrap_servers
    topics = kafka.Topics.fresh(engines=["loop"])
    await kafka.create_topics(bootstrap, topics.all, partitions=1)
    try:
        expected = await kafka.preload(bootstrap, topics.input, 500, seed=4)
        await kafka.run_engine("loop", bootstrap, topics.input, topics.outputs["loop"])
        values = await kafka.read_topic(bootstrap, topics.outputs["loop"])
    finally:
        await kafka.delete_topics(bootstrap, topics.all)
    expected_path = kafka.write_result(expected, tmp_path / "expected.jsonl")
    missing = kafka.write_result(values[1:], tmp_path / "missing.jsonl")
    assert results.compare("q1", missing, expected_path) is not None
    changed = [orjson.dumps({**orjson.loads(values[0]), "amount": 0.5}), *values[1:]]
    assert results.compare("q1", kafka.write_result(changed, tmp_path / "changed.jsonl"), expected_path)


def test_the_command_prints_one_line_per_engine(kafka_broker: KafkaEndpoint) -> None:
    env = {**os.environ, kafka.BOOTSTRAP_ENV: kafka_broker.bootstrap_servers}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "kafka", "--events", "1000", "--partitions", "2"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert [line["engine"] for line in lines] == list(kafka.ENGINES)
    for line in lines:
        assert KEYS <= set(line) <= ALL_KEYS
        assert line["events"] == 1000
        assert line["equal"] is True
    assert "actorflow / loop" in done.stderr
