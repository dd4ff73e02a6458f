"""Fraud detection on card transactions: the main example.

Four rules, per card:

- **small then large**: a purchase under 1.00 (a fraudster testing a stolen card) directly followed,
  within a minute of event time, by one over 500.00 (keyed state and an event-time timer; or, with
  ``--cep``, the same rule as a pattern, which takes each card's transactions in event-time order
  rather than as they arrive: see ``small_then_large_pattern``);
- **velocity**: more than 6 transactions within 2 seconds (the card's recent timestamps in keyed
  state), one alert per burst;
- **amount anomaly**: a purchase over 8 times the card's average so far, once it has 5 purchases;
- **rules changed at run time**: limits sent on a rules stream reach every instance through
  broadcast state and judge each transaction by the rules in force at its event time (see
  ``examples/dynamic_rules.py``).

Where the transactions come from:

- by default a built-in generator (``examples/generator.py``): rate-limited, unbounded until
  ``--limit N`` transactions, event time from now (``--start-ts MS`` for another start); rules from
  ``examples/data/live_rules.jsonl``, moved to the generator's start; alerts printed;
- ``FRAUD_INPUT=file.jsonl``: a JSON-lines file of transactions instead (``examples/data``);
- with ``KAFKA_BOOTSTRAP_SERVERS`` set: the ``transactions`` topic in, rules from the ``rules`` topic,
  alerts to the ``alerts`` topic (created if missing); records of either input that are not JSON go
  to ``transactions.dead``. ``examples/kafka_producer.py`` creates the topics and fills them, with
  the bundled transactions or (``--generate``) a live stream.

Run it::

    actorflow run examples/fraud_detection.py --limit 20000
    python3 examples/fraud_detection.py --limit 20000 --rate 0     # as fast as it goes
    python3 examples/fraud_detection.py --limit 20000 --cep        # small-then-large as a pattern
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from actorflow import (
    AfterMatchSkip,
    Collector,
    Context,
    DataStream,
    Flow,
    KeyedProcessFunction,
    KeyedStream,
    ListState,
    ListStateDescriptor,
    Pattern,
    RuntimeContext,
    ValueState,
    ValueStateDescriptor,
    WatermarkStrategy,
)

try:
    from dynamic_rules import REJECTED, RULES, RuleEngine  # type: ignore[import-not-found]
    from generator import TransactionGenerator, on_clock  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - imported as examples.fraud_detection
    from examples.dynamic_rules import REJECTED, RULES, RuleEngine
    from examples.generator import TransactionGenerator, on_clock

log = logging.getLogger("fraud_detection")

SMALL = 1.00
LARGE = 500.00
SPAN_MS = 60_000
BURST_COUNT = 6
BURST_MS = 2_000
ANOMALY_FACTOR = 8.0
ANOMALY_HISTORY = 5

DATA = Path(__file__).parent / "data"
DEFAULT_INPUT = DATA / "transactions.jsonl"
LIVE_RULES = DATA / "live_rules.jsonl"


class SmallThenLarge(KeyedProcessFunction[dict[str, Any], dict[str, Any]]):
    """Per card: alert when a transaction under SMALL is followed by one over LARGE."""

    def open(self, ctx: RuntimeContext) -> None:
        # The small transaction that armed this card's flag, or None.
        self.armed: ValueState[dict[str, Any] | None] = ctx.get_state(ValueStateDescriptor("armed"))

    def process_element(self, tx: dict[str, Any], ctx: Context, out: Collector) -> None:
        armed = self.armed.value()
        if armed is not None:
            if tx["amount"] > LARGE and 0 <= tx["ts"] - armed["ts"] <= SPAN_MS:
                out.collect(
                    {
                        "rule": "small-then-large",
                        "card_id": tx["card_id"],
                        "small_tx_id": armed["tx_id"],
                        "small_amount": armed["amount"],
                        "large_tx_id": tx["tx_id"],
                        "large_amount": tx["amount"],
                        "seconds_apart": (tx["ts"] - armed["ts"]) / 1000,
                    }
                )
            self.armed.clear()
        if tx["amount"] < SMALL:
            self.armed.update({"tx_id": tx["tx_id"], "amount": tx["amount"], "ts": tx["ts"]})
            ctx.timer_service().register_event_time_timer(tx["ts"] + SPAN_MS)

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        armed = self.armed.value()
        if armed is not None and armed["ts"] + SPAN_MS <= timestamp:
            self.armed.clear()


class Velocity(KeyedProcessFunction[dict[str, Any], dict[str, Any]]):
    """Per card: more than BURST_COUNT transactions within BURST_MS, one alert per burst."""

    def open(self, ctx: RuntimeContext) -> None:
        self.recent: ListState[int] = ctx.get_list_state(ListStateDescriptor("recent"))
        self.quiet_after: ValueState[int] = ctx.get_state(ValueStateDescriptor("quiet_after", default=0))

    def process_element(self, tx: dict[str, Any], ctx: Context, out: Collector) -> None:
        since = tx["ts"] - BURST_MS
        recent = [ts for ts in self.recent.get() if ts > since] + [tx["ts"]]
        self.recent.update(recent)
        if len(recent) > BURST_COUNT and tx["ts"] >= self.quiet_after.value():
            self.quiet_after.update(tx["ts"] + BURST_MS)
            out.collect(
                {"rule": "velocity", "card_id": tx["card_id"], "tx_id": tx["tx_id"], "count": len(recent)}
            )


class AmountAnomaly(KeyedProcessFunction[dict[str, Any], dict[str, Any]]):
    """Per card: a purchase over ANOMALY_FACTOR times the card's average so far."""

    def open(self, ctx: RuntimeContext) -> None:
        self.history: ValueState[tuple[int, float]] = ctx.get_state(
            ValueStateDescriptor("history", default=(0, 0.0))
        )

    def process_element(self, tx: dict[str, Any], ctx: Context, out: Collector) -> None:
        count, total = self.history.value()
        if count >= ANOMALY_HISTORY and tx["amount"] > ANOMALY_FACTOR * total / count:
            out.collect(
                {
                    "rule": "amount-anomaly",
                    "card_id": tx["card_id"],
                    "tx_id": tx["tx_id"],
                    "amount": tx["amount"],
                    "average": round(total / count, 2),
                }
            )
        self.history.update((count + 1, total + tx["amount"]))


def describe(alert: dict[str, Any]) -> str:
    """One line per alert, as the example prints it."""
    rule = alert.get("rule", "small-then-large")
    head = f"ALERT {rule} card {alert['card_id']}"
    if rule == "small-then-large":
        return (
            f"{head}: {alert['small_amount']:.2f} (tx {alert['small_tx_id']}) "
            f"then {alert['large_amount']:.2f} (tx {alert['large_tx_id']}), "
            f"{alert['seconds_apart']:.1f} s apart"
        )
    if rule == "velocity":
        return f"{head}: {alert['count']} transactions within {BURST_MS / 1000:.0f} s (tx {alert['tx_id']})"
    if rule == "amount-anomaly":
        return (
            f"{head}: {alert['amount']:.2f} against an average of {alert['average']:.2f} "
            f"(tx {alert['tx_id']})"
        )
    return f"{head}: rule {rule} (tx {alert['tx_id']})"


def small_then_large_pattern() -> Pattern[dict[str, Any]]:
    """The small-then-large rule as a pattern: a purchase under SMALL, the card's very next one
    over LARGE, at most SPAN_MS later (``within`` is exclusive)."""
    return (
        Pattern.begin("small").where(lambda tx: tx["amount"] < SMALL)
        .next("large").where(lambda tx: tx["amount"] > LARGE)
        .within(SPAN_MS + 1)
    )  # fmt: skip


def small_then_large_alert(match: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The alert of one small-then-large match, as :class:`SmallThenLarge` writes it."""
    small, large = match["small"][0], match["large"][0]
    return {
        "rule": "small-then-large",
        "card_id": large["card_id"],
        "small_tx_id": small["tx_id"],
        "small_amount": small["amount"],
        "large_tx_id": large["tx_id"],
        "large_amount": large["amount"],
        "seconds_apart": (large["ts"] - small["ts"]) / 1000,
    }


def detect(
    transactions: DataStream[dict[str, Any]], rules: DataStream[dict[str, Any]], *, cep: bool = False
) -> DataStream[dict[str, Any]]:
    """Every rule over ``transactions`` (event time set), rules from ``rules``: one alert stream.
    ``cep``: the small-then-large rule as a pattern (event-time order) instead of a process
    function (arrival order)."""
    cards: KeyedStream[dict[str, Any], Any] = transactions.key_by("card_id")
    engine = cards.connect(rules.broadcast(RULES)).process(RuleEngine(), name="rule-engine")
    engine.get_side_output(REJECTED).sink_to_callback(report_rejected, name="rejected-rules")
    if cep:
        small_then_large = (
            cards.pattern(small_then_large_pattern(), skip=AfterMatchSkip.skip_past_last_event())
            .select(small_then_large_alert, name="small-then-large")
        )  # fmt: skip
    else:
        small_then_large = cards.process(SmallThenLarge(), name="small-then-large")
    return small_then_large.union(
        cards.process(Velocity(), name="velocity"),
        cards.process(AmountAnomaly(), name="amount-anomaly"),
        engine,
    )


def report_rejected(rejected: tuple[dict[str, Any], str]) -> None:
    """A rule the engine cannot apply stays out of force: say so in the log, with the reason."""
    rule, problem = rejected
    log.warning("rule rejected: %s: %s", problem, rule)


def build(
    *,
    limit: int | None = None,
    rate: float | None = 1_000.0,
    path: str | Path | None = None,
    parallelism: int = 1,
    start_ts: int | None = None,
    cep: bool = False,
) -> Flow:
    """The example on embedded defaults: the generator (or the file ``path``), alerts printed.

    The generator's event time starts at ``start_ts`` (None: now), and the rules of
    ``LIVE_RULES`` move with it; the file's transactions and the rules file share one clock.
    """
    flow = Flow("fraud-detection", parallelism=parallelism)
    by_ts = WatermarkStrategy.bounded_out_of_orderness(5_000 if path else 100, "ts")
    by_rule_ts = WatermarkStrategy.punctuated("ts", lag_ms=0)
    if path is not None:
        transactions = flow.from_json_lines(path, name="transactions", watermarks=by_ts)
        rules = flow.from_json_lines(LIVE_RULES, name="rules", watermarks=by_rule_ts)
    else:
        generator = TransactionGenerator(limit=limit, rate=rate, start_ts=start_ts)
        transactions = flow.from_source(generator, name="transactions", watermarks=by_ts)
        # The rules file is on the bundled clock: move it to the generator's start. (Restored, the
        # generator keeps the start in its checkpoint, and the rules engine the rules in its own.)
        lines = LIVE_RULES.read_bytes().splitlines()
        moved = [on_clock(orjson.loads(line), generator.start_ts) for line in lines if line.strip()]
        rules = flow.from_iterable(moved, name="rules", watermarks=by_rule_ts)
    detect(transactions, rules, cep=cep).map(describe, name="describe").print()
    return flow


def build_kafka(
    bootstrap_servers: str,
    *,
    bounded: bool = False,
    parallelism: int = 1,
    topics: tuple[str, str, str] = ("transactions", "rules", "alerts"),
    group: str = "fraud-detection",
) -> Flow:
    """Topics ``transactions`` and ``rules`` in, ``alerts`` out (``topics`` renames them).

    Unbounded, the flow runs as partition tasks (``tasks=True``): each partition of
    ``transactions`` is a task with its cards' state, timers and event time, kept in changelog
    topics, and every task reads the whole ``rules`` topic as broadcast state; start it in as many
    workers as you like (``actorflow run examples/fraud_detection.py --workers 2``), here or on
    other machines with the same ``group``, and they share the partitions. Bounded (tests), it runs
    in one process.

    A record of either input that cannot be decoded goes, bytes unchanged, to
    ``<transactions>.dead``, with headers naming the error and the topic, partition and offset it
    came from; the job goes on. (Without that, one bad record would fail the job at every restart.)
    """
    transactions_topic, rules_topic, alerts_topic = topics
    dead_letters = f"{transactions_topic}.dead"
    from actorflow_kafka import DeadLetterTopic, KafkaSink, KafkaSource

    flow = Flow("fraud-detection", parallelism=parallelism)
    transactions = flow.from_source(
        KafkaSource(
            transactions_topic,
            bootstrap_servers=bootstrap_servers,
            group_id=group,
            dead_letters=DeadLetterTopic(dead_letters),
            bounded=bounded,
            tasks=not bounded,
            partitioned_by="card_id",  # the topic's records are keyed by card: no repartition
        ),
        name="transactions",
        watermarks=WatermarkStrategy.bounded_out_of_orderness(5_000, "ts").with_idleness(10_000),
    )
    rules = flow.from_source(
        KafkaSource(
            rules_topic,
            bootstrap_servers=bootstrap_servers,
            start="earliest",
            dead_letters=DeadLetterTopic(dead_letters),
            bounded=bounded,
        ),
        name="rules",
        watermarks=WatermarkStrategy.punctuated("ts", lag_ms=0).with_idleness(1_000),
    )
    detect(transactions, rules).sink(
        KafkaSink(alerts_topic, bootstrap_servers=bootstrap_servers, key="card_id", create_topics=True)
    )
    return flow


def flow(argv: Sequence[str] | None = None) -> Flow:
    """What ``actorflow run examples/fraud_detection.py [--limit N] [--rate R]`` runs."""
    parser = argparse.ArgumentParser(prog="fraud_detection", description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="stop after N transactions")
    parser.add_argument("--rate", type=float, default=1_000.0, help="transactions per second (0: no limit)")
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument(
        "--start-ts", type=int, default=None, help="first event time, epoch ms (default: now)"
    )
    parser.add_argument(
        "--topics", default="transactions,rules,alerts", help="Kafka mode: the three topics' names"
    )
    parser.add_argument("--group", default="fraud-detection", help="Kafka mode: the consumer group")
    parser.add_argument(
        "--cep", action="store_true", help="small-then-large as a pattern, in event-time order"
    )
    args = parser.parse_args([] if argv is None else argv)
    servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if servers:
        transactions, rules, alerts = args.topics.split(",")
        return build_kafka(
            servers, parallelism=args.parallelism, topics=(transactions, rules, alerts), group=args.group
        )
    return build(
        limit=args.limit,
        rate=args.rate or None,
        path=os.environ.get("FRAUD_INPUT"),
        parallelism=args.parallelism,
        start_ts=args.start_ts,
        cep=args.cep,
    )


if __name__ == "__main__":
    flow(sys.argv[1:]).execute()
