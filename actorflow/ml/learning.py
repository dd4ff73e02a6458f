"""The learn-and-predict function: one river model per key, in keyed state, test then train.

Each record is read into features (and a target, for a supervised model); the model of the
record's key (made by the factory for the key's first record) predicts or scores it, *then* learns
from it, as river's progressive validation does: every prediction is made on a record the model
has not seen. The record goes on as :class:`~actorflow.ml.scored.Scored`.

The model is the key's value state ``"model"``: checkpointed, restored and moved to another
instance on a rescale like any keyed state (river models pickle), on the heap or in RocksDB. A
record whose features or target cannot be read raises ValueError before the model is touched, so
with ``dead_letters=`` it goes to the dead letters and the model goes on as if it had not come.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from actorflow.ml.features import (
    FeatureReader,
    Features,
    Target,
    TargetReader,
    feature_reader,
    target_reader,
)
from actorflow.ml.models import ModelKind, check_model
from actorflow.ml.scored import Scored
from actorflow.operators.base import Collector
from actorflow.operators.process import Context, KeyedProcessFunction, RuntimeContext
from actorflow.state.descriptors import ValueStateDescriptor

__all__ = ["LearnPredict", "learner"]

T = TypeVar("T")

#: The keyed state that holds each key's model.
MODEL = "model"


class LearnPredict(KeyedProcessFunction[T, Scored[T]], Generic[T]):
    """Learns and predicts with one model per key; build it with :func:`learner`, which checks
    the model's kind first."""

    def __init__(
        self,
        make_model: Callable[[], Any],
        kind: ModelKind,
        features: FeatureReader,
        target: TargetReader | None,
    ) -> None:
        self.make_model = make_model
        self.kind = kind
        self.features = features
        self.target = target
        self.label = "learn_predict"

    def open(self, ctx: RuntimeContext) -> None:
        self.label = ctx.operator.label
        self.model = ctx.get_state(ValueStateDescriptor[Any](MODEL))

    def process_element(self, value: T, ctx: Context, out: Collector) -> None:
        x = self.features(value, self.label)
        y = self.target(value, self.label) if self.target is not None else None  # before any change
        model = self.model.value()
        if model is None:
            model = self.make_model()
        if self.kind == "anomaly":
            prediction = model.score_one(x)
            model.learn_one(x)
        elif self.kind == "supervised":
            prediction = model.predict_one(x)
            model.learn_one(x, y)
        else:
            prediction = model.predict_one(x)
            model.learn_one(x)
        # Learning changed the model in place; the update says so to any backend.
        self.model.update(model)
        out.collect(Scored(value, prediction))


def learner(
    make_model: Callable[[], Any],
    *,
    features: Features,
    target: Target | None = None,
    operator: str = "learn_predict",
) -> LearnPredict[Any]:
    """The function ``learn_predict`` runs: checks everything it can before the flow runs.

    ``make_model()`` is called once here, to see what kind of model it makes, then once per key
    when the key's first record comes. Raises :class:`~actorflow.errors.PlanError` naming
    ``operator`` when river is not installed, for a model of no known kind, a supervised model
    without ``target`` (or another with one), and ``features`` or ``target`` of the wrong shape.

    >>> from river import anomaly
    >>> function = learner(lambda: anomaly.HalfSpaceTrees(seed=1), features=["amount"])
    >>> function.kind
    'anomaly'
    >>> learner(lambda: anomaly.HalfSpaceTrees(), features=["amount"], target="label", operator="lp")
    Traceback (most recent call last):
    ...
    actorflow.errors.PlanError: lp: HalfSpaceTrees learns without a target (anomaly): drop target=
    """
    read_features = feature_reader(features, operator)
    read_target = None if target is None else target_reader(target, operator)
    kind = check_model(make_model, has_target=target is not None, operator=operator)
    return LearnPredict(make_model, kind, read_features, read_target)
