"""Online machine learning on streams, with river models (the ``ml`` extra: ``pip install
'actorflow[ml]'``).

``stream.key_by(key).learn_predict(make_model, features=..., target=...)`` keeps one model per key
(``stream.learn_predict(...)``: one for the whole stream, in one instance); each record is
predicted or scored, then learnt from, and goes on as a :class:`Scored` record. The model lives in
keyed state: checkpointed, restored and rescaled with the flow. river is imported only when a flow
uses it. Layer: above the operators (it is a keyed process function), below the API.

>>> from actorflow import Flow
>>> from river import anomaly
>>> flow = Flow()
>>> amounts = [{"tx": n, "amount": 20.0 + n % 7} for n in range(300)] + [{"tx": 300, "amount": 900.0}]
>>> limits = {"amount": (0.0, 1_000.0)}
>>> detector = lambda: anomaly.HalfSpaceTrees(window_size=50, limits=limits, seed=7)
>>> scored = flow.from_iterable(amounts).learn_predict(detector, features=["amount"]).collect()
>>> flow.execute()
>>> [s.value["tx"] for s in scored.values if s.prediction > 0.9]  # scored before it is learnt
[300]
"""

from actorflow.ml.features import Features, Target
from actorflow.ml.learning import LearnPredict, learner
from actorflow.ml.models import ModelKind
from actorflow.ml.scored import Scored

__all__ = ["Features", "LearnPredict", "ModelKind", "Scored", "Target", "learner"]
