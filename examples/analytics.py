"""Real-time analytics: per-card spending in 10-second windows, served live over HTTP.

Transactions from the built-in generator are cut into tumbling 10 s event-time windows per card;
each window's count and total go to ``latest-spend``, which keeps every card's most recent complete
window in keyed state. Nothing has to be written anywhere to be read: while the flow runs,

- ``GET /state/latest-spend/<card>`` answers with that card's last complete window, and
- ``GET /state/spend-10s/<card>`` with its open window's running count and total,

next to the dashboard (``/``) and the Prometheus metrics (``/metrics``). Cards that spend over
2,000.00 in a window are printed.

Run it::

    python3 examples/analytics.py --port 8081          # then open http://127.0.0.1:8081/
    curl 127.0.0.1:8081/state/latest-spend/c00042
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from actorflow import (
    AggregateFunction,
    Collector,
    Context,
    Flow,
    KeyedProcessFunction,
    ProcessWindowFunction,
    RuntimeContext,
    TumblingEventTimeWindows,
    ValueState,
    ValueStateDescriptor,
    WatermarkStrategy,
    WindowContext,
)

try:
    from actorflow.web import HttpConfig, serve_http
except ImportError:  # pragma: no cover - the web extra is in the dev extra
    raise SystemExit(
        "examples/analytics.py needs aiohttp and prometheus-client: pip install 'actorflow[web]'"
    ) from None

try:
    from generator import TransactionGenerator  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - imported as examples.analytics
    from examples.generator import TransactionGenerator

WINDOW_MS = 10_000
BIG_SPENDER = 2_000.0


class Spend(AggregateFunction[dict[str, Any], tuple[int, float], dict[str, Any]]):
    """Count and total of a card's transactions in a window."""

    def create_accumulator(self) -> tuple[int, float]:
        return (0, 0.0)

    def add(self, value: dict[str, Any], accumulator: tuple[int, float]) -> tuple[int, float]:
        return (accumulator[0] + 1, accumulator[1] + value["amount"])

    def get_result(self, accumulator: tuple[int, float]) -> dict[str, Any]:
        return {"count": accumulator[0], "total": round(accumulator[1], 2)}

    def merge(self, a: tuple[int, float], b: tuple[int, float]) -> tuple[int, float]:
        return (a[0] + b[0], a[1] + b[1])


class StampWindow(ProcessWindowFunction[dict[str, Any], dict[str, Any], Any]):
    """The aggregate of a window, with its card and end."""

    def process(
        self, key: Any, context: WindowContext, elements: list[dict[str, Any]], out: Collector
    ) -> None:
        for result in elements:  # one: the aggregate's result
            out.collect({"card_id": key, "window_end": context.window.end, **result})


class Latest(KeyedProcessFunction[dict[str, Any], dict[str, Any]]):
    """Keeps each card's most recent complete window (queryable); passes big spenders on."""

    def open(self, ctx: RuntimeContext) -> None:
        self.latest: ValueState[dict[str, Any] | None] = ctx.get_state(ValueStateDescriptor("latest"))

    def process_element(self, window: dict[str, Any], ctx: Context, out: Collector) -> None:
        self.latest.update(window)
        if window["total"] > BIG_SPENDER:
            out.collect(window)


def build(*, limit: int | None = None, rate: float | None = 1_000.0, start_ts: int | None = None) -> Flow:
    """The flow; the generator's event time starts at ``start_ts`` (None: now)."""
    flow = Flow("analytics")
    (
        flow.from_source(
            TransactionGenerator(limit=limit, rate=rate, start_ts=start_ts),
            name="transactions",
            watermarks=WatermarkStrategy.bounded_out_of_orderness(100, "ts"),
        )
        .key_by("card_id")
        .window(TumblingEventTimeWindows.of(WINDOW_MS))
        .aggregate(Spend(), StampWindow(), name="spend-10s")
        .key_by("card_id")
        .process(Latest(), name="latest-spend")
        .map(lambda w: f"BIG SPENDER {w['card_id']}: {w['total']:.2f} in {w['count']} tx", name="describe")
        .print()
    )
    return flow


async def serve(flow: Flow, config: HttpConfig) -> None:
    """Run ``flow`` with its HTTP endpoint (dashboard, metrics, queryable state)."""
    async with serve_http(flow, config) as server:
        print(f"dashboard and state at {server.url}", flush=True)
        await flow.run()


def main() -> None:
    parser = argparse.ArgumentParser(description="per-card spending, served through queryable state")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--limit", type=int, default=None, help="stop after N transactions")
    parser.add_argument("--rate", type=float, default=1_000.0, help="transactions per second")
    args = parser.parse_args()
    asyncio.run(serve(build(limit=args.limit, rate=args.rate or None), HttpConfig(args.port)))


if __name__ == "__main__":
    main()
