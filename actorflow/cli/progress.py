"""Progress of a job run from a terminal, and a one-line summary at its end (on stderr).

Records are those the job's source actors read (``flow.metrics``), counted per source when there
are several (``12,000 transactions + 2 rules``: a rules file is not part of the transactions whose
share is shown). When every source knows the size
of its input (:meth:`~actorflow.operators.sources.Source.read_progress`: a JSON-lines file in
bytes, a list or a generator with a limit in records), the line shows how much is read and an ETA:
that of the source that will take longest, at its rate over the last seconds. An unbounded source
(Kafka, push, a generator without a limit) has no size, and then no ETA is shown.

The status line is redrawn in place (``\\r``) every half second; log lines wipe it before they are
written (see :class:`~actorflow.cli.logs.LogHandler`) and the next tick draws it again.

>>> clock = iter([0.0, 10.0]).__next__
>>> progress = Progress("demo", [lambda: Reading(500, ReadProgress(500, 2000, "B"))], clock=clock)
>>> progress.sample()  # at t = 10 s: 500 records, a quarter of the file
>>> progress.line()
'demo: 500 records, 50 rec/s, 25% of 2.0 kB, ETA 0:30'
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from actorflow.api.flow import Flow
from actorflow.operators.sources import ReadProgress, Source

__all__ = ["ClearingStream", "Progress", "Reading", "counted", "probes_of", "records_read"]

#: Rates are measured over this many recent seconds.
WINDOW_S = 5.0


@dataclass(frozen=True)
class Reading:
    """What a probe saw: records read (None where it does not count them), and how much of one
    sized input is read (None where it has no size); ``by_source`` the records of each source
    (name, count), ``source`` the name of the sized input."""

    records: int | None
    progress: ReadProgress | None = None
    by_source: tuple[tuple[str, int], ...] = ()
    source: str = ""


Probe = Callable[[], Reading]


def counted(records: int | None, by_source: Sequence[tuple[str, int]] = ()) -> str:
    """``12,000 records``, or per source when there are several: ``12,000 transactions + 2 rules``
    (by the sources' names).

    >>> counted(12_002, [("transactions", 12_000), ("rules", 2)]), counted(7, [("numbers", 7)])
    ('12,000 transactions + 2 rules', '7 records')
    """
    if len(by_source) > 1:
        return " + ".join(f"{count:,} {name}" for name, count in by_source)
    return f"{records or 0:,} record{'' if records == 1 else 's'}"


def records_read(flow: Flow) -> Probe:
    """Records every source actor of the current run has read (the job's metrics count them)."""

    names = [chain.head.name for chain in flow.plan().chains if chain.head.source is not None]

    def read() -> Reading:
        job = flow.metrics
        counts = dict.fromkeys(names, 0)
        if job is not None:  # deployed
            for entry in job.actors:
                if entry.source is not None:
                    counts[entry.source[0]] = counts.get(entry.source[0], 0) + entry.metrics.records_in
        return Reading(sum(counts.values()), by_source=tuple(counts.items()))

    return read


def _read_of(name: str, source: Source) -> Probe:
    def read() -> Reading:
        return Reading(None, source.read_progress(), source=name)

    return read


def probes_of(flow: Flow) -> list[Probe]:
    """The records ``flow``'s sources read and, when every source knows its input's size, how much
    of each is read (a share of one input says nothing when another has no end)."""
    heads = [chain.head for chain in flow.plan().chains if chain.head.source is not None]
    sources = [(head.name, head.source) for head in heads if head.source is not None]
    if sources and all(source.read_progress() is not None for _, source in sources):
        return [records_read(flow), *(_read_of(name, source) for name, source in sources)]
    return [records_read(flow)]


def _size(count: float, unit: str) -> str:
    """``count`` of ``unit``: bytes in kB, MB, GB; anything else counted with separators."""
    if unit != "B":
        return f"{count:,.0f} {unit}"
    for prefix in ("", "k", "M", "G"):
        if count < 1000 or prefix == "G":
            return f"{count:.0f} B" if not prefix else f"{count:.1f} {prefix}B"
        count /= 1000
    raise AssertionError("unreachable")


def _clock_time(seconds: float) -> str:
    minutes, second = divmod(int(seconds + 0.5), 60)
    hours, minute = divmod(minutes, 60)
    return f"{hours}:{minute:02d}:{second:02d}" if hours else f"{minute}:{second:02d}"


class Progress:
    """Samples ``probes``, draws the status line and writes the summary (see the module docstring)."""

    def __init__(
        self,
        name: str,
        probes: Sequence[Probe],
        stream: TextIO | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._probes = list(probes)
        self._stream = stream
        self._clock = clock
        self._started = clock()
        # (time, records, done of each sized input) of recent samples, for the rates.
        self._samples: deque[tuple[float, int, tuple[int, ...]]] = deque([(self._started, 0, ())])
        self._records: int | None = None
        self._by_source: tuple[tuple[str, int], ...] = ()
        self._sized: list[ReadProgress] = []
        self._sized_names: list[str] = []
        self._drawn = False

    def sample(self) -> None:
        """Read every probe now."""
        now = self._clock()
        readings = [probe() for probe in self._probes]
        counted = [r.records for r in readings if r.records is not None]
        self._records = sum(counted) if counted else None
        self._by_source = tuple(pair for r in readings for pair in r.by_source)
        self._sized = [r.progress for r in readings if r.progress is not None]
        self._sized_names = [r.source for r in readings if r.progress is not None]
        self._samples.append((now, self._records or 0, tuple(p.done for p in self._sized)))
        while len(self._samples) > 2 and now - self._samples[1][0] >= WINDOW_S:
            self._samples.popleft()

    def _rates(self) -> tuple[float, list[float]]:
        """Records per second, and units per second of each sized input, over the recent samples."""
        (then, records_then, done_then), (now, records_now, done_now) = (
            self._samples[0],
            self._samples[-1],
        )
        span = now - then
        if span <= 0:
            return 0.0, [0.0] * len(done_now)
        if len(done_then) != len(done_now):
            done_then = (0,) * len(done_now)  # the first sample: nothing was read before it
        # Never below zero: a restart starts the job's counters again.
        return max(0.0, (records_now - records_then) / span), [
            max(0.0, (new - old) / span) for new, old in zip(done_now, done_then, strict=True)
        ]

    def line(self) -> str:
        """The status line for the last sample."""
        records = self._records
        parts = [f"{self._clock_since_start():.0f} s"] if records is None else []
        record_rate, rates = self._rates()
        if records is not None:
            parts += [counted(records, self._by_source), f"{record_rate:,.0f} rec/s"]
        if self._sized:
            # The input that will take longest decides: its share, its size, its ETA.
            def left(pair: tuple[ReadProgress, float]) -> float:
                progress, rate = pair
                remaining = max(0, progress.total - progress.done)
                return 0.0 if remaining == 0 else remaining / rate if rate > 0 else math.inf

            slowest, rate = max(zip(self._sized, rates, strict=True), key=left)
            name = self._sized_names[self._sized.index(slowest)]
            size = _size(slowest.total, slowest.unit)
            if name and len(self._sized) > 1:  # say which input the share is of
                size = f"{slowest.total:,} {name}" if slowest.unit == "records" else f"{name} ({size})"
            parts.append(f"{slowest.share:.0%} of {size}")
            eta = left((slowest, rate))
            if rate > 0 and eta < math.inf:
                parts.append(f"ETA {_clock_time(eta)}")
        return f"{self.name}: " + ", ".join(parts)

    def _clock_since_start(self) -> float:
        return self._samples[-1][0] - self._started

    def summary(self, outcome: str = "") -> str:
        """One line: records, time and the average rate, then ``outcome`` (e.g. "stopped")."""
        elapsed = self._clock_since_start()
        text = f"{self.name}: "
        if self._records is not None:
            rate = self._records / elapsed if elapsed > 0 else 0.0
            text += f"{counted(self._records, self._by_source)} in {elapsed:.1f} s ({rate:,.0f} rec/s)"
        else:
            text += f"ran {elapsed:.1f} s"
        return f"{text}, {outcome}" if outcome else text

    # -- drawing -------------------------------------------------------------------------------

    def draw(self) -> None:
        """Sample, and draw the status line over the previous one."""
        if self._stream is None:
            return
        self.sample()
        self._stream.write("\r" + self.line() + "\x1b[K")
        self._stream.flush()
        self._drawn = True

    def clear(self) -> None:
        """Wipe the status line (before a log line is written)."""
        if self._stream is not None and self._drawn:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._drawn = False

    async def run(self, interval_s: float = 0.5) -> None:
        """Draw every ``interval_s`` until cancelled."""
        while True:
            self.draw()
            await asyncio.sleep(interval_s)

    def finish(self, outcome: str = "") -> None:
        """Take a last sample, wipe the status line and write the summary."""
        if self._stream is None:
            return
        self.sample()
        self.clear()
        self._stream.write(self.summary(outcome) + "\n")
        self._stream.flush()


class ClearingStream:
    """A text stream that calls ``before_write`` first: standard output of a job printing to the
    terminal its progress line is drawn on, so that a printed line never lands after the status.

    >>> import io
    >>> out = io.StringIO()
    >>> stream = ClearingStream(out, lambda: out.write("<clear>"))
    >>> stream.write("record\\n")
    7
    >>> out.getvalue()
    '<clear>record\\n'
    """

    def __init__(self, stream: TextIO, before_write: Callable[[], None]) -> None:
        self._stream = stream
        self._before_write = before_write

    def write(self, text: str) -> int:
        self._before_write()
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
