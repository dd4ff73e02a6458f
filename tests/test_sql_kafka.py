"""SQL over Kafka topics (the ``kafka`` connector, against the real broker): a table over a topic
of JSON transactions read to its end (``'scan.bounded.mode' = 'latest-offset'``), a TUMBLE window
aggregation and a filter written to topics; what a reader sees equals DuckDB's answer."""

from __future__ import annotations

import pytest

from actorflow import Flow
from actorflow.errors import SqlError
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
