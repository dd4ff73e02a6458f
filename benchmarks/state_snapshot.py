"""How long it takes to snapshot and to restore keyed state with many keys (``report``'s numbers).

The state is Q3's shape, per key: one value state ``(tx_id, ts)`` and one event-time timer, in a
:class:`~actorflow.operators.process.KeyedProcessOperator` filled through its ordinary ``process``
path. Then, each phase timed on its own with ``time.perf_counter``, the way a checkpoint and a
restore do it:

* snapshot: ``snapshot_state()`` (the consistent copy, cut by key group), serialise (the chain's
  ``dumps``, pickle), write (``FileSystemStorage.write_part`` and ``commit``, ``fsync`` included);
* restore: load (read the part back and check its SHA-256), deserialise (``states_of``, unpickle),
  ``restore_state()`` into a freshly opened operator.

The restored operator is checked against the filled one (same number of keys and timers), so a
restore that loses state cannot report a good time.

>>> import tempfile
>>> numbers = measure(1_000, tempfile.mkdtemp())
>>> numbers["keys"], numbers["timers"], numbers["bytes"] > 0
(1000, 1000, True)
"""

from __future__ import annotations

import time
from operator import itemgetter
from pathlib import Path
from typing import Any, TypedDict

from actorflow import Collector, Context, KeyedProcessFunction, RuntimeContext, ValueStateDescriptor
from actorflow.checkpoint.filesystem import FileSystemStorage
from actorflow.operators.base import OperatorContext
from actorflow.operators.process import KeyedProcessOperator
from actorflow.operators.snapshots import dumps, part_name, states_of
from actorflow.runtime.messages import Batch

__all__ = ["SnapshotMeasurement", "measure"]

OPERATOR = "state"
BATCH = 10_000
SPAN_MS = 60_000


class SnapshotMeasurement(TypedDict):
    """The JSON line printed by ``python -m benchmarks state-run``; times in milliseconds."""

    keys: int
    timers: int
    bytes: int
    fill_ms: float
    snapshot_ms: float
    serialise_ms: float
    write_ms: float
    load_ms: float
    deserialise_ms: float
    restore_ms: float


class ArmPerKey(KeyedProcessFunction[tuple[str, int, int], Any]):
    """Q3's state per key: the last ``(tx_id, ts)`` and a timer ``SPAN_MS`` after it."""

    def open(self, ctx: RuntimeContext) -> None:
        self.armed = ctx.get_state(ValueStateDescriptor[tuple[int, int]]("armed"))

    def process_element(self, value: tuple[str, int, int], ctx: Context, out: Collector) -> None:
        _, tx_id, ts = value
        self.armed.update((tx_id, ts))
        ctx.timer_service().register_event_time_timer(ts + SPAN_MS)


def _operator() -> KeyedProcessOperator:
    operator = KeyedProcessOperator(OPERATOR, ArmPerKey(), itemgetter(0))
    operator.open(OperatorContext(OPERATOR, checkpointing=True))
    return operator


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def measure(keys: int, directory: str | Path) -> SnapshotMeasurement:
    """Fill an operator with ``keys`` keys, checkpoint it into ``directory`` and restore it.

    Raises ``AssertionError`` if the restored operator does not hold the same keys and timers.
    """
    operator = _operator()
    started = time.perf_counter()
    for first in range(0, keys, BATCH):
        # ~1 ms of event time per key, as in the benchmark's data: many keys share a timer's time.
        operator.process(Batch([(f"c{n:07d}", n, n) for n in range(first, min(first + BATCH, keys))]))
    fill_ms = _ms(started)

    storage = FileSystemStorage(directory)
    started = time.perf_counter()
    state = operator.snapshot_state()
    snapshot_ms = _ms(started)
    started = time.perf_counter()
    data = dumps(state)
    serialise_ms = _ms(started)
    del state
    started = time.perf_counter()
    storage.write_part(1, part_name(OPERATOR, 0), data)
    storage.commit(1)
    write_ms = _ms(started)
    size = len(data)
    del data

    started = time.perf_counter()
    loaded = FileSystemStorage(directory).load_latest()
    load_ms = _ms(started)
    assert loaded is not None, "the checkpoint just written is not there"
    started = time.perf_counter()
    states = states_of(OPERATOR, loaded.parts)
    deserialise_ms = _ms(started)
    del loaded
    restored = _operator()
    started = time.perf_counter()
    restored.restore_state(states)
    restore_ms = _ms(started)

    assert restored.backend.state_size("armed") == operator.backend.state_size("armed") == keys
    timers = len(operator.event_timers)
    assert len(restored.event_timers) == timers == keys
    return {
        "keys": keys,
        "timers": timers,
        "bytes": size,
        "fill_ms": fill_ms,
        "snapshot_ms": snapshot_ms,
        "serialise_ms": serialise_ms,
        "write_ms": write_ms,
        "load_ms": load_ms,
        "deserialise_ms": deserialise_ms,
        "restore_ms": restore_ms,
    }
