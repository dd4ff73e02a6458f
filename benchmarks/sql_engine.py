"""The ``actorflow-sql`` engine: the benchmark's queries written in SQL where SQL can say them.

Q1 is a filter and a projection into a JSON-lines table; Q2 a ``TUMBLE`` window aggregation per
card, with the benchmark's watermark (``max ts - 2000`` after every record: the table option
``'scan.watermark.emit.strategy' = 'on-event'``), whose late records the window operator counts.
Q3 and Q4 are patterns, for ``MATCH_RECOGNIZE``, which the SQL planner does not have yet.
"""

from __future__ import annotations

from typing import Any

import orjson

from actorflow import Flow

__all__ = ["run"]

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


def run(query: str, input_path: str, output_path: str, parallelism: int) -> int:
    """Run ``query`` (q1 or q2) over ``input_path`` into ``output_path``; the events read."""
    flow = Flow(f"{query}-sql", parallelism=parallelism)
    flow.sql(TABLE.format(path=input_path))
    if query == "q1":
        flow.sql(Q1.format(output=output_path))
        flow.execute()
    elif query == "q2":
        windows = flow.sql_query(Q2).collect(name="output")
        flow.execute()
        late = _late_records(flow)
        with open(output_path, "wb") as out:
            out.write(b"".join(orjson.dumps(window) + b"\n" for window in windows.values))
            out.write(orjson.dumps({"late": late}) + b"\n")
    else:
        raise ValueError(f"{query} is a pattern: SQL says it with MATCH_RECOGNIZE, not supported yet")
    return _records_read(flow)


def _operators(flow: Flow) -> list[Any]:
    assert flow.metrics is not None
    return [operator for entry in flow.metrics.actors for operator in entry.operators.values()]


def _late_records(flow: Flow) -> int:
    return sum(getattr(operator, "late_records", 0) for operator in _operators(flow))


def _records_read(flow: Flow) -> int:
    assert flow.metrics is not None
    return sum(entry.metrics.records_in for entry in flow.metrics.actors if entry.source is not None)
