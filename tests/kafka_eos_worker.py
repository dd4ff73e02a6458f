"""The worker of the exactly-once Kafka tests (``tests/test_kafka_exactly_once.py``), run as a process
of its own (``python -m tests.kafka_eos_worker`` from the project's root) so that a test can kill it
with SIGKILL at any moment.

It runs Q3 of ``shared/BENCHMARK.md`` (the fraud pattern) from an input topic to an output topic:
``KafkaSource(bounded=True, group_id=...)`` -> ``key_by("card_id")`` -> ``SmallThenLarge`` ->
``KafkaSink(exactly_once=True, offsets_of=source)``, with checkpoints in ``--checkpoints`` every
``--interval-ms``. Started again after a kill, it resumes from the checkpoint whose transaction Kafka
committed; it exits 0 once the whole input is done and the final checkpoint committed.

It prints one line per event the test waits for, flushed at once (it may die any moment):
``ready`` when the flow starts, ``complete N`` when checkpoint N is complete (just before its
transaction commits), ``restore accepted|rejected`` for every checkpoint the restart considers, and
``done`` at the end.

``--kill-at-checkpoint N`` makes the worker SIGKILL itself when the N-th checkpoint of this run that
carries offsets is complete, after the manifest is written and before the transaction commits: the
window in which a restart must take the previous checkpoint. (Under load the first checkpoints may
come before the source has partitions; they commit nothing, so they are not counted.)

    python -m tests.kafka_eos_worker --bootstrap-servers 127.0.0.1:9092 --input tx --output alerts \\
        --group q3 --transactional-id q3-0 --checkpoints /tmp/q3-checkpoints
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from actorflow import Flow, WatermarkStrategy
from actorflow.api.flow import new_event_loop
from actorflow.operators.base import OperatorContext
from actorflow.runtime.messages import Batch
from actorflow_kafka import KafkaSink, KafkaSource
from actorflow_kafka.transactions import owned_offsets
from benchmarks.actorflow_engine import LAG_MS, SmallThenLarge


def say(line: str) -> None:
    print(line, flush=True)


class ReportingSource(KafkaSource):
    """Says which checkpoints a restart accepts; rests ``pause`` seconds after every batch it reads
    (so that a test's kills find the job mid-stream, not done)."""

    def __init__(self, *args: Any, pause: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pause = pause

    async def read(self, context: OperatorContext) -> AsyncIterator[list[Any] | Batch]:
        batches = super().read(context)
        assert isinstance(batches, AsyncGenerator)
        async with contextlib.aclosing(batches):
            async for batch in batches:
                yield batch
                await asyncio.sleep(self.pause)

    async def accepts_restore(self, states: list[Any]) -> bool:
        accepted = await super().accepts_restore(states)
        say(f"restore {'accepted' if accepted else 'rejected'}")
        return accepted


class ReportingSink(KafkaSink):
    """Says when a checkpoint is complete; with ``kill_at``, dies right there (before the commit)
    at the ``kill_at``-th checkpoint whose transaction carries offsets. One taken before the source
    had partitions commits nothing (its records go with the next one), so it does not count: a
    restart must find an earlier checkpoint that Kafka committed."""

    def __init__(self, *args: Any, kill_at: int | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kill_at = kill_at
        self.completed = [0]  # shared by the per-run copies

    async def checkpoint_complete(self, checkpoint_id: int) -> None:
        if owned_offsets(self._captured.values()):
            self.completed[0] += 1
        say(f"complete {checkpoint_id}")
        if self.kill_at is not None and self.completed[0] == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        await super().checkpoint_complete(checkpoint_id)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Q3 from Kafka to Kafka, exactly once.")
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--transactional-id", required=True)
    parser.add_argument("--checkpoints", required=True, help="the checkpoint directory")
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--interval-ms", type=int, default=100)
    parser.add_argument("--max-records", type=int, default=250, help="most records per poll")
    parser.add_argument("--pause-ms", type=float, default=0.0, help="rest after every batch read")
    parser.add_argument("--kill-at-checkpoint", type=int, default=None)
    return parser.parse_args(argv)


def build(args: argparse.Namespace) -> Flow:
    flow = Flow("q3-exactly-once", parallelism=args.parallelism, batch_size=args.max_records)
    flow.enable_checkpointing(args.checkpoints, interval_ms=args.interval_ms)
    source = ReportingSource(
        args.input,
        bootstrap_servers=args.bootstrap_servers,
        group_id=args.group,
        bounded=True,
        max_records=args.max_records,
        pause=args.pause_ms / 1000,
    )
    sink = ReportingSink(
        args.output,
        bootstrap_servers=args.bootstrap_servers,
        key="card_id",
        exactly_once=True,
        transactional_id=args.transactional_id,
        offsets_of=source,
        kill_at=args.kill_at_checkpoint,
    )
    (
        flow.from_source(source, name="transactions", watermarks=WatermarkStrategy.punctuated("ts", LAG_MS))
        .key_by("card_id")
        .process(SmallThenLarge(), name="fraud")
        .sink(sink, name="alerts")
    )
    return flow


async def work(args: argparse.Namespace) -> int:
    flow = build(args)
    say("ready")
    await flow.run()
    say("done")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(work(args))


if __name__ == "__main__":
    sys.exit(main())
