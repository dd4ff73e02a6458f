"""Helpers that keep timestamps and in-batch watermarks in step when records are dropped or multiplied.

A filter keeps some records; a flat map turns each record into any number of records. The values
change, and with them the positions at which the batch's watermarks apply. These helpers do the
bookkeeping in C-speed passes (``compress``, ``accumulate``) instead of a Python loop per record.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import accumulate, chain, compress, repeat
from typing import Any

from actorflow.runtime.messages import Batch

__all__ = ["expand", "select"]


def _shift(marks: list[tuple[int, int]], counts: Iterable[int]) -> list[tuple[int, int]]:
    # counts[i] records come out of input record i: a mark at input position p moves to the
    # number of output records made from the first p inputs.
    # Marks that end up with no record between them collapse to the last one.
    before = list(accumulate(counts, initial=0))
    return list(dict([(before[position], watermark) for position, watermark in marks]).items())


def select(batch: Batch, keep: Sequence[bool]) -> Batch:
    """The records of ``batch`` where ``keep`` is true, with timestamps and marks moved along.

    >>> select(Batch(["a", "b", "c"], [1, 2, 3], [(2, 9)]), [True, False, True])
    Batch(['a', 'c'], timestamps=[1, 3], marks=[(1, 9)])
    """
    values = list(compress(batch.values, keep))
    timestamps = batch.timestamps
    if timestamps is not None:
        timestamps = list(compress(timestamps, keep))
    marks = batch.marks
    if marks:
        marks = _shift(marks, keep)
    return Batch(values, timestamps, marks)


def expand(batch: Batch, outputs: list[list[Any]]) -> Batch:
    """Replace record ``i`` of ``batch`` by the records ``outputs[i]`` (each keeps its timestamp).

    >>> expand(Batch(["ab", "c"], [1, 2], [(1, 5)]), [["a", "b"], ["c"]])
    Batch(['a', 'b', 'c'], timestamps=[1, 1, 2], marks=[(2, 5)])
    """
    values = list(chain.from_iterable(outputs))
    timestamps = batch.timestamps
    marks = batch.marks
    if timestamps is None and not marks:
        return Batch(values)
    counts = [len(out) for out in outputs]
    if timestamps is not None:
        timestamps = list(chain.from_iterable(map(repeat, timestamps, counts)))
    if marks:
        marks = _shift(marks, counts)
    return Batch(values, timestamps, marks)
