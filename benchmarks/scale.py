"""``python -m benchmarks scale``: Q2 and Q3 over Kafka with 1 and with 2 worker processes.

Per query and per number of workers, that many ``python -m benchmarks worker`` processes start
with a fresh consumer group on a fresh, empty input topic of ``--partitions`` partitions; once the
group is stable (every worker has its partitions), the input (``--events`` seeded transactions,
keyed by card) is loaded, and the workers run until the group's committed offsets reach its end
(every task committed its last records, so every result is visible to ``read_committed``
readers); then they are stopped with SIGTERM and each prints its statistics.

Events per second = the input's events / (the last commit of records in any worker - the first
record any worker read): interpreter start-up, joining the group and the rebalances before the
input arrives are left out; the workers read while the input is being loaded (which runs in this
process, on the same cores). The output is compared with the plain reference run per partition
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
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from benchmarks import reference
from benchmarks.kafka import _bootstrap_servers, create_topics, delete_topics, preload

__all__ = ["expected", "main", "read_partitions"]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAG_MS = 2_000
#: How long reading a topic back may take.
_READ_TIMEOUT_S = 120


async def read_partitions(
    bootstrap: str, topic: str, decode: Callable[[Any], Any] = lambda record: orjson.loads(record.value)
) -> dict[int, list[Any]]:
    """``decode(record)`` of every record of every partition of ``topic`` up to its last stable
    offset, in offset order (``read_committed``: what a transactional reader sees)."""
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
        async with asyncio.timeout(_READ_TIMEOUT_S):
            while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
                fetched = await consumer.getmany(timeout_ms=500, max_records=50_000)
                for tp, records in fetched.items():
                    found[tp.partition] += [decode(r) for r in records if r.offset < ends[tp]]
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


async def _group_stable(bootstrap: str, group: str, members: int) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    for found in described:
        for entry in found.to_object().get("groups", []):
            if entry.get("state") == "Stable" and len(entry.get("members", [])) == members:
                return True
    return False


async def _run(
    bootstrap: str, query: str, workers: int, events: int, partitions: int, seed: int, limit_s: float
) -> dict[str, Any]:
    """One run: the workers join the group on an empty topic, then the input is loaded."""
    source = f"scale-{query}-{workers}-in-{uuid.uuid4().hex[:8]}"
    output = f"scale-{query}-{workers}-out-{uuid.uuid4().hex[:8]}"
    group = f"scale-{query}-{workers}-{uuid.uuid4().hex[:8]}"
    await create_topics(bootstrap, [source, output], partitions)
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

        async def until(done: Callable[[], Awaitable[bool]], what: str) -> None:
            while not await done():
                failed = [p.returncode for p in processes if p.returncode is not None]
                if failed:
                    raise RuntimeError(f"a worker exited with {failed[0]}")
                if loop.time() > deadline:
                    raise RuntimeError(f"{query} with {workers} workers: {what} after {limit_s:g} s")
                await asyncio.sleep(0.2)

        await until(lambda: _group_stable(bootstrap, group, workers), "the group is not stable")
        await preload(bootstrap, source, events, seed)
        per_partition = await read_partitions(bootstrap, source)
        ends = {TopicPartition(source, p): len(values) for p, values in per_partition.items()}
        await until(lambda: _all_committed(bootstrap, group, ends), "not done")
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
    results = [v for values in (await read_partitions(bootstrap, output)).values() for v in values]
    await delete_topics(bootstrap, [source, output])
    return {
        "seconds": (last - first) / 1000,
        "records": sum(s["records"] for s in stats),
        "peak_rss_mib": max(s["peak_rss_kib"] for s in stats) / 1024,
        "worker_cpu_s": sum(s["cpu_s"] for s in stats),
        "results": results,
        "expected": expected(query, per_partition),
    }


async def _main(
    bootstrap: str, events: int, partitions: int, seed: int, queries: Sequence[str], limit_s: float
) -> int:
    print(f"{events:,} events in {partitions} partitions", file=sys.stderr, flush=True)
    print("| query | 1 worker (events/s) | 2 workers (events/s) | ratio | peak RSS | equal |")
    print("|---|---:|---:|---:|---:|---|")
    status = 0
    for query in queries:
        rates: list[float] = []
        rss: list[float] = []
        equal = True
        for workers in (1, 2):
            run = await _run(bootstrap, query, workers, events, partitions, seed, limit_s)
            rates.append(events / run["seconds"])
            rss.append(run["peak_rss_mib"])
            equal = equal and _multiset(run["results"]) == _multiset(run["expected"])
            print(
                f"{query}, {workers} worker(s): {rates[-1]:,.0f} events/s over {run['seconds']:.2f} s, "
                f"workers' CPU {run['worker_cpu_s']:.2f} s, {run['records']:,} records read, equal={equal}",
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
