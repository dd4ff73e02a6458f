"""``actorflow plan --format text|dot|mermaid``: the physical plan for people and for diagram tools.

A chain (operators fused in one actor per instance) is drawn as a box around its operators, titled
with its parallelism; an edge between chains carries its partitioner (and the side output it reads,
or which input of a two-input operator it feeds). Inside a chain, operators are joined by plain
calls, drawn as dashed ("chained") edges.

>>> from actorflow import Flow
>>> flow = Flow("demo", parallelism=2)
>>> _ = flow.from_iterable([1, 2]).key_by(lambda n: n).map(str, name="show").print()
>>> print(render(flow.plan(), "mermaid", "demo"))
flowchart LR
  subgraph c0["source x1"]
    n0["source"]
  end
  subgraph c1["show -> print x2"]
    n1["show"]
    n2["print"]
    n1 -.-> n2
  end
  n0 -->|"hash"| n1
"""

from __future__ import annotations

from actorflow.plan.graph import Node
from actorflow.plan.physical import ChainPlan, InputPlan, PhysicalPlan

__all__ = ["FORMATS", "render"]

FORMATS = ("text", "dot", "mermaid")


def render(plan: PhysicalPlan, form: str, title: str) -> str:
    """The plan in ``form`` (one of :data:`FORMATS`); ``title`` names the graph (the flow's name)."""
    if form == "text":
        return plan.describe()
    if form == "dot":
        return _dot(plan, title)
    if form == "mermaid":
        return _mermaid(plan)
    raise ValueError(f"unknown plan format {form!r}; expected one of {', '.join(FORMATS)}")


def _ids(plan: PhysicalPlan) -> dict[Node, str]:
    nodes = [node for chain in plan.chains for node in chain.nodes]
    return {node: f"n{index}" for index, node in enumerate(nodes)}


def _edge_label(edge: InputPlan) -> str:
    label = repr(edge.partitioner)
    if edge.tag is not None:
        label += f" side {edge.tag.name}"
    if edge.input:
        label += f" (input {edge.input + 1})"
    return label


def _title(chain: ChainPlan) -> str:
    return f"{chain.name} x{chain.parallelism}"


def _dot_string(text: str) -> str:
    # A dot ID in double quotes: only the quote and the backslash need escaping.
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot(plan: PhysicalPlan, title: str) -> str:
    ids = _ids(plan)
    lines = [
        f"digraph {_dot_string(title)} {{",
        "  rankdir=LR;",
        '  node [shape=box, style=rounded, fontname="Helvetica"];',
        '  edge [fontname="Helvetica"];',
    ]
    for index, chain in enumerate(plan.chains):
        lines.append(f"  subgraph cluster_c{index} {{")
        lines.append(f"    label={_dot_string(_title(chain))};")
        for node in chain.nodes:
            lines.append(f"    {ids[node]} [label={_dot_string(f'{node.name} ({node.kind})')}];")
        for upstream, downstream in zip(chain.nodes, chain.nodes[1:], strict=False):
            lines.append(f'    {ids[upstream]} -> {ids[downstream]} [style=dashed, label="chained"];')
        lines.append("  }")
    for chain in plan.chains:
        for edge in chain.inputs:
            label = _dot_string(_edge_label(edge))
            lines.append(f"  {ids[edge.upstream.tail]} -> {ids[chain.head]} [label={label}];")
    lines.append("}")
    return "\n".join(lines)


def _mermaid_string(text: str) -> str:
    # In a quoted Mermaid label only the quote itself must become an entity.
    return '"' + text.replace('"', "#quot;").replace("\n", " ") + '"'


def _mermaid(plan: PhysicalPlan) -> str:
    ids = _ids(plan)
    lines = ["flowchart LR"]
    for index, chain in enumerate(plan.chains):
        lines.append(f"  subgraph c{index}[{_mermaid_string(_title(chain))}]")
        for node in chain.nodes:
            lines.append(f"    {ids[node]}[{_mermaid_string(node.name)}]")
        for upstream, downstream in zip(chain.nodes, chain.nodes[1:], strict=False):
            lines.append(f"    {ids[upstream]} -.-> {ids[downstream]}")
        lines.append("  end")
    for chain in plan.chains:
        for edge in chain.inputs:
            label = _mermaid_string(_edge_label(edge))
            lines.append(f"  {ids[edge.upstream.tail]} -->|{label}| {ids[chain.head]}")
    return "\n".join(lines)
