"""Seeded, deterministic generator of card transactions (see ``shared/BENCHMARK.md``).

Every transaction is a dict ``{"tx_id", "card_id", "merchant_id", "amount", "ts"}``:

* ``tx_id`` counts up from 0 in generation order (= arrival order = line order).
* ``card_id`` is drawn from ``cards`` ids with a Zipf-like skew, so a few cards are
  very busy and most are quiet.
* ``amount`` has 2 decimals: mostly a log-normal between 1.00 and 500.00, a few
  percent below 1.00 and a few percent above 500.00. A small tx sometimes marks its
  card so that the card's next tx is a large one (the fraud pattern of Q3).
* ``ts`` is epoch milliseconds. A hidden clock advances ~1 ms per event; each event's
  timestamp lags that clock by a random delay (mostly a few ms, sometimes up to
  1.5 s, and ~2 % of the time 2-5 s), so the stream is out of order and some events
  are more than 2 s behind the newest one seen (late for Q2).

The same ``(events, seed, cards)`` always gives the same records and the same bytes.

>>> [tx["tx_id"] for tx in generate(3, seed=1)]
[0, 1, 2]
>>> list(generate(5, seed=7)) == list(generate(5, seed=7))
True
"""

from __future__ import annotations

import bisect
import itertools
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict

import orjson

__all__ = ["DEFAULT_CARDS", "START_TS", "Transaction", "generate", "write"]

DEFAULT_CARDS = 10_000
START_TS = 1_700_000_000_000
"""Event time (epoch ms) of the first generated event, before its delay."""

MERCHANTS = 5_000
ZIPF_EXPONENT = 1.0
"""Card popularity ~ 1 / rank**s: with 10,000 cards the busiest card has ~10 % of the events."""

SMALL_P = 0.03
"""Probability that an amount is below 1.00."""
LARGE_P = 0.02
"""Probability that an amount is above 500.00."""
FRAUD_FOLLOW_P = 0.35
"""Probability that a small tx makes its card's next tx a large one."""

LATE_P = 0.02
"""Probability that an event lags the clock by 2-5 s."""
STRAGGLER_P = 0.10
"""Probability that an event lags the clock by up to 1.5 s."""


class Transaction(TypedDict):
    """One input record."""

    tx_id: int
    card_id: str
    merchant_id: str
    amount: float
    ts: int


def _card_cum_weights(cards: int) -> list[float]:
    """Cumulative Zipf weights over card ranks 1..cards."""
    return list(itertools.accumulate(1.0 / (rank**ZIPF_EXPONENT) for rank in range(1, cards + 1)))


def _amount(rng: random.Random) -> float:
    """Draw one amount with 2 decimals."""
    u = rng.random()
    if u < SMALL_P:
        return round(0.01 + rng.random() * 0.98, 2)
    if u < SMALL_P + LARGE_P:
        return _large_amount(rng)
    return round(min(max(rng.lognormvariate(3.0, 1.0), 1.0), 500.0), 2)


def _large_amount(rng: random.Random) -> float:
    """Draw an amount above 500.00."""
    return round(500.01 + rng.random() * 2000.0, 2)


def _delay(rng: random.Random) -> int:
    """Draw how many ms an event's timestamp lags the generator's clock."""
    u = rng.random()
    if u < LATE_P:
        return 2_000 + int(rng.random() * 3_001)
    if u < LATE_P + STRAGGLER_P:
        return int(rng.random() * 1_501)
    return int(rng.random() * 21)


def generate(events: int, seed: int, cards: int = DEFAULT_CARDS) -> Iterator[Transaction]:
    """Yield ``events`` transactions, deterministically for a given ``seed`` and ``cards``.

    Raises ``ValueError`` if ``events`` is negative or ``cards`` is not positive.
    """
    if events < 0:
        raise ValueError(f"events must be >= 0, got {events}")
    if cards <= 0:
        raise ValueError(f"cards must be > 0, got {cards}")
    rng = random.Random(seed)
    # Rank -> card id, shuffled so the busy cards are not simply c000000, c000001, ...
    card_ids = [f"c{n:06d}" for n in range(cards)]
    rng.shuffle(card_ids)
    merchant_ids = [f"m{n:04d}" for n in range(MERCHANTS)]
    cum = _card_cum_weights(cards)
    total = cum[-1]
    last = cards - 1
    clock = 0.0
    primed: set[str] = set()  # cards whose next tx will be large (fraud pattern)
    for tx_id in range(events):
        clock += rng.expovariate(1.0)  # ~1 ms per event on average
        card = card_ids[min(bisect.bisect(cum, rng.random() * total), last)]
        if card in primed:
            primed.discard(card)
            amount = _large_amount(rng)
        else:
            amount = _amount(rng)
            if amount < 1.0 and rng.random() < FRAUD_FOLLOW_P:
                primed.add(card)
        yield {
            "tx_id": tx_id,
            "card_id": card,
            "merchant_id": merchant_ids[int(rng.random() * MERCHANTS)],
            "amount": amount,
            "ts": START_TS + int(clock) - _delay(rng),
        }


def write_input(workdir: Path, events: int, seed: int) -> Path:
    """Write a report's input, ``workdir/transactions.jsonl``, saying on stderr how long it took."""
    data = workdir / "transactions.jsonl"
    started = time.perf_counter()
    write(events, seed, str(data))
    print(
        f"generated {events:,} events (seed {seed}) in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    return data


def write(events: int, seed: int, output: str, cards: int = DEFAULT_CARDS) -> int:
    """Write ``generate(events, seed, cards)`` to ``output`` as JSON lines; return the count."""
    dumps = orjson.dumps
    opt = orjson.OPT_APPEND_NEWLINE
    count = 0
    with open(output, "wb") as out:
        for tx in generate(events, seed, cards):
            out.write(dumps(tx, option=opt))
            count += 1
    return count
