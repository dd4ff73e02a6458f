"""``python -m benchmarks state``: keyed state with many keys, its checkpoints and its restore (issue 15).

One measurement is one process (so its peak RSS is its own): ``state`` runs
``python -m benchmarks.state_bench`` once per number of keys and backend and relays the JSON line
each prints.

**The job** is a real :class:`~actorflow.Flow`: a source of ``events`` card transactions over
``keys`` cards (event ``i`` is card ``i % keys``, so every card is touched; ``events`` is ``2 *
keys`` by default), keyed by card, into a :class:`~actorflow.KeyedProcessFunction` keeping a small
profile per card in value state: ``(count, sum of cents, last seen)``. It checkpoints into a
temporary :class:`~benchmarks.checkpoints.MeteredStorage` (a ``FileSystemStorage`` that counts the
bytes it wrote). The run, in order:

1. **fill**: the source reads its events while checkpoints are taken every
   ``checkpoint_interval_ms``; ``events_per_s`` is the events over the time from the first read to
   the last event processed (the checkpoints taken meanwhile included);
2. **full checkpoint** of all ``keys`` cards: ``checkpoint_bytes`` is its size as stored (its
   parts and every shared file it lists, whoever stored them: what a restore reads);
3. **1 % changes**, ``rounds`` times (default 5): one event each for every 100th card (another
   1 % each round: cards ``n`` with ``n % 100 == round``), then a checkpoint.
   ``incremental_checkpoint_bytes`` is the mean of what these checkpoints wrote, and
   ``incremental_checkpoint_bytes_each`` lists them (the heap writes its whole state every time,
   so about ``checkpoint_bytes``; ``heap-incremental`` the changed cards, and a new base once the
   changes outgrow the last one; RocksDB's native checkpoints store only the SST files no earlier
   checkpoint stored: about 1 % of a full one, more when a compaction has rewritten files since,
   which is why one round alone says little);
4. **crash**: the run is cancelled (no final checkpoint), so the last checkpoint is the one after
   the last change;
5. **restore**: a new flow from the storage, timed from ``run()`` until its source starts reading
   (every operator has opened and restored its state by then: ``restore_s``); then, untimed, the
   source sends one probe per card and the function checks the card's restored profile (count and
   last seen). A restore that lost or changed any card fails the run instead of reporting a time.

**The pause.** A probe task on the event loop sleeps 1 ms at a time and records every wake-up that
came more than 1 ms late, with when it slept and when it woke. Checkpoints are triggered by the
benchmark itself with :meth:`Flow.checkpoint` (the same trigger the flow's periodic timer calls), so
it knows each one's start and end; ``checkpoint_pause_ms`` is the longest late wake-up that overlaps
a checkpoint. This measures what a checkpoint costs everything else on the loop (snapshot, pickling,
the collector, whatever else the loop is kept from doing), not what one call takes: instrumenting
the snapshot call would miss work done elsewhere on the loop for the checkpoint.
``full_size_checkpoint_pause_ms`` is the same over the checkpoints taken once every card exists
(the full one and the rounds'), when the state no longer grows: while it grows, a checkpoint may
overlap a pause of the fill's own, such as a dict outgrowing its table.
``pause_outside_checkpoints_ms`` is the same outside checkpoints (the time one batch of records
holds the loop: the floor under the checkpoint number).

**Where the heap stops.** With ``--max-rss-mb M`` the parent process reads the run's resident set
every 20 ms (from ``/proc/PID/status``: a thread inside the run could not, since pickling a
snapshot holds the GIL for seconds) and kills the run once it passes ``M``; the line then says
``"error"``, the run's last progress line (``"during"``) and its peak. Run it at growing ``keys``
to find the largest that fits a memory budget.

>>> import tempfile
>>> line = measure(1_000, "heap", events=2_000, checkpoint_interval_ms=10_000, directory=tempfile.mkdtemp())
>>> line["keys"], line["events"], line["restored_keys"]
(1000, 2000, 1000)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import IO, Any, NamedTuple, NotRequired, TypedDict

import orjson

from actorflow import Collector, Context, Flow, KeyedProcessFunction, RuntimeContext, ValueStateDescriptor
from actorflow.api.flow import new_event_loop
from actorflow.operators.base import OperatorContext
from actorflow.operators.sources import Source
from benchmarks.checkpoints import MeteredStorage
from benchmarks.runner import peak_rss_mb

__all__ = [
    "BACKENDS",
    "BackendUnavailable",
    "StateMeasurement",
    "main",
    "measure",
    "run_in_subprocess",
]

BACKENDS = ("heap", "heap-incremental", "rocksdb")
#: One card in this many is changed by each round of the second phase (1 %).
CHANGE_EVERY = 100
#: Rounds of 1 % changes, each followed by a checkpoint (see the module docstring).
ROUNDS = 5
#: The probe's sleep, in seconds; a wake-up later than this is a pause of the loop.
PROBE_S = 0.001
#: Late wake-ups below this (seconds) are not kept: scheduling noise.
KEEP_GAP_S = 0.0005
#: How often the RSS guard reads the run's ``/proc/PID/status``, in seconds.
GUARD_S = 0.02
#: The source says how far it got every this many events (on stderr).
PROGRESS_EVERY = 1 << 18
REPO_ROOT = Path(__file__).resolve().parent.parent


class StateMeasurement(TypedDict):
    """The JSON line of one run (times in ms unless named ``_s``)."""

    backend: str
    keys: int
    events: int
    events_per_s: float
    peak_rss_mb: float
    checkpoint_pause_ms: float
    """The longest pause of the event loop that overlaps a checkpoint."""
    full_size_checkpoint_pause_ms: float
    """The same over the checkpoints taken once every card existed (the full one and the rounds'):
    the state no longer grew, so no pause of the fill's own (a dict outgrowing its table) falls into
    one of them by chance."""
    checkpoint_bytes: int
    """The size of the checkpoint of all ``keys`` cards: its parts and the shared files it lists
    (RocksDB's SST files, most of them stored by earlier checkpoints already)."""
    incremental_checkpoint_bytes: int
    """Bytes written by a checkpoint after 1 % of the cards changed (its parts and the shared files
    no earlier checkpoint had stored), the mean over the rounds."""
    incremental_checkpoint_bytes_each: list[int]
    """The same, round by round."""
    restore_s: float
    restored_keys: int
    """Cards whose profile the restored flow found, and found right (must equal ``keys``)."""
    checkpoints: int
    """Checkpoints taken by the first flow: the periodic ones, the full one, the one after the change."""
    pause_outside_checkpoints_ms: float
    peak_rss_before_restore_mb: float
    child_peak_rss_mb: float
    """The largest peak RSS of a child the run forked to pickle a heap checkpoint (0: none). Its
    pages are the run's until one of them writes to them, so the two peaks do not add up."""
    error: NotRequired[str]


class BackendUnavailable(RuntimeError):
    """The state backend asked for does not exist (yet) in this actorflow."""


class Probe(NamedTuple):
    """A restored flow's check of one card: what its profile must say."""

    card: str
    times: int
    last_seen: int


def card(number: int) -> str:
    """Card ``number``'s id (the key)."""
    return f"c{number:09d}"


def changed_cards(keys: int, turn: int = 0) -> range:
    """The cards round ``turn`` of the second phase changes (from 0): every ``CHANGE_EVERY``-th
    one, from card ``turn`` on."""
    return range(turn, keys, CHANGE_EVERY)


def change_time(number: int, keys: int, events: int) -> int:
    """The time of the second phase's event for card ``number`` (after every earlier event)."""
    return events + (number % CHANGE_EVERY) * keys + number


def expected_profile(number: int, keys: int, events: int, rounds: int = 1) -> tuple[int, int]:
    """``(count, last seen)`` of card ``number`` after the fill and ``rounds`` rounds of changes
    (events are ``i % keys``)."""
    count = events // keys + (1 if number < events % keys else 0)
    last_seen = number + keys * (count - 1)
    if number % CHANGE_EVERY < rounds:
        return count + 1, change_time(number, keys, events)
    return count, last_seen


@dataclass
class Tally:
    """What the restored flow's checks found. Shared, not copied, by the per-instance copies of the
    process function (``__deepcopy__`` returns it), so the benchmark reads it after the run."""

    checked: int = 0
    missing: int = 0
    wrong: int = 0
    first_bad: list[str] = field(default_factory=list)

    def __deepcopy__(self, memo: dict[int, Any]) -> Tally:
        return self

    def bad(self, what: str) -> None:
        if len(self.first_bad) < 5:
            self.first_bad.append(what)


class CardProfiles(KeyedProcessFunction[Any, Any]):
    """Per card: ``(count, sum of cents, last seen)`` in value state; a :class:`Probe` checks it."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    def open(self, ctx: RuntimeContext) -> None:
        self.profile = ctx.get_state(ValueStateDescriptor[tuple[int, int, int]]("profile"))

    def process_element(self, value: Any, ctx: Context, out: Collector) -> None:
        profile = self.profile.value()
        if type(value) is Probe:
            tally = self.tally
            tally.checked += 1
            if profile is None:
                tally.missing += 1
                tally.bad(f"{value.card}: missing")
            elif (profile[0], profile[2]) != (value.times, value.last_seen):
                tally.wrong += 1
                tally.bad(f"{value.card}: {profile} instead of count {value.times}, last {value.last_seen}")
            return
        _, cents, ts = value
        if profile is None:
            self.profile.update((1, cents, ts))
        else:
            self.profile.update((profile[0] + 1, profile[1] + cents, ts))


@dataclass
class Signals:
    """How the source and the benchmark's driver wait for each other (one event loop)."""

    filled: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    go_on: asyncio.Event = field(default_factory=asyncio.Event)
    loaded: asyncio.Event = field(default_factory=asyncio.Event)
    verified: asyncio.Event = field(default_factory=asyncio.Event)
    first_read_at: float = 0.0
    filled_at: float = 0.0
    loaded_at: float = 0.0
    #: Events read so far (the checkpoints' position).
    events_read: int = 0


class CardSource(Source):
    """Phase 1: ``events`` events; waits; phase 2: ``rounds`` times one event per card of the
    round, waiting before each; then waits (forever: the driver cancels the run). Restored, it
    sends one :class:`Probe` per card instead, then waits.

    Its position is how many events it has read; a restore only needs to know it was restored.
    """

    def __init__(self, keys: int, events: int, rounds: int, signals: Signals) -> None:
        self.keys = keys
        self.events = events
        self.rounds = rounds
        self.signals = signals
        self.restored: Any = None

    def snapshot_state(self, context: OperatorContext) -> Any:
        return self.signals.events_read

    def restore_state(self, context: OperatorContext, states: list[Any]) -> None:
        self.restored = states

    async def read(self, context: OperatorContext) -> AsyncIterator[list[Any]]:
        signals = self.signals
        size = context.batch_size
        keys, events = self.keys, self.events
        if self.restored is not None:
            signals.loaded_at = time.perf_counter()
            signals.loaded.set()
            for first in range(0, keys, size):
                probes = []
                for number in range(first, min(first + size, keys)):
                    count, last_seen = expected_profile(number, keys, events, self.rounds)
                    probes.append(Probe(card(number), count, last_seen))
                yield probes
            signals.verified.set()
            await asyncio.Event().wait()  # the driver cancels the run: no final checkpoint
            return
        signals.first_read_at = time.perf_counter()
        for first in range(0, events, size):
            yield [(card(i % keys), i % 9973 + 1, i) for i in range(first, min(first + size, events))]
            signals.events_read = read = min(first + size, events)
            if read % PROGRESS_EVERY < size:
                _progress(f"fill: {read:,} events read")
        signals.filled_at = time.perf_counter()
        signals.filled.set()
        for turn in range(self.rounds):
            await signals.go_on.wait()
            signals.go_on.clear()
            changed = changed_cards(keys, turn)
            for first in range(0, len(changed), size):
                numbers = changed[first : first + size]
                yield [(card(n), 1, change_time(n, keys, events)) for n in numbers]
            signals.events_read += len(changed)
            signals.changed.set()
        await asyncio.Event().wait()


class LoopProbe:
    """Sleeps ``PROBE_S`` at a time on the event loop and keeps every late wake-up (see the module
    docstring): ``gaps`` holds ``(slept at, woke at)`` of those later than ``KEEP_GAP_S``."""

    def __init__(self) -> None:
        self.gaps: list[tuple[float, float]] = []

    async def run(self) -> None:
        clock = time.perf_counter
        gaps = self.gaps
        while True:
            before = clock()
            await asyncio.sleep(PROBE_S)
            after = clock()
            if after - before - PROBE_S > KEEP_GAP_S:
                gaps.append((before, after))

    def longest(self, windows: list[tuple[float, float]], *, inside: bool) -> float:
        """The longest pause (ms) overlapping one of ``windows`` (``inside``) or none of them."""
        longest = 0.0
        for before, after in self.gaps:
            overlaps = any(before < end and after > start for start, end in windows)
            if overlaps == inside:
                longest = max(longest, after - before - PROBE_S)
        return round(longest * 1000, 1)


def _progress(text: str) -> None:
    """One line on stderr: how far the run got (the RSS guard reports the last one)."""
    print(f"state_bench: {text}", file=sys.stderr, flush=True)


def _memory_of(pid: int) -> tuple[float, float]:
    """``(VmRSS, VmHWM)`` of process ``pid`` in MiB: now and its peak; zeros once it is gone."""
    now = peak = 0.0
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    now = int(line.split()[1]) / 1024
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return now, peak


def _build(
    keys: int,
    events: int,
    rounds: int,
    backend: str,
    state_dir: Path,
    storage: MeteredStorage,
    signals: Signals,
    tally: Tally,
) -> tuple[Flow, CardSource]:
    """The benchmark's flow (the same graph for the first run and the restore)."""
    flow = Flow("state-bench")
    if backend == "heap-incremental":
        flow.set_state_backend("heap", incremental=True)
    elif backend != "heap":
        set_backend = getattr(flow, "set_state_backend", None)
        if set_backend is None:
            raise BackendUnavailable(
                f"state backend {backend!r} is not available yet: "
                "Flow has no set_state_backend() (issue 15)"
            )
        set_backend(backend, path=str(state_dir))
    flow.enable_checkpointing(storage)
    source = CardSource(keys, events, rounds, signals)
    flow.from_source(source, name="cards").key_by(itemgetter(0)).process(
        CardProfiles(tally), name="profiles"
    ).collect(name="nothing")  # the function emits nothing; a flow ends in a sink
    return flow, source


async def _checkpoint(flow: Flow, storage: MeteredStorage, windows: list[tuple[float, float]]) -> int:
    """Take a checkpoint; note its start and end in ``windows``; return the bytes it wrote."""
    before = storage.bytes_written
    started = time.perf_counter()
    await flow.checkpoint()
    windows.append((started, time.perf_counter()))
    return storage.bytes_written - before


def _stored_size(storage: MeteredStorage) -> int:
    """The size of the newest complete checkpoint: its parts and every shared file it lists."""
    info = storage.latest()
    assert info is not None
    parts: int = sum(entry["size"] for entry in info.parts.values())
    shared: int = sum(entry["size"] for entry in info.shared.values())
    return parts + shared


async def _periodic(
    flow: Flow,
    storage: MeteredStorage,
    windows: list[tuple[float, float]],
    interval_ms: int,
    until: asyncio.Event,
) -> None:
    """Checkpoint every ``interval_ms`` (from one start to the next, as the flow's own timer does)
    until ``until`` is set; a checkpoint in progress then completes first."""
    next_start = time.perf_counter() + interval_ms / 1000
    while not until.is_set():  # wait_for with no time left times out even on a set event
        try:
            await asyncio.wait_for(until.wait(), max(0.0, next_start - time.perf_counter()))
            return
        except TimeoutError:
            pass
        next_start = time.perf_counter() + interval_ms / 1000
        await _checkpoint(flow, storage, windows)


async def _until(event: asyncio.Event, job: asyncio.Future[Any], ended: str) -> None:
    """Wait for ``event``; raise what ``job`` failed with, or ``RuntimeError(ended)``, if it ends first."""
    waiting = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({job, waiting}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
    if not event.is_set():
        job.result()
        raise RuntimeError(ended)


async def _cancel(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait for it; re-raise what it failed with before it was cancelled."""
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled() and task.exception() is not None:
        task.result()


async def _measure(
    keys: int,
    backend: str,
    events: int,
    rounds: int,
    checkpoint_interval_ms: int,
    directory: Path,
    signals: Signals,
) -> StateMeasurement:
    storage = MeteredStorage(directory / "checkpoints")
    tally = Tally()
    flow, _ = _build(keys, events, rounds, backend, directory / "state", storage, signals, tally)
    probe = LoopProbe()
    probing = asyncio.ensure_future(probe.run())
    windows: list[tuple[float, float]] = []
    job = asyncio.ensure_future(flow.run())
    periodic = asyncio.ensure_future(
        _periodic(flow, storage, windows, checkpoint_interval_ms, signals.filled)
    )
    await _until(signals.filled, job, "the flow ended before its source had read every event")
    await periodic
    periodic_taken = len(windows)
    _progress(f"the full checkpoint, after {periodic_taken} periodic ones")
    await _checkpoint(flow, storage, windows)
    full_bytes = _stored_size(storage)
    changed_bytes = []
    for turn in range(rounds):
        signals.go_on.set()
        await _until(signals.changed, job, "the flow ended before its source changed the cards")
        signals.changed.clear()
        _progress(f"the checkpoint after change {turn + 1} of {rounds}")
        changed_bytes.append(await _checkpoint(flow, storage, windows))
    await _cancel(job)  # a crash: the last checkpoint is the one after the last change
    await _cancel(probing)
    taken = len(windows)
    rate_seconds = signals.filled_at - signals.first_read_at
    before_restore = peak_rss_mb()
    del flow, job
    gc.collect()

    _progress("the restore")
    restored_signals = Signals()
    again, _ = _build(
        keys, events, rounds, backend, directory / "state-restored", storage, restored_signals, tally
    )
    started = time.perf_counter()
    restoring = asyncio.ensure_future(again.run())
    await _until(restored_signals.loaded, restoring, "the restored flow ended before its source started")
    restore_s = restored_signals.loaded_at - started
    await _until(
        restored_signals.verified, restoring, "the restored flow ended before it checked every card"
    )
    await _cancel(restoring)
    restored = tally.checked - tally.missing - tally.wrong
    if tally.checked != keys or restored != keys:
        raise RuntimeError(
            f"the restore lost state: {tally.checked:,} cards checked of {keys:,}, {tally.missing:,} "
            f"missing, {tally.wrong:,} wrong (first: {'; '.join(tally.first_bad)})"
        )
    return {
        "backend": backend,
        "keys": keys,
        "events": events,
        "events_per_s": round(events / rate_seconds, 1) if rate_seconds > 0 else 0.0,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "checkpoint_pause_ms": probe.longest(windows, inside=True),
        "full_size_checkpoint_pause_ms": probe.longest(windows[periodic_taken:], inside=True),
        "checkpoint_bytes": full_bytes,
        "incremental_checkpoint_bytes": round(sum(changed_bytes) / rounds),
        "incremental_checkpoint_bytes_each": changed_bytes,
        "restore_s": round(restore_s, 3),
        "restored_keys": restored,
        "checkpoints": taken,
        "pause_outside_checkpoints_ms": probe.longest(windows, inside=False),
        "peak_rss_before_restore_mb": round(before_restore, 1),
        "child_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }


def measure(
    keys: int,
    backend: str,
    *,
    events: int | None = None,
    rounds: int = ROUNDS,
    checkpoint_interval_ms: int = 10_000,
    directory: str | os.PathLike[str] | None = None,
) -> StateMeasurement:
    """Run the benchmark once in this process (see the module docstring) and return its line.

    ``directory`` holds the checkpoints and the backend's files (a temporary one, removed after,
    when None). Raises :class:`BackendUnavailable` for a backend this actorflow lacks,
    ``ValueError`` for ``events < keys`` (some cards would never be touched), ``RuntimeError`` if
    the restore lost or changed any card.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {list(BACKENDS)}")
    events = 2 * keys if events is None else events
    if events < keys:
        raise ValueError(f"--events ({events:,}) must be at least --keys ({keys:,}): every card is touched")
    if not 1 <= rounds <= CHANGE_EVERY:
        raise ValueError(f"--rounds ({rounds}) must be 1 to {CHANGE_EVERY}: each round changes other cards")
    signals = Signals()
    owned = directory is None
    root = Path(tempfile.mkdtemp(prefix="actorflow-state-bench-") if directory is None else directory)
    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            return runner.run(
                _measure(keys, backend, events, rounds, checkpoint_interval_ms, root, signals)
            )
    finally:
        if owned:
            shutil.rmtree(root, ignore_errors=True)


def run_in_subprocess(
    keys: int,
    backend: str,
    *,
    events: int | None = None,
    rounds: int = ROUNDS,
    checkpoint_interval_ms: int = 10_000,
    max_rss_mb: float | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """:func:`measure` in a fresh ``python -m benchmarks.state_bench`` process; its JSON line.

    A run that failed returns ``{"backend", "keys", "error"}``; one killed past ``max_rss_mb``
    (the RSS guard, see the module docstring) also ``"during"`` (its last progress line) and
    ``"peak_rss_mb"``.
    """
    command = [sys.executable, "-m", "benchmarks.state_bench", "--keys", str(keys), "--backend", backend]
    if events is not None:
        command += ["--events", str(events)]
    command += ["--rounds", str(rounds), "--checkpoint-interval-ms", str(checkpoint_interval_ms)]
    failure: dict[str, Any] = {"backend": backend, "keys": keys}
    deadline = None if timeout is None else time.monotonic() + timeout
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen(command, cwd=REPO_ROOT, stdout=out, stderr=err)
        try:
            while child.poll() is None:
                if max_rss_mb is not None:
                    now, peak = _memory_of(child.pid)
                    if now > max_rss_mb:
                        child.kill()
                        child.wait()
                        return {
                            **failure,
                            "error": f"RSS {now:,.0f} MB passed --max-rss-mb {max_rss_mb:g}",
                            "during": _last_progress(err),
                            "peak_rss_mb": round(peak, 1),
                        }
                if deadline is not None and time.monotonic() > deadline:
                    child.kill()
                    child.wait()
                    return {
                        **failure,
                        "error": f"timed out after {timeout:g} s",
                        "during": _last_progress(err),
                    }
                time.sleep(GUARD_S)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        out.seek(0)
        for line in reversed(out.read().splitlines()):
            try:
                found = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(found, dict):
                return found
        return {**failure, "error": _last_progress(err) or f"exit status {child.returncode}"}


def _last_progress(err: IO[bytes]) -> str:
    """The last line the run wrote on stderr (its progress, or the end of a traceback)."""
    err.seek(0)
    lines = err.read().decode(errors="replace").strip().splitlines()
    return lines[-1][:300] if lines else ""


def main(argv: Sequence[str] | None = None) -> int:
    """One measurement in this process: ``python -m benchmarks.state_bench --keys N --backend B``.

    Prints one JSON line (with ``"error"`` if the run failed) and returns the exit status: 0, 1 for
    a failed run, 2 for a backend that is not available.
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks.state_bench", description=__doc__)
    parser.add_argument("--keys", type=int, required=True)
    parser.add_argument("--backend", choices=BACKENDS, default="heap")
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--checkpoint-interval-ms", type=int, default=10_000)
    args = parser.parse_args(argv)
    status = 0
    try:
        line: dict[str, Any] = dict(
            measure(
                args.keys,
                args.backend,
                events=args.events,
                rounds=args.rounds,
                checkpoint_interval_ms=args.checkpoint_interval_ms,
            )
        )
    except BackendUnavailable as exc:
        line, status = {"backend": args.backend, "keys": args.keys, "error": str(exc)}, 2
    except Exception as exc:  # reported as the run's line: the caller goes on with the next run
        line = {"backend": args.backend, "keys": args.keys, "error": f"{type(exc).__name__}: {exc}"}
        status = 1
    sys.stdout.buffer.write(orjson.dumps(line) + b"\n")
    sys.stdout.flush()
    return status


if __name__ == "__main__":
    sys.exit(main())
