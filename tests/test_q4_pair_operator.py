"""The pattern operator's release of a strict pair on the heap (``PatternOperator._step_pair``:
a key's one partial match stepped without the general automaton's plumbing, the first condition
asked once) against the general step (``_step``), over random strict pairs (plain and iterative
conditions, an ``or_`` first stage, conditions that raise, windows or none, every skip strategy),
random batches (marks anywhere, late events, equal times) and a snapshot and restore between two
batches: the same results, timed-out partial matches, late events, state and snapshots."""

from __future__ import annotations

import pickle
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from actorflow import AfterMatchSkip, OutputTag, Pattern
from actorflow.operators.base import OperatorContext
from actorflow.operators.cep import NFA, PatternOperator
from actorflow.operators.cep.pattern import PatternContext
from actorflow.operators.side_outputs import SideOutputs
from actorflow.runtime.messages import Batch

LATE: OutputTag[Any] = OutputTag("late")


def below(limit: int) -> Any:
    def condition(record: dict[str, Any]) -> bool:
        if record["v"] == 5:
            raise ValueError("five")  # a condition that raises on some events
        return bool(record["v"] < limit)

    return condition


def above(limit: int) -> Any:
    return lambda record: record["v"] > limit


def iterative_above(limit: int) -> Any:
    def condition(record: dict[str, Any], ctx: PatternContext) -> bool:
        return bool(record["v"] > limit and ctx.events("first")[0]["v"] != record["v"] - 7)

    return condition


@st.composite
def pairs(draw: st.DrawFn) -> tuple[Pattern[Any], AfterMatchSkip | None, bool]:
    """A strict pair, its skip strategy, and whether its conditions may raise."""
    raising = draw(st.booleans())
    first_limit = draw(st.integers(1, 4))
    first = below(first_limit) if raising else (lambda r: r["v"] < first_limit)
    pattern = Pattern.begin("first").where(first)
    if draw(st.integers(0, 4)) == 0:
        pattern = pattern.or_(lambda r: r["v"] == 9)  # no plain first condition: the general way
    limit = draw(st.integers(3, 7))
    second = iterative_above(limit) if draw(st.booleans()) else above(limit)
    pattern = pattern.next("second").where(second)
    window = draw(st.none() | st.integers(1, 8))
    if window is not None:
        pattern = pattern.within(window)
    skip = draw(
        st.sampled_from(
            [
                None,
                AfterMatchSkip.skip_to_next(),
                AfterMatchSkip.skip_past_last_event(),
                AfterMatchSkip.skip_past_last_event().start_order(),
                AfterMatchSkip.skip_to_first("second"),
                AfterMatchSkip.skip_to_last("first"),
            ]
        )
    )
    return pattern, skip, raising


@st.composite
def batches(draw: st.DrawFn) -> list[Batch]:
    """Records ``{"id", "k", "v", "ts"}`` roughly in time order (some late, some at equal times),
    cut into batches with marks anywhere."""
    out: list[Batch] = []
    ts = 0
    ident = 0
    for _ in range(draw(st.integers(1, 10))):
        records = []
        for _ in range(draw(st.integers(0, 10))):
            ts += draw(st.integers(0, 2))
            late_by = draw(st.integers(0, 5))
            value = draw(st.integers(0, 9))
            records.append({"id": ident, "k": draw(st.sampled_from("pqr")), "v": value, "ts": ts - late_by})
            ident += 1
        positions = sorted(draw(st.lists(st.integers(0, len(records)), max_size=3)))
        marks = [(position, ts - draw(st.integers(0, 6))) for position in positions]
        out.append(Batch(records, [r["ts"] for r in records], marks or None))
    return out


def ids(match: dict[str, list[dict[str, Any]]]) -> list[Any]:
    return sorted((stage, [r["id"] for r in match[stage]]) for stage in match)


def operator(nfa: NFA, general: bool, *, incremental: bool = False) -> PatternOperator:
    op = PatternOperator(
        "pattern",
        nfa,
        lambda r: r["k"],
        lambda m, ctx, out: out.collect(
            ("match", ctx.timestamp, sorted((s, [r["id"] for r in m[s]]) for s in m))
        ),
        lambda m, ctx, out: out.collect(
            ("timeout", ctx.timestamp, sorted((s, [r["id"] for r in m[s]]) for s in m))
        ),
        late=LATE,
    )
    op.side_outputs = SideOutputs([LATE])
    op.open(OperatorContext("pattern", incremental=incremental))
    if general:
        op._pair = False
    return op


def run(op: PatternOperator, part: list[Batch]) -> list[Any]:
    found: list[Any] = []
    for batch in part:
        try:
            result = op.process(batch)
        except ValueError as error:
            return [*found, ("raised", str(error))]
        found += [] if result is None else list(zip(result.values, result.timestamps or (), strict=True))
        late = op.side_outputs.take(LATE, None)
        found += [] if late is None else [("late", value["id"]) for value in late.values]
    return found


def described(snapshot: dict[str, Any]) -> Any:
    def state_of(state: Any) -> Any:
        if state is None:
            return None
        partials = [
            (p.stage, p.count, p.node, p.start_ts, p.start_seq, p.fresh, p.greedy) for p in state.partials
        ]
        return partials, state.seq, [(m.events, m.seqs) for m in state.held]

    return {
        key: None if entry is None else (state_of(entry[0]), entry[1])
        for key, entry in snapshot.get("keys", snapshot.get("changes", {})).items()
    }


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(case=pairs(), stream=batches(), cut=st.integers(0, 10))
def test_a_strict_pair_releases_on_the_heap_as_the_general_step_does(
    case: tuple[Pattern[Any], AfterMatchSkip | None, bool], stream: list[Batch], cut: int
) -> None:
    pattern, skip, _ = case
    nfa = NFA(pattern, skip)
    assert nfa.strict_pair
    outputs = []
    for general in (True, False):
        op = operator(nfa, general)
        found = run(op, stream[:cut])
        snapshot = pickle.loads(pickle.dumps(op.snapshot_state()))
        restored = operator(nfa, general)
        restored.restore_state([snapshot])
        found += run(restored, stream[cut:])
        found += run(restored, [Batch([], [], [(0, 1 << 60)])])
        tail = (restored.timeouts, sorted(map(str, restored.table)), restored.late_events)
        outputs.append((found, described(snapshot), tail))
    assert outputs[0] == outputs[1]


def test_the_fast_step_is_taken_only_where_it_applies() -> None:
    pair = Pattern.begin("first").where(above(1)).next("second").where(above(2))
    assert operator(NFA(pair), general=False)._pair
    either = Pattern.begin("first").where(above(1)).or_(above(3)).next("second").where(above(2))
    assert not operator(NFA(either), general=False)._pair  # no plain first condition
    relaxed = Pattern.begin("first").where(above(1)).followed_by("second").where(above(2))
    assert not operator(NFA(relaxed), general=False)._pair


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(case=pairs(), stream=batches())
def test_in_a_partition_task_the_pair_step_notes_the_keys_the_general_step_does(
    case: tuple[Pattern[Any], AfterMatchSkip | None, bool], stream: list[Batch]
) -> None:
    """Incremental snapshots after each batch: the same keys changed, the same entries."""
    pattern, skip, _ = case
    nfa = NFA(pattern, skip)
    outputs = []
    for general in (True, False):
        op = operator(nfa, general, incremental=True)
        found = []
        for batch in stream:
            found += run(op, [batch])
            found.append(described(pickle.loads(pickle.dumps(op.snapshot_state()))))
        outputs.append(found)
    assert outputs[0] == outputs[1]
