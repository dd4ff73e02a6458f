"""Errors that say where they were raised: the operator instance and, when known, the record.

A chain or a source actor calls :func:`locate` on an exception on its way out, so that the job's
error names the operator instance (``map[1/2]``) and the record a user function failed on. Only
the innermost call notes anything: the error keeps the place it was first located at.

>>> error = ZeroDivisionError("division by zero")
>>> locate(error, "map[1/1]")
>>> locate(error, "source[1/1]")  # already located: unchanged
>>> error.__notes__, error._actorflow_operator
(['actorflow: raised in operator map[1/1]'], 'map[1/1]')
"""

from __future__ import annotations

from typing import Any

from actorflow.operators.failures import failing_record, shorten

__all__ = ["locate"]


def locate(error: BaseException, label: str, values: list[Any] | None = None) -> None:
    """Note on ``error`` the operator instance it was raised in and, when the operator had a batch
    in hand (``values``), the record a user function failed on; the command line reads the
    attributes ``_actorflow_operator`` and ``_actorflow_record`` (a shortened repr) for its one
    line."""
    if getattr(error, "_actorflow_located", False):
        return
    error._actorflow_located = True  # type: ignore[attr-defined]
    error._actorflow_operator = label  # type: ignore[attr-defined]
    found, record = failing_record(error, values) if values else (False, None)
    if found:
        shown = shorten(record)
        error._actorflow_record = shown  # type: ignore[attr-defined]
        error.add_note(f"actorflow: raised in operator {label} on record {shown}")
    else:
        error.add_note(f"actorflow: raised in operator {label}")
