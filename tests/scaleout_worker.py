"""One worker of the Kafka scale-out test (``tests/test_kafka_scaleout.py``), run as its own process.

It runs a single flow: ``KafkaSource(topic, group_id=group)`` -> tag each record with the worker's
name -> ``KafkaSink(output)``. Several of these started with the same group share the topic's
partitions. SIGTERM (or SIGINT) stops the source: the flow finishes the batches in hand, the source
commits its positions, and the process exits 0 after printing one JSON line with what it handled.

``--pause-ms`` makes the sink rest after every batch, so that a pre-loaded topic is not read to the end
by the first worker before the second one has joined the group.

    python tests/scaleout_worker.py --bootstrap-servers 127.0.0.1:9092 --topic in --output out \\
        --group scaleout --name w1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any

from actorflow import Flow
from actorflow.api.flow import new_event_loop
from actorflow_kafka import KafkaSink, KafkaSource

# Heartbeats every 250 ms instead of 3 s: a worker notices a rebalance (one joining or leaving) sooner.
GROUP_OPTIONS = {"heartbeat_interval_ms": 250}


class PacedKafkaSink(KafkaSink):
    """A KafkaSink that rests ``pause`` seconds after each batch it has written."""

    def __init__(self, topic: str, *, bootstrap_servers: str, pause: float) -> None:
        super().__init__(topic, bootstrap_servers=bootstrap_servers)
        self.pause = pause

    async def write_async(self, values: list[Any]) -> None:
        await super().write_async(values)
        if self.pause > 0:
            await asyncio.sleep(self.pause)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="One worker of the Kafka scale-out test.")
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--name", required=True, help="written into every record this worker handles")
    parser.add_argument("--max-records", type=int, default=50, help="most records per batch")
    parser.add_argument("--pause-ms", type=float, default=0.0, help="rest after every batch written")
    return parser.parse_args(argv)


async def work(args: argparse.Namespace) -> int:
    source = KafkaSource(
        args.topic,
        bootstrap_servers=args.bootstrap_servers,
        group_id=args.group,
        max_records=args.max_records,
        client_options=GROUP_OPTIONS,
    )
    handled = 0

    def tag(record: dict[str, Any]) -> dict[str, Any]:
        nonlocal handled
        handled += 1
        return {**record, "worker": args.name}

    flow = Flow(f"scaleout-{args.name}")
    flow.from_source(source).map(tag).sink(
        PacedKafkaSink(args.output, bootstrap_servers=args.bootstrap_servers, pause=args.pause_ms / 1000)
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, source.stop)
    print("ready", flush=True)
    await flow.run()
    print(json.dumps({"worker": args.name, "records": handled}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(work(args))


if __name__ == "__main__":
    sys.exit(main())
