"""``examples/network_monitoring.py``: exact per-cell percentiles in sliding windows, and alerts on
exactly the cells whose p99 degrades, soon after it does.

The generated probes degrade two cells of eight at minute 40 (8% of their probes 200 to 400 ms
slower). On the healthy cells the worst p99 over the baseline is about 1.3x (1.55x over five seeds),
under the alert factor of 2; on the degraded ones the first window that holds a minute of the
degradation is 4x to 7x. So the alerts must name exactly the two degraded cells, and each must
start in the first three windows that end after the degradation began.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from actorflow import Flow
from examples import network_monitoring as nm

ROOT = Path(__file__).resolve().parent.parent


def run(probes: nm.Probes, parallelism: int = 1) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The example's windows and alerts for ``probes``."""
    flow = Flow("network-monitoring", parallelism=parallelism)
    windows = nm.percentiles(nm.probe_stream(flow, probes))
    alerts = nm.alerts(windows).collect()
    collected = windows.collect()
    flow.execute()
    return collected.values, alerts.values


def test_the_alerts_name_exactly_the_degraded_cells_soon_after_they_degrade(parallelism: int) -> None:
    _, alerts = run(nm.Probes(), parallelism)

    assert {alert["cell"] for alert in alerts} == set(nm.DEGRADED), alerts
    for cell in nm.DEGRADED:
        own = sorted((a for a in alerts if a["cell"] == cell), key=lambda a: a["window_end"])
        # degraded from the first window that holds degraded probes to the end: one alert, no recovery
        assert [a["kind"] for a in own] == ["degraded"], own
        first = own[0]
        assert nm.DEGRADE_AT < first["window_end"] <= nm.DEGRADE_AT + 3 * nm.SLIDE_MS, first
        assert first["p99"] > nm.FACTOR * first["baseline_p99"], first
        assert first["p50"] < 1.5 * first["baseline_p99"], "the tail degrades, not the median"


@pytest.mark.parametrize("seed", [1, 2])
def test_healthy_cells_raise_no_alert(seed: int) -> None:
    windows, alerts = run(nm.Probes(seed=seed, minutes=40, degraded=()))
    assert len(windows) == 8 * (40 + 4)  # a window ending every minute, and 4 draining at the end
    assert alerts == []


def test_the_percentiles_are_those_of_the_windows_own_probes() -> None:
    probes = nm.Probes(minutes=20)
    windows, _ = run(probes)

    # Each probe belongs to the 5 windows [start, start + 5 min) that hold its timestamp.
    samples: dict[tuple[str, int], list[float]] = defaultdict(list)
    for probe in probes:
        last_start = probe["ts"] - probe["ts"] % nm.SLIDE_MS
        for start in range(last_start, last_start - nm.WINDOW_MS, -nm.SLIDE_MS):
            samples[probe["cell"], start].append(probe["latency_ms"])
    assert sorted((w["cell"], w["window_start"]) for w in windows) == sorted(samples)

    for number, window in enumerate(windows):
        own = samples[window["cell"], window["window_start"]]
        assert window["window_end"] == window["window_start"] + nm.WINDOW_MS
        assert window["probes"] == len(own)
        assert window["p50"] == statistics.median_low(own)  # nearest rank 50 is the low median
        if number % 10 == 0:  # p99 by its definition, for a sample of windows (quadratic)
            smallest = min(x for x in own if sum(y <= x for y in own) >= 0.99 * len(own))
            assert window["p99"] == smallest


def test_percentile_refuses_no_samples() -> None:
    with pytest.raises(ValueError, match="the percentile of no samples"):
        nm.percentile([], 99)


def test_the_example_runs_from_the_command_line_and_prints_its_alerts() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "actorflow",
            "run",
            "examples/network_monitoring.py",
            "--minutes",
            "30",
            "--degrade-at",
            "20",
            "--degraded",
            "cell-01",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(("ALERT ", "RECOVERED "))]
    shape = re.compile(
        r"ALERT cell-01 at minute 2[123]: p99 [\d.]+ ms, [\d.]+x its baseline [\d.]+ ms \(p50 [\d.]+ ms\)"
    )
    assert len(lines) == 1 and shape.fullmatch(lines[0]), done.stdout[-2_000:] + done.stderr[-2_000:]
