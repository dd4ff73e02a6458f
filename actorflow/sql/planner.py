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
  ``MAX``, ``COUNT(DISTINCT ...)``), then ``HAVING`` and the select list over the window's row;
- ``GROUP BY`` without a window, ``SELECT DISTINCT`` and ``UNION`` are updating results
  (changelogs, ``Relation.changelog``); a filter, select list, union or aggregation over one
  keeps or retracts each change (:mod:`actorflow.sql.changelog`), a window refuses it.

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
from operator import methodcaller
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from actorflow.errors import PlanError
from actorflow.operators.windows.assigners import (
    CumulativeEventTimeWindows,
    EventTimeSessionWindows,
    SlidingEventTimeWindows,
    TumblingEventTimeWindows,
)
from actorflow.sql.accessors import error_at, from_clause, interval_millis, table_name
from actorflow.sql.aggregates import (
    Accumulate,
    Aggregate,
    Aggregation,
    GroupAggregate,
    WindowRow,
    has_aggregates,
    replace_aggregates,
)
from actorflow.sql.catalog import Catalog, SqlTable
from actorflow.sql.changelog import RetractAccumulate, RetractGroupAggregate
from actorflow.sql.connectors import connector, keep_change, read_changes, source_rows
from actorflow.sql.expressions import compile_calc, compile_expression, compile_filter, compile_projection
from actorflow.sql.joins import plan_join
from actorflow.sql.nodes import Cumulate, Hop, Session, TableFunction, Tumble, WindowTableFunction
from actorflow.sql.ranking import has_over, plan_order, plan_over, plan_ranked
from actorflow.sql.recognize import plan_match_recognize
from actorflow.sql.relation import (
    CHANGE,
    WINDOW_COLUMNS,
    RawScan,
    Relation,
    describe,
    getter,
    named_items,
    no_key,
    substitute,
    tolerant,
    tuple_getter,
)
from actorflow.sql.types import SqlType
from actorflow.time.watermarks import WatermarkStrategy

if TYPE_CHECKING:
    from actorflow.api.flow import Flow
    from actorflow.api.stream import DataStream

__all__ = ["CHANGE", "Planner", "Relation"]


class Planner:
    """Plans queries of ``catalog``'s tables into ``flow``."""

    def __init__(self, flow: Flow, catalog: Catalog) -> None:
        self.flow = flow
        self.catalog = catalog
        self._serial = 0
        #: Each table is read once per flow, whatever the number of queries that read it.
        self._scans: dict[str, Relation] = {}
        #: Relations planned by part, by the name :meth:`bind` gave them.
        self._bound: dict[str, Relation] = {}

    def node_name(self, what: str) -> str:
        """A fresh operator name: ``sql-<what>-<n>``."""
        self._serial += 1
        return f"sql-{what}-{self._serial}"

    # -- queries -------------------------------------------------------------------------------

    def query(self, node: exp.Expression | exp.Query) -> Relation:
        """Plan ``node`` (a SELECT, a UNION ALL of them, or a parenthesised query)."""
        if isinstance(node, exp.Subquery):
            return self.query(node.this)
        if isinstance(node, exp.Select):
            return self._select(node)
        if isinstance(node, exp.Union) and (node.args.get("order") or node.args.get("limit")):
            return plan_order(self, node)
        if isinstance(node, exp.Union):
            left, right = self.rows(self.query(node.left)), self.rows(self.query(node.right))
            types = _union_types(list(left.columns.values()), list(right.columns.values()))
            if types is None:
                raise error_at(
                    node,
                    "UNION ALL needs the same number of columns and types one side's can take "
                    f"(NULL, a wider number) on both sides: {describe(left.columns)} and "
                    f"{describe(right.columns)}",
                )
            names = list(left.columns)
            if list(right.columns) != names:
                renames = dict(zip(right.columns, names, strict=True))
                renames[CHANGE] = CHANGE
                right_stream = right.stream.map(
                    lambda row: {renames[k]: v for k, v in row.items()}, name=self.node_name("rename")
                )
            else:
                right_stream = right.stream
            left_stream = left.stream
            changelog = left.changelog or right.changelog
            if changelog:  # a union with an updating result is one; an append-only side's rows insert
                if not left.changelog:
                    left_stream = left_stream.map(_inserted, name=self.node_name("insert"))
                if not right.changelog:
                    right_stream = right_stream.map(_inserted, name=self.node_name("insert"))
            rowtime = left.rowtime if left.rowtime is not None and left.rowtime == right.rowtime else None
            columns = dict(zip(names, types, strict=True))
            union = Relation(left_stream.union(right_stream), columns, rowtime, changelog=changelog)
            return self.distinct(union) if node.args.get("distinct") else union
        raise error_at(node, f"{node.key.upper()} is not supported yet")  # type: ignore[arg-type]

    def _select(self, select: exp.Select) -> Relation:
        distinct = select.args.get("distinct")
        if distinct is not None and not (select.args.get("order") or select.args.get("limit")):
            if distinct.args.get("on") is not None:
                raise error_at(distinct, "SELECT DISTINCT ON is not supported (Flink has no DISTINCT ON)")
            return self.distinct(self._select(select.copy().distinct(distinct=False)))
        if select.args.get("joins"):
            return plan_join(self, select)
        if select.args.get("match"):
            return plan_match_recognize(self, select)
        if select.args.get("order") or select.args.get("limit"):
            return plan_order(self, select)
        ranked = plan_ranked(self, select)
        if ranked is not None:
            return ranked
        if has_over(select):
            return plan_over(self, select)
        for unsupported in ("windows", "qualify"):
            if select.args.get(unsupported):
                what = {"windows": "WINDOW", "qualify": "QUALIFY"}[unsupported]
                raise error_at(select, f"{what} is not supported yet")
        source = from_clause(select)
        if source is None:
            raise error_at(select, "a query needs a FROM clause")
        relation, window = self.source(source.this)
        group = select.args.get("group")
        aggregating = group is not None or has_aggregates(select.expressions)
        where = select.args.get("where")
        if window is not None and not aggregating:
            relation = self._windowed(self.rows(relation), window)
        elif window is not None and where is not None:
            for column in where.find_all(exp.Column):
                if column.name in WINDOW_COLUMNS:
                    raise error_at(
                        column, f"WHERE on {column.name} before a window aggregation is not supported yet"
                    )
        if where is not None:  # over an updating result: each change on its own, as Flink's Calc
            keep = self.on_rows(relation, where.this, compile_filter)
            stream = _at_source(relation).filter(keep, name=self.node_name("where"))
            relation = dataclasses.replace(relation, stream=stream)
        if aggregating:
            if window is None:
                return self._group_aggregate(select, relation)
            return self._window_aggregate(select, relation, window)
        if select.args.get("having") is not None:
            raise error_at(select.args["having"], "HAVING needs a GROUP BY")
        return self.project(select.expressions, relation)

    def key_of(
        self, relation: Relation, names: list[str]
    ) -> tuple[Relation, Callable[[dict[str, Any]], Any]]:
        """The key of a GROUP BY on columns ``names`` (None for none): a C getter of whole rows;
        of a raw relation's records ``dict.get`` (a missing field is a NULL key), after reading
        them whole if a timestamp may be text."""
        if not names:
            return relation, no_key
        raw = relation.raw
        if raw is not None and (raw.text_stamps or any(name in raw.computed for name in names)):
            relation, raw = self.rows(relation), None
        if raw is None:
            return relation, getter(names[0]) if len(names) == 1 else tuple_getter(names)
        if len(names) == 1:
            return relation, methodcaller("get", names[0])
        return relation, lambda record: tuple(map(record.get, names))

    # -- MATCH_RECOGNIZE --------------------------------------------------------------------
    # -- joins ---------------------------------------------------------------------------------

    def _group_aggregate(self, select: exp.Select, relation: Relation) -> Relation:
        """``GROUP BY`` without a window: an updating result. Per group, each row changes its
        aggregates; the operator emits the group's new result row (``+I`` the first time, then
        ``-U`` the old one and ``+U`` the new), with ``HAVING`` deciding whether a result row
        exists (``-D`` when it stops qualifying). With ``SET 'execution.runtime-mode' =
        'batch'`` only the final rows come out, at the end of the input.

        Over an updating input (a changelog) the aggregates retract: ``+I``/``+U`` rows are added
        to their group, ``-U``/``-D`` rows taken out, and a group whose last row goes is deleted
        (:class:`RetractGroupAggregate`)."""
        group = select.args.get("group")
        keys = list(group.expressions) if group is not None else []
        key_names = []
        for key in keys:
            if not isinstance(key, exp.Column) or key.name not in relation.columns:
                raise error_at(key, f"GROUP BY takes the query's columns here, not {key.sql()!r}")
            key_names.append(key.name)
        relation, parts = self.aggregation(select, relation, key_names)
        group_columns = {name: relation.columns[name] for name in key_names}
        group_columns.update(parts.columns)
        having_node = parts.having
        named = named_items(parts.items, group_columns)
        project, columns = compile_projection(named, group_columns, functions=self.catalog.functions)
        keep = (
            compile_filter(having_node, group_columns, functions=self.catalog.functions)
            if having_node is not None
            else None
        )
        batch = self.catalog.options.get("execution.runtime-mode", "streaming").lower() == "batch"
        relation, key_of = self.key_of(relation, key_names)
        function: GroupAggregate
        if relation.changelog:
            accumulate = RetractAccumulate(parts.aggregates, relation.raw)
            function = RetractGroupAggregate(accumulate, key_names, project, keep, batch)
        else:
            function = GroupAggregate(
                Accumulate(parts.aggregates, relation.raw), key_names, project, keep, batch
            )
        stream = relation.stream.key_by(key_of).process(function, name=self.node_name("group-aggregate"))
        return Relation(stream, columns, None, changelog=not batch)

    def distinct(self, relation: Relation) -> Relation:
        """``relation``'s distinct rows: a ``GROUP BY`` of all its columns, so an updating result
        (``+I`` of each new row; over an updating input, ``-D`` when its last copy goes).

        >>> from actorflow import Flow
        >>> from actorflow.sql.dialect import parse
        >>> flow = Flow("doc")
        >>> _ = flow.sql("CREATE TABLE t (n BIGINT) WITH ('connector' = 'jsonlines', 'path' = 'n.jsonl')")
        >>> planner = Planner(flow, flow._sql_session.catalog)
        >>> relation = planner.distinct(planner.query(parse("SELECT n % 2 AS odd FROM t")[0]))
        >>> relation.columns, relation.changelog
        ({'odd': SqlType(BIGINT)}, True)
        """
        table = self.bind(self.rows(relation), "distinct")
        names = [exp.column(name, quoted=True) for name in relation.columns]
        return self._select(exp.select(*names).from_(table).group_by(*(name.copy() for name in names)))

    def source(self, node: exp.Expression) -> tuple[Relation, WindowTableFunction | None]:
        if isinstance(node, exp.Table):
            return self.table_relation(node), None
        if isinstance(node, exp.Subquery):
            return self.query(node.this), None
        if isinstance(node, TableFunction) and isinstance(node.this, WindowTableFunction):
            window = node.this
            argument = window.this
            table = argument.this
            if argument.args.get("partition_by") and not isinstance(window, Session):
                raise error_at(argument, "PARTITION BY goes with SESSION windows")
            relation = self.table_relation(table) if isinstance(table, exp.Table) else self.query(table)
            if relation.changelog:
                raise error_at(
                    window,
                    f"{window.key.upper()} doesn't support consuming update changes, which its input "
                    "(an updating result: a GROUP BY without a window, a regular join, ...) produces",
                )
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

    def bind(self, relation: Relation, what: str) -> exp.Table:
        """A table name for ``relation`` in this planner's queries: a module that plans part of
        a query (a join) rewrites the rest as a query of that name and plans it as usual."""
        name = self.node_name(what)
        self._bound[name] = relation
        return exp.table_(exp.to_identifier(name, quoted=True))

    def table_relation(self, node: exp.Table) -> Relation:
        """The relation of a table, a view or a bound relation named in ``FROM``."""
        name = table_name(node)
        bound = self._bound.get(name)
        if bound is not None:
            return bound
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
        raw = RawScan(
            physical,
            dict(table.computed),
            read,
            complete,
            text_stamps=any(kind.is_timestamp for kind in physical.values()),
        )
        strategy = None
        if table.rowtime is not None:
            stamp = tolerant(
                compile_expression(
                    substitute(exp.column(table.rowtime), raw.computed), physical, functions=functions
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
        if connector(table).changelog:  # an upsert table: whole rows, each with its change
            whole = read_changes(read, complete)
            changes = stream.map(whole, name=self.node_name("changes"))
            return Relation(changes, dict(table.columns), None, changelog=True)
        return Relation(stream, dict(table.columns), table.rowtime, raw)

    def project(self, items: list[exp.Expression], relation: Relation) -> Relation:
        named = named_items(items, relation.columns)
        raw = relation.raw
        if raw is not None:
            function, columns = compile_projection(
                [(name, substitute(node, raw.computed)) for name, node in named],
                raw.physical,
                functions=self.catalog.functions,
            )
            function = tolerant(function, raw)
        else:
            function, columns = compile_projection(
                named, relation.columns, functions=self.catalog.functions
            )
        rowtime = _output_name(named, relation.rowtime)
        if relation.changelog:  # each change projected, keeping its kind
            function = keep_change(function)
        stream = _at_source(relation).map(function, name=self.node_name("select"))
        return Relation(stream, columns, rowtime, changelog=relation.changelog)

    # -- raw relations -------------------------------------------------------------------------

    def rows(self, relation: Relation) -> Relation:
        """``relation`` with whole rows (every column), as an operator that keeps them needs."""
        raw = relation.raw
        if raw is None:
            return relation
        # The table's row built straight from the record, read whole only if it lacks a field.
        whole = tolerant(raw.complete, raw)
        if relation.changelog:
            whole = keep_change(whole)
        stream = _at_source(relation).map(whole, name=self.node_name("columns"))
        return Relation(stream, relation.columns, relation.rowtime, changelog=relation.changelog)

    def compiler(self, relation: Relation, *, wrap: bool = True) -> Callable[[exp.Expression], Any]:
        """``compile(node)`` of an expression over ``relation``'s rows: a compiled expression whose
        function takes the relation's records (raw or whole)."""
        functions = self.catalog.functions
        raw = relation.raw
        if raw is None:
            return lambda node: compile_expression(node, relation.columns, functions=functions)

        def compile_raw(node: exp.Expression) -> Any:
            compiled = compile_expression(substitute(node, raw.computed), raw.physical, functions=functions)
            if not wrap:
                return compiled
            return dataclasses.replace(compiled, function=tolerant(compiled.function, raw))

        return compile_raw

    def on_rows(
        self, relation: Relation, node: exp.Expression, compile: Any
    ) -> Callable[[dict[str, Any]], Any]:
        """``compile(node, columns)`` (a filter) over ``relation``'s records."""
        functions = self.catalog.functions
        raw = relation.raw
        if raw is None:
            return compile(node, relation.columns, functions=functions)  # type: ignore[no-any-return]
        return tolerant(compile(substitute(node, raw.computed), raw.physical, functions=functions), raw)

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

        stream = relation.stream.flat_map(windows, name=self.node_name("window"))
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
        relation, parts = self.aggregation(select, relation, key_names)
        assigner = _assigner(window)
        if isinstance(assigner, SlidingEventTimeWindows) and assigner.size % assigner.slide:
            raise error_at(
                window,
                f"a HOP window aggregation needs a size ({assigner.size} ms) that is an integral "
                f"multiple of its slide ({assigner.slide} ms), as Flink requires",
            )
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
        base, key_of = self.key_of(base, key_names)
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
        named = named_items(parts.items, window_columns)
        calc, columns = compile_calc(named, parts.having, window_columns, functions=self.catalog.functions)
        # A select list of columns only (Q2's shape): the window's row is built directly.
        plain = parts.having is None and all(
            isinstance(node, exp.Column) and not node.table and node.name in window_columns
            for _, node in named
        )
        renames = [(name, node.name) for name, node in named] if plain else None
        stream = (
            base.stream.key_by(key_of)
            .window(assigner)
            .aggregate(
                Accumulate(parts.aggregates, relation.raw),
                WindowRow(key_names, len(parts.aggregates), calc, renames),
                name=self.node_name("window-aggregate"),
            )
        )
        return Relation(stream, columns, _output_name(named, "window_time"))

    def aggregation(
        self, select: exp.Select, relation: Relation, key_names: list[str]
    ) -> tuple[Relation, Aggregation]:
        """The aggregate calls of ``select`` (its list and HAVING), each compiled over
        ``relation``'s records; the list and HAVING with each call replaced by its column
        ``$a<i>``. ``relation`` comes back whole-rowed when a key is a computed column."""
        if relation.raw is not None and any(name in relation.raw.computed for name in key_names):
            relation = self.rows(relation)
        calls: list[exp.AggFunc] = []
        items = [replace_aggregates(item.copy(), calls) for item in select.expressions]
        having = select.args.get("having")
        having_node = replace_aggregates(having.this.copy(), calls) if having is not None else None
        compile_argument = self.compiler(relation, wrap=False)
        functions = self.catalog.functions
        aggregates = [Aggregate.of(call, relation.columns, functions, compile_argument) for call in calls]
        columns = {f"$a{index}": aggregate.type for index, aggregate in enumerate(aggregates)}
        return relation, Aggregation(aggregates, items, having_node, columns)


# -- helpers -----------------------------------------------------------------------------------------


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


def _inserted(row: dict[str, Any]) -> dict[str, Any]:
    """An append-only row as a change: an insert."""
    return {**row, CHANGE: "+I"}


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


def _output_name(named: list[tuple[str, exp.Expression]], column: str | None) -> str | None:
    """The output name of the first select item that is ``column`` itself (a time attribute
    kept by the select list), else None."""
    for name, node in named:
        if column is not None and isinstance(node, exp.Column) and node.name == column:
            return name
    return None


def _at_source(relation: Relation) -> DataStream[dict[str, Any]]:
    """The stream of ``relation`` for a per-record operator: over a scan's records, forward, so
    that it runs in its source's instances (chained, as Flink chains a Calc to its source) rather
    than behind a rebalance that would reorder the records and make more of them late."""
    return relation.stream.forward() if relation.raw is not None else relation.stream
