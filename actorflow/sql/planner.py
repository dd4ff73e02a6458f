"""The planner: a SQL query becomes DataStream operators of the flow.

A query plans to a :class:`Relation`: a stream of row dicts, the columns they have (in order, with
their types), and the time attribute, the column whose value is each row's event timestamp. Each
clause becomes ordinary operators, so nothing in the runtime knows about SQL:

- a table scan is the table's source (its physical columns read, computed ones evaluated by one
  generated function, event time from the time attribute, the watermark from ``WATERMARK FOR``);
- ``WHERE`` a filter and the select list a map, each one generated function per query
  (:mod:`actorflow.sql.expressions`);
- a windowing table function (``TUMBLE``, ``HOP``) adds ``window_start``, ``window_end`` and
  ``window_time``; grouped by ``window_start, window_end`` and other columns, it is a keyed
  event-time window with one accumulator per aggregate call (``COUNT``, ``SUM``, ``AVG``, ``MIN``,
  ``MAX``), then ``HAVING`` and the select list over the window's row.

>>> from actorflow import Flow
>>> from actorflow.sql.dialect import parse
>>> flow = Flow("doc")
>>> _ = flow.sql("CREATE TABLE t (n BIGINT) WITH ('connector' = 'jsonlines', 'path' = 'n.jsonl')")
>>> relation = Planner(flow, flow._sql_session.catalog).query(parse("SELECT n * 2 AS twice FROM t")[0])
>>> relation.columns
{'twice': SqlType(BIGINT)}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from operator import methodcaller
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from actorflow.errors import PlanError, SqlError
from actorflow.operators.base import Collector
from actorflow.operators.joins import ProcessJoinFunction
from actorflow.operators.process import Context, KeyedProcessFunction, RuntimeContext
from actorflow.operators.windows.assigners import (
    CumulativeEventTimeWindows,
    EventTimeSessionWindows,
    SlidingEventTimeWindows,
    TumblingEventTimeWindows,
)
from actorflow.operators.windows.functions import ProcessWindowFunction
from actorflow.runtime.messages import MAX_WATERMARK
from actorflow.sql.accessors import error_at, from_clause, interval_millis, table_name
from actorflow.sql.catalog import Catalog, SqlTable
from actorflow.sql.connectors import source_rows
from actorflow.sql.expressions import compile_expression, compile_filter, compile_projection
from actorflow.sql.nodes import Cumulate, Hop, Session, TableFunction, Tumble, WindowTableFunction
from actorflow.sql.types import SqlType
from actorflow.state.descriptors import AggregateFunction, ValueStateDescriptor
from actorflow.state.keyed import ValueState
from actorflow.time.watermarks import WatermarkStrategy

if TYPE_CHECKING:
    from actorflow.api.flow import Flow
    from actorflow.api.stream import DataStream

__all__ = ["Planner", "Relation"]

WINDOW_COLUMNS = ("window_start", "window_end", "window_time")
#: The key of a changelog row's change (``+I``, ``-U``, ``+U``, ``-D``), as Flink's RowKind.
CHANGE = "$change"


@dataclass
class Relation:
    """A planned query: its rows, their columns, and its time attribute (or None).

    A table scan's relation is *raw*: its stream carries the source's records as they were read,
    and ``raw`` says how to see them as rows. Filters, select lists and aggregates compile
    straight onto the records (computed columns put in as their expressions), so a query that
    selects builds one dict per row, not three; :meth:`Planner.rows` makes rows of a raw relation
    where an operator needs them whole.
    """

    stream: DataStream[dict[str, Any]]
    columns: dict[str, SqlType]
    rowtime: str | None = None
    raw: _Raw | None = None
    #: An updating result (a changelog): each row carries its change, ``row[CHANGE]``: ``+I``,
    #: ``-U``, ``+U`` or ``-D``.
    changelog: bool = False


@dataclass
class _Raw:
    """How a source's records become a table's rows."""

    #: The table's physical columns, and its computed ones as expressions over them.
    physical: dict[str, SqlType]
    computed: dict[str, exp.Expression]
    #: A record's physical columns (missing fields as NULL, timestamps from text).
    read: Callable[[dict[str, Any]], dict[str, Any]]
    #: The whole row of ``read``'s result (the computed columns added).
    complete: Callable[[dict[str, Any]], dict[str, Any]]
    #: A physical TIMESTAMP column may hold text: compiled code always reads through ``read``
    #: (otherwise only when a record lacks a field).
    text_stamps: bool = False


class Planner:
    """Plans queries of ``catalog``'s tables into ``flow``."""

    def __init__(self, flow: Flow, catalog: Catalog) -> None:
        self.flow = flow
        self.catalog = catalog
        self._serial = 0
        #: Each table is read once per flow, whatever the number of queries that read it.
        self._scans: dict[str, Relation] = {}

    def _name(self, what: str) -> str:
        self._serial += 1
        return f"sql-{what}-{self._serial}"

    # -- queries -------------------------------------------------------------------------------

    def query(self, node: exp.Expression | exp.Query) -> Relation:
        """Plan ``node`` (a SELECT, a UNION ALL of them, or a parenthesised query)."""
        if isinstance(node, exp.Subquery):
            return self.query(node.this)
        if isinstance(node, exp.Select):
            return self._select(node)
        if isinstance(node, exp.Union):
            if node.args.get("distinct"):
                raise error_at(node, "UNION (distinct) is not supported yet: use UNION ALL")
            left, right = self.rows(self.query(node.left)), self.rows(self.query(node.right))
            types = _union_types(list(left.columns.values()), list(right.columns.values()))
            if types is None:
                raise error_at(
                    node,
                    "UNION ALL needs the same number of columns and types one side's can take "
                    f"(NULL, a wider number) on both sides: {_describe(left.columns)} and "
                    f"{_describe(right.columns)}",
                )
            names = list(left.columns)
            if list(right.columns) != names:
                renames = dict(zip(right.columns, names, strict=True))
                right_stream = right.stream.map(
                    lambda row: {renames[k]: v for k, v in row.items()}, name=self._name("rename")
                )
            else:
                right_stream = right.stream
            rowtime = left.rowtime if left.rowtime is not None and left.rowtime == right.rowtime else None
            return Relation(left.stream.union(right_stream), dict(zip(names, types, strict=True)), rowtime)
        raise error_at(node, f"{node.key.upper()} is not supported yet")  # type: ignore[arg-type]

    def _select(self, select: exp.Select) -> Relation:
        if select.args.get("joins"):
            return self._interval_join(select)
        if select.args.get("match"):
            return self._match_recognize(select)
        for unsupported in ("windows", "distinct", "order", "limit", "qualify"):
            if select.args.get(unsupported):
                what = {"joins": "JOIN", "windows": "WINDOW", "distinct": "SELECT DISTINCT",
                        "order": "ORDER BY", "limit": "LIMIT", "qualify": "QUALIFY",
                        "match": "MATCH_RECOGNIZE"}[unsupported]  # fmt: skip
                raise error_at(select, f"{what} is not supported yet")
        source = from_clause(select)
        if source is None:
            raise error_at(select, "a query needs a FROM clause")
        relation, window = self._from(source.this)
        group = select.args.get("group")
        aggregating = group is not None or _aggregates(select.expressions)
        where = select.args.get("where")
        if window is not None and not aggregating:
            relation = self._windowed(self.rows(relation), window)
        elif window is not None and where is not None:
            for column in where.find_all(exp.Column):
                if column.name in WINDOW_COLUMNS:
                    raise error_at(
                        column, f"WHERE on {column.name} before a window aggregation is not supported yet"
                    )
        if where is not None:
            keep = self._on_rows(relation, where.this, compile_filter)
            relation = Relation(relation.stream.filter(keep, name=self._name("where")), relation.columns,
                                relation.rowtime, relation.raw)  # fmt: skip
        if aggregating:
            if window is None:
                return self._group_aggregate(select, relation)
            return self._window_aggregate(select, relation, window)
        if select.args.get("having") is not None:
            raise error_at(select.args["having"], "HAVING needs a GROUP BY")
        return self._project(select.expressions, relation)

    def _key_of(
        self, relation: Relation, names: list[str]
    ) -> tuple[Relation, Callable[[dict[str, Any]], Any]]:
        """The key of a GROUP BY on columns ``names`` (None for none): a C getter of whole rows;
        of a raw relation's records ``dict.get`` (a missing field is a NULL key), after reading
        them whole if a timestamp may be text."""
        if not names:
            return relation, _no_key
        raw = relation.raw
        if raw is not None and (raw.text_stamps or any(name in raw.computed for name in names)):
            relation, raw = self.rows(relation), None
        if raw is None:
            return relation, _getter(names[0]) if len(names) == 1 else _tuple_getter(names)
        if len(names) == 1:
            return relation, methodcaller("get", names[0])
        return relation, lambda record: tuple(map(record.get, names))

    # -- MATCH_RECOGNIZE --------------------------------------------------------------------

    def _match_recognize(self, select: exp.Select) -> Relation:
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
        relation = self.rows(self._from(source.this)[0])
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
                "MATCH_RECOGNIZE needs ORDER BY the time attribute "
                f"({relation.rowtime or 'none'}) ascending",
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
                condition, relation.columns, functions=self.catalog.functions
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
                    pattern.times(max(low, 1), high)
                    if high is not None
                    else pattern.times_or_more(max(low, 1))
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
        named = [(key, exp.column(key)) for key in keys] + _named(measures, columns)
        project, out_columns = compile_projection(named, columns, functions=self.catalog.functions)
        key_getter = _getter(keys[0]) if len(keys) == 1 else (_tuple_getter(keys) if keys else _no_key)

        def select_row(found: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
            first = next(iter(found.values()))[0]
            row = {key: first[key] for key in keys}
            for index, (kind, variable, column) in enumerate(atoms):
                row[f"$m{index}"] = _atom_value(kind, found.get(variable, []), column)
            return project(row)

        keyed = relation.stream.key_by(key_getter)
        matches = PatternStream(keyed, pattern, skip, None, parallelism=None if keys else 1)
        stream = matches.select(select_row, name=self._name("match-recognize"))
        return self._project(select.expressions, Relation(stream, out_columns))

    # -- joins ---------------------------------------------------------------------------------

    def _interval_join(self, select: exp.Select) -> Relation:
        """``FROM a JOIN b ON a.k = b.k AND a.rowtime BETWEEN b.rowtime - INTERVAL ... AND
        b.rowtime [+ INTERVAL ...]``: an interval join of two append-only tables on their time
        attributes (both sides' rows kept while the other side's watermark may still bring a
        partner). Columns are qualified by the tables' aliases (``a.card_id``); an unqualified
        name that only one side has means that side's column. The result has no time attribute."""
        joins = select.args["joins"]
        join = joins[0]
        if len(joins) > 1 or join.args.get("side") or join.args.get("kind") not in (None, "INNER"):
            raise error_at(join, "one inner JOIN per query is supported for now")
        for unsupported in ("group", "windows", "distinct", "order", "limit", "qualify", "match", "having"):
            if select.args.get(unsupported):
                raise error_at(
                    select.args[unsupported], f"{unsupported.upper()} with a JOIN is not supported yet"
                )
        source = from_clause(select)
        assert source is not None
        sides = []
        for node in (source.this, join.this):
            if not isinstance(node, exp.Table):
                raise error_at(node, "a JOIN joins tables (or views) here")
            relation = self.rows(self._scan(node))
            if relation.rowtime is None or relation.changelog:
                raise error_at(node, "an interval join needs two append-only tables with time attributes")
            sides.append((node.alias_or_name, relation))
        (left_alias, left), (right_alias, right) = sides
        if left_alias == right_alias:
            raise error_at(join, f"both sides of the JOIN are called {left_alias!r}: give one an alias")
        columns = {f"{left_alias}.{k}": v for k, v in left.columns.items()}
        columns.update({f"{right_alias}.{k}": v for k, v in right.columns.items()})
        condition = join.args.get("on")
        if condition is None:
            raise error_at(join, "a JOIN needs ON: equal keys and time bounds")
        keys: list[tuple[str, str]] = []
        lower, upper = -(2**62), 2**62
        residual: list[exp.Expression] = []
        aliases = (left_alias, right_alias)
        for conjunct in _conjuncts(_qualify(condition, columns)):
            pair = _key_pair(conjunct, aliases, left, right)
            if pair is not None:
                keys.append(pair)
                continue
            bounds = _time_bounds(conjunct, aliases, left.rowtime, right.rowtime)
            if bounds is not None:
                lower, upper = max(lower, bounds[0]), min(upper, bounds[1])
                continue
            residual.append(conjunct)
        if not keys:
            raise error_at(
                condition, "an interval join needs at least one equality of the two sides' columns"
            )
        if lower == -(2**62) or upper == 2**62:
            raise error_at(
                condition,
                "an interval join needs both time bounds on the time attributes "
                f"({left_alias}.{left.rowtime} BETWEEN {right_alias}.{right.rowtime} - INTERVAL ... "
                "AND ...); "
                "a regular (unbounded) join is not supported yet",
            )
        if lower > upper:
            raise error_at(condition, "the join's time bounds leave no interval")
        left_keys, right_keys = [k for k, _ in keys], [k for _, k in keys]
        joined = (
            left.stream.key_by(_tuple_getter(left_keys) if len(keys) > 1 else _getter(left_keys[0]))
            .interval_join(
                right.stream.key_by(_tuple_getter(right_keys) if len(keys) > 1 else _getter(right_keys[0]))
            )
            .between(lower, upper)
            .process(_JoinRows(left_alias, right_alias), name=self._name("interval-join"))
        )
        relation = Relation(joined, columns)
        where = select.args.get("where")
        conditions = residual + ([_qualify(where.this, columns)] if where is not None else [])
        if conditions:
            node = conditions[0]
            for more in conditions[1:]:
                node = exp.And(this=node, expression=more)
            keep = compile_filter(node, columns, functions=self.catalog.functions)
            relation = Relation(relation.stream.filter(keep, name=self._name("where")), columns)
        items = [
            _qualify(item, columns) if not isinstance(item, exp.Star) else item
            for item in select.expressions
        ]
        return self._project(items, relation)

    def _group_aggregate(self, select: exp.Select, relation: Relation) -> Relation:
        """``GROUP BY`` without a window: an updating result. Per group, each row changes its
        aggregates; the operator emits the group's new result row (``+I`` the first time, then
        ``-U`` the old one and ``+U`` the new), with ``HAVING`` deciding whether a result row
        exists (``-D`` when it stops qualifying). With ``SET 'execution.runtime-mode' =
        'batch'`` only the final rows come out, at the end of the input."""
        if relation.changelog:
            raise error_at(select, "an aggregation of an updating result is not supported yet")
        group = select.args.get("group")
        keys = list(group.expressions) if group is not None else []
        key_names = []
        for key in keys:
            if not isinstance(key, exp.Column) or key.name not in relation.columns:
                raise error_at(key, f"GROUP BY takes the query's columns here, not {key.sql()!r}")
            key_names.append(key.name)
        relation, parts = self._aggregation(select, relation, key_names)
        group_columns = {name: relation.columns[name] for name in key_names}
        group_columns.update(parts.columns)
        having_node = parts.having
        named = _named(parts.items, group_columns)
        project, columns = compile_projection(named, group_columns, functions=self.catalog.functions)
        keep = (
            compile_filter(having_node, group_columns, functions=self.catalog.functions)
            if having_node is not None
            else None
        )
        batch = self.catalog.options.get("execution.runtime-mode", "streaming").lower() == "batch"
        relation, key_of = self._key_of(relation, key_names)
        stream = relation.stream.key_by(key_of).process(
            _GroupAggregate(_Accumulate(parts.aggregates, relation.raw), key_names, project, keep, batch),
            name=self._name("group-aggregate"),
        )
        return Relation(stream, columns, None, changelog=not batch)

    def _from(self, node: exp.Expression) -> tuple[Relation, WindowTableFunction | None]:
        if isinstance(node, exp.Table):
            return self._scan(node), None
        if isinstance(node, exp.Subquery):
            return self.query(node.this), None
        if isinstance(node, TableFunction) and isinstance(node.this, WindowTableFunction):
            window = node.this
            argument = window.this
            table = argument.this
            if argument.args.get("partition_by") and not isinstance(window, Session):
                raise error_at(argument, "PARTITION BY goes with SESSION windows")
            relation = self._scan(table) if isinstance(table, exp.Table) else self.query(table)
            timecol = window.args["timecol"].expressions[0].name
            if timecol not in relation.columns:
                raise error_at(window.args["timecol"], f"DESCRIPTOR({timecol}): no such column")
            if timecol != relation.rowtime:
                raise error_at(
                    window.args["timecol"],
                    f"DESCRIPTOR({timecol}): not a time attribute (declare WATERMARK FOR {timecol} "
                    "on the table)",
                )
            if window.args.get("offset") is not None:
                raise error_at(window.args["offset"], "a window offset is not supported yet")
            return relation, window
        raise error_at(node, f"FROM {node.sql()!r} is not supported yet")

    def _scan(self, node: exp.Table) -> Relation:
        name = table_name(node)
        view = self.catalog.view(name)
        if view is not None:
            return self.query(view)
        table = self.catalog.table(name, node)
        return self.scan(table)

    def scan(self, table: SqlTable) -> Relation:
        """The rows of ``table`` with every column, stamped with its time attribute (one source
        per table and flow)."""
        found = self._scans.get(table.name)
        if found is None:
            found = self._scans[table.name] = self._read(table)
        return found

    def _read(self, table: SqlTable) -> Relation:
        functions = self.catalog.functions
        if table.stream is not None:
            return Relation(table.stream, dict(table.columns), table.rowtime)
        physical = {name: table.columns[name] for name in table.physical}
        read = _reader(physical)
        items = [(name, exp.column(name)) for name in physical] + list(table.computed)
        complete, _ = compile_projection(items, physical, functions=functions)
        raw = _Raw(
            physical,
            dict(table.computed),
            read,
            complete,
            text_stamps=any(kind.is_timestamp for kind in physical.values()),
        )
        strategy = None
        if table.rowtime is not None:
            stamp = _tolerant(
                compile_expression(
                    _substitute(exp.column(table.rowtime), raw.computed), physical, functions=functions
                ).function,
                raw,
            )
            delay = table.watermark_delay_ms or 0
            emit = table.options.get("scan.watermark.emit.strategy", "on-periodic")
            if emit == "on-event":  # Flink's option: a watermark after every row that moves it
                strategy = WatermarkStrategy.punctuated(stamp, lag_ms=delay)
            elif emit == "on-periodic":
                strategy = WatermarkStrategy.bounded_out_of_orderness(delay, stamp)
            else:
                raise error_at(
                    table.node or exp.Null(),
                    f"table {table.name!r}: 'scan.watermark.emit.strategy' is 'on-periodic' or "
                    f"'on-event', not {emit!r}",
                )
        stream = source_rows(self.flow, table, strategy)
        return Relation(stream, dict(table.columns), table.rowtime, raw)

    def _project(self, items: list[exp.Expression], relation: Relation) -> Relation:
        if relation.changelog:
            raise error_at(
                items[0] if items else exp.Null(), "a query over an updating result is not supported yet"
            )
        named = _named(items, relation.columns)
        raw = relation.raw
        if raw is not None:
            function, columns = compile_projection(
                [(name, _substitute(node, raw.computed)) for name, node in named],
                raw.physical,
                functions=self.catalog.functions,
            )
            function = _tolerant(function, raw)
        else:
            function, columns = compile_projection(
                named, relation.columns, functions=self.catalog.functions
            )
        rowtime = None
        for name, node in named:
            if isinstance(node, exp.Column) and node.name == relation.rowtime:
                rowtime = name
                break
        stream = relation.stream.map(function, name=self._name("select"))
        return Relation(stream, columns, rowtime)

    # -- raw relations -------------------------------------------------------------------------

    def rows(self, relation: Relation) -> Relation:
        """``relation`` with whole rows (every column), as an operator that keeps them needs."""
        raw = relation.raw
        if raw is None:
            return relation
        read, complete = raw.read, raw.complete
        stream = relation.stream.map(lambda record: complete(read(record)), name=self._name("columns"))
        return Relation(stream, relation.columns, relation.rowtime)

    def _compiler(self, relation: Relation, *, wrap: bool = True) -> Callable[[exp.Expression], Any]:
        """``compile(node)`` of an expression over ``relation``'s rows: a compiled expression whose
        function takes the relation's records (raw or whole)."""
        functions = self.catalog.functions
        raw = relation.raw
        if raw is None:
            return lambda node: compile_expression(node, relation.columns, functions=functions)

        def compile_raw(node: exp.Expression) -> Any:
            compiled = compile_expression(
                _substitute(node, raw.computed), raw.physical, functions=functions
            )
            if not wrap:
                return compiled
            return dataclasses.replace(compiled, function=_tolerant(compiled.function, raw))

        return compile_raw

    def _on_rows(
        self, relation: Relation, node: exp.Expression, compile: Any
    ) -> Callable[[dict[str, Any]], Any]:
        """``compile(node, columns)`` (a filter) over ``relation``'s records."""
        functions = self.catalog.functions
        raw = relation.raw
        if raw is None:
            return compile(node, relation.columns, functions=functions)  # type: ignore[no-any-return]
        return _tolerant(compile(_substitute(node, raw.computed), raw.physical, functions=functions), raw)

    # -- windows -------------------------------------------------------------------------------

    def _windowed(self, relation: Relation, window: WindowTableFunction) -> Relation:
        """The rows of a windowing table function: each row once per window it falls in, with
        ``window_start``, ``window_end`` and ``window_time``."""
        if isinstance(window, Session):
            raise error_at(
                window,
                "a SESSION window goes with GROUP BY window_start, window_end",
            )
        assigner = _assigner(window)
        rowtime = relation.rowtime
        assert rowtime is not None
        columns = dict(relation.columns)
        stamp = columns[rowtime]
        for name in WINDOW_COLUMNS:
            if name in columns:
                raise error_at(window, f"the table has a column {name!r} already")
            columns[name] = stamp.not_null() if name != "window_time" else stamp
        assign = assigner.assign

        def windows(row: dict[str, Any]) -> list[dict[str, Any]]:
            return [
                {**row, "window_start": w.start, "window_end": w.end, "window_time": w.end - 1}
                for w in sorted(assign(row, row[rowtime]), key=lambda w: (w.start, w.end))
            ]

        stream = relation.stream.flat_map(windows, name=self._name("window"))
        return Relation(stream, columns, rowtime)

    def _window_aggregate(
        self, select: exp.Select, relation: Relation, window: WindowTableFunction
    ) -> Relation:
        group = select.args.get("group")
        keys = [node for node in (group.expressions if group is not None else [])]
        names = []
        for key in keys:
            if not isinstance(key, exp.Column):
                raise error_at(key, "GROUP BY takes columns here")
            if key.name not in relation.columns and key.name not in WINDOW_COLUMNS:
                raise error_at(key, f"unknown column {key.name!r} in GROUP BY")
            names.append(key.name)
        if "window_start" not in names or "window_end" not in names:
            raise error_at(group or select, "a window aggregation groups by window_start and window_end")
        key_names = [name for name in names if name not in WINDOW_COLUMNS]
        relation, parts = self._aggregation(select, relation, key_names)
        assigner = _assigner(window)
        if isinstance(window, Session):
            partition = [key.name for key in window.this.args.get("partition_by") or []]
            if sorted(partition) != sorted(key_names):
                raise error_at(
                    window.this,
                    f"a SESSION window's PARTITION BY ({', '.join(partition) or 'nothing'}) must be the "
                    f"GROUP BY's other columns ({', '.join(key_names) or 'none'})",
                )
        # The window operator cuts the windows itself, from the rows as the table has them.
        base = relation
        base, key_of = self._key_of(base, key_names)
        window_columns = {name: relation.columns[name] for name in key_names}
        stamp = relation.columns.get(relation.rowtime or "", None)
        assert stamp is not None
        window_columns.update(
            {
                "window_start": stamp.not_null(),
                "window_end": stamp.not_null(),
                "window_time": stamp.not_null(),
            }
        )
        window_columns.update(parts.columns)
        stream = (
            base.stream.key_by(key_of)
            .window(assigner)
            .aggregate(
                _Accumulate(parts.aggregates, relation.raw),
                _WindowRow(key_names, len(parts.aggregates)),
                name=self._name("window-aggregate"),
            )
        )
        relation = Relation(stream, window_columns, "window_time")
        if parts.having is not None:
            keep = compile_filter(parts.having, window_columns, functions=self.catalog.functions)
            relation = Relation(relation.stream.filter(keep, name=self._name("having")), window_columns,
                                "window_time")  # fmt: skip
        return self._project(parts.items, relation)

    def _aggregation(
        self, select: exp.Select, relation: Relation, key_names: list[str]
    ) -> tuple[Relation, _Aggregation]:
        """The aggregate calls of ``select`` (its list and HAVING), each compiled over
        ``relation``'s records; the list and HAVING with each call replaced by its column
        ``$a<i>``. ``relation`` comes back whole-rowed when a key is a computed column."""
        if relation.raw is not None and any(name in relation.raw.computed for name in key_names):
            relation = self.rows(relation)
        calls: list[exp.AggFunc] = []
        items = [_replace_aggregates(item.copy(), calls) for item in select.expressions]
        having = select.args.get("having")
        having_node = _replace_aggregates(having.this.copy(), calls) if having is not None else None
        compile_argument = self._compiler(relation, wrap=False)
        functions = self.catalog.functions
        aggregates = [_Aggregate.of(call, relation.columns, functions, compile_argument) for call in calls]
        columns = {f"$a{index}": aggregate.type for index, aggregate in enumerate(aggregates)}
        return relation, _Aggregation(aggregates, items, having_node, columns)


# -- helpers -----------------------------------------------------------------------------------------


def _describe(columns: dict[str, SqlType]) -> str:
    return "(" + ", ".join(f"{name} {kind}" for name, kind in columns.items()) + ")"


def _named(items: list[exp.Expression], columns: dict[str, SqlType]) -> list[tuple[str, exp.Expression]]:
    """``(output name, expression)`` of a select list, ``*`` expanded, unnamed ones ``EXPR$i``."""
    named: list[tuple[str, exp.Expression]] = []
    for index, item in enumerate(items):
        if isinstance(item, exp.Star):
            named += [(name, exp.column(name)) for name in columns if not name.startswith("$")]
        elif isinstance(item, exp.Alias):
            named.append((item.alias, item.this))
        elif isinstance(item, exp.Column):
            if isinstance(item.this, exp.Star):
                named += [(name, exp.column(name)) for name in columns if not name.startswith("$")]
            else:
                named.append((item.name, item))
        else:
            named.append((f"EXPR${index}", item))
    seen: set[str] = set()
    for name, node in named:
        if name in seen:
            raise error_at(node, f"the query has two columns named {name!r}: give one an alias")
        seen.add(name)
    return named


def _aggregates(items: list[exp.Expression]) -> bool:
    return any(item.find(exp.AggFunc) is not None for item in items)


def _replace_aggregates(node: exp.Expression, calls: list[exp.AggFunc]) -> exp.Expression:
    """``node`` with each aggregate call replaced by a column ``$a<i>`` (the i-th of ``calls``,
    equal calls shared)."""

    def swap(found: exp.Expression) -> exp.Expression:
        if isinstance(found, exp.AggFunc):
            for index, call in enumerate(calls):
                if call == found:
                    return exp.column(f"$a{index}")
            calls.append(found)
            return exp.column(f"$a{len(calls) - 1}")
        return found

    return node.transform(swap)


def _assigner(window: WindowTableFunction) -> Any:
    """The event-time window assigner of a windowing table function."""
    try:
        if isinstance(window, Tumble):
            return TumblingEventTimeWindows.of(interval_millis(window.args["size"]))
        if isinstance(window, Hop):
            size, slide = interval_millis(window.args["size"]), interval_millis(window.args["slide"])
            return SlidingEventTimeWindows.of(size, slide)
        if isinstance(window, Cumulate):
            size, step = interval_millis(window.args["size"]), interval_millis(window.args["step"])
            return CumulativeEventTimeWindows.of(size, step)
        if isinstance(window, Session):
            return EventTimeSessionWindows.with_gap(interval_millis(window.args["gap"]))
    except PlanError as error:
        raise error_at(window, str(error)) from None
    raise error_at(window, f"{window.key.upper()} windows are not supported")


def _substitute(node: exp.Expression, computed: dict[str, exp.Expression]) -> exp.Expression:
    """``node`` with every computed column replaced by its expression (over physical columns)."""
    if not computed or not any(column.name in computed for column in node.find_all(exp.Column)):
        return node

    def swap(found: exp.Expression) -> exp.Expression:
        if isinstance(found, exp.Column) and found.name in computed:
            return exp.Paren(this=computed[found.name].copy())
        return found

    return node.copy().transform(swap)


def _tolerant(function: Callable[[dict[str, Any]], Any], raw: _Raw) -> Callable[[dict[str, Any]], Any]:
    """``function`` of a table's physical columns, called on a source record: straight, and
    through the reader when the record lacks a field (NULL) or holds a timestamp as text."""
    read = raw.read
    if raw.text_stamps:
        return lambda record: function(read(record))

    def call(record: dict[str, Any]) -> Any:
        try:
            return function(record)
        except KeyError:
            return function(read(record))

    return call


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


def _union_types(left: list[SqlType], right: list[SqlType]) -> list[SqlType] | None:
    """The column types of a UNION ALL (each the type the other side's can be written to,
    nullable if either is), or None if the sides do not fit."""
    if len(left) != len(right):
        return None
    types = []
    for a, b in zip(left, right, strict=True):
        nullable = a.nullable or b.nullable
        if b.with_nullable(True).assignable_to(a.with_nullable(True)):
            types.append(a.with_nullable(nullable))
        elif a.with_nullable(True).assignable_to(b.with_nullable(True)):
            types.append(b.with_nullable(nullable))
        else:
            return None
    return types


def _getter(name: str) -> Callable[[dict[str, Any]], Any]:
    from operator import itemgetter

    return itemgetter(name)


def _tuple_getter(names: list[str]) -> Callable[[dict[str, Any]], Any]:
    from operator import itemgetter

    return itemgetter(*names)


def _no_key(row: dict[str, Any]) -> None:
    return None


def _reader(physical: dict[str, SqlType]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The physical columns of a source record (a missing field is NULL; a TIMESTAMP written as
    text is read into epoch milliseconds): one generated function."""
    from actorflow.sql.types import parse_timestamp

    fields = []
    for index, (name, kind) in enumerate(physical.items()):
        value = f"get({name!r})"
        if kind.is_timestamp:
            value = f"_stamp(get({name!r}))"
        fields.append(f"{name!r}: {value}")
        del index
    source = "def read(raw):\n    get = raw.get\n    return {" + ", ".join(fields) + "}\n"

    def stamp(value: Any) -> Any:
        return parse_timestamp(value) if isinstance(value, str) else value

    namespace: dict[str, Any] = {"_stamp": stamp}
    exec(compile(source, "<sql scan>", "exec"), namespace)  # code built from column names
    return namespace["read"]  # type: ignore[no-any-return]


@dataclass
class _Aggregation:
    """What a query's aggregate calls make (see :meth:`Planner._aggregation`)."""

    aggregates: list[_Aggregate]
    #: The select list and HAVING over the group's columns and ``$a<i>``.
    items: list[exp.Expression]
    having: exp.Expression | None
    #: ``{"$a<i>": type}``.
    columns: dict[str, SqlType]


@dataclass
class _Aggregate:
    """One aggregate call: its kind, its argument (None for ``COUNT(*)``), its result type."""

    kind: str
    #: The argument compiled over the relation's records (for a raw relation: not wrapped for
    #: missing fields, the generated ``add`` as a whole is).
    argument: Any
    type: SqlType

    @staticmethod
    def of(
        call: exp.AggFunc,
        columns: dict[str, SqlType],
        functions: dict[str, Any],
        compile: Callable[[exp.Expression], Any],
    ) -> _Aggregate:
        from actorflow.sql.types import BIGINT, DOUBLE

        kind = call.key.lower()
        where: exp.Expression = call  # type: ignore[assignment]
        if kind not in ("count", "sum", "avg", "min", "max"):
            raise error_at(where, f"aggregate {call.sql()!r} is not supported yet")
        argument_node = call.this
        if isinstance(argument_node, exp.Distinct):
            raise error_at(where, f"{kind.upper()}(DISTINCT ...) is not supported yet")
        if kind == "count" and (argument_node is None or isinstance(argument_node, exp.Star)):
            return _Aggregate("count_star", None, BIGINT.not_null())
        compiled = compile(argument_node)
        if kind == "count":
            return _Aggregate("count", compiled, BIGINT.not_null())
        if kind in ("sum", "avg") and not compiled.type.is_numeric:
            raise error_at(where, f"{kind.upper()} needs a number, not {compiled.type}")
        result = compiled.type.nullable_()
        if kind == "sum" and compiled.type.is_integer:
            result = BIGINT.nullable_()
        if kind == "sum" and not compiled.type.is_integer:
            result = DOUBLE.nullable_()
        return _Aggregate(kind, compiled, result)


class _Accumulate(AggregateFunction[dict[str, Any], list[Any], list[Any]]):
    """One slot per aggregate call (AVG: a [sum, count] pair)."""

    def __init__(self, aggregates: list[_Aggregate], raw: _Raw | None = None) -> None:
        self.aggregates = aggregates
        self.raw = raw
        #: The per-record update, generated: the window operator calls it straight.
        self.add = self._generate()  # type: ignore[method-assign, assignment]

    def create_accumulator(self) -> list[Any]:
        return [[0, 0] if a.kind == "avg" else (0 if a.kind.startswith("count") else None)
                for a in self.aggregates]  # fmt: skip

    def add(self, value: dict[str, Any], accumulator: list[Any]) -> list[Any]:
        """Replaced on each instance by the generated update (see ``_generate``)."""
        self.add = self._generate()  # type: ignore[method-assign, assignment]
        return self.add(value, accumulator)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["add"]  # generated code: made again where it is unpickled
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.add = self._generate()  # type: ignore[method-assign, assignment]

    def _generate(self) -> Callable[[dict[str, Any], list[Any]], list[Any]]:
        """One function that reads every argument of a record, then updates each slot: the
        accumulator changes only once every argument was read (a raw record that lacks a field
        is read again through the table's reader: NULL)."""
        namespace: dict[str, Any] = {}
        reads, updates = [], []
        for index, aggregate in enumerate(self.aggregates):
            kind = aggregate.kind
            if kind == "count_star":
                updates.append(f"acc[{index}] += 1")
                continue
            namespace.update(aggregate.argument.namespace)
            reads.append(f"v{index} = {aggregate.argument.source}")
            update = {
                "count": f"acc[{index}] += 1",
                "sum": f"c = acc[{index}]; acc[{index}] = v{index} if c is None else c + v{index}",
                "avg": f"c = acc[{index}]; c[0] += v{index}; c[1] += 1",
                "min": f"c = acc[{index}]\n        if c is None or v{index} < c: acc[{index}] = v{index}",
                "max": f"c = acc[{index}]\n        if c is None or v{index} > c: acc[{index}] = v{index}",
            }[kind]
            updates.append(f"if v{index} is not None:\n        {update}")
        raw = self.raw
        lines = ["def add(row, acc):"]
        if raw is not None and reads:
            namespace["_read"] = raw.read
            if raw.text_stamps:
                lines += ["    row = _read(row)", *(f"    {read}" for read in reads)]
            else:
                lines += ["    try:", *(f"        {read}" for read in reads), "    except KeyError:",
                          "        row = _read(row)", *(f"        {read}" for read in reads)]  # fmt: skip
        else:
            lines += [f"    {read}" for read in reads]
        lines += [f"    {update}" for update in updates] + ["    return acc"]
        exec(compile("\n".join(lines) + "\n", "<sql aggregate>", "exec"), namespace)
        return namespace["add"]  # type: ignore[no-any-return]

    def get_result(self, accumulator: list[Any]) -> list[Any]:
        result = list(accumulator)
        for index, aggregate in enumerate(self.aggregates):
            if aggregate.kind == "avg":
                total, count = accumulator[index]
                if not count:
                    result[index] = None
                elif aggregate.type.is_integer:
                    result[index] = int(total / count)  # Flink: an integer average truncates
                else:
                    result[index] = total / count
        return result

    def merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        merged = []
        for aggregate, left, right in zip(self.aggregates, a, b, strict=True):
            kind = aggregate.kind
            if kind in ("count", "count_star"):
                merged.append(left + right)
            elif kind == "avg":
                merged.append([left[0] + right[0], left[1] + right[1]])
            elif left is None or right is None:
                merged.append(right if left is None else left)
            elif kind == "sum":
                merged.append(left + right)
            else:
                merged.append(min(left, right) if kind == "min" else max(left, right))
        return merged


class _GroupAggregate(KeyedProcessFunction[dict[str, Any], dict[str, Any]]):
    """Per group: the accumulators, and the result row last emitted (see
    :meth:`Planner._group_aggregate`)."""

    def __init__(
        self,
        accumulate: _Accumulate,
        keys: list[str],
        project: Callable[[dict[str, Any]], dict[str, Any]],
        keep: Callable[[dict[str, Any]], bool] | None,
        batch: bool,
    ) -> None:
        self.accumulate = accumulate
        self.keys = keys
        self.project = project
        self.keep = keep
        self.batch = batch

    def open(self, ctx: RuntimeContext) -> None:
        self.state: ValueState[list[Any] | None] = ctx.get_state(ValueStateDescriptor("accumulators"))
        self.emitted: ValueState[dict[str, Any] | None] = ctx.get_state(ValueStateDescriptor("emitted"))

    def _result(self, key: Any, accumulators: list[Any]) -> dict[str, Any] | None:
        row: dict[str, Any] = {}
        if len(self.keys) == 1:
            row[self.keys[0]] = key
        elif self.keys:
            row.update(zip(self.keys, key, strict=True))
        for index, value in enumerate(self.accumulate.get_result(accumulators)):
            row[f"$a{index}"] = value
        if self.keep is not None and not self.keep(row):
            return None
        return self.project(row)

    def process_element(self, value: dict[str, Any], ctx: Context, out: Collector) -> None:
        accumulators = self.state.value()
        if accumulators is None:
            accumulators = self.accumulate.create_accumulator()
            if self.batch:
                ctx.timer_service().register_event_time_timer(MAX_WATERMARK)
        self.accumulate.add(value, accumulators)
        self.state.update(accumulators)
        if self.batch:
            return
        new = self._result(ctx.current_key, accumulators)
        old = self.emitted.value()
        if old is not None and new == old:
            return
        if old is not None:
            out.collect({**old, CHANGE: "-U" if new is not None else "-D"})
        if new is not None:
            out.collect({**new, CHANGE: "+I" if old is None else "+U"})
        self.emitted.update(new)

    def on_timer(self, timestamp: int, ctx: Context, out: Collector) -> None:
        accumulators = self.state.value()
        if accumulators is not None:
            row = self._result(ctx.current_key, accumulators)
            if row is not None:
                out.collect(row)


class _JoinRows(ProcessJoinFunction[dict[str, Any], dict[str, Any], dict[str, Any]]):
    """One joined row: both sides' columns, qualified by their aliases."""

    def __init__(self, left: str, right: str) -> None:
        self.left = left + "."
        self.right = right + "."

    def process_element(
        self, left: dict[str, Any], right: dict[str, Any], ctx: Any, out: Collector
    ) -> None:
        row = {self.left + k: v for k, v in left.items()}
        row.update({self.right + k: v for k, v in right.items()})
        out.collect(row)


def _conjuncts(node: exp.Expression) -> list[exp.Expression]:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.And):
        return _conjuncts(node.this) + _conjuncts(node.expression)
    return [node]


def _qualify(node: exp.Expression, columns: dict[str, SqlType]) -> exp.Expression:
    """``node`` with each unqualified column that exactly one side has qualified by that side."""

    def swap(found: exp.Expression) -> exp.Expression:
        if isinstance(found, exp.Column) and not found.table and not isinstance(found.this, exp.Star):
            owners = [key.rpartition(".")[0] for key in columns if key.rpartition(".")[2] == found.name]
            if len(owners) > 1:
                raise error_at(
                    found, f"column {found.name!r} is ambiguous: qualify it ({', '.join(owners)})"
                )
            if owners:
                return exp.column(found.name, table=owners[0])
        return found

    return node.copy().transform(swap)


def _side(column: exp.Expression, aliases: tuple[str, str]) -> int | None:
    if isinstance(column, exp.Column) and column.table in aliases:
        return aliases.index(column.table)
    return None


def _key_pair(
    node: exp.Expression, aliases: tuple[str, str], left: Relation, right: Relation
) -> tuple[str, str] | None:
    """``(left column, right column)`` of an equality of the two sides' columns, else None."""
    if not isinstance(node, exp.EQ):
        return None
    a, b = node.this, node.expression
    sides = (_side(a, aliases), _side(b, aliases))
    if sides == (1, 0):
        a, b = b, a
    elif sides != (0, 1):
        return None
    if a.name not in left.columns or b.name not in right.columns:
        return None
    return a.name, b.name


def _time_point(
    node: exp.Expression, aliases: tuple[str, str], rowtimes: tuple[str | None, str | None]
) -> tuple[int, int] | None:
    """``(side, offset ms)`` of ``side.rowtime [+|- INTERVAL ...]``, else None."""
    offset = 0
    if isinstance(node, exp.Add | exp.Sub) and isinstance(node.expression, exp.Interval):
        offset = interval_millis(node.expression) * (1 if isinstance(node, exp.Add) else -1)
        node = node.this
    side = _side(node, aliases)
    if side is None or node.name != rowtimes[side]:
        return None
    return side, offset


def _time_bounds(
    node: exp.Expression, aliases: tuple[str, str], left_rowtime: str | None, right_rowtime: str | None
) -> tuple[int, int] | None:
    """The ``(lower, upper)`` of ``right.ts - left.ts`` a time condition allows, else None."""
    rowtimes = (left_rowtime, right_rowtime)
    if isinstance(node, exp.Between):
        low = _time_bounds(exp.GTE(this=node.this, expression=node.args["low"]), aliases, *rowtimes)
        high = _time_bounds(exp.LTE(this=node.this, expression=node.args["high"]), aliases, *rowtimes)
        if low is None or high is None:
            return None
        return max(low[0], high[0]), min(low[1], high[1])
    kinds: dict[type[exp.Expression], str] = {exp.GTE: ">=", exp.GT: ">", exp.LTE: "<=", exp.LT: "<"}
    kind = kinds.get(type(node))
    if kind is None:
        return None
    a = _time_point(node.this, aliases, rowtimes)
    b = _time_point(node.expression, aliases, rowtimes)
    if a is None or b is None or a[0] == b[0]:
        return None
    if a[0] == 1:  # right op left: flip to left op' right
        a, b = b, a
        kind = {">=": "<=", ">": "<", "<=": ">=", "<": ">"}[kind]
    # left.ts + a_off  kind  right.ts + b_off  =>  right.ts - left.ts  kind'  a_off - b_off
    d = a[1] - b[1]
    if kind == ">=":
        return -(2**62), d  # right - left <= d
    if kind == ">":
        return -(2**62), d - 1
    if kind == "<=":
        return d, 2**62
    return d + 1, 2**62


class _WindowRow(ProcessWindowFunction[list[Any], dict[str, Any], Any]):
    """The row of one window: its group keys, ``window_start/end/time`` and the aggregates."""

    def __init__(self, keys: list[str], aggregates: int) -> None:
        self.keys = keys
        self.aggregates = aggregates

    def process(self, key: Any, context: Any, elements: list[list[Any]], out: Any) -> None:
        window = context.window
        row: dict[str, Any] = {}
        if len(self.keys) == 1:
            row[self.keys[0]] = key
        elif self.keys:
            row.update(zip(self.keys, key, strict=True))
        row["window_start"] = window.start
        row["window_end"] = window.end
        row["window_time"] = window.end - 1
        for index, value in enumerate(elements[0]):
            row[f"$a{index}"] = value
        out.collect(row)
