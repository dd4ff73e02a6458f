"""The examples run as the README says and find what they should."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from examples import (
    dynamic_rules,
    embedded,
    fraud_detection,
    generator,
    kafka_fraud_detection,
    kafka_producer,
)
from tests.kafka_fixtures import KafkaEndpoint, TopicFactory

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


def _file_mode_small_then_large() -> list[str]:
    """The main example over the bundled file, its small-then-large alerts only."""
    lines = _run_script("fraud_detection.py", env={"FRAUD_INPUT": str(fraud_detection.DEFAULT_INPUT)})
    return sorted(line for line in lines if line.startswith("ALERT small-then-large "))


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


async def test_kafka_example_writes_the_alerts_the_file_flow_prints(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    servers = kafka_broker.bootstrap_servers
    transactions, alerts_topic, dead = (
        await kafka_topic(partitions=4),
        await kafka_topic(),
        await kafka_topic(),
    )
    await kafka_producer.produce(servers, fraud_detection.DEFAULT_INPUT, topic=transactions)
    flow = kafka_fraud_detection.build(
        servers, bounded=True, transactions=transactions, alerts=alerts_topic, dead_letters=dead
    )
    await flow.run()

    consumer = AIOKafkaConsumer(alerts_topic, bootstrap_servers=servers, auto_offset_reset="earliest")
    await consumer.start()
    alerts: list[dict[str, Any]] = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=1000)
            if not batch:
                break
            alerts += [orjson.loads(r.value) for records in batch.values() for r in records]
    finally:
        await consumer.stop()
    assert sorted(fraud_detection.describe(alert) for alert in alerts) == _file_mode_small_then_large()


async def test_the_main_example_reads_and_writes_kafka_with_rules_from_a_topic(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    from tests.kafka_helpers import produce_json, read_topic, values_of

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
