"""Three fraud patterns over card transactions, written with the Pattern API (complex event processing).

- **card testing** (a loop): two or more purchases under 5.00 in a row, then one over 200.00, all
  within ten minutes: someone checks a stolen card with small amounts before using it;
- **two large at different merchants, nothing small between** (a negation and an iterative
  condition): a purchase over 300.00, then within five minutes another one over 300.00 at a
  different merchant, with no purchase under 5.00 in between;
- **unconfirmed probes** (a timeout side output): a purchase under 1.00 that no purchase over
  500.00 follows within a minute; the partial matches that time out are reported on a side output.

Each card's transactions go through the patterns in event-time order (the file is out of order by
up to 5 s). Run it::

    python3 examples/cep_patterns.py
    actorflow run examples/cep_patterns.py
    FRAUD_INPUT=other.jsonl python3 examples/cep_patterns.py
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from actorflow import AfterMatchSkip, Flow, KeyedStream, OutputTag, Pattern, WatermarkStrategy

Tx = dict[str, Any]
Match = dict[str, list[Tx]]

DEFAULT_INPUT = Path(__file__).parent / "data" / "transactions.jsonl"

CARD_TESTING: Pattern[Tx] = (
    Pattern.begin("probes").where(lambda tx: tx["amount"] < 5.00).times_or_more(2).consecutive()
    .next("large").where(lambda tx: tx["amount"] > 200.00)
    .within(10 * 60_000)
)  # fmt: skip

TWO_LARGE_ELSEWHERE: Pattern[Tx] = (
    Pattern.begin("first").where(lambda tx: tx["amount"] > 300.00)
    .not_followed_by("small").where(lambda tx: tx["amount"] < 5.00)
    .followed_by("second").where(
        lambda tx, ctx: tx["amount"] > 300.00 and tx["merchant_id"] != ctx.events("first")[0]["merchant_id"]
    )
    .within(5 * 60_000)
)  # fmt: skip

PROBE: Pattern[Tx] = (
    Pattern.begin("small").where(lambda tx: tx["amount"] < 1.00)
    .followed_by("large").where(lambda tx: tx["amount"] > 500.00)
    .within(60_000)
)  # fmt: skip

UNCONFIRMED: OutputTag[str] = OutputTag("unconfirmed-probes")


def card_testing(match: Match) -> str:
    probes, large = match["probes"], match["large"][0]
    amounts = ", ".join(f"{tx['amount']:.2f}" for tx in probes)
    return (
        f"CARD TESTING card {large['card_id']}: {len(probes)} probes ({amounts}) then {large['amount']:.2f}"
    )


def two_large(match: Match) -> str:
    first, second = match["first"][0], match["second"][0]
    seconds = (second["ts"] - first["ts"]) / 1000
    return (
        f"TWO LARGE card {first['card_id']}: {first['amount']:.2f} at {first['merchant_id']}, then "
        f"{second['amount']:.2f} at {second['merchant_id']} {seconds:.0f} s later"
    )


def unconfirmed(partial: Match, timeout_ms: int) -> str:
    small = partial["small"][0]
    return f"UNCONFIRMED PROBE card {small['card_id']}: {small['amount']:.2f} (tx {small['tx_id']})"


def build(path: str | Path = DEFAULT_INPUT) -> Flow:
    """The three patterns over the transactions of ``path``, their results printed."""
    flow = Flow("cep-patterns")
    cards: KeyedStream[Tx, Any] = flow.from_json_lines(
        path, name="transactions", watermarks=WatermarkStrategy.bounded_out_of_orderness(5_000, "ts")
    ).key_by("card_id")
    skip = AfterMatchSkip.skip_past_last_event()
    cards.pattern(CARD_TESTING, skip=skip).select(card_testing, name="card-testing").print()
    cards.pattern(TWO_LARGE_ELSEWHERE, skip=skip).select(two_large, name="two-large").print()
    probes = cards.pattern(PROBE, skip=skip).select(
        lambda match: f"PROBE CONFIRMED card {match['large'][0]['card_id']}",
        timed_out=UNCONFIRMED,
        on_timeout=unconfirmed,
        name="probes",
    )
    probes.print()
    probes.get_side_output(UNCONFIRMED).print()
    return flow


def flow() -> Flow:
    """What ``actorflow run examples/cep_patterns.py`` runs."""
    return build(os.environ.get("FRAUD_INPUT") or DEFAULT_INPUT)


if __name__ == "__main__":
    flow().execute()
