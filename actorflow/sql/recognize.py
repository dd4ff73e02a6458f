"""``MATCH_RECOGNIZE`` planned onto the Pattern API's operator (:mod:`actorflow.operators.cep`).

Each pattern variable is a stage whose condition is its ``DEFINE`` on the current row; SQL's row
pattern is over consecutive rows (``next``, loops ``consecutive``). ``MEASURES`` read a variable's
rows: ``V.col`` (its last row), ``FIRST``, ``LAST`` and aggregates.

>>> from actorflow import Flow
>>> flow = Flow("doc")
>>> _ = flow.sql("CREATE TABLE t (k STRING, v INT, ts BIGINT, rt AS TO_TIMESTAMP_LTZ(ts, 3), "
...              "WATERMARK FOR rt AS rt) WITH ('connector' = 'jsonlines', 'path' = 't.jsonl')")
>>> stream = flow.sql_query("SELECT * FROM t MATCH_RECOGNIZE (PARTITION BY k ORDER BY rt "
...     "MEASURES A.v AS a, B.v AS b PATTERN (A B) DEFINE B AS B.v > 10)")
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from actorflow.errors import SqlError
from actorflow.sql.accessors import error_at, from_clause, interval_millis
from actorflow.sql.expressions import compile_expression, compile_projection
from actorflow.sql.relation import Relation, getter, named_items, no_key, tuple_getter
from actorflow.sql.types import SqlType

if TYPE_CHECKING:
    from actorflow.sql.planner import Planner

__all__ = ["plan_match_recognize"]


def plan_match_recognize(planner: Planner, select: exp.Select) -> Relation:
    """``FROM t MATCH_RECOGNIZE (PARTITION BY ... ORDER BY rowtime MEASURES ... ONE ROW PER
    MATCH [AFTER MATCH SKIP ...] PATTERN (...) [WITHIN INTERVAL ...] DEFINE ...)`` on the
    pattern operator of the Pattern API: each variable a stage (its DEFINE condition on the
    current row), consecutive rows (SQL's row pattern: ``next``, loops ``consecutive``)."""
    from actorflow.api.patterns import PatternStream
    from actorflow.operators.cep import AfterMatchSkip, Pattern
    from actorflow.sql.accessors import match_pattern

    match = select.args["match"]
    for unsupported in ("joins", "group", "where", "having", "distinct", "order", "limit", "windows"):
        if select.args.get(unsupported):
            raise error_at(
                select.args[unsupported],
                f"{unsupported.upper()} with MATCH_RECOGNIZE is not supported yet",
            )
    source = from_clause(select)
    assert source is not None
    relation = planner.rows(planner.source(source.this)[0])
    order = match.args.get("order")
    ordered = [o for o in (order.expressions if order is not None else [])]
    if (
        relation.rowtime is None
        or len(ordered) != 1
        or ordered[0].args.get("desc")
        or not isinstance(ordered[0].this, exp.Column)
        or ordered[0].this.name != relation.rowtime
    ):
        raise error_at(
            match,
            f"MATCH_RECOGNIZE needs ORDER BY the time attribute ({relation.rowtime or 'none'}) ascending",
        )
    rows = match.args.get("rows")
    if rows is not None and "ALL" in rows.sql().upper():
        raise error_at(match, "ALL ROWS PER MATCH is not supported yet: ONE ROW PER MATCH")
    keys = [column.name for column in match.args.get("partition_by") or []]
    for key in keys:
        if key not in relation.columns:
            raise error_at(match, f"PARTITION BY {key!r}: no such column")
    defines: dict[str, Callable[[Any], Any]] = {}
    for define in match.args.get("define") or []:
        variable = define.alias
        condition = _unqualify(define.this, variable)
        defines[variable] = compile_expression(
            condition, relation.columns, functions=planner.catalog.functions
        ).function
    terms = match_pattern(match)
    pattern: Any = None
    seen: set[str] = set()
    for term in terms:
        if term.group is not None or term.variable is None:
            raise error_at(match, "groups in a row pattern are not supported yet")
        if term.variable in seen:
            raise error_at(
                match, f"variable {term.variable} appears twice in the pattern: not supported yet"
            )
        seen.add(term.variable)
        test = defines.get(term.variable)
        pattern = Pattern.begin(term.variable) if pattern is None else pattern.next(term.variable)
        pattern = pattern.where(test if test is not None else _always)
        low, high = term.min, term.max
        looping = high is None or high > 1
        if looping:
            pattern = (
                pattern.times(max(low, 1), high) if high is not None else pattern.times_or_more(max(low, 1))
            )
            pattern = pattern.consecutive()
            if term.greedy:
                pattern = pattern.greedy()
        if low == 0:
            pattern = pattern.optional()
    if pattern is None:
        raise error_at(match, "an empty row pattern")
    last = terms[-1]
    if last.greedy and (last.max is None or last.max > last.min):
        raise error_at(
            match,
            f"a greedy quantifier cannot end the pattern ({last.variable}): make it reluctant "
            f"({last.variable}+?) or add a variable after it, as Flink requires",
        )
    within = match.args.get("within")
    if within is not None:
        pattern = pattern.within(interval_millis(within))
    skip = _skip_strategy(match, AfterMatchSkip)
    atoms: list[tuple[str, str, str]] = []  # (kind, variable, column)
    measures: list[exp.Expression] = []
    for measure in match.args.get("measures") or []:
        inner = measure.this if isinstance(measure, exp.MatchRecognizeMeasure) else measure
        measures.append(_replace_atoms(inner.copy(), atoms, relation.columns))
    columns: dict[str, SqlType] = {key: relation.columns[key] for key in keys}
    for index, (kind, _, column) in enumerate(atoms):
        columns[f"$m{index}"] = _atom_type(kind, relation.columns.get(column))
    named = [(key, exp.column(key)) for key in keys] + named_items(measures, columns)
    project, out_columns = compile_projection(named, columns, functions=planner.catalog.functions)
    key_getter = getter(keys[0]) if len(keys) == 1 else (tuple_getter(keys) if keys else no_key)

    def select_row(found: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        first = next(iter(found.values()))[0]
        row = {key: first[key] for key in keys}
        for index, (kind, variable, column) in enumerate(atoms):
            row[f"$m{index}"] = _atom_value(kind, found.get(variable, []), column)
        return project(row)

    keyed = relation.stream.key_by(key_getter)
    matches = PatternStream(keyed, pattern, skip, None, parallelism=None if keys else 1)
    stream = matches.select(select_row, name=planner.node_name("match-recognize"))
    return planner.project(select.expressions, Relation(stream, out_columns))


def _always(row: Any) -> bool:
    return True


def _unqualify(node: exp.Expression, variable: str) -> exp.Expression:
    """A DEFINE condition of ``variable`` over the current row (``A.amount`` -> ``amount``)."""

    def swap(found: exp.Expression) -> exp.Expression:
        if isinstance(found, exp.Column) and found.table:
            if found.table != variable:
                raise error_at(
                    found,
                    f"DEFINE {variable}: {found.sql()} refers to another variable (not supported yet)",
                )
            return exp.column(found.name)
        return found

    return node.copy().transform(swap)


_ATOMS = {"FIRST": "first", "LAST": "last"}
_AGGREGATES: dict[type[exp.Expression], str] = {
    exp.Count: "count", exp.Sum: "sum", exp.Min: "min", exp.Max: "max", exp.Avg: "avg"
}  # fmt: skip


def _replace_atoms(
    node: exp.Expression, atoms: list[tuple[str, str, str]], columns: dict[str, SqlType]
) -> exp.Expression:
    """A MEASURES expression with each ``V.col``, ``FIRST(V.col)``, ``LAST(V.col)`` and aggregate
    of ``V.col`` replaced by a column ``$m<i>`` (``atoms[i]``: kind, variable, column)."""

    def atom(kind: str, column: exp.Expression, where: exp.Expression) -> exp.Expression:
        if not isinstance(column, exp.Column) or not column.table:
            raise error_at(where, "a measure reads a variable's column: V.col")
        entry = (kind, column.table, column.name)
        if column.name not in columns:
            raise error_at(column, f"unknown column {column.name!r}")
        if entry not in atoms:
            atoms.append(entry)
        return exp.column(f"$m{atoms.index(entry)}")

    def swap(found: exp.Expression) -> exp.Expression:
        if isinstance(found, exp.Anonymous) and found.name.upper() in _ATOMS and found.expressions:
            return atom(_ATOMS[found.name.upper()], found.expressions[0], found)
        kind = _AGGREGATES.get(type(found))
        if kind is not None:
            return atom(kind, found.this, found)
        if isinstance(found, exp.Column) and found.table:
            return atom("last", found, found)
        return found

    return node.transform(swap)


def _atom_type(kind: str, column: SqlType | None) -> SqlType:
    from actorflow.sql.types import BIGINT, DOUBLE

    if kind == "count":
        return BIGINT.not_null()
    if column is None:
        raise SqlError("a measure's column is unknown")
    if kind == "avg":
        return column.nullable_() if column.is_integer else DOUBLE.nullable_()
    return column.nullable_()


def _atom_value(kind: str, rows: list[dict[str, Any]], column: str) -> Any:
    values = [row.get(column) for row in rows]
    present = [value for value in values if value is not None]
    if kind == "first":
        return values[0] if values else None
    if kind == "last":
        return values[-1] if values else None
    if kind == "count":
        return len(present)
    if not present:
        return None
    if kind == "sum":
        return sum(present)
    if kind == "min":
        return min(present)
    if kind == "max":
        return max(present)
    average = sum(present) / len(present)
    return int(average) if all(isinstance(v, int) for v in present) else average


def _skip_strategy(match: exp.Expression, skips: Any) -> Any:
    after = match.args.get("after")
    text = " ".join(after.sql().upper().split()) if after is not None else "AFTER MATCH SKIP PAST LAST ROW"
    if text.endswith("PAST LAST ROW"):
        return skips.skip_past_last_event()
    if text.endswith("TO NEXT ROW"):
        return skips.skip_to_next()
    for prefix, make in (
        ("AFTER MATCH SKIP TO FIRST ", skips.skip_to_first),
        ("AFTER MATCH SKIP TO LAST ", skips.skip_to_last),
    ):
        if text.startswith(prefix):
            return make(text.removeprefix(prefix).strip())
    raise error_at(after or match, f"{text} is not supported")
