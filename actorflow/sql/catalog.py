"""The catalog of a flow's SQL: its tables, views and functions.

A **table** is what ``CREATE TABLE`` declared: its columns (physical ones read from each record,
computed ones evaluated from them), its time attribute and watermark, and the connector options
that say where its rows come from or go (see :mod:`actorflow.sql.connectors`). A table registered
from a DataStream carries that stream instead of options. A **view** is a
named query, planned again wherever it is used.

>>> from actorflow.sql.dialect import parse
>>> catalog = Catalog()
>>> table = catalog.create_table(parse("CREATE TABLE t (a INT, b STRING) WITH ('connector' = 'print')")[0])
>>> catalog.table("T") is table, table.columns
(True, {'a': SqlType(INT), 'b': SqlType(STRING)})
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from actorflow.errors import SqlError
from actorflow.sql.accessors import TableSchema, error_at, table_schema
from actorflow.sql.types import SqlType, sql_type

__all__ = ["Catalog", "SqlTable"]


@dataclass
class SqlTable:
    """A table of the catalog."""

    name: str
    #: Every column the table's rows have, in order, with its type (computed ones included).
    columns: dict[str, SqlType]
    #: The physical columns (read from the record), in order.
    physical: tuple[str, ...] = ()
    #: ``(name, expression)`` of the computed columns, in order.
    computed: tuple[tuple[str, exp.Expression], ...] = ()
    #: The time attribute (its values are event timestamps, epoch ms), or None.
    rowtime: str | None = None
    #: The watermark's delay behind the largest rowtime seen (``rowtime - INTERVAL ...``).
    watermark_delay_ms: int | None = None
    options: dict[str, str] = field(default_factory=dict)
    #: ``PRIMARY KEY (...) NOT ENFORCED``: the columns that identify a row (an upsert table's key).
    primary_key: tuple[str, ...] = ()
    #: A table registered from a DataStream: that stream (its rows are dicts).
    stream: Any = None
    #: Where the table was declared, for errors.
    node: exp.Expression | None = None


class Catalog:
    """Tables, views and functions by (case-insensitive) name."""

    def __init__(self) -> None:
        self._tables: dict[str, SqlTable] = {}
        self._views: dict[str, exp.Query] = {}
        self._names: dict[str, str] = {}
        #: User functions by upper-case name.
        self.functions: dict[str, Callable[..., Any]] = {}
        #: ``SET 'key' = 'value'`` options.
        self.options: dict[str, str] = {}

    def _free(self, name: str, node: exp.Expression) -> None:
        if name.lower() in self._names:
            raise error_at(node, f"a table or view named {self._names[name.lower()]!r} exists already")

    def create_table(self, create: exp.Create, *, columns: dict[str, SqlType] | None = None) -> SqlTable:
        """Register the table ``create`` declares (``columns``: the schema of a CTAS query)."""
        schema = table_schema(create)
        if schema.if_not_exists and schema.name.lower() in self._names:
            return self.table(schema.name)
        self._free(schema.name, create)
        table = self._from_schema(schema, create, columns)
        self._add(table)
        return table

    def _from_schema(
        self, schema: TableSchema, node: exp.Expression, query_columns: dict[str, SqlType] | None
    ) -> SqlTable:
        from actorflow.sql.accessors import interval_millis
        from actorflow.sql.expressions import compile_expression

        if schema.like is not None:
            raise error_at(node, "CREATE TABLE ... LIKE is not supported yet")
        columns: dict[str, SqlType] = {}
        physical = []
        computed = []
        if query_columns is not None and schema.physical:
            raise error_at(node, "CREATE TABLE ... AS SELECT takes its columns from the query")
        for column in schema.columns:
            if column.metadata is not None:
                raise error_at(column.type or node, f"metadata column {column.name!r} is not supported yet")
            if column.name in columns:
                raise error_at(node, f"column {column.name!r} is declared twice")
            if column.expression is not None:
                compiled = compile_expression(column.expression, columns, functions=self.functions)
                columns[column.name] = compiled.type
                computed.append((column.name, column.expression))
            else:
                assert column.type is not None
                columns[column.name] = sql_type(column.type)
                physical.append(column.name)
        if query_columns is not None:
            columns = dict(query_columns)
            physical = list(query_columns)
        for key in schema.primary_key:
            if key not in physical:
                raise error_at(
                    node,
                    f"PRIMARY KEY ({', '.join(schema.primary_key)}): {key!r} is no physical column "
                    f"(columns: {', '.join(physical)})",
                )
        rowtime = delay = None
        if schema.watermark is not None:
            rowtime, expression = schema.watermark
            if rowtime not in columns:
                raise error_at(expression, f"WATERMARK FOR {rowtime!r}: no such column")
            if not columns[rowtime].is_timestamp:
                raise error_at(
                    expression,
                    f"WATERMARK FOR {rowtime!r}: the column must be a TIMESTAMP(3) or TIMESTAMP_LTZ(3), "
                    f"not {columns[rowtime]}",
                )
            delay = _watermark_delay(rowtime, expression, interval_millis)
        return SqlTable(
            schema.name,
            columns,
            tuple(physical),
            tuple(computed),
            rowtime,
            delay,
            dict(schema.options),
            schema.primary_key,
            node=node,
        )

    def _add(self, table: SqlTable) -> None:
        self._tables[table.name.lower()] = table
        self._names[table.name.lower()] = table.name

    def create_view(self, name: str, query: exp.Query, node: exp.Expression) -> None:
        self._free(name, node)
        self._views[name.lower()] = query
        self._names[name.lower()] = name

    def table(self, name: str, node: exp.Expression | None = None) -> SqlTable:
        """The table ``name``; raises :class:`SqlError` (at ``node``) if there is none."""
        found = self._tables.get(name.lower())
        if found is None:
            message = f"unknown table {name!r}" + (
                f" (tables: {', '.join(sorted(self._names.values()))})" if self._names else ""
            )
            raise error_at(node, message) if node is not None else SqlError(message)
        return found

    def view(self, name: str) -> exp.Query | None:
        return self._views.get(name.lower())

    def names(self) -> list[str]:
        """Every table and view name, sorted."""
        return sorted(self._names.values())


def _watermark_delay(rowtime: str, expression: exp.Expression, interval_millis: Any) -> int:
    """The delay of ``WATERMARK FOR rowtime AS rowtime [- INTERVAL ...]``."""
    if isinstance(expression, exp.Column) and expression.name == rowtime:
        return 0
    if (
        isinstance(expression, exp.Sub)
        and isinstance(expression.this, exp.Column)
        and expression.this.name == rowtime
        and isinstance(expression.expression, exp.Interval)
    ):
        return int(interval_millis(expression.expression))
    raise error_at(
        expression,
        f"a watermark is `{rowtime}` or `{rowtime} - INTERVAL '...' SECOND` (bounded out of order): "
        f"{expression.sql()!r} is not supported",
    )
