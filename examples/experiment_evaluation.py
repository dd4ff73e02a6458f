"""Experiment evaluation: an A/B test's conversion rates per variant in tumbling event-time
windows, and a sequential test that says, as the data comes in, when the difference is significant.

Users are exposed to variant A or B of an experiment, and some of them convert a few minutes
later. The flow

1. counts each variant's exposures and conversions in **1-minute tumbling event-time windows**
   (keyed by variant, an ``AggregateFunction``): the conversion rate of each minute;
2. brings the two variants' counts of the same minute together in a second tumbling window keyed
   by experiment (a window's results carry its last millisecond, so they land in the same minute);
3. adds them to the experiment's running totals (keyed value state) and after every minute runs
   a **mixture sequential probability ratio test** (mSPRT, Johari et al., "Always valid inference",
   2017) on the difference of the two conversion rates.

The test, in a few lines: the observed difference ``d = rate_B - rate_A`` is about normal with
variance ``V = p(1 - p)(1/n_A + 1/n_B)`` (``p`` the pooled rate: its variance if there is no
difference). Against "no difference" it weighs every true difference, drawn from a normal prior
``N(0, tau^2)``; the ratio of the two likelihoods is ::

    L = sqrt(V / (V + tau^2)) * exp(tau^2 d^2 / (2 V (V + tau^2)))

Without a difference ``L`` is (up to the normal approximation and the estimated ``p``) a
non-negative martingale of mean 1, so by Ville's inequality the chance that it *ever* reaches
``1 / alpha`` is at most ``alpha``. That is the guarantee: the test may look after every window,
as often as it likes, and stop at the first crossing, and still declares a winner of an A/A test
with probability at most ``alpha`` (5%). A fixed-horizon z-test looked at every minute does not:
with 30 looks it finds a "winner" in about a quarter of A/A tests. ``tau`` is the size of
difference the test is tuned for (here 2 points of conversion); the first crossing is the
decision, and it stays.

The events are generated (seeded): users arrive at random over ``minutes`` minutes, each is
assigned A or B by a fair coin, and converts with its variant's probability after an exponential
delay (2 minutes on average). By default A converts 10% and B 12%.

Run it::

    actorflow run examples/experiment_evaluation.py
    actorflow run examples/experiment_evaluation.py --rate-b 0.10 --seed 3     # an A/A test
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from actorflow import (
    AggregateFunction,
    Collector,
    Context,
    DataStream,
    Flow,
    KeyedProcessFunction,
    ProcessWindowFunction,
    RuntimeContext,
    TumblingEventTimeWindows,
    ValueState,
    ValueStateDescriptor,
    WatermarkStrategy,
    WindowContext,
)

MINUTE = 60_000
#: The first event time, on a whole minute (2023-11-14T22:13:00Z).
START_TS = 1_699_999_980_000
#: The windows: a minute of event time.
WINDOW_MS = MINUTE
#: The test's false-positive bound, and the difference of rates it is tuned for.
ALPHA, TAU = 0.05, 0.02
#: No decision before each variant has this many exposures (the normal approximation needs some).
MIN_EXPOSURES = 100
#: How far out of order events arrive, and what the watermarks allow.
JITTER_MS, OUT_OF_ORDER_MS = 1_000, 2_000
EXPERIMENT = "checkout-button"


def log_likelihood_ratio(
    exposures: tuple[int, int], conversions: tuple[int, int], tau: float = TAU
) -> float:
    """The natural log of the mSPRT's likelihood ratio (see the module docstring) for conversions
    ``(x_A, x_B)`` out of exposures ``(n_A, n_B)``; 0.0 (no evidence) when a variant has no
    exposures or the pooled rate is 0 or 1.

    >>> round(log_likelihood_ratio((5_000, 5_000), (500, 600)), 2)
    3.44
    >>> log_likelihood_ratio((5_000, 5_000), (500, 500)) < 0  # no difference: evidence for none
    True
    """
    (n_a, n_b), (x_a, x_b) = exposures, conversions
    if n_a <= 0 or n_b <= 0:
        return 0.0
    pooled = (x_a + x_b) / (n_a + n_b)
    variance = pooled * (1 - pooled) * (1 / n_a + 1 / n_b)
    if variance <= 0:
        return 0.0
    difference = x_b / n_b - x_a / n_a
    spread = variance + tau * tau
    return 0.5 * math.log(variance / spread) + tau * tau * difference * difference / (2 * variance * spread)


def decide(
    exposures: tuple[int, int], conversions: tuple[int, int], alpha: float = ALPHA, tau: float = TAU
) -> str | None:
    """``"A"`` or ``"B"``, the variant that converts better, once the likelihood ratio reaches
    ``1 / alpha`` with at least ``MIN_EXPOSURES`` exposures each; ``None`` before.

    >>> decide((5_000, 5_000), (500, 600)), decide((5_000, 5_000), (500, 520))
    ('B', None)
    """
    if min(exposures) < MIN_EXPOSURES:
        return None
    if log_likelihood_ratio(exposures, conversions, tau) < math.log(1 / alpha):
        return None
    return "B" if conversions[1] / exposures[1] > conversions[0] / exposures[0] else "A"


class Events:
    """Generated events ``{"experiment", "event", "user", "variant", "ts"}`` (``event`` is
    ``"exposure"`` or ``"conversion"``) for ``users`` users arriving over ``minutes`` minutes, in
    arrival order (up to ``JITTER_MS`` out of event-time order). The same for the same arguments;
    iterable again.

    >>> events = list(Events(users=50))
    >>> sum(e["event"] == "exposure" for e in events), sorted(events[0])
    (50, ['event', 'experiment', 'ts', 'user', 'variant'])
    """

    def __init__(
        self,
        seed: int = 7,
        users: int = 20_000,
        minutes: int = 60,
        rate_a: float = 0.10,
        rate_b: float = 0.12,
        start_ts: int = START_TS,
    ) -> None:
        self.seed, self.users, self.minutes = seed, users, minutes
        self.rates = {"A": rate_a, "B": rate_b}
        self.start_ts = start_ts

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rng = random.Random(self.seed)
        span = self.minutes * MINUTE
        timed: list[tuple[int, int, str, str, int]] = []  # (arrival, ts, event, variant, user)
        for user in range(self.users):
            variant = "A" if rng.random() < 0.5 else "B"
            exposed = self.start_ts + rng.randrange(span)
            timed.append((exposed + rng.randrange(JITTER_MS), exposed, "exposure", variant, user))
            if rng.random() < self.rates[variant]:
                converted = exposed + 1 + int(rng.expovariate(1 / (2 * MINUTE)))
                timed.append((converted + rng.randrange(JITTER_MS), converted, "conversion", variant, user))
        timed.sort()
        for _, ts, event, variant, user in timed:
            yield {
                "experiment": EXPERIMENT,
                "event": event,
                "user": f"u{user:06d}",
                "variant": variant,
                "ts": ts,
            }


class Counts(AggregateFunction[dict[str, Any], tuple[int, int], tuple[int, int]]):
    """Exposures and conversions of a variant in a window."""

    def create_accumulator(self) -> tuple[int, int]:
        return (0, 0)

    def add(self, value: dict[str, Any], accumulator: tuple[int, int]) -> tuple[int, int]:
        exposures, conversions = accumulator
        if value["event"] == "exposure":
            return (exposures + 1, conversions)
        if value["event"] == "conversion":
            return (exposures, conversions + 1)
        raise ValueError(f"variant-counts: unknown event {value['event']!r} in {value!r}")

    def get_result(self, accumulator: tuple[int, int]) -> tuple[int, int]:
        return accumulator

    def merge(self, a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
        return (a[0] + b[0], a[1] + b[1])


class VariantWindow(ProcessWindowFunction[tuple[int, int], dict[str, Any], Any]):
    """A variant's window: its counts and conversion rate, with the experiment and window end."""

    def process(
        self, key: Any, context: WindowContext, elements: list[tuple[int, int]], out: Collector
    ) -> None:
        experiment, variant = key
        for exposures, conversions in elements:  # one: the aggregate's result
            out.collect(
                {
                    "experiment": experiment,
                    "variant": variant,
                    "window_end": context.window.end,
                    "exposures": exposures,
                    "conversions": conversions,
                    "rate": conversions / exposures if exposures else None,
                }
            )


class BothVariants(ProcessWindowFunction[dict[str, Any], dict[str, Any], Any]):
    """The two variants' windows of the same minute, as one record (a variant without events in
    the minute counts zero)."""

    def process(
        self, key: Any, context: WindowContext, elements: list[dict[str, Any]], out: Collector
    ) -> None:
        counts = {"A": (0, 0), "B": (0, 0)}
        for window in elements:
            counts[window["variant"]] = (window["exposures"], window["conversions"])
        out.collect({"experiment": key, "window_end": context.window.end, **counts})


class SequentialTest(KeyedProcessFunction[dict[str, Any], dict[str, Any]]):
    """Per experiment: running totals of both variants (value state), and after every window the
    mSPRT's likelihood ratio and decision (the first one made stays)."""

    def __init__(self, alpha: float = ALPHA, tau: float = TAU) -> None:
        self.alpha, self.tau = alpha, tau

    def open(self, ctx: RuntimeContext) -> None:
        self.totals: ValueState[tuple[int, int, int, int]] = ctx.get_state(
            ValueStateDescriptor("totals", default=(0, 0, 0, 0))
        )
        self.decided: ValueState[tuple[str, int] | None] = ctx.get_state(ValueStateDescriptor("decided"))

    def process_element(self, minute: dict[str, Any], ctx: Context, out: Collector) -> None:
        n_a, x_a, n_b, x_b = self.totals.value()
        (dn_a, dx_a), (dn_b, dx_b) = minute["A"], minute["B"]
        n_a, x_a, n_b, x_b = n_a + dn_a, x_a + dx_a, n_b + dn_b, x_b + dx_b
        self.totals.update((n_a, x_a, n_b, x_b))
        exposures, conversions = (n_a, n_b), (x_a, x_b)
        decided = self.decided.value()
        if decided is None:
            winner = decide(exposures, conversions, self.alpha, self.tau)
            if winner is not None:
                decided = (winner, minute["window_end"])
                self.decided.update(decided)
        out.collect(
            {
                "experiment": minute["experiment"],
                "window_end": minute["window_end"],
                "window": {"A": minute["A"], "B": minute["B"]},
                "exposures": exposures,
                "conversions": conversions,
                "log_lr": log_likelihood_ratio(exposures, conversions, self.tau),
                "winner": None if decided is None else decided[0],
                "decided_at": None if decided is None else decided[1],
            }
        )


def evaluate(
    events: DataStream[dict[str, Any]], alpha: float = ALPHA, tau: float = TAU
) -> tuple[DataStream[dict[str, Any]], DataStream[dict[str, Any]]]:
    """The per-variant windows and the per-minute looks of the sequential test, from ``events``
    (with event time)."""
    windows = (
        events.key_by(lambda e: (e["experiment"], e["variant"]))
        .window(TumblingEventTimeWindows.of(WINDOW_MS))
        .aggregate(Counts(), VariantWindow(), name="variant-counts")
    )
    looks = (
        windows.key_by("experiment")
        .window(TumblingEventTimeWindows.of(WINDOW_MS))
        .process(BothVariants(), name="both-variants")
        .key_by("experiment")
        .process(SequentialTest(alpha, tau), name="sequential-test")
    )
    return windows, looks


def event_stream(flow: Flow, events: Events) -> DataStream[dict[str, Any]]:
    """``events`` as a source with event time from their ``ts``."""
    strategy = WatermarkStrategy.bounded_out_of_orderness(OUT_OF_ORDER_MS, "ts")
    return flow.from_iterable(events, name="events", watermarks=strategy)


def _rate(counts: tuple[int, int]) -> str:
    exposures, conversions = counts
    return f"{conversions / exposures:6.1%}" if exposures else "     -"


def describe(look: dict[str, Any]) -> str:
    """One line per minute, as the example prints it; the decision's minute says so."""
    minute = (look["window_end"] - START_TS) // MINUTE
    (n_a, n_b), (x_a, x_b) = look["exposures"], look["conversions"]
    line = (
        f"minute {minute:3d}: this minute A {_rate(look['window']['A'])} B {_rate(look['window']['B'])}; "
        f"so far A {_rate((n_a, x_a))} of {n_a:,}, B {_rate((n_b, x_b))} of {n_b:,}; "
        f"likelihood ratio {math.exp(min(look['log_lr'], 700.0)):.3g}"
    )
    if look["decided_at"] == look["window_end"]:
        line += f"\nSIGNIFICANT at minute {minute}: {look['winner']} converts better (alpha {ALPHA})"
    return line


def build(events: Events | None = None, *, alpha: float = ALPHA, parallelism: int = 1) -> Flow:
    """The example: generated events in, one line per minute printed."""
    flow = Flow("experiment-evaluation", parallelism=parallelism)
    _, looks = evaluate(event_stream(flow, events or Events()), alpha)
    looks.map(describe, name="describe").print()
    return flow


def flow(argv: Sequence[str] | None = None) -> Flow:
    """What ``actorflow run examples/experiment_evaluation.py [options]`` runs."""
    parser = argparse.ArgumentParser(prog="experiment_evaluation", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000, help="users exposed")
    parser.add_argument("--minutes", type=int, default=60, help="minutes over which they arrive")
    parser.add_argument("--rate-a", type=float, default=0.10, help="A's conversion rate")
    parser.add_argument("--rate-b", type=float, default=0.12, help="B's conversion rate")
    parser.add_argument("--seed", type=int, default=7, help="the generator's seed")
    parser.add_argument("--alpha", type=float, default=ALPHA, help="the false-positive bound")
    parser.add_argument("--parallelism", type=int, default=1)
    args = parser.parse_args([] if argv is None else argv)
    events = Events(args.seed, args.users, args.minutes, args.rate_a, args.rate_b)
    return build(events, alpha=args.alpha, parallelism=args.parallelism)


if __name__ == "__main__":
    flow(sys.argv[1:]).execute()
