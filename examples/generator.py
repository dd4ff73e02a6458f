"""A built-in source of card transactions, with fraud in it, for the examples and the demo daemon.

Seeded and deterministic: the same seed gives the same transactions, so a restored job regenerates
exactly what comes after its checkpoint. Event time is synthetic (``start_ts`` plus ``step_ms`` per
transaction, a little out of order); ``rate`` limits transactions per second of the flow's clock
(None: as fast as the flow takes them). Unbounded unless ``limit`` is given.

Mixed into ordinary traffic: a card's tiny purchase directly followed by a large one (the
small-then-large pattern), bursts of many transactions on one card within a second or two (velocity),
and purchases far above what a card usually spends (amount anomaly).

>>> from examples.generator import transactions
>>> [tx["tx_id"] for tx in transactions(seed=1, count=3)]
[0, 1, 2]
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

from actorflow import Source
from actorflow.operators.base import OperatorContext
from actorflow.operators.sources import ReadProgress

__all__ = ["TransactionGenerator", "transactions"]

START_TS = 1_700_000_000_000


def transactions(
    seed: int = 7, count: int | None = None, cards: int = 500, start_ts: int = START_TS, step_ms: int = 10
) -> Iterator[dict[str, Any]]:
    """The generator's transactions, in order (``count`` None: for ever)."""
    rng = random.Random(seed)
    planned: list[tuple[int, str, float]] = []  # (at tx_id, card, amount): the rest of a pattern
    tx_id = 0
    while count is None or tx_id < count:
        if planned and planned[0][0] <= tx_id:
            _, card, amount = planned.pop(0)
        else:
            card = f"c{rng.randrange(cards):05d}"
            amount = round(rng.lognormvariate(3.0, 0.6), 2)
            pattern = rng.random()
            if pattern < 0.004:  # a test purchase, then the real one
                amount = round(rng.uniform(0.1, 0.99), 2)
                planned.append((tx_id + rng.randint(1, 20), card, round(rng.uniform(600, 2_000), 2)))
            elif pattern < 0.006:  # a burst on one card
                planned.extend((tx_id + i * rng.randint(1, 4), card, 20.0) for i in range(1, 9))
            elif pattern < 0.008:  # far more than this card spends
                amount = round(rng.uniform(3_000, 9_000), 2)
            planned.sort()
        jitter = rng.randint(0, 3 * step_ms)  # a little out of order
        yield {"tx_id": tx_id, "card_id": card, "amount": amount, "ts": start_ts + tx_id * step_ms - jitter}
        tx_id += 1


class TransactionGenerator(Source):
    """:func:`transactions` as a source (one instance), ``rate`` per second of the flow's clock."""

    def __init__(self, *, seed: int = 7, limit: int | None = None, rate: float | None = 1_000.0) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive (or None for no limit)")
        self.seed = seed
        self.limit = limit
        self.rate = rate
        self._emitted = 0
        self._start = 0

    def snapshot_state(self, context: OperatorContext) -> int:
        return self._emitted

    def read_progress(self) -> ReadProgress | None:
        """Transactions sent of ``limit`` (None when unbounded): progress and ETA on a terminal."""
        return None if self.limit is None else ReadProgress(self._emitted, self.limit)

    def restore_state(self, context: OperatorContext, states: list[Any]) -> None:
        self._start = max(states, default=0)

    async def read(self, context: OperatorContext) -> AsyncIterator[list[Any]]:
        clock = context.clock
        started = clock.now()
        self._emitted = self._start
        source = transactions(self.seed, self.limit)
        for _ in range(self._start):
            next(source)  # regenerate what the checkpoint had already sent
        batch_size = (
            context.batch_size
            if self.rate is None
            else max(1, min(context.batch_size, int(self.rate / 10)))
        )
        while True:
            batch = [tx for _, tx in zip(range(batch_size), source, strict=False)]
            if not batch:
                return
            self._emitted += len(batch)
            yield batch
            if self.rate is None:
                await asyncio.sleep(0)
            else:
                sent = self._emitted - self._start
                await clock.sleep_until(started + int(sent * 1000 / self.rate))
