"""``examples/cep_patterns.py``: its three patterns over the bundled transactions, checked against
plain loops over each card's transactions in event-time order (the file's disorder stays within
the 5 s bound, so no transaction is late)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from examples import cep_patterns

ROOT = Path(__file__).resolve().parent.parent
SMALL_PROBE, LARGE_PROBE, PROBE_MS = 1.00, 500.00, 60_000


def by_card() -> list[list[dict[str, Any]]]:
    txs = [orjson.loads(line) for line in cep_patterns.DEFAULT_INPUT.read_bytes().splitlines() if line]
    cards: dict[str, list[dict[str, Any]]] = {}
    for tx in sorted(txs, key=lambda tx: tx["ts"]):  # stable: equal times stay in file order
        cards.setdefault(tx["card_id"], []).append(tx)
    return list(cards.values())


def card_testing() -> list[str]:
    """A run of 2+ purchases under 5.00 directly followed by one over 200.00, within 10 min."""
    found = []
    for txs in by_card():
        run: list[dict[str, Any]] = []
        for tx in txs:
            if tx["amount"] > 200.00:
                probes = [p for p in run if tx["ts"] - p["ts"] < 10 * 60_000]
                if len(probes) >= 2:
                    found.append(cep_patterns.card_testing({"probes": probes, "large": [tx]}))
            run = [*run, tx] if tx["amount"] < 5.00 else []
    return found


def two_large() -> list[str]:
    """A purchase over 300.00, then one over 300.00 at another merchant within 5 min, nothing under
    5.00 between; after a match, the next begins after it."""
    found = []
    for txs in by_card():
        waiting: list[dict[str, Any]] = []
        for tx in txs:
            waiting = [w for w in waiting if tx["ts"] - w["ts"] < 5 * 60_000]
            if tx["amount"] < 5.00:
                waiting = []
                continue
            if tx["amount"] <= 300.00:
                continue
            others = [w for w in waiting if w["merchant_id"] != tx["merchant_id"]]
            if others:
                found.append(cep_patterns.two_large({"first": [others[0]], "second": [tx]}))
                waiting = []
            else:
                waiting.append(tx)
    return found


def probes() -> tuple[list[str], list[str]]:
    """Probes a large purchase confirmed within a minute (one line per large purchase), and those
    that timed out."""
    confirmed, unconfirmed = [], []
    for txs in by_card():
        waiting: list[dict[str, Any]] = []
        for tx in txs:
            expired = [w for w in waiting if tx["ts"] - w["ts"] >= PROBE_MS]
            unconfirmed += [cep_patterns.unconfirmed({"small": [w]}, 0) for w in expired]
            waiting = [w for w in waiting if w not in expired]
            if tx["amount"] > LARGE_PROBE and waiting:
                confirmed.append(f"PROBE CONFIRMED card {tx['card_id']}")
                waiting = []
            elif tx["amount"] < SMALL_PROBE:
                waiting.append(tx)
        unconfirmed += [cep_patterns.unconfirmed({"small": [w]}, 0) for w in waiting]  # input ended
    return confirmed, unconfirmed


def test_the_three_patterns_find_what_plain_loops_find() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "actorflow", "run", "examples/cep_patterns.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    confirmed, unconfirmed = probes()
    expected = [*card_testing(), *two_large(), *confirmed, *unconfirmed]
    assert all(expected_part for expected_part in (card_testing(), two_large(), confirmed, unconfirmed))
    assert sorted(lines) == sorted(expected)
