"""Keyed windows: assigners (which windows), triggers (when), window functions (what is emitted).

See :mod:`actorflow.operators.windows.operator` for the semantics (Flink's).
"""

from actorflow.operators.windows.assigners import (
    GLOBAL_WINDOW,
    CumulativeEventTimeWindows,
    EventTimeSessionWindows,
    GlobalWindows,
    MergingWindowAssigner,
    ProcessingTimeSessionWindows,
    SlidingEventTimeWindows,
    SlidingProcessingTimeWindows,
    TimeWindow,
    TumblingEventTimeWindows,
    TumblingProcessingTimeWindows,
    WindowAssigner,
)
from actorflow.operators.windows.functions import ProcessWindowFunction, WindowContext
from actorflow.operators.windows.operator import WindowOperator
from actorflow.operators.windows.triggers import (
    ContinuousEventTimeTrigger,
    CountTrigger,
    EventTimeTrigger,
    NeverTrigger,
    OnMergeContext,
    ProcessingTimeTrigger,
    PurgingTrigger,
    Trigger,
    TriggerContext,
    TriggerResult,
)

__all__ = [
    "GLOBAL_WINDOW",
    "ContinuousEventTimeTrigger",
    "CountTrigger",
    "CumulativeEventTimeWindows",
    "EventTimeSessionWindows",
    "EventTimeTrigger",
    "GlobalWindows",
    "MergingWindowAssigner",
    "NeverTrigger",
    "OnMergeContext",
    "ProcessWindowFunction",
    "ProcessingTimeSessionWindows",
    "ProcessingTimeTrigger",
    "PurgingTrigger",
    "SlidingEventTimeWindows",
    "SlidingProcessingTimeWindows",
    "TimeWindow",
    "TumblingEventTimeWindows",
    "TumblingProcessingTimeWindows",
    "Trigger",
    "TriggerContext",
    "TriggerResult",
    "WindowAssigner",
    "WindowContext",
    "WindowOperator",
]
