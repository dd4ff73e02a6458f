"""Fraud detection: a card's tiny transaction directly followed by a large one within a minute.

Fraudsters test a stolen card with a purchase under 1.00 and, if it goes through, spend big. Per card,
a transaction under 1.00 arms a flag for 60 s of event time; the card's next transaction disarms it,
and raises an alert if it is over 500.00 and within the minute. An event-time timer clears flags
that nothing followed, so state stays bounded however many cards there are.

Run it (reads examples/data/transactions.jsonl, or the file named by FRAUD_INPUT)::

    actorflow run examples/fraud_detection.py
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from actorflow import (
    Collector,
    Context,
    Flow,
    KeyedProcessFunction,
    RuntimeContext,
    ValueStateDescriptor,
    WatermarkStrategy,
)

SMALL = 1.00
LARGE = 500.00
SPAN_MS = 60_000

DEFAULT_INPUT = Path(__file__).parent / "data" / "transactions.jsonl"


class SmallThenLarge(KeyedProcessFunction[dict[str, Any], dict[str, Any]]):
    """Per card: alert when a transaction under SMALL is followed by one over LARGE."""

    def open(self, ctx: RuntimeContext) -> None:
        # The small transaction that armed this card's flag, or None.
        self.armed = ctx.get_state(ValueStateDescriptor("armed"))

    def process_element(self, tx: dict[str, Any], ctx: Context, out: Collector) -> None:
        armed = self.armed.value()
        if armed is not None:
            if tx["amount"] > LARGE and 0 <= tx["ts"] - armed["ts"] <= SPAN_MS:
                out.collect(
                    {
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


def describe(alert: dict[str, Any]) -> str:
    return (
        f"ALERT card {alert['card_id']}: {alert['small_amount']:.2f} (tx {alert['small_tx_id']}) "
        f"then {alert['large_amount']:.2f} (tx {alert['large_tx_id']}), "
        f"{alert['seconds_apart']:.1f} s apart"
    )


def build(path: str | Path) -> Flow:
    """The fraud-detection flow over a JSON-lines file of transactions."""
    flow = Flow("fraud-detection")
    (
        flow.from_json_lines(
            path,
            name="transactions",
            # Transactions arrive up to a few seconds out of order.
            watermarks=WatermarkStrategy.bounded_out_of_orderness(5_000, lambda tx: tx["ts"]),
        )
        .key_by(lambda tx: tx["card_id"])
        .process(SmallThenLarge(), name="small-then-large")
        .map(describe, name="describe")
        .print()
    )
    return flow


flow = build(os.environ.get("FRAUD_INPUT", DEFAULT_INPUT))

if __name__ == "__main__":
    flow.execute()
