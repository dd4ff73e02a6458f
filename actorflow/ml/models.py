"""What kind of river model a factory makes, checked once when the flow is built.

river is imported here and only here, when a flow asks for it (``learn_predict``): ``import
actorflow`` and ``import actorflow.ml`` never need it.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any, Literal

from actorflow.errors import PlanError

__all__ = ["ModelKind", "check_model", "kind_of", "require_river"]

#: How a model learns and predicts, record by record (test then train):
#:
#: - ``"supervised"``: ``predict_one(x)``, then ``learn_one(x, y)`` (a target is needed);
#: - ``"anomaly"``: ``score_one(x)``, then ``learn_one(x)``;
#: - ``"unsupervised"``: ``predict_one(x)``, then ``learn_one(x)`` (clustering).
ModelKind = Literal["supervised", "anomaly", "unsupervised"]

INSTALL = "pip install 'actorflow[ml]'"


def require_river(operator: str) -> ModuleType:
    """The ``river`` module; :class:`PlanError` (one line) if it is not installed.

    >>> require_river("learn_predict").__name__
    'river'
    """
    try:
        return importlib.import_module("river")
    except ImportError:
        raise PlanError(f"{operator} needs river: {INSTALL}") from None


def _final_step(model: Any) -> Any:
    """The step a pipeline predicts with (a pipeline has every method; its last step tells)."""
    pipeline = importlib.import_module("river.compose").Pipeline
    while isinstance(model, pipeline) and model.steps:
        model = list(model.steps.values())[-1]
    return model


def _learns_with_a_target(model: Any) -> bool:
    """river says it with ``_supervised``; another object, with a ``learn_one`` that needs two
    arguments."""
    supervised = getattr(model, "_supervised", None)
    if isinstance(supervised, bool):
        return supervised
    try:
        parameters = inspect.signature(model.learn_one).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - a builtin without a signature
        return True
    required = [
        p
        for p in parameters
        if p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    return len(required) >= 2


def kind_of(model: Any) -> ModelKind | None:
    """How ``model`` learns and predicts (see :data:`ModelKind`), None if in no way we know.

    Decided by what the model has: ``learn_one``, and ``score_one`` (an anomaly detector) or
    ``predict_one`` (supervised if it learns with a target, else unsupervised); for a river
    pipeline, by its last step. Needs river (:func:`require_river` first).

    >>> from river import anomaly, cluster, linear_model, preprocessing
    >>> kind_of(preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees())
    'anomaly'
    >>> kind_of(linear_model.LogisticRegression()), kind_of(cluster.KMeans())
    ('supervised', 'unsupervised')
    >>> kind_of(preprocessing.StandardScaler()) is None  # a transformer predicts nothing
    True
    """
    if not callable(getattr(model, "learn_one", None)):
        return None
    final = _final_step(model)
    if callable(getattr(final, "score_one", None)):
        return "anomaly"
    if callable(getattr(final, "predict_one", None)):
        return "supervised" if _learns_with_a_target(model) else "unsupervised"
    return None


def check_model(make_model: Callable[[], Any], *, has_target: bool, operator: str) -> ModelKind:
    """Make one model with ``make_model`` and say how it learns; raises :class:`PlanError`
    (naming ``operator``) when river is missing, when ``make_model`` is a model rather than a
    function that makes one, when the model fits no :data:`ModelKind`, and when a supervised model
    has no target or another kind has one."""
    require_river(operator)
    is_model = not isinstance(make_model, type) and callable(getattr(make_model, "learn_one", None))
    if is_model or not callable(make_model):
        raise PlanError(
            f"{operator} takes a function that makes a model (lambda: model), one per key, "
            f"got {type(make_model).__name__}"
        )
    model = make_model()
    kind = kind_of(model)
    name = type(model).__name__
    if kind is None:
        raise PlanError(
            f"{operator}: {name} is not a model it can run: it needs learn_one and either "
            "score_one (anomaly detection) or predict_one (supervised, clustering)"
        )
    if kind == "supervised" and not has_target:
        raise PlanError(f"{operator}: {name} learns from a target: give target= (a field or a function)")
    if kind != "supervised" and has_target:
        raise PlanError(f"{operator}: {name} learns without a target ({kind}): drop target=")
    return kind
