"""Connectors: where a SQL table's rows come from and where a query's rows go.

``WITH ('connector' = ...)`` names one:

- ``jsonlines`` (``'path' = 'file.jsonl'``): a JSON-lines file, read as a bounded source (each line
  a row; its fields are the physical columns) and written as a sink, exactly once with
  ``'sink.exactly-once' = 'true'`` (on checkpoints, or at the end of the input);
- ``print``: each row on stdout as Flink prints it, ``+I[v1, v2, ...]`` (``'print-identifier'``
  puts a prefix in front).

Timestamps are epoch milliseconds inside a flow and written as ``2023-11-14 22:13:20.000``.

>>> print_row(["a", 7, None])
'+I[a, 7, NULL]'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actorflow.errors import SqlError
from actorflow.sql.accessors import error_at
from actorflow.sql.types import SqlType, format_timestamp

if TYPE_CHECKING:
    from actorflow.api.flow import Flow
    from actorflow.api.stream import DataStream
    from actorflow.sql.catalog import SqlTable

__all__ = ["SINKS", "SOURCES", "UPDATING_SINKS", "print_row", "sink_rows", "source_rows"]

SOURCES = ("jsonlines",)
SINKS = ("jsonlines", "print")
#: Sinks that take an updating result (a changelog).
UPDATING_SINKS = ("print",)


def _connector(table: SqlTable, kinds: tuple[str, ...], role: str) -> str:
    connector = table.options.get("connector")
    if connector is None:
        raise _error(table, f"table {table.name!r} has no 'connector' option")
    if connector not in kinds:
        raise _error(
            table,
            f"table {table.name!r}: connector {connector!r} cannot be a {role} "
            f"(a {role} here: {', '.join(kinds)})",
        )
    return connector


def _error(table: SqlTable, message: str) -> SqlError:
    return error_at(table.node, message) if table.node is not None else SqlError(message)


def _option(table: SqlTable, key: str) -> str:
    value = table.options.get(key)
    if value is None:
        raise _error(
            table, f"table {table.name!r}: the {table.options.get('connector')} connector needs {key!r}"
        )
    return value


def source_rows(flow: Flow, table: SqlTable, watermarks: Any) -> DataStream[dict[str, Any]]:
    """The rows of source table ``table`` as a stream of dicts (physical columns only), stamped
    by ``watermarks``."""
    if table.stream is not None:
        return table.stream  # type: ignore[no-any-return]
    _connector(table, SOURCES, "source")
    return flow.from_json_lines(_option(table, "path"), name=table.name, watermarks=watermarks)


def print_row(values: list[Any], change: str = "+I") -> str:
    """A row as Flink's print connector shows it, with its change (``+I``, ``-U``, ``+U``,
    ``-D``)."""
    return change + "[" + ", ".join("NULL" if value is None else str(value) for value in values) + "]"


def sink_rows(
    table: SqlTable,
    stream: DataStream[dict[str, Any]],
    columns: dict[str, SqlType],
    *,
    changelog: bool = False,
    node: Any = None,
) -> None:
    """Write ``stream`` (rows with ``columns``, in the sink table's column order) to ``table``;
    ``changelog``: the rows are changes (``row["$change"]``), which only some sinks take."""
    connector = _connector(table, SINKS, "sink")
    if changelog and connector not in UPDATING_SINKS:
        message = (
            f"table sink {table.name!r} ({connector}) doesn't support consuming update changes, "
            "which a GROUP BY without a window produces (use a window, the print connector, or "
            "SET 'execution.runtime-mode' = 'batch' on bounded input)"
        )
        raise error_at(node, message) if node is not None else _error(table, message)
    names = list(columns)
    stamps = [name for name, kind in columns.items() if kind.is_timestamp]

    def external(row: dict[str, Any]) -> dict[str, Any]:
        if not stamps:
            return row
        out = dict(row)
        for name in stamps:
            if out[name] is not None:
                out[name] = format_timestamp(out[name])
        return out

    if connector == "print":
        prefix = table.options.get("print-identifier")
        lead = f"{prefix}> " if prefix else ""
        stream.map(
            lambda row: lead + print_row([external(row)[n] for n in names], row.get("$change", "+I")),
            name=f"{table.name}.format",
        ).print(name=table.name)
        return
    exactly_once = table.options.get("sink.exactly-once", "false").lower() == "true"
    stream.map(external, name=f"{table.name}.format").sink_to_json_lines(
        _option(table, "path"), exactly_once=exactly_once, name=table.name
    )
