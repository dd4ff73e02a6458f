"""The ``report`` command: run every query on every engine and print a Markdown table.

The data is generated once into a temporary directory. Each engine run is a separate
``python -m benchmarks run`` subprocess on that same file (so one run's memory and
warm-up cannot leak into another's), repeated ``--repeat`` times in rounds: each round runs every
engine of a query once, the baseline first, so a machine whose speed drifts over minutes (a shared
VM) slows every engine alike instead of the one whose runs fell in a slow minute. The table shows
the median events/s, the ratio to the baseline by events/s and by CPU seconds (medians of each),
and the largest peak RSS. Every output is checked against the
reference result (also computed in a subprocess, unmeasured) and every other
engine's against the baseline's.
A failed or wrong run is shown as such; the command then exits with status 1.

Then the checkpoint sections (:mod:`benchmarks.checkpoint_report`): the overhead of checkpoints on
Q2 and Q3 at each interval against none, on a longer input of its own, and the time to snapshot and
to restore keyed state with many keys.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from benchmarks import checkpoint_report, generate, results
from benchmarks.runner import QUERIES, SQL_QUERIES, Measurement

__all__ = ["Row", "machine_info", "main"]

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Row:
    """One line of the table: one query on one engine at one parallelism."""

    query: str
    engine: str
    parallelism: int
    rates: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    error: str | None = None
    """Why a run failed, if one did (the row then shows no numbers)."""
    mismatch: str | None = None
    """How the output differs from the expected result, if it does."""

    @property
    def rate(self) -> float | None:
        """Median events/s, or ``None`` if a run failed."""
        return statistics.median(self.rates) if self.rates and self.error is None else None

    @property
    def cpu(self) -> float | None:
        """Median CPU seconds of the runs, or ``None`` if a run failed."""
        return statistics.median(self.cpu_seconds) if self.cpu_seconds and self.error is None else None

    @property
    def ok(self) -> bool:
        """Whether every run succeeded with the right result."""
        return self.error is None and self.mismatch is None


def machine_info() -> list[str]:
    """Markdown bullet lines describing this machine and interpreter."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 0
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"- date: {now}",
        f"- cpu: {cpu}, {os.cpu_count()} logical cores ({usable} usable)",
        f"- python: {platform.python_implementation()} {platform.python_version()}, "
        f"orjson {orjson.__version__}",
        f"- os: {platform.platform()}",
    ]


def _run_once(
    query: str, engine: str, parallelism: int, input_path: Path, output_path: Path, timeout: float
) -> Measurement:
    """Run one measurement in a subprocess; raise ``RuntimeError`` with the reason if it fails."""
    command = [
        sys.executable, "-m", "benchmarks", "run",
        "--query", query, "--engine", engine, "--parallelism", str(parallelism),
        "--input", str(input_path), "--output", str(output_path),
    ]  # fmt: skip
    try:
        done = subprocess.run(
            command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"timed out after {timeout:g} s") from None
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise RuntimeError(last[0][:200])
    # The measurement is the last line; an engine may have printed before it.
    for line in reversed(done.stdout.strip().splitlines()):
        try:
            measurement = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(measurement, dict) and "events_per_s" in measurement:
            return measurement  # type: ignore[return-value]
    raise RuntimeError("printed no measurement line")


def _measure_once(
    row: Row, data: Path, workdir: Path, attempt: int, repeat: int, timeout: float, expected: list[Path]
) -> Path | None:
    """Run ``row`` once more (``attempt`` of ``repeat``); return its output file if the run
    succeeded (a failed run marks the row, which then runs no more)."""
    output = workdir / f"{row.query}-{row.engine}-p{row.parallelism}.jsonl"
    print(
        f"  {row.query} {row.engine} p={row.parallelism} run {attempt}/{repeat}",
        file=sys.stderr,
        flush=True,
    )
    try:
        measurement = _run_once(row.query, row.engine, row.parallelism, data, output, timeout)
    except RuntimeError as exc:
        row.error = str(exc)
        return None
    row.rates.append(float(measurement["events_per_s"]))
    row.rss_mb.append(float(measurement["peak_rss_mb"]))
    if "cpu_seconds" in measurement:
        row.cpu_seconds.append(float(measurement["cpu_seconds"]))
    for other in expected:
        difference = results.compare(row.query, str(output), str(other))
        if difference is not None and row.mismatch is None:
            row.mismatch = f"differs from {other.stem}: {difference}"
    return output


def _format_table(rows: list[Row]) -> list[str]:
    """The Markdown table for ``rows``."""
    baseline_rate = {row.query: row.rate for row in rows if row.engine == "baseline"}
    baseline_cpu = {row.query: row.cpu for row in rows if row.engine == "baseline"}
    datastream_rate = {
        row.query: row.rate for row in rows if row.engine == "actorflow" and row.parallelism == 1
    }
    lines = [
        "| query | engine | parallelism | events/s | peak RSS MB | equal | ratio to baseline "
        "| by CPU s | SQL/DataStream |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for row in rows:
        rate = row.rate
        base = baseline_rate.get(row.query)
        if row.error is not None:
            speed, rss, same = "failed", "—", "—"
        else:
            speed = f"{rate:,.0f}" if rate is not None else "—"
            rss = f"{max(row.rss_mb):.1f}"
            same = "yes" if row.mismatch is None else "**NO**"
        ratio = by_cpu = sql = "—"
        if row.engine != "baseline" and rate is not None and base:
            ratio = f"{rate / base:.2f}"
        cpu, base_cpu = row.cpu, baseline_cpu.get(row.query)
        if row.engine != "baseline" and cpu and base_cpu:
            by_cpu = f"{base_cpu / cpu:.2f}"
        datastream = datastream_rate.get(row.query)
        if row.engine == "actorflow-sql" and rate is not None and datastream:
            sql = f"{rate / datastream:.2f}"
        lines.append(
            f"| {row.query} | {row.engine} | {row.parallelism} | {speed} | {rss} | {same} | {ratio} "
            f"| {by_cpu} | {sql} |"
        )
    return lines


def main(
    events: int = 200_000,
    seed: int = 1,
    repeat: int = 3,
    parallelism: tuple[int, ...] = (1, 2),
    queries: tuple[str, ...] = QUERIES,
    engines: tuple[str, ...] = ("baseline", "actorflow", "actorflow-sql"),
    timeout: float = 1_800.0,
    checkpoint_events: int = 2_000_000,
    checkpoint_queries: tuple[str, ...] = ("q2", "q3"),
    checkpoint_intervals_ms: tuple[int, ...] = (10_000, 1_000),
    state_keys: int = 1_000_000,
) -> int:
    """Run the report and print it to stdout (progress goes to stderr); return the exit status.

    ``checkpoint_events`` 0 skips the checkpoint overhead section, ``state_keys`` 0 the snapshot
    and restore times.
    """
    rows: list[Row] = []
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="actorflow-bench-") as tmp:
        workdir = Path(tmp)
        data = generate.write_input(workdir, events, seed)
        for query in queries:
            expected = workdir / f"{query}-reference.jsonl"
            print(f"  {query} reference", file=sys.stderr, flush=True)
            try:
                _run_once(query, "reference", 1, data, expected, timeout)
            except RuntimeError as exc:
                problems.append(f"- {query} reference failed: {exc}")
            query_rows = [
                Row(query, engine, level)
                for engine in engines
                if engine != "actorflow-sql" or query in SQL_QUERIES
                for level in ((1,) if engine != "actorflow" else parallelism)
            ]
            rows.extend(query_rows)
            for attempt in range(1, repeat + 1):
                baseline_output: Path | None = None
                for row in query_rows:
                    if row.error is not None:
                        continue
                    checks = [expected] if expected.exists() else []
                    if row.engine != "baseline" and baseline_output is not None:
                        checks.append(baseline_output)
                    output = _measure_once(row, data, workdir, attempt, repeat, timeout, checks)
                    if row.engine == "baseline":
                        baseline_output = output
    overhead: list[checkpoint_report.OverheadRow] = []
    if checkpoint_events and checkpoint_queries:
        overhead = checkpoint_report.measure_overhead(
            checkpoint_events, seed, repeat, checkpoint_queries, checkpoint_intervals_ms, timeout
        )
    state = checkpoint_report.measure_state(state_keys, repeat, timeout) if state_keys else None
    info = machine_info()
    print(f"Benchmark: {events:,} events, seed {seed}, median of {repeat} runs", *info, sep="\n")
    print()
    print(*_format_table(rows), sep="\n")
    if overhead:
        print()
        print(f"Checkpoint overhead: {checkpoint_events:,} events, seed {seed}, median of {repeat} runs")
        print()
        print(*checkpoint_report.format_overhead(overhead), sep="\n")
        problems += [
            f"- {row.query} checkpoints {row.label}: "
            + (f"failed: {row.error}" if row.error is not None else f"wrong result: {row.mismatch}")
            for row in overhead
            if row.error is not None or row.mismatch is not None
        ]
    if state is not None:
        print()
        print(*checkpoint_report.format_state(state), sep="\n")
        if state.error is not None:
            problems.append(f"- state with {state.keys:,} keys: failed: {state.error}")
    problems += [
        f"- {row.query} {row.engine} p={row.parallelism}: "
        + (f"failed: {row.error}" if row.error is not None else f"wrong result: {row.mismatch}")
        for row in rows
        if not row.ok
    ]
    if problems:
        print()
        print(*problems, sep="\n")
    return 1 if problems else 0
