"""Reading a record's features and target for a model, with errors that name the record.

Features are a list of field names (each a finite number: ``{name: value}``) or a function of the
record that returns the features dict itself (its values go to the model as they are, so a
function may give categories as strings to a model that encodes them). A target is a field name
or a function. A record is read by field (``record[name]``) if it is a mapping, else by attribute
(a dataclass, a named tuple).

>>> read = feature_reader(["amount", "count"], "learn_predict")
>>> read({"amount": 12.5, "count": 3, "card": "c1"}, "lp[1/1]")
{'amount': 12.5, 'count': 3}
>>> read({"amount": "12.5", "count": 3}, "lp[1/1]")
Traceback (most recent call last):
...
ValueError: lp[1/1]: feature 'amount' of record {'amount': '12.5', 'count': 3} is '12.5', not a number
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from numbers import Real
from typing import Any

from actorflow.errors import PlanError
from actorflow.operators.failures import shorten

__all__ = ["FeatureReader", "Features", "Target", "TargetReader", "feature_reader", "target_reader"]

#: What ``features=`` takes: field names, or a function of the record giving ``{name: value}``.
Features = Sequence[str] | Callable[[Any], Mapping[str, Any]]
#: What ``target=`` takes: a field name or a function of the record.
Target = str | Callable[[Any], Any]
#: ``read(record, operator label)`` -> the features; raises ValueError naming both.
FeatureReader = Callable[[Any, str], dict[str, Any]]
#: ``read(record, operator label)`` -> the target; raises ValueError naming both.
TargetReader = Callable[[Any, str], Any]

_ABSENT = object()


def _field(record: Any, name: str) -> Any:
    """``record[name]`` for a mapping, ``record.name`` otherwise; ``_ABSENT`` if it has none."""
    if isinstance(record, Mapping):
        return record.get(name, _ABSENT)
    return getattr(record, name, _ABSENT)


def _number(value: Any) -> bool:
    return isinstance(value, Real) and math.isfinite(value)


def feature_reader(features: Features, operator: str) -> FeatureReader:
    """The reader of ``features`` (see the module); :class:`PlanError` naming ``operator`` for
    anything else (a lone string, an empty list, a name that is not a string)."""
    if callable(features):
        return _function_reader(features)
    if isinstance(features, str | bytes) or not isinstance(features, Sequence):
        raise PlanError(
            f"{operator}: features= takes a list of field names or a function of the record, "
            f"got {features!r}"
        )
    names = list(features)
    if not names or not all(isinstance(name, str) for name in names):
        raise PlanError(f"{operator}: features= needs one field name (a string) at least, got {names!r}")

    def read(record: Any, label: str) -> dict[str, Any]:
        x = {}
        for name in names:
            value = _field(record, name)
            if value is _ABSENT:
                raise ValueError(f"{label}: record {shorten(record)} has no feature field {name!r}")
            if not _number(value):
                raise ValueError(
                    f"{label}: feature {name!r} of record {shorten(record)} is {value!r}, not a number"
                )
            x[name] = value
        return x

    return read


def _function_reader(function: Callable[[Any], Mapping[str, Any]]) -> FeatureReader:
    def read(record: Any, label: str) -> dict[str, Any]:
        try:
            x = function(record)
        except Exception as error:
            error.add_note(f"actorflow: {label}: features() failed on record {shorten(record)}")
            raise
        if not isinstance(x, Mapping):
            raise ValueError(
                f"{label}: features() gave {type(x).__name__}, not a dict, for record {shorten(record)}"
            )
        return dict(x)

    return read


def target_reader(target: Target, operator: str) -> TargetReader:
    """The reader of ``target`` (a field name or a function); a record whose target is missing
    or None is a ValueError naming the operator and the record. :class:`PlanError` for anything
    else.

    >>> target_reader("label", "learn_predict")({"label": True}, "learn_predict[1/1]")
    True
    """
    if isinstance(target, str):
        name = target

        def field(record: Any) -> Any:
            value = _field(record, name)
            return None if value is _ABSENT else value

        get: Callable[[Any], Any] = field
        what = f"field {name!r}"
    elif callable(target):
        get, what = target, "target()"
    else:
        raise PlanError(
            f"{operator}: target= takes a field name or a function of the record, got {target!r}"
        )

    def read(record: Any, label: str) -> Any:
        try:
            y = get(record)
        except Exception as error:
            error.add_note(f"actorflow: {label}: target() failed on record {shorten(record)}")
            raise
        if y is None:
            raise ValueError(f"{label}: record {shorten(record)} has no target ({what} is missing or None)")
        return y

    return read
