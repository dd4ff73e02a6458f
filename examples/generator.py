"""A built-in source of card transactions, with fraud in it, for the examples and the demo daemon.

Seeded and deterministic: the same seed gives the same transactions, so a restored job regenerates
exactly what comes after its checkpoint. Event time is synthetic (``start_ts`` plus ``step_ms`` per
transaction, a little out of order); ``rate`` limits transactions per second of the flow's clock
(None: as fast as the flow takes them). Unbounded unless ``limit`` is given.

The source's event time starts now (the wall clock when it is created), so a dashboard shows a real
watermark lag; ``start_ts=START_TS`` gives the fixed start that the bundled file
(``examples/data/transactions.jsonl``), its rules (``live_rules.jsonl``) and the tests use. The start
is part of the source's checkpointed state: a restored job goes on on the same clock.
:func:`on_clock` moves rules written on the ``START_TS`` clock to another start.

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
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from actorflow import Source
from actorflow.operators.base import OperatorContext
from actorflow.operators.sources import ReadProgress

__all__ = ["START_TS", "TransactionGenerator", "on_clock", "transactions"]

#: The fixed start of event time (2023-11-14T22:13:20Z) of the bundled file, its rules and the tests.
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


def on_clock(rule: dict[str, Any], start_ts: int) -> dict[str, Any]:
    """``rule`` (its ``ts`` on the ``START_TS`` clock) moved to event time starting at ``start_ts``.

    A rule from ``START_TS + d`` applies from ``start_ts + d``; one with an earlier ``ts`` (0: from
    the beginning), or none that is an integer (for the rule engine to reject), is left as it is.

    >>> on_clock({"id": "large", "ts": START_TS + 60_000}, 2_000_000_000_000)["ts"]
    2000000060000
    >>> on_clock({"id": "large", "ts": 0}, 2_000_000_000_000)["ts"]
    0
    """
    ts = rule.get("ts")
    if isinstance(ts, int) and ts >= START_TS:
        return {**rule, "ts": start_ts + ts - START_TS}
    return rule


class TransactionGenerator(Source):
    """:func:`transactions` as a source (one instance), ``rate`` per second of the flow's clock.

    ``start_ts`` is the event time of the first transaction: now (epoch milliseconds when the
    source is created) by default, ``START_TS`` for the bundled file's clock.
    """

    def __init__(
        self,
        *,
        seed: int = 7,
        limit: int | None = None,
        rate: float | None = 1_000.0,
        start_ts: int | None = None,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive (or None for no limit)")
        self.seed = seed
        self.limit = limit
        self.rate = rate
        self.start_ts = time.time_ns() // 1_000_000 if start_ts is None else start_ts
        self._emitted = 0
        self._start = 0

    def snapshot_state(self, context: OperatorContext) -> tuple[int, int]:
        return (self._emitted, self.start_ts)

    def read_progress(self) -> ReadProgress | None:
        """Transactions sent of ``limit`` (None when unbounded): progress and ETA on a terminal."""
        return None if self.limit is None else ReadProgress(self._emitted, self.limit)

    def restore_state(self, context: OperatorContext, states: list[Any]) -> None:
        # (sent, start_ts); a plain count is a checkpoint from before the start was kept: START_TS.
        restored = [(state, START_TS) if isinstance(state, int) else tuple(state) for state in states]
        if restored:
            self._start, self.start_ts = max(restored)

    async def read(self, context: OperatorContext) -> AsyncIterator[list[Any]]:
        clock = context.clock
        started = clock.now()
        self._emitted = self._start
        source = transactions(self.seed, self.limit, start_ts=self.start_ts)
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
