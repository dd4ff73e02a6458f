"""The automaton's plan-time specialisation of a strict pair (``begin(a).next(b)``, one event each,
no negation; Q4's shape): which patterns get it, and that it steps a key exactly as the general
automaton does (matches, timed-out partial matches, the state left behind, a condition that
raises), for random conditions, windows, skip strategies and events."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actorflow import AfterMatchSkip, Pattern
from actorflow.operators.cep import NFA, Match, NFAState
from actorflow.operators.cep.pattern import PatternContext

KINDS = "abcx"


def kind_in(kinds: str) -> Any:
    def condition(event: dict[str, Any]) -> bool:
        if event["kind"] == "x":
            raise ValueError("x")  # a condition that raises on some events
        return event["kind"] in kinds

    return condition


def iterative_kind_in(kinds: str) -> Any:
    def condition(event: dict[str, Any], ctx: PatternContext) -> bool:
        return event["kind"] in kinds and len(ctx.events("first")) < 2

    return condition


@st.composite
def pairs(draw: st.DrawFn) -> tuple[Pattern[Any], AfterMatchSkip | None]:
    first_kinds = draw(st.sampled_from(["a", "ab", "abc"]))
    second_kinds = draw(st.sampled_from(["a", "b", "bc"]))
    pattern = Pattern.begin("first").where(kind_in(first_kinds))
    if draw(st.booleans()):
        pattern = pattern.or_(kind_in("c"))
    pattern = pattern.next("second")
    if draw(st.booleans()):
        pattern = pattern.where(iterative_kind_in(second_kinds))
    else:
        pattern = pattern.where(kind_in(second_kinds))
    window = draw(st.none() | st.integers(1, 6))
    if window is not None:
        pattern = pattern.within(window)
    skip = draw(
        st.sampled_from(
            [
                None,
                AfterMatchSkip.no_skip(),
                AfterMatchSkip.skip_to_next(),
                AfterMatchSkip.skip_past_last_event(),
                AfterMatchSkip.skip_past_last_event().start_order(),
                AfterMatchSkip.skip_to_first("second"),
                AfterMatchSkip.skip_to_last("first"),
            ]
        )
    )
    return pattern, skip


#: Per step: an event ``(kind, ts increase)``, or ``None``: time moves to the next timeout.
steps = st.lists(st.none() | st.tuples(st.sampled_from(KINDS), st.integers(0, 3)), max_size=30)


def described(matches: list[Match]) -> list[Any]:
    return [(m.events, m.start_ts, m.start_seq, m.seqs, m.stage_seqs) for m in matches]


def described_state(state: NFAState) -> Any:
    partials = [
        (p.stage, p.count, p.node, p.start_ts, p.start_seq, p.fresh, p.greedy, p.done)
        for p in state.partials
    ]
    return partials, state.seq, described(state.held)


def outcome(step: Any, *args: Any) -> Any:
    try:
        return "ok", step(*args)
    except ValueError as error:
        return "raised", str(error)


@settings(max_examples=600, deadline=None, derandomize=True, database=None)
@given(case=pairs(), events=steps)
def test_the_strict_pair_steps_a_key_as_the_general_automaton_does(
    case: tuple[Pattern[Any], AfterMatchSkip | None], events: list[tuple[str, int] | None]
) -> None:
    pattern, skip = case
    nfa = NFA(pattern, skip)
    assert nfa.strict_pair
    fast, general = NFAState(), NFAState()
    ts = 0
    for position, step in enumerate(events):
        if step is None:
            due = nfa.next_timeout(general)
            assert nfa.next_timeout(fast) == due
            if due is None:
                continue
            ts = max(ts, due)
            got = outcome(nfa.advance, fast, due)
            want = outcome(nfa.advance, general, due)
        else:
            kind, gap = step
            ts += gap
            event = {"kind": kind, "id": position}
            got = outcome(nfa._process_pair, fast, event, ts)
            want = outcome(nfa._process_general, general, event, ts)
        if got[0] == "ok" and want[0] == "ok":
            assert [described(part) for part in got[1]] == [described(part) for part in want[1]]
        else:
            assert got == want
        assert described_state(fast) == described_state(general)


@pytest.mark.parametrize(
    ("pattern", "strict_pair"),
    [
        (Pattern.begin("a").where(kind_in("a")).next("b").where(kind_in("b")), True),
        (Pattern.begin("a").where(kind_in("a")).next("b").where(kind_in("b")).within(5), True),
        (Pattern.begin("a").next("b"), True),
        (Pattern.begin("a").where(kind_in("a")).followed_by("b").where(kind_in("b")), False),
        (Pattern.begin("a").where(kind_in("a")).followed_by_any("b").where(kind_in("b")), False),
        (Pattern.begin("a").where(kind_in("a")).next("b").where(kind_in("b")).optional(), False),
        (Pattern.begin("a").where(kind_in("a")).optional().next("b").where(kind_in("b")), False),
        (Pattern.begin("a").where(kind_in("a")).times(2).next("b").where(kind_in("b")), False),
        (Pattern.begin("a").where(kind_in("a")).next("b").where(kind_in("b")).one_or_more(), False),
        (
            Pattern.begin("a").where(kind_in("a")).not_next("x").where(kind_in("x"))
            .next("b").where(kind_in("b")),
            False,
        ),
        (Pattern.begin("a").next("b").not_followed_by("x").where(kind_in("x")).within(5), False),
        (
            Pattern.begin("a").where(kind_in("a")).next("b").where(kind_in("b"))
            .next("c").where(kind_in("c")),
            False,
        ),
        (Pattern.begin("a").where(kind_in("a")), False),
    ],
)  # fmt: skip
def test_only_a_strict_pair_of_single_events_is_specialised(
    pattern: Pattern[Any], strict_pair: bool
) -> None:
    assert NFA(pattern).strict_pair is strict_pair
