"""The ``actorflow-sql`` engine: the benchmark's queries written in SQL where SQL can say them.

Q1 is a filter and a projection into a JSON-lines table, over the table without a time attribute
(the query has no use for event time, as the DataStream version assigns none). Q2 is a ``TUMBLE``
window aggregation per card, with the benchmark's watermark (``max ts - 2000`` after every
record: the table option ``'scan.watermark.emit.strategy' = 'on-event'``), whose late records the
window operator counts. Q4 is ``MATCH_RECOGNIZE`` (a small transaction, then at once a large one
within 60 s), whose late records the pattern operator counts. Q3 takes a card's transactions in
arrival order, which SQL cannot say (``MATCH_RECOGNIZE`` orders by the time attribute).
"""

from __future__ import annotations

from typing import Any

import orjson

import actorflow.sql.session  # noqa: F401 - imported with the engine, as the DataStream engine's modules are
from actorflow import Flow

__all__ = ["run"]

PLAIN_TABLE = """
CREATE TABLE tx (tx_id BIGINT, card_id STRING, merchant_id STRING, amount DOUBLE, ts BIGINT)
WITH ('connector' = 'jsonlines', 'path' = '{path}');
"""

TABLE = """
CREATE TABLE tx (
  tx_id BIGINT, card_id STRING, merchant_id STRING, amount DOUBLE, ts BIGINT,
  rowtime AS TO_TIMESTAMP_LTZ(ts, 3),
  WATERMARK FOR rowtime AS rowtime - INTERVAL '2' SECOND
) WITH ('connector' = 'jsonlines', 'path' = '{path}', 'scan.watermark.emit.strategy' = 'on-event');
"""

Q1 = """
CREATE TABLE large_tx (tx_id BIGINT, card_id STRING, amount DOUBLE)
WITH ('connector' = 'jsonlines', 'path' = '{output}');
INSERT INTO large_tx SELECT tx_id, card_id, amount FROM tx WHERE amount > 100.00;
"""

Q2 = """
SELECT card_id, window_start, window_end, COUNT(*) AS `count`,
       SUM(CAST(ROUND(amount * 100) AS BIGINT)) AS sum_cents
FROM TABLE(TUMBLE(TABLE tx, DESCRIPTOR(rowtime), INTERVAL '10' SECOND))
GROUP BY card_id, window_start, window_end
"""


Q4 = """
SELECT card_id, small_tx_id, large_tx_id
FROM tx MATCH_RECOGNIZE (
  PARTITION BY card_id ORDER BY rowtime
  MEASURES A.tx_id AS small_tx_id, B.tx_id AS large_tx_id
  ONE ROW PER MATCH AFTER MATCH SKIP PAST LAST ROW
  PATTERN (A B) WITHIN INTERVAL '60' SECOND
  DEFINE A AS amount < 1.00, B AS amount > 500.00
)
"""


def run(query: str, input_path: str, output_path: str, parallelism: int) -> int:
    """Run ``query`` (q1, q2 or q4) over ``input_path`` into ``output_path``; the events read."""
    flow = Flow(f"{query}-sql", parallelism=parallelism)
    flow.sql((PLAIN_TABLE if query == "q1" else TABLE).format(path=input_path))
    if query == "q1":
        flow.sql(Q1.format(output=output_path))
        flow.execute()
    elif query in ("q2", "q4"):
        flow.sql_query(Q2 if query == "q2" else Q4).sink_to_json_lines(output_path, name="output")
        flow.execute()
        with open(output_path, "ab") as out:  # then the late count, as the other engines end
            out.write(orjson.dumps({"late": _late_records(flow)}) + b"\n")
    else:
        raise ValueError(f"{query} takes a card's transactions in arrival order, which SQL cannot say")
    return _records_read(flow)


def _operators(flow: Flow) -> list[Any]:
    assert flow.metrics is not None
    return [operator for entry in flow.metrics.actors for operator in entry.operators.values()]


def _late_records(flow: Flow) -> int:
    return sum(
        getattr(operator, "late_records", 0) + getattr(operator, "late_events", 0)
        for operator in _operators(flow)
    )


def _records_read(flow: Flow) -> int:
    assert flow.metrics is not None
    return sum(entry.metrics.records_in for entry in flow.metrics.actors if entry.source is not None)
