"""``examples/experiment_evaluation.py``: per-variant conversion counts in tumbling windows, and a
mixture sequential probability ratio test that finds a real lift and keeps its false-positive
bound in A/A tests looked at every minute.

How each part can fail:

- the flow's windows and looks must equal the events counted by hand, minute by minute;
- the likelihood ratio must equal the mixture integral it stands for, computed numerically here
  (the mSPRT is conservative at these sizes: a wrong formula may still keep A/A tests quiet, so the
  formula is checked on its own);
- with B converting 12% against A's 10% the test declares B, and the decision stays;
- A/A tests (both 10%) through the flow declare no winner, and over 100 smaller A/A tests in plain
  Python (the example's counts and decision, without the flow) at most 5 declare one (alpha = 5%).
  The same 100 tests looked at with a fixed-horizon z-test at every minute find a "winner" in 23
  of them, so this bound catches a test that ignores how often it looks. At these sizes the mSPRT
  stays far below alpha (it declares none), so the bound alone would let a subtly wrong formula or
  threshold pass: those are caught by the integral check above and by the lift test, which asserts
  that the decision comes exactly when the log likelihood ratio first reaches log(1 / alpha).
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from actorflow import Flow
from examples import experiment_evaluation as ee

ROOT = Path(__file__).resolve().parent.parent
Look = tuple[int, tuple[int, int], tuple[int, int]]  # window end, exposures, conversions so far


def run(events: ee.Events, parallelism: int = 1) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The example's per-variant windows and looks for ``events``."""
    flow = Flow("experiment-evaluation", parallelism=parallelism)
    windows, looks = ee.evaluate(ee.event_stream(flow, events))
    collected_windows, collected_looks = windows.collect(), looks.collect()
    flow.execute()
    return collected_windows.values, sorted(collected_looks.values, key=lambda look: look["window_end"])


def by_minute(events: Iterable[dict[str, Any]]) -> dict[tuple[int, str], Counter[str]]:
    """Exposures and conversions per (window end, variant), counted by hand."""
    counts: dict[tuple[int, str], Counter[str]] = {}
    for event in events:
        end = (event["ts"] // ee.WINDOW_MS + 1) * ee.WINDOW_MS
        counts.setdefault((end, event["variant"]), Counter())[event["event"]] += 1
    return counts


def plain_looks(events: Iterable[dict[str, Any]]) -> Iterator[Look]:
    """The running totals after each minute that has events, counted by hand."""
    counts = by_minute(events)
    n = {"A": 0, "B": 0}
    x = {"A": 0, "B": 0}
    for end in sorted({end for end, _ in counts}):
        for variant in "AB":
            minute = counts.get((end, variant), Counter())
            n[variant] += minute["exposure"]
            x[variant] += minute["conversion"]
        yield end, (n["A"], n["B"]), (x["A"], x["B"])


def test_with_a_real_lift_the_test_declares_b_and_the_counts_are_the_events(parallelism: int) -> None:
    events = ee.Events()  # A 10%, B 12%
    windows, looks = run(events, parallelism)

    expected = by_minute(events)
    assert {(w["window_end"], w["variant"]): (w["exposures"], w["conversions"]) for w in windows} == {
        key: (counts["exposure"], counts["conversion"]) for key, counts in expected.items()
    }
    assert [(look["window_end"], look["exposures"], look["conversions"]) for look in looks] == list(
        plain_looks(events)
    )

    decided = [look for look in looks if look["winner"] is not None]
    assert decided, "no decision with a 2-point lift on 20,000 users"
    first = decided[0]
    assert first["winner"] == "B" and first["decided_at"] == first["window_end"]
    assert first["log_lr"] >= math.log(1 / ee.ALPHA) > looks[looks.index(first) - 1]["log_lr"]
    assert decided == looks[looks.index(first) :], "the decision stays"
    assert all(look["decided_at"] == first["window_end"] for look in decided)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_an_a_a_test_through_the_flow_declares_no_winner(seed: int) -> None:
    _, looks = run(ee.Events(seed=seed, users=8_000, minutes=40, rate_b=0.10))
    assert len(looks) >= 40
    assert all(look["winner"] is None for look in looks), [look for look in looks if look["winner"]][:1]


def test_the_false_positive_rate_of_a_a_tests_looked_at_every_minute_stays_under_alpha() -> None:
    tests, declared, peeking_declared = 100, 0, 0
    for seed in range(1_000, 1_000 + tests):
        looks = list(plain_looks(ee.Events(seed=seed, users=2_000, minutes=30, rate_b=0.10)))
        declared += any(ee.decide(n, x) is not None for _, n, x in looks)
        peeking_declared += any(
            abs(z_score(n, x)) > 1.96 for _, n, x in looks if min(n) >= ee.MIN_EXPOSURES
        )
    assert declared <= ee.ALPHA * tests, declared
    assert peeking_declared >= 3 * ee.ALPHA * tests, peeking_declared  # 23 when measured


def test_with_a_real_lift_the_test_declares_b_on_every_seed_tried() -> None:
    for seed in range(3):
        looks = plain_looks(ee.Events(seed=seed))
        assert next((ee.decide(n, x) for _, n, x in looks if ee.decide(n, x)), None) == "B", seed


def z_score(exposures: tuple[int, int], conversions: tuple[int, int]) -> float:
    """The fixed-horizon two-proportion z statistic (pooled variance)."""
    (n_a, n_b), (x_a, x_b) = exposures, conversions
    pooled = (x_a + x_b) / (n_a + n_b)
    variance = pooled * (1 - pooled) * (1 / n_a + 1 / n_b)
    return (x_b / n_b - x_a / n_a) / math.sqrt(variance) if variance > 0 else 0.0


@pytest.mark.parametrize(
    ("exposures", "conversions"),
    [
        ((5_000, 5_000), (500, 600)),
        ((300, 350), (20, 41)),
        ((9_000, 8_800), (900, 880)),
        ((2_000, 1_500), (260, 150)),
    ],
)
def test_the_likelihood_ratio_is_the_mixture_integral_it_stands_for(
    exposures: tuple[int, int], conversions: tuple[int, int]
) -> None:
    # L = integral over theta ~ N(0, tau^2) of N(d; theta, V) / N(d; 0, V), by the midpoint rule.
    (n_a, n_b), (x_a, x_b) = exposures, conversions
    pooled = (x_a + x_b) / (n_a + n_b)
    variance = pooled * (1 - pooled) * (1 / n_a + 1 / n_b)
    d, tau = x_b / n_b - x_a / n_a, ee.TAU
    steps, low, high = 40_000, -12 * tau, 12 * tau
    width = (high - low) / steps
    total = 0.0
    for i in range(steps):
        theta = low + (i + 0.5) * width
        prior = math.exp(-theta * theta / (2 * tau * tau)) / math.sqrt(2 * math.pi * tau * tau)
        total += prior * math.exp((d * d - (d - theta) ** 2) / (2 * variance)) * width
    assert math.isclose(ee.log_likelihood_ratio(exposures, conversions), math.log(total), abs_tol=1e-6)


def test_the_counts_refuse_an_unknown_event() -> None:
    with pytest.raises(ValueError, match="variant-counts: unknown event 'click'"):
        ee.Counts().add({"event": "click", "variant": "A"}, (0, 0))


def test_the_example_runs_from_the_command_line_and_prints_its_decision() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "actorflow", "run", "examples/experiment_evaluation.py", "--users", "10000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = done.stdout.splitlines()
    minutes = [line for line in lines if line.startswith("minute ")]
    assert len(minutes) >= 60, done.stdout[-2_000:] + done.stderr[-2_000:]
    assert re.fullmatch(
        r"minute +1: this minute A +[\d.]+% B +[\d.]+%; so far A +[\d.]+% of \d+, B +[\d.]+% of \d+; "
        r"likelihood ratio [\d.e+-]+",
        minutes[0],
    ), minutes[0]
    decisions = [line for line in lines if line.startswith("SIGNIFICANT ")]
    assert len(decisions) == 1 and re.fullmatch(
        r"SIGNIFICANT at minute \d+: B converts better \(alpha 0\.05\)", decisions[0]
    ), decisions
