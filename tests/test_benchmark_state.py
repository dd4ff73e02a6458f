"""``python -m benchmarks state`` (issue 15's benchmark): its JSON line and its restore check.

Structure only, on a tiny number of keys: what the numbers are is docs/benchmarks.md's business.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from actorflow import Flow
from benchmarks import state_bench

REPO_ROOT = Path(__file__).resolve().parent.parent
KEYS = 2_000
FIELDS = {
    "backend",
    "keys",
    "events",
    "events_per_s",
    "peak_rss_mb",
    "checkpoint_pause_ms",
    "full_size_checkpoint_pause_ms",
    "checkpoint_bytes",
    "incremental_checkpoint_bytes",
    "incremental_checkpoint_bytes_each",
    "restore_s",
}

needs_rocksdb = pytest.mark.skipif(
    not hasattr(Flow, "set_state_backend"), reason="the RocksDB backend is not there yet (issue 15)"
)


def _state(*args: str) -> tuple[int, list[dict[str, Any]]]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "state", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, [orjson.loads(line) for line in done.stdout.splitlines() if line.strip()]


@pytest.mark.parametrize("backend", ["heap", pytest.param("rocksdb", marks=needs_rocksdb)])
def test_one_json_line_per_run_with_every_field_and_every_key_restored(backend: str) -> None:
    status, lines = _state("--keys", str(KEYS), "--backend", backend, "--checkpoint-interval-ms", "50")
    assert status == 0, lines
    [line] = lines
    assert set(line) >= FIELDS, line
    assert (line["backend"], line["keys"], line["events"]) == (backend, KEYS, 2 * KEYS)
    assert line["restored_keys"] == KEYS  # the restored flow checked every card's profile
    for name in ("events_per_s", "peak_rss_mb", "checkpoint_bytes", "incremental_checkpoint_bytes"):
        assert isinstance(line[name], int | float) and line[name] > 0, name
    for name in ("checkpoint_pause_ms", "full_size_checkpoint_pause_ms", "restore_s"):
        assert isinstance(line[name], int | float) and line[name] >= 0, name
    assert line["full_size_checkpoint_pause_ms"] <= line["checkpoint_pause_ms"]  # fewer checkpoints
    each = line["incremental_checkpoint_bytes_each"]
    assert len(each) == state_bench.ROUNDS and all(size > 0 for size in each)
    assert line["incremental_checkpoint_bytes"] == round(sum(each) / len(each))


@pytest.mark.skipif(hasattr(Flow, "set_state_backend"), reason="the RocksDB backend exists")
def test_a_missing_backend_is_one_line_saying_so() -> None:
    status, lines = _state("--keys", "10", "--backend", "rocksdb")
    assert status == 1
    assert lines == [
        {
            "backend": "rocksdb",
            "keys": 10,
            "error": "state backend 'rocksdb' is not available yet: "
            "Flow has no set_state_backend() (issue 15)",
        }
    ]


def test_a_restore_that_loses_state_fails_instead_of_reporting_a_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Probes that expect one more event per card than the job saw: every card is "wrong".
    right = state_bench.expected_profile
    monkeypatch.setattr(
        state_bench,
        "expected_profile",
        lambda number, keys, events, rounds: (
            right(number, keys, events, rounds)[0] + 1,
            right(number, keys, events, rounds)[1],
        ),
    )
    with pytest.raises(
        RuntimeError, match="the restore lost state: 200 cards checked of 200, 0 missing, 200"
    ):
        state_bench.measure(200, "heap", directory=tmp_path)


def test_the_expected_profiles_are_those_of_the_events() -> None:
    keys, events, rounds = 250, 620, 3
    counts = {n: [0, -1] for n in range(keys)}
    for i in range(events):
        counts[i % keys] = [counts[i % keys][0] + 1, i]
    times = []
    for turn in range(rounds):
        for n in state_bench.changed_cards(keys, turn):
            time = state_bench.change_time(n, keys, events)
            times.append(time)
            counts[n] = [counts[n][0] + 1, time]
    assert times == sorted(times) and times[0] >= events  # each after every earlier event
    assert {n: list(state_bench.expected_profile(n, keys, events, rounds)) for n in range(keys)} == counts
    assert list(state_bench.changed_cards(keys)) == [0, 100, 200]
    assert list(state_bench.changed_cards(keys, 2)) == [2, 102, 202]


def test_fewer_events_than_keys_is_refused() -> None:
    with pytest.raises(ValueError, match="must be at least --keys"):
        state_bench.measure(100, "heap", events=99)


def test_a_run_past_max_rss_mb_is_ended_and_says_so() -> None:
    status, lines = _state("--keys", str(KEYS), "--max-rss-mb", "1")
    assert status == 1
    [line] = lines
    assert (line["backend"], line["keys"]) == ("heap", KEYS)
    assert "passed --max-rss-mb 1" in line["error"] and line["peak_rss_mb"] > 1


def test_periodic_checkpoints_end_once_the_fill_ends_even_when_they_take_longer_than_the_interval() -> None:
    class Storage:
        bytes_written = 0

    class Checkpointing:
        """A flow whose checkpoints take longer than the interval (0 ms); the third ends the fill."""

        def __init__(self, until: asyncio.Event) -> None:
            self.until = until
            self.taken = 0

        async def checkpoint(self) -> None:
            self.taken += 1
            if self.taken == 3:
                self.until.set()

    async def scenario() -> int:
        until = asyncio.Event()
        flow = Checkpointing(until)
        periodic = state_bench._periodic(flow, Storage(), [], 0, until)  # type: ignore[arg-type]
        await asyncio.wait_for(periodic, timeout=10)  # before the fix: checkpoints forever
        return flow.taken

    assert asyncio.run(scenario()) == 3
