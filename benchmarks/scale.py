"""``python -m benchmarks scale``: Q2 and Q3 over Kafka with 1 and with 2 worker processes.

The input (``--events`` seeded transactions, keyed by card) is loaded into a topic of
``--partitions`` partitions first. Then, per query and per number of workers, that many
``python -m benchmarks worker`` processes run the query as partition tasks with a fresh consumer
group, into a fresh output topic, until the group's committed offsets reach the end of the input
(every task committed its last records, so every result is visible to ``read_committed``
readers); then they are stopped with SIGTERM and each prints its statistics.

Events per second = the input's events / (the last commit of records in any worker - the first
record any worker read): interpreter start-up, joining the group and the initial rebalances before
the first record are left out, a rebalance after it is not (two workers joining one after the other
is part of scaling out). The output is compared with the plain reference run per partition
(``benchmarks/reference.py``). It uses ``$KAFKA_BOOTSTRAP_SERVERS``, else starts the project's own
broker, which shares the machine's cores with the workers.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import sys
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from benchmarks import reference
from benchmarks.kafka import _bootstrap_servers, create_topics, delete_topics, preload

__all__ = ["main"]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAG_MS = 2_000


async def _read_partitions(bootstrap: str, topic: str) -> dict[int, list[Any]]:
    """Every value of every partition of ``topic`` up to its (last stable) end, in offset order."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        metadata = await consumer._client.fetch_all_metadata()
        partitions = [TopicPartition(topic, p) for p in sorted(metadata.partitions_for_topic(topic))]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: dict[int, list[Any]] = {tp.partition: [] for tp in partitions}
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            fetched = await consumer.getmany(timeout_ms=500, max_records=50_000)
            for tp, records in fetched.items():
                found[tp.partition] += [orjson.loads(r.value) for r in records if r.offset < ends[tp]]
        return found
    finally:
        await consumer.stop()


def expected(query: str, per_partition: dict[int, list[Any]]) -> list[Any]:
    """The reference's results, per partition: Q3's alerts; Q2's windows each partition's
    watermark (its ``max ts - 2000``) has fired."""
    found: list[Any] = []
    for records in per_partition.values():
        if not records:
            continue
        if query == "q3":
            found += reference.q3(records)
            continue
        watermark = max(r["ts"] for r in records) - LAG_MS
        windows, _ = reference.q2(records)
        found += [w for w in windows if w["window_end"] - 1 <= watermark]
    return found


def _multiset(values: list[Any]) -> collections.Counter[bytes]:
    return collections.Counter(orjson.dumps(v, option=orjson.OPT_SORT_KEYS) for v in values)


async def _all_committed(bootstrap: str, group: str, ends: dict[TopicPartition, int]) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group, partitions=list(ends))
    finally:
        await admin.close()
    return all(tp in committed and committed[tp].offset >= end for tp, end in ends.items())


async def _run(
    bootstrap: str, query: str, workers: int, source: str, ends: dict[TopicPartition, int], limit_s: float
) -> dict[str, Any]:
    output = f"scale-{query}-{workers}-out-{uuid.uuid4().hex[:8]}"
    group = f"scale-{query}-{workers}-{uuid.uuid4().hex[:8]}"
    await create_topics(bootstrap, [output], len(ends))
    argv = [
        *("--query", query),
        *("--bootstrap-servers", bootstrap),
        *("--input-topic", source),
        *("--output-topic", output),
        *("--group", group),
        *("--checkpoint-interval-ms", "1000"),
        *("--max-records", "1000"),
        *("--heartbeat-interval-ms", "500"),
        *("--session-timeout-ms", "6000"),
    ]
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks", "worker", *argv,
            cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(workers)
    ]  # fmt: skip
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        while not await _all_committed(bootstrap, group, ends):
            failed = [p.returncode for p in processes if p.returncode is not None]
            if failed:
                raise RuntimeError(f"a worker exited with {failed[0]}")
            if loop.time() > deadline:
                raise RuntimeError(f"{query} with {workers} workers: not done after {limit_s:g} s")
            await asyncio.sleep(0.2)
        for process in processes:
            process.send_signal(signal.SIGTERM)
        outputs = [await process.communicate() for process in processes]
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
    stats = [orjson.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    first = min(s["first_record_ms"] for s in stats if s["first_record_ms"] is not None)
    last = max(s["last_commit_ms"] for s in stats if s["last_commit_ms"] is not None)
    results = [v for values in (await _read_partitions(bootstrap, output)).values() for v in values]
    await delete_topics(bootstrap, [output])
    return {
        "seconds": (last - first) / 1000,
        "records": sum(s["records"] for s in stats),
        "peak_rss_mib": max(s["peak_rss_kib"] for s in stats) / 1024,
        "results": results,
    }


async def _main(
    bootstrap: str, events: int, partitions: int, seed: int, queries: Sequence[str], limit_s: float
) -> int:
    source = f"scale-in-{uuid.uuid4().hex[:8]}"
    await create_topics(bootstrap, [source], partitions)
    try:
        await preload(bootstrap, source, events, seed)
        per_partition = await _read_partitions(bootstrap, source)
        ends = {TopicPartition(source, p): len(values) for p, values in per_partition.items()}
        print(f"{events:,} events in {partitions} partitions", file=sys.stderr, flush=True)
        print(
            "| query | 1 worker (events/s) | 2 workers (events/s) | ratio | peak RSS per worker | equal |"
        )
        print("|---|---:|---:|---:|---:|---|")
        status = 0
        for query in queries:
            wanted = _multiset(expected(query, per_partition))
            rates: list[float] = []
            rss: list[float] = []
            equal = True
            for workers in (1, 2):
                run = await _run(bootstrap, query, workers, source, ends, limit_s)
                rates.append(events / run["seconds"])
                rss.append(run["peak_rss_mib"])
                equal = equal and _multiset(run["results"]) == wanted
                print(
                    f"{query}, {workers} worker(s): {rates[-1]:,.0f} events/s, {run['records']:,} records "
                    f"read, equal={equal}",
                    file=sys.stderr,
                    flush=True,
                )
            print(
                f"| {query} | {rates[0]:,.0f} | {rates[1]:,.0f} | {rates[1] / rates[0]:.2f} "
                f"| {max(rss):.0f} MiB | {'yes' if equal else 'NO'} |",
                flush=True,
            )
            status = status or (0 if equal else 1)
        return status
    finally:
        await delete_topics(bootstrap, [source])


def main(
    events: int = 400_000,
    partitions: int = 4,
    seed: int = 1,
    queries: Sequence[str] = ("q2", "q3"),
    timeout: float = 600.0,
) -> int:
    """Run the comparison, print a Markdown table; return 1 if an output differs from the reference."""
    with _bootstrap_servers() as bootstrap:
        return asyncio.run(_main(bootstrap, events, partitions, seed, queries, timeout))
