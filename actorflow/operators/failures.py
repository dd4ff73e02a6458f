"""Records a user function failed on: sent to an error output instead of failing the job.

By default an exception in a user function fails the job (and the restart strategy applies). Given
``errors=OutputTag(...)``, ``map``, ``filter``, ``flat_map`` and ``process`` send each record their
function raised on to that side output as a :class:`FailedRecord` (the record, the exception, the
operator instance) and go on with the next record; the stream of those is
``get_side_output(tag)``, and each is counted in the operator's ``dead_letter_count`` (the
``actorflow_dead_letters_total`` metric). An error output nothing reads would lose records
silently, so a failure then fails the job after all, saying so. Timers are not records: an
exception in ``on_timer`` still fails the job.

>>> from actorflow import Flow, OutputTag
>>> errors = OutputTag("errors")
>>> flow = Flow()
>>> ratios = flow.from_iterable([4, 0, 2]).map(lambda n: 8 // n, errors=errors)
>>> good, bad = ratios.collect(), ratios.get_side_output(errors).collect()
>>> flow.execute()
>>> good.values, [(f.value, type(f.error).__name__, f.operator) for f in bad.values]
([2, 4], [(0, 'ZeroDivisionError', 'map[1/1]')])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from actorflow.operators.side_outputs import OutputTag

__all__ = ["FailedRecord", "guarded", "route_failure"]

T = TypeVar("T")


@dataclass(frozen=True)
class FailedRecord(Generic[T]):
    """A record ``operator`` (``name[i/p]``) could not process, and what its function raised."""

    value: T
    error: Exception
    operator: str

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
            f"actorflow: {operator.context.label} has errors={errors!r}, but nothing reads "
            "get_side_output() of it: the failed record would be lost, so the job fails instead"
        )
        raise error
    operator.dead_letter_count += 1
    operator.emit_side(errors, FailedRecord(value, error, operator.context.label), timestamp)


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
