"""Feed the Kafka fraud-detection example: transactions from a JSON-lines file into a topic.

Creates the topics the example uses if they are missing, then produces every line of the file,
keyed by card id (so one card's transactions stay in order on one partition)::

    python3 examples/kafka_producer.py [--bootstrap-servers HOST:PORT] [--file FILE] [--repeat N]

The bootstrap servers default to ``$KAFKA_BOOTSTRAP_SERVERS``, else 127.0.0.1:9092.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

DATA = Path(__file__).parent / "data" / "transactions.jsonl"
TOPICS = {"transactions": 4, "fraud-alerts": 1, "transactions.dead": 1}


async def create_topics(bootstrap_servers: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(t, n, 1) for t, n in TOPICS.items() if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()


async def produce(
    bootstrap_servers: str, path: Path, repeat: int = 1, *, topic: str = "transactions"
) -> int:
    """Produce every line of ``path`` (``repeat`` times) to ``topic``; returns the count."""
    if topic == "transactions":
        await create_topics(bootstrap_servers)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, linger_ms=5)
    await producer.start()
    sent = 0
    try:
        for _ in range(repeat):
            with path.open("rb") as lines:
                for line in lines:
                    tx = orjson.loads(line)
                    await producer.send(topic, line.rstrip(b"\n"), key=tx["card_id"].encode())
                    sent += 1
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bootstrap-servers",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
    )
    parser.add_argument("--file", type=Path, default=DATA)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    sent = asyncio.run(produce(args.bootstrap_servers, args.file, args.repeat))
    print(f"produced {sent} transactions to 'transactions' on {args.bootstrap_servers}")


if __name__ == "__main__":
    main()
