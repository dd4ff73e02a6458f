"""One worker process of Q2 or Q3 over Kafka, run as partition tasks (``python -m benchmarks worker``).

Reads JSON transactions keyed by ``card_id`` from ``--input-topic``, runs Q2 (per-card tumbling
10 s windows: ``{"card_id", "window_start", "window_end", "count", "sum_cents"}``, late records
dropped) or Q3 (the fraud pattern: ``{"card_id", "small_tx_id", "large_tx_id"}``) with event time
per input partition (the watermark after each record is that partition's ``max ts - 2000``), and
writes the results to ``--output-topic`` exactly once. Every worker started with the same
``--group`` shares the partitions; a partition's state moves with it through its changelog
topics, so ``--state-dir`` may be empty or absent (nothing is kept on local disk). Runs until
SIGTERM or SIGINT, then commits and exits 0; SIGUSR2 prints where its asyncio tasks wait.

It prints, flushed at once: ``ready`` when it starts and, after a graceful stop, one JSON line with
its statistics, ``{"records", "first_record_ms", "last_commit_ms", "peak_rss_kib", "cpu_s"}``: the
records it handed to its tasks, when the first one was, when a task last committed records it had
read, its peak memory and its CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import resource
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from actorflow import Flow, TumblingEventTimeWindows, WatermarkStrategy
from actorflow.api.flow import new_event_loop
from actorflow.api.stream import KeyedStream
from actorflow_kafka import KafkaSink, KafkaSource
from benchmarks.actorflow_engine import LAG_MS, CountCents, SmallThenLarge, WindowRecord

__all__ = ["build", "main", "parse_args"]

WINDOW_MS = 10_000


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks worker", description="One worker of Q2 or Q3 from Kafka to Kafka."
    )
    parser.add_argument("--query", choices=("q2", "q3"), required=True)
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--input-topic", required=True)
    parser.add_argument("--output-topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state-dir", help="unused: a worker keeps no state on local disk")
    parser.add_argument("--checkpoint-interval-ms", type=int, default=1_000)
    parser.add_argument("--max-records", type=int, default=1_000, help="most records per poll")
    parser.add_argument(
        "--heartbeat-interval-ms", type=int, default=3_000, help="of the consumer (rebalances notice)"
    )
    parser.add_argument(
        "--session-timeout-ms", type=int, default=10_000, help="of the consumer (a dead worker's notice)"
    )
    parser.add_argument(
        "--partitioned-by",
        default="card_id",
        help="the field the input topic is keyed by; another than card_id goes through a repartition",
    )
    parser.add_argument("--log-level", default="WARNING", help="of the worker's log on stderr")
    return parser.parse_args(argv)


def build(args: argparse.Namespace) -> tuple[Flow, KafkaSource]:
    """The worker's flow and its source (``source.stop()`` stops it gracefully)."""
    source = KafkaSource(
        args.input_topic,
        bootstrap_servers=args.bootstrap_servers,
        group_id=args.group,
        tasks=True,
        partitioned_by=args.partitioned_by,
        commit_interval_ms=args.checkpoint_interval_ms,
        max_records=args.max_records,
        client_options={
            "heartbeat_interval_ms": args.heartbeat_interval_ms,
            "session_timeout_ms": args.session_timeout_ms,
        },
    )
    flow = Flow(f"{args.query}-worker", batch_size=args.max_records)
    transactions: KeyedStream[dict[str, Any], Any] = flow.from_source(
        source, name="transactions", watermarks=WatermarkStrategy.punctuated("ts", lag_ms=LAG_MS)
    ).key_by("card_id")
    sink = KafkaSink(args.output_topic, bootstrap_servers=args.bootstrap_servers, key="card_id")
    if args.query == "q2":
        results = transactions.window(TumblingEventTimeWindows.of(WINDOW_MS)).aggregate(
            CountCents(), WindowRecord(), name="windows"
        )
    else:
        results = transactions.process(SmallThenLarge(), name="fraud")
    results.sink(sink, name="output")
    return flow, source


async def run(args: argparse.Namespace) -> None:
    flow, source = build(args)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, source.stop)
    loop.add_signal_handler(signal.SIGUSR2, _dump_tasks)
    print("ready", flush=True)
    await flow.run()
    job = source.task_job
    stats = {
        "records": job.records_read,
        "first_record_ms": job.first_record_ms,
        "last_commit_ms": job.last_commit_ms,
        "peak_rss_kib": _peak_rss_kib(),
        "cpu_s": round(time.process_time(), 2),
    }
    print(orjson.dumps(stats).decode(), flush=True)


def _peak_rss_kib() -> int:
    """This process's peak resident set size. Linux's ``ru_maxrss`` keeps the peak of the process
    that forked and exec'd this one (the benchmark, holding its whole input): ``VmHWM`` does not."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _dump_tasks() -> None:
    """SIGUSR2: where every asyncio task of the worker waits, on stderr (to find a hang)."""
    for task in asyncio.all_tasks():
        print(f"--- {task.get_name()}", file=sys.stderr)
        awaited: Any = task.get_coro()
        while awaited is not None:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None)
            if frame is not None:
                code = frame.f_code
                print(f"    {code.co_filename}:{frame.f_lineno} {code.co_name}", file=sys.stderr)
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)
    sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    level = logging.getLevelName(args.log_level.upper())
    for name in ("actorflow", "actorflow_kafka", "aiokafka.consumer.group_coordinator"):
        logging.getLogger(name).setLevel(level)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
