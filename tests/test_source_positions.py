"""Source positions for checkpoints: a restored source reads exactly what comes after its snapshot."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actorflow import DeadLetter, IterableSource, JsonLinesSource, StateError
from actorflow.operators.base import OperatorContext
from actorflow.operators.sources import Source


async def read_some(source: Source, context: OperatorContext, batches: int | None) -> tuple[list[Any], Any]:
    """Read ``batches`` batches (all if None), then snapshot the position, as a barrier would."""
    records: list[Any] = []
    reader = source.read(context)
    try:
        count = 0
        async for batch in reader:
            assert isinstance(batch, list)
            records.extend(batch)
            count += 1
            if batches is not None and count == batches:
                break
        return records, source.snapshot_state(context)
    finally:
        await reader.aclose()  # type: ignore[attr-defined]


lines_strategy = st.lists(
    st.one_of(
        st.integers(0, 999).map(lambda n: orjson.dumps({"n": n})),
        st.just(b""),  # blank line
        st.just(b"{not json"),  # a dead letter
    ),
    max_size=60,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lines=lines_strategy,
    batch_size=st.integers(1, 7),
    chunk_bytes=st.integers(1, 200),
    cut=st.integers(0, 20),
)
def test_a_json_lines_source_resumes_after_the_last_record_it_yielded(
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[bytes],
    batch_size: int,
    chunk_bytes: int,
    cut: int,
) -> None:
    path = tmp_path_factory.mktemp("positions") / "input.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    context = OperatorContext("source", batch_size=batch_size)
    expected = [orjson.loads(line) for line in lines if line and line != b"{not json"]

    async def scenario() -> tuple[list[Any], list[Any], list[str], list[str]]:
        first_dead: list[DeadLetter] = []
        first = JsonLinesSource(path, dead_letters=first_dead.append, chunk_bytes=chunk_bytes)
        before, position = await read_some(first, context, cut)
        second_dead: list[DeadLetter] = []
        second = JsonLinesSource(path, dead_letters=second_dead.append, chunk_bytes=chunk_bytes)
        second.restore_state(context, [position])
        after, _ = await read_some(second, context, None)
        return before, after, [d.origin for d in first_dead], [d.origin for d in second_dead]

    before, after, first_dead, second_dead = asyncio.run(scenario())
    assert before + after == expected
    bad = [f"{path}:{number}" for number, line in enumerate(lines, 1) if line == b"{not json"]
    # Every bad line is reported, with its true line number; one between the cut and the next
    # record may be reported by both runs (before the restore and after it), none is lost.
    assert set(first_dead) | set(second_dead) == set(bad)


async def test_an_iterable_source_resumes_after_the_records_it_yielded() -> None:
    context = OperatorContext("source", batch_size=3)
    source = IterableSource(range(10))
    before, position = await read_some(source, context, 2)
    assert before == [0, 1, 2, 3, 4, 5] and position == 6
    restored = IterableSource(range(10))
    restored.restore_state(context, [position])
    after, _ = await read_some(restored, context, None)
    assert after == [6, 7, 8, 9]


def test_an_iterator_cannot_be_rewound() -> None:
    source = IterableSource(iter([1, 2, 3]))
    with pytest.raises(StateError, match="cannot rewind"):
        source.restore_state(OperatorContext("source"), [2])


def test_sources_without_positions_snapshot_none(tmp_path: Path) -> None:
    from actorflow import PushSource

    assert PushSource().snapshot_state(OperatorContext("source")) is None
