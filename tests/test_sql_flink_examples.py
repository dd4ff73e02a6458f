"""The window examples of Flink's SQL documentation ("Windowing TVF", "Window Aggregation",
"Window Top-N"), on their small ``Bid`` table, with the results the semantics give (worked out by
hand, row by row), at parallelism 1 and 2."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from actorflow import Flow

pytest.importorskip("sqlglot")

#: (bidtime, price, item, supplier_id)
BIDS = [
    ("08:05", 4.0, "C", "supplier1"),
    ("08:07", 2.0, "A", "supplier1"),
    ("08:09", 5.0, "D", "supplier2"),
    ("08:11", 3.0, "B", "supplier2"),
    ("08:13", 1.0, "E", "supplier1"),
    ("08:17", 6.0, "F", "supplier2"),
]


def at(clock: str) -> int:
    """Epoch milliseconds of ``clock`` (``HH:MM``) on 2020-04-15, UTC."""
    hours, minutes = map(int, clock.split(":"))
    return int(datetime(2020, 4, 15, hours, minutes, tzinfo=UTC).timestamp() * 1000)


def run(table: str, query: str, parallelism: int) -> list[dict[str, Any]]:
    flow = Flow("flink-docs", parallelism=parallelism)
    flow.sql(table)
    rows = flow.sql_query(query).collect()
    flow.execute()
    return rows.values


def windows(rows: list[dict[str, Any]], *columns: str) -> list[tuple[Any, ...]]:
    """Each row as ``(start HH:MM, end HH:MM, *columns)``, sorted."""

    def clock(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M")

    return sorted(
        (clock(r["window_start"]), clock(r["window_end"]), *(r[c] for c in columns)) for r in rows
    )


@pytest.fixture
def table(tmp_path: Path) -> str:
    path = tmp_path / "bids.jsonl"
    path.write_bytes(
        b"".join(
            orjson.dumps({"ms": at(t), "price": p, "item": i, "supplier_id": s}) + b"\n"
            for t, p, i, s in BIDS
        )
    )
    return f"""
    CREATE TABLE Bid (
      ms BIGINT, price DOUBLE, item STRING, supplier_id STRING,
      bidtime AS TO_TIMESTAMP_LTZ(ms, 3),
      WATERMARK FOR bidtime AS bidtime - INTERVAL '1' SECOND
    ) WITH ('connector' = 'jsonlines', 'path' = '{path}')
    """


PARALLELISM = [1, 2]


@pytest.mark.parametrize("parallelism", PARALLELISM)
def test_tumble(table: str, parallelism: int) -> None:
    rows = run(
        table,
        """SELECT window_start, window_end, SUM(price) AS total
           FROM TABLE(TUMBLE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '10' MINUTES))
           GROUP BY window_start, window_end""",
        parallelism,
    )
    assert windows(rows, "total") == [("08:00", "08:10", 11.0), ("08:10", "08:20", 10.0)]


@pytest.mark.parametrize("parallelism", PARALLELISM)
def test_hop(table: str, parallelism: int) -> None:
    rows = run(
        table,
        """SELECT window_start, window_end, SUM(price) AS total
           FROM TABLE(HOP(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '5' MINUTES, INTERVAL '10' MINUTES))
           GROUP BY window_start, window_end""",
        parallelism,
    )
    assert windows(rows, "total") == [
        ("08:00", "08:10", 11.0),
        ("08:05", "08:15", 15.0),
        ("08:10", "08:20", 10.0),
        ("08:15", "08:25", 6.0),
    ]


@pytest.mark.parametrize("parallelism", PARALLELISM)
def test_cumulate(table: str, parallelism: int) -> None:
    rows = run(
        table,
        """SELECT window_start, window_end, SUM(price) AS total
           FROM TABLE(CUMULATE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '2' MINUTES, INTERVAL '10' MINUTES))
           GROUP BY window_start, window_end""",
        parallelism,
    )
    # A step without a row of its own still emits its period's running total once the period has
    # rows (08:10-08:16); the steps before a period's first row (08:00-08:02, 08:00-08:04) do not.
    assert windows(rows, "total") == [
        ("08:00", "08:06", 4.0),
        ("08:00", "08:08", 6.0),
        ("08:00", "08:10", 11.0),
        ("08:10", "08:12", 3.0),
        ("08:10", "08:14", 4.0),
        ("08:10", "08:16", 4.0),
        ("08:10", "08:18", 10.0),
        ("08:10", "08:20", 10.0),
    ]


@pytest.mark.parametrize("parallelism", PARALLELISM)
def test_session_per_supplier(table: str, parallelism: int) -> None:
    rows = run(
        table,
        """SELECT window_start, window_end, supplier_id, SUM(price) AS total
           FROM TABLE(SESSION(TABLE Bid PARTITION BY supplier_id, DESCRIPTOR(bidtime),
                              INTERVAL '3' MINUTES))
           GROUP BY window_start, window_end, supplier_id""",
        parallelism,
    )
    # supplier1: 08:05, 08:07 (within 3 minutes), then 08:13 alone; supplier2: 08:09, 08:11, then
    # 08:17 alone. A session ends its gap after its last row.
    assert windows(rows, "supplier_id", "total") == [
        ("08:05", "08:10", "supplier1", 6.0),
        ("08:09", "08:14", "supplier2", 8.0),
        ("08:13", "08:16", "supplier1", 1.0),
        ("08:17", "08:20", "supplier2", 6.0),
    ]


@pytest.mark.parametrize("parallelism", PARALLELISM)
def test_window_top_n(table: str, parallelism: int) -> None:
    rows = run(
        table,
        """SELECT * FROM (
             SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end
                                          ORDER BY price DESC) AS rownum
             FROM (
               SELECT window_start, window_end, supplier_id, SUM(price) AS price, COUNT(*) AS cnt
               FROM TABLE(TUMBLE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '10' MINUTES))
               GROUP BY window_start, window_end, supplier_id))
           WHERE rownum <= 1""",
        parallelism,
    )
    # 08:00-08:10: supplier1 6.0 (C, A), supplier2 5.0 (D); 08:10-08:20: supplier2 9.0 (B, F),
    # supplier1 1.0 (E).
    assert windows(rows, "supplier_id", "price", "cnt", "rownum") == [
        ("08:00", "08:10", "supplier1", 6.0, 2, 1),
        ("08:10", "08:20", "supplier2", 9.0, 2, 1),
    ]


@pytest.mark.parametrize("parallelism", PARALLELISM)
def test_window_rows_with_their_window(table: str, parallelism: int) -> None:
    rows = run(
        table,
        "SELECT item, window_start, window_end FROM TABLE(TUMBLE(TABLE Bid, DESCRIPTOR(bidtime), "
        "INTERVAL '10' MINUTES))",
        parallelism,
    )
    assert windows(rows, "item") == [
        ("08:00", "08:10", "A"),
        ("08:00", "08:10", "C"),
        ("08:00", "08:10", "D"),
        ("08:10", "08:20", "B"),
        ("08:10", "08:20", "E"),
        ("08:10", "08:20", "F"),
    ]
