"""Connectors: where a SQL table's rows come from and where a query's rows go.

``WITH ('connector' = ...)`` names one:

- ``jsonlines`` (``'path' = 'file.jsonl'``): a JSON-lines file, read as a bounded source (each line
  a row; its fields are the physical columns) and written as a sink, exactly once with
  ``'sink.exactly-once' = 'true'`` (on checkpoints, or at the end of the input);
- ``print``: each row on stdout as Flink prints it, ``+I[v1, v2, ...]`` (``'print-identifier'``
  puts a prefix in front); it takes updating results (``-U``, ``+U``, ``-D`` rows);
- ``datagen``: made-up rows, as Flink's DataGen source makes them (see :mod:`actorflow.sql.datagen`).

Other packages add connectors through the entry point group ``actorflow.sql.connectors`` (a name
and a :class:`Connector` object): ``actorflow_kafka`` adds ``kafka`` that way, so this layer
imports nothing above it.

Timestamps are epoch milliseconds inside a flow and written as ``2023-11-14 22:13:20.000``.

>>> print_row(["a", 7, None])
'+I[a, 7, NULL]'
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from actorflow.errors import SqlError
from actorflow.sql.accessors import error_at
from actorflow.sql.relation import CHANGE
from actorflow.sql.types import SqlType, format_timestamp

if TYPE_CHECKING:
    from actorflow.api.flow import Flow
    from actorflow.api.stream import DataStream
    from actorflow.sql.catalog import SqlTable

__all__ = ["Connector", "connector", "print_row", "sink_rows", "source_rows"]

#: The entry point group through which other packages add connectors.
ENTRY_POINTS = "actorflow.sql.connectors"


class Connector:
    """A connector: a source, a sink, or both (override what it is)."""

    #: Whether its sink takes updating results (rows with ``"$change"``).
    updating = False
    #: Whether its source gives a changelog: records with ``"$change"`` (``+I``, ``-U``, ``+U``,
    #: ``-D``) beside the physical columns, as an upsert table's (the planner's relation of such a
    #: table is an updating result).
    changelog = False

    def source(self, flow: Flow, table: SqlTable, watermarks: Any) -> DataStream[dict[str, Any]]:
        """The records of ``table`` (dicts whose fields are its physical columns), stamped by
        ``watermarks``."""
        raise _error(table, f"table {table.name!r}: connector {table.options['connector']!r} is no source")

    def sink(self, table: SqlTable, stream: DataStream[dict[str, Any]], columns: list[str]) -> None:
        """Write ``stream`` (dicts with ``columns``, timestamps as text) to ``table``."""
        raise _error(table, f"table {table.name!r}: connector {table.options['connector']!r} is no sink")


class _JsonLines(Connector):
    def source(self, flow: Flow, table: SqlTable, watermarks: Any) -> DataStream[dict[str, Any]]:
        return flow.from_json_lines(option(table, "path"), name=table.name, watermarks=watermarks)

    def sink(self, table: SqlTable, stream: DataStream[dict[str, Any]], columns: list[str]) -> None:
        exactly_once = table.options.get("sink.exactly-once", "false").lower() == "true"
        stream.sink_to_json_lines(option(table, "path"), exactly_once=exactly_once, name=table.name)


class _Print(Connector):
    updating = True

    def sink(self, table: SqlTable, stream: DataStream[dict[str, Any]], columns: list[str]) -> None:
        prefix = table.options.get("print-identifier")
        lead = f"{prefix}> " if prefix else ""
        stream.map(
            lambda row: lead + print_row([row[n] for n in columns], row.get("$change", "+I")),
            name=f"{table.name}.format",
        ).print(name=table.name)


class _DataGen(Connector):
    def source(self, flow: Flow, table: SqlTable, watermarks: Any) -> DataStream[dict[str, Any]]:
        from actorflow.sql.datagen import datagen_source

        return flow.from_source(datagen_source(table), name=table.name, watermarks=watermarks)


_BUILT_IN: dict[str, Connector] = {"jsonlines": _JsonLines(), "print": _Print(), "datagen": _DataGen()}


def connector(table: SqlTable) -> Connector:
    """The connector ``table``'s options name (built in, or from an entry point)."""
    name = table.options.get("connector")
    if name is None:
        raise _error(table, f"table {table.name!r} has no 'connector' option")
    found = _BUILT_IN.get(name)
    if found is not None:
        return found
    plugins = {point.name: point for point in entry_points(group=ENTRY_POINTS)}
    point = plugins.get(name)
    if point is None:
        known = sorted({*_BUILT_IN, *plugins})
        raise _error(
            table, f"table {table.name!r}: unknown connector {name!r} (connectors: {', '.join(known)})"
        )
    try:
        loaded = point.load()
    except ImportError as error:
        raise _error(
            table, f"table {table.name!r}: connector {name!r} needs {error.name}: {error}"
        ) from None
    if not isinstance(loaded, Connector):
        raise TypeError(f"entry point {point.value} is not an actorflow.sql Connector")
    return loaded


def _error(table: SqlTable, message: str) -> SqlError:
    return error_at(table.node, message) if table.node is not None else SqlError(message)


def option(table: SqlTable, key: str, default: str | None = None) -> str:
    """Option ``key`` of ``table`` (``default`` when absent); raises :class:`SqlError` naming it
    when it is absent without one."""
    value = table.options.get(key, default)
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
    return connector(table).source(flow, table, watermarks)


def read_changes(
    read: Callable[[dict[str, Any]], dict[str, Any]], complete: Callable[[dict[str, Any]], dict[str, Any]]
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The whole row of a changelog source's record (``complete(read(record))``), its change kept.

    >>> whole = read_changes(lambda r: {"a": r["a"]}, lambda r: {**r, "b": r["a"] * 2})
    >>> whole({"a": 2, "$change": "+U"})
    {'a': 2, 'b': 4, '$change': '+U'}
    """

    def whole(record: dict[str, Any]) -> dict[str, Any]:
        row = complete(read(record))
        row[CHANGE] = record[CHANGE]
        return row

    return whole


def keep_change(
    function: Callable[[dict[str, Any]], dict[str, Any]],
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """``function`` of a changelog's rows, the change of each row kept in its result.

    >>> keep_change(lambda row: {"n": row["n"] + 1})({"n": 1, "$change": "-U"})
    {'n': 2, '$change': '-U'}
    """

    def changed(row: dict[str, Any]) -> dict[str, Any]:
        out = function(row)
        out[CHANGE] = row[CHANGE]
        return out

    return changed


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
    sink = connector(table)
    if changelog and not sink.updating:
        message = (
            f"table sink {table.name!r} ({table.options['connector']}) doesn't support consuming "
            "update changes, which the query produces (an updating result: a GROUP BY without a "
            "window, DISTINCT, a regular join, Top-N; use an upsert-kafka or print sink, or SET "
            "'execution.runtime-mode' = 'batch' on bounded input)"
        )
        raise error_at(node, message) if node is not None else _error(table, message)
    stamps = [name for name, kind in columns.items() if kind.is_timestamp]
    if stamps:

        def external(row: dict[str, Any]) -> dict[str, Any]:
            out = dict(row)
            for name in stamps:
                if out[name] is not None:
                    out[name] = format_timestamp(out[name])
            return out

        stream = stream.map(external, name=f"{table.name}.timestamps")
    sink.sink(table, stream, list(columns))
