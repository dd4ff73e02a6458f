"""The JSON the dashboard draws: the actor mesh with its live numbers, and the checkpoint history.

Everything is read from the flow's :class:`~actorflow.runtime.metrics.JobMetrics` on the event loop,
between two batches. Rates are differences of counters between two looks, at least
``min_interval`` seconds apart (:class:`RateTracker`), so every client sees the same rates however
often it polls. Each actor carries its operators (the source first, for a source actor) with their
own counts, rates and input watermarks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from actorflow.api.flow import Flow
from actorflow.runtime.messages import MAX_WATERMARK, MIN_WATERMARK
from actorflow.runtime.metrics import ActorEntry, JobMetrics, OperatorMetrics
from actorflow.web.queryable import keyed_operators

__all__ = [
    "RateTracker",
    "checkpoints_view",
    "dead_letter_counts",
    "graph_view",
    "status_of",
    "visible_watermark",
]


def status_of(job: JobMetrics | None) -> str:
    """``not started`` (no run yet), ``starting`` (restoring, opening), ``running`` (ready) or
    ``stopped`` (finished, failed, or waiting to restart)."""
    if job is None:
        return "not started"
    if job.ready:
        return "running"
    if all(entry.metrics.closed for entry in job.actors):
        return "stopped"
    return "starting"


def visible_watermark(watermark: int) -> int | None:
    """``watermark`` in ms, or None for none yet (``MIN_WATERMARK``) and after the end (+inf)."""
    return None if watermark in (MIN_WATERMARK, MAX_WATERMARK) else watermark


def watermark_of(entry: ActorEntry) -> int | None:
    """The actor's input watermark in ms, or None before the first one and after the last (+inf)."""
    return visible_watermark(entry.metrics.watermark)


def dead_letter_counts(job: JobMetrics) -> dict[str, int]:
    """Records sent to dead letters, per source or operator name, for those that count them (a
    ``dead_letter_count`` attribute: JSON-lines and Kafka sources, ``map_async`` with
    ``dead_letters``). A source's count is its own (one source object serves all its instances);
    an operator's is the sum over its instances."""
    counts: dict[str, int] = {}
    sources: set[str] = set()
    for entry in job.actors:
        if entry.source is not None and entry.source[0] not in sources:
            sources.add(entry.source[0])
            count = getattr(entry.source[1], "dead_letter_count", None)
            if isinstance(count, int):
                counts[entry.source[0]] = count
        for name, operator in entry.operators.items():
            count = getattr(operator, "dead_letter_count", None)
            if isinstance(count, int):
                counts[name] = counts.get(name, 0) + count
    return counts


def backpressure_seconds(job: JobMetrics, entry: ActorEntry) -> float:
    """Seconds ``entry`` spent waiting on full output mailboxes (it sends to one at a time)."""
    return sum(channel.mailbox.stats().blocked_seconds for channel in job.outputs_of(entry.name))


def input_fill(job: JobMetrics, entry: ActorEntry) -> float:
    """The fill of the actor's fullest input mailbox (0.0 for a source): 1.0 means its senders wait."""
    return max((channel.mailbox.stats().fill for channel in job.inputs_of(entry.name)), default=0.0)


@dataclass
class RateTracker:
    """Per-actor rates from counter samples taken at least ``min_interval`` seconds apart.

    >>> rates = RateTracker(min_interval=1.0)
    >>> rates.update(10.0, {"a": (0.0, 0.0)})
    {'a': (0.0, 0.0)}
    >>> rates.update(10.5, {"a": (50.0, 0.0)})  # too soon: the last rates again
    {'a': (0.0, 0.0)}
    >>> rates.update(12.0, {"a": (400.0, 1.0)})
    {'a': (200.0, 0.5)}
    """

    min_interval: float = 1.0
    _time: float | None = None
    _sample: dict[str, tuple[float, ...]] = field(default_factory=dict)
    _rates: dict[str, tuple[float, ...]] = field(default_factory=dict)

    def update(self, now: float, counters: Mapping[str, tuple[float, ...]]) -> dict[str, tuple[float, ...]]:
        """Take ``counters`` (per actor, each only growing) seen at ``now`` (seconds); return the
        rates per second of each counter over the last interval."""
        if self._time is None:
            self._time, self._sample = now, dict(counters)
            self._rates = {name: tuple(0.0 for _ in values) for name, values in counters.items()}
        elif now - self._time >= self.min_interval:
            elapsed = now - self._time
            rates = {}
            for name, values in counters.items():
                before = self._sample.get(name, tuple(0.0 for _ in values))
                # A counter that went down belongs to a new run (a restart): count from zero.
                rates[name] = tuple(
                    (value - old if value >= old else value) / elapsed
                    for value, old in zip(values, before, strict=True)
                )
            self._time, self._sample, self._rates = now, dict(counters), rates
        return {
            name: self._rates.get(name, tuple(0.0 for _ in values)) for name, values in counters.items()
        }


def graph_view(flow: Flow, rates: RateTracker, now: float) -> dict[str, Any]:
    """The actor mesh: chains (with their column), actors, channels, and the flow's status.

    ``now`` is a monotonic time in seconds, for rates; watermark lags use the flow's clock.
    """
    job = flow.metrics
    view: dict[str, Any] = {
        "flow": flow.name,
        "status": status_of(job),
        "ready": job is not None and job.ready,
        "restarts": flow.restarts,
        "checkpointing": flow.checkpoint_storage is not None,
        "chains": [],
        "actors": [],
        "channels": [],
        "queryable": [],
    }
    if job is None:
        return view
    counters: dict[str, tuple[float, ...]] = {}
    operators_of = {}
    for entry in job.actors:
        counters[entry.name] = (
            float(entry.metrics.records_in),
            float(entry.metrics.records_out),
            backpressure_seconds(job, entry),
        )
        operators_of[entry.name] = entry.operator_metrics()
        for counts in operators_of[entry.name]:
            # A newline never occurs in an actor's name: the key cannot clash with an actor's.
            counters[f"{entry.name}\n{counts.name}"] = (float(counts.records_in), float(counts.records_out))
    rate = rates.update(now, counters)
    clock_now = flow.clock.now()
    chains: dict[str, dict[str, Any]] = {}
    chain_of = {entry.name: entry.chain for entry in job.actors}
    for entry in job.actors:  # deployment order: every chain comes after the chains feeding it
        if entry.chain not in chains:
            upstream = {chain_of[channel.sender] for channel in job.inputs_of(entry.name)}
            depth = max((chains[name]["depth"] + 1 for name in upstream if name in chains), default=0)
            chains[entry.chain] = {
                "name": entry.chain,
                "parallelism": entry.parallelism,
                "depth": depth,
                "kind": entry.kind,
                "operators": ([entry.source[0]] if entry.source else []) + list(entry.operators),
            }
        watermark = watermark_of(entry)
        rate_in, rate_out, blocked = rate[entry.name]
        metrics = entry.metrics
        view["actors"].append(
            {
                "name": entry.name,
                "chain": entry.chain,
                "instance": entry.index,
                "parallelism": entry.parallelism,
                "kind": entry.kind,
                "state": "stopped" if metrics.closed else "running" if metrics.opened else "starting",
                "records_in": metrics.records_in,
                "records_out": metrics.records_out,
                "rate_in": round(rate_in, 3),
                "rate_out": round(rate_out, 3),
                "backpressure": round(min(blocked, 1.0), 4),
                "fill": round(input_fill(job, entry), 4),
                "watermark": watermark,
                "watermark_lag_ms": None if watermark is None else clock_now - watermark,
                "ended": metrics.watermark == MAX_WATERMARK,
                "operators": [
                    _operator_view(counts, rate[f"{entry.name}\n{counts.name}"], clock_now)
                    for counts in operators_of[entry.name]
                ],
            }
        )
    view["chains"] = list(chains.values())
    for channel in job.channels:
        stats = channel.mailbox.stats()
        view["channels"].append(
            {
                "sender": channel.sender,
                "receiver": channel.receiver,
                "size": stats.size,
                "capacity": stats.capacity,
                "fill": round(stats.fill, 4),
            }
        )
    view["queryable"] = keyed_operators(job)
    return view


def _operator_view(counts: OperatorMetrics, rate: tuple[float, ...], clock_now: int) -> dict[str, Any]:
    watermark = visible_watermark(counts.watermark)
    return {
        "name": counts.name,
        "records_in": counts.records_in,
        "records_out": counts.records_out,
        "rate_in": round(rate[0], 3),
        "rate_out": round(rate[1], 3),
        "watermark": watermark,
        "watermark_lag_ms": None if watermark is None else clock_now - watermark,
        "ended": counts.watermark == MAX_WATERMARK,
    }


def checkpoints_view(flow: Flow) -> dict[str, Any]:
    """Counts and the recent history of completed checkpoints (oldest first)."""
    stats = flow.checkpoint_stats
    return {
        "enabled": flow.checkpoint_storage is not None,
        "completed": stats.completed,
        "failed": stats.failed,
        "last_failure": stats.last_failure,
        "history": [
            {"id": checkpoint_id, "kind": kind, "duration_ms": duration, "size_bytes": size}
            for checkpoint_id, kind, duration, size in stats.history
        ],
    }
