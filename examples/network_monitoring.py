"""Quality monitoring of a network: per-cell latency percentiles in sliding event-time windows, and
an alert when a cell's tail latency degrades against its own recent past.

Probes measure the round-trip latency of each cell (a radio cell, a site, a link) about once a
second of event time. The flow

1. cuts each cell's probes into **sliding event-time windows** of 5 minutes, one starting every
   minute (``SlidingEventTimeWindows``), and computes the window's **p50 and p99** with a
   ``ProcessWindowFunction``. The percentiles are **exact** (nearest rank over the window's sorted
   samples, see :func:`percentile`): a window holds about 300 samples per cell, so sorting them
   costs microseconds and there is no error to explain. At millions of samples per window one
   would swap in an ``AggregateFunction`` over a mergeable sketch (a t-digest or a log-bucketed
   histogram) to keep state small, and check it against this exact version.
2. keys the windows by cell again and compares each p99 with a **baseline** kept in keyed list
   state: the median p99 of the cell's previous ``HISTORY`` windows (the "previous hour", scaled
   down to 20 minutes). A p99 above ``FACTOR`` times the baseline opens an alert; the first p99 back
   under it closes the alert (``recovered``). Windows that are judged degraded do not enter the
   baseline, so a lasting degradation keeps its alert instead of becoming the new normal. No alert
   is raised before ``MIN_HISTORY`` windows of history exist.

The probes are generated (seeded, the same for the same seed): 8 cells with their own usual
latency (a log-normal around 20 to 60 ms, with a rare spike), and from ``degrade_at`` on the cells
named in ``degraded`` send 8% of their probes through a congested path (200 to 400 ms more): their
p50 hardly moves, their p99 jumps. Probes arrive up to 1.5 s out of order (watermarks allow 2 s).

Run it::

    actorflow run examples/network_monitoring.py
    actorflow run examples/network_monitoring.py --minutes 90 --degraded cell-02 --seed 3
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
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
    ProcessWindowFunction,
    RuntimeContext,
    SlidingEventTimeWindows,
    ValueState,
    ValueStateDescriptor,
    WatermarkStrategy,
    WindowContext,
)

MINUTE = 60_000
#: The first event time, on a whole minute (2023-11-14T22:13:00Z).
START_TS = 1_699_999_980_000
#: The windows: 5 minutes long, a new one every minute.
WINDOW_MS, SLIDE_MS = 5 * MINUTE, MINUTE
#: The baseline is the median p99 of this many previous windows of the cell.
HISTORY = 20
#: No alert before a cell has this many windows of history.
MIN_HISTORY = 10
#: A p99 above this many times the baseline is degraded.
FACTOR = 2.0
#: How far out of order probes arrive, and what the watermarks allow.
JITTER_MS, OUT_OF_ORDER_MS = 1_500, 2_000
#: The generator's defaults: minutes of probes, when and where latency degrades.
MINUTES = 60
DEGRADE_AT = START_TS + 40 * MINUTE
DEGRADED = ("cell-03", "cell-06")


def percentile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0 < q <= 100) of the ascending ``ordered``: its smallest
    sample with at least ``q``% of the samples at or below it. Raises ``ValueError`` when empty.

    >>> percentile([10.0, 20.0, 30.0, 40.0], 50), percentile([10.0, 20.0, 30.0, 40.0], 99)
    (20.0, 40.0)
    """
    if not ordered:
        raise ValueError("the percentile of no samples")
    return ordered[max(math.ceil(q / 100 * len(ordered)), 1) - 1]


class Probes:
    """Generated probes: ``{"cell", "probe_id", "latency_ms", "ts"}``, about one per cell and
    second of event time for ``minutes`` minutes from ``start_ts``, in arrival order (up to
    ``JITTER_MS`` out of event-time order). The same for the same arguments; iterable again.

    >>> probes = list(Probes(minutes=1, cells=2))
    >>> len(probes), sorted(probes[0])
    (120, ['cell', 'latency_ms', 'probe_id', 'ts'])
    """

    def __init__(
        self,
        seed: int = 11,
        minutes: int = MINUTES,
        cells: int = 8,
        degraded: Sequence[str] = DEGRADED,
        degrade_at: int = DEGRADE_AT,
        start_ts: int = START_TS,
    ) -> None:
        self.seed, self.minutes, self.cells = seed, minutes, cells
        self.degraded, self.degrade_at, self.start_ts = tuple(degraded), degrade_at, start_ts

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rng = random.Random(self.seed)
        usual = {f"cell-{n:02d}": rng.uniform(20.0, 60.0) for n in range(self.cells)}
        pending: list[tuple[int, int, str, float]] = []  # (arrival, ts, cell, latency)
        for second in range(self.minutes * 60):
            for cell, median in usual.items():
                ts = self.start_ts + second * 1_000 + rng.randrange(1_000)
                latency = median * rng.lognormvariate(0.0, 0.25)
                if rng.random() < 0.005:  # a rare spike on any cell
                    latency *= rng.uniform(1.5, 2.5)
                if cell in self.degraded and ts >= self.degrade_at and rng.random() < 0.08:
                    latency += rng.uniform(200.0, 400.0)  # the congested path
                pending.append((ts + rng.randrange(JITTER_MS), ts, cell, round(latency, 2)))
        pending.sort()
        for probe_id, (_, ts, cell, latency) in enumerate(pending):
            yield {"cell": cell, "probe_id": probe_id, "latency_ms": latency, "ts": ts}


class LatencyPercentiles(ProcessWindowFunction[dict[str, Any], dict[str, Any], Any]):
    """A cell's window: its p50 and p99 latency (exact, nearest rank) and its number of probes."""

    def process(
        self, key: Any, context: WindowContext, elements: list[dict[str, Any]], out: Collector
    ) -> None:
        ordered = sorted(probe["latency_ms"] for probe in elements)
        out.collect(
            {
                "cell": key,
                "window_start": context.window.start,
                "window_end": context.window.end,
                "probes": len(ordered),
                "p50": percentile(ordered, 50),
                "p99": percentile(ordered, 99),
            }
        )


class DegradationAlerts(KeyedProcessFunction[dict[str, Any], dict[str, Any]]):
    """Per cell: an alert when a window's p99 goes above ``factor`` times the median p99 of the
    cell's previous ``history`` healthy windows, and a recovery when it comes back under."""

    def __init__(
        self, factor: float = FACTOR, history: int = HISTORY, min_history: int = MIN_HISTORY
    ) -> None:
        self.factor, self.history, self.min_history = factor, history, min_history

    def open(self, ctx: RuntimeContext) -> None:
        self.recent: ListState[float] = ctx.get_list_state(ListStateDescriptor("recent-p99"))
        self.alerting: ValueState[bool] = ctx.get_state(ValueStateDescriptor("alerting", default=False))

    def process_element(self, window: dict[str, Any], ctx: Context, out: Collector) -> None:
        recent = list(self.recent.get())
        p99 = window["p99"]
        baseline = statistics.median(recent) if len(recent) >= self.min_history else None
        degraded = baseline is not None and p99 > self.factor * baseline
        if degraded != self.alerting.value():
            self.alerting.update(degraded)
            out.collect(
                {
                    "kind": "degraded" if degraded else "recovered",
                    "cell": window["cell"],
                    "window_end": window["window_end"],
                    "p50": window["p50"],
                    "p99": p99,
                    "baseline_p99": baseline,
                }
            )
        if not degraded:
            self.recent.update([*recent, p99][-self.history :])


def percentiles(probes: DataStream[dict[str, Any]]) -> DataStream[dict[str, Any]]:
    """Each cell's p50 and p99 in 5-minute windows sliding by a minute (``probes`` carry event
    time)."""
    return (
        probes.key_by("cell")
        .window(SlidingEventTimeWindows.of(WINDOW_MS, SLIDE_MS))
        .process(LatencyPercentiles(), name="latency-percentiles")
    )


def alerts(windows: DataStream[dict[str, Any]], factor: float = FACTOR) -> DataStream[dict[str, Any]]:
    """Degradation alerts and recoveries from the windows of :func:`percentiles`."""
    return windows.key_by("cell").process(DegradationAlerts(factor), name="p99-degradation")


def probe_stream(flow: Flow, probes: Probes) -> DataStream[dict[str, Any]]:
    """``probes`` as a source with event time from their ``ts``."""
    strategy = WatermarkStrategy.bounded_out_of_orderness(OUT_OF_ORDER_MS, "ts")
    return flow.from_iterable(probes, name="probes", watermarks=strategy)


def describe(alert: dict[str, Any]) -> str:
    """One line per alert or recovery, as the example prints it."""
    minute = (alert["window_end"] - START_TS) // MINUTE
    if alert["kind"] == "degraded":
        return (
            f"ALERT {alert['cell']} at minute {minute}: p99 {alert['p99']:.1f} ms, "
            f"{alert['p99'] / alert['baseline_p99']:.1f}x its baseline {alert['baseline_p99']:.1f} ms "
            f"(p50 {alert['p50']:.1f} ms)"
        )
    return f"RECOVERED {alert['cell']} at minute {minute}: p99 {alert['p99']:.1f} ms"


def build(probes: Probes | None = None, *, factor: float = FACTOR, parallelism: int = 1) -> Flow:
    """The example: generated probes in, alerts printed."""
    flow = Flow("network-monitoring", parallelism=parallelism)
    windows = percentiles(probe_stream(flow, probes or Probes()))
    alerts(windows, factor).map(describe, name="describe").print()
    return flow


def flow(argv: Sequence[str] | None = None) -> Flow:
    """What ``actorflow run examples/network_monitoring.py [options]`` runs."""
    parser = argparse.ArgumentParser(prog="network_monitoring", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=MINUTES, help="minutes of probes")
    parser.add_argument("--seed", type=int, default=11, help="the generator's seed")
    parser.add_argument("--degrade-at", type=int, default=40, help="minute the degradation starts")
    parser.add_argument("--degraded", nargs="*", default=list(DEGRADED), help="cells that degrade")
    parser.add_argument("--factor", type=float, default=FACTOR, help="alert above this x baseline")
    parser.add_argument("--parallelism", type=int, default=1)
    args = parser.parse_args([] if argv is None else argv)
    probes = Probes(
        seed=args.seed,
        minutes=args.minutes,
        degraded=args.degraded,
        degrade_at=START_TS + args.degrade_at * MINUTE,
    )
    return build(probes, factor=args.factor, parallelism=args.parallelism)


if __name__ == "__main__":
    flow(sys.argv[1:]).execute()
