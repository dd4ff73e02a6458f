"""Patterns (CEP): the cases of Flink's CEP documentation, the operator's time handling, and the
checks at plan time. docs/cep.md defines the semantics these tests hold the automaton to."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import orjson
import pytest

from actorflow import AfterMatchSkip, Flow, OutputTag, Pattern, PatternProcessFunction, WatermarkStrategy
from actorflow.errors import PlanError
from actorflow.operators.cep import NFA, NFAState
from actorflow.operators.failures import FailedRecord
from tests.faults import StoppingSource


def is_(prefix: str) -> Any:
    return lambda event: event.startswith(prefix)


def run(pattern: Pattern[Any], events: list[str], skip: AfterMatchSkip | None = None) -> list[str]:
    """The matches of ``pattern`` over ``events`` (one key, in order), each as its events joined."""
    nfa = NFA(pattern, skip)
    state = NFAState()
    found = []
    for ts, event in enumerate(events):
        matches, _ = nfa.process(state, event, ts)
        found += [
            " ".join(e for name in match for e in match[name]) for match in (m.events for m in matches)
        ]
    return found


# -- contiguity ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("append", "expected"),
    [
        ("next", []),
        ("followed_by", ["a b1"]),
        ("followed_by_any", ["a b1", "a b2"]),
    ],
)
def test_the_three_contiguities_of_flinks_documentation(append: str, expected: list[str]) -> None:
    """``a b`` over ``a c b1 b2``."""
    pattern = getattr(Pattern.begin("a").where(is_("a")), append)("b").where(is_("b"))
    assert run(pattern, ["a", "c", "b1", "b2"]) == expected


def c_a_b(inner: str | None) -> Pattern[Any]:
    pattern = Pattern.begin("start").where(is_("C")).followed_by("middle").where(is_("A")).one_or_more()
    if inner is not None:
        pattern = getattr(pattern, inner)()
    return pattern.followed_by("end1").where(is_("B"))


INPUT = ["C", "D", "A1", "A2", "A3", "D", "A4", "B"]


def test_a_relaxed_loop_emits_every_length_it_reached() -> None:
    assert sorted(run(c_a_b(None), INPUT)) == ["C A1 A2 A3 A4 B", "C A1 A2 A3 B", "C A1 A2 B", "C A1 B"]


def test_consecutive_ends_the_loop_at_the_first_other_event() -> None:
    assert sorted(run(c_a_b("consecutive"), INPUT)) == ["C A1 A2 A3 B", "C A1 A2 B", "C A1 B"]


def test_allow_combinations_gives_every_subset() -> None:
    found = run(c_a_b("allow_combinations"), INPUT)
    assert len(found) == len(set(found)) == 15
    assert {"C A1 A3 B", "C A2 A4 B", "C A4 B", "C A1 A2 A3 A4 B"} <= set(found)


# -- quantifiers -----------------------------------------------------------------------------------


def test_times_takes_exactly_n_and_a_range_each_count() -> None:
    two = Pattern.begin("a").where(is_("a")).times(2).next("b").where(is_("b"))
    assert run(two, ["a1", "a2", "a3", "b"]) == ["a2 a3 b"]
    some = Pattern.begin("a").where(is_("a")).times(1, 2).consecutive().next("b").where(is_("b"))
    assert sorted(run(some, ["a1", "a2", "b"])) == ["a1 a2 b", "a2 b"]


def test_a_trailing_loop_emits_at_each_event_it_takes() -> None:
    pattern = Pattern.begin("a").where(is_("a")).followed_by("b").where(is_("b")).one_or_more()
    assert run(pattern, ["a", "b1", "b2"]) == ["a b1", "a b1 b2"]


def test_an_optional_stage_may_be_skipped_or_taken() -> None:
    pattern = (
        Pattern.begin("a").where(is_("a")).next("b").where(is_("b")).optional().next("c").where(is_("c"))
    )
    assert run(pattern, ["a", "c"]) == ["a c"]
    assert run(pattern, ["a", "b", "c"]) == ["a b c"]


def test_times_or_more_and_until() -> None:
    pattern = Pattern.begin("a").where(is_("a")).times_or_more(2).consecutive().next("x").where(is_("x"))
    assert sorted(run(pattern, ["a1", "a2", "a3", "x"])) == ["a1 a2 a3 x", "a2 a3 x"]
    stopped = (
        Pattern.begin("a").where(is_("a")).one_or_more().until(is_("stop")).followed_by("x").where(is_("x"))
    )
    # "stop" ends a1's loop: a2 cannot join it, but begins a loop of its own.
    assert sorted(run(stopped, ["a1", "stop", "a2", "x"])) == ["a1 x", "a2 x"]


def test_greedy_keeps_events_for_the_loop() -> None:
    lazy = Pattern.begin("a").where(is_("a")).one_or_more().next("b").where(lambda e: e in ("a2", "b"))
    assert sorted(run(lazy, ["a1", "a2", "b"])) == ["a1 a2", "a1 a2 b", "a2 b"]
    greedy = (
        Pattern.begin("a")
        .where(is_("a"))
        .one_or_more()
        .greedy()
        .next("b")
        .where(lambda e: e in ("a2", "b"))
    )
    assert sorted(run(greedy, ["a1", "a2", "b"])) == ["a1 a2 b", "a2 b"]


def test_an_iterative_condition_sees_the_events_taken_before() -> None:
    rising = (
        Pattern.begin("low").where(lambda e: e < 10)
        .followed_by("higher").where(lambda e, ctx: e > sum(ctx.events("low")) + sum(ctx.events("higher")))
        .one_or_more().consecutive()
    )  # fmt: skip
    nfa = NFA(rising)
    state = NFAState()
    found = [[m.events for m in nfa.process(state, e, 0)[0]] for e in [2, 3, 6, 20]]
    assert found == [
        [],
        [{"low": [2], "higher": [3]}],
        [{"low": [2], "higher": [3, 6]}, {"low": [3], "higher": [6]}],
        [{"low": [2], "higher": [3, 6, 20]}, {"low": [3], "higher": [6, 20]}, {"low": [6], "higher": [20]}],
    ]


def test_or_and_a_group_pattern() -> None:
    either = Pattern.begin("x").where(is_("a")).or_(is_("b")).next("c").where(is_("c"))
    assert run(either, ["a", "c", "b", "c", "d", "c"]) == ["a c", "b c"]
    pair = Pattern.begin("g1").where(is_("a")).next("g2").where(is_("b"))
    relaxed = Pattern.begin("s").where(is_("s")).followed_by(pair)
    # The group's first stage took the first a (relaxed): the x after it ends that partial match.
    assert run(relaxed, ["s", "x", "a", "x", "a", "b"]) == []
    assert run(relaxed, ["s", "x", "a", "b"]) == ["s a b"]
    any_pair = Pattern.begin("s").where(is_("s")).followed_by_any(pair)
    assert run(any_pair, ["s", "x", "a", "x", "a", "b"]) == ["s a b"]
    assert any_pair.names() == ["s", "g1", "g2"]


# -- negation and time -----------------------------------------------------------------------------


def test_not_next_and_not_followed_by() -> None:
    not_next = (
        Pattern.begin("a").where(is_("a")).not_next("x").where(is_("x")).followed_by("b").where(is_("b"))
    )
    assert run(not_next, ["a1", "x", "b"]) == []
    assert run(not_next, ["a1", "c", "x", "b"]) == ["a1 b"]
    not_followed = (
        Pattern.begin("a")
        .where(is_("a"))
        .not_followed_by("x")
        .where(is_("x"))
        .followed_by("b")
        .where(is_("b"))
    )
    assert run(not_followed, ["a1", "c", "x", "b"]) == []
    assert run(not_followed, ["a1", "c", "b"]) == ["a1 b"]


def test_within_times_out_partial_matches_and_ends_a_trailing_negation() -> None:
    pattern = Pattern.begin("a").where(is_("a")).followed_by("b").where(is_("b")).within(10)
    nfa = NFA(pattern)
    state = NFAState()
    assert nfa.process(state, "a", 0) == ([], [])
    matches, timed_out = nfa.process(state, "b", 10)
    assert matches == [] and [m.events for m in timed_out] == [{"a": ["a"]}]
    silent = Pattern.begin("a").where(is_("a")).not_followed_by("x").where(is_("x")).within(10)
    nfa = NFA(silent)
    quiet, noisy = NFAState(), NFAState()
    nfa.process(quiet, "a", 0)
    nfa.process(noisy, "a", 0)
    nfa.process(noisy, "x", 5)
    assert [m.events for m in nfa.advance(quiet, 10)[0]] == [{"a": ["a"]}]
    assert nfa.advance(noisy, 10) == ([], [])


# -- skip strategies (the table of Flink's documentation, with ``b+ next c``) ----------------------


@pytest.mark.parametrize(
    ("skip", "expected"),
    [
        (AfterMatchSkip.no_skip(), ["b1 b2 b3 c", "b2 b3 c", "b3 c"]),
        (AfterMatchSkip.skip_to_next(), ["b1 b2 b3 c", "b2 b3 c", "b3 c"]),
        (AfterMatchSkip.skip_past_last_event(), ["b1 b2 b3 c"]),
        (AfterMatchSkip.skip_to_first("b"), ["b1 b2 b3 c", "b2 b3 c", "b3 c"]),
        (AfterMatchSkip.skip_to_last("b"), ["b1 b2 b3 c", "b3 c"]),
    ],
)
def test_skip_strategies(skip: AfterMatchSkip, expected: list[str]) -> None:
    pattern = Pattern.begin("b").where(is_("b")).one_or_more().next("c").where(is_("c"))
    assert run(pattern, ["b1", "b2", "b3", "c"], skip) == expected


def test_skip_to_next_drops_what_began_with_the_same_event() -> None:
    pattern = Pattern.begin("a").where(is_("a")).followed_by("b").where(is_("b")).one_or_more()
    assert run(pattern, ["a", "b1", "b2", "b3"], AfterMatchSkip.skip_to_next()) == ["a b1"]


def same_letter() -> Pattern[Any]:
    """An event, then the first later one with the same letter."""
    return (
        Pattern.begin("first")
        .followed_by("again")
        .where(lambda event, ctx: event[0] == ctx.events("first")[0][0])
    )


def test_in_start_order_a_match_waits_for_the_partial_matches_begun_before_it() -> None:
    """``x1 y1 y2 x2``: ``y1 y2`` completes first, but ``x1`` began before it; in start order it
    waits, and ``x1 ... x2``, emitted first, prunes it (as Flink's NFA does). At once, it is
    emitted and prunes ``x1``'s partial match."""
    events = ["x1", "y1", "y2", "x2"]
    skip = AfterMatchSkip.skip_past_last_event()
    assert run(same_letter(), events, skip) == ["y1 y2"]
    assert run(same_letter(), events, skip.start_order()) == ["x1 x2"]
    assert run(same_letter(), [*events, "z1", "y3", "z2"], skip.start_order()) == ["x1 x2", "z1 z2"]


def test_in_start_order_a_held_match_goes_out_once_the_earlier_partial_match_ends() -> None:
    """``x1`` times out (within 10) at 20: ``y1 y2``, held, goes out then, and survives a restore
    from a pickle of the key's state while it is held."""
    nfa = NFA(same_letter().within(10), AfterMatchSkip.skip_to_next().start_order())
    state = NFAState()
    for ts, event in enumerate(["x1", "y1", "y2"]):
        assert nfa.process(state, event, ts) == ([], [])
    assert len(state.held) == 1
    state = pickle.loads(pickle.dumps(state))
    matches, timed_out = nfa.advance(state, 20)
    assert [m.events for m in matches] == [{"first": ["y1"], "again": ["y2"]}]
    assert [m.events for m in timed_out] == [{"first": ["x1"]}, {"first": ["y2"]}]
    assert state.held == [] and state.partials == []
    old = NFAState()
    old.__setstate__(([], 3))  # a snapshot from before held matches
    assert (old.seq, old.held) == (3, [])
    with pytest.raises(PlanError, match="no_skip"):
        AfterMatchSkip.no_skip().start_order()


# -- refused at plan time --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Pattern(), "empty"),
        (lambda: Pattern.begin("a").followed_by("a"), "used twice"),
        (lambda: Pattern.begin("a").not_followed_by("x"), "within"),
        (lambda: Pattern.begin("a").optional().not_next("x"), "optional"),
        (lambda: Pattern.begin("a").consecutive(), "goes with"),
        (lambda: Pattern.begin("a").times(2).one_or_more(), "quantifier already"),
    ],
)
def test_patterns_that_cannot_work_are_refused(build: Any, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        NFA(build())


def test_a_skip_strategy_must_name_a_stage_of_the_pattern() -> None:
    with pytest.raises(PlanError, match="'z'"):
        NFA(Pattern.begin("a"), AfterMatchSkip.skip_to_last("z"))


def test_a_failing_condition_names_its_stage() -> None:
    nfa = NFA(Pattern.begin("big").where(lambda tx: tx["amount"] > 5))
    with pytest.raises(KeyError) as raised:
        nfa.process(NFAState(), {"amt": 1}, 0)
    assert "pattern stage 'big'" in "\n".join(raised.value.__notes__)


# -- in a flow: event time, lateness, timeouts -----------------------------------------------------


def tx(n: int, card: str, amount: float, ts: int) -> dict[str, Any]:
    return {"tx_id": n, "card_id": card, "amount": amount, "ts": ts}


SMALL_THEN_LARGE = (
    Pattern.begin("small").where(lambda t: t["amount"] < 1)
    .next("large").where(lambda t: t["amount"] > 500)
    .within(60_000)
)  # fmt: skip


def test_a_keyed_pattern_sees_each_key_in_event_time_order_and_drops_late_events() -> None:
    """Out of order within the bound: sorted by time per card before matching. The late event
    (behind the watermark) goes to the late output, not into a match."""
    events = [
        tx(1, "c1", 900.0, 2_000),  # arrives before the small one it follows in event time
        tx(0, "c1", 0.5, 1_000),
        tx(2, "c2", 0.5, 1_500),
        tx(3, "c2", 700.0, 3_000),
        tx(4, "c1", 0.2, 20_000),  # moves the watermark to 10 s
        tx(5, "c1", 999.0, 5_000),  # late
    ]
    flow = Flow("cep")
    late: OutputTag[dict[str, Any]] = OutputTag("late")
    matches = (
        flow.from_iterable(events, watermarks=WatermarkStrategy.punctuated("ts", lag_ms=10_000))
        .key_by("card_id")
        .pattern(SMALL_THEN_LARGE, late=late, skip=AfterMatchSkip.skip_past_last_event())
        .select(lambda m: (m["small"][0]["tx_id"], m["large"][0]["tx_id"]))
    )
    found = matches.collect()
    dropped = matches.get_side_output(late).collect()
    flow.execute()
    assert sorted(found.values) == [(0, 1), (2, 3)]
    assert [e["tx_id"] for e in dropped.values] == [5]


class Report(PatternProcessFunction[dict[str, Any], str]):
    def process_match(self, match: dict[str, list[Any]], ctx: Any, out: Any) -> None:
        out.collect(f"match {match['small'][0]['tx_id']} at {ctx.timestamp}")

    def process_timed_out_match(self, match: dict[str, list[Any]], ctx: Any, out: Any) -> None:
        ctx.output(TIMEOUTS, f"timeout {match['small'][0]['tx_id']} at {ctx.timestamp}")


TIMEOUTS: OutputTag[str] = OutputTag("timeouts")


@pytest.mark.parametrize("parallelism", [1, 3])
def test_timed_out_partial_matches_reach_their_side_output(parallelism: int) -> None:
    events = [
        tx(0, "a", 0.5, 0),
        tx(1, "b", 0.5, 1_000),
        tx(2, "b", 800.0, 2_000),
        tx(3, "z", 5.0, 100_000),
    ]
    flow = Flow("cep", parallelism=parallelism)
    results = (
        flow.from_iterable(events, watermarks=WatermarkStrategy.punctuated("ts", lag_ms=0))
        .key_by("card_id")
        .pattern(SMALL_THEN_LARGE)
        .process(Report(), timed_out=True)
    )
    found = results.collect()
    timeouts = results.get_side_output(TIMEOUTS).collect()
    flow.execute()
    assert found.values == ["match 1 at 2000"]
    assert timeouts.values == ["timeout 0 at 60000"]


def test_select_with_timed_out_and_a_stream_that_is_not_keyed() -> None:
    events = [tx(0, "a", 0.5, 0), tx(1, "b", 900.0, 1_000), tx(2, "c", 0.1, 5_000)]
    flow = Flow("cep", parallelism=2)
    timeouts: OutputTag[Any] = OutputTag("t")
    results = (
        flow.from_iterable(events, watermarks=WatermarkStrategy.punctuated("ts", lag_ms=0))
        .pattern(SMALL_THEN_LARGE)
        .select(lambda m: m["large"][0]["tx_id"], timed_out=timeouts, on_timeout=lambda m, t: (m, t))
    )
    found = results.collect()
    timed_out = results.get_side_output(timeouts).collect()
    flow.execute()
    assert found.values == [1]  # across cards: the stream is not keyed
    assert timed_out.values == [({"small": [events[2]]}, 65_000)]


# -- state: savepoints, rescaling -----------------------------------------------------------------


def test_partial_matches_resume_from_a_savepoint_at_another_parallelism(tmp_path: Path) -> None:
    """Stopped with a savepoint at parallelism 1 while partial matches are open, resumed at 3,
    stopped again, finished at 1: the matches (and timeouts) of a run without stops."""
    n, keys = 6_000, 23

    def build(parallelism: int, checkpoints: Path, target: Path, stop_at: int | None) -> tuple[Flow, Any]:
        flow = Flow("cep-rescale", parallelism=parallelism, batch_size=40)
        flow.enable_checkpointing(checkpoints)
        records = [{"k": i % keys, "v": (i * 7) % 10, "ts": i} for i in range(n)]
        source = StoppingSource(records, flow, stop_at)
        pattern = (
            Pattern.begin("a").where(lambda r: r["v"] < 2)
            .followed_by("b").where(lambda r: 2 <= r["v"] < 5).one_or_more()
            .followed_by("c").where(lambda r: r["v"] >= 8)
            .within(400)
        )  # fmt: skip
        timeouts: OutputTag[Any] = OutputTag("timeouts")
        matches = (
            flow.from_source(source, watermarks=WatermarkStrategy.punctuated("ts", lag_ms=0))
            .key_by("k")
            .pattern(pattern, skip=AfterMatchSkip.skip_to_next())
            .select(
                lambda m: ["match", [[r["ts"] for r in m[s]] for s in ("a", "b", "c")]],
                timed_out=timeouts,
                on_timeout=lambda m, t: ["timeout", t, [r["ts"] for r in m["a"]]],
            )
        )
        matches.union(matches.get_side_output(timeouts)).sink_to_json_lines(target, exactly_once=True)
        return flow, source

    reference = tmp_path / "reference.jsonl"
    build(1, tmp_path / "reference-checkpoints", reference, None)[0].execute()
    target = tmp_path / "out.jsonl"
    for parallelism, stop_at in ((1, n // 3), (3, 2 * n // 3), (1, None)):
        flow, source = build(parallelism, tmp_path / "checkpoints", target, stop_at)
        flow.execute()
        assert source.stopped == (stop_at is not None)

    def lines(path: Path) -> list[Any]:
        return sorted(orjson.loads(line) for line in path.read_bytes().splitlines())

    found = lines(reference)
    assert {line[0] for line in found} == {"match", "timeout"}
    assert lines(target) == found


def test_an_event_a_condition_raises_on_goes_to_the_dead_letters_and_matching_goes_on() -> None:
    """With dead_letters, the event a condition raises on (here: no amount) becomes a
    FailedRecord naming the operator, the pattern stage and the error; the partial matches stay
    as they were, so the next events still match."""
    events = [tx(0, "c", 0.5, 1_000), {"tx_id": 1, "card_id": "c", "ts": 2_000}, tx(2, "c", 900.0, 3_000)]
    flow = Flow("cep")
    dead: OutputTag[FailedRecord[Any]] = OutputTag("dead")
    found = (
        flow.from_iterable(events, watermarks=WatermarkStrategy.punctuated("ts", lag_ms=0))
        .key_by("card_id")
        .pattern(Pattern.begin("small").where(lambda t: t["amount"] < 1)
                 .followed_by("large").where(lambda t: t["amount"] > 500))
        .select(lambda m: (m["small"][0]["tx_id"], m["large"][0]["tx_id"]), dead_letters=dead)
    )  # fmt: skip
    matches = found.collect()
    failed = found.get_side_output(dead).collect()
    flow.execute()
    assert matches.values == [(0, 2)]
    [letter] = failed.values
    assert letter.value["tx_id"] == 1 and isinstance(letter.error, KeyError)
    assert letter.operator.startswith("pattern")
    assert "pattern stage 'large'" in "\n".join(letter.error.__notes__)


def test_in_a_partition_task_a_snapshot_holds_the_keys_touched_since_the_last() -> None:
    """Incremental snapshots (a partition task's changelog): the keys whose partial matches or
    waiting events changed, a key left without state as None; restored from the changes alone,
    an operator goes on as the original would have."""
    from actorflow.operators.base import OperatorContext
    from actorflow.operators.cep import PatternOperator
    from actorflow.runtime.messages import Batch

    def operator() -> PatternOperator:
        op = PatternOperator(
            "p", NFA(SMALL_THEN_LARGE), lambda t: t["card_id"],
            lambda m, ctx, out: out.collect((m["small"][0]["tx_id"], m["large"][0]["tx_id"])),
        )  # fmt: skip
        op.open(OperatorContext("p", incremental=True))
        return op

    def feed(op: PatternOperator, *records: dict[str, Any], watermark: int) -> list[Any]:
        batch = Batch(list(records), [r["ts"] for r in records], [(len(records), watermark)])
        out = op.process(batch)
        return [] if out is None else out.values

    first = operator()
    assert feed(first, tx(0, "a", 0.5, 1_000), tx(1, "b", 7.0, 1_000), watermark=1_000) == []
    # "a" has a partial match; "b" began nothing: its waiting event is gone, and so is its state.
    assert first.snapshot_state()["changes"].keys() == {"a", "b"}
    assert first.snapshot_state() == {"changes": {}}
    assert feed(first, tx(2, "c", 0.2, 2_000), watermark=1_500) == []  # c waits for the watermark
    changes = first.snapshot_state()["changes"]
    assert set(changes) == {"c"} and changes["c"][0] is None and len(changes["c"][1]) == 1
    restored = operator()  # from the changes as a changelog holds them: pickled
    parts = [{"changes": {"a": first._entries({"a"})["a"]}}, {"changes": changes}]
    restored.restore_state(pickle.loads(pickle.dumps(parts)))
    for op in (first, restored):
        assert feed(op, tx(3, "a", 900.0, 3_000), tx(4, "c", 800.0, 3_000), watermark=3_000) == [
            (0, 3),
            (2, 4),
        ]
