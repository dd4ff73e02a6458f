"""The automaton a pattern compiles to, run over one key's events in order.

A **partial match** is a position in the pattern: the stage it is in and how many events that stage
has taken, plus the events taken so far. Each event moves every partial match of the key:

- **take**: the stage's condition holds and it can take more: a new partial match with the event;
  once the stage has its minimum it also **proceeds** at once (an epsilon move) to a partial match
  waiting at the next stage (past optional stages too), or completes the match after the last one;
- **ignore**: the partial match stays as it is, if the contiguity there allows it: strict never,
  relaxed when it did not take the event, non-deterministic always;
- otherwise it is dropped.

Every event may also begin a new partial match at the first stage. Negated stages become guards:
``not_next`` on the first event after the previous stage, ``not_followed_by`` on every event while
the next stage waits; at the end of a pattern with ``within``, ``not_followed_by`` completes the
match when the time is up.

The events a partial match took form a chain of shared nodes ``(stage name, event, seq, ts,
previous node)``: a partial match that branches shares its prefix with its sibling instead of
copying it (Flink's shared buffer, by structure), so memory grows with the events that can still
be part of a match, and a pickle of a key's state keeps the sharing.

>>> from actorflow.operators.cep.pattern import Pattern
>>> nfa = NFA(Pattern.begin("a").where(lambda e: e == "a").next("b").where(lambda e: e == "b"))
>>> state = NFAState()
>>> [nfa.process(state, event, 0)[0] for event in ["a", "c", "a", "b"]]
[[], [], [], [Match({'a': ['a'], 'b': ['b']})]]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from actorflow.errors import PlanError
from actorflow.operators.cep.pattern import (
    AfterMatchSkip,
    Condition,
    Contiguity,
    Pattern,
    PatternContext,
    Stage,
    condition_arity,
)
from actorflow.operators.failures import shorten

__all__ = ["NFA", "Match", "NFAState", "Partial"]

#: ``(stage name, event, seq, ts, previous node or None)``.
Node = tuple[str, Any, int, int, Any]
#: ``test(event, partial)``.
Test = Callable[[Any, "Partial"], bool]

_STRICT, _RELAXED, _ANY = Contiguity.STRICT, Contiguity.RELAXED, Contiguity.ANY


class Partial:
    """A partial match: at stage ``stage`` having taken ``count`` events there."""

    __slots__ = ("count", "done", "fresh", "greedy", "node", "stage", "start_seq", "start_ts")

    def __init__(
        self, stage: int, count: int, node: Node, start_ts: int, start_seq: int, greedy: int = -1
    ) -> None:
        self.stage = stage
        self.count = count
        self.node = node
        self.start_ts = start_ts
        self.start_seq = start_seq
        #: No event came since this partial match was made (``not_next`` looks at that event).
        self.fresh = True
        #: The greedy looping stage this one proceeded from (its events are not for this stage).
        self.greedy = greedy
        #: Shared by the partial matches of one set of events while a trailing ``not_next`` may
        #: still complete it: ``[True]`` once it did (they are a match, not a timeout, then).
        self.done: list[bool] | None = None

    def __getstate__(self) -> tuple[Any, ...]:
        return (
            self.stage, self.count, self.node, self.start_ts, self.start_seq, self.fresh, self.greedy,
            self.done,
        )  # fmt: skip

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        (
            self.stage, self.count, self.node, self.start_ts, self.start_seq, self.fresh, self.greedy,
            self.done,
        ) = state  # fmt: skip

    def events(self) -> dict[str, list[Any]]:
        return _events(self.node)


class NFAState:
    """One key's matching state: its partial matches, the sequence number of its next event, and
    (skip strategies in start order) the completed matches waiting for earlier partial matches."""

    __slots__ = ("held", "partials", "seq")

    def __init__(self) -> None:
        self.partials: list[Partial] = []
        self.seq = 0
        self.held: list[Match] = []

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.partials, self.seq, self.held) if self.held else (self.partials, self.seq)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.partials, self.seq = state[0], state[1]
        self.held = state[2] if len(state) > 2 else []


@dataclass(eq=False)
class Match:
    """A complete (or timed-out partial) match: each stage's events in order, and when it began."""

    events: dict[str, list[Any]]
    start_ts: int = 0
    start_seq: int = 0
    #: Sequence numbers of its events, first to last (for skip strategies and ordering).
    seqs: tuple[int, ...] = ()
    #: Per stage name, the sequence numbers of its events.
    stage_seqs: dict[str, list[int]] | None = None

    def __repr__(self) -> str:
        return f"Match({self.events!r})"


def _events(node: Node | None) -> dict[str, list[Any]]:
    chain = []
    while node is not None:
        chain.append(node)
        node = node[4]
    events: dict[str, list[Any]] = {}
    for name, event, _, _, _ in reversed(chain):
        events.setdefault(name, []).append(event)
    return events


def _match(node: Node, start_ts: int, start_seq: int) -> Match:
    chain = []
    current: Node | None = node
    while current is not None:
        chain.append(current)
        current = current[4]
    chain.reverse()
    events: dict[str, list[Any]] = {}
    stage_seqs: dict[str, list[int]] = {}
    for name, event, seq, _, _ in chain:
        events.setdefault(name, []).append(event)
        stage_seqs.setdefault(name, []).append(seq)
    return Match(events, start_ts, start_seq, tuple(n[2] for n in chain), stage_seqs)


def _compile(tree: Any, stage: str, what: str = "condition") -> Test:
    """``tree`` (a condition, or ("and"|"or", left, right)) as ``test(event, partial)``; an
    exception a condition raises gets a note naming the stage and the event."""
    if tree is None:
        return lambda event, partial: True
    if callable(tree):
        condition: Condition = tree
        where = f"actorflow: raised in the {what} of pattern stage {stage!r}"
        if condition_arity(condition) == 1:

            def simple(event: Any, partial: Partial) -> bool:
                try:
                    return condition(event)
                except Exception as error:
                    error.add_note(f"{where} on {shorten(event)}")
                    raise

            return simple

        def iterative(event: Any, partial: Partial) -> bool:
            try:
                return bool(condition(event, PatternContext(partial.events() if partial else {})))
            except Exception as error:
                error.add_note(f"{where} on {shorten(event)}")
                raise

        return iterative
    kind, left_tree, right_tree = tree
    left = _compile(left_tree, stage, what)
    right = _compile(right_tree, stage, what)
    if kind == "and":
        return lambda event, partial: left(event, partial) and right(event, partial)
    return lambda event, partial: left(event, partial) or right(event, partial)


class _Step:
    """A stage as the automaton runs it."""

    __slots__ = (
        "contiguity",
        "entry",
        "greedy",
        "guards",
        "inner",
        "max",
        "min",
        "name",
        "not_next",
        "optional",
        "test",
        "until",
    )

    def __init__(self, stage: Stage, guards: list[Test], not_next: Test | None) -> None:
        self.name = stage.name
        self.test = _compile(stage.condition, stage.name)
        self.until = None if stage.until is None else _compile(stage.until, stage.name, "until condition")
        self.min = stage.min
        self.max = stage.max
        self.optional = stage.optional
        self.greedy = stage.greedy
        self.contiguity = stage.contiguity
        self.inner = stage.inner
        #: Waiting for the stage's first event: its contiguity, made non-deterministic by
        #: allow_combinations() (any later matching event may begin the loop, as in Flink).
        self.entry = _ANY if stage.inner is _ANY and stage.contiguity is _RELAXED else stage.contiguity
        self.guards = guards
        self.not_next = not_next


class NFA:
    """The compiled form of ``pattern`` with its skip strategy; one per operator instance, its
    state (:class:`NFAState`) per key."""

    def __init__(self, pattern: Pattern[Any], skip: AfterMatchSkip | None = None) -> None:
        pattern.validate()
        self.pattern = pattern
        self.skip = skip or AfterMatchSkip.no_skip()
        if self.skip.name is not None and self.skip.name not in pattern.names():
            raise PlanError(f"the skip strategy names stage {self.skip.name!r}, which the pattern has not")
        self.window = pattern.window_ms
        steps: list[_Step] = []
        stages_by_name = {stage.name: stage for stage in pattern.flat()}
        guards: list[Test] = []
        not_next: Test | None = None
        for stage in pattern.flat():
            if stage.negated:
                test = _compile(stage.condition, stage.name)
                if stage.contiguity is _STRICT:
                    not_next = test
                else:
                    guards.append(test)
                continue
            steps.append(_Step(stage, guards, not_next))
            guards, not_next = [], None
        self.steps = steps
        #: A negation after the last stage: the match completes when it is over.
        self.final_guards = guards
        self.final_not_next = not_next
        self._final = len(steps)
        #: ``_optional_from[i]``: every stage from ``i`` on is optional and no negation ends the
        #: pattern (a partial match there has completed a match).
        ending = not guards and not_next is None
        self._optional_from = [
            ending and all(step.optional for step in steps[i:]) for i in range(len(steps) + 1)
        ]
        #: ``may_begin(event, None)``: whether ``event`` could begin a partial match (a key
        #: without partial matches needs no state for an event that cannot): the first stage's
        #: test, unless that stage is optional.
        first = steps[0]
        self.may_begin: Test = self._may_begin if first.optional else first.test
        #: The user's own ``condition(event)`` behind ``may_begin`` when it is one plain
        #: condition (the hot path of a keyed operator calls it without the wrapper), else None.
        plain = stages_by_name[first.name].condition
        self.begin_condition: Callable[[Any], Any] | None = (
            plain if not first.optional and callable(plain) and condition_arity(plain) == 1 else None
        )
        #: ``begin(a).next(b)``, one event each, no negation (the commonest pattern): stepped by
        #: :meth:`_process_pair`, which does what :meth:`_process_general` does for it directly.
        self.strict_pair = _is_strict_pair(steps, guards, not_next)

    # -- one event -----------------------------------------------------------------------------

    def process(self, state: NFAState, event: Any, ts: int) -> tuple[list[Match], list[Match]]:
        """Move ``state`` by ``event`` (event time ``ts``, after every earlier event of the key):
        returns the completed matches and the partial matches that timed out, in order."""
        if self.strict_pair:
            return self._process_pair(state, event, ts)
        return self._process_general(state, event, ts)

    def _process_general(self, state: NFAState, event: Any, ts: int) -> tuple[list[Match], list[Match]]:
        matches, timed_out = self.advance(state, ts)
        seq = state.seq
        state.seq = seq + 1
        kept: list[Partial] = []
        completed: list[Match] = []
        for partial in state.partials:
            self._step(partial, event, seq, ts, kept, completed)
        fresh = Partial(0, 0, None, ts, seq)  # type: ignore[arg-type]
        self._take(fresh, event, seq, ts, kept, completed, first=True)
        state.partials = kept
        if completed or state.held:
            matches += self._emit(state, completed)
        return matches, timed_out

    def _process_pair(self, state: NFAState, event: Any, ts: int) -> tuple[list[Match], list[Match]]:
        """:meth:`process` of a strict pair: its partial matches all wait for the second stage
        (each began at the key's previous event), so ``event`` completes them or ends them, and
        may begin one of its own."""
        matches, timed_out = self.advance(state, ts)
        matches += self.pair_event(state, event, ts)
        return matches, timed_out

    def begin_pair(self, event: Any, ts: int) -> NFAState:
        """A strict pair's state for a key without one, after ``event`` (at ``ts``), which the
        first stage's condition holds for: one partial match, waiting for the second stage."""
        state = NFAState()
        state.seq = 1
        state.partials = [Partial(1, 0, (self.steps[0].name, event, 0, ts, None), ts, 0)]
        return state

    def pair_event(self, state: NFAState, event: Any, ts: int) -> list[Match]:
        """A strict pair's key gets ``event`` (at ``ts``), once :meth:`advance` has moved it to
        ``ts``: ``event`` completes or ends each partial match (all wait for the second stage)
        and may begin one. Returns the matches."""
        seq = state.seq
        state.seq = seq + 1
        first, second = self.steps
        window = self.window
        completed: list[Match] = []
        for partial in state.partials:
            if second.test(event, partial) and (window is None or ts - partial.start_ts < window):
                node = (second.name, event, seq, ts, partial.node)
                completed.append(_match(node, partial.start_ts, partial.start_seq))
        begun = first.test(event, None)  # type: ignore[arg-type]
        state.partials = [Partial(1, 0, (first.name, event, seq, ts, None), ts, seq)] if begun else []
        if completed or state.held:
            return self._emit(state, completed)
        return []

    def _may_begin(self, event: Any, partial: Partial | None = None) -> bool:
        for step in self.steps:
            if step.test(event, None):  # type: ignore[arg-type]
                return True
            if not step.optional:
                return False
        return False

    def advance(self, state: NFAState, now: int) -> tuple[list[Match], list[Match]]:
        """Time is ``now``: partial matches that began ``within`` or longer ago time out; a
        pending final ``not_followed_by`` completes. Returns (matches, timed out)."""
        window = self.window
        if window is None or not state.partials:
            return [], []
        kept = []
        completed: list[Match] = []
        timed_out: list[Match] = []
        # A loop and its proceeded twin share their events: reported once, and not at all when
        # those events complete a match now (a final not_followed_by).
        reported: set[int] = set()
        expired = []
        for partial in state.partials:
            if now - partial.start_ts < window:
                kept.append(partial)
            elif partial.stage == self._final and self.final_guards:
                # Nothing the final not_followed_by forbids came in time: a match.
                completed.append(_match(partial.node, partial.start_ts, partial.start_seq))
                reported.add(id(partial.node))
            else:
                expired.append(partial)
        for partial in expired:
            if self._matched(partial):
                pass  # it was emitted as a match already (a trailing loop that could grow)
            elif id(partial.node) not in reported:
                reported.add(id(partial.node))
                timed_out.append(_match(partial.node, partial.start_ts, partial.start_seq))
        state.partials = kept
        matches = self._emit(state, completed) if completed or state.held else []
        return matches, timed_out

    def _matched(self, partial: Partial) -> bool:
        """Whether ``partial`` completed a match already: it has its stage's minimum (or waits
        at a stage it reached by proceeding) and every stage after it is optional."""
        if partial.done is not None and partial.done[0]:
            return True
        stage = partial.stage
        if stage >= self._final:
            return False
        if partial.count == 0:
            return self._optional_from[stage]
        return partial.count >= self.steps[stage].min and self._optional_from[stage + 1]

    def next_timeout(self, state: NFAState) -> int | None:
        """When the earliest partial match of ``state`` times out, or None."""
        partials = state.partials
        if self.window is None or not partials:
            return None
        if len(partials) == 1:  # the common case (always, for a strict pair)
            return partials[0].start_ts + self.window
        return min(partial.start_ts for partial in partials) + self.window

    def _step(
        self, partial: Partial, event: Any, seq: int, ts: int, kept: list[Partial], completed: list[Match]
    ) -> None:
        stage = partial.stage
        fresh = partial.fresh
        if stage == self._final:  # waiting for the final negation to be over
            if fresh and self.final_not_next is not None:
                if not self.final_not_next(event, partial):
                    completed.append(_match(partial.node, partial.start_ts, partial.start_seq))
                    if partial.done is not None:
                        partial.done[0] = True
                return
            if any(guard(event, partial) for guard in self.final_guards):
                return
            partial.fresh = False
            kept.append(partial)
            return
        step = self.steps[stage]
        count = partial.count
        if count == 0:
            if step.guards and any(guard(event, partial) for guard in step.guards):
                return
            if fresh and step.not_next is not None and step.not_next(event, partial):
                return
            contiguity = step.entry
        else:
            if step.until is not None and step.until(event, partial):
                return
            contiguity = step.inner
        taken = self._take(partial, event, seq, ts, kept, completed)
        if contiguity is _ANY or (contiguity is _RELAXED and not taken):
            partial.fresh = False
            kept.append(partial)

    def _take(
        self,
        partial: Partial,
        event: Any,
        seq: int,
        ts: int,
        kept: list[Partial],
        completed: list[Match],
        *,
        first: bool = False,
    ) -> bool:
        """Let ``partial`` take ``event`` at its stage if it can (and, for a fresh start, at the
        stages an optional first stage lets it reach); returns whether it took it."""
        index = partial.stage
        steps = self.steps
        while True:
            step = steps[index]
            count = partial.count if index == partial.stage else 0
            can = (step.max is None or count < step.max) and step.test(event, partial)
            if can and partial.greedy >= 0 and count == 0 and steps[partial.greedy].test(event, partial):
                can = False  # the greedy loop before takes it
            if can:
                node = (step.name, event, seq, ts, partial.node)
                start_ts, start_seq = (
                    (ts, seq) if partial.node is None else (partial.start_ts, partial.start_seq)
                )
                taken = Partial(index, count + 1, node, start_ts, start_seq)
                self._arrive(taken, kept, completed)
                return True
            # A fresh start may skip an optional first stage.
            if first and step.optional and index + 1 < len(steps):
                index += 1
                continue
            return False

    def _arrive(self, partial: Partial, kept: list[Partial], completed: list[Match]) -> None:
        """``partial`` took an event: keep it if its stage can take more, and proceed if it has
        its minimum."""
        step = self.steps[partial.stage]
        count = partial.count
        if step.max is None or count < step.max:
            kept.append(partial)
        if count < step.min:
            return
        greedy = partial.stage if step.greedy else -1
        index = partial.stage + 1
        steps = self.steps
        siblings = []
        while index < len(steps):
            waiting = Partial(index, 0, partial.node, partial.start_ts, partial.start_seq, greedy)
            kept.append(waiting)
            if not steps[index].optional:
                return
            siblings.append(waiting)
            index += 1
        # Past the last stage: complete, unless a final negation must be over first.
        if self.final_not_next is not None or self.final_guards:
            pending = Partial(self._final, 0, partial.node, partial.start_ts, partial.start_seq)
            if self.final_not_next is not None:
                pending.done = partial.done = [False]
                for sibling in siblings:
                    sibling.done = pending.done
            kept.append(pending)
            return
        if self.window is not None and partial.node[3] - partial.start_ts >= self.window:
            return
        completed.append(_match(partial.node, partial.start_ts, partial.start_seq))

    # -- after a match -------------------------------------------------------------------------

    def _emit(self, state: NFAState, completed: list[Match]) -> list[Match]:
        """The matches of one step in order, each pruning what its skip strategy discards."""
        completed.sort(key=lambda match: (match.start_seq, match.seqs))
        skip = self.skip
        if skip.kind == "no_skip":
            return completed
        if skip.in_start_order:
            return self._release(state, completed)
        emitted: list[Match] = []
        for match in completed:
            if emitted and any(_discarded(match.start_seq, earlier, skip) for earlier in emitted):
                continue
            emitted.append(match)
            state.partials = [p for p in state.partials if not _discarded(p.start_seq, match, skip)]
        return emitted

    def _release(self, state: NFAState, completed: list[Match]) -> list[Match]:
        """The held matches (``completed`` added) that no partial match which began before them
        can still prune, in start order, each pruning what its skip strategy discards."""
        held = sorted([*state.held, *completed], key=lambda match: (match.start_seq, match.seqs))
        skip = self.skip
        emitted: list[Match] = []
        while held:
            match = held[0]
            if any(partial.start_seq < match.start_seq for partial in state.partials):
                break
            emitted.append(match)
            held = [other for other in held[1:] if not _discarded(other.start_seq, match, skip)]
            state.partials = [p for p in state.partials if not _discarded(p.start_seq, match, skip)]
        state.held = held
        return emitted


def _is_strict_pair(steps: list[_Step], final_guards: list[Test], final_not_next: Test | None) -> bool:
    """Whether ``steps`` are two stages of one event each, the second strictly after the first,
    without a negation or ``until`` anywhere (see :meth:`NFA._process_pair`)."""
    if len(steps) != 2 or final_guards or final_not_next is not None:
        return False
    single = all(
        step.min == step.max == 1
        and not step.optional
        and not step.greedy
        and step.until is None
        and not step.guards
        and step.not_next is None
        for step in steps
    )
    return single and steps[1].entry is _STRICT


def _discarded(start_seq: int, match: Match, skip: AfterMatchSkip) -> bool:
    """Whether a partial match that began at event ``start_seq`` is discarded by ``match``."""
    kind = skip.kind
    if kind == "skip_to_next":
        return start_seq == match.start_seq
    if kind == "skip_past_last_event":
        return start_seq <= match.seqs[-1]
    seqs = (match.stage_seqs or {}).get(skip.name or "")
    if not seqs:
        return False
    return start_seq < (seqs[0] if kind == "skip_to_first" else seqs[-1])
