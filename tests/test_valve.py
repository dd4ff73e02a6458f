"""WatermarkValve: the minimum over active inputs, idleness, end of input, never backwards."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from actorflow.runtime.messages import MAX_WATERMARK, MIN_WATERMARK
from actorflow.runtime.valve import WatermarkValve


def test_single_input_passes_increasing_marks_and_drops_the_others() -> None:
    valve = WatermarkValve(1)
    assert valve.merge_marks(0, [(1, 5), (2, 5), (3, 3), (4, 8)]) == [(1, 5), (4, 8)]
    assert valve.current == 8
    assert valve.merge_marks(0, [(1, 8), (2, 7)]) == []
    assert valve.merge_marks(0, [(2, 9)]) == [(2, 9)]
    assert valve.current == 9


def test_starts_at_the_minimum_watermark() -> None:
    valve = WatermarkValve(2)
    assert valve.current == MIN_WATERMARK
    assert not valve.idle


def test_two_inputs_merge_to_the_minimum() -> None:
    valve = WatermarkValve(2)
    assert valve.merge_marks(0, [(1, 10)]) == []  # input 1 has said nothing yet
    assert valve.merge_marks(1, [(3, 7)]) == [(3, 7)]
    assert valve.current == 7
    assert valve.merge_marks(1, [(1, 12)]) == [(1, 10)]  # now input 0 holds it at 10
    assert valve.merge_marks(0, [(1, 11), (2, 15)]) == [(1, 11), (2, 12)]
    assert valve.current == 12


def test_an_input_going_backwards_does_not_move_the_output() -> None:
    valve = WatermarkValve(2)
    valve.merge_marks(0, [(1, 10)])
    valve.merge_marks(1, [(1, 10)])
    assert valve.merge_marks(1, [(1, 4)]) == []
    assert valve.current == 10


def test_an_idle_input_is_excluded_from_the_minimum() -> None:
    valve = WatermarkValve(2)
    valve.merge_marks(0, [(1, 10)])
    valve.merge_marks(1, [(1, 5)])
    assert valve.current == 5
    assert valve.set_idle(1, True) == 10  # input 0 alone decides now
    assert valve.is_idle(1)
    assert not valve.idle
    assert valve.merge_marks(0, [(2, 20)]) == [(2, 20)]
    assert valve.merge_marks(1, [(1, 30)]) == []  # marks of an idle input hold nothing back or up


def test_all_idle_sets_idle_and_one_active_clears_it() -> None:
    valve = WatermarkValve(2)
    assert valve.set_idle(0, True) is None
    assert not valve.idle
    assert valve.set_idle(1, True) is None
    assert valve.idle
    assert valve.set_idle(0, False) is None
    assert not valve.idle


def test_single_input_idle() -> None:
    valve = WatermarkValve(1)
    valve.merge_marks(0, [(1, 3)])
    assert valve.set_idle(0, True) is None
    assert valve.idle
    assert valve.set_idle(0, False) is None
    assert not valve.idle
    assert valve.current == 3


def test_an_ended_input_counts_as_the_maximum_watermark() -> None:
    valve = WatermarkValve(2)
    valve.merge_marks(0, [(1, 10)])
    assert valve.end(1) == 10  # input 1 no longer holds input 0 back
    assert valve.end(0) == MAX_WATERMARK
    assert valve.current == MAX_WATERMARK


def test_end_of_the_only_input_is_the_maximum() -> None:
    valve = WatermarkValve(1)
    valve.merge_marks(0, [(1, 10)])
    assert valve.end(0) == MAX_WATERMARK


def test_end_of_an_idle_input_leaves_the_open_input_in_charge() -> None:
    valve = WatermarkValve(2)
    valve.merge_marks(0, [(1, 4)])
    valve.set_idle(1, True)
    assert valve.end(1) is None  # input 0 (at 4) is still the minimum
    assert not valve.is_idle(1)
    assert valve.is_ended(1)
    assert valve.end(0) == MAX_WATERMARK


def test_an_ended_input_does_not_push_event_time_past_an_idle_one() -> None:
    # Input 0 ends while input 1 is idle: input 1 may still send records, so event time must not
    # jump to the end; the actor is idle until input 1 speaks or ends.
    valve = WatermarkValve(2)
    valve.merge_marks(0, [(1, 10)])
    valve.merge_marks(1, [(1, 5)])
    assert valve.set_idle(1, True) == 10
    assert valve.end(0) is None
    assert valve.idle
    assert valve.current == 10
    assert valve.set_idle(1, False) is None
    assert valve.merge_marks(1, [(2, 20)]) == [(2, 20)]
    assert valve.end(1) == MAX_WATERMARK
    assert not valve.idle


# -- property: the valve against a simple model ------------------------------------------------------


@dataclass
class Model:
    """The valve's contract written plainly: output = max(output, min over open, active inputs),
    and MAX once every input has ended."""

    inputs: int
    watermarks: list[int] = field(init=False)
    idle: list[bool] = field(init=False)
    ended: list[bool] = field(init=False)
    current: int = MIN_WATERMARK

    def __post_init__(self) -> None:
        self.watermarks = [MIN_WATERMARK] * self.inputs
        self.idle = [False] * self.inputs
        self.ended = [False] * self.inputs

    def all_idle(self) -> bool:
        open_inputs = [idle for idle, ended in zip(self.idle, self.ended, strict=True) if not ended]
        return bool(open_inputs) and all(open_inputs)

    def advance(self) -> int | None:
        if all(self.ended):
            candidate: int | None = MAX_WATERMARK
        else:
            active = [
                w
                for w, idle, ended in zip(self.watermarks, self.idle, self.ended, strict=True)
                if not (idle or ended)
            ]
            candidate = min(active) if active else None
        if candidate is not None and candidate > self.current:
            self.current = candidate
            return self.current
        return None


marks_strategy = st.lists(st.integers(-20, 60), max_size=5).map(
    lambda watermarks: [(position, w) for position, w in enumerate(watermarks, 1)]
)
operation = st.one_of(
    st.tuples(st.just("marks"), st.integers(0, 3), marks_strategy),
    st.tuples(st.just("idle"), st.integers(0, 3), st.booleans()),
    st.tuples(st.just("end"), st.integers(0, 3), st.none()),
)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(inputs=st.integers(1, 4), operations=st.lists(operation, max_size=40))
def test_valve_matches_the_model_and_never_goes_backwards(
    inputs: int, operations: list[tuple[str, int, object]]
) -> None:
    valve = WatermarkValve(inputs)
    model = Model(inputs)
    ended = [False] * inputs
    emitted: list[int] = []
    for kind, raw_index, argument in operations:
        index = raw_index % inputs
        if ended[index]:
            continue  # nothing arrives on an input after its end of stream
        if kind == "marks":
            assert isinstance(argument, list)
            if valve.is_idle(index):  # as the actor does: a batch makes its input active again
                moved = valve.set_idle(index, False)
                model.idle[index] = False
                assert moved == model.advance()
                emitted += [moved] if moved is not None else []
            out = valve.merge_marks(index, argument)
            expected = []
            for position, watermark in argument:
                model.watermarks[index] = max(model.watermarks[index], watermark)
                merged = model.advance()
                if merged is not None:
                    expected.append((position, merged))
            assert out == expected
            emitted += [watermark for _, watermark in out]
        elif kind == "idle":
            assert isinstance(argument, bool)
            moved = valve.set_idle(index, argument)
            model.idle[index] = argument
            assert moved == model.advance()
            emitted += [moved] if moved is not None else []
        else:
            ended[index] = True
            moved = valve.end(index)
            model.ended[index] = True
            model.idle[index] = False
            assert moved == model.advance()
            emitted += [moved] if moved is not None else []
        assert valve.current == model.current
        assert valve.idle == model.all_idle()
    assert emitted == sorted(set(emitted)), "the output watermark went backwards or repeated"
    if emitted:
        assert emitted[-1] == valve.current
