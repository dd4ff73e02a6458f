"""SQL statements run against a flow: its catalog, and the pipelines its INSERTs add.

``flow.sql(script)`` runs each statement of ``script`` in order:

- ``CREATE TABLE`` (with ``WITH`` options: see :mod:`actorflow.sql.connectors`) and
  ``CREATE [TEMPORARY] VIEW`` register a table or a view; ``CREATE TEMPORARY FUNCTION f AS
  'module.function'`` a Python function (or ``flow.register_function(name, fn)``);
- ``INSERT INTO t SELECT ...`` and ``CREATE TABLE t WITH (...) AS SELECT ...`` add the query's
  operators and the table's sink to the flow (the flow runs them with ``execute()``/``run()``);
- ``SET 'key' = 'value'`` records an option; ``SHOW TABLES``, ``DESCRIBE t`` and ``EXPLAIN ...``
  return their lines.

``flow.sql_query("SELECT ...")`` returns the query's rows as a DataStream of dicts, to go on with
in Python.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from actorflow.errors import SqlError
from actorflow.sql.accessors import error_at, function_definition, parse_duration, set_option, table_name
from actorflow.sql.catalog import Catalog, SqlTable
from actorflow.sql.connectors import sink_rows
from actorflow.sql.dialect import parse
from actorflow.sql.nodes import Explain
from actorflow.sql.planner import CHANGE, Planner, Relation

if TYPE_CHECKING:
    from actorflow.api.flow import Flow
    from actorflow.api.stream import DataStream

__all__ = ["CHECKPOINT_OPTIONS", "SqlSession", "session_of"]

#: The options of ``SET`` that configure the flow's checkpoints (Flink's names).
CHECKPOINT_OPTIONS = (
    "execution.checkpointing.interval",
    "execution.checkpointing.dir",
    "state.checkpoints.dir",
)


class SqlSession:
    """The SQL side of one flow."""

    def __init__(self, flow: Flow, catalog: Catalog | None = None) -> None:
        self.flow = flow
        #: The tables, views and functions: the session's own, or one several flows share (the
        #: SQL client runs each query as a flow of its own over one catalog).
        self.catalog = catalog if catalog is not None else Catalog()
        self.planner = Planner(flow, self.catalog)

    def execute(self, script: str) -> list[str]:
        """Run every statement of ``script``; returns the lines SHOW, DESCRIBE and EXPLAIN give."""
        lines: list[str] = []
        for statement in parse(script):
            lines += self._statement(statement)
        return lines

    def query(self, text: str) -> DataStream[dict[str, Any]]:
        """The rows of one query."""
        statements = parse(text)
        if len(statements) != 1 or not isinstance(statements[0], exp.Query):
            raise SqlError("sql_query() takes one query (a SELECT)")
        return self.planner.rows(self.planner.query(statements[0])).stream

    def table_rows(self, name: str) -> DataStream[dict[str, Any]]:
        """The rows of table or view ``name``."""
        node = exp.to_identifier(name)
        query = exp.select("*").from_(exp.Table(this=node))
        return self.planner.rows(self.planner.query(query)).stream

    def register_stream(
        self, name: str, stream: DataStream[Any], columns: dict[str, str], rowtime: str | None
    ) -> None:
        """Register ``stream`` (dicts with ``columns``) as table ``name``; ``rowtime``: a column of
        each record's event timestamp, the time attribute."""
        from actorflow.operators.process import Context, ProcessFunction

        declared = ", ".join(f"`{column}` {kind}" for column, kind in columns.items())
        if rowtime is not None:
            if rowtime in columns:
                raise SqlError(f"to_table({name!r}): rowtime {rowtime!r} is a column already")
            declared += f", `{rowtime}` TIMESTAMP_LTZ(3)"
        create = parse(f"CREATE TABLE `{name}` ({declared}) WITH ('connector' = 'datastream')")[0]
        assert isinstance(create, exp.Create)
        table = self.catalog.create_table(create)
        if rowtime is not None:
            table.rowtime = column = rowtime

            class Stamp(ProcessFunction[dict[str, Any], dict[str, Any]]):
                def process_element(self, value: dict[str, Any], ctx: Context, out: Any) -> None:
                    out.collect({**value, column: ctx.timestamp})

            stream = stream.process(Stamp(), name=f"{name}.rowtime")
        table.stream = stream

    def _statement(self, statement: exp.Expression) -> list[str]:
        if isinstance(statement, exp.Create):
            return self._create(statement)
        if isinstance(statement, exp.Insert):
            target = statement.this
            if isinstance(target, exp.Schema):
                raise error_at(target, "INSERT INTO t (columns) is not supported yet: select them in order")
            table = self.catalog.table(table_name(target), target)
            if statement.args.get("overwrite"):
                raise error_at(statement, "INSERT OVERWRITE is not supported")
            self._insert(table, self.planner.rows(self.planner.query(statement.expression)), statement)
            return []
        if isinstance(statement, exp.Set):
            option = set_option(statement)
            if option is not None:
                self.catalog.options[option[0]] = option[1]
                if option[0] in CHECKPOINT_OPTIONS:
                    self._checkpointing(statement)
            return []
        if isinstance(statement, exp.Show):
            if statement.name.upper() != "TABLES":
                raise error_at(statement, f"SHOW {statement.name} is not supported yet")
            return self.catalog.names()
        if isinstance(statement, exp.Describe):
            table = self.catalog.table(table_name(statement.this), statement.this)
            return [f"{name} {kind}" for name, kind in table.columns.items()]
        if isinstance(statement, Explain):
            return self._explain(statement)
        if isinstance(statement, exp.Query):
            raise error_at(
                statement,
                "a SELECT on its own has nowhere to go in flow.sql(): INSERT INTO a table, or use "
                "flow.sql_query() for its rows",
            )
        raise error_at(statement, f"{statement.key.upper()} is not supported yet")

    def _checkpointing(self, statement: exp.Expression) -> None:
        """Flink's checkpoint options: ``'execution.checkpointing.interval'`` (a duration) and the
        directory (``'execution.checkpointing.dir'``, or Flink 1's ``'state.checkpoints.dir'``; a
        ``file://`` URI or a path), which turns checkpointing on."""
        options = self.catalog.options
        interval = options.get("execution.checkpointing.interval")
        interval_ms = parse_duration(interval) if interval is not None else None
        if interval is not None and not interval_ms:
            raise error_at(
                statement,
                f"'execution.checkpointing.interval' = {interval!r}: a duration "
                "('10 s', '1 min', '500 ms')",
            )
        directory = options.get("execution.checkpointing.dir", options.get("state.checkpoints.dir"))
        if directory is not None:
            if directory.startswith("file://"):
                directory = directory.removeprefix("file://")
            elif "://" in directory:
                raise error_at(statement, f"checkpoints go to a local directory, not {directory!r}")
            current = self.flow.checkpoint_config
            self.flow.enable_checkpointing(
                directory, timeout_ms=current.timeout_ms, min_pause_ms=current.min_pause_ms
            )
        self.flow.set_checkpoint_interval(interval_ms)

    def _create(self, create: exp.Create) -> list[str]:
        kind = create.args.get("kind")
        if kind == "TABLE":
            query = create.expression
            if isinstance(query, exp.Query):
                relation = self.planner.rows(self.planner.query(query))
                table = self.catalog.create_table(create, columns=relation.columns)
                self._insert(table, relation, create)
            else:
                self.catalog.create_table(create)
            return []
        if kind == "VIEW":
            query = create.expression
            if not isinstance(query, exp.Query):
                raise error_at(create, "CREATE VIEW needs AS SELECT ...")
            self.catalog.create_view(table_name(create.this), query, create)
            return []
        if kind == "FUNCTION":
            definition = function_definition(create)
            if definition.language not in (None, "PYTHON"):
                raise error_at(create, f"functions in {definition.language} are not supported: Python only")
            module, _, name = definition.target.rpartition(".")
            try:
                function = getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError, ValueError) as error:
                raise error_at(create, f"cannot load function {definition.target!r}: {error}") from None
            self.catalog.functions[definition.name.upper()] = function
            return []
        raise error_at(create, f"CREATE {kind} is not supported yet")

    def _insert(self, table: SqlTable, relation: Relation, node: exp.Expression) -> None:
        targets = list(table.physical) if table.physical else list(table.columns)
        if len(targets) != len(relation.columns):
            raise error_at(
                node,
                f"INSERT INTO {table.name}: the query has {len(relation.columns)} columns, the table "
                f"{len(targets)} ({', '.join(targets)})",
            )
        sources = list(relation.columns)
        for source, target in zip(sources, targets, strict=True):
            have, want = relation.columns[source], table.columns[target]
            if not have.assignable_to(want):
                raise error_at(
                    node, f"INSERT INTO {table.name}: column {target} is {want}, the query gives {have}"
                )
        stream = relation.stream
        if sources != targets:
            pairs = list(zip(targets, sources, strict=True))
            if relation.changelog:
                pairs.append((CHANGE, CHANGE))
            stream = stream.map(lambda row: {t: row[s] for t, s in pairs}, name=f"{table.name}.columns")
        sink_rows(
            table,
            stream,
            {name: table.columns[name] for name in targets},
            changelog=relation.changelog,
            node=node,
        )

    def _explain(self, statement: Explain) -> list[str]:
        inner = statement.this
        query = inner.expression if isinstance(inner, exp.Insert) else inner
        if not isinstance(query, exp.Query):
            raise error_at(statement, "EXPLAIN takes a query or an INSERT")
        from actorflow.api.flow import Flow

        scratch = Flow(f"{self.flow.name}-explain", parallelism=self.flow.parallelism)
        relation = Planner(scratch, self.catalog).query(query)
        relation.stream.collect(name="result")  # a sink, so that the plan is complete
        return [line for line in scratch.plan().describe().splitlines() if line]


def session_of(flow: Flow, catalog: Catalog | None = None) -> SqlSession:
    """The SQL session of ``flow``, made on first use (over ``catalog`` when given)."""
    session = getattr(flow, "_sql_session", None)
    if session is not None and catalog is not None and session.catalog is not catalog:
        raise SqlError(f"flow {flow.name!r} has a SQL session with another catalog already")
    if session is None:
        session = SqlSession(flow, catalog)
        flow._sql_session = session  # type: ignore[attr-defined]
    return session
