"""select (filter) and expand (flat map) keep timestamps and in-batch watermarks in step."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from actorflow.operators.batches import expand, select
from actorflow.runtime.messages import Batch

# A batch as a plain event stream: ("record", value, timestamp) and ("mark", watermark) in order.
Event = tuple[Any, ...]


def events_of(batch: Batch) -> list[Event]:
    marks = batch.marks or []
    events: list[Event] = []
    next_mark = 0
    for position in range(len(batch.values) + 1):
        while next_mark < len(marks) and marks[next_mark][0] == position:
            events.append(("mark", marks[next_mark][1]))
            next_mark += 1
        if position < len(batch.values):
            stamp = batch.timestamps[position] if batch.timestamps is not None else None
            events.append(("record", batch.values[position], stamp))
    assert next_mark == len(marks)
    return events


def collapsed(events: list[Event]) -> list[Event]:
    """Marks with no record between them: only the last one matters (and only it is kept)."""
    return [
        event
        for n, event in enumerate(events)
        if event[0] != "mark" or n + 1 == len(events) or events[n + 1][0] != "mark"
    ]


def triple(batch: Batch) -> tuple[list[Any], list[Any] | None, list[tuple[int, int]]]:
    return batch.values, batch.timestamps, batch.marks or []


# -- examples --------------------------------------------------------------------------------------


def test_select_keeps_chosen_records_with_their_timestamps() -> None:
    out = select(Batch(["a", "b", "c"], [1, 2, 3], [(2, 9)]), [True, False, True])
    assert triple(out) == (["a", "c"], [1, 3], [(1, 9)])


def test_select_without_timestamps_or_marks() -> None:
    out = select(Batch([1, 2, 3, 4]), [False, True, False, True])
    assert (out.values, out.timestamps, out.marks) == ([2, 4], None, None)


def test_select_moves_marks_to_the_records_kept_before_them() -> None:
    source = Batch(["a", "b", "c", "d"], None, [(1, 2), (3, 3), (4, 4)])
    out = select(source, [True, False, True, True])
    assert triple(out) == (["a", "c", "d"], None, [(1, 2), (2, 3), (3, 4)])


def test_select_collapses_marks_left_with_no_record_between_them() -> None:
    source = Batch(["a", "b", "c", "d"], None, [(0, 1), (1, 2), (3, 3), (4, 4)])
    out = select(source, [False, True, True, False])
    # unfolded: (0, 1), (0, 2), (2, 3), (2, 4)
    assert triple(out) == (["b", "c"], None, [(0, 2), (2, 4)])


def test_select_dropping_everything_keeps_the_last_mark() -> None:
    out = select(Batch(["a", "b"], [1, 2], [(1, 5), (2, 6)]), [False, False])
    assert triple(out) == ([], [], [(0, 6)])


def test_select_does_not_touch_its_input() -> None:
    source = Batch(["a", "b"], [1, 2], [(1, 5)])
    select(source, [False, True])
    assert triple(source) == (["a", "b"], [1, 2], [(1, 5)])


def test_expand_replaces_each_record_by_its_outputs() -> None:
    out = expand(Batch(["ab", "c"], [1, 2], [(1, 5)]), [["a", "b"], ["c"]])
    assert triple(out) == (["a", "b", "c"], [1, 1, 2], [(2, 5)])


def test_expand_with_records_that_produce_nothing() -> None:
    source = Batch(["x", "y", "z"], [10, 20, 30], [(1, 1), (2, 2), (3, 3)])
    out = expand(source, [[], ["y1", "y2", "y3"], []])
    # unfolded: (0, 1), (3, 2), (3, 3)
    assert triple(out) == (["y1", "y2", "y3"], [20, 20, 20], [(0, 1), (3, 3)])


def test_expand_without_timestamps_or_marks() -> None:
    out = expand(Batch([1, 2]), [[1, 1], [2]])
    assert (out.values, out.timestamps, out.marks) == ([1, 1, 2], None, None)


def test_expand_with_marks_but_no_timestamps() -> None:
    out = expand(Batch([1, 2], None, [(0, 7), (1, 8)]), [[1, 1], [2, 2]])
    assert triple(out) == ([1, 1, 2, 2], None, [(0, 7), (2, 8)])


# -- properties: both against the plain event-stream model ----------------------------------------
# Filtering or flat-mapping the event stream (records and marks in order) and then keeping only the
# last of consecutive marks must give exactly the batch the helper builds.


@st.composite
def source_batches(draw: st.DrawFn) -> Batch:
    size = draw(st.integers(0, 15))
    values = list(range(size))
    timestamps = draw(st.none() | st.lists(st.integers(0, 99), min_size=size, max_size=size))
    positions = sorted(draw(st.lists(st.integers(0, size), max_size=6)))
    marks = [(position, 1000 + n) for n, position in enumerate(positions)]
    return Batch(values, timestamps, draw(st.sampled_from([marks or None, marks])))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.data())
def test_select_matches_filtering_the_event_stream(data: st.DataObject) -> None:
    source = data.draw(source_batches())
    keep = data.draw(st.lists(st.booleans(), min_size=len(source), max_size=len(source)))
    out = select(source, keep)
    expected = [e for e in events_of(source) if e[0] == "mark" or keep[e[1]]]
    assert events_of(out) == collapsed(expected)
    assert (out.timestamps is None) == (source.timestamps is None)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.data())
def test_expand_matches_flat_mapping_the_event_stream(data: st.DataObject) -> None:
    source = data.draw(source_batches())
    counts = data.draw(st.lists(st.integers(0, 3), min_size=len(source), max_size=len(source)))
    outputs = [
        [(value, n) for n in range(count)] for value, count in zip(source.values, counts, strict=True)
    ]
    out = expand(source, outputs)
    expected: list[Event] = []
    for event in events_of(source):
        if event[0] == "mark":
            expected.append(event)
        else:
            _, value, stamp = event
            expected += [("record", item, stamp) for item in outputs[value]]
    assert events_of(out) == collapsed(expected)
    assert (out.timestamps is None) == (source.timestamps is None)
