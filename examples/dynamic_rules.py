"""Fraud rules that change while the flow runs, sent to every instance through a broadcast stream.

A rule is a JSON object with an ``id``, a ``kind`` and the event time ``ts`` from which it applies;
a later rule with the same ``id`` replaces it from its own ``ts`` on, and ``"remove": true`` ends it:

- ``{"id": "large", "kind": "amount_over", "limit": 2000.0, "ts": 0}``: a transaction over ``limit``;
- ``{"id": "burst", "kind": "velocity", "count": 15, "window_ms": 50, "ts": 0}``: more than
  ``count`` transactions of one card within ``window_ms`` (ending at the transaction, inclusive).

Rules reach every instance of the keyed rule engine (broadcast state); transactions are keyed by
card. Each transaction is judged by the rules in force at *its* event time, so the alerts are the same
however the two streams interleave: the engine holds a card's transactions in keyed state until the
watermark (the minimum over transactions and rules) passes them, so every rule change up to then has
arrived. A rule the engine does not understand goes to the ``rejected`` side output, not into force.

With Kafka, the rules come from a rules topic and change whenever someone publishes one; here they
come from ``examples/data/rules.jsonl``, which tightens the amount limit and ends the velocity rule
part-way through the transactions. Run it::

    actorflow run examples/dynamic_rules.py
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from actorflow import (
    BroadcastContext,
    Collector,
    Flow,
    KeyedBroadcastProcessFunction,
    ListState,
    ListStateDescriptor,
    MapStateDescriptor,
    OutputTag,
    RuntimeContext,
    WatermarkStrategy,
)

DATA = Path(__file__).parent / "data"
DEFAULT_TRANSACTIONS = DATA / "transactions.jsonl"
DEFAULT_RULES = DATA / "rules.jsonl"

#: ``{rule id: [(ts, rule or None for removed), ...]}`` in ts order, on every instance.
RULES = MapStateDescriptor("rules")
#: Rules the engine cannot apply: ``(rule, reason)``.
REJECTED: OutputTag[tuple[dict[str, Any], str]] = OutputTag("rejected")
#: The longest velocity window a rule may ask for: how far back a card's history is kept.
MAX_WINDOW_MS = 60_000


def rule_problem(rule: Any) -> str | None:
    """Why ``rule`` cannot be applied, or None if it can.

    >>> rule_problem({"id": "x", "kind": "amount_over", "limit": 10, "ts": 0}) is None
    True
    >>> rule_problem({"id": "x", "kind": "teleport", "ts": 0})
    "unknown kind 'teleport'"
    >>> rule_problem(["x"])
    'a rule is a JSON object'
    """
    if not isinstance(rule, dict):
        return "a rule is a JSON object"
    if not isinstance(rule.get("id"), str) or not isinstance(rule.get("ts"), int):
        return "a rule needs a string id and an integer ts"
    if rule.get("remove"):
        return None
    kind = rule.get("kind")
    if kind == "amount_over":
        return None if isinstance(rule.get("limit"), int | float) else "amount_over needs a limit"
    if kind == "velocity":
        count, window = rule.get("count"), rule.get("window_ms")
        if not isinstance(count, int) or not isinstance(window, int) or not 0 < window <= MAX_WINDOW_MS:
            return f"velocity needs an integer count and 0 < window_ms <= {MAX_WINDOW_MS}"
        return None
    return f"unknown kind {kind!r}"


def rules_at(
    versions: Mapping[str, list[tuple[int, dict[str, Any] | None]]], ts: int
) -> list[dict[str, Any]]:
    """The rules in force at event time ``ts``: each id's last version at or before ``ts``."""
    active = []
    for history in versions.values():
        current = None
        for since, rule in history:
            if since > ts:
                break
            current = rule
        if current is not None:
            active.append(current)
    return active


def judge(tx: dict[str, Any], rules: list[dict[str, Any]], recent: list[int]) -> list[dict[str, Any]]:
    """The alerts for ``tx`` under ``rules``; ``recent`` holds the card's earlier timestamps."""
    alerts = []
    for rule in rules:
        if rule["kind"] == "amount_over":
            fired = tx["amount"] > rule["limit"]
        else:
            since = tx["ts"] - rule["window_ms"]
            fired = 1 + sum(1 for ts in recent if ts > since) > rule["count"]
        if fired:
            alerts.append(
                {"rule": rule["id"], "card_id": tx["card_id"], "tx_id": tx["tx_id"], "ts": tx["ts"]}
            )
    return alerts


class RuleEngine(KeyedBroadcastProcessFunction[dict[str, Any], dict[str, Any], dict[str, Any]]):
    """Per card: hold transactions until the watermark passes them, then judge them in ts order."""

    def open(self, ctx: RuntimeContext) -> None:
        self.index = ctx.index
        self.pending: ListState[dict[str, Any]] = ctx.get_list_state(ListStateDescriptor("pending"))
        self.recent: ListState[int] = ctx.get_list_state(ListStateDescriptor("recent"))

    def process_broadcast_element(
        self, rule: dict[str, Any], ctx: BroadcastContext, out: Collector
    ) -> None:
        problem = rule_problem(rule)
        if problem is not None:
            if self.index == 0:  # every instance sees the rule: one of them reports it
                ctx.output(REJECTED, (rule, problem))
            return
        history = ctx.get_broadcast_state(RULES).setdefault(rule["id"], [])
        history.append((rule["ts"], None if rule.get("remove") else rule))
        history.sort(key=lambda version: version[0])

    def process_element(self, tx: dict[str, Any], ctx: BroadcastContext, out: Collector) -> None:
        self.pending.add(tx)
        ctx.timer_service().register_event_time_timer(tx["ts"])

    def on_timer(self, timestamp: int, ctx: BroadcastContext, out: Collector) -> None:
        pending = self.pending.get()
        due = sorted(
            (tx for tx in pending if tx["ts"] <= timestamp), key=lambda tx: (tx["ts"], tx["tx_id"])
        )
        self.pending.update([tx for tx in pending if tx["ts"] > timestamp])
        versions = ctx.get_broadcast_state(RULES)
        recent = self.recent.get()
        for tx in due:
            for alert in judge(tx, rules_at(versions, tx["ts"]), recent):
                out.collect(alert)
            recent.append(tx["ts"])
        horizon = timestamp - MAX_WINDOW_MS
        self.recent.update([ts for ts in recent if ts > horizon])


def build(transactions: str | Path, rules: str | Path, *, parallelism: int = 1) -> Flow:
    """The rule engine over two JSON-lines files: prints alerts and rejected rules."""
    flow = Flow("dynamic-rules", parallelism=parallelism)
    by_ts = WatermarkStrategy.bounded_out_of_orderness(5_000, lambda tx: tx["ts"])
    rule_stream = flow.from_json_lines(
        rules, name="rules", watermarks=WatermarkStrategy.punctuated("ts", lag_ms=0)
    ).broadcast(RULES)
    alerts = (
        flow.from_json_lines(transactions, name="transactions", watermarks=by_ts)
        .key_by("card_id")
        .connect(rule_stream)
        .process(RuleEngine(), name="rule-engine")
    )
    alerts.map(lambda a: f"ALERT {a['rule']} card {a['card_id']} tx {a['tx_id']} at {a['ts']}").print()
    alerts.get_side_output(REJECTED).map(lambda r: f"REJECTED rule {r[0]['id']}: {r[1]}").print()
    return flow


flow = build(
    os.environ.get("RULES_TRANSACTIONS", DEFAULT_TRANSACTIONS), os.environ.get("RULES_INPUT", DEFAULT_RULES)
)

if __name__ == "__main__":
    flow.execute()
