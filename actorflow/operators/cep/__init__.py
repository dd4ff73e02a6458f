"""Complex event processing: Flink's Pattern API, compiled to an automaton run per key.

:mod:`~actorflow.operators.cep.pattern` builds patterns, :mod:`~actorflow.operators.cep.nfa` runs
them, :mod:`~actorflow.operators.cep.operator` is the keyed operator; ``KeyedStream.pattern`` in
the API wires it into a flow.
"""

from actorflow.operators.cep.nfa import NFA, Match, NFAState
from actorflow.operators.cep.operator import PatternContext, PatternOperator, PatternProcessFunction
from actorflow.operators.cep.pattern import AfterMatchSkip, Contiguity, Pattern, Stage

__all__ = [
    "NFA",
    "AfterMatchSkip",
    "Contiguity",
    "Match",
    "NFAState",
    "Pattern",
    "PatternContext",
    "PatternOperator",
    "PatternProcessFunction",
    "Stage",
]
