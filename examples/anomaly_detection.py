"""Anomaly detection on card transactions with an online model: river's HalfSpaceTrees, learning
as the transactions stream by (``actorflow.ml``; needs ``pip install 'actorflow[ml]'``).

No rules and no labels: the model learns what ordinary transactions look like and scores each one
before it learns from it (test then train). What it reads, per card (keyed state):

- **amount**, and the **ratio** of the amount to the card's average so far (1.0 for a card's first
  transaction): a spend far above what this card spends stands out, where a large amount on a card
  that always spends large does not;
- **velocity**: the card's transactions within the last minute of event time, this one included.

One model scores the features of every card (``learn_predict`` on the whole stream): a scaler to
[0, 1] (HalfSpaceTrees splits that range), then the trees. A score above ``--threshold`` is an
alert, printed.

The transactions are generated (seeded, so every run sees the same ones): 200 cards, each with its
own usual spend, and two kinds of anomaly mixed in, marked ``injected`` for the tests (the model
never reads that mark): a purchase 6 to 20 times the card's usual spend, and a burst of 5 to 8
transactions on one card within seconds (card testing), whose fourth and later transactions are
the anomalies (by then the burst is plain to see).

Run it::

    actorflow run examples/anomaly_detection.py --limit 20000
    python3 examples/anomaly_detection.py --limit 20000 --threshold 0.9
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from actorflow import (
    Collector,
    Context,
    DataStream,
    Flow,
    KeyedProcessFunction,
    ListState,
    ListStateDescriptor,
    RuntimeContext,
    ValueState,
    ValueStateDescriptor,
)
from actorflow.ml import Scored

try:
    from river import anomaly, preprocessing
except ImportError:  # pragma: no cover - the ml extra is in the dev extra
    raise SystemExit("examples/anomaly_detection.py needs river: pip install 'actorflow[ml]'") from None

#: The first event time (2023-11-14T22:13:20Z).
START_TS = 1_700_000_000_000
#: Velocity counts a card's transactions within this much event time.
VELOCITY_MS = 60_000
#: What the model reads of each transaction.
FEATURES = ["amount", "ratio", "velocity"]
#: A score above this is an alert (HalfSpaceTrees' scores are in [0, 1], higher is rarer).
THRESHOLD = 0.9


class Transactions:
    """``count`` generated transactions, the same for the same ``seed``; read again from the
    start each time it is iterated (so a restored job regenerates what follows its checkpoint).
    Event time starts at ``start_ts`` and moves 1 to ``2 * step_ms`` ms per transaction.

    >>> txs = list(Transactions(count=3))
    >>> [tx["tx_id"] for tx in txs], sorted(txs[0])
    ([0, 1, 2], ['amount', 'card_id', 'injected', 'ts', 'tx_id'])
    """

    def __init__(
        self,
        seed: int = 7,
        count: int = 20_000,
        cards: int = 200,
        start_ts: int = START_TS,
        step_ms: int = 300,
    ) -> None:
        self.seed, self.count, self.cards, self.start_ts, self.step_ms = (
            seed,
            count,
            cards,
            start_ts,
            step_ms,
        )

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rng = random.Random(self.seed)
        usual = {f"c{n:04d}": math.exp(rng.uniform(math.log(8), math.log(150))) for n in range(self.cards)}
        cards = list(usual)
        planned: list[tuple[int, str, float, bool]] = []  # the rest of a burst: (tx_id, card, ...)
        ts = self.start_ts
        for tx_id in range(self.count):
            ts += rng.randint(1, 2 * self.step_ms)
            if planned and planned[0][0] <= tx_id:
                _, card, amount, injected = planned.pop(0)
            else:
                card = rng.choice(cards)
                amount = usual[card] * rng.lognormvariate(0, 0.35)
                injected = False
                chance = rng.random()
                if chance < 0.008:  # far above what this card spends
                    amount = usual[card] * rng.uniform(6, 20)
                    injected = True
                elif chance < 0.011:  # a burst: this one, then 4 to 7 more right after it
                    for later in range(1, rng.randint(5, 8)):
                        spend = usual[card] * rng.lognormvariate(0, 0.35)
                        planned.append((tx_id + later, card, spend, later >= 3))
                    planned.sort()
            yield {
                "tx_id": tx_id,
                "card_id": card,
                "amount": round(amount, 2),
                "ts": ts,
                "injected": injected,
            }


class CardFeatures(KeyedProcessFunction[dict[str, Any], dict[str, Any]]):
    """Per card: the transaction with its features added (see the module docstring)."""

    def open(self, ctx: RuntimeContext) -> None:
        self.spent: ValueState[tuple[int, float]] = ctx.get_state(
            ValueStateDescriptor("spent", default=(0, 0.0))
        )
        self.recent: ListState[int] = ctx.get_list_state(ListStateDescriptor("recent"))

    def process_element(self, tx: dict[str, Any], ctx: Context, out: Collector) -> None:
        count, total = self.spent.value()
        ratio = tx["amount"] * count / total if total > 0 else 1.0
        self.spent.update((count + 1, total + tx["amount"]))
        since = tx["ts"] - VELOCITY_MS
        recent = [ts for ts in self.recent.get() if ts > since] + [tx["ts"]]
        self.recent.update(recent)
        out.collect({**tx, "ratio": ratio, "velocity": len(recent)})


def detector() -> Any:
    """A fresh model: scaled features into HalfSpaceTrees (seeded: runs score alike)."""
    return preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(
        n_trees=10, height=8, window_size=250, seed=42
    )


def alert(scored: Scored[dict[str, Any]]) -> dict[str, Any]:
    """The alert of a transaction scored above the threshold."""
    tx = scored.value
    return {
        "card_id": tx["card_id"],
        "tx_id": tx["tx_id"],
        "amount": tx["amount"],
        "ratio": round(tx["ratio"], 2),
        "velocity": tx["velocity"],
        "score": round(scored.prediction, 3),
    }


def describe(alert: dict[str, Any]) -> str:
    """One line per alert, as the example prints it."""
    return (
        f"ALERT card {alert['card_id']} tx {alert['tx_id']}: {alert['amount']:.2f} "
        f"({alert['ratio']:.1f}x its average), {alert['velocity']} in {VELOCITY_MS // 1000} s, "
        f"score {alert['score']:.3f}"
    )


def detect(
    transactions: DataStream[dict[str, Any]], threshold: float = THRESHOLD
) -> DataStream[dict[str, Any]]:
    """The alerts of ``transactions``: features per card, one model scoring them all."""
    featured = transactions.key_by("card_id").process(CardFeatures(), name="card-features")
    scored = featured.learn_predict(detector, features=FEATURES, name="half-space-trees")
    return scored.filter(lambda s: s.prediction > threshold, name="above-threshold").map(
        alert, name="alert"
    )


def build(
    *, limit: int = 20_000, seed: int = 7, threshold: float = THRESHOLD, parallelism: int = 1
) -> Flow:
    """The example: ``limit`` generated transactions, alerts printed."""
    flow = Flow("anomaly-detection", parallelism=parallelism)
    transactions = flow.from_iterable(Transactions(seed=seed, count=limit), name="transactions")
    detect(transactions, threshold).map(describe, name="describe").print()
    return flow


def flow(argv: Sequence[str] | None = None) -> Flow:
    """What ``actorflow run examples/anomaly_detection.py [--limit N] [--threshold T]`` runs."""
    parser = argparse.ArgumentParser(prog="anomaly_detection", description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=20_000, help="how many transactions")
    parser.add_argument("--seed", type=int, default=7, help="the generator's seed")
    parser.add_argument("--threshold", type=float, default=THRESHOLD, help="alert above this score")
    parser.add_argument("--parallelism", type=int, default=1)
    args = parser.parse_args([] if argv is None else argv)
    return build(limit=args.limit, seed=args.seed, threshold=args.threshold, parallelism=args.parallelism)


if __name__ == "__main__":
    flow(sys.argv[1:]).execute()
