"""The web service example: payments posted over HTTP, alerts streamed back as server-sent events."""

from __future__ import annotations

import asyncio

import orjson
from aiohttp.test_utils import TestClient, TestServer

from examples.web_service import FraudService


async def next_event(stream: asyncio.StreamReader | object) -> bytes:
    """The next ``data:`` payload of a server-sent event stream."""
    async with asyncio.timeout(10):  # a guard against a hang, not a synchronisation
        while True:
            line = await stream.readline()  # type: ignore[attr-defined]
            if line.startswith(b"data: "):
                return bytes(line[len(b"data: ") :].strip())


async def test_posted_payments_come_back_as_alerts() -> None:
    service = FraudService()
    async with TestClient(TestServer(service.app())) as client:
        alerts = await client.get("/alerts")
        assert (await alerts.content.readline()) == b": subscribed\n"  # registered: now post
        small = {"tx_id": 1, "card_id": "c1", "amount": 0.5, "ts": 1_000}
        ordinary = {"tx_id": 2, "card_id": "c2", "amount": 900.0, "ts": 1_500}
        large = {"tx_id": 3, "card_id": "c1", "amount": 900.0, "ts": 2_000}
        response = await client.post("/transactions", data=orjson.dumps([small, ordinary]))
        assert response.status == 202 and (await response.json()) == {"accepted": 2}
        assert (await client.post("/transactions", data=orjson.dumps(large))).status == 202
        alert = orjson.loads(await next_event(alerts.content))
        assert (alert["card_id"], alert["small_tx_id"], alert["large_tx_id"]) == ("c1", 1, 3)
        assert alert["text"].startswith("ALERT small-then-large card c1")
        alerts.close()


async def test_bad_payments_are_refused_with_a_reason() -> None:
    service = FraudService()
    async with TestClient(TestServer(service.app())) as client:
        response = await client.post("/transactions", data=b"{nope")
        assert response.status == 400 and "not JSON" in await response.text()
        response = await client.post("/transactions", data=orjson.dumps({"tx_id": 1}))
        assert response.status == 400 and "needs tx_id, card_id, amount and ts" in await response.text()
