"""actorflow: Apache Flink's model of stateful stream processing, on asyncio.

Layers, bottom up; a module imports only from its own layer and the ones below it (checked by
``tests/test_layers.py``)::

    actorflow.cli          command line, the daemon                (top)
    actorflow.web          HTTP: health, metrics, queryable state, dashboard
    actorflow.api          Flow, DataStream, KeyedStream, windowed/connected/joined/iterative
                           streams
    actorflow.plan         logical graph -> chains, partitioners, actors
    actorflow.operators    map/filter/flat_map, process functions, windows, joins, async I/O,
                           sources, sinks, chains
    actorflow.checkpoint   checkpoint storage, coordinator, restart strategies
    actorflow.state        key groups, keyed state
    actorflow.time         clocks, watermark strategies, timers
    actorflow.runtime      actors, mailboxes, messages, job supervision
    actorflow.errors       the exception hierarchy                  (bottom)

This module only re-exports the public names.
"""

from actorflow.api import flow as _flow_module
from actorflow.api.connected import BroadcastConnectedStream, BroadcastStream, ConnectedStreams
from actorflow.api.flow import Flow
from actorflow.api.iteration import ConnectedIterativeStreams, IterativeStream
from actorflow.api.joins import CoGroupedStreams, IntervalJoin, IntervalJoined, JoinedStreams
from actorflow.api.patterns import PatternStream
from actorflow.api.stream import DataStream, KeyedStream
from actorflow.api.windowed import WindowedStream
from actorflow.errors import (
    ActorflowError,
    BrokenResourceError,
    CheckpointError,
    ClosedResourceError,
    CorruptCheckpointError,
    InputError,
    PlanError,
    SqlError,
    StateError,
    WouldBlock,
)
from actorflow.operators.async_io import FailedRequest
from actorflow.operators.base import Collector
from actorflow.operators.broadcast import (
    BroadcastContext,
    BroadcastProcessFunction,
    KeyedBroadcastProcessFunction,
)
from actorflow.operators.cep import (
    AfterMatchSkip,
    Pattern,
    PatternContext,
    PatternProcessFunction,
)
from actorflow.operators.co_process import CoProcessFunction, KeyedCoProcessFunction
from actorflow.operators.failures import FailedRecord
from actorflow.operators.joins import (
    CoGroupFunction,
    FlatJoinFunction,
    JoinFunction,
    ProcessJoinContext,
    ProcessJoinFunction,
)
from actorflow.operators.process import (
    Context,
    KeyedProcessFunction,
    ProcessFunction,
    RuntimeContext,
    TimeDomain,
    TimerService,
)
from actorflow.operators.side_outputs import OutputTag
from actorflow.operators.sinks import CallbackSink, CollectSink, JsonLinesSink, PrintSink, Sink
from actorflow.operators.sources import (
    DeadLetter,
    IterableSource,
    JsonLinesSource,
    PushSource,
    Source,
)
from actorflow.operators.windows import (
    ContinuousEventTimeTrigger,
    CountTrigger,
    CumulativeEventTimeWindows,
    EventTimeSessionWindows,
    EventTimeTrigger,
    GlobalWindows,
    MergingWindowAssigner,
    OnMergeContext,
    ProcessingTimeSessionWindows,
    ProcessingTimeTrigger,
    ProcessWindowFunction,
    PurgingTrigger,
    SlidingEventTimeWindows,
    SlidingProcessingTimeWindows,
    TimeWindow,
    Trigger,
    TriggerContext,
    TriggerResult,
    TumblingEventTimeWindows,
    TumblingProcessingTimeWindows,
    WindowAssigner,
    WindowContext,
)
from actorflow.runtime.messages import MAX_WATERMARK, MIN_WATERMARK
from actorflow.state.descriptors import (
    AggregateFunction,
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateTtl,
    ValueStateDescriptor,
)
from actorflow.state.keyed import AggregatingState, ListState, MapState, ReducingState, ValueState
from actorflow.time.clock import Clock, ManualClock, SystemClock
from actorflow.time.watermarks import WatermarkStrategy

__version__ = "0.1.0"

__all__ = [
    "ActorflowError",
    "AfterMatchSkip",
    "AggregateFunction",
    "AggregatingState",
    "AggregatingStateDescriptor",
    "BroadcastConnectedStream",
    "BroadcastContext",
    "BroadcastProcessFunction",
    "BroadcastStream",
    "BrokenResourceError",
    "CallbackSink",
    "CheckpointError",
    "Clock",
    "ClosedResourceError",
    "CoGroupFunction",
    "CoGroupedStreams",
    "CoProcessFunction",
    "CollectSink",
    "Collector",
    "ConnectedIterativeStreams",
    "ConnectedStreams",
    "Context",
    "ContinuousEventTimeTrigger",
    "CorruptCheckpointError",
    "CountTrigger",
    "DataStream",
    "DeadLetter",
    "CumulativeEventTimeWindows",
    "EventTimeSessionWindows",
    "EventTimeTrigger",
    "FailedRecord",
    "FailedRequest",
    "FlatJoinFunction",
    "Flow",
    "GlobalWindows",
    "InputError",
    "IntervalJoin",
    "IntervalJoined",
    "IterableSource",
    "IterativeStream",
    "JoinFunction",
    "JoinedStreams",
    "JsonLinesSink",
    "JsonLinesSource",
    "KeyedBroadcastProcessFunction",
    "KeyedCoProcessFunction",
    "KeyedProcessFunction",
    "KeyedStream",
    "ListState",
    "ListStateDescriptor",
    "MAX_WATERMARK",
    "MIN_WATERMARK",
    "ManualClock",
    "MapState",
    "MapStateDescriptor",
    "MergingWindowAssigner",
    "OnMergeContext",
    "OutputTag",
    "Pattern",
    "PatternContext",
    "PatternProcessFunction",
    "PatternStream",
    "PlanError",
    "PrintSink",
    "ProcessFunction",
    "ProcessJoinContext",
    "ProcessJoinFunction",
    "ProcessWindowFunction",
    "ProcessingTimeSessionWindows",
    "ProcessingTimeTrigger",
    "PurgingTrigger",
    "PushSource",
    "ReducingState",
    "ReducingStateDescriptor",
    "RuntimeContext",
    "Sink",
    "SlidingEventTimeWindows",
    "SlidingProcessingTimeWindows",
    "Source",
    "SqlError",
    "StateError",
    "StateTtl",
    "SystemClock",
    "TimeDomain",
    "TimeWindow",
    "TimerService",
    "Trigger",
    "TriggerContext",
    "TriggerResult",
    "TumblingEventTimeWindows",
    "TumblingProcessingTimeWindows",
    "ValueState",
    "ValueStateDescriptor",
    "WatermarkStrategy",
    "WindowAssigner",
    "WindowContext",
    "WindowedStream",
    "WouldBlock",
    "__version__",
]


def _sql_session(flow: Flow) -> object:
    """``flow.sql()``'s side of the flow: the sql layer, loaded on first use (it needs sqlglot)."""
    try:
        from actorflow.sql.session import session_of
    except ModuleNotFoundError as error:
        if error.name != "sqlglot":
            raise
        raise PlanError("flow.sql() needs sqlglot: pip install 'actorflow[sql]'") from None
    return session_of(flow)


_flow_module.EXTENSIONS["sql"] = _sql_session
