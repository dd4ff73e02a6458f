"""The file source's and the punctuated watermarks' batch-wide fast paths agree with the plain
rules they stand for: a JSON-lines file read with event time gives the records, timestamps, marks
and dead letters of a line-by-line reading, whatever the lines and the batch size."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actorflow import DeadLetter, JsonLinesSource, WatermarkStrategy
from actorflow.operators.base import OperatorContext
from actorflow.runtime.messages import MIN_WATERMARK, Batch
from actorflow.time.watermarks import (
    EVENT_TIME_LIMIT,
    PunctuatedGenerator,
    event_time,
    field_getter,
    plain_event_times,
)

# Event times a JSON line may hold: mostly plain ints, and every kind the checks must catch.
odd_times = st.one_of(
    st.floats(allow_nan=False),
    st.booleans(),
    st.text(max_size=3),
    st.none(),
    st.sampled_from([EVENT_TIME_LIMIT, -EVENT_TIME_LIMIT, EVENT_TIME_LIMIT - 1, 1 - EVENT_TIME_LIMIT]),
    st.integers(-(2**63), 2**64 - 1),  # what orjson writes
)
times = st.one_of(st.integers(0, 10_000), odd_times)

lines_strategy = st.lists(
    st.one_of(
        times.map(lambda ts: orjson.dumps({"ts": ts})),
        st.integers(0, 10_000).map(lambda ts: orjson.dumps({"ts": ts})),
        st.just(b'{"ts": 123456789012345678901234567890}'),  # beyond 64 bits
        st.just(b"{}"),  # no event time
        st.just(b""),  # blank
        st.just(b"{oops"),  # not JSON
    ),
    max_size=40,
)


def reference(lines: list[bytes], lag: int, path: Path) -> tuple[list[Any], list[int], list[str]]:
    """Records, their watermarks after each (None where it did not move) and dead letters' origins,
    line by line, with the rules written out (BENCHMARK.md: ``W_i = max(ts_0..ts_i) - lag``)."""
    records: list[Any] = []
    watermarks: list[Any] = []
    dead: list[str] = []
    highest = MIN_WATERMARK
    time_of = field_getter("ts")
    for number, line in enumerate(lines, 1):
        if not line:
            continue
        try:
            record = orjson.loads(line)
            time = event_time(time_of, record)
        except (orjson.JSONDecodeError, ValueError, TypeError):
            dead.append(f"{path}:{number}")
            continue
        records.append(record)
        watermarks.append(time - lag if time > highest else None)
        highest = max(highest, time)
    return records, watermarks, dead


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=lines_strategy, batch_size=st.integers(1, 9), lag=st.integers(0, 50))
def test_a_json_lines_source_with_event_time_reads_as_line_by_line(
    tmp_path_factory: pytest.TempPathFactory, lines: list[bytes], batch_size: int, lag: int
) -> None:
    path = tmp_path_factory.mktemp("fast") / "input.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    dead: list[DeadLetter] = []
    source = JsonLinesSource(path, dead_letters=dead.append, chunk_bytes=64)
    strategy = WatermarkStrategy.punctuated("ts", lag_ms=lag)
    context = OperatorContext("source", batch_size=batch_size, watermarks=strategy)

    async def read() -> list[Batch]:
        return [batch async for batch in source.read(context)]  # type: ignore[misc]

    batches = asyncio.run(read())
    records: list[Any] = []
    watermarks: list[Any] = []
    for batch in batches:
        assert isinstance(batch, Batch) and batch.timestamps is not None
        assert 0 < len(batch) <= batch_size
        assert batch.timestamps == [record["ts"] for record in batch.values]
        moved = dict(batch.marks or ())
        watermarks.extend(moved.get(position) for position in range(1, len(batch) + 1))
        records.extend(batch.values)
    expected_records, expected_watermarks, expected_dead = reference(lines, lag, path)
    assert records == expected_records
    assert watermarks == expected_watermarks
    assert [letter.origin for letter in dead] == expected_dead


@given(st.lists(times, max_size=12))
def test_plain_event_times_are_those_event_time_takes_as_ints(values: list[Any]) -> None:
    def taken_as_int(value: Any) -> bool:
        try:
            return type(event_time(lambda v: v, value)) is int
        except (ValueError, TypeError):
            return False

    assert plain_event_times(values) == (bool(values) and all(map(taken_as_int, values)))


@given(st.lists(st.lists(st.integers(-(2**62), 2**62), max_size=30), max_size=6), st.integers(0, 100))
def test_punctuated_marks_follow_every_new_maximum(batches: list[list[int]], lag: int) -> None:
    generator = PunctuatedGenerator(lag)
    highest = MIN_WATERMARK
    for timestamps in batches:
        expected = []
        for position, timestamp in enumerate(timestamps, 1):
            if timestamp > highest:
                highest = timestamp
                expected.append((position, timestamp - lag))
        assert generator.on_batch(timestamps) == expected


def test_punctuated_marks_of_a_batch_longer_than_the_positions_made_once() -> None:
    timestamps = list(range(40_000))
    marks = PunctuatedGenerator(5).on_batch(timestamps)
    assert marks == [(position, position - 6) for position in range(1, 40_001)]


def test_a_source_read_in_batches_reports_its_position_after_each(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    lines = [orjson.dumps({"ts": n}) + b"\n" for n in range(7)]
    path.write_bytes(b"".join(lines))
    source = JsonLinesSource(path)
    context = OperatorContext("source", batch_size=3)

    async def positions() -> list[tuple[int, int]]:
        seen = []
        async for _ in source.read(context):
            seen.append(source.snapshot_state(context))
        return seen

    ends = [sum(map(len, lines[:count])) for count in (3, 6, 7)]
    assert asyncio.run(positions()) == [(ends[0], 3), (ends[1], 6), (ends[2], 7)]


@given(st.lists(st.lists(times, max_size=8), max_size=5), st.integers(0, 100))
def test_punctuated_marks_of_plain_batches_are_checked_in_the_same_loop(
    batches: list[list[Any]], lag: int
) -> None:
    fused = PunctuatedGenerator(lag)
    general = PunctuatedGenerator(lag)
    for timestamps in batches:
        expected = general.on_batch(timestamps) if plain_event_times(timestamps) else None
        assert fused.on_plain_batch(timestamps) == expected
        assert fused.on_batch([0, 10**15]) == general.on_batch([0, 10**15])  # the same state after


def test_a_first_timestamp_at_the_lower_limit_is_not_plain() -> None:
    generator = PunctuatedGenerator(0)
    assert generator.on_plain_batch([-EVENT_TIME_LIMIT, 5]) is None  # a new maximum, out of range
    assert generator.on_plain_batch([5, -EVENT_TIME_LIMIT]) is None
    assert generator.on_plain_batch([1 - EVENT_TIME_LIMIT]) == [(1, 1 - EVENT_TIME_LIMIT)]


plain_lines = st.lists(
    st.one_of(
        st.integers(0, 10_000).map(lambda n: orjson.dumps({"n": n})),
        st.just(b""),  # blank
        st.just(b"{oops"),  # not JSON
    ),
    max_size=40,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=plain_lines, batch_size=st.integers(1, 9))
def test_a_json_lines_source_without_event_time_reads_as_line_by_line(
    tmp_path_factory: pytest.TempPathFactory, lines: list[bytes], batch_size: int
) -> None:
    # Batches decoded straight from the file (the fast path) and batches with a bad or blank line
    # (read again and decoded line by line) give the records, dead letters and positions of
    # reading the lines one at a time.
    path = tmp_path_factory.mktemp("plain") / "input.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    dead: list[DeadLetter] = []
    source = JsonLinesSource(path, dead_letters=dead.append, chunk_bytes=64)
    context = OperatorContext("source", batch_size=batch_size)

    async def read() -> list[tuple[list[Any], tuple[int, int]]]:
        return [(batch, source.snapshot_state(context)) async for batch in source.read(context)]  # type: ignore[misc]

    batches = asyncio.run(read())
    records = [record for batch, _ in batches for record in batch]
    good = [number for number, line in enumerate(lines, 1) if line and line != b"{oops"]
    assert records == [orjson.loads(lines[number - 1]) for number in good]
    bad = [number for number, line in enumerate(lines, 1) if line == b"{oops"]
    assert [letter.origin for letter in dead] == [f"{path}:{number}" for number in bad]
    sent = 0
    for batch, (offset, line_number) in batches:  # a batch of blank or bad lines only is not sent
        assert 0 < len(batch) <= batch_size
        sent += len(batch)
        # the position is just after the batch's lines: the records so far are those before it
        assert offset == sum(len(line) + 1 for line in lines[:line_number])
        assert sent == sum(number <= line_number for number in good)
