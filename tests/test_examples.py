"""The examples run as the README says and find what they should."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.admin import (  # type: ignore[import-untyped, unused-ignore]  # aiokafka has no py.typed
    AIOKafkaAdminClient,
)
from aiokafka.coordinator.protocol import (  # type: ignore[import-untyped, unused-ignore]
    ConsumerProtocolMemberAssignment,
)
from aiokafka.errors import (  # type: ignore[import-untyped, unused-ignore]
    GroupCoordinatorNotAvailableError,
)

from examples import dynamic_rules, embedded, fraud_detection, generator, kafka_producer
from tests.kafka_fixtures import KafkaEndpoint, TopicFactory
from tests.kafka_helpers import Message, produce, produce_json, read_topic, values_of

ROOT = Path(__file__).resolve().parent.parent


def _run_example(name: str, *args: str, env: dict[str, str] | None = None) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "actorflow", "run", f"examples/{name}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=None if env is None else {**os.environ, **env},
    )
    return done.stdout.splitlines()


def _run_script(name: str, *args: str, env: dict[str, str] | None = None) -> list[str]:
    done = subprocess.run(
        [sys.executable, f"examples/{name}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=None if env is None else {**os.environ, **env},
    )
    return done.stdout.splitlines()


def _file_mode_alerts() -> list[str]:
    """The main example's alerts over the bundled file, as it prints them."""
    lines = _run_script("fraud_detection.py", env={"FRAUD_INPUT": str(fraud_detection.DEFAULT_INPUT)})
    return sorted(line for line in lines if line.startswith("ALERT "))


def _file_mode_small_then_large() -> list[str]:
    """The main example over the bundled file, its small-then-large alerts only."""
    return [line for line in _file_mode_alerts() if line.startswith("ALERT small-then-large ")]


def _fraud_reference(count: int) -> list[str]:
    """The main example's alerts over ``count`` generated transactions, computed plainly."""
    txs = list(generator.transactions(count=count))
    rules = [orjson.loads(line) for line in fraud_detection.LIVE_RULES.read_text().splitlines()]
    alerts = []
    armed: dict[str, dict[str, Any]] = {}
    recent: dict[str, list[int]] = {}
    quiet_after: dict[str, int] = {}
    history: dict[str, tuple[int, float]] = {}
    for tx in txs:  # one source, so every card's transactions arrive in generated order
        card, ts, amount = tx["card_id"], tx["ts"], tx["amount"]
        small = armed.pop(card, None)
        if small is not None and amount > fraud_detection.LARGE and 0 <= ts - small["ts"] <= 60_000:
            alerts.append(
                {
                    "rule": "small-then-large",
                    "card_id": card,
                    "small_tx_id": small["tx_id"],
                    "small_amount": small["amount"],
                    "large_tx_id": tx["tx_id"],
                    "large_amount": amount,
                    "seconds_apart": (ts - small["ts"]) / 1000,
                }
            )
        if amount < fraud_detection.SMALL:
            armed[card] = tx
        window = [t for t in recent.get(card, []) if t > ts - fraud_detection.BURST_MS] + [ts]
        recent[card] = window
        if len(window) > fraud_detection.BURST_COUNT and ts >= quiet_after.get(card, 0):
            quiet_after[card] = ts + fraud_detection.BURST_MS
            alerts.append({"rule": "velocity", "card_id": card, "tx_id": tx["tx_id"], "count": len(window)})
        seen, total = history.get(card, (0, 0.0))
        if (
            seen >= fraud_detection.ANOMALY_HISTORY
            and amount > fraud_detection.ANOMALY_FACTOR * total / seen
        ):
            alerts.append(
                {
                    "rule": "amount-anomaly",
                    "card_id": card,
                    "tx_id": tx["tx_id"],
                    "amount": amount,
                    "average": round(total / seen, 2),
                }
            )
        history[card] = (seen + 1, total + amount)
        in_force = [rule for rule in rules if rule["ts"] <= ts]  # the file is in ts order
        if in_force and amount > in_force[-1]["limit"]:
            alerts.append({"rule": "large", "card_id": card, "tx_id": tx["tx_id"], "ts": ts})
    return sorted(fraud_detection.describe(alert) for alert in alerts)


def _small_then_large_in_event_time(txs: list[dict[str, Any]]) -> list[str]:
    """The small-then-large alerts with each card's transactions in event-time order (equal times
    in arrival order): what the rule as a pattern finds (nothing is late in the bundled inputs)."""
    by_card: dict[str, list[dict[str, Any]]] = {}
    for tx in sorted(txs, key=lambda tx: tx["ts"]):  # sorted() keeps arrival order among equals
        by_card.setdefault(tx["card_id"], []).append(tx)
    alerts = []
    for card_txs in by_card.values():
        for small, large in itertools.pairwise(card_txs):
            if (
                small["amount"] < fraud_detection.SMALL
                and large["amount"] > fraud_detection.LARGE
                and large["ts"] - small["ts"] <= fraud_detection.SPAN_MS
            ):
                alerts.append(fraud_detection.small_then_large_alert({"small": [small], "large": [large]}))
    return sorted(fraud_detection.describe(alert) for alert in alerts)


@pytest.mark.parametrize("parallelism", [1, 3])
def test_with_cep_the_small_then_large_rule_runs_as_a_pattern_in_event_time_order(
    parallelism: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--cep``: the alerts of the plain rule over each card's transactions sorted by time (25 of
    the 12,000 generated transactions are behind an earlier one of their card; no alert depends on
    them, so these alerts also equal the process function's)."""
    fraud_detection.build(limit=12_000, rate=None, parallelism=parallelism, cep=True).execute()
    got = sorted(line for line in capsys.readouterr().out.splitlines() if " small-then-large " in line)
    expected = _small_then_large_in_event_time(list(generator.transactions(count=12_000)))
    assert expected and got == expected


@pytest.mark.parametrize("parallelism", [1, 3])
def test_fraud_detection_finds_what_a_plain_reference_finds(
    parallelism: int, capsys: pytest.CaptureFixture[str]
) -> None:
    fraud_detection.build(limit=12_000, rate=None, parallelism=parallelism).execute()
    got = sorted(capsys.readouterr().out.splitlines())
    expected = _fraud_reference(12_000)
    assert {line.split()[1] for line in expected} == {
        "small-then-large",
        "velocity",
        "amount-anomaly",
        "large",
    }
    assert got == expected


def test_fraud_detection_reports_rules_it_cannot_apply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    rules = tmp_path / "rules.jsonl"
    rules.write_bytes(
        b'{"id": "large", "kind": "amount_over", "limit": 100.0, "ts": 0}\n'
        b'{"id": "jump", "kind": "teleport", "ts": 0}\n'
    )
    monkeypatch.setattr(fraud_detection, "LIVE_RULES", rules)
    with caplog.at_level("WARNING", logger="fraud_detection"):
        fraud_detection.build(limit=200, rate=None).execute()
    assert [record.getMessage() for record in caplog.records] == [
        "rule rejected: unknown kind 'teleport': {'id': 'jump', 'kind': 'teleport', 'ts': 0}"
    ]


def test_fraud_detection_runs_from_the_command_line_with_a_limit() -> None:
    lines = _run_script("fraud_detection.py", "--limit", "3000", "--rate", "0")
    assert sorted(lines) == _fraud_reference(3_000)


def test_the_generator_is_rate_limited_on_the_flow_clock() -> None:
    import asyncio

    from actorflow import ManualClock
    from actorflow.operators.base import OperatorContext

    async def scenario() -> list[int]:
        clock = ManualClock(0)
        source = generator.TransactionGenerator(limit=50, rate=100.0)  # 10 per batch, 10 batches/s
        reader = source.read(OperatorContext("generator", clock=clock, batch_size=1024))
        sizes = [len(await anext(reader))]
        pending = asyncio.ensure_future(anext(reader))
        await asyncio.sleep(0)
        assert not pending.done(), "the second batch waits for its time"
        clock.advance(100)
        sizes.append(len(await pending))
        await reader.aclose()
        return sizes

    assert asyncio.run(scenario()) == [10, 10]


def test_the_generator_starts_its_event_time_now_and_keeps_its_start_across_a_restore() -> None:
    from actorflow import ManualClock
    from actorflow.operators.base import OperatorContext

    async def first(source: generator.TransactionGenerator) -> list[dict[str, Any]]:
        reader = source.read(OperatorContext("generator", clock=ManualClock(0), batch_size=5))
        batch = await anext(reader)
        await reader.aclose()
        return batch

    before = time.time_ns() // 1_000_000
    source = generator.TransactionGenerator(limit=10, rate=None)
    after = time.time_ns() // 1_000_000
    assert before <= source.start_ts <= after
    txs = asyncio.run(first(source))
    assert txs == list(generator.transactions(count=5, start_ts=source.start_ts))
    context = OperatorContext("generator", clock=ManualClock(0))

    # Restored a minute later, the source goes on on the clock it started with.
    restored = generator.TransactionGenerator(limit=10, rate=None)
    restored.restore_state(context, [source.snapshot_state(context)])
    assert restored.start_ts == source.start_ts
    assert (
        asyncio.run(first(restored)) == list(generator.transactions(count=10, start_ts=source.start_ts))[5:]
    )
    # A checkpoint from before the start was kept (a plain count) was on the fixed clock.
    old = generator.TransactionGenerator(limit=10, rate=None)
    old.restore_state(context, [5])
    assert asyncio.run(first(old)) == list(generator.transactions(count=10))[5:]


def test_fraud_detection_moves_the_rules_to_the_generators_start() -> None:
    # The large-amount limit tightens from 8,000 to 5,000 60 s into the stream: with a start of
    # its own, the generator takes the rules file with it, and finds what the bundled clock finds.
    later = generator.START_TS + 86_400_000 * 400
    lines = _run_example("fraud_detection.py", "--limit", "12000", "--rate", "0", "--start-ts", str(later))
    assert sorted(lines) == _fraud_reference(12_000)
    assert any(line.startswith("ALERT large ") for line in lines)


def test_windowed_count_prints_windows_and_late_records() -> None:
    lines = _run_example("windowed_count.py")
    assert any(" tx, " in line for line in lines)
    assert any(line.startswith("late: ") for line in lines)


def _dynamic_rules_reference() -> list[str]:
    """The alerts of examples/dynamic_rules.py, computed plainly from its two data files."""
    rules = [orjson.loads(line) for line in dynamic_rules.DEFAULT_RULES.read_text().splitlines()]
    txs = [orjson.loads(line) for line in dynamic_rules.DEFAULT_TRANSACTIONS.read_text().splitlines()]
    alerts = []
    for tx in txs:
        in_force: dict[str, Any] = {}
        for rule in sorted(rules, key=lambda r: r["ts"]):  # a stable sort: file order breaks ties
            if rule["ts"] <= tx["ts"] and rule.get("kind") in (None, "amount_over", "velocity"):
                in_force[rule["id"]] = None if rule.get("remove") else rule
        for rule in in_force.values():
            if rule is None:
                continue
            if rule["kind"] == "amount_over":
                fired = tx["amount"] > rule["limit"]
            else:
                earlier = [
                    other
                    for other in txs
                    if other["card_id"] == tx["card_id"]
                    and (other["ts"], other["tx_id"]) <= (tx["ts"], tx["tx_id"])
                    and other["ts"] > tx["ts"] - rule["window_ms"]
                ]
                fired = len(earlier) > rule["count"]
            if fired:
                alerts.append(f"ALERT {rule['id']} card {tx['card_id']} tx {tx['tx_id']} at {tx['ts']}")
    return sorted(alerts)


@pytest.mark.parametrize("parallelism", [1, 3])
def test_dynamic_rules_judge_each_transaction_by_the_rules_in_force_at_its_time(
    parallelism: int, capsys: pytest.CaptureFixture[str]
) -> None:
    dynamic_rules.build(
        dynamic_rules.DEFAULT_TRANSACTIONS, dynamic_rules.DEFAULT_RULES, parallelism=parallelism
    ).execute()
    lines = capsys.readouterr().out.splitlines()
    expected = _dynamic_rules_reference()
    assert {line.split()[1] for line in expected} == {"large", "burst"}  # both rules fire, and
    assert any(" at 17000000" in line and " large " in line for line in expected)  # the new limit
    assert sorted(line for line in lines if line.startswith("ALERT")) == expected
    assert [line for line in lines if line.startswith("REJECTED")] == [
        "REJECTED rule teleport: unknown kind 'impossible_travel'"
    ]


def test_dynamic_rules_example_runs_from_the_command_line() -> None:
    lines = _run_example("dynamic_rules.py")
    assert sorted(line for line in lines if line.startswith("ALERT")) == _dynamic_rules_reference()


async def test_embedded_service_gets_the_same_alerts_as_the_file_flow() -> None:
    alerts = await embedded.main()
    assert sorted(alerts) == _file_mode_small_then_large()


async def test_the_main_example_reads_and_writes_kafka_with_rules_from_a_topic(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    servers = kafka_broker.bootstrap_servers
    transactions, rules, alerts_topic = (
        await kafka_topic(partitions=3),
        await kafka_topic(),
        await kafka_topic(),
    )
    count = 6_000
    await produce_json(
        servers, transactions, generator.transactions(count=count), key=lambda tx: tx["card_id"]
    )
    live_rules = [orjson.loads(line) for line in fraud_detection.LIVE_RULES.read_text().splitlines()]
    await produce_json(servers, rules, live_rules)
    flow = fraud_detection.build_kafka(servers, bounded=True, topics=(transactions, rules, alerts_topic))
    await flow.run()
    expected = _fraud_reference(count)
    got = sorted(
        fraud_detection.describe(alert) for alert in values_of(await read_topic(servers, alerts_topic))
    )
    # Partitions interleave differently than the generator's order, but each card's transactions
    # stay in order (keyed by card), and every rule here depends only on a card's own order.
    assert got == expected


@pytest.fixture
async def example_topics(
    kafka_broker: KafkaEndpoint, request: pytest.FixtureRequest
) -> AsyncIterator[kafka_producer.Topics]:
    """The main example's topics under fresh names; nothing creates them here, all go afterwards."""
    prefix = re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name).strip("-")[:80]
    prefix = f"{prefix}-{uuid.uuid4().hex[:8]}"
    topics = kafka_producer.Topics(f"{prefix}-transactions", f"{prefix}-rules", f"{prefix}-alerts")
    yield topics
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics()) & set(topics.partitions())
        if existing:
            await admin.delete_topics(sorted(existing))
    finally:
        await admin.close()


async def _partition_counts(servers: str, topics: kafka_producer.Topics) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics.partitions()))
    finally:
        await admin.close()
    return {t["topic"]: len(t["partitions"]) for t in described if t.get("error_code", 0) == 0}


def test_the_rules_move_to_the_start_of_a_live_stream() -> None:
    on_file = kafka_producer.rules_from(generator.START_TS)
    assert on_file == [orjson.loads(line) for line in fraud_detection.LIVE_RULES.read_text().splitlines()]
    start = 1_800_000_000_000
    moved = kafka_producer.rules_from(start)
    # From the beginning stays from the beginning; 60 s into the bundled stream is 60 s into this one.
    assert [rule["ts"] for rule in moved] == [0, start + 60_000]
    assert [rule["ts"] for rule in on_file] == [0, generator.START_TS + 60_000]


@pytest.mark.parametrize("rate", [10.0, 200.0, 5_000.0])
def test_live_event_time_advances_at_the_rate(rate: float) -> None:
    start = 1_800_000_000_000
    txs = list(kafka_producer.live_transactions(start, rate, count=2_000))
    # The built-in generator's transactions; only their event time differs.
    assert [{**tx, "ts": 0} for tx in txs] == [
        {**tx, "ts": 0} for tx in generator.transactions(count=2_000)
    ]
    step = 1_000 / rate
    for index, tx in enumerate(txs):  # transaction i at i / rate s, at most three steps early
        assert start + index * step - 3 * step - 1 <= tx["ts"] <= start + index * step + 1


async def _start_producer(
    servers: str, topics: kafka_producer.Topics, *args: str
) -> asyncio.subprocess.Process:
    """``examples/kafka_producer.py ARGS`` on ``topics``, started (stdout and stderr piped)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "examples/kafka_producer.py",
        *("--bootstrap-servers", servers, "--transactions-topic", topics.transactions),
        *("--rules-topic", topics.rules, "--alerts-topic", topics.alerts),
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _finished(process: asyncio.subprocess.Process) -> str:
    """What ``process`` printed, once it has exited 0."""
    async with asyncio.timeout(45):
        stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


async def _run_producer(servers: str, topics: kafka_producer.Topics, *args: str) -> str:
    """``examples/kafka_producer.py ARGS`` on ``topics``, to its end; returns what it printed."""
    return await _finished(await _start_producer(servers, topics, *args))


async def test_the_producer_generates_a_live_stream_at_the_rate_from_the_wall_clock(
    kafka_broker: KafkaEndpoint, example_topics: kafka_producer.Topics
) -> None:
    servers, topics = kafka_broker.bootstrap_servers, example_topics
    count, rate = 600, 2_000.0
    before = int(time.time() * 1000)
    printed = await _run_producer(
        servers, topics, "--generate", "--rate", str(rate), "--limit", str(count), "--seed", "3"
    )
    after = int(time.time() * 1000)
    assert f"produced {count} transactions" in printed

    # Every topic the example uses was missing, and is there now, with its partitions.
    assert await _partition_counts(servers, topics) == topics.partitions()

    records = await read_topic(servers, topics.transactions, at_least=count)
    txs = values_of(records)
    assert len(txs) == count
    # The generator's transactions, keyed by card, in order within each partition.
    reference = {tx["tx_id"]: tx for tx in kafka_producer.live_transactions(0, rate, seed=3, count=count)}
    assert sorted(tx["tx_id"] for tx in txs) == sorted(reference)
    assert all(r.key == tx["card_id"].encode() for r, tx in zip(records, txs, strict=True))
    partition_of: dict[str, int] = {}
    for r, tx in zip(records, txs, strict=True):
        assert partition_of.setdefault(tx["card_id"], r.partition) == r.partition
    for partition in {r.partition for r in records}:
        ids = [tx["tx_id"] for r, tx in zip(records, txs, strict=True) if r.partition == partition]
        assert ids == sorted(ids)
    # Event time: the reference's, moved to a start taken from the wall clock during the run.
    [start] = {tx["ts"] - reference[tx["tx_id"]]["ts"] for tx in txs}
    assert before <= start <= after
    assert [{**tx, "ts": 0} for tx in sorted(txs, key=lambda tx: tx["tx_id"])] == [
        {**tx, "ts": 0} for tx in reference.values()
    ]
    # Paced by the wall clock (a record's timestamp is when it was sent): transaction i no sooner
    # than i / rate s after the start, and its event time not ahead of when it was sent.
    for r, tx in zip(records, txs, strict=True):
        assert start + int(tx["tx_id"] * 1_000 / rate) <= r.timestamp
        assert tx["ts"] <= r.timestamp + 1

    # The run-time rules, moved to the stream's start; a second run adds none.
    assert values_of(await read_topic(servers, topics.rules)) == kafka_producer.rules_from(start)
    printed = await _run_producer(servers, topics, "--generate", "--limit", "5")
    assert "already holds rules" in printed
    assert values_of(await read_topic(servers, topics.rules)) == kafka_producer.rules_from(start)
    assert len(await read_topic(servers, topics.transactions)) == count + 5


async def test_the_live_producer_stops_on_sigterm_with_everything_sent(
    kafka_broker: KafkaEndpoint, example_topics: kafka_producer.Topics
) -> None:
    servers, topics = kafka_broker.bootstrap_servers, example_topics
    # Created here first (the producer finds them there), so the broker can be asked for records.
    await kafka_producer.create_topics(servers, topics)
    process = await _start_producer(servers, topics, "--generate", "--rate", "1000")  # no limit
    try:  # wait until it streams: the topic holds 100 records
        await read_topic(servers, topics.transactions, at_least=100)
    except BaseException:
        process.kill()
        await process.wait()
        raise
    process.send_signal(signal.SIGTERM)  # what `docker stop` sends
    printed = await _finished(process)
    [sent] = re.findall(r"produced (\d+) transactions", printed)
    txs = values_of(await read_topic(servers, topics.transactions))
    assert sorted(tx["tx_id"] for tx in txs) == list(range(int(sent)))


async def test_the_main_example_on_kafka_finds_what_it_finds_in_the_file(
    kafka_broker: KafkaEndpoint, example_topics: kafka_producer.Topics
) -> None:
    servers, topics = kafka_broker.bootstrap_servers, example_topics
    sent = await kafka_producer.produce(servers, topics=topics)  # creates the topics, puts the rules
    assert sent == len(fraud_detection.DEFAULT_INPUT.read_text().splitlines())
    flow = fraud_detection.build_kafka(
        servers, bounded=True, topics=(topics.transactions, topics.rules, topics.alerts)
    )
    await flow.run()
    alerts = values_of(await read_topic(servers, topics.alerts))
    expected = _file_mode_alerts()
    assert {line.split()[1] for line in expected} == {"small-then-large", "velocity", "amount-anomaly"}
    assert sorted(fraud_detection.describe(alert) for alert in alerts) == expected


async def test_the_main_example_sends_undecodable_records_to_the_dead_letter_topic(
    kafka_broker: KafkaEndpoint, example_topics: kafka_producer.Topics
) -> None:
    servers, topics = kafka_broker.bootstrap_servers, example_topics
    await kafka_producer.create_topics(servers, topics)
    await produce_json(
        servers, topics.rules, [{"id": "large", "kind": "amount_over", "limit": 5.0, "ts": 0}]
    )
    await produce(servers, topics.rules, [Message(b"not a rule")])
    txs = list(generator.transactions(count=40))
    await produce_json(servers, topics.transactions, txs[:20], key=lambda tx: tx["card_id"])
    await produce(servers, topics.transactions, [Message(b"{broken", key=b"c1"), Message(b"\xff\xfe")])
    await produce_json(servers, topics.transactions, txs[20:], key=lambda tx: tx["card_id"])
    flow = fraud_detection.build_kafka(
        servers, bounded=True, topics=(topics.transactions, topics.rules, topics.alerts)
    )
    await flow.run()  # the job goes on past them

    dead = await read_topic(servers, topics.dead_letters, at_least=3)
    by_value = {record.value: dict(record.headers) for record in dead}
    assert set(by_value) == {b"not a rule", b"{broken", b"\xff\xfe"}
    assert by_value[b"not a rule"]["actorflow.source.topic"] == topics.rules.encode()
    assert by_value[b"{broken"]["actorflow.source.topic"] == topics.transactions.encode()
    assert "actorflow.error" in by_value[b"\xff\xfe"]
    # Every valid transaction was judged: the rule from the topic fires on each one over 5.00.
    large = {
        a["tx_id"] for a in values_of(await read_topic(servers, topics.alerts)) if a["rule"] == "large"
    }
    assert large == {tx["tx_id"] for tx in txs if tx["amount"] > 5.0}


async def _members_partitions(servers: str, group: str) -> list[int]:
    """How many partitions each member of ``group`` has, once the group is stable ([] before)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        described = await admin.describe_consumer_groups([group])
    except GroupCoordinatorNotAvailableError:
        return []  # the group does not exist yet
    finally:
        await admin.close()
    counts = []
    for response in described:
        for entry in response.to_object().get("groups", []):
            if entry.get("state") != "Stable":
                return []
            for member in entry.get("members", []):
                assignment = ConsumerProtocolMemberAssignment.decode(member["member_assignment"])
                counts.append(sum(len(partitions) for _, partitions in assignment.assignment))
    return counts


@pytest.mark.asyncio(loop_factories=["uvloop"])  # the test drives processes: one loop is enough
@pytest.mark.timeout(180)
async def test_the_main_example_on_kafka_runs_in_two_workers_that_share_the_partitions(
    kafka_broker: KafkaEndpoint, example_topics: kafka_producer.Topics, tmp_path: Path
) -> None:
    """``actorflow run examples/fraud_detection.py --workers 2``: the two workers join one group and
    each runs the tasks of some of the transactions topic's partitions (every task reads the rules
    topic whole); the alerts are the file's: the small-then-large ones, which need no watermark,
    all of them, the others as far as event time went; none twice."""
    servers, topics = kafka_broker.bootstrap_servers, example_topics
    await kafka_producer.create_topics(servers, topics)
    group = f"fraud-{uuid.uuid4().hex[:8]}"
    # Before the workers start: a failure here must not leave them running (their supervisor
    # restarts them, and the test's event loop would wait for it when it closes).
    expected = _file_mode_alerts()
    wanted = {line for line in expected if " small-then-large " in line}
    assert wanted
    log = (tmp_path / "workers.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "actorflow", "run", "--workers", "2", "--log-level", "info",
        "examples/fraud_detection.py",
        "--topics", f"{topics.transactions},{topics.rules},{topics.alerts}", "--group", group,
        cwd=ROOT, stdout=log, stderr=log,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": servers, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120

        def alive() -> None:
            assert process.returncode is None, (tmp_path / "workers.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "workers.log").read_text()[-3000:]

        # Both workers in the group, with two partitions each, before any input arrives.
        while sorted(await _members_partitions(servers, group)) != [2, 2]:
            alive()
            await asyncio.sleep(0.2)
        await kafka_producer.produce(servers, topics=topics)  # the rules, then the transactions
        while True:
            described = {
                fraud_detection.describe(alert)
                for alert in values_of(await read_topic(servers, topics.alerts))
            }
            if wanted <= described:
                break
            alive()
            await asyncio.sleep(0.5)
        assert sorted(await _members_partitions(servers, group)) == [2, 2]  # nobody took over
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 60) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        log.close()
    alerts = sorted(
        fraud_detection.describe(alert) for alert in values_of(await read_topic(servers, topics.alerts))
    )
    assert len(alerts) == len(set(alerts)), "an alert was written twice"
    assert set(alerts) <= set(expected)
