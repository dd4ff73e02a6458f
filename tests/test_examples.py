"""The examples run as the README says and find what they should."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from examples import dynamic_rules, embedded, fraud_detection, kafka_fraud_detection, kafka_producer
from tests.kafka_fixtures import KafkaEndpoint, TopicFactory

ROOT = Path(__file__).resolve().parent.parent


def _run_example(name: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "actorflow", "run", f"examples/{name}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.splitlines()


def test_fraud_detection_prints_alerts() -> None:
    alerts = _run_example("fraud_detection.py")
    assert alerts, "the bundled data has fraud patterns in it"
    assert all(line.startswith("ALERT card ") for line in alerts)


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
    assert sorted(alerts) == sorted(_run_example("fraud_detection.py"))


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
    expected = sorted(_run_example("fraud_detection.py"))
    assert sorted(fraud_detection.describe(alert) for alert in alerts) == expected
