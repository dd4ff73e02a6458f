"""The collector waits while a batch is in flight: the file source holds it paused from decoding a
batch until the chain asks for the next one, holds nest, the paced collections still run, a
collection that came due runs as a hold ends, and a collector the user disabled stays disabled."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from actorflow import JsonLinesSource, WatermarkStrategy
from actorflow.operators.base import OperatorContext
from actorflow.runtime import collector
from actorflow.runtime.collector import batch_in_flight


@contextmanager
def collections() -> Iterator[list[int]]:
    """The generations of the collections that start in the block."""
    seen: list[int] = []

    def note(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    gc.callbacks.append(note)
    try:
        yield seen
    finally:
        gc.callbacks.remove(note)


def test_a_hold_pauses_the_collector_and_holds_nest_in_any_order() -> None:
    first, second = batch_in_flight(), batch_in_flight()
    first.__enter__()
    second.__enter__()
    assert not gc.isenabled()
    first.__exit__(None, None, None)  # the first ends while the second is still in flight
    assert not gc.isenabled()
    second.__exit__(None, None, None)
    assert gc.isenabled()


def test_paced_collections_run_during_a_hold() -> None:
    with collections() as seen, batch_in_flight():
        collector.records_done(collector.PACE_RECORDS)
    assert 1 in seen


def test_a_collection_due_when_a_hold_ends_runs_then() -> None:
    gc.collect()
    with collections() as seen:
        with batch_in_flight():
            kept = [[] for _ in range(3 * gc.get_threshold()[0])]  # the count passes the threshold
            assert seen == []
        assert seen, "the collection that came due did not run"
    assert len(kept) == 3 * gc.get_threshold()[0]


def test_a_disabled_collector_stays_disabled_and_runs_nothing() -> None:
    gc.disable()
    try:
        with collections() as seen:
            with batch_in_flight():
                kept = [[] for _ in range(3 * gc.get_threshold()[0])]
                collector.records_done(collector.PACE_RECORDS)
            assert not gc.isenabled()
        assert seen == [] and kept
    finally:
        gc.enable()


def _source(tmp_path: Path, count: int) -> tuple[JsonLinesSource, OperatorContext]:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(orjson.dumps({"ts": n}) + b"\n" for n in range(count)))
    context = OperatorContext("source", batch_size=4, watermarks=WatermarkStrategy.punctuated("ts"))
    return JsonLinesSource(path), context


async def test_the_file_source_holds_the_collector_while_its_consumer_has_a_batch(tmp_path: Path) -> None:
    source, context = _source(tmp_path, 10)
    enabled = []
    async for batch in source.read(context):
        enabled.append(gc.isenabled())
        assert batch.values
    assert enabled == [False, False, False]
    assert gc.isenabled()


async def test_a_consumer_that_stops_early_releases_the_hold(tmp_path: Path) -> None:
    source, context = _source(tmp_path, 10)
    reader = source.read(context)
    await anext(reader)
    assert not gc.isenabled()
    await reader.aclose()  # type: ignore[attr-defined]
    assert gc.isenabled()
