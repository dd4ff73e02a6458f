"""The record ``learn_predict`` emits: the input record, unchanged, with the model's prediction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["Scored"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Scored(Generic[T]):
    """A record and what the model said about it *before* learning from it (test then train).

    ``prediction`` is what the model's kind gives: an anomaly detector's ``score_one`` (a float,
    higher is more anomalous for river's detectors), a supervised model's ``predict_one`` (a class
    or a number; river's models may give None before they have seen any target), a clusterer's
    ``predict_one`` (a cluster number).

    A record type rather than a field added to the record: the record may be of any type (a dict,
    a dataclass, a tuple), and it goes on untouched, so what follows can read both the record and
    the prediction without a copy. ``orjson`` (so ``sink_to_json_lines``) writes it as
    ``{"value": ..., "prediction": ...}``.

    >>> scored = Scored({"card": "c1", "amount": 12.5}, 0.93)
    >>> scored.value["card"], scored.prediction
    ('c1', 0.93)
    """

    value: T
    prediction: Any
