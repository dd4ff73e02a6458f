"""The builder: the one way the API layer adds a node to a flow's graph and reads a stream's edges.

A stream is the wiring of the node that will read it: its inputs, each an upstream node and the
partitioner between them (None: forward, or rebalance across different parallelism), and whether
that node may join its upstream's chain. Every method of the API that adds an operator (``map``,
``window(...).reduce``, ``connect(...).process``, a pattern's ``select``, a join's tagging maps,
a sink) goes through :func:`add`, or :func:`add_two_input`, :func:`add_side_output` and
:func:`add_source` for the other shapes. Each of them

- names the node: the name given, which must be new in the flow (else :class:`PlanError`), or the
  first free one of ``default_name`` (the kind when not given), ``default_name-2``,
  ``default_name-3``...;
- hands that final name to ``make``, the factory the plan calls for every instance of the operator
  (savepoints key an operator's state by this name, so the node and its operators share it);
- returns the stream of the new node's output.

>>> from actorflow import Flow
>>> from actorflow.operators.stateless import MapOperator
>>> flow = Flow()
>>> numbers = flow.from_iterable([1, 2, 3])
>>> def double(node_name):
...     return MapOperator(node_name, lambda n: n * 2, None)
>>> first = add(numbers, "map", None, double)
>>> second = add(numbers, "map", None, double)
>>> [node.name for node in flow.graph.nodes]
['source', 'map', 'map-2']
>>> (node, partitioner), = inputs_of(second)
>>> node.make_operator().name, partitioner
('map-2', None)

:class:`~actorflow.api.stream.DataStream` keeps its inputs private; code outside the class reads
them with :func:`inputs_of`, and derives a stream with other inputs with :func:`rewired`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from actorflow.errors import PlanError
from actorflow.operators.base import Operator
from actorflow.operators.side_outputs import OutputTag
from actorflow.operators.sources import Source
from actorflow.operators.stateless import PassThroughOperator
from actorflow.plan.graph import Edge, Node
from actorflow.plan.partitioners import Forward, Hash, Partitioner
from actorflow.time.watermarks import WatermarkStrategy

if TYPE_CHECKING:
    from actorflow.api.flow import Flow
    from actorflow.api.stream import DataStream

__all__ = [
    "Inputs",
    "MakeOperator",
    "add",
    "add_feedback",
    "add_side_output",
    "add_source",
    "add_two_input",
    "free_name",
    "inputs_of",
    "rewired",
]

#: A stream's inputs: the upstream nodes its next node reads, each with the partitioner between.
Inputs = tuple[tuple[Node, Partitioner | None], ...]

#: Makes one instance of a node's operator, given the node's final name.
MakeOperator = Callable[[str], Operator]


def inputs_of(stream: DataStream[Any]) -> Inputs:
    """The edges ``(upstream node, partitioner)`` the node added after ``stream`` will read.

    >>> from actorflow import Flow
    >>> keyed = Flow().from_iterable([1]).key_by(lambda n: n)
    >>> [(node.name, type(partitioner).__name__) for node, partitioner in inputs_of(keyed)]
    [('source', 'Hash')]
    """
    return stream._inputs


def rewired(stream: DataStream[Any], inputs: Inputs) -> DataStream[Any]:
    """A stream of ``stream``'s flow that reads ``inputs`` instead, chainable as ``stream`` is."""
    from actorflow.api.stream import DataStream  # stream.py builds on this module

    return DataStream(stream.flow, inputs, chainable=stream._chainable)


def add(
    stream: DataStream[Any],
    kind: str,
    name: str | None,
    make: MakeOperator,
    *,
    parallelism: int | None = None,
    max_parallelism: int | None = None,
    default_name: str | None = None,
) -> DataStream[Any]:
    """Add a one-input node of ``kind`` reading ``stream``; returns the stream of its output.

    ``name`` (None: the first free one of ``default_name``, else of ``kind``) must be new in the
    flow, else :class:`PlanError`. The node runs at ``parallelism`` (None: the plan decides) and
    at most ``max_parallelism``; it joins its upstream's chain unless ``stream`` asked for a new
    one (``start_new_chain``). ``make(final name)`` makes each instance's operator.
    """
    node = stream.flow.graph.add(
        kind,
        name,
        default_name=default_name,
        parallelism=parallelism,
        max_parallelism=max_parallelism,
        inputs=[Edge(upstream, partitioner) for upstream, partitioner in inputs_of(stream)],
        chainable=stream._chainable,
    )
    return _output(stream.flow, node, make)


def add_two_input(
    first: DataStream[Any],
    second: DataStream[Any],
    kind: str,
    name: str | None,
    make: MakeOperator,
    *,
    parallelism: int | None = None,
) -> DataStream[Any]:
    """Add a two-input node of ``kind`` reading ``first`` as input 0 and ``second`` as input 1;
    returns the stream of its output. Names as :func:`add`; raises :class:`PlanError` for streams
    of different flows."""
    if first.flow is not second.flow:
        raise PlanError("cannot connect streams of different flows")
    edges = [Edge(upstream, partitioner, None, 0) for upstream, partitioner in inputs_of(first)]
    edges += [Edge(upstream, partitioner, None, 1) for upstream, partitioner in inputs_of(second)]
    node = first.flow.graph.add(kind, name, parallelism=parallelism, inputs=edges)
    return _output(first.flow, node, make)


def add_feedback(head: Node, feedback: DataStream[Any], *, input: int = 0) -> None:
    """Close the loop of iteration ``head``: ``feedback``'s records go back into it (as its input
    ``input``), forward or by the feedback's ``key_by``.

    Raises :class:`PlanError` when the loop is closed already, when ``feedback`` belongs to another
    flow, does not derive from the iteration's stream, or is partitioned otherwise.
    """
    graph = feedback.flow.graph
    if head.id >= len(graph.nodes) or graph.nodes[head.id] is not head:
        raise PlanError(f"close_with(): the feedback belongs to another flow than iteration {head.name!r}")
    if any(edge.feedback for edge in head.inputs):
        raise PlanError(f"iteration {head.name!r} is closed already: close_with() goes once")
    body = graph.downstream_of(head)
    edges = []
    for upstream, partitioner in inputs_of(feedback):
        if upstream not in body:
            raise PlanError(
                f"close_with(): the feedback of iteration {head.name!r} must be built on the stream "
                f"iterate() returned, and {upstream.name!r} does not derive from it"
            )
        if partitioner is not None and not isinstance(partitioner, Forward | Hash):
            raise PlanError(
                f"close_with(): the feedback of iteration {head.name!r} goes back forward or by "
                f"key_by, not by {partitioner!r}"
            )
        edges.append(Edge(upstream, partitioner, None, input, feedback=True))
    head.inputs.extend(edges)


def add_side_output(stream: DataStream[Any], tag: OutputTag[Any], name: str | None) -> DataStream[Any]:
    """Add a node that passes on the values ``stream``'s operator sends to side output ``tag``;
    returns its stream. It runs with that operator's parallelism and is named
    ``<operator>.<tag>`` unless ``name`` is given.

    Raises :class:`PlanError` unless ``stream`` is the output of one operator (not a union, a
    source or a repartitioned stream).
    """
    inputs = inputs_of(stream)
    if len(inputs) != 1 or inputs[0][1] is not None or inputs[0][0].kind == "source":
        raise PlanError("get_side_output() needs the stream of one operator, not a union or source")
    upstream = inputs[0][0]
    node = stream.flow.graph.add(
        "side",
        name,
        default_name=f"{upstream.name}.{tag.name}",
        parallelism=upstream.parallelism,
        max_parallelism=upstream.max_parallelism,
        inputs=[Edge(upstream, None, tag)],
    )
    return _output(stream.flow, node, PassThroughOperator)


def add_source(
    flow: Flow,
    source: Source,
    name: str | None,
    *,
    watermarks: WatermarkStrategy | None = None,
    parallelism: int | None = None,
) -> DataStream[Any]:
    """Add a node reading ``source`` (stamped by ``watermarks`` if given); returns its stream.
    Names as :func:`add`, ``"source"`` by default."""
    node = flow.graph.add(
        "source",
        name,
        source=source,
        watermarks=watermarks,
        parallelism=parallelism,
        max_parallelism=source.max_parallelism,
    )
    return _stream_of(flow, node)


def free_name(flow: Flow, base: str) -> str:
    """``base``, or ``base-2``, ``base-3``... whichever no node of ``flow`` has yet: the name
    :func:`add` would give a node with ``default_name=base`` now.

    >>> from actorflow import Flow
    >>> flow = Flow()
    >>> _ = flow.from_iterable([1]).map(str, name="join")
    >>> free_name(flow, "join"), free_name(flow, "interval_join")
    ('join-2', 'interval_join')
    """
    return flow.graph.free_name(base)


def _output(flow: Flow, node: Node, make: MakeOperator) -> DataStream[Any]:
    # The node has its final name now: every operator it makes carries that name.
    node.make_operator = partial(make, node.name)
    return _stream_of(flow, node)


def _stream_of(flow: Flow, node: Node) -> DataStream[Any]:
    """The stream of ``node``'s main output, read forward by default."""
    from actorflow.api.stream import DataStream  # stream.py builds on this module

    return DataStream(flow, ((node, None),))
