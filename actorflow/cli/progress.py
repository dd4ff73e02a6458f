"""Progress of a job run from a terminal, and a one-line summary at its end (on stderr).

Records are those the job's source actors read (``flow.metrics``). When every source is a JSON-lines
file, the bytes read against the files' sizes give a percentage and an ETA; other sources (Kafka,
generators, iterables, push) have no size to compare with.

The status line is redrawn in place (``\\r``) every half second; log lines wipe it before they are
written (see :class:`~actorflow.cli.logs.LogHandler`) and the next tick draws it again.

>>> clock = iter([0.0, 10.0]).__next__
>>> progress = Progress("demo", [lambda: Reading(500, 500, 2000)], clock=clock)
>>> progress.sample()  # at t = 10 s: 500 records, a quarter of the file
>>> progress.line()
'demo: 500 records, 50 rec/s, 25% of 2.0 kB, ETA 0:30'
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from actorflow.api.flow import Flow
from actorflow.operators.base import OperatorContext
from actorflow.operators.sources import JsonLinesSource

__all__ = ["Progress", "Reading", "probes_of"]

#: Rates are measured over this many recent seconds.
WINDOW_S = 5.0


@dataclass(frozen=True)
class Reading:
    """What one source has read: records, and bytes of how many (None where unknown)."""

    records: int | None
    done_bytes: int | None = None
    total_bytes: int | None = None


Probe = Callable[[], Reading]


def _records_read(flow: Flow) -> Probe:
    """Records every source actor of the current run has read (the job's metrics count them)."""

    def read() -> Reading:
        job = flow.metrics
        if job is None:  # not deployed yet
            return Reading(0)
        return Reading(sum(entry.metrics.records_in for entry in job.actors if entry.kind == "source"))

    return read


def _bytes_read(source: JsonLinesSource) -> Probe | None:
    """Bytes a JSON-lines source has read, of its file's size."""
    try:
        size = source.path.stat().st_size
    except OSError:
        return None
    context = OperatorContext("progress")  # ignored: the position belongs to the source object

    def read() -> Reading:
        offset, _line = source.snapshot_state(context)
        return Reading(None, offset, size)

    return read


def probes_of(flow: Flow) -> list[Probe]:
    """The records ``flow``'s sources read, and, when every source reads a file of known size, the
    bytes read (a share of one input says nothing when another has no end)."""
    sources = [chain.head.source for chain in flow.plan().chains if chain.head.source is not None]
    files = [_bytes_read(s) if isinstance(s, JsonLinesSource) else None for s in sources]
    sized = [probe for probe in files if probe is not None]
    return [_records_read(flow), *sized] if len(sized) == len(sources) else [_records_read(flow)]


def _size(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
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
        # (time, records, bytes) of recent samples, for the rates.
        self._samples: deque[tuple[float, int, int]] = deque([(self._started, 0, 0)])
        self._reading = Reading(None)
        self._drawn = False

    def sample(self) -> None:
        """Read every probe now."""
        now = self._clock()
        readings = [probe() for probe in self._probes]
        counted = [r.records for r in readings if r.records is not None]
        records = sum(counted) if counted else None
        sized = [r for r in readings if r.done_bytes is not None and r.total_bytes is not None]
        done = sum(r.done_bytes or 0 for r in sized) if sized else None
        total = sum(r.total_bytes or 0 for r in sized) if sized else None
        self._reading = Reading(records, done, total)
        self._samples.append((now, records or 0, done or 0))
        while len(self._samples) > 2 and now - self._samples[1][0] >= WINDOW_S:
            self._samples.popleft()

    def _rates(self) -> tuple[float, float]:
        (then, records_then, bytes_then), (now, records_now, bytes_now) = (
            self._samples[0],
            self._samples[-1],
        )
        span = now - then
        if span <= 0:
            return 0.0, 0.0
        # Never below zero: a restart starts the job's counters again.
        return max(0.0, (records_now - records_then) / span), max(0.0, (bytes_now - bytes_then) / span)

    def line(self) -> str:
        """The status line for the last sample."""
        reading = self._reading
        parts = [f"{self._clock_since_start():.0f} s"] if reading.records is None else []
        record_rate, byte_rate = self._rates()
        if reading.records is not None:
            parts += [f"{reading.records:,} records", f"{record_rate:,.0f} rec/s"]
        if reading.done_bytes is not None and reading.total_bytes:
            share = min(1.0, reading.done_bytes / reading.total_bytes)
            parts.append(f"{share:.0%} of {_size(reading.total_bytes)}")
            if byte_rate > 0:
                parts.append(f"ETA {_clock_time((reading.total_bytes - reading.done_bytes) / byte_rate)}")
        return f"{self.name}: " + ", ".join(parts)

    def _clock_since_start(self) -> float:
        return self._samples[-1][0] - self._started

    def summary(self, outcome: str = "") -> str:
        """One line: records, time and the average rate, then ``outcome`` (e.g. "stopped")."""
        elapsed = self._clock_since_start()
        text = f"{self.name}: "
        if self._reading.records is not None:
            rate = self._reading.records / elapsed if elapsed > 0 else 0.0
            text += f"{self._reading.records:,} records in {elapsed:.1f} s ({rate:,.0f} rec/s)"
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
