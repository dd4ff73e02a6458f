"""``/metrics``: the flow's counters in Prometheus' text format, read when Prometheus scrapes.

Nothing is recorded twice: a :class:`FlowCollector` reads the live counters of the running job
(:class:`~actorflow.runtime.metrics.JobMetrics`, mailbox statistics, checkpoint statistics) at
scrape time and hands them to prometheus-client, which formats them. Every name starts with
``actorflow_``. Labels, as Flink scopes its metrics:

- per operator instance (records in and out, watermark and its lag): ``task`` (the chain's name:
  its operators joined by `` -> ``, as Flink names tasks), ``operator`` (the operator's name; a
  source is the first operator of its chain) and ``instance`` (0-based);
- per actor (back-pressured time): ``task`` and ``instance``;
- per channel (mailboxes): ``sender`` and ``receiver`` (actor names, ``chain[i/p]``);
- dead letters: ``operator`` (the source or operator that could not handle the records), summed
  over its instances.

Counters of actors and operators start again from zero when the job restarts (Prometheus'
``rate()`` takes that as a counter reset); checkpoint and restart counters and the checkpoint
histograms span the whole ``Flow.run``.

>>> from actorflow import Flow
>>> from prometheus_client import CollectorRegistry, generate_latest
>>> registry = CollectorRegistry()
>>> registry.register(FlowCollector(Flow("demo")))
>>> print(generate_latest(registry).decode().splitlines()[2])
actorflow_flow_info{flow="demo"} 1.0
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from actorflow.api.flow import Flow
from actorflow.runtime.metrics import ActorEntry
from actorflow.web.views import backpressure_seconds, dead_letter_counts, visible_watermark

__all__ = ["FlowCollector", "METRIC_NAMES"]

#: Every metric family this collector can export (counters get ``_total`` appended on the wire,
#: histograms ``_bucket``, ``_count`` and ``_sum``).
METRIC_NAMES = (
    "actorflow_flow_info",
    "actorflow_ready",
    "actorflow_restarts",
    "actorflow_records_in",
    "actorflow_records_out",
    "actorflow_backpressured_seconds",
    "actorflow_watermark_seconds",
    "actorflow_watermark_lag_seconds",
    "actorflow_mailbox_size",
    "actorflow_mailbox_capacity",
    "actorflow_mailbox_fill_ratio",
    "actorflow_mailbox_blocked_seconds",
    "actorflow_checkpoints_completed",
    "actorflow_checkpoints_failed",
    "actorflow_checkpoint_last_duration_seconds",
    "actorflow_checkpoint_last_size_bytes",
    "actorflow_checkpoint_duration_seconds",
    "actorflow_checkpoint_size_bytes",
    "actorflow_dead_letters",
)

#: Labels of the series kept per operator instance.
OPERATOR_LABELS = ["task", "operator", "instance"]
#: Labels of the series kept per actor (one chain instance: Flink's subtask).
ACTOR_LABELS = ["task", "instance"]


class FlowCollector(Collector):
    """A prometheus-client collector over one :class:`~actorflow.Flow` (see the module docstring)."""

    def __init__(self, flow: Flow) -> None:
        self.flow = flow

    def collect(self) -> Iterator[Metric]:
        flow = self.flow
        job = flow.metrics
        info = GaugeMetricFamily("actorflow_flow_info", "The flow this process runs.", labels=["flow"])
        info.add_metric([flow.name], 1.0)
        yield info
        yield GaugeMetricFamily(
            "actorflow_ready",
            "1 once every actor has opened and restored its state, while the job runs; else 0.",
            value=1.0 if job is not None and job.ready else 0.0,
        )
        yield CounterMetricFamily(
            "actorflow_restarts",
            "Restarts after a failure (from the last checkpoint).",
            value=flow.restarts,
        )
        yield from self._checkpoints()
        if job is None:
            return
        yield from self._operators(job.actors)
        backpressured = CounterMetricFamily(
            "actorflow_backpressured_seconds",
            "Seconds the actor waited on a full output mailbox; rate() is the fraction of time.",
            labels=ACTOR_LABELS,
        )
        for entry in job.actors:
            backpressured.add_metric([entry.chain, str(entry.index)], backpressure_seconds(job, entry))
        yield backpressured
        dead_letters = CounterMetricFamily(
            "actorflow_dead_letters",
            "Records a source could not decode or an operator could not process, sent to dead letters.",
            labels=["operator"],
        )
        for name, count in dead_letter_counts(job).items():
            dead_letters.add_metric([name], count)
        yield dead_letters
        yield from self._channels()

    def _operators(self, actors: list[ActorEntry]) -> Iterator[Metric]:
        records_in = CounterMetricFamily(
            "actorflow_records_in",
            "Records handed to the operator instance (a source: records read).",
            labels=OPERATOR_LABELS,
        )
        records_out = CounterMetricFamily(
            "actorflow_records_out",
            "Records the operator instance passed on (a sink passes none).",
            labels=OPERATOR_LABELS,
        )
        watermark = GaugeMetricFamily(
            "actorflow_watermark_seconds",
            "Event time (epoch seconds) of the operator instance's input watermark.",
            labels=OPERATOR_LABELS,
        )
        lag = GaugeMetricFamily(
            "actorflow_watermark_lag_seconds",
            "Processing time minus the operator instance's input watermark.",
            labels=OPERATOR_LABELS,
        )
        now = self.flow.clock.now()
        for entry in actors:
            instance = str(entry.index)
            for counts in entry.operator_metrics():
                labels = [entry.chain, counts.name, instance]
                records_in.add_metric(labels, counts.records_in)
                records_out.add_metric(labels, counts.records_out)
                current = visible_watermark(counts.watermark)
                if current is not None:
                    watermark.add_metric(labels, current / 1000)
                    lag.add_metric(labels, (now - current) / 1000)
        yield from (records_in, records_out, watermark, lag)

    def _channels(self) -> Iterator[Metric]:
        job = self.flow.metrics
        assert job is not None
        labels = ["sender", "receiver"]
        size = GaugeMetricFamily("actorflow_mailbox_size", "Messages (batches) waiting.", labels=labels)
        capacity = GaugeMetricFamily("actorflow_mailbox_capacity", "The mailbox's bound.", labels=labels)
        fill = GaugeMetricFamily(
            "actorflow_mailbox_fill_ratio", "size / capacity: 1 means the sender waits.", labels=labels
        )
        blocked = CounterMetricFamily(
            "actorflow_mailbox_blocked_seconds",
            "Seconds the sender waited on this full mailbox.",
            labels=labels,
        )
        for channel in job.channels:
            stats = channel.mailbox.stats()
            names = [channel.sender, channel.receiver]
            size.add_metric(names, stats.size)
            capacity.add_metric(names, stats.capacity)
            fill.add_metric(names, stats.fill)
            blocked.add_metric(names, stats.blocked_seconds)
        yield from (size, capacity, fill, blocked)

    def _checkpoints(self) -> Iterator[Metric]:
        stats = self.flow.checkpoint_stats
        yield CounterMetricFamily(
            "actorflow_checkpoints_completed",
            "Checkpoints and savepoints completed.",
            value=stats.completed,
        )
        yield CounterMetricFamily(
            "actorflow_checkpoints_failed",
            "Checkpoints aborted (declined, failed or timed out).",
            value=stats.failed,
        )
        if stats.history:
            _, _, duration_ms, size = stats.history[-1]
            yield GaugeMetricFamily(
                "actorflow_checkpoint_last_duration_seconds",
                "From trigger to completion, of the last completed checkpoint.",
                value=duration_ms / 1000,
            )
            yield GaugeMetricFamily(
                "actorflow_checkpoint_last_size_bytes",
                "Bytes written by the last completed checkpoint.",
                value=size,
            )
        durations = stats.durations_ms
        yield HistogramMetricFamily(
            "actorflow_checkpoint_duration_seconds",
            "From trigger to completion, of every completed checkpoint and savepoint.",
            buckets=_buckets(durations.bounds, durations.counts, durations.count, scale=1000),
            sum_value=durations.total / 1000,
        )
        sizes = stats.sizes
        yield HistogramMetricFamily(
            "actorflow_checkpoint_size_bytes",
            "Bytes written by every completed checkpoint and savepoint.",
            buckets=_buckets(sizes.bounds, sizes.counts, sizes.count),
            sum_value=sizes.total,
        )


def _buckets(
    bounds: tuple[float, ...], counts: list[int], count: int, *, scale: float = 1
) -> list[tuple[str, float]]:
    """Cumulative ``(le, count)`` pairs ending with ``+Inf``; ``scale`` divides the bounds (ms to s)."""
    pairs = [(repr(bound / scale), float(n)) for bound, n in zip(bounds, counts, strict=True)]
    return [*pairs, ("+Inf", float(count))]
