"""A brute-force reference for the semantics of patterns, as docs/cep.md defines them.

It shares nothing with the automaton (``actorflow/operators/cep/nfa.py``): it reads a pattern's
stages and enumerates, for one key's events in processing order, every **candidate**: a sequence of
events ``e[i1] < e[i2] < ...`` (by position), each given a positive stage, stages never going back.
A candidate is allowed when each of its events is allowed after the candidate's own prefix, so the
enumeration only extends allowed prefixes (the rules below never look at later events). It is slow
(exponential in the number of events) and meant for a handful of events.

**Positions.** After a prefix whose last event went to stage ``s``, which then holds ``k`` events, the
prefix waits at each of these positions (docs/cep.md's partial matches; each is its own partial
match, they share their events):

- *in the loop* of ``s``, if ``k`` is below the stage's maximum; its contiguity is the stage's inner
  one (relaxed, ``consecutive()``: strict, ``allow_combinations()``: non-deterministic);
- once ``k`` reaches the stage's minimum: *waiting* for the first event of the next positive stage,
  and past every optional stage, of the ones after it; its contiguity is that stage's own
  (``next``: strict, ``followed_by``: relaxed, ``followed_by_any``: non-deterministic), a
  ``followed_by`` stage with ``allow_combinations()`` non-deterministic;
- *final* once every positive stage after ``s`` may be skipped: the candidate is a match (with a
  trailing negation, a match pending the negation, below).

A position **takes** an event when the stage's condition holds for it, evaluated with the prefix's
events as the iterative context; in the loop only below the maximum and not when the stage's
``until`` holds (that event ends the loop: the in-loop position is dropped); waiting, only when no
negation in front of the stage forbids the event (``not_next``: the first event after the prefix,
``not_followed_by``: any event, the taken one included, both drop the position), and, after a
``greedy()`` loop, not an event the loop's condition accepts (the loop keeps it).

**Contiguity, as a property of the candidate.** Event ``j`` may follow the prefix ending at ``i``
through position ``p`` (the in-loop position when ``j`` goes to the same stage, else the one waiting
at ``j``'s stage) when ``p`` exists, ``p`` takes ``j``, ``p`` survives every event strictly between
``i`` and ``j``, and ``j`` is less than ``within`` after the candidate's first event. ``p`` survives
event ``m`` when no negation drops it there and:

- strict: never (so ``j`` must be ``i + 1``);
- relaxed: ``p`` would not take ``m``. This is the heart of docs/cep.md's "ignore only if it did not
  take the event": a relaxed position that *could* take ``m`` does take it, and the partial match
  that took it replaces the one that waited. So a relaxed step from ``i`` to ``j`` skips only
  events this very prefix, at this very position, would have refused: for ``a followed_by b`` over
  ``a c b1 b2``, ``{a b2}`` is not allowed since ``b1`` lies between and would have been taken;
  ``{a b1}`` is. Other positions of the same prefix are judged apart: the position past an optional
  stage is not dropped because the optional stage took an event;
- non-deterministic: always.

A candidate's first event begins at the first stage; if that stage is optional, at the first stage
whose condition accepts the event among it and the ones after it up to the first stage that is not
optional (docs/cep.md: "at the first stage that can take it": one stage, not each of them).

**Completion.** A candidate with a final position is a match completed by its last event. With a
trailing ``not_next(n)``: completed by the next event (if it comes before ``within`` runs out) when
that event does not satisfy ``n``. With a trailing ``not_followed_by(n)``: completed at ``first
event + within`` when no event before then, after its last one, satisfies ``n``.

**Emission order and skips.** Matches are emitted at their completing event, or at their deadline
(before the events at or after that time), several at once in order of their first event, then of
their event positions. A match is dropped when an emitted match before it prunes its first event:
``skip_to_next``: the same first event; ``skip_past_last_event``: at or before the emitted match's
last event; ``skip_to_first(s)`` / ``skip_to_last(s)``: before the first / last event of stage
``s`` in the emitted match. (The partial match that would have become the later match began at that
first event and was there when the earlier match was emitted.)

**Timeouts** (with ``within``). A prefix times out at ``first event + within`` if one of its
non-final positions (or a final one waiting for a trailing ``not_next``'s event) survived every
event before that time and no match emitted before then pruned its first event; each prefix is
reported once, however many of its positions are alive.

Where docs/cep.md does not decide an input, :class:`Ambiguous` is raised rather than guessing: an
event that satisfies both a loop's condition and its ``until`` (is it taken? as the loop's first
event?), ``skip_to_first/last`` naming a stage the emitted match skipped, two matches tied in the
emission order under a skip strategy (same events, other stages), and a few shapes (a greedy loop
that is bounded, has ``until``, is consecutive, has an iterative condition or is followed by an
optional or looping stage; a negation in front of an optional stage; two ``not_next`` in a row;
both kinds of trailing negation).

>>> from actorflow.operators.cep.pattern import Pattern
>>> is_ = lambda kind: lambda event: event.startswith(kind)
>>> pattern = Pattern.begin("a").where(is_("a")).followed_by("b").where(is_("b"))
>>> [m.text() for m in reference(pattern, None, list(enumerate(["a", "c", "b1", "b2"]))).matches]
['a b1']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from actorflow.operators.cep.pattern import (
    AfterMatchSkip,
    Contiguity,
    Pattern,
    PatternContext,
    Stage,
    condition_arity,
)

__all__ = ["Ambiguous", "Found", "Outcome", "reference"]

#: A candidate: (position of the event, index of its positive stage), positions increasing.
Candidate = tuple[tuple[int, int], ...]
#: When something happens: (time, 0 for a deadline or 1 for an event, the event's position).
Moment = tuple[int, int, int]


class Ambiguous(Exception):
    """docs/cep.md does not decide the result for this input (the message says why)."""


@dataclass(frozen=True)
class Step:
    """A positive stage with the negations in front of it."""

    stage: Stage
    not_next: Any = None
    not_followed_by: tuple[Any, ...] = ()

    @property
    def waiting(self) -> Contiguity:
        """The contiguity of a partial match waiting for this stage's first event."""
        stage = self.stage
        if stage.inner is Contiguity.ANY and stage.contiguity is Contiguity.RELAXED:
            return Contiguity.ANY
        return stage.contiguity


@dataclass(frozen=True)
class Spec:
    steps: tuple[Step, ...]
    final_not_next: Any
    final_not_followed_by: tuple[Any, ...]
    window: int | None
    skip: AfterMatchSkip


@dataclass(frozen=True)
class Found:
    """A match (or a timed-out partial match): its events per stage, by position, and when."""

    #: (stage name, positions of its events), in stage order; stages without events left out.
    stages: tuple[tuple[str, tuple[int, ...]], ...]
    #: The time it was emitted (its completing event's, or its deadline) or timed out.
    time: int
    #: The position of the event that completed it; -1 at a deadline (and for timeouts).
    at: int
    first: int
    positions: tuple[int, ...]
    events: dict[str, list[Any]]

    def text(self) -> str:
        """Its events joined with spaces, in order (for string events)."""
        return " ".join(str(e) for name, _ in self.stages for e in self.events[name])


@dataclass(frozen=True)
class Outcome:
    #: In emission order.
    matches: list[Found]
    timed_out: list[Found]


# -- conditions ------------------------------------------------------------------------------------


def holds(tree: Any, event: Any, taken: dict[str, list[Any]]) -> bool:
    """A stage's condition tree on ``event``, ``taken`` being the prefix's events per stage."""
    if tree is None:
        return True
    if isinstance(tree, tuple):
        kind, left, right = tree
        if kind == "and":
            return holds(left, event, taken) and holds(right, event, taken)
        return holds(left, event, taken) or holds(right, event, taken)
    if condition_arity(tree) == 2:
        return bool(tree(event, PatternContext({k: list(v) for k, v in taken.items()})))
    return bool(tree(event))


def iterative(tree: Any) -> bool:
    if tree is None:
        return False
    if isinstance(tree, tuple):
        return iterative(tree[1]) or iterative(tree[2])
    return condition_arity(tree) == 2


# -- the pattern, read -----------------------------------------------------------------------------


def read(pattern: Pattern[Any], skip: AfterMatchSkip | None) -> Spec:
    pattern.validate()
    skip = skip or AfterMatchSkip.no_skip()
    steps: list[Step] = []
    not_next: list[Any] = []
    not_followed_by: list[Any] = []
    for stage in pattern.flat():
        if stage.negated:
            (not_next if stage.contiguity is Contiguity.STRICT else not_followed_by).append(stage.condition)
            continue
        if len(not_next) > 1:
            raise Ambiguous("two not_next in a row")
        if (not_next or not_followed_by) and stage.optional:
            raise Ambiguous(f"a negation in front of the optional stage {stage.name!r}")
        steps.append(Step(stage, not_next[0] if not_next else None, tuple(not_followed_by)))
        not_next, not_followed_by = [], []
    if len(not_next) > 1 or (not_next and not_followed_by):
        raise Ambiguous("the pattern ends with two negations")
    for number, step in enumerate(steps):
        stage = step.stage
        if not stage.greedy:
            continue
        after = steps[number + 1].stage if number + 1 < len(steps) else None
        if (
            stage.max is not None
            or stage.until is not None
            or stage.inner is Contiguity.STRICT
            or iterative(stage.condition)
            or (after is not None and (after.optional or after.looping))
        ):
            raise Ambiguous(f"greedy stage {stage.describe()} of this shape")
    names = [step.stage.name for step in steps]
    if skip.name is not None and skip.name not in names:
        raise ValueError(f"the skip strategy names {skip.name!r}, not a positive stage of the pattern")
    return Spec(
        tuple(steps),
        not_next[0] if not_next else None,
        tuple(not_followed_by),
        pattern.window_ms,
        skip,
    )


# -- the rules -------------------------------------------------------------------------------------


class Rules:
    """The rules of the module's docstring over one key's events."""

    def __init__(self, spec: Spec, timed: Sequence[tuple[int, Any]]) -> None:
        self.spec = spec
        self.times = [ts for ts, _ in timed]
        self.events = [event for _, event in timed]
        if any(a > b for a, b in zip(self.times, self.times[1:], strict=False)):
            raise ValueError("the events must come in processing order (timestamps never decrease)")

    def taken(self, prefix: Candidate) -> dict[str, list[Any]]:
        taken: dict[str, list[Any]] = {}
        for position, step in prefix:
            taken.setdefault(self.spec.steps[step].stage.name, []).append(self.events[position])
        return taken

    def positions(self, prefix: Candidate) -> list[tuple[str, int]]:
        """("loop", s), ("wait", t) and ("final", -1) positions the prefix waits at."""
        steps = self.spec.steps
        s = prefix[-1][1]
        k = sum(1 for _, step in prefix if step == s)
        stage = steps[s].stage
        found: list[tuple[str, int]] = []
        if stage.max is None or k < stage.max:
            found.append(("loop", s))
        if k >= stage.min:
            t = s + 1
            while t < len(steps):
                found.append(("wait", t))
                if not steps[t].stage.optional:
                    break
                t += 1
            else:
                found.append(("final", -1))
        return found

    def dropped(self, prefix: Candidate, position: tuple[str, int], m: int) -> bool:
        """Whether a negation (or an ``until``) drops ``position`` at event ``m``."""
        kind, s = position
        event, taken, last = self.events[m], self.taken(prefix), prefix[-1][0]
        if kind == "loop":
            stage = self.spec.steps[s].stage
            return stage.until is not None and holds(stage.until, event, taken)
        if kind == "wait":
            not_next, guards = self.spec.steps[s].not_next, self.spec.steps[s].not_followed_by
        else:
            not_next, guards = self.spec.final_not_next, self.spec.final_not_followed_by
        if not_next is not None and m == last + 1 and holds(not_next, event, taken):
            return True
        return any(holds(guard, event, taken) for guard in guards)

    def takes(self, prefix: Candidate, position: tuple[str, int], m: int) -> bool:
        kind, s = position
        if kind == "final":
            return False
        stage = self.spec.steps[s].stage
        event, taken = self.events[m], self.taken(prefix)
        if not holds(stage.condition, event, taken):
            return False
        self.check_until(stage, m, taken)
        if self.dropped(prefix, position, m):
            return False
        if kind == "wait":
            left = self.spec.steps[prefix[-1][1]].stage
            if left.greedy and s == prefix[-1][1] + 1 and holds(left.condition, event, taken):
                return False  # the greedy loop keeps it
        return True

    def survives(self, prefix: Candidate, position: tuple[str, int], m: int) -> bool:
        kind, s = position
        if self.dropped(prefix, position, m):
            return False
        if kind == "final":  # a trailing not_next is decided at the next event
            return self.spec.final_not_next is None
        step = self.spec.steps[s]
        contiguity = step.stage.inner if kind == "loop" else step.waiting
        if contiguity is Contiguity.STRICT:
            return False
        if contiguity is Contiguity.RELAXED:
            return not self.takes(prefix, position, m)
        return True

    def in_time(self, prefix: Candidate, m: int) -> bool:
        window = self.spec.window
        return window is None or self.times[m] - self.times[prefix[0][0]] < window

    def begins(self, j: int) -> list[int]:
        """The stage event ``j`` may begin a candidate at (none or one)."""
        for t, step in enumerate(self.spec.steps):
            if holds(step.stage.condition, self.events[j], {}):
                self.check_until(step.stage, j, {})
                return [t]
            if not step.stage.optional:
                break
        return []

    def check_until(self, stage: Stage, j: int, taken: dict[str, list[Any]]) -> None:
        if stage.until is not None and holds(stage.until, self.events[j], taken):
            raise Ambiguous(f"event {j} satisfies both the condition and until() of {stage.name!r}")

    def follows(self, prefix: Candidate, j: int, t: int) -> bool:
        """Whether event ``j`` at stage ``t`` may extend ``prefix``."""
        s, last = prefix[-1][1], prefix[-1][0]
        position = ("loop", s) if t == s else ("wait", t)
        if position not in self.positions(prefix) or not self.in_time(prefix, j):
            return False
        if not all(self.survives(prefix, position, m) for m in range(last + 1, j)):
            return False
        return self.takes(prefix, position, j)

    def candidates(self) -> list[Candidate]:
        """Every allowed candidate (prefix or not)."""
        found: list[Candidate] = []
        stack: list[Candidate] = [((j, t),) for j in range(len(self.events)) for t in self.begins(j)]
        while stack:
            prefix = stack.pop()
            found.append(prefix)
            s, last = prefix[-1][1], prefix[-1][0]
            for j in range(last + 1, len(self.events)):
                for t in range(s, len(self.spec.steps)):
                    if self.follows(prefix, j, t):
                        stack.append((*prefix, (j, t)))
        return found

    # -- outcomes ----------------------------------------------------------------------------------

    def deadline(self, candidate: Candidate) -> tuple[int, int] | None:
        """(first event + within, the position of the first event at or after it)."""
        if self.spec.window is None:
            return None
        due = self.times[candidate[0][0]] + self.spec.window
        after = next((m for m, ts in enumerate(self.times) if ts >= due), len(self.times))
        return due, after

    def completed(self, candidate: Candidate) -> Moment | None:
        """When the candidate completes as a match, or None."""
        if ("final", -1) not in self.positions(candidate):
            return None
        last, spec = candidate[-1][0], self.spec
        if spec.final_not_next is not None:
            d = last + 1
            if d >= len(self.events) or not self.in_time(candidate, d):
                return None
            if holds(spec.final_not_next, self.events[d], self.taken(candidate)):
                return None
            return (self.times[d], 1, d)
        if spec.final_not_followed_by:
            deadline = self.deadline(candidate)
            assert deadline is not None  # the pattern was validated
            due, after = deadline
            if any(self.dropped(candidate, ("final", -1), m) for m in range(last + 1, after)):
                return None
            return (due, 0, -1)
        return (self.times[last], 1, last)

    def times_out(self, candidate: Candidate) -> bool:
        """Whether one of the candidate's partial matches is still there at its deadline."""
        deadline = self.deadline(candidate)
        if deadline is None:
            return False
        _, after = deadline
        last = candidate[-1][0]
        for position in self.positions(candidate):
            if position[0] == "final" and self.spec.final_not_next is None:
                continue  # a match, or (not_followed_by) one that completes at the deadline
            if all(self.survives(candidate, position, m) for m in range(last + 1, after)):
                return True
        return False

    def found(self, candidate: Candidate, time: int, at: int = -1) -> Found:
        stages: list[tuple[str, tuple[int, ...]]] = []
        for position, step in candidate:
            name = self.spec.steps[step].stage.name
            if stages and stages[-1][0] == name:
                stages[-1] = (name, (*stages[-1][1], position))
            else:
                stages.append((name, (position,)))
        return Found(
            tuple(stages),
            time,
            at,
            candidate[0][0],
            tuple(position for position, _ in candidate),
            {name: [self.events[p] for p in positions] for name, positions in stages},
        )

    def prunes(self, match: Found, first: int) -> bool:
        """Whether emitting ``match`` drops a partial match that began at ``first``."""
        skip = self.spec.skip
        if skip.kind == "no_skip":
            return False
        if skip.kind == "skip_to_next":
            return first == match.first
        if skip.kind == "skip_past_last_event":
            return first <= match.positions[-1]
        stages = dict(match.stages)
        if skip.name not in stages:
            raise Ambiguous(f"{skip.kind}({skip.name!r}) after a match without that stage")
        mark = stages[skip.name][0 if skip.kind == "skip_to_first" else -1]
        return first < mark


def reference(
    pattern: Pattern[Any], skip: AfterMatchSkip | None, timed: Sequence[tuple[int, Any]]
) -> Outcome:
    """The matches of ``pattern`` with ``skip`` over one key's ``(timestamp, event)`` pairs in
    processing order (timestamps never decrease), in emission order, and the timed-out partial
    matches (at their deadline, the end of the events counting as a watermark at infinity).

    Raises :class:`Ambiguous` where docs/cep.md does not decide.
    """
    rules = Rules(read(pattern, skip), timed)
    candidates = rules.candidates()
    completions: list[tuple[Moment, int, tuple[int, ...], Candidate]] = []
    for candidate in candidates:
        moment = rules.completed(candidate)
        if moment is not None:
            completions.append((moment, candidate[0][0], tuple(p for p, _ in candidate), candidate))
    completions.sort(key=lambda c: c[:3])
    if rules.spec.skip.kind != "no_skip":
        keys = [c[:3] for c in completions]
        if len(set(keys)) < len(keys):
            raise Ambiguous("two matches tie in the emission order (same events, other stages)")
    emitted: list[tuple[Moment, Found]] = []
    for moment, first, _, candidate in completions:
        if not any(rules.prunes(match, first) for _, match in emitted):
            emitted.append((moment, rules.found(candidate, moment[0], moment[2])))
    timed_out = []
    for candidate in candidates:
        if not rules.times_out(candidate) or rules.completed(candidate) is not None:
            continue  # (a match already, though it could still grow: not a timeout)
        deadline = rules.deadline(candidate)
        assert deadline is not None
        due = (deadline[0], 0, -1)
        first = candidate[0][0]
        if not any(moment < due and rules.prunes(match, first) for moment, match in emitted):
            timed_out.append(rules.found(candidate, deadline[0]))
    timed_out.sort(key=lambda f: (f.time, f.first, f.positions))
    return Outcome([match for _, match in emitted], timed_out)
