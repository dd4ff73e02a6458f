"""Graph analysis over a stream of edges: connected components, degrees, top vertices by degree.

Each function takes a :class:`~actorflow.api.stream.DataStream` of edges (pairs ``(u, v)``, or
:class:`Edge` records, which may also remove an edge) and returns a stream of results, built from
keyed process functions and windows: the graph's state is keyed state, checkpointed, restored and
moved between state backends like any other. Layer: above the API (it builds on ``DataStream``),
below SQL; it never imports networkx, which the tests use as the oracle.

- :func:`connected_components`: a union-find forest in one instance; a :class:`ComponentChange`
  per edge (added edges only). :func:`component_labels` folds the changes into each vertex's
  component.
- :func:`degrees` and :func:`degree_distribution`: a :class:`Degree` per change of a vertex's
  degree, a :class:`DegreeCount` per change of the distribution; edges come and go.
- :func:`top_k_degrees`: the vertices of highest degree per tumbling event-time window.
- :func:`propagate_labels`: components by label propagation round an iteration, the graph keyed
  by vertex over any number of instances; a :class:`VertexLabel` per label a vertex takes, and
  :func:`final_labels` folds them.

>>> from actorflow import Flow
>>> flow = Flow()
>>> edges = flow.from_iterable([("ann", "bob"), ("cy", "dee"), ("bob", "cy"), ("eve", "fay")])
>>> changes = connected_components(edges).collect()
>>> flow.execute()
>>> component_labels(changes.values)
{'ann': 'ann', 'bob': 'ann', 'cy': 'ann', 'dee': 'ann', 'eve': 'eve', 'fay': 'eve'}
"""

from actorflow.graph.components import ComponentChange, component_labels, connected_components
from actorflow.graph.degrees import Degree, DegreeCount, degree_distribution, degrees
from actorflow.graph.edges import Edge
from actorflow.graph.forest import Forest
from actorflow.graph.looped import VertexLabel, final_labels, propagate_labels
from actorflow.graph.top_degrees import TopDegrees, top_k_degrees

__all__ = [
    "ComponentChange",
    "Degree",
    "DegreeCount",
    "Edge",
    "Forest",
    "TopDegrees",
    "VertexLabel",
    "component_labels",
    "connected_components",
    "degree_distribution",
    "degrees",
    "final_labels",
    "propagate_labels",
    "top_k_degrees",
]
