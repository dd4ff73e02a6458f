"""The compiled punctuated-marks pass (actorflow/time/_marks.c) answers exactly as its Python
reference (tests/test_compiled.py checks that the generator takes it when it is built and wanted)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actorflow.runtime.messages import MIN_WATERMARK
from actorflow.time import watermarks
from actorflow.time.watermarks import EVENT_TIME_LIMIT, PunctuatedGenerator

try:
    from actorflow.time._marks import plain_marks
except ImportError:
    plain_marks = None

needs_compiled = pytest.mark.skipif(
    plain_marks is None,
    reason="actorflow.time._marks is not built (no C compiler at install?): "
    "only the Python reference was tested; `pip install -e .` builds it",
)

LIMITS = [EVENT_TIME_LIMIT, -EVENT_TIME_LIMIT, EVENT_TIME_LIMIT - 1, 1 - EVENT_TIME_LIMIT, MIN_WATERMARK]
ints = st.one_of(
    st.integers(0, 10_000),
    st.integers(-(2**63), 2**63),
    st.integers(-(2**80), 2**80),  # beyond 64 bits
    st.sampled_from([*LIMITS, *(limit + 1 for limit in LIMITS), *(limit - 1 for limit in LIMITS)]),
)
numbers = st.one_of(ints, ints, ints, st.booleans(), st.floats(allow_nan=False))
timestamps = st.one_of(numbers, st.none())
lags = st.one_of(st.integers(0, 5000), st.integers(0, 2**70), st.floats(0, 1e20))


def same_answer(times: list[Any], highest: int, lag: Any) -> None:
    assert plain_marks is not None
    expected = watermarks._plain_marks_python(times, highest, lag)
    found = plain_marks(times, highest, lag)
    assert found == expected
    if found is not None and expected is not None:  # equal values of the same types
        assert [tuple(map(type, mark)) for mark in found[0]] == [tuple(map(type, m)) for m in expected[0]]
        assert type(found[1]) is type(expected[1])


@needs_compiled
@given(st.lists(timestamps, max_size=40), ints, lags)
def test_the_compiled_pass_answers_as_the_python_reference(
    times: list[Any], highest: int, lag: Any
) -> None:
    same_answer(times, highest, lag)


@needs_compiled
@given(
    st.lists(st.integers(-(2**62), 2**62), max_size=40), st.integers(-(2**62), 2**62), st.integers(0, 10**6)
)
def test_the_compiled_pass_answers_as_the_python_reference_on_plain_times(
    times: list[int], highest: int, lag: int
) -> None:
    same_answer(times, highest, lag)


@needs_compiled
@pytest.mark.parametrize("times", [[], [0], [True], [1.0], [2**64], [-(2**64)], LIMITS, LIMITS[::-1]])
@pytest.mark.parametrize(
    "highest", [MIN_WATERMARK, -(2**70), 0, EVENT_TIME_LIMIT - 1, EVENT_TIME_LIMIT, 2**70]
)
def test_the_compiled_pass_answers_as_the_python_reference_at_the_edges(
    times: list[Any], highest: int
) -> None:
    same_answer(times, highest, 7)
    same_answer([*times, 5], highest, 2**64)


@needs_compiled
def test_the_compiled_pass_counts_positions_past_the_table_made_once() -> None:
    times = list(range(40_000))
    same_answer(times, MIN_WATERMARK, 5)
    same_answer([*times, 1.5], MIN_WATERMARK, 5)
    same_answer(tuple(times), -1, 0)  # any sequence  # type: ignore[arg-type]


@needs_compiled
def test_the_compiled_pass_rejects_a_maximum_that_is_not_an_int() -> None:
    assert plain_marks is not None
    with pytest.raises(TypeError):
        plain_marks([1], 1.5, 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        plain_marks(None, 0, 0)  # type: ignore[arg-type]


@given(st.lists(st.lists(numbers, max_size=8), max_size=6), st.integers(0, 100))
def test_the_generator_keeps_its_state_as_the_python_reference(batches: list[list[Any]], lag: int) -> None:
    """Whatever pass runs, plain or checked batches leave the generator as the reference would,
    floats and ints beyond 64 bits that on_batch takes included."""
    generator = PunctuatedGenerator(lag)
    highest: Any = MIN_WATERMARK
    for index, times in enumerate(batches):
        if index % 2:
            expected = watermarks._plain_marks_python(times, highest, lag)
            assert generator.on_plain_batch(times) == (None if expected is None else expected[0])
        else:
            expected = watermarks._marks_python(times, highest, lag)
            assert generator.on_batch(times) == expected[0]
        if expected is not None:
            highest = expected[1]
        assert generator._max == highest
