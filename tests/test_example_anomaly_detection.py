"""``examples/anomaly_detection.py``: its alerts find the injected anomalies.

About 2.5% of the generated transactions are injected anomalies (checked below). A constant
detector cannot beat that base rate: alerting on everything has recall 1 but precision 0.025,
alerting on nothing has recall 0. The example must reach a precision of 0.5 (20 times the base
rate) and a recall of 0.6 at once. On these 6,000 transactions it gets 0.63 and 0.72 at
parallelism 1 (the one model sees the features in the same order every run), about the same at
3, where the order in which the feature instances' outputs reach the model varies a little.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from actorflow import Flow
from examples import anomaly_detection
from examples.anomaly_detection import Transactions

ROOT = Path(__file__).resolve().parent.parent
COUNT = 6_000


def test_the_alerts_find_the_injected_anomalies_as_no_constant_detector_can(parallelism: int) -> None:
    transactions = Transactions(count=COUNT)
    injected = {tx["tx_id"] for tx in transactions if tx["injected"]}
    base_rate = len(injected) / COUNT
    assert 0.015 < base_rate < 0.04, base_rate  # alerting on everything: this precision

    flow = Flow("anomaly-detection", parallelism=parallelism)
    alerts = anomaly_detection.detect(flow.from_iterable(transactions)).collect()
    flow.execute()

    alerted = {alert["tx_id"] for alert in alerts.values}
    assert len(alerted) == len(alerts.values), "one alert per transaction at most"
    found = alerted & injected
    precision, recall = len(found) / len(alerted), len(found) / len(injected)
    assert precision >= 0.5 and recall >= 0.6, (precision, recall)
    assert all(alert["score"] > anomaly_detection.THRESHOLD for alert in alerts.values)


def test_the_example_runs_from_the_command_line_and_prints_its_alerts() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "actorflow", "run", "examples/anomaly_detection.py", "--limit", "3000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    alerts = [line for line in done.stdout.splitlines() if line.startswith("ALERT ")]
    assert alerts, done.stdout[-2_000:] + done.stderr[-2_000:]
    shape = re.compile(
        r"ALERT card c\d{4} tx \d+: [\d.]+ \([\d.]+x its average\), \d+ in 60 s, score 0\.\d{3}"
    )
    assert all(shape.fullmatch(line) for line in alerts), alerts[:3]


def test_without_river_the_example_says_how_to_install_it() -> None:
    script = (
        "import runpy, sys; sys.modules['river'] = None; "
        "sys.argv = ['examples/anomaly_detection.py']; runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 1
    assert done.stderr == "examples/anomaly_detection.py needs river: pip install 'actorflow[ml]'\n"
