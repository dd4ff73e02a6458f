"""The ``run`` command: run one query on one engine and measure it.

Engines are modules looked up by name (see ``ENGINES``), each with::

    def run(query: str, input_path: str, output_path: str, parallelism: int) -> int

returning the number of input events processed. The measurement covers the engine
call only (``time.perf_counter`` around it): interpreter start-up and imports are
excluded. The process's CPU time over the same span is reported beside it. Peak RSS
is the whole process's high-water mark (see ``peak_rss_mb``).

Only the actorflow engine takes checkpoints (``checkpoint_dir``, ``checkpoint_interval_ms``); its
measurement then says which checkpoint the run resumed from and what its checkpoints cost.
"""

from __future__ import annotations

import importlib
import resource
import time
from pathlib import Path
from typing import NotRequired, Protocol, TypedDict, cast

from benchmarks.checkpoints import MeteredStorage

__all__ = [
    "CHECKPOINTING_ENGINES",
    "ENGINES",
    "QUERIES",
    "SQL_QUERIES",
    "CheckpointMeasurement",
    "CheckpointingEngine",
    "Engine",
    "Measurement",
    "load_engine",
    "measure",
]

QUERIES = ("q1", "q2", "q3", "q4")
#: The queries SQL can say (``--engine actorflow-sql``): Q3 takes a card's events in arrival order.
SQL_QUERIES = ("q1", "q2", "q4")
ENGINES: dict[str, str] = {
    "actorflow": "benchmarks.actorflow_engine",
    "actorflow-sql": "benchmarks.sql_engine",
    "baseline": "benchmarks.baseline",
    "reference": "benchmarks.reference",
}
"""Engine name -> module implementing the engine contract."""


CHECKPOINTING_ENGINES = ("actorflow",)
"""The engines that take checkpoints (``--checkpoint-dir``): they implement ``CheckpointingEngine``."""


class Engine(Protocol):
    """The engine contract: a module with this ``run`` function."""

    def run(self, query: str, input_path: str, output_path: str, parallelism: int) -> int:
        """Run ``query`` over ``input_path`` writing ``output_path``; return events read."""
        ...


class CheckpointingEngine(Protocol):
    """An engine that also checkpoints into a storage and resumes from it."""

    def run(
        self,
        query: str,
        input_path: str,
        output_path: str,
        parallelism: int,
        *,
        storage: MeteredStorage,
        checkpoint_interval_ms: int | None,
    ) -> int:
        """Like :meth:`Engine.run`, checkpointing into ``storage`` every ``checkpoint_interval_ms``."""
        ...


class Measurement(TypedDict):
    """The JSON line printed by ``python -m benchmarks run``."""

    query: str
    engine: str
    events: int
    seconds: float
    events_per_s: float
    peak_rss_mb: float
    cpu_seconds: NotRequired[float]
    """CPU time of the whole process (every thread) over the same span as ``seconds``; ``run``
    always reports it. Unlike wall time it hardly moves when other processes compete for the
    cores, so A/B comparisons on a busy machine read it."""
    checkpoints: NotRequired[CheckpointMeasurement]
    """Only with a checkpoint directory."""


class CheckpointMeasurement(TypedDict):
    """What the checkpoints of one ``run`` did (see :class:`~benchmarks.checkpoints.MeteredStorage`)."""

    interval_ms: int | None
    resumed_from: int | None
    """The id of the newest complete checkpoint found at the start (the run resumed from it)."""
    completed: int
    """Checkpoints completed by this run, the final one included."""
    bytes: int
    """Bytes of state written by this run's checkpoints."""
    write_s: float
    """Seconds the storage spent writing parts and manifests (in worker threads)."""


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
    query: str,
    engine: str,
    input_path: str,
    output_path: str,
    parallelism: int = 1,
    *,
    checkpoint_dir: str | None = None,
    checkpoint_interval_ms: int | None = None,
) -> Measurement:
    """Run ``query`` on ``engine`` and return its measurement.

    With ``checkpoint_dir`` (actorflow only) the run checkpoints there every
    ``checkpoint_interval_ms`` and resumes from the newest complete checkpoint it finds.

    Raises ``ValueError`` for an unknown query or engine, and for checkpoint options on an
    engine other than actorflow or an interval without a directory; whatever the engine
    raises propagates.
    """
    if query not in QUERIES:
        raise ValueError(f"unknown query {query!r}; expected one of {list(QUERIES)}")
    if parallelism < 1:
        raise ValueError(f"parallelism must be >= 1, got {parallelism}")
    if checkpoint_interval_ms is not None and checkpoint_dir is None:
        raise ValueError("a checkpoint interval needs a checkpoint directory")
    if checkpoint_dir is not None and engine not in CHECKPOINTING_ENGINES:
        raise ValueError(
            f"engine {engine!r} cannot checkpoint; checkpoints need one of {list(CHECKPOINTING_ENGINES)}"
        )
    impl = load_engine(engine)
    storage = None
    resumed_from = None
    if checkpoint_dir is not None:
        storage = MeteredStorage(Path(checkpoint_dir))
        latest = storage.latest()
        resumed_from = latest.checkpoint_id if latest is not None else None
    started = time.perf_counter()
    cpu_started = time.process_time()
    if storage is None:
        events = impl.run(query, input_path, output_path, parallelism)
    else:
        events = cast(CheckpointingEngine, impl).run(
            query,
            input_path,
            output_path,
            parallelism,
            storage=storage,
            checkpoint_interval_ms=checkpoint_interval_ms,
        )
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    measurement: Measurement = {
        "query": query,
        "engine": engine,
        "events": events,
        "seconds": round(seconds, 6),
        "events_per_s": round(events / seconds, 1) if seconds > 0 else 0.0,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "cpu_seconds": round(cpu_seconds, 6),
    }
    if storage is not None:
        measurement["checkpoints"] = {
            "interval_ms": checkpoint_interval_ms,
            "resumed_from": resumed_from,
            "completed": storage.commits,
            "bytes": storage.bytes_written,
            "write_s": round(storage.write_seconds, 6),
        }
    return measurement
