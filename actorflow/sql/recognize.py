"""``MATCH_RECOGNIZE`` planned onto the Pattern API's operator (:mod:`actorflow.operators.cep`).

Each pattern variable is a stage whose condition is its ``DEFINE``; SQL's row pattern is over
consecutive rows (``next``, loops ``consecutive``). A group is spliced in, ``(A B){2}`` written
out twice; a variable that appears again is a stage of its own (``A``, then ``A#2``) whose rows
count as the variable's. A ``DEFINE`` that reads other rows (``A.price`` in ``B``'s condition,
``PREV``, ``FIRST``, ``LAST``, aggregates) is an iterative condition: it is compiled once into a
function of the row and the partial match (``ctx.events(stage)``). ``MEASURES`` read the match's
rows the same way: over the whole match (``ONE ROW PER MATCH``), or over the rows up to each
row (``ALL ROWS PER MATCH``, running semantics).

>>> from actorflow import Flow
>>> flow = Flow("doc")
>>> _ = flow.sql("CREATE TABLE t (k STRING, v INT, ts BIGINT, rt AS TO_TIMESTAMP_LTZ(ts, 3), "
...              "WATERMARK FOR rt AS rt) WITH ('connector' = 'jsonlines', 'path' = 't.jsonl')")
>>> stream = flow.sql_query("SELECT * FROM t MATCH_RECOGNIZE (PARTITION BY k ORDER BY rt "
...     "MEASURES A.v AS a, B.v AS b PATTERN (A B) DEFINE B AS B.v > A.v)")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from actorflow.operators.cep.pattern import condition_arity
from actorflow.sql.accessors import PatternTerm, error_at, from_clause, interval_millis
from actorflow.sql.expressions import compile_expression, compile_projection
from actorflow.sql.relation import Relation, getter, named_items, no_key, substitute, tolerant, tuple_getter
from actorflow.sql.types import BIGINT, DOUBLE, STRING, SqlType

if TYPE_CHECKING:
    from actorflow.sql.planner import Planner

__all__ = ["plan_match_recognize"]

#: A pattern written out may have at most this many stages (``(A B){1000}`` is refused).
MAX_STAGES = 256


@dataclass(frozen=True)
class _Step:
    """One stage of the pattern as planned: its unique stage name, the variable it is for, and
    its quantifier."""

    stage: str
    variable: str
    min: int
    max: int | None
    greedy: bool


@dataclass(frozen=True)
class _Atom:
    """A read of the match's rows: ``kind`` (``first``, ``last``, ``prev``, an aggregate,
    ``rows`` for ``COUNT(V.*)``, ``classifier``) over ``variable``'s rows (None: every row of
    the match), of ``column``, ``offset`` rows from the end (``last``, ``prev``) or the start
    (``first``)."""

    kind: str
    variable: str | None
    column: str | None
    offset: int = 0


def plan_match_recognize(planner: Planner, select: exp.Select) -> Relation:
    """``FROM t MATCH_RECOGNIZE (PARTITION BY ... ORDER BY rowtime MEASURES ... ONE ROW PER MATCH |
    ALL ROWS PER MATCH [AFTER MATCH SKIP ...] PATTERN (...) [WITHIN INTERVAL ...] DEFINE ...)`` on
    the pattern operator of the Pattern API (see the module docstring). Raises :class:`SqlError`
    for what it cannot plan.

    >>> from actorflow import Flow
    >>> flow = Flow("doc")
    >>> _ = flow.sql("CREATE TABLE t (k STRING, v INT, ts BIGINT, rt AS TO_TIMESTAMP_LTZ(ts, 3), "
    ...              "WATERMARK FOR rt AS rt) WITH ('connector' = 'jsonlines', 'path' = 't.jsonl')")
    >>> stream = flow.sql_query("SELECT * FROM t MATCH_RECOGNIZE (PARTITION BY k ORDER BY rt "
    ...     "MEASURES AVG(A.v) AS average ALL ROWS PER MATCH PATTERN (A+? B) "
    ...     "DEFINE A AS AVG(A.v) < 10, B AS B.v > LAST(A.v))")
    """
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
    scanned = planner.source(source.this)[0]
    relation = scanned  # its columns; its rows are built below unless the records will do
    rowtime = relation.rowtime
    order = match.args.get("order")
    ordered = list(order.expressions if order is not None else [])
    if (
        rowtime is None
        or len(ordered) != 1
        or ordered[0].args.get("desc")
        or not isinstance(ordered[0].this, exp.Column)
        or ordered[0].this.name != rowtime
    ):
        raise error_at(
            match,
            f"MATCH_RECOGNIZE needs ORDER BY the time attribute ({rowtime or 'none'}) ascending",
        )
    rows = match.args.get("rows")
    all_rows = rows is not None and "ALL" in rows.sql().upper()
    keys = [column.name for column in match.args.get("partition_by") or []]
    for key in keys:
        if key not in relation.columns:
            raise error_at(match, f"PARTITION BY {key!r}: no such column")
    steps = _flatten(match_pattern(match), match)
    stages = {step.stage: step.variable for step in steps}
    variables: dict[str, list[str]] = {}
    for step in steps:
        variables.setdefault(step.variable, []).append(step.stage)
    functions = planner.catalog.functions
    defines: dict[str, Callable[..., Any]] = {}
    for define in match.args.get("define") or []:
        variable = define.alias
        if variable not in variables:
            raise error_at(define, f"DEFINE {variable}: the pattern has no variable {variable}")
        defines[variable] = _define_condition(variable, define.this, stages, relation.columns, functions)
    # Conditions on the current row alone run on a scan's records as they were read (no row built
    # per record); a match's rows are built whole when it is emitted (matches are few).
    raw = scanned.raw
    whole: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    if raw is not None and not any(condition_arity(f) == 2 for f in defines.values()):
        whole = tolerant(raw.complete, raw)
        for define in match.args.get("define") or []:
            condition = substitute(define.this, raw.computed)
            defines[define.alias] = tolerant(
                _define_condition(define.alias, condition, stages, raw.physical, functions), raw
            )
    pattern: Any = None
    for step in steps:
        pattern = Pattern.begin(step.stage) if pattern is None else pattern.next(step.stage)
        pattern = pattern.where(defines.get(step.variable, _always))
        low, high = step.min, step.max
        if high is None or high > 1:
            pattern = (
                pattern.times(max(low, 1), high) if high is not None else pattern.times_or_more(max(low, 1))
            )
            pattern = pattern.consecutive()
            if step.greedy:
                pattern = pattern.greedy()
        if low == 0:
            pattern = pattern.optional()
    last = steps[-1]
    if last.greedy and (last.max is None or last.max > last.min):
        raise error_at(
            match,
            f"a greedy quantifier cannot end the pattern ({last.variable}): make it reluctant "
            f"({last.variable}+?) or add a variable after it, as Flink requires",
        )
    within = match.args.get("within")
    if within is not None:
        pattern = pattern.within(interval_millis(within))
    # As Flink's NFA: a match waits for the partial matches that began before it.
    skip = _skip_strategy(match, AfterMatchSkip, variables).start_order()
    atoms: list[_Atom] = []
    measures: list[exp.Expression] = []
    for measure in match.args.get("measures") or []:
        inner = measure.this if isinstance(measure, exp.MatchRecognizeMeasure) else measure
        measures.append(
            _navigate(inner.copy(), atoms, relation.columns, rowtime, set(variables), None, prefix="$m")
        )
    slots = {f"$m{index}": _atom_type(atom, relation.columns) for index, atom in enumerate(atoms)}
    named_measures = named_items(measures, slots)
    if all_rows:
        columns = {**relation.columns, **slots}
        leading = [*keys, rowtime]
        rest = [c for c in relation.columns if c not in leading and not c.startswith("$")]
        outputs: list[tuple[str, exp.Expression]] = [(name, exp.column(name)) for name in leading]
        outputs += named_measures + [(name, exp.column(name)) for name in rest]
    else:
        columns = {**{key: relation.columns[key] for key in keys}, **slots}
        outputs = [(key, exp.column(key)) for key in keys]
        outputs += named_measures
    taken = set(keys) | ({rowtime, *relation.columns} if all_rows else set())
    for name, node in named_measures:
        if name in taken:
            raise error_at(
                node,
                f"the measure {name!r} has the name of a column the match outputs too: rename it",
            )
    project, out_columns = compile_projection(outputs, columns, functions=functions)
    key_getter = getter(keys[0]) if len(keys) == 1 else (tuple_getter(keys) if keys else no_key)
    order_of = [(step.stage, step.variable) for step in steps]

    def one_row(found: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        if whole is not None:
            found = {stage: [whole(record) for record in records] for stage, records in found.items()}
        labelled = _labelled(found, order_of)
        row = {key: labelled[0][1][key] for key in keys}
        row.update(_measure_values(atoms, labelled, len(labelled)))
        return project(row)

    def each_row(found: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
        if whole is not None:
            found = {stage: [whole(record) for record in records] for stage, records in found.items()}
        labelled = _labelled(found, order_of)
        results = []
        for end in range(1, len(labelled) + 1):
            row = dict(labelled[end - 1][1])
            row.update(_measure_values(atoms, labelled, end))
            results.append(project(row))
        return results

    if whole is not None:
        scanned, key_getter = planner.key_of(scanned, keys)
        if scanned.raw is not None and len(keys) == 1:
            key_getter = _field(keys[0])
        keyed = scanned.stream.key_by(key_getter)
    else:
        keyed = planner.rows(scanned).stream.key_by(key_getter)
    matches = PatternStream(keyed, pattern, skip, None, parallelism=None if keys else 1)
    name = planner.node_name("match-recognize")
    stream = matches.flat_select(each_row, name=name) if all_rows else matches.select(one_row, name=name)
    return planner.project(select.expressions, Relation(stream, out_columns))


def _always(row: Any) -> bool:
    return True


def _field(name: str) -> Callable[[dict[str, Any]], Any]:
    """The key of a scan's records: field ``name``, None (NULL) when a record lacks it, as the
    planner's ``methodcaller("get", name)``; a function, which the pattern operator calls per
    event for less (a method caller makes a bound method at each call).

    >>> _field("k")({"k": 1}), _field("k")({})
    (1, None)
    """

    def key(record: dict[str, Any]) -> Any:
        return record.get(name)

    return key


# -- the pattern -------------------------------------------------------------------------------


def _flatten(terms: Sequence[PatternTerm], match: exp.Expression) -> list[_Step]:
    """The stages of a row pattern: groups spliced in (``(A B){2}`` written out twice), a
    variable's second and later appearances named ``V#2``, ``V#3``..."""
    steps: list[_Step] = []
    seen: dict[str, int] = {}

    def add(terms: Sequence[PatternTerm]) -> None:
        for term in terms:
            if term.max == 0:
                raise error_at(match, f"the quantifier {_quantifier(term)} takes no row")
            if term.group is None:
                variable = term.variable
                assert variable is not None
                seen[variable] = count = seen.get(variable, 0) + 1
                stage = variable if count == 1 else f"{variable}#{count}"
                steps.append(_Step(stage, variable, term.min, term.max, term.greedy))
            elif term.min == term.max:
                for _ in range(term.min):
                    add(term.group)
            else:
                raise error_at(
                    match,
                    f"a group with the quantifier {_quantifier(term)} is not supported yet: "
                    "the Pattern API has no looping groups; write (...) or (...){n}",
                )
            if len(steps) > MAX_STAGES:
                raise error_at(match, f"the pattern written out has more than {MAX_STAGES} variables")

    add(terms)
    return steps


def _quantifier(term: PatternTerm) -> str:
    """``+``, ``*``, ``?``, ``{n}``, ``{n,}``, ``{n,m}`` (with ``?`` when reluctant)."""
    low, high = term.min, term.max
    text = {(1, None): "+", (0, None): "*", (0, 1): "?"}.get((low, high))
    if text is None:
        text = f"{{{low}}}" if low == high else f"{{{low},{'' if high is None else high}}}"
    return text + ("" if term.greedy else "?")


def _skip_strategy(match: exp.Expression, skips: Any, variables: Mapping[str, list[str]]) -> Any:
    after = match.args.get("after")
    words = after.sql().split() if after is not None else ["AFTER", "MATCH", "SKIP", "PAST", "LAST", "ROW"]
    text = " ".join(words).upper()
    if text.endswith("PAST LAST ROW"):
        return skips.skip_past_last_event()
    if text.endswith("TO NEXT ROW"):
        return skips.skip_to_next()
    for prefix, make in (
        ("AFTER MATCH SKIP TO FIRST ", skips.skip_to_first),
        ("AFTER MATCH SKIP TO LAST ", skips.skip_to_last),
    ):
        if text.startswith(prefix) and len(words) == 6:
            variable = words[-1]
            if variable not in variables:
                raise error_at(after or match, f"{' '.join(words)}: the pattern has no variable {variable}")
            if len(variables[variable]) > 1:
                raise error_at(
                    after or match,
                    f"{' '.join(words)}: {variable} appears more than once in the pattern "
                    "(not supported yet)",
                )
            return make(variable)
    raise error_at(after or match, f"{text} is not supported")


# -- reading the match's rows ------------------------------------------------------------------

_NAVIGATIONS = {"FIRST": "first", "LAST": "last", "PREV": "prev"}
_AGGREGATES: dict[type[exp.Expression], str] = {
    exp.Count: "count", exp.Sum: "sum", exp.Min: "min", exp.Max: "max", exp.Avg: "avg"
}  # fmt: skip


def _navigate(
    node: exp.Expression,
    atoms: list[_Atom],
    columns: Mapping[str, SqlType],
    rowtime: str | None,
    variables: set[str],
    current: str | None,
    *,
    prefix: str,
) -> exp.Expression:
    """``node`` with each read of other rows replaced by a column ``<prefix><i>`` (``atoms[i]``
    says what it reads). In a ``DEFINE`` of ``current``, ``col`` and ``current.col`` are the
    current row's (left as they are); in a measure (``current`` None) ``col`` is the last row's."""

    def atom(found: _Atom) -> exp.Expression:
        if found not in atoms:
            atoms.append(found)
        return exp.column(f"{prefix}{atoms.index(found)}")

    def reference(argument: exp.Expression, call: str) -> tuple[str | None, str | None]:
        """The variable (None if unqualified) and column (None for ``V.*``) of an argument."""
        if isinstance(argument, exp.Star):
            return None, None
        if not isinstance(argument, exp.Column):
            raise error_at(argument, f"{call}(...) reads one column of a variable's rows: {call}(V.col)")
        variable = argument.table or None
        if variable is not None and variable not in variables:
            raise error_at(argument, f"{argument.sql()}: the pattern has no variable {variable}")
        if isinstance(argument.this, exp.Star):
            return variable, None
        if argument.name not in columns:
            raise error_at(argument, f"unknown column {argument.name!r}")
        return variable, argument.name

    def offset(arguments: list[exp.Expression], call: str) -> int:
        if len(arguments) < 2:
            return 1 if call == "PREV" else 0
        given = arguments[1]
        if not (isinstance(given, exp.Literal) and not given.is_string and given.this.isdigit()):
            raise error_at(given, f"the offset of {call}(...) is a whole number literal, 0 or more")
        return int(given.this)

    def swap(found: exp.Expression) -> exp.Expression:
        if isinstance(found, exp.Anonymous):
            call = found.name.upper()
            arguments = list(found.expressions)
            if call in _NAVIGATIONS:
                if not 1 <= len(arguments) <= 2:
                    raise error_at(found, f"{call}(V.col [, offset]) takes one or two arguments")
                variable, column = reference(arguments[0], call)
                if column is None:
                    raise error_at(found, f"{call}(...) reads a column: {call}(V.col)")
                if variable is None and call != "PREV":
                    variable = current
                return atom(_Atom(_NAVIGATIONS[call], variable, column, offset(arguments, call)))
            if call == "NEXT":
                raise error_at(found, "NEXT(...) is not supported: a condition sees the rows up to its own")
            if call == "CLASSIFIER" and not arguments:
                return (
                    exp.Literal.string(current)
                    if current is not None
                    else atom(_Atom("classifier", None, None))
                )
            if call == "MATCH_ROWTIME" and not arguments and current is None:
                return atom(_Atom("last", None, rowtime))
            if call == "MATCH_NUMBER":
                raise error_at(found, "MATCH_NUMBER() is not supported yet")
            return found
        kind = _AGGREGATES.get(type(found))
        if kind is not None:
            name = type(found).__name__.upper()
            variable, column = reference(found.this, name)
            if column is None:
                if kind != "count":
                    raise error_at(found, f"{name}(...) reads a column: {name}(V.col)")
                kind = "rows"
            elif kind == "avg" and columns[column].is_integer:
                kind = "avg_int"  # truncated, as Flink's AVG of integers
            return atom(_Atom(kind, variable, column))
        if isinstance(found, exp.Column) and not isinstance(found.this, exp.Star):
            variable = found.table or None
            if variable is not None and variable not in variables:
                raise error_at(found, f"{found.sql()}: the pattern has no variable {variable}")
            if found.name not in columns:
                raise error_at(found, f"unknown column {found.name!r}")
            if current is not None and variable in (None, current):
                return exp.column(found.name)  # the current row's
            return atom(_Atom("last", variable, found.name))
        return found

    return node.transform(swap)


def _atom_type(atom: _Atom, columns: Mapping[str, SqlType]) -> SqlType:
    if atom.kind in ("count", "rows"):
        return BIGINT.not_null()
    if atom.kind == "classifier":
        return STRING.nullable_()
    column = columns[atom.column or ""]
    return DOUBLE.nullable_() if atom.kind == "avg" else column.nullable_()


def _nth(rows: list[dict[str, Any]], column: str, index: int) -> Any:
    """``rows[index][column]``, or None past either end."""
    return rows[index].get(column) if -len(rows) <= index < len(rows) else None


def _prev(every: list[dict[str, Any]], rows: list[dict[str, Any]], column: str, offset: int) -> Any:
    """``column`` of the row ``offset`` rows before the last of ``rows`` among ``every`` (the
    match's rows in order), or None."""
    if not rows:
        return None
    anchor = rows[-1]
    for position in range(len(every) - 1, -1, -1):
        if every[position] is anchor:
            position -= offset
            return every[position].get(column) if position >= 0 else None
    return None


def _aggregate(kind: str, rows: list[dict[str, Any]], column: str | None) -> Any:
    """An aggregate of ``column`` over ``rows`` (NULLs skipped; ``rows``: how many rows;
    ``avg_int``: the average truncated)."""
    if kind == "rows" or column is None:
        return len(rows)
    present = [value for row in rows if (value := row.get(column)) is not None]
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
    return int(average) if kind == "avg_int" else average


_HELPERS: dict[str, Any] = {"_mr_nth": _nth, "_mr_prev": _prev, "_mr_aggregate": _aggregate}


def _define_condition(
    variable: str,
    node: exp.Expression,
    stages: Mapping[str, str],
    columns: Mapping[str, SqlType],
    functions: Mapping[str, Callable[..., Any]],
) -> Callable[..., Any]:
    """``variable``'s ``DEFINE`` as a condition: ``fn(row)`` over the current row alone, or an
    iterative ``fn(row, ctx)`` (generated once) when it reads the partial match's rows
    (``stages``: each stage name, in pattern order, to its variable)."""
    atoms: list[_Atom] = []
    condition = _navigate(node.copy(), atoms, columns, None, set(stages.values()), variable, prefix="$d")
    slots = {f"$d{index}": _atom_type(atom, columns) for index, atom in enumerate(atoms)}
    compiled = compile_expression(condition, {**columns, **slots}, functions=functions)
    if not atoms:
        return compiled.function
    lines = ["def _define(row, ctx):"]
    lists: dict[str | None, str] = {}

    def rows_of(name: str | None) -> str:
        """A local holding ``name``'s rows so far (None: every row), the current row last if
        they include it."""
        if name not in lists:
            lists[name] = local = f"_r{len(lists)}"
            parts = [f"*ctx.events({stage!r})" for stage, of in stages.items() if name in (None, of)]
            if name in (None, variable):
                parts.append("row")
            lines.append(f"    {local} = [{', '.join(parts)}]")
        return lists[name]

    values = []
    for index, atom in enumerate(atoms):
        column = repr(atom.column)
        if atom.kind == "first":
            code = f"_mr_nth({rows_of(atom.variable)}, {column}, {atom.offset})"
        elif atom.kind == "last":
            code = f"_mr_nth({rows_of(atom.variable)}, {column}, {-1 - atom.offset})"
        elif atom.kind == "prev":
            code = f"_mr_prev({rows_of(None)}, {rows_of(atom.variable)}, {column}, {atom.offset})"
        else:
            code = f"_mr_aggregate({atom.kind!r}, {rows_of(atom.variable)}, {column})"
        values.append(f"'$d{index}': {code}")
    lines.append(f"    row = {{**row, {', '.join(values)}}}")
    lines.append(f"    return {compiled.source}")
    namespace = {**compiled.namespace, **_HELPERS}
    exec(compile("\n".join(lines), f"<DEFINE {variable}>", "exec"), namespace)
    function: Callable[..., Any] = namespace["_define"]
    return function


def _labelled(
    found: Mapping[str, list[dict[str, Any]]], order: Sequence[tuple[str, str]]
) -> list[tuple[str, dict[str, Any]]]:
    """A match's rows in order, each with its variable (stages follow each other)."""
    return [(variable, row) for stage, variable in order for row in found.get(stage, ())]


def _measure_values(
    atoms: Sequence[_Atom], labelled: Sequence[tuple[str, dict[str, Any]]], end: int
) -> dict[str, Any]:
    """``{"$m<i>": value}`` of each atom over the match's first ``end`` rows."""
    every = [row for _, row in labelled[:end]]
    of: dict[str, list[dict[str, Any]]] = {}
    for variable, row in labelled[:end]:
        of.setdefault(variable, []).append(row)
    values: dict[str, Any] = {}
    for index, atom in enumerate(atoms):
        rows = every if atom.variable is None else of.get(atom.variable, [])
        kind, column = atom.kind, atom.column or ""
        if kind == "classifier":
            value: Any = labelled[end - 1][0]
        elif kind == "first":
            value = _nth(rows, column, atom.offset)
        elif kind == "last":
            value = _nth(rows, column, -1 - atom.offset)
        elif kind == "prev":
            value = _prev(every, rows, column, atom.offset)
        else:
            value = _aggregate(kind, rows, atom.column)
        values[f"$m{index}"] = value
    return values
