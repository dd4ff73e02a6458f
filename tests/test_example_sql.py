"""``examples/sql_analytics.sql`` with ``actorflow sql``: its three queries over the bundled
transactions and merchants, checked against plain loops (the file's disorder stays within the 5 s
bound)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

pytest.importorskip("sqlglot")

ROOT = Path(__file__).resolve().parent.parent


def fields(lines: list[str], prefix: str) -> list[list[str]]:
    """The values of the printed rows that start with ``prefix`` (``spend> +I[...]``)."""
    start = f"{prefix}> +I["
    return [
        line.removeprefix(start).removesuffix("]").split(", ") for line in lines if line.startswith(start)
    ]


def stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.000")


def test_the_sql_example_prints_the_windows_the_probes_and_the_top_merchants() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "actorflow", "sql", "examples/sql_analytics.sql"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    data = (ROOT / "examples/data/transactions.jsonl").read_bytes().splitlines()
    txs = [orjson.loads(line) for line in data]
    windows: dict[tuple[str, int], list[float]] = {}
    for tx in txs:
        windows.setdefault((tx["card_id"], tx["ts"] - tx["ts"] % 10_000 + 10_000), []).append(tx["amount"])
    spend = {
        (card, stamp(end), len(amounts)) for (card, end), amounts in windows.items() if sum(amounts) > 2000
    }
    assert {(card, end, int(n)) for card, end, n, _ in fields(lines, "spend")} == spend and spend
    probes = sorted(
        (small["tx_id"], large["tx_id"])
        for small in txs
        if small["amount"] < 1
        for large in txs
        if large["amount"] > 500
        and large["card_id"] == small["card_id"]
        and 0 <= large["ts"] - small["ts"] <= 60_000
    )
    found = sorted((int(small), int(large)) for _, small, large, _ in fields(lines, "probe"))
    assert found == probes and probes
    merchants = {
        m["merchant_id"]: m
        for m in map(orjson.loads, (ROOT / "examples/data/merchants.jsonl").read_bytes().splitlines())
    }
    spending: dict[int, dict[str, float]] = {}
    for tx in txs:
        per_merchant = spending.setdefault(tx["ts"] - tx["ts"] % 2_000 + 2_000, {})
        per_merchant[tx["merchant_id"]] = per_merchant.get(tx["merchant_id"], 0.0) + tx["amount"]
    top = set()
    for end, totals in spending.items():
        ranked = sorted(totals.items(), key=lambda item: -item[1])[:3]
        for place, (merchant, total) in enumerate(ranked, 1):
            name, category = merchants[merchant]["name"], merchants[merchant]["category"]
            top.add((stamp(end), place, name, category, round(total, 2)))
    found_top = {(end, int(place), name, category, float(total))
                 for end, place, name, category, total in fields(lines, "top")}  # fmt: skip
    assert found_top == top and len(top) == 3 * len(spending)
