"""Records a user function failed on: sent to dead letters instead of failing the job.

By default an exception in a user function fails the job (and the restart strategy applies). Given
``dead_letters=OutputTag(...)`` (``errors=``, its former name, still works for this release),
``map``, ``filter``, ``flat_map`` and ``process`` send each record their function raised on to that
side output as a :class:`FailedRecord` (the record, the exception, the operator instance) and go on
with the next record; the stream of those is ``get_side_output(tag)``, and each is counted in the
operator's ``dead_letter_count`` (the ``actorflow_dead_letters_total`` metric). A dead-letter output
nothing reads would lose records silently, so a failure then fails the job after all, saying so.
Timers are not records: an exception in ``on_timer`` still fails the job.

>>> from actorflow import Flow, OutputTag
>>> dead = OutputTag("dead")
>>> flow = Flow()
>>> ratios = flow.from_iterable([4, 0, 2]).map(lambda n: 8 // n, dead_letters=dead)
>>> good, bad = ratios.collect(), ratios.get_side_output(dead).collect()
>>> flow.execute()
>>> good.values, [(f.value, type(f.error).__name__, f.operator) for f in bad.values]
([2, 4], [(0, 'ZeroDivisionError', 'map[1/1]')])
"""

from __future__ import annotations

import contextlib
import os
import sysconfig
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from actorflow.operators.side_outputs import OutputTag

__all__ = [
    "FailedRecord",
    "call_each",
    "failing_record",
    "guarded",
    "route_failure",
    "shorten",
    "user_location",
]

T = TypeVar("T")


@dataclass(frozen=True)
class FailedRecord(Generic[T]):
    """A record ``operator`` (``name[i/p]``) could not process, and what its function raised: a
    dead letter of ``map``, ``filter``, ``flat_map``, ``process`` and ``map_async``.

    ``attempts`` counts the calls made for it (``map_async`` retries; 1 elsewhere); ``record``
    is another name of ``value``.
    """

    value: T
    error: Exception
    operator: str
    attempts: int = 1

    @property
    def record(self) -> T:
        return self.value

    def describe(self) -> str:
        """``"<operator>: <ExceptionType>: <message>"``, for a log line or a JSON field."""
        return f"{self.operator}: {type(self.error).__name__}: {self.error}"


def route_failure(
    operator: Any, errors: OutputTag[FailedRecord[Any]], value: Any, error: Exception, timestamp: int | None
) -> None:
    """Send ``value`` to ``operator``'s error output ``errors`` and count it; re-raise ``error``
    (with a note) when nothing reads that output."""
    if errors not in operator.side_outputs.tags:
        error.add_note(
            f"actorflow: {operator.context.label} has dead_letters={errors!r}, but nothing reads "
            "get_side_output() of it: the failed record would be lost, so the job fails instead"
        )
        raise error
    operator.dead_letter_count += 1
    operator.emit_side(errors, FailedRecord(value, error, operator.context.label), timestamp)


def call_each(
    operator: Any, fn: Callable[[Any], Any], values: list[Any], timestamps: list[Any] | None
) -> list[Any]:
    """``[fn(value) for value in values]``, except that a value ``fn`` raises on goes to
    ``operator.errors`` (:func:`route_failure`, with its timestamp) and its result is
    :data:`FAILED`: the guarded loop of map, filter and flat map."""
    errors = operator.errors
    results: list[Any] = []
    for position, value in enumerate(values):
        try:
            results.append(fn(value))
        except Exception as error:
            route_failure(
                operator, errors, value, error, None if timestamps is None else timestamps[position]
            )
            results.append(FAILED)
    return results


#: The result :func:`call_each` gives for a record its function raised on.
FAILED: Any = object()

Element = Callable[[Any, Any, Any], None]


def guarded(operator: Any, element: Element, errors: OutputTag[FailedRecord[Any]]) -> Element:
    """A process function's per-record call that sends a record it raises on to ``errors``
    (with the record's timestamp); what it collected before raising stays in the output."""

    def call(value: Any, ctx: Any, out: Any) -> None:
        try:
            element(value, ctx, out)
        except Exception as error:
            route_failure(operator, errors, value, error, ctx.timestamp)

    return call


def shorten(value: Any, limit: int = 100) -> str:
    """``repr(value)``, cut to ``limit`` characters for a log line.

    >>> shorten({"tx_id": 5, "note": "x" * 200}, 30)
    "{'tx_id': 5, 'note': 'xxxx..."
    """
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# Frames of actorflow itself and of the standard library are not the user's function.
_NOT_USER = tuple(
    str(Path(directory).resolve()) + os.sep
    for directory in {str(Path(__file__).resolve().parents[1]), sysconfig.get_paths()["stdlib"]}
)


def _is_user(filename: str) -> bool:
    """A frame of the user's code: a Python file that exists (not ``<string>``, not a compiled
    extension's ``uvloop/loop.pyx``) outside actorflow and the standard library."""
    return not filename.startswith(_NOT_USER) and filename.endswith(".py") and os.path.isfile(filename)


def failing_record(error: BaseException, values: Sequence[Any]) -> tuple[bool, Any]:
    """``(True, record)`` if ``error`` was raised in a user function called with one of ``values``
    (the batch the failing operator had in hand), else ``(False, None)``.

    Nothing on the per-record path keeps track of the current record (the stateless operators are
    one comprehension each); the failure itself tells: the first frame of the traceback that is
    neither actorflow's nor the standard library's is the user function the operator called, and
    one of its arguments *is* (identity, not equality) the record. A builtin called as the function
    has no frame: then no record is named.
    """
    if not values:
        return False, None
    batch = {id(value) for value in values}
    entry = error.__traceback__
    while entry is not None:
        frame = entry.tb_frame
        code = frame.f_code
        if _is_user(code.co_filename):
            count = code.co_argcount + code.co_kwonlyargcount
            for name in code.co_varnames[:count]:
                argument = frame.f_locals.get(name)
                if id(argument) in batch:
                    return True, argument
            return False, None
        entry = entry.tb_next
    return False, None


def user_location(error: BaseException) -> str | None:
    """``file:line`` of the innermost frame of ``error``'s traceback outside actorflow and the
    standard library (the user's code that raised), or None; a path under the working directory
    is given relative to it."""
    found = None
    entry = error.__traceback__
    while entry is not None:
        code = entry.tb_frame.f_code
        if _is_user(code.co_filename):
            found = (code.co_filename, entry.tb_lineno)
        entry = entry.tb_next
    if found is None:
        return None
    path = Path(found[0])
    with contextlib.suppress(ValueError):
        path = path.resolve().relative_to(Path.cwd())
    return f"{path}:{found[1]}"
