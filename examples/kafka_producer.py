"""Fill the Kafka topics of the main example, ``examples/fraud_detection.py``.

First it creates whichever of the example's topics is missing: ``transactions`` (4 partitions),
``rules``, ``alerts`` and ``transactions.dead`` (one each). Then it puts the run-time rules on
``rules`` if that topic is empty, and produces transactions to ``transactions``, keyed by card id
(one card's transactions stay in order on one partition). The transactions come from one of three
places:

- by default, the bundled ``examples/data/transactions.jsonl``, once (``--repeat N``: N times);
- with ``--generate``, a live stream from ``examples/generator.py`` at ``--rate`` transactions per
  second of wall-clock time, until ``--limit N`` transactions, SIGTERM or Ctrl-C. Event time starts
  at the current time and advances with the wall clock, so the watermark lag that the dashboard
  shows is real (the flow's allowance for disorder plus its own delay);
- with ``--topics-only``, nowhere: the producer creates the topics and exits.

The rules are ``examples/data/live_rules.jsonl`` (``--rules FILE``, or ``--no-rules``). Their ``ts``
fields are on the bundled generator's clock, which starts at ``generator.START_TS``, so a live stream
gets them moved to its own start (see :func:`rules_from`): the limit that tightens 60 s into the
bundled transactions tightens 60 s after the live stream starts. The rules topic holds the rules'
history, so a producer that finds rules there adds none: a restart leaves the rules, and the
changes published since, alone.

    python3 examples/kafka_producer.py [--file FILE] [--repeat N]
    python3 examples/kafka_producer.py --generate [--rate 200] [--limit N] [--seed S]
    python3 examples/kafka_producer.py --topics-only

The bootstrap servers are ``--bootstrap-servers``, else ``$KAFKA_BOOTSTRAP_SERVERS``, else
127.0.0.1:9092.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

try:
    from generator import START_TS, on_clock, transactions  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - imported as examples.kafka_producer
    from examples.generator import START_TS, on_clock, transactions

DATA = Path(__file__).parent / "data"
TRANSACTIONS = DATA / "transactions.jsonl"
LIVE_RULES = DATA / "live_rules.jsonl"
#: The event time between two of the generator's transactions (its default).
STEP_MS = 10


@dataclass(frozen=True)
class Topics:
    """The main example's topics. Undecodable input goes to ``<transactions>.dead``."""

    transactions: str = "transactions"
    rules: str = "rules"
    alerts: str = "alerts"

    @property
    def dead_letters(self) -> str:
        return f"{self.transactions}.dead"

    def partitions(self) -> dict[str, int]:
        """Each topic with its partition count.

        The transactions are spread over 4 partitions so that several consumers can share them.
        The rules stay in order on one partition.
        """
        return {self.transactions: 4, self.rules: 1, self.alerts: 1, self.dead_letters: 1}


TOPICS = Topics()


async def create_topics(bootstrap_servers: str, topics: Topics = TOPICS) -> list[str]:
    """Create whichever of ``topics`` does not exist yet, and return the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(name, n, 1) for name, n in topics.partitions().items() if name not in existing]
        if not missing:
            return []
        response = await admin.create_topics(missing)
        failed = [
            error
            for error in response.to_object()["topic_errors"]
            # Already there: another producer created it meanwhile.
            if error["error_code"] not in (0, TopicAlreadyExistsError.errno)
        ]
        if failed:
            raise RuntimeError(f"creating Kafka topics failed: {failed}")
        await _wait_for_leaders(admin, {topic.name: topic.num_partitions for topic in missing})
        return [topic.name for topic in missing]
    finally:
        await admin.close()


async def _wait_for_leaders(
    admin: AIOKafkaAdminClient, partitions: dict[str, int], within: float = 30.0
) -> None:
    """Until every partition of the new topics has a leader: until they can be written."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        described = await admin.describe_topics(list(partitions))
        led = {
            topic["topic"]: sum(1 for p in topic["partitions"] if p["leader"] >= 0)
            for topic in described
            if topic["error_code"] == 0
        }
        if led == partitions:
            return
        if loop.time() > deadline:
            raise TimeoutError(f"new topics without a leader for every partition after {within} s: {led}")
        await asyncio.sleep(0.1)


def rules_from(start_ts: int, path: Path = LIVE_RULES) -> list[dict[str, Any]]:
    """The rules in ``path``, moved to a stream whose event time starts at ``start_ts``.

    The file is on the bundled generator's clock, so a rule from ``START_TS + d`` applies from
    ``start_ts + d``. A rule with an earlier ``ts`` (0: from the beginning) keeps it.

    >>> [(rule["limit"], rule["ts"]) for rule in rules_from(2_000_000_000_000)]
    [(8000.0, 0), (5000.0, 2000000060000)]
    """
    rules = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    return [on_clock(rule, start_ts) for rule in rules]


def live_transactions(
    start_ts: int, rate: float, *, seed: int = 7, count: int | None = None
) -> Iterator[dict[str, Any]]:
    """The generator's transactions, with event time from ``start_ts`` at ``rate`` per second.

    The same transactions as the built-in source's (:func:`generator.transactions`), whose event
    time steps ``STEP_MS`` per transaction from ``START_TS``, a few a little out of order. Here
    those times are scaled so that event time advances by exactly ``rate`` transactions per second,
    at any rate, with the same disorder (up to three transactions' worth).

    >>> list(live_transactions(START_TS, rate=100.0, count=1_000)) == list(transactions(count=1_000))
    True
    >>> [tx["ts"] for tx in live_transactions(0, rate=1_000.0, count=8)]
    [-3, 0, 0, 1, 4, 4, 4, 7]
    """
    scale = 1_000 / (STEP_MS * rate)
    for tx in transactions(seed=seed, count=count, step_ms=STEP_MS):
        yield {**tx, "ts": start_ts + round((tx["ts"] - START_TS) * scale)}


async def holds_records(bootstrap_servers: str, topic: str) -> bool:
    """Whether ``topic`` holds any record."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = [TopicPartition(topic, p["partition"]) for found in described for p in found["partitions"]]
    if not partitions:
        return False  # no such topic (yet)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        return any(ends[tp] > starts[tp] for tp in partitions)
    finally:
        await consumer.stop()


async def _send_rules(
    producer: AIOKafkaProducer, bootstrap_servers: str, topic: str, rules: Iterable[dict[str, Any]]
) -> None:
    # Only into an empty topic: the rules topic is the rules' history, and a restarted producer
    # must not undo the changes published since (nor pile up copies of the same versions).
    if await holds_records(bootstrap_servers, topic):
        print(f"{topic!r} already holds rules: none added", flush=True)
        return
    for rule in rules:  # one by one: a rule's versions must stay in order
        await producer.send_and_wait(topic, orjson.dumps(rule), key=str(rule.get("id")).encode())


async def produce(
    bootstrap_servers: str,
    path: Path = TRANSACTIONS,
    repeat: int = 1,
    *,
    topics: Topics = TOPICS,
    rules: Path | None = LIVE_RULES,
) -> int:
    """Create the topics, put ``rules`` on the rules topic if it is empty, then produce every line
    of ``path`` ``repeat`` times. Returns the number of transactions produced.

    The file's transactions are on the generator's clock, so the rules go out unchanged.
    """
    sent = 0
    async with _producer(bootstrap_servers, topics, rules, START_TS) as producer:
        for _ in range(repeat):
            with path.open("rb") as lines:
                for line in lines:
                    tx = orjson.loads(line)
                    await producer.send(topics.transactions, line.rstrip(b"\n"), key=tx["card_id"].encode())
                    sent += 1
    return sent


@contextlib.asynccontextmanager
async def _producer(
    bootstrap_servers: str, topics: Topics, rules: Path | None, start_ts: int
) -> AsyncIterator[AIOKafkaProducer]:
    """The topics created, the rules (moved to ``start_ts``) on an empty rules topic, and a
    producer to send the transactions with, flushed and stopped at the end."""
    await create_topics(bootstrap_servers, topics)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, linger_ms=5)
    await producer.start()
    try:
        if rules is not None:
            await _send_rules(producer, bootstrap_servers, topics.rules, rules_from(start_ts, rules))
        yield producer
        await producer.flush()
    finally:
        await producer.stop()


async def generate(
    bootstrap_servers: str,
    *,
    rate: float = 200.0,
    limit: int | None = None,
    seed: int = 7,
    topics: Topics = TOPICS,
    rules: Path | None = LIVE_RULES,
    stop: asyncio.Event | None = None,
) -> int:
    """Create the topics, put ``rules`` (moved to now) on the rules topic if it is empty, then
    produce :func:`live_transactions` at ``rate`` per second of wall-clock time until ``limit``
    transactions or ``stop`` is set.

    Transaction ``i`` is sent no earlier than ``i / rate`` seconds after the start, and its event
    time is not ahead of the wall clock when it is sent (to the millisecond). Returns the number of
    transactions produced.
    """
    if rate <= 0:
        raise ValueError("rate must be positive: event time follows the wall clock")
    start_ts = int(time.time() * 1000)
    sent = 0
    async with _producer(bootstrap_servers, topics, rules, start_ts) as producer:
        loop = asyncio.get_running_loop()
        began = loop.time()
        for tx in live_transactions(start_ts, rate, seed=seed, count=limit):
            if stop is not None and stop.is_set():
                break
            ahead = began + sent / rate - loop.time()
            if ahead > 0:
                await asyncio.sleep(ahead)  # the rate limit; a late producer catches up without sleeping
            await producer.send(topics.transactions, orjson.dumps(tx), key=tx["card_id"].encode())
            sent += 1
    return sent


async def _main(args: argparse.Namespace) -> str:
    topics = Topics(args.transactions_topic, args.rules_topic, args.alerts_topic)
    servers = args.bootstrap_servers
    rules = None if args.no_rules else args.rules
    if args.topics_only:
        created = await create_topics(servers, topics)
        return f"created {len(created)} topics on {servers}: {', '.join(created) or 'none missing'}"
    if not args.generate:
        sent = await produce(servers, args.file, args.repeat, topics=topics, rules=rules)
        return f"produced {sent} transactions to {topics.transactions!r} on {servers}"
    # `docker stop` sends SIGTERM: finish the send in progress, flush, and exit 0. As process 1 of a
    # container, Python ignores SIGTERM unless it has a handler.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(
        f"producing {args.rate:g} transactions/s to {topics.transactions!r} on {servers}, "
        f"event time from now{'' if args.limit is None else f', {args.limit} of them'}",
        flush=True,
    )
    sent = await generate(
        servers, rate=args.rate, limit=args.limit, seed=args.seed, topics=topics, rules=rules, stop=stop
    )
    return f"produced {sent} transactions to {topics.transactions!r} on {servers}"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line: what ``main`` runs (``None``: the process's arguments)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bootstrap-servers",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        help="HOST:PORT[,...] (default $KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:9092)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--generate", action="store_true", help="a live stream from the generator, event time from now"
    )
    mode.add_argument("--topics-only", action="store_true", help="create the topics, produce nothing")
    parser.add_argument("--file", type=Path, default=TRANSACTIONS, help="the transactions to produce")
    parser.add_argument("--repeat", type=int, default=1, help="produce the file N times")
    parser.add_argument(
        "--rate", type=float, default=200.0, help="--generate: transactions per second (200)"
    )
    parser.add_argument("--limit", type=int, default=None, help="--generate: stop after N transactions")
    parser.add_argument("--seed", type=int, default=7, help="--generate: the generator's seed")
    parser.add_argument(
        "--rules", type=Path, default=LIVE_RULES, help="the rules to put on the rules topic"
    )
    parser.add_argument("--no-rules", action="store_true", help="put no rules on the rules topic")
    parser.add_argument(
        "--transactions-topic", default=TOPICS.transactions, help="its dead letters go to NAME.dead"
    )
    parser.add_argument("--rules-topic", default=TOPICS.rules)
    parser.add_argument("--alerts-topic", default=TOPICS.alerts, help="created if missing, left empty")
    args = parser.parse_args(argv)
    if args.rate <= 0:
        parser.error("--rate must be positive")
    return args


def main() -> None:
    print(asyncio.run(_main(parse_args())), flush=True)


if __name__ == "__main__":
    main()
