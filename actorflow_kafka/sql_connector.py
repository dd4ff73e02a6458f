"""The ``kafka`` and ``upsert-kafka`` connectors of actorflow's SQL: tables over Kafka topics of JSON.

Registered through the entry point group ``actorflow.sql.connectors`` (see pyproject.toml), so
``CREATE TABLE ... WITH ('connector' = 'kafka', ...)`` finds them when ``actorflow_kafka`` is
installed. Options, with Flink's names.

``kafka``, a topic of rows (append only):

- ``topic``, ``properties.bootstrap.servers`` (required), ``properties.group.id``;
- ``format``: ``json`` (the only one; ``value.format`` is read too);
- ``scan.startup.mode``: ``group-offsets`` (the default with a group, else ``earliest-offset``),
  ``earliest-offset``, ``latest-offset``, or ``timestamp`` with ``scan.startup.timestamp-millis``;
- ``scan.bounded.mode``: ``latest-offset`` reads to the end offsets the topic had at the start, then
  ends (a topic read like a file); ``unbounded`` (the default) runs until stopped;
- as a sink: ``sink.partitioner`` is Kafka's default (by key: ``key.fields``, one column, else
  none); ``sink.delivery-guarantee``: ``at-least-once`` (the default), ``none``, or
  ``exactly-once`` with ``sink.transactional-id-prefix``: the DataStream API's transactional
  :class:`~actorflow_kafka.KafkaSink`, which commits on checkpoints together with the offsets of
  the query's Kafka source (so the query must read one ``kafka`` table with a
  ``properties.group.id``, and the flow must take checkpoints).

``upsert-kafka``, a topic of the latest row per key (a table with ``PRIMARY KEY (...) NOT
ENFORCED``), ``key.format`` and ``value.format`` ``json``:

- as a sink it takes an updating result: ``+I`` and ``+U`` write the row (key: JSON of the primary
  key's columns, value: JSON of the row), ``-D`` a tombstone (the key, a null value); ``-U`` is
  dropped, as the next ``+U`` of the key replaces it. Rows are keyed by the primary key on the
  way, so a key's changes stay in order. ``sink.delivery-guarantee`` as for ``kafka``;
- as a source it reads the topic from its start as a changelog: per key the first value is
  ``+I``, a later one ``-U`` (the row before) and ``+U``, a tombstone ``-D`` (of the row before,
  if the key had one); a value equal to the key's current row changes nothing. The row per key
  is keyed state (Flink's ChangelogNormalize), so it is checkpointed. ``scan.bounded.mode`` as for
  ``kafka``.

>>> from actorflow import Flow, SqlError
>>> try:
...     Flow("docs").sql(
...         "CREATE TABLE totals (card STRING, n BIGINT) WITH ('connector' = 'upsert-kafka', "
...         "'topic' = 'totals', 'properties.bootstrap.servers' = '127.0.0.1:9092', "
...         "'key.format' = 'json', 'value.format' = 'json');"
...         "CREATE TABLE tx (card STRING) WITH ('connector' = 'datagen');"
...         "INSERT INTO totals SELECT card, COUNT(*) FROM tx GROUP BY card;"
...     )
... except SqlError as error:
...     print(error)
line 1, column 14: table 'totals': the upsert-kafka connector needs a PRIMARY KEY (...) NOT ENFORCED
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from actorflow import Context, KeyedProcessFunction, RuntimeContext, ValueState, ValueStateDescriptor
from actorflow.api.nodes import inputs_of
from actorflow.errors import CheckpointError, SqlError
from actorflow.operators.base import OperatorContext
from actorflow.sql.catalog import SqlTable
from actorflow.sql.connectors import Connector, option
from actorflow.sql.planner import CHANGE
from actorflow_kafka.records import KafkaRecord
from actorflow_kafka.sink import KafkaSink
from actorflow_kafka.source import KafkaSource

__all__ = ["CONNECTOR", "UPSERT_CONNECTOR", "ChangelogNormalize", "KafkaConnector", "UpsertKafkaConnector"]

_STARTS = {"earliest-offset": "earliest", "latest-offset": "latest", "group-offsets": "committed"}
_GUARANTEES = ("at-least-once", "none", "exactly-once")
#: Per flow, the transactional ids its exactly-once SQL sinks took (each sink needs its own).
_TRANSACTIONAL_IDS: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


class KafkaConnector(Connector):
    """A Kafka topic as a SQL table: a source (a consumer group's share of its partitions, or the
    whole topic), and a sink."""

    def source(self, flow: Any, table: SqlTable, watermarks: Any) -> Any:
        _json(table, "format", "value.format")
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
        source = KafkaSource(
            option(table, "topic"),
            bootstrap_servers=option(table, "properties.bootstrap.servers"),
            group_id=group,
            start=start,
            bounded=_bounded(table),
        )
        return flow.from_source(source, name=table.name, watermarks=watermarks)

    def sink(self, table: SqlTable, stream: Any, columns: list[str]) -> None:
        _json(table, "format", "value.format")
        keys = [key.strip() for key in table.options.get("key.fields", "").split(";") if key.strip()]
        if len(keys) > 1:
            raise _error(table, "'key.fields' takes one column for now")
        if keys and keys[0] not in columns:
            raise _error(table, f"'key.fields' = {keys[0]!r}: the table has no such column")
        stream.sink(
            _kafka_sink(table, stream, key=keys[0] if keys else None, key_serializer="str"),
            name=table.name,
        )


class UpsertKafkaConnector(Connector):
    """A Kafka topic as an upsert table: the latest row per primary key (see the module docstring).

    >>> UPSERT_CONNECTOR.updating, UPSERT_CONNECTOR.changelog
    (True, True)
    """

    updating = True
    changelog = True

    def source(self, flow: Any, table: SqlTable, watermarks: Any) -> Any:
        keys = _upsert_formats(table)
        source = KafkaSource(
            option(table, "topic"),
            bootstrap_servers=option(table, "properties.bootstrap.servers"),
            group_id=table.options.get("properties.group.id"),
            start="earliest",  # a changelog is read from its start: every key's latest row
            bounded=_bounded(table),
            with_metadata=True,
            key_deserializer="json",
        )
        records = flow.from_source(source, name=table.name)
        changes = records.key_by(_record_key(table.name, keys)).process(
            ChangelogNormalize(), name=f"{table.name}.normalize"
        )
        if watermarks is not None:
            changes = changes.assign_timestamps_and_watermarks(watermarks)
        return changes

    def sink(self, table: SqlTable, stream: Any, columns: list[str]) -> None:
        keys = _upsert_formats(table)
        key = _row_key(keys)

        def value(row: dict[str, Any]) -> dict[str, Any] | None:
            return None if row.get(CHANGE) == "-D" else {name: row[name] for name in columns}

        changes = stream.filter(lambda row: row.get(CHANGE) != "-U", name=f"{table.name}.upserts")
        changes.key_by(key).sink(
            _kafka_sink(
                table,
                changes,
                key=lambda row: {name: row[name] for name in keys},
                value=value,
                key_serializer="json",
            ),
            name=table.name,
        )


class ChangelogNormalize(KeyedProcessFunction[KafkaRecord, dict[str, Any]]):
    """Upsert records (the latest value of a key, None for a tombstone) to a changelog, per key:
    the first value ``+I``, a later one ``-U`` (the row before) and ``+U``, a tombstone ``-D``
    (of the row before, if the key has one); a value equal to the current row changes nothing.
    The current row is keyed state (Flink's ChangelogNormalize)."""

    def open(self, ctx: RuntimeContext) -> None:
        self.current: ValueState[dict[str, Any] | None] = ctx.get_state(ValueStateDescriptor("row"))

    def process_element(self, value: KafkaRecord, ctx: Context, out: Any) -> None:
        before = self.current.value()
        row = value.value
        if row is None:
            if before is not None:
                self.current.clear()
                out.collect({**before, CHANGE: "-D"})
            return
        if not isinstance(row, dict):
            raise ValueError(
                f"upsert-kafka: the record at {value.topic}/{value.partition}@{value.offset} is no "
                f"JSON object: {row!r}"
            )
        if before == row:
            return
        self.current.update(row)
        if before is None:
            out.collect({**row, CHANGE: "+I"})
        else:
            out.collect({**before, CHANGE: "-U"})
            out.collect({**row, CHANGE: "+U"})


class _SqlKafkaSink(KafkaSink):
    """An exactly-once sink of a SQL table: the same, with a refusal that names the table."""

    table_name = ""

    async def open_async(self, context: OperatorContext) -> None:
        if self.exactly_once and not context.checkpointing:
            raise CheckpointError(
                f"table {self.table_name!r}: 'sink.delivery-guarantee' = 'exactly-once' commits on "
                "checkpoints: enable them (flow.enable_checkpointing(), actorflow sql --checkpoint-dir)"
            )
        await super().open_async(context)


def _kafka_sink(table: SqlTable, stream: Any, **options: Any) -> KafkaSink:
    """The sink of ``table`` with its delivery guarantee (exactly once: transactional, committing
    with the offsets of the query's one Kafka source)."""
    guarantee = option(table, "sink.delivery-guarantee", "at-least-once")
    if guarantee not in _GUARANTEES:
        raise _error(table, f"'sink.delivery-guarantee' = {guarantee!r}: one of {', '.join(_GUARANTEES)}")
    if guarantee == "exactly-once":
        prefix = table.options.get("sink.transactional-id-prefix")
        if not prefix:
            raise _error(
                table,
                "'sink.delivery-guarantee' = 'exactly-once' needs 'sink.transactional-id-prefix' "
                "(the same across restarts of the job, used by no other job)",
            )
        taken = _TRANSACTIONAL_IDS.setdefault(stream.flow, set())
        transactional_id = f"{prefix}-{table.name}"
        while transactional_id in taken:  # a second INSERT INTO the table: a sink of its own
            transactional_id = f"{prefix}-{table.name}-{len(taken)}"
        offsets_of = _kafka_input(table, stream)
        try:
            sink = _SqlKafkaSink(
                option(table, "topic"),
                bootstrap_servers=option(table, "properties.bootstrap.servers"),
                create_topics=True,
                exactly_once=True,
                transactional_id=transactional_id,
                offsets_of=offsets_of,
                **options,
            )
        except ValueError as error:  # the source commits another exactly-once sink's offsets
            raise _error(table, f"'sink.delivery-guarantee' = 'exactly-once': {error}") from None
        taken.add(transactional_id)
        sink.table_name = table.name
        return sink
    return KafkaSink(
        option(table, "topic"),
        bootstrap_servers=option(table, "properties.bootstrap.servers"),
        create_topics=True,
        **options,
    )


def _kafka_input(table: SqlTable, stream: Any) -> KafkaSource:
    """The one Kafka source (with a group) ``stream`` reads, whose offsets an exactly-once sink
    commits with its results; raises :class:`SqlError` if the query reads anything else."""
    sources = []
    seen: set[int] = set()
    pending = [node for node, _ in inputs_of(stream)]  # the graph upstream of the stream
    while pending:
        node = pending.pop()
        if node.id in seen:
            continue
        seen.add(node.id)
        if node.source is not None:
            sources.append(node.source)
        pending += [edge.upstream for edge in node.inputs]
    kafka = [source for source in sources if isinstance(source, KafkaSource) and source.group_id]
    if len(sources) != 1 or len(kafka) != 1:
        read = ", ".join(sorted(source.describe() for source in sources)) or "nothing"
        raise _error(
            table,
            "'sink.delivery-guarantee' = 'exactly-once' needs a query that reads one kafka table with "
            f"'properties.group.id' (its offsets commit with the results), not {read}",
        )
    return kafka[0]


def _upsert_formats(table: SqlTable) -> tuple[str, ...]:
    """The primary key of upsert-kafka table ``table``, after checking its formats."""
    if not table.primary_key:
        raise _error(table, "the upsert-kafka connector needs a PRIMARY KEY (...) NOT ENFORCED")
    for key in ("key.format", "value.format"):
        if key not in table.options:
            raise _error(table, f"the upsert-kafka connector needs {key!r} ('json')")
        _json(table, key)
    return table.primary_key


def _row_key(keys: tuple[str, ...]) -> Callable[[dict[str, Any]], Any]:
    if len(keys) == 1:
        (only,) = keys
        return lambda row: row[only]
    return lambda row: tuple(row[name] for name in keys)


def _record_key(table: str, keys: tuple[str, ...]) -> Callable[[KafkaRecord], Any]:
    """A record's primary key: from its Kafka key (a JSON object of the key's columns), else
    (no key) from its value."""

    def key_of(record: KafkaRecord) -> Any:
        found = record.key if isinstance(record.key, dict) else record.value
        if not isinstance(found, dict) or any(name not in found for name in keys):
            raise ValueError(
                f"table {table!r}: the record at {record.topic}/{record.partition}@{record.offset} "
                f"has no key with the primary key's columns ({', '.join(keys)}): {record.key!r}"
            )
        return found[keys[0]] if len(keys) == 1 else tuple(found[name] for name in keys)

    return key_of


def _bounded(table: SqlTable) -> bool:
    bounded = option(table, "scan.bounded.mode", "unbounded")
    if bounded not in ("unbounded", "latest-offset"):
        raise _error(table, f"'scan.bounded.mode' = {bounded!r}: 'unbounded' or 'latest-offset'")
    return bounded == "latest-offset"


def _json(table: SqlTable, *keys: str) -> None:
    for key in keys:
        kind = table.options.get(key, "json")
        if kind != "json":
            raise _error(
                table,
                f"{key!r} = {kind!r}: the {table.options['connector']} connector reads and writes "
                "'json' for now",
            )


def _error(table: SqlTable, message: str) -> SqlError:
    from actorflow.sql.accessors import error_at

    full = f"table {table.name!r}: {message}"
    return error_at(table.node, full) if table.node is not None else SqlError(full)


#: The objects the entry points name.
CONNECTOR = KafkaConnector()
UPSERT_CONNECTOR = UpsertKafkaConnector()
