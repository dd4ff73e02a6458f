"""Reference implementation of the four queries: simple and obviously correct, not fast.

It reads the input with the standard ``json`` module (independent of ``orjson``),
keeps the whole input in memory and follows ``shared/BENCHMARK.md`` line by line.
Tests check the baseline against it, and ``report`` checks every engine against it.

>>> txs = [
...     {"tx_id": 0, "card_id": "c1", "merchant_id": "m0001", "amount": 0.5, "ts": 1_000},
...     {"tx_id": 1, "card_id": "c1", "merchant_id": "m0002", "amount": 900.0, "ts": 2_000},
... ]
>>> q1(txs)
[{'tx_id': 1, 'card_id': 'c1', 'amount': 900.0}]
>>> q3(txs)
[{'card_id': 'c1', 'small_tx_id': 0, 'large_tx_id': 1}]
>>> q2(txs)
([{'card_id': 'c1', 'window_start': 0, 'window_end': 10000, 'count': 2, 'sum_cents': 90050}], 0)
>>> q4(txs)
([{'card_id': 'c1', 'small_tx_id': 0, 'large_tx_id': 1}], 0)
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["q1", "q2", "q3", "q4", "read", "run", "watermarks_before"]

Record = Mapping[str, Any]

BOUND_MS = 2_000
WINDOW_MS = 10_000
FRAUD_WINDOW_MS = 60_000


def read(path: str) -> list[dict[str, Any]]:
    """Read a JSON-lines file into a list of dicts (blank lines are skipped)."""
    with open(path, encoding="utf-8") as src:
        return [json.loads(line) for line in src if line.strip()]


def watermarks_before(txs: Iterable[Record]) -> list[float]:
    """Return ``W_{i-1}`` for every record *i*: ``max(ts_0 .. ts_{i-1}) - 2000``, ``-inf`` first."""
    result: list[float] = []
    max_ts = -math.inf
    for tx in txs:
        result.append(max_ts - BOUND_MS)
        max_ts = max(max_ts, tx["ts"])
    return result


def q1(txs: Iterable[Record]) -> list[dict[str, Any]]:
    """Q1: ``{"tx_id", "card_id", "amount"}`` of every transaction with ``amount > 100.00``."""
    return [
        {"tx_id": tx["tx_id"], "card_id": tx["card_id"], "amount": tx["amount"]}
        for tx in txs
        if tx["amount"] > 100.0
    ]


def q2(txs: Sequence[Record]) -> tuple[list[dict[str, Any]], int]:
    """Q2: per-card tumbling 10 s windows; return ``(window records, late count)``.

    A record is late when its window ``[start, end)`` has fired already, i.e. when
    ``end - 1 <= W_{i-1}``. The watermark never goes back, so a window that has fired
    stays fired and every later record for it is late. Hence each emitted window holds
    exactly the non-late records of its (card, start), whenever it fires (at the latest
    at the end of input, when the watermark is +inf).
    """
    windows: dict[tuple[str, int], list[int]] = {}
    late = 0
    for tx, watermark in zip(txs, watermarks_before(txs), strict=True):
        start = tx["ts"] - tx["ts"] % WINDOW_MS
        end = start + WINDOW_MS
        if end - 1 <= watermark:
            late += 1
            continue
        count_and_sum = windows.setdefault((tx["card_id"], start), [0, 0])
        count_and_sum[0] += 1
        count_and_sum[1] += round(tx["amount"] * 100)
    records = [
        {
            "card_id": card,
            "window_start": start,
            "window_end": start + WINDOW_MS,
            "count": count,
            "sum_cents": cents,
        }
        for (card, start), (count, cents) in windows.items()
    ]
    return records, late


def q3(txs: Iterable[Record]) -> list[dict[str, Any]]:
    """Q3: alert on a tx below 1.00 directly followed (per card) by one above 500.00.

    A literal simulation: per card, the flag holds the small tx that armed it; the
    event-time timers ``(A.ts + 60000, card)`` live in a sorted list and are fired from
    its front after each record, while the watermark has reached them.
    """
    flags: dict[str, Record] = {}
    timers: list[tuple[int, str]] = []
    alerts: list[dict[str, Any]] = []
    max_ts = -math.inf
    for tx in txs:
        card = tx["card_id"]
        small = flags.pop(card, None)  # the next tx of the card always disarms the flag
        if small is not None and tx["amount"] > 500.0 and 0 <= tx["ts"] - small["ts"] <= FRAUD_WINDOW_MS:
            alerts.append({"card_id": card, "small_tx_id": small["tx_id"], "large_tx_id": tx["tx_id"]})
        if tx["amount"] < 1.0:
            flags[card] = tx
            bisect.insort(timers, (tx["ts"] + FRAUD_WINDOW_MS, card))
        max_ts = max(max_ts, tx["ts"])
        watermark = max_ts - BOUND_MS
        while timers and timers[0][0] <= watermark:
            when, timer_card = timers.pop(0)
            armed = flags.get(timer_card)
            if armed is not None and armed["ts"] + FRAUD_WINDOW_MS <= when:
                del flags[timer_card]
    return alerts


def q4(txs: Sequence[Record]) -> tuple[list[dict[str, Any]], int]:
    """Q4: the fraud pattern in event-time order (CEP); return ``(matches, late count)``.

    A literal simulation of the watermark. A record with ``ts <= W_{i-1}`` is late: counted and
    dropped. The others wait in ``waiting``, sorted by ``(ts, arrival index)``, until the watermark
    reaches their ``ts`` (after their own record or a later one, or at the end of input, when it is
    +inf); they leave it in that order, which is every card's event-time order, equal ``ts`` in
    arrival order. Each card's events go through a two-stage automaton: ``partial`` holds the A
    of the card's partial match (a tx below 1.00 waiting for the card's next event). That next
    event B ends it in every case (strict contiguity): a match if ``B.amount > 500.00`` and
    ``B.ts - A.ts < 60000``; none if ``B.ts - A.ts >= 60000`` (the partial match has timed out)
    or B is not large. After a match, matching resumes after B; otherwise B may begin a partial
    match itself. (A timeout reached by the watermark alone, with no next event yet, removes
    nothing that could still match: the next event's own check comes to the same.)

    Out of order, the small tx 1 comes before the large tx 0 in event time, and tx 2 is late
    (``2500 <= W_1 = 5000 - 2000``):

    >>> txs = [
    ...     {"tx_id": 0, "card_id": "c1", "merchant_id": "m0001", "amount": 900.0, "ts": 5_000},
    ...     {"tx_id": 1, "card_id": "c1", "merchant_id": "m0002", "amount": 0.5, "ts": 4_000},
    ...     {"tx_id": 2, "card_id": "c1", "merchant_id": "m0003", "amount": 12.0, "ts": 2_500},
    ... ]
    >>> q4(txs)
    ([{'card_id': 'c1', 'small_tx_id': 1, 'large_tx_id': 0}], 1)
    >>> q3(txs)  # arrival order instead: no alert
    []
    """
    waiting: list[tuple[int, int, Record]] = []
    partial: dict[str, Record] = {}
    matches: list[dict[str, Any]] = []
    late = 0

    def match_next(tx: Record) -> None:
        card = tx["card_id"]
        small = partial.pop(card, None)  # the card's next event ends its partial match
        if small is not None and tx["amount"] > 500.0 and tx["ts"] - small["ts"] < FRAUD_WINDOW_MS:
            matches.append({"card_id": card, "small_tx_id": small["tx_id"], "large_tx_id": tx["tx_id"]})
            return  # matching resumes after B
        if tx["amount"] < 1.0:
            partial[card] = tx

    def release(watermark: float) -> None:
        while waiting and waiting[0][0] <= watermark:
            match_next(waiting.pop(0)[2])

    max_ts = -math.inf
    for index, (tx, watermark) in enumerate(zip(txs, watermarks_before(txs), strict=True)):
        if tx["ts"] <= watermark:
            late += 1
        else:
            bisect.insort(waiting, (tx["ts"], index, tx))  # index is unique: tx is never compared
        max_ts = max(max_ts, tx["ts"])
        release(max_ts - BOUND_MS)
    release(math.inf)
    return matches, late


def run(query: str, input_path: str, output_path: str, parallelism: int = 1) -> int:
    """Engine contract: run ``query`` over ``input_path``, write JSON lines, return events.

    ``parallelism`` is ignored. Raises ``ValueError`` for an unknown query.
    """
    txs = read(input_path)
    lines: list[dict[str, Any]]
    if query == "q1":
        lines = q1(txs)
    elif query == "q2":
        windows, late = q2(txs)
        lines = [*windows, {"late": late}]
    elif query == "q3":
        lines = q3(txs)
    elif query == "q4":
        matches, late = q4(txs)
        lines = [*matches, {"late": late}]
    else:
        raise ValueError(f"unknown query {query!r}; expected q1, q2, q3 or q4")
    with open(output_path, "w", encoding="utf-8") as out:
        out.writelines(json.dumps(line) + "\n" for line in lines)
    return len(txs)
