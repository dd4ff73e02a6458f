"""Rolling aggregations of a keyed stream: Flink's ``KeyedStream.reduce``, ``sum``, ``min``,
``max``, ``min_by`` and ``max_by``.

Each is a :class:`~actorflow.operators.process.KeyedProcessFunction` whose running result is the
key's value state ``"rolling"``, so it is checkpointed, restored, rescaled and kept in RocksDB like
any keyed state, and it emits the key's new result for every record, as Flink does:

- :class:`Reduce` combines the result so far with each new record (``function(so_far, record)``);
- :func:`aggregation` makes ``sum``, ``min`` and ``max`` of one field: the result is the key's
  *first* record with that field replaced by the running sum, minimum or maximum (Flink's rule:
  the other fields are the first record's); ``min_by`` and ``max_by`` keep the whole record holding
  the minimum or maximum (the earliest of equal ones, unless ``first=False``).

A field is a dict's key, a tuple's or list's position, or a dataclass's or object's attribute. A
record without the field, or whose value cannot be added or compared, raises ValueError naming the
operator, the field and the record (so it fails the job, or goes to ``dead_letters``).

>>> from actorflow import Flow
>>> flow = Flow()
>>> spends = [{"card": "a", "amount": 5, "shop": "x"}, {"card": "a", "amount": 7, "shop": "y"}]
>>> totals = flow.from_iterable(spends).key_by("card").sum("amount").collect()
>>> flow.execute()
>>> totals.values
[{'card': 'a', 'amount': 5, 'shop': 'x'}, {'card': 'a', 'amount': 12, 'shop': 'x'}]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Final, Generic, Literal, TypeVar

from actorflow.operators.base import Collector
from actorflow.operators.process import Context, KeyedProcessFunction, RuntimeContext
from actorflow.state.descriptors import ValueStateDescriptor

__all__ = ["Aggregation", "Field", "Reduce", "aggregation", "get_field", "with_field"]

T = TypeVar("T")
R = TypeVar("R")

#: A field of a record: a dict's key, a sequence's position or an attribute's name.
Field = str | int
#: The rolling aggregations of one field.
Aggregation = Literal["sum", "min", "max", "min_by", "max_by"]

#: The keyed state holding each key's result so far.
STATE: Final = "rolling"

_MISSING: Final[Any] = object()


def get_field(record: Any, field: Field) -> Any:
    """``field`` of ``record``; raises LookupError (KeyError, IndexError, AttributeError) if it
    has none.

    >>> get_field({"n": 1}, "n"), get_field((4, 5), 1)
    (1, 5)
    """
    if isinstance(record, dict):
        return record[field]
    if isinstance(field, int) and isinstance(record, tuple | list):
        return record[field]
    if isinstance(field, str):
        try:
            return getattr(record, field)
        except AttributeError:
            raise LookupError(field) from None
    raise LookupError(field)


def with_field(record: R, field: Field, value: Any) -> R:
    """A copy of ``record`` whose ``field`` is ``value`` (the record itself is not changed).

    >>> with_field({"n": 1, "m": 2}, "n", 5), with_field((1, 2), 0, 9)
    ({'n': 5, 'm': 2}, (9, 2))
    """
    copy: Any = _MISSING
    any_record: Any = record
    if isinstance(any_record, dict):
        copy = {**any_record, field: value}
    elif hasattr(any_record, "_replace") and hasattr(any_record, "_fields"):  # a named tuple
        name = any_record._fields[field] if isinstance(field, int) else field
        copy = any_record._replace(**{name: value})
    elif isinstance(field, int) and type(any_record) in (tuple, list):
        items = list(any_record)
        items[field] = value
        copy = type(any_record)(items)
    elif (
        isinstance(field, str) and dataclasses.is_dataclass(any_record) and not isinstance(any_record, type)
    ):
        copy = dataclasses.replace(any_record, **{field: value})
    if copy is not _MISSING:
        result: R = copy
        return result
    raise TypeError(f"cannot make a copy of a {type(record).__name__} with field {field!r} replaced")


class _Rolling(KeyedProcessFunction[T, T], Generic[T]):
    """The key's result so far in value state; ``combine`` makes the next one."""

    label = "rolling"

    def open(self, ctx: RuntimeContext) -> None:
        self.label = ctx.operator.label
        self.result = ctx.get_state(ValueStateDescriptor[Any](STATE))

    def process_element(self, value: T, ctx: Context, out: Collector) -> None:
        so_far = self.result.value()
        result = self.start(value) if so_far is None else self.combine(so_far, value)
        self.result.update(result)
        out.collect(result)

    def start(self, value: T) -> T:
        """The result of a key's first record."""
        return value

    def combine(self, so_far: T, value: T) -> T:
        raise NotImplementedError


class Reduce(_Rolling[T]):
    """``KeyedStream.reduce(function)``: the key's first record, then ``function(so_far, record)``
    for each next one; every result is emitted."""

    def __init__(self, function: Callable[[T, T], T]) -> None:
        self.function = function

    def combine(self, so_far: T, value: T) -> T:
        return self.function(so_far, value)


class _FieldAggregation(_Rolling[T]):
    def __init__(self, kind: Aggregation, field: Field, first: bool) -> None:
        self.kind = kind
        self.field = field
        self.first = first

    def _read(self, record: T) -> Any:
        try:
            return get_field(record, self.field)
        except LookupError:
            raise ValueError(
                f"{self.label}: {self.kind}({self.field!r}) of a record without it: {record!r}"
            ) from None

    def start(self, value: T) -> T:
        self._read(value)  # the first record of a key needs the field too
        return value

    def combine(self, so_far: T, value: T) -> T:
        old, new = self._read(so_far), self._read(value)
        try:
            if self.kind == "sum":
                return with_field(so_far, self.field, old + new)
            if self.kind in ("min", "max"):
                better = new < old if self.kind == "min" else new > old
                return with_field(so_far, self.field, new) if better else so_far
            better = new < old if self.kind == "min_by" else new > old
            tie = not self.first and new == old
            return value if better or tie else so_far
        except TypeError as error:
            raise ValueError(
                f"{self.label}: {self.kind}({self.field!r}) cannot take {new!r} after {old!r} ({error}) "
                f"in record {value!r}"
            ) from None


def aggregation(kind: Aggregation, field: Field, *, first: bool = True) -> KeyedProcessFunction[Any, Any]:
    """The function of a rolling ``kind`` (``"sum"``, ``"min"``, ``"max"``, ``"min_by"``,
    ``"max_by"``) of ``field`` (see the module docstring); ``first`` (``min_by``/``max_by``):
    whether the earliest of equal records is kept (else the latest).

    >>> aggregation("max_by", "amount").kind
    'max_by'
    """
    if kind not in ("sum", "min", "max", "min_by", "max_by"):
        raise ValueError(f"unknown rolling aggregation {kind!r}")
    return _FieldAggregation(kind, field, first)
