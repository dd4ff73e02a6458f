"""The ``kafka`` connector of actorflow's SQL: a table over a Kafka topic of JSON records.

Registered through the entry point group ``actorflow.sql.connectors`` (see pyproject.toml), so
``CREATE TABLE ... WITH ('connector' = 'kafka', ...)`` finds it when ``actorflow_kafka`` is
installed. Options, with Flink's names:

- ``topic``, ``properties.bootstrap.servers`` (required), ``properties.group.id``;
- ``format``: ``json`` (the only one; ``value.format`` is read too);
- ``scan.startup.mode``: ``group-offsets`` (the default with a group, else ``earliest-offset``),
  ``earliest-offset``, ``latest-offset``, or ``timestamp`` with ``scan.startup.timestamp-millis``;
- ``scan.bounded.mode``: ``latest-offset`` reads to the end offsets the topic had at the start, then
  ends (a topic read like a file); ``unbounded`` (the default) runs until stopped;
- as a sink: ``sink.partitioner`` is Kafka's default (by key: ``key.fields``, one column, else
  none); ``sink.delivery-guarantee`` ``at-least-once`` (the default) or ``none``: exactly once
  needs the DataStream API's ``KafkaSink(exactly_once=True)`` for now.
"""

from __future__ import annotations

from typing import Any

from actorflow.errors import SqlError
from actorflow.sql.catalog import SqlTable
from actorflow.sql.connectors import Connector, option
from actorflow_kafka.sink import KafkaSink
from actorflow_kafka.source import KafkaSource

__all__ = ["CONNECTOR", "KafkaConnector"]

_STARTS = {"earliest-offset": "earliest", "latest-offset": "latest", "group-offsets": "committed"}


class KafkaConnector(Connector):
    """A Kafka topic as a SQL table: a source (a consumer group's share of its partitions, or the
    whole topic), and a sink."""

    def source(self, flow: Any, table: SqlTable, watermarks: Any) -> Any:
        _json(table)
        group = table.options.get("properties.group.id")
        mode = option(table, "scan.startup.mode", "group-offsets" if group else "earliest-offset")
        start: Any
        if mode == "timestamp":
            start = int(option(table, "scan.startup.timestamp-millis"))
        elif mode in _STARTS:
            start = _STARTS[mode]
            if start == "committed" and group is None:
                raise _error(table, "'scan.startup.mode' = 'group-offsets' needs 'properties.group.id'")
        else:
            raise _error(
                table, f"'scan.startup.mode' = {mode!r}: one of {', '.join([*_STARTS, 'timestamp'])}"
            )
        bounded = option(table, "scan.bounded.mode", "unbounded")
        if bounded not in ("unbounded", "latest-offset"):
            raise _error(table, f"'scan.bounded.mode' = {bounded!r}: 'unbounded' or 'latest-offset'")
        source = KafkaSource(
            option(table, "topic"),
            bootstrap_servers=option(table, "properties.bootstrap.servers"),
            group_id=group,
            start=start,
            bounded=bounded == "latest-offset",
        )
        return flow.from_source(source, name=table.name, watermarks=watermarks)

    def sink(self, table: SqlTable, stream: Any, columns: list[str]) -> None:
        _json(table)
        guarantee = option(table, "sink.delivery-guarantee", "at-least-once")
        if guarantee not in ("at-least-once", "none"):
            raise _error(
                table,
                f"'sink.delivery-guarantee' = {guarantee!r} is not supported from SQL yet: "
                "'at-least-once' or 'none' (exactly once: the DataStream API's KafkaSink)",
            )
        keys = [key.strip() for key in table.options.get("key.fields", "").split(";") if key.strip()]
        if len(keys) > 1:
            raise _error(table, "'key.fields' takes one column for now")
        if keys and keys[0] not in columns:
            raise _error(table, f"'key.fields' = {keys[0]!r}: the table has no such column")
        stream.sink(
            KafkaSink(
                option(table, "topic"),
                bootstrap_servers=option(table, "properties.bootstrap.servers"),
                key=keys[0] if keys else None,
                create_topics=True,
            ),
            name=table.name,
        )


def _json(table: SqlTable) -> None:
    kind = table.options.get("format", table.options.get("value.format", "json"))
    if kind != "json":
        raise _error(table, f"'format' = {kind!r}: the kafka connector reads and writes 'json' for now")


def _error(table: SqlTable, message: str) -> SqlError:
    from actorflow.sql.accessors import error_at

    full = f"table {table.name!r}: {message}"
    return error_at(table.node, full) if table.node is not None else SqlError(full)


#: The object the entry point names.
CONNECTOR = KafkaConnector()
