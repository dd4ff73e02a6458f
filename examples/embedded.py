"""actorflow inside an async service: push records in, get results out, in one event loop.

A stand-in "payment service" pushes transactions into a :class:`PushSource` while the flow runs in a
task beside it; alerts come back through an async callback. ``send`` waits when the flow falls
behind, so the service is slowed down instead of buffering without bound.

Run it::

    python3 examples/embedded.py
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from actorflow import Flow, PushSource, WatermarkStrategy

try:  # the example's logic lives next to it
    from fraud_detection import SmallThenLarge, describe  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - imported as examples.embedded
    from examples.fraud_detection import SmallThenLarge, describe

DATA = Path(__file__).parent / "data" / "transactions.jsonl"


async def main() -> list[str]:
    alerts: list[str] = []

    async def on_alert(alert: dict[str, Any]) -> None:
        alerts.append(describe(alert))  # a real service would notify someone here

    transactions = PushSource(capacity=256)
    flow = Flow("embedded-fraud")
    (
        flow.from_source(
            transactions,
            name="payments",
            watermarks=WatermarkStrategy.bounded_out_of_orderness(5_000, lambda tx: tx["ts"]),
        )
        .key_by(lambda tx: tx["card_id"])
        .process(SmallThenLarge())
        .sink_to_callback(on_alert)
    )
    job = asyncio.create_task(flow.run())
    with DATA.open("rb") as lines:
        for line in lines:
            await transactions.send(orjson.loads(line))
    transactions.close()  # end of stream: the flow drains and finishes
    await job
    return alerts


if __name__ == "__main__":
    for alert in asyncio.run(main()):
        print(alert)
