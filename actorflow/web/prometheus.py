"""``/metrics``: the flow's counters in Prometheus' text format, read when Prometheus scrapes.

Nothing is recorded twice: a :class:`FlowCollector` reads the live counters of the running job
(:class:`~actorflow.runtime.metrics.JobMetrics`, mailbox statistics, checkpoint statistics) at
scrape time and hands them to prometheus-client, which formats them. Every name starts with
``actorflow_``. Per-actor series are labelled ``operator`` (the chain's name: its operators joined
by `` -> ``, as Flink names tasks) and ``instance`` (0-based); per-channel series ``sender`` and
``receiver`` (actor names, ``chain[i/p]``). Counters of actors start again from zero when the job
restarts (Prometheus' ``rate()`` takes that as a counter reset); checkpoint and restart counters
span the whole ``Flow.run``.

>>> from actorflow import Flow
>>> from prometheus_client import CollectorRegistry, generate_latest
>>> registry = CollectorRegistry()
>>> registry.register(FlowCollector(Flow("demo")))
>>> print(generate_latest(registry).decode().splitlines()[2])
actorflow_flow_info{flow="demo"} 1.0
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from actorflow.api.flow import Flow
from actorflow.web.views import backpressure_seconds, watermark_of

__all__ = ["FlowCollector", "METRIC_NAMES"]

#: Every metric family this collector can export (counters get ``_total`` appended on the wire).
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
    "actorflow_dead_letters",
)


class FlowCollector(Collector):
    """A prometheus-client collector over one :class:`~actorflow.Flow` (see the module docstring)."""

    def __init__(self, flow: Flow) -> None:
        self.flow = flow

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
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
        actor_labels = ["operator", "instance"]
        records_in = CounterMetricFamily(
            "actorflow_records_in",
            "Records handed to the actor (a source: records read).",
            labels=actor_labels,
        )
        records_out = CounterMetricFamily(
            "actorflow_records_out", "Records the actor sent downstream.", labels=actor_labels
        )
        backpressured = CounterMetricFamily(
            "actorflow_backpressured_seconds",
            "Seconds the actor waited on a full output mailbox; rate() is the fraction of time.",
            labels=actor_labels,
        )
        watermark = GaugeMetricFamily(
            "actorflow_watermark_seconds",
            "Event time (epoch seconds) of the actor's input watermark.",
            labels=actor_labels,
        )
        lag = GaugeMetricFamily(
            "actorflow_watermark_lag_seconds",
            "Processing time minus the actor's input watermark.",
            labels=actor_labels,
        )
        dead_letters = CounterMetricFamily(
            "actorflow_dead_letters", "Records a source could not decode.", labels=["source"]
        )
        now = flow.clock.now()
        seen_sources: set[str] = set()
        for entry in job.actors:
            labels = [entry.chain, str(entry.index)]
            records_in.add_metric(labels, entry.metrics.records_in)
            records_out.add_metric(labels, entry.metrics.records_out)
            backpressured.add_metric(labels, backpressure_seconds(job, entry))
            current = watermark_of(entry)
            if current is not None:
                watermark.add_metric(labels, current / 1000)
                lag.add_metric(labels, (now - current) / 1000)
            if entry.source is not None and entry.source[0] not in seen_sources:
                # One source object serves all its instances; the count is the source's.
                seen_sources.add(entry.source[0])
                count = getattr(entry.source[1], "dead_letter_count", None)
                if isinstance(count, int):
                    dead_letters.add_metric([entry.source[0]], count)
        yield from (records_in, records_out, backpressured, watermark, lag, dead_letters)
        yield from self._channels()

    def _channels(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
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

    def _checkpoints(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
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
