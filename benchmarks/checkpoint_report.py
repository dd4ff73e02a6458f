"""The checkpoint sections of ``report``: what checkpoints cost a running query, and big state.

**Overhead.** For each query, the actorflow flow runs without checkpoints (its plain file sink), and
with ``--checkpoint-dir`` at each interval (the exactly-once file sink, a fresh directory per run,
so nothing is resumed). Runs are interleaved (none, 10 s, 1 s, none, ...) so that a slow spell of
the machine hits every configuration alike; each is a ``python -m benchmarks run`` subprocess on
the same generated file. The ratio is the median events/s against the median without checkpoints.
Every output is compared with the baseline engine's. Beside events/s the table shows the process's
CPU time: on a machine shared with other work, wall time swings by far more than a checkpoint costs,
CPU time much less, so its ratio is the steadier estimate of the overhead.

A run shorter than the interval only takes its final checkpoint: the table says how many each run
took, so such a row shows the cost of the exactly-once sink and the final checkpoint, not of the
interval. ``--checkpoint-events`` makes the runs longer.

**State.** ``python -m benchmarks state-run --keys N`` (see :mod:`benchmarks.state_snapshot`) in a
subprocess per repetition: the time to snapshot and to restore keyed state with ``N`` keys.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from benchmarks import generate, results

__all__ = [
    "OverheadRow",
    "StateRow",
    "format_overhead",
    "format_state",
    "measure_overhead",
    "measure_state",
]

REPO_ROOT = Path(__file__).resolve().parent.parent

STATE_PHASES = (
    ("snapshot", ("snapshot_ms", "serialise_ms", "write_ms")),
    ("restore", ("load_ms", "deserialise_ms", "restore_ms")),
)
"""The phases of a checkpoint and of a restore, as reported by ``state-run``."""


@dataclass
class OverheadRow:
    """One query at one checkpoint interval (None: without checkpoints)."""

    query: str
    interval_ms: int | None
    rates: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    checkpoints: list[int] = field(default_factory=list)
    state_bytes: list[int] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    error: str | None = None
    mismatch: str | None = None

    @property
    def rate(self) -> float | None:
        """Median events/s, or None if a run failed."""
        return statistics.median(self.rates) if self.rates and self.error is None else None

    @property
    def cpu(self) -> float | None:
        """Median CPU seconds, or None if a run failed."""
        return statistics.median(self.cpu_seconds) if self.cpu_seconds and self.error is None else None

    @property
    def label(self) -> str:
        if self.interval_ms is None:
            return "none"
        return f"every {self.interval_ms / 1000:g} s"


@dataclass
class StateRow:
    """The repetitions of ``state-run`` for one number of keys."""

    keys: int
    runs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def median(self, name: str) -> float:
        return statistics.median(float(run[name]) for run in self.runs)


def _run(args: list[str], timeout: float) -> dict[str, Any]:
    """Run ``python -m benchmarks ARGS``; return the JSON object it printed last.

    Raises ``RuntimeError`` with the reason if it fails.
    """
    try:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks", *args],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"timed out after {timeout:g} s") from None
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise RuntimeError(last[0][:200])
    for line in reversed(done.stdout.strip().splitlines()):
        try:
            found = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(found, dict):
            return found
    raise RuntimeError("printed no JSON line")


def measure_overhead(
    events: int,
    seed: int,
    repeat: int,
    queries: tuple[str, ...],
    intervals_ms: tuple[int, ...],
    timeout: float,
) -> list[OverheadRow]:
    """Run every query without checkpoints and at every interval, ``repeat`` times interleaved."""
    rows: list[OverheadRow] = []
    with tempfile.TemporaryDirectory(prefix="actorflow-checkpoints-") as tmp:
        workdir = Path(tmp)
        data = generate.write_input(workdir, events, seed)
        for query in queries:
            expected = workdir / f"{query}-expected.jsonl"
            try:
                _run(_command(query, "baseline", data, expected), timeout)
            except RuntimeError as exc:
                expected.unlink(missing_ok=True)
                print(f"  {query} baseline failed: {exc}", file=sys.stderr)
            configurations = [OverheadRow(query, None)] + [OverheadRow(query, ms) for ms in intervals_ms]
            rows += configurations
            for attempt in range(1, repeat + 1):
                for row in configurations:
                    if row.error is None:
                        print(f"  {query} checkpoints {row.label} run {attempt}/{repeat}", file=sys.stderr)
                        _measure_once(row, data, workdir / f"run-{attempt}", expected, timeout)
    return rows


def _command(query: str, engine: str, data: Path, output: Path, *extra: str) -> list[str]:
    return [
        "run", "--query", query, "--engine", engine, "--input", str(data), "--output", str(output), *extra
    ]  # fmt: skip


def _measure_once(row: OverheadRow, data: Path, workdir: Path, expected: Path, timeout: float) -> None:
    """One run of ``row``'s configuration, in a fresh directory; fills the row."""
    workdir.mkdir(exist_ok=True)
    label = "none" if row.interval_ms is None else str(row.interval_ms)
    output = workdir / f"{row.query}-{label}.jsonl"
    extra: list[str] = []
    if row.interval_ms is not None:
        checkpoints = Path(tempfile.mkdtemp(prefix="checkpoints-", dir=workdir))
        extra = ["--checkpoint-dir", str(checkpoints), "--checkpoint-interval-ms", str(row.interval_ms)]
    try:
        measurement = _run(_command(row.query, "actorflow", data, output, *extra), timeout)
    except RuntimeError as exc:
        row.error = str(exc)
        return
    row.rates.append(float(measurement["events_per_s"]))
    row.seconds.append(float(measurement["seconds"]))
    row.cpu_seconds.append(float(measurement["cpu_seconds"]))
    row.rss_mb.append(float(measurement["peak_rss_mb"]))
    checkpoints_taken = measurement.get("checkpoints")
    if checkpoints_taken is not None:
        row.checkpoints.append(int(checkpoints_taken["completed"]))
        row.state_bytes.append(int(checkpoints_taken["bytes"]))
    if expected.exists() and row.mismatch is None:
        difference = results.compare(row.query, str(output), str(expected))
        if difference is not None:
            row.mismatch = f"differs from the baseline: {difference}"
    output.unlink(missing_ok=True)


def format_overhead(rows: list[OverheadRow]) -> list[str]:
    """The Markdown table of checkpoint overhead."""
    plain = {row.query: row for row in rows if row.interval_ms is None}
    lines = [
        "| query | checkpoints | events/s | run s | CPU s | checkpoints per run | state written per run KB "
        "| peak RSS MB | equal | events/s vs none | CPU vs none |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for row in rows:
        rate, cpu = row.rate, row.cpu
        if rate is None or cpu is None:
            lines.append(f"| {row.query} | {row.label} | failed |" + " — |" * 8)
            continue
        taken = "—" if not row.checkpoints else _span(row.checkpoints, "{:d}")
        written = "—" if not row.state_bytes else f"{statistics.median(row.state_bytes) / 1024:,.1f}"
        base = plain.get(row.query)
        base_rate = base.rate if base is not None else None
        base_cpu = base.cpu if base is not None else None
        rate_ratio = f"{rate / base_rate:.3f}" if base_rate else "—"
        cpu_ratio = f"{cpu / base_cpu:.3f}" if base_cpu else "—"
        same = "yes" if row.mismatch is None else "**NO**"
        lines.append(
            f"| {row.query} | {row.label} | {rate:,.0f} | {statistics.median(row.seconds):.2f} | {cpu:.2f} "
            f"| {taken} | {written} | {max(row.rss_mb):.1f} | {same} | {rate_ratio} | {cpu_ratio} |"
        )
    return lines


def _span(values: list[int], form: str) -> str:
    low, high = min(values), max(values)
    return form.format(low) if low == high else f"{form.format(low)}-{form.format(high)}"


def measure_state(keys: int, repeat: int, timeout: float) -> StateRow:
    """``repeat`` runs of ``state-run --keys KEYS``, each in its own process."""
    row = StateRow(keys)
    for attempt in range(1, repeat + 1):
        print(f"  state {keys:,} keys run {attempt}/{repeat}", file=sys.stderr, flush=True)
        try:
            row.runs.append(_run(["state-run", "--keys", str(keys)], timeout))
        except RuntimeError as exc:
            row.error = str(exc)
            break
    return row


def format_state(row: StateRow) -> list[str]:
    """The Markdown table of snapshot and restore times for ``row.keys`` keys."""
    if row.error is not None or not row.runs:
        return [f"state with {row.keys:,} keys: failed: {row.error}"]
    size_mb = row.median("bytes") / 2**20
    lines = [
        f"Keyed state with {row.keys:,} keys (a value and an event-time timer per key), "
        f"{size_mb:,.1f} MB serialised, median of {len(row.runs)}:",
        "",
        "| | copy or read ms | (de)serialise ms | write or restore ms | total ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, phases in STATE_PHASES:
        times = [row.median(phase) for phase in phases]
        lines.append(
            f"| {name} | {times[0]:,.0f} | {times[1]:,.0f} | {times[2]:,.0f} | {sum(times):,.0f} |"
        )
    return lines
