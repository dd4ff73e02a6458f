"""The analytics example: windowed aggregates read through queryable state over HTTP."""

from __future__ import annotations

from typing import Any

import aiohttp

from actorflow.web import HttpConfig, serve_http
from examples import analytics, generator

COUNT = 4_000


def last_windows() -> dict[str, dict[str, Any]]:
    """Each card's last window (count, total), computed plainly from the generator."""
    windows: dict[tuple[str, int], list[float]] = {}
    for tx in generator.transactions(count=COUNT):
        end = (tx["ts"] // analytics.WINDOW_MS + 1) * analytics.WINDOW_MS
        windows.setdefault((tx["card_id"], end), []).append(tx["amount"])
    last: dict[str, dict[str, Any]] = {}
    for (card, end), amounts in sorted(windows.items()):
        total = 0.0
        for amount in amounts:
            total += amount
        last[card] = {"card_id": card, "window_end": end, "count": len(amounts), "total": round(total, 2)}
    return last


async def test_every_cards_last_window_is_queryable(capsys: Any) -> None:
    flow = analytics.build(limit=COUNT, rate=None, start_ts=generator.START_TS)
    expected = last_windows()
    async with serve_http(flow, HttpConfig(port=0)) as server, aiohttp.ClientSession() as session:
        await flow.run()
        for card in sorted(expected)[:25]:
            async with session.get(f"{server.url}state/latest-spend/{card}") as response:
                assert response.status == 200, await response.text()
                body = await response.json()
            assert body["state"]["latest"] == expected[card]
        async with session.get(f"{server.url}state/latest-spend/no-such-card") as response:
            assert response.status == 404
    printed = capsys.readouterr().out.splitlines()
    assert printed and all(line.startswith("BIG SPENDER ") for line in printed)
