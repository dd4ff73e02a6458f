"""An async web service with a flow inside: payments are posted over HTTP, alerts stream back.

The service (aiohttp) and the flow share one event loop. ``POST /transactions`` takes a JSON
transaction (or a list of them) and hands it to the flow through a :class:`~actorflow.PushSource`:
when the flow falls behind, the push waits, so the HTTP request waits too (backpressure reaches the
client instead of filling memory). ``GET /alerts`` streams the fraud alerts the flow finds as
server-sent events (one ``data: {...}`` line per alert) to every connected client; a client that
stops reading holds the flow back once its queue of 1,000 alerts is full, rather than losing alerts.

Run it, then post and listen from another terminal::

    python3 examples/web_service.py --port 8080
    curl -N localhost:8080/alerts
    curl -d '{"tx_id": 1, "card_id": "c1", "amount": 0.5, "ts": 0}' localhost:8080/transactions
    curl -d '{"tx_id": 2, "card_id": "c1", "amount": 900, "ts": 1000}' localhost:8080/transactions
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson

from actorflow import Flow, PushSource, WatermarkStrategy

try:
    from aiohttp import web
except ImportError:  # pragma: no cover - the web extra is in the dev extra
    raise SystemExit("examples/web_service.py needs aiohttp: pip install 'actorflow[web]'") from None

try:
    from fraud_detection import SmallThenLarge, describe  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - imported as examples.web_service
    from examples.fraud_detection import SmallThenLarge, describe

__all__ = ["FraudService", "main"]


class FraudService:
    """The flow, the push source feeding it, and the subscribers to its alerts."""

    def __init__(self) -> None:
        self.transactions = PushSource(capacity=1_000)
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self.flow = Flow("fraud-service")
        (
            self.flow.from_source(
                self.transactions,
                name="payments",
                # Payments arrive in real time: a little disorder, and quiet spells are not stalls.
                watermarks=WatermarkStrategy.bounded_out_of_orderness(2_000, "ts").with_idleness(5_000),
            )
            .key_by("card_id")
            .process(SmallThenLarge(), name="small-then-large")
            .sink_to_callback(self._publish)
        )

    async def _publish(self, alert: dict[str, Any]) -> None:
        for queue in self._subscribers:
            await queue.put(alert)

    # -- HTTP ----------------------------------------------------------------------------------

    async def post_transactions(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as error:
            raise web.HTTPBadRequest(text=f"not JSON: {error}") from None
        batch = body if isinstance(body, list) else [body]
        for tx in batch:
            if not isinstance(tx, dict) or not {"tx_id", "card_id", "amount", "ts"} <= tx.keys():
                raise web.HTTPBadRequest(text="a transaction needs tx_id, card_id, amount and ts")
        await self.transactions.send_all(batch)
        return web.json_response({"accepted": len(batch)}, status=202)

    async def stream_alerts(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1_000)
        self._subscribers.add(queue)
        try:
            await response.write(b": subscribed\n\n")
            while True:
                alert = await queue.get()
                await response.write(b"data: " + orjson.dumps({**alert, "text": describe(alert)}) + b"\n\n")
        finally:
            self._subscribers.discard(queue)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/transactions", self.post_transactions)
        app.router.add_get("/alerts", self.stream_alerts)
        app.cleanup_ctx.append(self._run_flow)
        return app

    async def _run_flow(self, app: web.Application) -> AsyncIterator[None]:
        job = asyncio.create_task(self.flow.run())
        yield
        self.transactions.close()  # drain what was posted, then the flow ends
        with contextlib.suppress(asyncio.CancelledError):
            await job


def main() -> None:
    parser = argparse.ArgumentParser(description="fraud alerts as a web service")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    web.run_app(FraudService().app(), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
