"""The Pattern API: Flink CEP's pattern sequences, in Python names.

A pattern is a sequence of named **stages**. Each stage has a condition on one event (``where``,
``or_``), a quantifier (how many events it takes: one by default, ``times``, ``one_or_more``,
``times_or_more``, ``optional``) and a contiguity to the stage before it:

- ``next``: strict, the matching event is the very next event of the key;
- ``followed_by``: relaxed, events that do not match are skipped, the first one that matches is
  taken;
- ``followed_by_any``: non-deterministic relaxed, every later matching event starts an alternative;
- ``not_next`` / ``not_followed_by``: the next event / no event before the following stage may
  match.

Within a looping stage the events are relaxed by default (``consecutive()``: strict,
``allow_combinations()``: non-deterministic). ``within(ms)`` bounds the time between the first and
the last event of a match. A pattern is immutable: every method returns a new one.

>>> small_then_large = (
...     Pattern.begin("small").where(lambda tx: tx["amount"] < 1)
...     .followed_by("large").where(lambda tx: tx["amount"] > 500)
...     .within(60_000)
... )
>>> [stage.name for stage in small_then_large.stages], small_then_large.window_ms
(['small', 'large'], 60000)
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Generic, TypeVar

from actorflow.errors import PlanError

__all__ = [
    "AfterMatchSkip",
    "Condition",
    "Contiguity",
    "Pattern",
    "PatternContext",
    "Stage",
    "condition_arity",
]

T = TypeVar("T")

#: A condition: ``fn(event)``, or (iterative) ``fn(event, ctx)`` where ``ctx.events(name)`` are the
#: events the partial match took for stage ``name`` so far.
Condition = Callable[..., bool]


class Contiguity(Enum):
    """How a stage's events follow the previous event of the match."""

    STRICT = "strict"
    RELAXED = "relaxed"
    ANY = "any"


class PatternContext:
    """What an iterative condition sees besides the event: the partial match so far.

    >>> ctx = PatternContext({"small": [{"amount": 0.5}]})
    >>> ctx.events("small"), ctx.events("large")
    ([{'amount': 0.5}], [])
    """

    __slots__ = ("_events",)

    def __init__(self, events: dict[str, list[Any]]) -> None:
        self._events = events

    def events(self, name: str) -> list[Any]:
        """The events taken for stage ``name`` so far, in order (empty if none)."""
        return self._events.get(name, [])


def condition_arity(condition: Condition) -> int:
    """1 for ``fn(event)``, 2 for an iterative ``fn(event, ctx)``.

    >>> condition_arity(lambda e: True), condition_arity(lambda e, ctx: True)
    (1, 2)
    """
    try:
        parameters = inspect.signature(condition).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: one argument
        return 1
    positional = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    varargs = any(p.kind is p.VAR_POSITIONAL for p in parameters)
    return 2 if len(positional) >= 2 or (varargs and len(positional) < 2) else 1


@dataclass(frozen=True)
class Stage:
    """One stage of a pattern (Flink's individual pattern), as the builder made it."""

    name: str
    #: To the previous stage (the first stage's is RELAXED: a match may begin at any event).
    contiguity: Contiguity = Contiguity.RELAXED
    #: ``not_next`` / ``not_followed_by``: no event may match the condition there.
    negated: bool = False
    #: ``(kind, left, right)`` trees of "and" / "or", leaves are conditions; None: every event.
    condition: Any = None
    until: Condition | None = None
    min: int = 1
    #: None: unbounded.
    max: int | None = 1
    optional: bool = False
    greedy: bool = False
    #: Between the events of a looping stage.
    inner: Contiguity = Contiguity.RELAXED
    #: A group pattern standing as this stage (``begin``/``next``/``followed_by`` of a Pattern).
    group: Pattern[Any] | None = None

    @property
    def looping(self) -> bool:
        return self.max is None or self.max > 1

    def describe(self) -> str:
        """``name`` with its quantifier, as in errors and plans.

        >>> Stage("b", min=2, max=None).describe()
        'b{2,}'
        """
        if self.min == self.max == 1:
            quantifier = ""
        elif self.max is None:
            quantifier = "+" if self.min == 1 else f"{{{self.min},}}"
        elif self.min == self.max:
            quantifier = f"{{{self.min}}}"
        else:
            quantifier = f"{{{self.min},{self.max}}}"
        return f"{self.name}{quantifier}{'?' if self.optional else ''}"


@dataclass(frozen=True)
class AfterMatchSkip:
    """What happens to the other partial matches once a match is emitted (Flink's
    ``AfterMatchSkipStrategy``).

    >>> AfterMatchSkip.skip_past_last_event()
    AfterMatchSkip(kind='skip_past_last_event', name=None, in_start_order=False)
    """

    kind: str = "no_skip"
    name: str | None = None
    #: See :meth:`start_order`.
    in_start_order: bool = False

    @staticmethod
    def no_skip() -> AfterMatchSkip:
        """Every match is emitted (the default)."""
        return AfterMatchSkip("no_skip")

    @staticmethod
    def skip_to_next() -> AfterMatchSkip:
        """Drop the partial matches that began with the same event as the match."""
        return AfterMatchSkip("skip_to_next")

    @staticmethod
    def skip_past_last_event() -> AfterMatchSkip:
        """Drop every partial match that began at or before the match's last event."""
        return AfterMatchSkip("skip_past_last_event")

    @staticmethod
    def skip_to_first(name: str) -> AfterMatchSkip:
        """Drop the partial matches that began before the first event of stage ``name``."""
        return AfterMatchSkip("skip_to_first", name)

    @staticmethod
    def skip_to_last(name: str) -> AfterMatchSkip:
        """Drop the partial matches that began before the last event of stage ``name``."""
        return AfterMatchSkip("skip_to_last", name)

    def start_order(self) -> AfterMatchSkip:
        """The same strategy, its matches emitted in the order of their first events, as Flink's
        NFA (and so Flink SQL's ``MATCH_RECOGNIZE``) emits them: a completed match waits while a
        partial match that began before it is alive, and is dropped if that one completes and
        prunes it. (By default a match is emitted as soon as it completes.)

        >>> AfterMatchSkip.skip_past_last_event().start_order().in_start_order
        True
        """
        if self.kind == "no_skip":
            raise PlanError("start_order() goes with a skip strategy: no_skip() emits every match")
        return dataclasses.replace(self, in_start_order=True)


@dataclass(frozen=True)
class Pattern(Generic[T]):
    """A pattern sequence; build it with :meth:`begin` and the methods below."""

    stages: tuple[Stage, ...] = ()
    window_ms: int | None = None
    _names: frozenset[str] = field(default=frozenset(), repr=False)

    # -- stages --------------------------------------------------------------------------------

    @staticmethod
    def begin(name: str | Pattern[Any]) -> Pattern[Any]:
        """The first stage (a name, or a group pattern)."""
        return Pattern()._append(name, Contiguity.RELAXED, negated=False)

    def next(self, name: str | Pattern[Any]) -> Pattern[T]:
        """A stage whose event directly follows the previous one (strict contiguity)."""
        return self._append(name, Contiguity.STRICT, negated=False)

    def followed_by(self, name: str | Pattern[Any]) -> Pattern[T]:
        """A stage whose event is the first matching one after the previous (relaxed)."""
        return self._append(name, Contiguity.RELAXED, negated=False)

    def followed_by_any(self, name: str | Pattern[Any]) -> Pattern[T]:
        """A stage any later matching event may fill, each an alternative (non-deterministic)."""
        return self._append(name, Contiguity.ANY, negated=False)

    def not_next(self, name: str) -> Pattern[T]:
        """The event directly after the previous one must not match this stage's condition."""
        return self._append(name, Contiguity.STRICT, negated=True)

    def not_followed_by(self, name: str) -> Pattern[T]:
        """No event between the previous stage and the next may match this stage's condition."""
        return self._append(name, Contiguity.RELAXED, negated=True)

    def _append(self, name: str | Pattern[Any], contiguity: Contiguity, *, negated: bool) -> Pattern[T]:
        group: Pattern[Any] | None = None
        if isinstance(name, Pattern):
            group = name
            if not group.stages:
                raise PlanError("a group pattern needs at least one stage")
            names = set(group._names)
            label = "(" + " ".join(stage.name for stage in group.stages) + ")"
        else:
            if not isinstance(name, str) or not name:
                raise PlanError(f"a pattern stage needs a name, not {name!r}")
            names = {name}
            label = name
        clash = names & self._names
        if clash:
            raise PlanError(f"pattern stage name {sorted(clash)[0]!r} is used twice")
        if negated and self.stages and self.stages[-1].optional:
            raise PlanError(f"{label}: a not_next/not_followed_by stage cannot follow an optional stage")
        stage = Stage(label, contiguity, negated, group=group)
        return dataclasses.replace(self, stages=(*self.stages, stage), _names=self._names | names)

    # -- the last stage ------------------------------------------------------------------------

    def _last(self, what: str) -> Stage:
        if not self.stages:
            raise PlanError(f"{what}: begin the pattern first (Pattern.begin(name))")
        return self.stages[-1]

    def _with_last(self, **changes: Any) -> Pattern[T]:
        stages = (*self.stages[:-1], dataclasses.replace(self.stages[-1], **changes))
        return dataclasses.replace(self, stages=stages)

    def where(self, condition: Condition) -> Pattern[T]:
        """The last stage's events must also satisfy ``condition`` (AND with earlier ones)."""
        stage = self._last("where")
        _check_callable(condition, "where")
        combined = condition if stage.condition is None else ("and", stage.condition, condition)
        return self._with_last(condition=combined)

    def or_(self, condition: Condition) -> Pattern[T]:
        """The last stage's events may satisfy ``condition`` instead (OR with what is there)."""
        stage = self._last("or_")
        _check_callable(condition, "or_")
        if stage.condition is None:
            raise PlanError(f"stage {stage.name!r}: or_() needs a where() before it")
        return self._with_last(condition=("or", stage.condition, condition))

    def until(self, condition: Condition) -> Pattern[T]:
        """A looping stage takes no more events once an event satisfies ``condition``."""
        stage = self._last("until")
        _check_callable(condition, "until")
        if not stage.looping or stage.max is not None:
            raise PlanError(f"stage {stage.name!r}: until() goes with one_or_more() or times_or_more()")
        return self._with_last(until=condition)

    def times(self, low: int, high: int | None = None) -> Pattern[T]:
        """The last stage takes exactly ``low`` events, or ``low`` to ``high``."""
        high = low if high is None else high
        if low < 1 or high < low:
            raise PlanError(f"times({low}, {high}): need 1 <= low <= high")
        return self._quantify("times", low, high)

    def one_or_more(self) -> Pattern[T]:
        """The last stage takes one event or more."""
        return self._quantify("one_or_more", 1, None)

    def times_or_more(self, times: int) -> Pattern[T]:
        """The last stage takes ``times`` events or more."""
        if times < 1:
            raise PlanError(f"times_or_more({times}): need at least 1")
        return self._quantify("times_or_more", times, None)

    def _quantify(self, what: str, low: int, high: int | None) -> Pattern[T]:
        stage = self._last(what)
        if stage.negated:
            raise PlanError(f"stage {stage.name!r}: a negated stage takes no quantifier")
        if not (stage.min == stage.max == 1):
            raise PlanError(f"stage {stage.name!r} has a quantifier already ({stage.describe()})")
        return self._with_last(min=low, max=high)

    def optional(self) -> Pattern[T]:
        """The last stage may take no event at all."""
        stage = self._last("optional")
        if stage.negated:
            raise PlanError(f"stage {stage.name!r}: a negated stage cannot be optional")
        return self._with_last(optional=True)

    def greedy(self) -> Pattern[T]:
        """The last (looping) stage takes every event it can before the next stage gets one."""
        stage = self._last("greedy")
        if not stage.looping:
            raise PlanError(f"stage {stage.name!r}: greedy() goes with a looping quantifier")
        if stage.group is not None:
            raise PlanError(f"stage {stage.name!r}: a group pattern cannot be greedy")
        return self._with_last(greedy=True)

    def consecutive(self) -> Pattern[T]:
        """The events of the last (looping) stage follow each other directly (strict)."""
        return self._inner("consecutive", Contiguity.STRICT)

    def allow_combinations(self) -> Pattern[T]:
        """Any later matching event may continue the last (looping) stage (non-deterministic)."""
        return self._inner("allow_combinations", Contiguity.ANY)

    def _inner(self, what: str, contiguity: Contiguity) -> Pattern[T]:
        stage = self._last(what)
        if not stage.looping:
            raise PlanError(f"stage {stage.name!r}: {what}() goes with times() or one_or_more()")
        return self._with_last(inner=contiguity)

    def within(self, ms: int) -> Pattern[T]:
        """A match's last event is less than ``ms`` after its first (event time, or processing
        time without watermarks); a partial match that can no longer make it times out."""
        if ms <= 0:
            raise PlanError(f"within({ms}): need a positive number of milliseconds")
        window = ms if self.window_ms is None else min(self.window_ms, ms)
        return dataclasses.replace(self, window_ms=window)

    # -- checks --------------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise :class:`PlanError` for a pattern that cannot work (Flink refuses the same)."""
        if not self.stages:
            raise PlanError("the pattern is empty: Pattern.begin(name) first")
        first, last = self.stages[0], self.stages[-1]
        if first.negated:
            raise PlanError(f"a pattern cannot begin with a negated stage ({first.name!r})")
        if last.negated and last.contiguity is Contiguity.RELAXED and self.window_ms is None:
            raise PlanError(
                f"the pattern ends with not_followed_by({last.name!r}): give it within(ms), "
                "or it could never complete"
            )
        if all(stage.optional or stage.negated for stage in self.stages):
            raise PlanError("every stage of the pattern is optional: it would match nothing")
        for stage in self.stages:
            if stage.group is not None:
                stage.group.validate()
                if stage.looping or stage.optional:
                    raise PlanError(
                        f"group {stage.name}: quantifiers on a group pattern are not supported yet"
                    )

    def flat(self) -> list[Stage]:
        """The stages with group patterns spliced in (a group's first stage takes the group's
        contiguity)."""
        stages: list[Stage] = []
        for stage in self.stages:
            if stage.group is None:
                stages.append(stage)
                continue
            inner = stage.group.flat()
            stages.append(dataclasses.replace(inner[0], contiguity=stage.contiguity))
            stages.extend(inner[1:])
        return stages

    def names(self) -> Sequence[str]:
        """Every stage name, groups' included."""
        return [stage.name for stage in self.flat()]


def _check_callable(condition: Any, what: str) -> None:
    if not callable(condition):
        raise PlanError(f"{what}() takes a function of the event, not {condition!r}")
