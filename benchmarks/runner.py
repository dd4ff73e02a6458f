"""The ``run`` command: run one query on one engine and measure it.

Engines are modules looked up by name (see ``ENGINES``), each with::

    def run(query: str, input_path: str, output_path: str, parallelism: int) -> int

returning the number of input events processed. The measurement covers the engine
call only (``time.perf_counter`` around it): interpreter start-up and imports are
excluded. Peak RSS is the whole process's high-water mark (see ``peak_rss_mb``).
"""

from __future__ import annotations

import importlib
import resource
import time
from typing import Protocol, TypedDict, cast

__all__ = ["ENGINES", "QUERIES", "Engine", "Measurement", "load_engine", "measure"]

QUERIES = ("q1", "q2", "q3")
ENGINES: dict[str, str] = {
    "actorflow": "benchmarks.actorflow_engine",
    "baseline": "benchmarks.baseline",
    "reference": "benchmarks.reference",
}
"""Engine name -> module implementing the engine contract."""


class Engine(Protocol):
    """The engine contract: a module with this ``run`` function."""

    def run(self, query: str, input_path: str, output_path: str, parallelism: int) -> int:
        """Run ``query`` over ``input_path`` writing ``output_path``; return events read."""
        ...


class Measurement(TypedDict):
    """The JSON line printed by ``python -m benchmarks run``."""

    query: str
    engine: str
    events: int
    seconds: float
    events_per_s: float
    peak_rss_mb: float


def load_engine(name: str) -> Engine:
    """Import the engine called ``name``; raise ``ValueError`` for an unknown name."""
    try:
        module = ENGINES[name]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; expected one of {sorted(ENGINES)}") from None
    return cast(Engine, importlib.import_module(module))


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB.

    On Linux this is ``VmHWM`` of ``/proc/self/status``, the high-water mark of the
    current address space: ``ru_maxrss`` is carried over ``execve``, so a process
    started by a big parent (``report``) would inherit the parent's peak. Elsewhere it
    falls back to ``ru_maxrss`` (KiB on Linux; bytes on macOS, hence not comparable).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # "VmHWM:   15872 kB"
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(
    query: str, engine: str, input_path: str, output_path: str, parallelism: int = 1
) -> Measurement:
    """Run ``query`` on ``engine`` and return its measurement.

    Raises ``ValueError`` for an unknown query or engine; whatever the engine raises
    propagates.
    """
    if query not in QUERIES:
        raise ValueError(f"unknown query {query!r}; expected one of {list(QUERIES)}")
    if parallelism < 1:
        raise ValueError(f"parallelism must be >= 1, got {parallelism}")
    impl = load_engine(engine)
    started = time.perf_counter()
    events = impl.run(query, input_path, output_path, parallelism)
    seconds = time.perf_counter() - started
    return {
        "query": query,
        "engine": engine,
        "events": events,
        "seconds": round(seconds, 6),
        "events_per_s": round(events / seconds, 1) if seconds > 0 else 0.0,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
