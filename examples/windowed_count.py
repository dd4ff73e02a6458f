"""Transactions per card in 10-second tumbling event-time windows, built from a timer.

Each card keeps one (count, total) accumulator per open window in map state and registers an
event-time timer at the window's last millisecond. When the watermark passes it, the window is
emitted and its state dropped. Records for a window that already fired are late: they are counted
and reported, never dropped silently.

Run it (reads examples/data/transactions.jsonl, or the file named by WINDOWS_INPUT)::

    actorflow run examples/windowed_count.py
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
    MapStateDescriptor,
    RuntimeContext,
    WatermarkStrategy,
)

WINDOW_MS = 10_000
DEFAULT_INPUT = Path(__file__).parent / "data" / "transactions.jsonl"


class TumblingCount(KeyedProcessFunction[dict[str, Any], dict[str, Any]]):
    """Per card and 10 s window: how many transactions, and their total amount."""

    def open(self, ctx: RuntimeContext) -> None:
        self.windows = ctx.get_map_state(MapStateDescriptor("windows"))

    def process_element(self, tx: dict[str, Any], ctx: Context, out: Collector) -> None:
        start = tx["ts"] - tx["ts"] % WINDOW_MS
        end = start + WINDOW_MS
        timers = ctx.timer_service()
        if end - 1 <= timers.current_watermark():
            out.collect({"card_id": tx["card_id"], "late_tx_id": tx["tx_id"]})
            return
        count, cents = self.windows.get(start, (0, 0))
        if count == 0:
            timers.register_event_time_timer(end - 1)
        self.windows.put(start, (count + 1, cents + round(tx["amount"] * 100)))

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        start = timestamp + 1 - WINDOW_MS
        count, cents = self.windows.get(start)
        self.windows.remove(start)
        out.collect(
            {
                "card_id": ctx.current_key,
                "window_start": start,
                "window_end": start + WINDOW_MS,
                "count": count,
                "total": cents / 100,
            }
        )


def describe(result: dict[str, Any]) -> str:
    if "late_tx_id" in result:
        return f"late: tx {result['late_tx_id']} of card {result['card_id']}"
    return (
        f"card {result['card_id']} [{result['window_start']}, {result['window_end']}): "
        f"{result['count']} tx, {result['total']:.2f} total"
    )


def build(path: str | Path) -> Flow:
    """The windowed-count flow over a JSON-lines file of transactions."""
    flow = Flow("windowed-count")
    (
        flow.from_json_lines(
            path,
            name="transactions",
            watermarks=WatermarkStrategy.bounded_out_of_orderness(2_000, lambda tx: tx["ts"]),
        )
        .key_by(lambda tx: tx["card_id"])
        .process(TumblingCount(), name="windows")
        .filter(lambda r: "late_tx_id" in r or r["count"] >= 3, name="busy-or-late")
        .map(describe, name="describe")
        .print()
    )
    return flow


flow = build(os.environ.get("WINDOWS_INPUT", DEFAULT_INPUT))

if __name__ == "__main__":
    flow.execute()
