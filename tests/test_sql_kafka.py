"""SQL over Kafka topics (against the real broker): a ``kafka`` table over a topic of JSON
transactions read to its end (``'scan.bounded.mode' = 'latest-offset'``), a TUMBLE window
aggregation and a filter written to topics, what a reader sees equal to DuckDB's answer; an updating
result into ``upsert-kafka`` (keys, tombstones) and read back as a changelog; an exactly-once
``kafka`` sink whose ``read_committed`` reader sees each row once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from actorflow import Flow
from actorflow.errors import CheckpointError, SqlError
from actorflow_kafka.records import KafkaRecord
from actorflow_kafka.sql_connector import ChangelogNormalize
from benchmarks.generate import generate
from benchmarks.scale import read_partitions
from tests.kafka_fixtures import KafkaEndpoint, TopicFactory
from tests.kafka_helpers import produce_json
from tests.test_sql import oracle, same_rows

pytest.importorskip("duckdb")


def kafka_table(name: str, topic: str, servers: str, columns: str, extra: str = "") -> str:
    return (
        f"CREATE TABLE {name} ({columns}) WITH ('connector' = 'kafka', 'topic' = '{topic}', "
        f"'properties.bootstrap.servers' = '{servers}', 'format' = 'json'{extra});"
    )


async def test_a_window_aggregation_and_a_filter_from_a_topic_to_topics(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory
) -> None:
    servers = kafka_broker.bootstrap_servers
    source = await kafka_topic(partitions=1)
    windows, large = await kafka_topic(partitions=1), await kafka_topic(partitions=1)
    rows = sorted((dict(tx) for tx in generate(1_500, seed=8, cards=20)), key=lambda r: r["ts"])
    await produce_json(servers, source, rows)
    flow = Flow("sql-kafka")
    flow.sql(
        kafka_table(
            "tx", source, servers,
            "tx_id BIGINT, card_id STRING, merchant_id STRING, amount DOUBLE, ts BIGINT, "
            "rowtime AS TO_TIMESTAMP_LTZ(ts, 3), WATERMARK FOR rowtime AS rowtime - INTERVAL '2' SECOND",
            ", 'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset'",
        )
        + kafka_table("per_card", windows, servers,
                      "card_id STRING, window_start TIMESTAMP_LTZ(3), n BIGINT",
                      ", 'key.fields' = 'card_id'")
        + kafka_table("large", large, servers, "tx_id BIGINT, amount DOUBLE")
        + """
        INSERT INTO per_card SELECT card_id, window_start, COUNT(*)
          FROM TABLE(TUMBLE(TABLE tx, DESCRIPTOR(rowtime), INTERVAL '10' SECOND))
          GROUP BY card_id, window_start, window_end;
        INSERT INTO large SELECT tx_id, amount FROM tx WHERE amount > 500;
        """
    )  # fmt: skip
    await flow.run()
    got_windows = [v for values in (await read_partitions(servers, windows)).values() for v in values]
    got_large = [v for values in (await read_partitions(servers, large)).values() for v in values]
    expected = oracle(
        rows,
        "SELECT card_id, strftime(make_timestamp((ts - ts % 10000) * 1000), '%Y-%m-%d %H:%M:%S.%g') "
        "AS window_start, COUNT(*) AS n FROM tx GROUP BY card_id, ts - ts % 10000",
    )
    same_rows(got_windows, expected)
    same_rows(got_large, oracle(rows, "SELECT tx_id, amount FROM tx WHERE amount > 500"))


def test_the_kafka_connector_names_what_is_missing_or_wrong() -> None:
    flow = Flow("sql-kafka")
    with pytest.raises(SqlError, match=r"needs 'properties.bootstrap.servers'"):
        flow.sql("CREATE TABLE t (a BIGINT) WITH ('connector' = 'kafka', 'topic' = 'x');"
                 "CREATE TABLE o (a BIGINT) WITH ('connector' = 'print');"
                 "INSERT INTO o SELECT a FROM t;")  # fmt: skip
    with pytest.raises(SqlError, match=r"'format' = 'avro'"):
        flow.sql("CREATE TABLE t2 (a BIGINT) WITH ('connector' = 'kafka', 'topic' = 'x', "
                 "'properties.bootstrap.servers' = '127.0.0.1:1', 'format' = 'avro');"
                 "INSERT INTO o SELECT a FROM t2;")  # fmt: skip


def upsert_table(name: str, topic: str, servers: str, columns: str, extra: str = "") -> str:
    return (
        f"CREATE TABLE {name} ({columns}, PRIMARY KEY (card) NOT ENFORCED) WITH ("
        f"'connector' = 'upsert-kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = "
        f"'{servers}', 'key.format' = 'json', 'value.format' = 'json'{extra});"
    )


def final_rows(changes: list[dict[str, Any]], key: str) -> dict[Any, dict[str, Any]]:
    """The rows a changelog leaves, by ``key``."""
    rows: dict[Any, dict[str, Any]] = {}
    for change in changes:
        row = {name: value for name, value in change.items() if name != "$change"}
        if change["$change"] in ("+I", "+U"):
            rows[row[key]] = row
        else:
            assert rows.pop(row[key]) == row  # -U and -D take out the current row
    return rows


async def test_an_updating_result_into_upsert_kafka_and_back(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory, tmp_path: Path
) -> None:
    servers = kafka_broker.bootstrap_servers
    topic = await kafka_topic(partitions=2)
    path = tmp_path / "tx.jsonl"
    spent = [("a", 1.0), ("b", 2.0), ("a", 3.0), ("c", 4.0), ("a", 5.0), ("b", 6.0)]
    path.write_bytes(b"".join(orjson.dumps({"card": c, "amount": a}) + b"\n" for c, a in spent))
    columns = "card STRING, n BIGINT, total DOUBLE"
    writer = Flow("upsert-write")
    writer.sql(
        f"CREATE TABLE tx (card STRING, amount DOUBLE) WITH ('connector' = 'jsonlines', 'path' = '{path}');"
        + upsert_table("totals", topic, servers, columns)
        + "INSERT INTO totals SELECT card, COUNT(*), SUM(amount) FROM tx GROUP BY card HAVING COUNT(*) < 3;"
    )
    await writer.run()

    # Raw: keys are the primary key as JSON, each key on one partition; a -D is a tombstone.
    raw = await read_partitions(servers, topic, decode=lambda record: (record.key, record.value))
    per_key: dict[bytes, list[Any]] = {}
    for records in raw.values():
        keys = {key for key, _ in records}
        assert not keys & per_key.keys()  # a key's records are on one partition, in order
        for key, value in records:
            per_key.setdefault(key, []).append(None if value is None else orjson.loads(value))
    assert per_key == {
        b'{"card":"a"}': [{"card": "a", "n": 1, "total": 1.0}, {"card": "a", "n": 2, "total": 4.0}, None],
        b'{"card":"b"}': [{"card": "b", "n": 1, "total": 2.0}, {"card": "b", "n": 2, "total": 8.0}],
        b'{"card":"c"}': [{"card": "c", "n": 1, "total": 4.0}],
    }

    # As an upsert-kafka source: a changelog whose final rows are the groups HAVING kept.
    reader = Flow("upsert-read")
    reader.sql(
        upsert_table("totals_in", topic, servers, columns, ", 'scan.bounded.mode' = 'latest-offset'")
    )
    out = reader.sql_query("SELECT card, n, total FROM totals_in WHERE card <> 'z'").collect()
    await reader.run()
    changes = {card: [(c["$change"], c["n"]) for c in out.values if c["card"] == card] for card in "abc"}
    assert changes == {
        "a": [("+I", 1), ("-U", 1), ("+U", 2), ("-D", 2)],
        "b": [("+I", 1), ("-U", 1), ("+U", 2)],
        "c": [("+I", 1)],
    }
    assert final_rows(out.values, "card") == {
        "b": {"card": "b", "n": 2, "total": 8.0},
        "c": {"card": "c", "n": 1, "total": 4.0},
    }

    # An append-only query into an upsert table: each row an upsert of its key.
    appender = Flow("upsert-append")
    appender.sql(
        f"CREATE TABLE tx (card STRING, amount DOUBLE) WITH ('connector' = 'jsonlines', 'path' = '{path}');"
        + upsert_table("totals", topic, servers, columns)
        + "INSERT INTO totals SELECT card, 9, amount FROM tx WHERE card = 'c';"
    )
    await appender.run()
    raw = await read_partitions(servers, topic, decode=lambda record: (record.key, record.value))
    last = [value for records in raw.values() for key, value in records if key == b'{"card":"c"}'][-1]
    assert orjson.loads(last) == {"card": "c", "n": 9, "total": 4.0}


def test_changelog_normalize_turns_upserts_into_changes() -> None:
    def record(offset: int, key: str, value: dict[str, Any] | None) -> KafkaRecord:
        return KafkaRecord("t", 0, offset, 0, {"card": key}, value)

    upserts = [
        record(0, "a", {"card": "a", "n": 1}),
        record(1, "b", None),  # a tombstone of a key never seen: nothing
        record(2, "a", {"card": "a", "n": 1}),  # the same row again: nothing
        record(3, "a", {"card": "a", "n": 2}),
        record(4, "a", None),
        record(5, "a", {"card": "a", "n": 3}),
    ]
    flow = Flow("normalize")
    out = (
        flow.from_iterable(upserts).key_by(lambda r: r.key["card"]).process(ChangelogNormalize()).collect()
    )
    flow.execute()
    assert [(row["$change"], row["n"]) for row in out.values] == [
        ("+I", 1), ("-U", 1), ("+U", 2), ("-D", 2), ("+I", 3)
    ]  # fmt: skip


async def test_exactly_once_from_sql_commits_each_row_once(
    kafka_broker: KafkaEndpoint, kafka_topic: TopicFactory, tmp_path: Path
) -> None:
    servers = kafka_broker.bootstrap_servers
    source = await kafka_topic(partitions=2)
    sink, totals = await kafka_topic(partitions=1), await kafka_topic(partitions=1)
    rows = [{"id": n, "amount": float(n), "card": f"c{n % 3}"} for n in range(40)]
    await produce_json(servers, source, rows)
    exactly_once = (
        f", 'sink.delivery-guarantee' = 'exactly-once', 'sink.transactional-id-prefix' = '{sink}'"
    )

    def script(run: int) -> str:
        read = ", 'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset'"
        return (
            kafka_table("src", source, servers, "id BIGINT, amount DOUBLE",
                        f", 'properties.group.id' = 'g-{sink}-{run}'" + read)
            + kafka_table("src2", source, servers, "card STRING",
                          f", 'properties.group.id' = 'g-{totals}-{run}'" + read)
            + kafka_table("dst", sink, servers, "id BIGINT, amount DOUBLE", exactly_once)
            + upsert_table("totals", totals, servers, "card STRING, n BIGINT", exactly_once)
            + "INSERT INTO dst SELECT id, amount FROM src WHERE amount >= 10;"
            + "INSERT INTO totals SELECT card, COUNT(*) FROM src2 GROUP BY card;"
        )  # fmt: skip

    unchecked = Flow("sql-eos")
    unchecked.sql(script(0))
    with pytest.raises(
        CheckpointError, match=r"^table '(dst|totals)': 'sink.delivery-guarantee' = 'exactly-once'"
    ):
        await unchecked.run()

    flow = Flow("sql-eos")
    flow.enable_checkpointing(tmp_path / "checkpoints")
    flow.sql(script(1))
    await flow.run()
    committed = [value for values in (await read_partitions(servers, sink)).values() for value in values]
    assert sorted(row["id"] for row in committed) == list(range(10, 40))  # read_committed: each once
    latest = {}
    for value in (await read_partitions(servers, totals))[0]:
        latest[value["card"]] = value["n"]
    assert latest == {"c0": 14, "c1": 13, "c2": 13}
    # Transactions wrote them: commit markers take offsets after the 30 records.
    consumer = AIOKafkaConsumer(bootstrap_servers=servers)
    await consumer.start()
    try:
        partition = TopicPartition(sink, 0)
        assert (await consumer.end_offsets([partition]))[partition] > 30
    finally:
        await consumer.stop()


KEYED = "card STRING, n BIGINT, PRIMARY KEY (card) NOT ENFORCED"
UPSERT = "'connector' = 'upsert-kafka', 'topic' = 'x', "
EXACTLY_ONCE = "'connector' = 'kafka', 'topic' = 'x', 'sink.delivery-guarantee' = 'exactly-once'"


@pytest.mark.parametrize(
    ("options", "columns", "message"),
    [
        (
            UPSERT + "'key.format' = 'json', 'value.format' = 'json'",
            "card STRING, n BIGINT",
            r"table 'o': the upsert-kafka connector needs a PRIMARY KEY \(...\) NOT ENFORCED$",
        ),
        (
            UPSERT + "'value.format' = 'json'",
            KEYED,
            r"table 'o': the upsert-kafka connector needs 'key.format' \('json'\)$",
        ),
        (
            UPSERT + "'key.format' = 'avro', 'value.format' = 'json'",
            KEYED,
            r"table 'o': 'key.format' = 'avro': the upsert-kafka connector reads and writes 'json'",
        ),
        (
            EXACTLY_ONCE,
            "card STRING, n BIGINT",
            r"table 'o': 'sink.delivery-guarantee' = 'exactly-once' needs 'sink.transactional-id-prefix'",
        ),
        (
            EXACTLY_ONCE + ", 'sink.transactional-id-prefix' = 'p'",
            "card STRING, n BIGINT",
            r"table 'o': 'sink.delivery-guarantee' = 'exactly-once' needs a query that reads one kafka "
            r"table with 'properties.group.id' \(its offsets commit with the results\), not "
            r"JsonLinesSource\(.*in.jsonl\)$",
        ),
        (
            "'connector' = 'kafka', 'topic' = 'x', 'sink.delivery-guarantee' = 'twice'",
            "card STRING, n BIGINT",
            r"table 'o': 'sink.delivery-guarantee' = 'twice': one of at-least-once, none, exactly-once$",
        ),
    ],
    ids=["no-key", "no-key-format", "avro", "no-prefix", "not-from-kafka", "unknown-guarantee"],
)
def test_upsert_kafka_and_exactly_once_name_what_is_missing_or_wrong(
    tmp_path: Path, options: str, columns: str, message: str
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"card": "a"}\n')
    flow = Flow("sql-kafka")
    flow.sql(
        f"CREATE TABLE tx (card STRING) WITH ('connector' = 'jsonlines', 'path' = '{path}');"
        f"CREATE TABLE o ({columns}) WITH ({options}, 'properties.bootstrap.servers' = '127.0.0.1:1');"
    )
    upsert = "upsert" in options
    query = "SELECT card, COUNT(*) FROM tx GROUP BY card" if upsert else "SELECT card, 1 FROM tx"
    with pytest.raises(SqlError, match=message) as raised:
        flow.sql(f"INSERT INTO o {query};")
    assert "\n" not in str(raised.value)
